"""nm-validate: check a session folder or a dataset root against the contract.

``validate_path(path) -> list[Problem]``; an empty list means valid. What is checked:
docs/contracts/validation.md.
"""
from __future__ import annotations

from pathlib import Path

from ..util.errors import BadInput
from .common import Problem
from .dataset import validate_dataset
from .session import validate_session

__all__ = ["Problem", "validate_path", "validate_session", "validate_dataset", "detect_kind"]


def detect_kind(path: Path) -> str:
    """``"dataset"`` (has dataset.json or index.parquet), ``"session"`` (has metadata.json,
    frames.parquet or integrity.sha256), or ``"sessions"`` (a folder whose subfolders are
    session folders). Raises BadInput otherwise."""
    if not path.exists():
        raise BadInput(f"{path}: no such file or folder")
    if not path.is_dir():
        raise BadInput(f"{path}: not a folder (give a session folder or a dataset root)")
    names = {p.name for p in path.iterdir()}
    if names & {"dataset.json", "index.parquet"}:
        return "dataset"
    if names & {"metadata.json", "frames.parquet", "integrity.sha256"}:
        return "session"
    subs = [p for p in path.iterdir() if p.is_dir() and not p.name.startswith(".")
            and (p / "metadata.json").exists()]
    if subs:
        return "sessions"
    raise BadInput(f"{path}: neither a session folder (metadata.json, frames.parquet) nor a "
                   f"dataset root (dataset.json, index.parquet)")


def validate_path(path: str | Path, check_videos: bool = True) -> list[Problem]:
    """Every problem found in the session folder, folder of sessions, or dataset root
    ``path``. ``check_videos=False`` skips demuxing chunk videos in a dataset (faster)."""
    path = Path(path)
    try:
        kind = detect_kind(path)
    except PermissionError as e:
        raise BadInput(f"{path}: cannot read ({e.strerror})") from None
    if kind == "dataset":
        return validate_dataset(path, check_videos=check_videos)
    if kind == "session":
        return validate_session(path)
    out: list[Problem] = []
    for sub in sorted(p for p in path.iterdir() if p.is_dir() and (p / "metadata.json").exists()):
        out.extend(validate_session(sub))
    return out
