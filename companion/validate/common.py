"""Shared I/O helpers of nm-validate: the Problem record, reading JSON/Parquet/videos
without ever raising for bad content (a bad file becomes a Problem)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..util.integrity import sha256_file  # noqa: F401  (re-exported for validate.*)
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from ..contract.metadata import check_format_version, loads_json_strict, validate_json
from ..util.errors import NMError

VIDEO_EXTS = (".mkv", ".webm", ".mp4", ".mov", ".flv", ".ts")


@dataclass(frozen=True)
class Problem:
    """One finding: ``path`` is the file (or folder) it is about, as the user would
    type it (the validated PATH joined with the file's relative path); ``message`` is
    one line saying what is wrong."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"

    def to_dict(self) -> dict:
        return {"path": self.path, "message": self.message}


class Report:
    """Collects problems for files under one root."""

    def __init__(self, root: Path):
        self.root = root
        self.problems: list[Problem] = []
        self.facts: dict[str, int] = {}   # what was checked (for the OK summary)

    def add(self, rel: str | Path, message: str) -> None:
        rel = str(rel)
        path = str(self.root) if rel in ("", ".") else str(self.root / rel)
        self.problems.append(Problem(path, " ".join(message.split())))

    def extend(self, rel: str | Path, messages: list[str]) -> None:
        for m in messages:
            self.add(rel, m)


def _err(e: BaseException) -> str:
    return " ".join(str(e).split())[:200] or type(e).__name__


def read_json(rep: Report, rel: str, schema: str | None = None) -> Any:
    """Parse ``root/rel``; report (and return None) if missing, unreadable or invalid
    against ``schema``. The format_version, when present, must have a supported major."""
    p = rep.root / rel
    if not p.is_file():
        rep.add(rel, "missing")
        return None
    try:
        doc = loads_json_strict(p.read_bytes(), rel)
    except NMError as e:
        rep.add(rel, str(e).removeprefix(f"{rel}: "))
        return None
    except OSError as e:
        rep.add(rel, f"cannot read ({e.strerror or _err(e)})")
        return None
    if schema is not None:
        msgs = validate_json(doc, schema)
        rep.extend(rel, [f"schema: {m}" for m in msgs])
        if isinstance(doc, dict) and "format_version" in doc:
            why = check_format_version(doc["format_version"])
            if why and not any("format_version" in m for m in msgs):
                rep.add(rel, why)
    return doc


def read_parquet_schema(rep: Report, rel: str) -> pa.Schema | None:
    p = rep.root / rel
    if not p.is_file():
        rep.add(rel, "missing")
        return None
    try:
        return pq.read_schema(p)
    except Exception as e:  # pyarrow raises ArrowInvalid, OSError, ... for a bad file
        rep.add(rel, f"not a readable Parquet file ({_err(e)})")
        return None


def read_parquet(rep: Report, rel: str, columns: list[str]) -> pa.Table | None:
    """Read ``columns`` (those present) of a Parquet file; None (reported) if unreadable."""
    p = rep.root / rel
    try:
        names = pq.read_schema(p).names
        # page CRC-32s (written from format 1.2.0) are checked where present
        table = pq.read_table(p, columns=[c for c in columns if c in names],
                              page_checksum_verification=True)
        table.validate(full=True)   # e.g. invalid UTF-8 in a string column of a damaged page
        return table
    except Exception as e:  # corrupt pages surface only when the data is read
        rep.add(rel, f"not a readable Parquet file ({_err(e)})")
        return None


def column(table: pa.Table, name: str) -> tuple[np.ndarray, np.ndarray] | None:
    """(values as int64/float64 numpy with nulls filled by 0, validity mask), or None if
    the column is absent or not numeric (a schema problem reported elsewhere)."""
    if name not in table.column_names:
        return None
    if not (pa.types.is_integer(table.schema.field(name).type)
            or pa.types.is_floating(table.schema.field(name).type)):
        return None
    col = table.column(name).combine_chunks()
    valid = np.ones(len(col), dtype=bool) if col.null_count == 0 else \
        np.asarray(col.is_valid().to_numpy(zero_copy_only=False), dtype=bool)
    if pa.types.is_integer(col.type):
        vals = col.fill_null(0).to_numpy(zero_copy_only=False).astype(np.int64)
    else:
        vals = col.fill_null(0).to_numpy(zero_copy_only=False).astype(np.float64)
    return vals, valid


@dataclass
class VideoCount:
    """Video packets of the first video stream in presentation order (``pts`` sorted,
    ticks of ``time_base`` s), counted by demuxing only (no decoding)."""

    n_frames: int
    pts: np.ndarray
    time_base: Any
    error: str | None = None
    keyframe: np.ndarray | None = None
    """keyframe flag of each frame, same (presentation) order as ``pts``"""


def count_video_frames(path: Path) -> VideoCount:
    """Count frames of ``path`` without decoding: one per non-empty video packet (pts,
    else dts), the way the aligner's scan does. ``error`` is set if the file cannot be
    read or demuxing stopped early."""
    import av

    try:
        c = av.open(str(path))
    except Exception as e:  # av.FFmpegError, OSError, UnicodeDecodeError...
        return VideoCount(0, np.empty(0, np.int64), None, f"not a readable video ({_err(e)})")
    try:
        if not c.streams.video:
            return VideoCount(0, np.empty(0, np.int64), None, "no video stream")
        vs = c.streams.video[0]
        pts: list[int] = []
        key: list[bool] = []
        err = None
        try:
            for pkt in c.demux(vs):
                if not pkt.size:
                    continue
                t = pkt.pts if pkt.pts is not None else pkt.dts
                if t is not None:
                    pts.append(int(t))
                    key.append(bool(pkt.is_keyframe))
        except av.error.EOFError:
            pass
        except av.FFmpegError as e:
            err = f"demuxing stopped early ({_err(e)})"
        raw = np.asarray(pts, dtype=np.int64)
        order = np.argsort(raw, kind="stable")
        return VideoCount(len(raw), raw[order], vs.time_base, err,
                          np.asarray(key, dtype=bool)[order])
    finally:
        c.close()
