"""nm-validate: check a session folder or a dataset root against the contract.

``validate_path(path) -> list[Problem]``; an empty list means valid. What is checked:
docs/contracts/validation.md.
"""
from __future__ import annotations

from pathlib import Path

from ..util.errors import BadInput
from .common import Problem
from .common import Report
from .dataset import dataset_report, validate_dataset
from .session import session_report, validate_session

__all__ = ["Problem", "validate_path", "validate_report", "validate_session", "validate_dataset",
           "detect_kind", "Report"]


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
    return validate_report(path, check_videos)[1]


def validate_report(path: str | Path, check_videos: bool = True) -> tuple[str, list[Problem], dict]:
    """``(kind, problems, facts)``: what :func:`validate_path` finds plus counts of what
    was checked (frames, events, files_hashed / videos, chunks, events; sessions)."""
    path = Path(path)
    try:
        kind = detect_kind(path)
    except PermissionError as e:
        raise BadInput(f"{path}: cannot read ({e.strerror})") from None
    if kind == "dataset":
        rep = dataset_report(path, check_videos=check_videos)
        return kind, rep.problems, rep.facts
    if kind == "session":
        rep = session_report(path)
        return kind, rep.problems, rep.facts
    problems: list[Problem] = []
    facts: dict[str, int] = {"sessions": 0}
    for sub in sorted(p for p in path.iterdir() if p.is_dir() and (p / "metadata.json").exists()):
        rep = session_report(sub)
        problems.extend(rep.problems)
        facts["sessions"] += 1
        for k, v in rep.facts.items():
            facts[k] = facts.get(k, 0) + v
    return kind, problems, facts
