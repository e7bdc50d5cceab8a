"""integrity.sha256: ``sha256sum``-format hashes of a folder's artifacts."""
from __future__ import annotations

from pathlib import Path

from .atomic import write_text_atomic
from .checksum import file_digest


def sha256_file(path: Path) -> str:
    return file_digest(path, "sha256")


def recorded_hash(folder: Path, name: str) -> str | None:
    """The sha256 that ``folder/integrity.sha256`` already records for ``name``, if that
    file is newer than ``name`` (make-style: the companion hashes the recording when it
    finalizes a session, and nm-align reruns reuse their own). ``nm-validate`` always
    recomputes, so a later silent change is still caught."""
    integ, target = folder / "integrity.sha256", folder / name
    try:
        if integ.stat().st_mtime_ns < target.stat().st_mtime_ns:
            return None
        for ln in integ.read_text(encoding="utf-8", errors="replace").splitlines():
            digest, _, fname = ln.partition("  ")
            if fname.strip() == name and len(digest) == 64 and \
                    all(c in "0123456789abcdef" for c in digest):
                return digest
    except OSError:
        return None
    return None


def write_integrity(folder: Path, names: list[str], known: dict | None = None) -> None:
    known = known or {}
    lines = [f"{known.get(n) or sha256_file(folder / n)}  {n}\n" for n in sorted(set(names))
             if (folder / n).is_file()]
    write_text_atomic(folder / "integrity.sha256", "".join(lines))
