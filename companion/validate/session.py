"""Validate a session folder against the contract (docs/contracts/validation.md).

Checks: metadata.json (JSON Schema, supported format_version major), integrity.sha256
(well-formed; every listed file exists and hashes as listed; every artifact is
listed), frames.parquet (FRAMES_SCHEMA, one row per video frame, frame_idx
contiguous, pts equal to the video's, t_ns monotonic), events.parquet (EVENTS_SCHEMA,
t_ns sorted, session_id, frame_ref in range and consistent with frames t_ns), and the
alignment counts in metadata.json against the tables.
"""
from __future__ import annotations

import re
from pathlib import Path, PurePosixPath

import numpy as np
import pyarrow as pa

from ..contract.schemas import EVENTS_SCHEMA, FRAMES_SCHEMA
from ..util.checksum import HEX_DIGITS, ChecksumUnavailable, file_digest
from . import checks
from .common import VIDEO_EXTS, Report, column, count_video_frames, read_json, read_parquet, \
    read_parquet_schema

INTEGRITY = "integrity.sha256"


def _line_res(digits: int) -> tuple[re.Pattern, re.Pattern]:
    return (re.compile(rf"^([0-9a-f]{{{digits}}}) [ *](.+)$"),
            re.compile(rf"^[0-9a-fA-F]{{{digits}}} [ *].+$"))


_LINE_RES = {algo: _line_res(n) for algo, n in HEX_DIGITS.items()}


def parse_integrity(text: str, algo: str = "sha256") -> tuple[dict[str, str], list[str]]:
    """Pure: ``sha256sum`` lines (or ``xxh128sum`` lines: ``algo``, ``util.checksum``)
    -> ({relative name: hex digest}, [problems]).

    The digest must be lower-case hex of the algorithm's length, as nm-align and the
    tools write it: an upper-case letter is a changed byte (``sha256sum -c`` would accept
    it, so this is stricter on purpose: a flipped bit anywhere in the file is
    reported)."""
    line_re, anycase_re = _LINE_RES[algo]
    entries: dict[str, str] = {}
    problems: list[str] = []
    for i, line in enumerate(text.split("\n"), 1):
        if not line.strip():
            continue
        m = line_re.match(line.rstrip("\r"))
        if not m:
            if anycase_re.match(line.rstrip("\r")):
                problems.append(f"line {i}: the {algo} has upper-case hex digits (written "
                                f"lower-case: the line changed)")
            else:
                problems.append(f"line {i} is not '<{algo}>  <file>'")
            continue
        digest, name = m.group(1), m.group(2)
        parts = PurePosixPath(name).parts
        if name.startswith("/") or ".." in parts or "\\" in name:
            problems.append(f"line {i} names a file outside the folder: {name!r}")
            continue
        if name in entries:
            problems.append(f"line {i} lists {name} a second time")
        entries[name] = digest
    return entries, problems


def verify_checksum_file(rep: Report, rel: str, mismatch,
                         algo: str = "sha256") -> tuple[dict[str, str], str]:
    """Read the ``sha256sum`` file ``rel`` of ``rep.root`` (or ``xxh128sum`` file:
    ``algo``; names relative to the root), report its problems, and verify every file it
    lists: present and hashing as listed (``mismatch(actual_hex, listed_hex)`` words a
    difference). Returns (entries, text); both empty when the file cannot be read as
    UTF-8."""
    try:
        text = (rep.root / rel).read_bytes().decode("utf-8")
    except UnicodeDecodeError:
        rep.add(rel, "not UTF-8 text")
        return {}, ""
    except OSError as e:
        rep.add(rel, f"cannot read ({e.strerror or e})")
        return {}, ""
    entries, probs = parse_integrity(text, algo)
    rep.extend(rel, probs)
    for name, digest in sorted(entries.items()):
        p = rep.root / name
        if not p.is_file():
            rep.add(name, f"listed in {rel} but missing")
            continue
        try:
            actual = file_digest(p, algo)
        except OSError as e:
            rep.add(name, f"cannot read ({e.strerror or e})")
            continue
        except ChecksumUnavailable as e:
            rep.add(rel, f"cannot be checked: {e}")
            break
        if actual != digest:
            rep.add(name, mismatch(actual, digest))
    return entries, text


def _find_video(root: Path, meta: dict | None) -> str | None:
    if isinstance(meta, dict):
        al = meta.get("alignment")
        vf = al.get("video_file") if isinstance(al, dict) else None
        # a file name in the folder, or (nm-align --out elsewhere) a path relative to it
        if isinstance(vf, str) and vf and "\\" not in vf and (root / vf).is_file():
            return vf
        sid = meta.get("session_id")
        if isinstance(sid, str) and sid:
            for ext in VIDEO_EXTS:
                if (root / f"{sid}{ext}").is_file():
                    return f"{sid}{ext}"
    vids = sorted(p.name for p in root.iterdir() if p.is_file() and p.suffix.lower() in VIDEO_EXTS
                  and not p.name.startswith("."))
    return vids[0] if len(vids) == 1 else None


def _is_artifact(name: str, sid: str | None) -> bool:
    if name in ("frames.parquet", "events.parquet", "metadata.json"):
        return True
    if sid and name.startswith(sid + "."):
        rest = name[len(sid):].lower()
        return rest in VIDEO_EXTS or rest in (".jsonl", ".anchors.jsonl")
    return False


def check_integrity(rep: Report, sid: str | None) -> None:
    """``integrity.sha256`` of the session folder ``rep.root``: present, well-formed,
    every listed file hashes as listed, every artifact listed."""
    root = rep.root
    ipath = root / INTEGRITY
    if not ipath.is_file():
        rep.add(INTEGRITY, "missing (run nm-align on this session)")
    else:
        entries, text = verify_checksum_file(
            rep, INTEGRITY, lambda actual, listed: (
                f"sha256 {actual[:16]}... does not match {INTEGRITY} ({listed[:16]}...): "
                f"the file changed after nm-align"))
        rep.facts["files_hashed"] = len(entries)
        if text or entries:
            for p in sorted(root.iterdir()):
                if p.is_file() and p.name not in entries and _is_artifact(p.name, sid):
                    rep.add(p.name, f"not covered by {INTEGRITY}")


def validate_session(root: Path) -> list:
    """All problems of the session folder ``root`` (empty list = valid)."""
    return session_report(root).problems


def session_report(root: Path) -> Report:
    """Problems and facts (``frames``, ``events``, ``files_hashed``) of a session folder."""
    rep = Report(root)
    meta = read_json(rep, "metadata.json", "session_metadata")
    sid = meta.get("session_id") if isinstance(meta, dict) else None
    sid = sid if isinstance(sid, str) else None

    check_integrity(rep, sid)

    video = _find_video(root, meta)
    vc = None
    if video is None:
        rep.add("", "no recording found (expected <session_id>.mkv/.webm/.mp4 or "
                    "metadata.json alignment.video_file)")
    else:
        if "/" in video:
            rep.facts["recording_outside"] = video   # not covered by integrity.sha256
        vc = count_video_frames(root / video)
        if vc.error:
            rep.add(video, vc.error)
            vc = None if vc.n_frames == 0 else vc

    frame_t = None
    n_frames = None
    if (root / "frames.parquet").exists() or (root / INTEGRITY).exists():
        frame_t, n_frames = _check_frames(rep, vc, video)
        if n_frames is not None:
            rep.facts["frames"] = n_frames
    if (root / "events.parquet").exists() or (root / INTEGRITY).exists():
        end_t = None
        al = meta.get("alignment") if isinstance(meta, dict) else None
        if isinstance(al, dict) and isinstance(al.get("end_t_ns"), int):
            end_t = al["end_t_ns"]
        n_events = _check_events(rep, sid, frame_t, end_t)
        if n_events is not None:
            rep.facts["events"] = n_events
        if isinstance(al, dict):
            fc = al.get("frame_count")
            if isinstance(fc, int) and n_frames is not None and fc != n_frames:
                rep.add("metadata.json", f"alignment.frame_count is {fc}, frames.parquet has {n_frames} rows")
            ec = al.get("event_count")
            if isinstance(ec, int) and n_events is not None and ec != n_events:
                rep.add("metadata.json", f"alignment.event_count is {ec}, events.parquet has {n_events} rows")
    return rep


def _check_frames(rep: Report, vc, video: str | None):
    rel = "frames.parquet"
    schema = read_parquet_schema(rep, rel)
    if schema is None:
        return None, None
    rep.extend(rel, checks.compare_schema(schema, FRAMES_SCHEMA))
    t = read_parquet(rep, rel, [f.name for f in FRAMES_SCHEMA])
    if t is None:
        return None, None
    rep.extend(rel, checks.check_nulls(t, FRAMES_SCHEMA))
    n = t.num_rows
    idx = column(t, "frame_idx")
    if idx is not None:
        rep.extend(rel, checks.check_contiguous_index(idx[0]))
    pts = column(t, "pts")
    if pts is not None:
        rep.extend(rel, checks.check_non_decreasing(pts[0], "pts", strict=True))
    ft = column(t, "t_ns")
    if ft is not None:
        rep.extend(rel, checks.check_non_decreasing(ft[0], "t_ns"))
    for name, strict in (("slot", True), ("segment", False)):
        c = column(t, name)
        if c is not None:
            rep.extend(rel, checks.check_non_decreasing(c[0], name, strict=strict))
    mono = column(t, "mono_ns")
    if mono is not None and np.any(mono[1]):
        rep.extend(rel, checks.check_non_decreasing(mono[0][mono[1]], "mono_ns (non-null values)"))
    if vc is not None:
        if vc.n_frames != n:
            rep.add(rel, f"has {n} rows, the video {video} has {vc.n_frames} frames")
        elif pts is not None and not np.array_equal(pts[0], vc.pts):
            diff = np.flatnonzero(pts[0] != vc.pts)
            rep.add(rel, f"pts differ from the video {video} at frame {int(diff[0])} "
                         f"({len(diff)} frames)")
        else:
            pns = column(t, "pts_ns")
            if pns is not None and pts is not None and vc.time_base is not None and n:
                rep.extend(rel, checks.check_pts_ns(pts[0], pns[0], vc.time_base))
            kf = t.column("keyframe").to_numpy(zero_copy_only=False) \
                if "keyframe" in t.column_names and pa.types.is_boolean(t.schema.field("keyframe").type) \
                and t.column("keyframe").null_count == 0 else None
            if kf is not None and vc.keyframe is not None and not np.array_equal(kf, vc.keyframe):
                bad = np.flatnonzero(kf != vc.keyframe)
                rep.add(rel, f"keyframe flags differ from the video {video} at frame {int(bad[0])} "
                             f"({len(bad)} frames)")
    if ft is None or not np.all(ft[1]):
        return None, n
    return ft[0], n


def _check_events(rep: Report, sid: str | None, frame_t, end_t) -> int | None:
    rel = "events.parquet"
    schema = read_parquet_schema(rep, rel)
    if schema is None:
        return None
    rep.extend(rel, checks.compare_schema(schema, EVENTS_SCHEMA))
    t = read_parquet(rep, rel, ["t_ns", "frame_ref", "session_id", "hash", "event_type", "source"])
    if t is None:
        return None
    rep.extend(rel, checks.check_nulls(t, EVENTS_SCHEMA))
    et = column(t, "t_ns")
    if et is not None:
        rep.extend(rel, checks.check_non_decreasing(et[0], "t_ns"))
    strings = {n for n in ("session_id", "hash") if n in t.column_names
               and pa.types.is_string(t.schema.field(n).type)}
    if sid is not None and "session_id" in strings and t.num_rows:
        uniq = t.column("session_id").unique().to_pylist()
        others = [u for u in uniq if u != sid]
        if others:
            rep.add(rel, f"session_id {others[0]!r} in events, metadata.json says {sid!r}")
    if "hash" in strings and t.num_rows:
        import pyarrow.compute as pc
        ok = pc.match_substring_regex(t.column("hash"), r"^[0-9a-f]{64}$")
        bad = int(pc.sum(pc.invert(pc.fill_null(ok, False))).as_py() or 0)
        if bad:
            rep.add(rel, f"{bad} hash value(s) are not sha256 hex")
    fr = column(t, "frame_ref")
    if fr is not None and et is not None:
        if frame_t is not None:
            rep.extend(rel, checks.check_frame_refs(et[0], fr[0], fr[1], frame_t, end_t))
        elif np.any(fr[1] & (fr[0] < 0)):
            rep.add(rel, "frame_ref has negative values")
    return t.num_rows
