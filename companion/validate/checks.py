"""Pure checks used by nm-validate: arrays and schemas in, messages out (no I/O).

Every function returns a list of one-line messages (empty = fine). Messages name the
first offending row and how many rows are affected, so a bad file with a million rows
gives one clear line rather than a million.
"""
from __future__ import annotations

import re
from typing import Sequence

import numpy as np
import pyarrow as pa

from ..contract.metadata import check_format_version

HEX64_RE = re.compile(r"^[0-9a-f]{64}$")


def _first(mask: np.ndarray) -> int:
    return int(np.flatnonzero(mask)[0])


def _rows(n: int) -> str:
    return f"{n} row" if n == 1 else f"{n} rows"


def compare_schema(actual: pa.Schema, expected: pa.Schema) -> list[str]:
    """Field-by-field comparison (names, order, types, nullability); schema metadata
    other than ``format_version`` is ignored."""
    out: list[str] = []
    exp = {f.name: f for f in expected}
    act = {f.name: f for f in actual}
    missing = [n for n in exp if n not in act]
    extra = [n for n in act if n not in exp]
    if missing:
        out.append(f"missing column(s): {', '.join(missing)}")
    if extra:
        out.append(f"unexpected column(s): {', '.join(extra)}")
    for name, ef in exp.items():
        af = act.get(name)
        if af is None:
            continue
        if not af.type.equals(ef.type):
            out.append(f"column {name} has type {af.type}, expected {ef.type}")
        elif af.nullable and not ef.nullable:
            out.append(f"column {name} is nullable, the contract says not null")
    if not missing and not extra:
        order = [f.name for f in actual]
        if order != [f.name for f in expected]:
            out.append("columns are not in the contract's order")
    meta = actual.metadata or {}
    fv = meta.get(b"format_version")
    if fv is not None:
        why = check_format_version(fv.decode("utf-8", "replace"))
        if why:
            out.append(why)
    return out


def check_nulls(table: pa.Table, expected: pa.Schema) -> list[str]:
    """Columns the contract declares not-null must hold no nulls (Parquet may store a
    nullable column even when the schema says otherwise)."""
    out = []
    for f in expected:
        if not f.nullable and f.name in table.column_names:
            nulls = table.column(f.name).null_count
            if nulls:
                out.append(f"column {f.name} has {nulls} null(s)")
    return out


def check_contiguous_index(idx: np.ndarray, name: str = "frame_idx", start: int = 0) -> list[str]:
    """``idx`` must be exactly start, start+1, ..."""
    n = len(idx)
    expect = np.arange(start, start + n, dtype=np.int64)
    bad = idx != expect
    if np.any(bad):
        i = _first(bad)
        return [f"{name} is not contiguous from {start}: row {i} has {int(idx[i])}, expected "
                f"{int(expect[i])} ({_rows(int(bad.sum()))} differ)"]
    return []


def check_non_decreasing(t: np.ndarray, name: str, strict: bool = False) -> list[str]:
    if len(t) < 2:
        return []
    d = np.diff(t)
    bad = d <= 0 if strict else d < 0
    if np.any(bad):
        i = _first(bad) + 1
        how = "strictly increasing" if strict else "sorted (non-decreasing)"
        return [f"{name} is not {how}: row {i} has {int(t[i])} after {int(t[i - 1])} "
                f"({_rows(int(bad.sum()))})"]
    return []


def check_frame_refs(ev_t: np.ndarray, frame_ref: np.ndarray, ref_valid: np.ndarray,
                     frame_t: np.ndarray, end_t_ns: int | None) -> list[str]:
    """events.parquet ``frame_ref`` against frames.parquet ``t_ns``.

    ``frame_ref`` must be in ``[0, n_frames)`` and equal the frame on screen at the event
    time (``searchsorted(frame_t, t, "right") - 1``); null only before the first frame or
    at/after the end of the last one (``end_t_ns``; if unknown, after the last frame's
    start).
    """
    out: list[str] = []
    n = len(frame_t)
    ref = np.asarray(frame_ref, dtype=np.int64)
    valid = np.asarray(ref_valid, dtype=bool)
    oob = valid & ((ref < 0) | (ref >= n))
    if np.any(oob):
        i = _first(oob)
        out.append(f"frame_ref out of range [0, {n}): row {i} has {int(ref[i])} "
                   f"({_rows(int(oob.sum()))})")
    if n == 0:
        return out
    expect = np.searchsorted(frame_t, ev_t, side="right") - 1
    wrong = valid & ~oob & (ref != expect)
    if np.any(wrong):
        i = _first(wrong)
        out.append(f"frame_ref disagrees with frames.parquet t_ns: row {i} (t_ns {int(ev_t[i])}) "
                   f"has {int(ref[i])}, the frame on screen is {int(expect[i])} "
                   f"({_rows(int(wrong.sum()))})")
    end = end_t_ns if end_t_ns is not None else int(frame_t[-1]) + 1
    null_inside = ~valid & (expect >= 0) & (ev_t < end)
    if end_t_ns is None:
        null_inside &= ev_t < int(frame_t[-1])
    if np.any(null_inside):
        i = _first(null_inside)
        out.append(f"frame_ref is null for an event inside the video: row {i} (t_ns {int(ev_t[i])}) "
                   f"({_rows(int(null_inside.sum()))})")
    return out


def check_chunk_tiling(chunks: Sequence[tuple[int, int, int]], n_frames: int | None) -> list[str]:
    """``chunks``: ``(chunk_id, start_frame, end_frame)`` of one video, any order.

    They must be numbered 0..k-1, tile ``[0, n_frames)`` with no gap or overlap (if
    ``n_frames`` is None, ``[0, last end)``), be non-empty, and all but the last must
    have the same size.
    """
    out: list[str] = []
    if not chunks:
        return ["no chunks"]
    cs = sorted(chunks)
    ids = [c[0] for c in cs]
    if ids != list(range(len(cs))):
        dup = sorted({i for i in ids if ids.count(i) > 1})
        if dup:
            out.append(f"duplicate chunk_id(s) {dup[:5]}")
        else:
            out.append(f"chunk_ids are not 0..{len(cs) - 1}: {ids[:8]}{'...' if len(ids) > 8 else ''}")
    pos = 0
    for cid, s, e in cs:
        if e <= s:
            out.append(f"chunk {cid} is empty or reversed: frames [{s}, {e})")
        if s > pos:
            out.append(f"gap: frames [{pos}, {s}) are in no chunk (before chunk {cid})")
        elif s < pos:
            out.append(f"overlap: chunk {cid} starts at frame {s}, before the previous chunk's end {pos}")
        pos = max(pos, e)
    if n_frames is not None and pos != n_frames:
        if pos < n_frames:
            out.append(f"frames [{pos}, {n_frames}) of the video are in no chunk")
        else:
            out.append(f"chunks reach frame {pos}, the video has {n_frames} frames")
    sizes = [e - s for _, s, e in cs]
    if len(sizes) > 2 and len(set(sizes[:-1])) > 1:
        out.append(f"chunks other than the last differ in size: {sorted(set(sizes[:-1]))[:5]}")
    if len(sizes) >= 2 and sizes[-1] > sizes[0]:
        out.append(f"the last chunk ({sizes[-1]} frames) is longer than a full chunk ({sizes[0]})")
    return out


def check_pts_ns(pts: np.ndarray, pts_ns: np.ndarray, time_base) -> list[str]:
    """``pts_ns`` must be ``pts * time_base`` in ns (floored; ``time_base`` a Fraction-like
    with numerator/denominator), either absolute or from the first frame, within 1 ns."""
    num, den = int(time_base.numerator), int(time_base.denominator)
    p = pts.astype(object)                      # exact big-int arithmetic
    exp = np.array([(int(v) * num * 1_000_000_000) // den for v in p], dtype=np.int64)
    got = np.asarray(pts_ns, dtype=np.int64)
    ok_abs = np.abs(got - exp) <= 1
    ok_rel = np.abs(got - (exp - exp[0])) <= 1
    if np.all(ok_abs) or np.all(ok_rel):
        return []
    bad = ~ok_abs if ok_abs.sum() >= ok_rel.sum() else ~ok_rel
    i = _first(bad)
    return [f"pts_ns is not pts x time_base ({num}/{den} s): row {i} has {int(got[i])}, expected "
            f"{int(exp[i])} ({_rows(int(bad.sum()))})"]


def check_in_range(values: np.ndarray, valid: np.ndarray, lo: int | float, hi: int | float,
                   name: str, hi_inclusive: bool = False) -> list[str]:
    """Non-null ``values`` must lie in ``[lo, hi)`` (``[lo, hi]`` if ``hi_inclusive``)."""
    v = np.asarray(values)
    ok = (v >= lo) & ((v <= hi) if hi_inclusive else (v < hi))
    bad = np.asarray(valid, dtype=bool) & ~ok
    if np.any(bad):
        i = _first(bad)
        br = "]" if hi_inclusive else ")"
        return [f"{name} out of range [{lo}, {hi}{br}: row {i} has {v[i]} ({_rows(int(bad.sum()))})"]
    return []
