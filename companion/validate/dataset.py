"""Validate a dataset root against the contract (docs/contracts/validation.md).

Checks: dataset.json (JSON Schema, format_version major); index.parquet
(CHUNK_INDEX_SCHEMA, unique (video_id, chunk_id), paths inside the root and in the seed
000 layout, files present, nothing on disk missing from the index); per video: chunks
tile [0, n_frames) with no gap or overlap, chunk times continuous; per chunk: the video
file holds exactly end_frame - start_frame frames (demux count), metadata.json (chunk
JSON Schema, fields consistent with the index), actions_raw / actions_processed
(schemas, row count = n_events, t_ns sorted and inside the chunk, timestamp_ms = ms
since the chunk's first frame, frame_idx/frame_ref in range and consistent; ``held``
rows only in actions_processed, first, at the chunk start, a held mousemove with
normalized coordinates); checksums (format 1.2.0): root ``integrity.sha256`` and
``index/<video_id>.xxh128`` or ``.sha256`` (format 1.4.0: either) verified and complete
when present.
"""
from __future__ import annotations

import zlib
from pathlib import Path, PurePosixPath

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from ..contract.schemas import ACTIONS_PROCESSED_SCHEMA, ACTIONS_RAW_SCHEMA, CHUNK_INDEX_SCHEMA
from ..util.checksum import ALGORITHMS, algorithm_of
from . import checks
from .common import Report, column, count_video_frames, read_json, read_parquet, \
    read_parquet_schema

_NS_PER_MS = 1_000_000


def _safe_rel(p) -> bool:
    if not isinstance(p, str) or not p:
        return False
    parts = PurePosixPath(p).parts
    return not p.startswith("/") and "\\" not in p and ".." not in parts and ":" not in parts[0]


def _video_lengths(meta) -> dict[str, int]:
    """n_frames per video_id if dataset.json lists them (``videos`` as a list of objects
    with video_id and n_frames/frame_count, or an object keyed by video_id)."""
    out: dict[str, int] = {}
    if not isinstance(meta, dict):
        return out
    vids = meta.get("videos")
    items = []
    if isinstance(vids, list):
        items = [(v.get("video_id"), v) for v in vids if isinstance(v, dict)]
    elif isinstance(vids, dict):
        items = [(k, v) for k, v in vids.items() if isinstance(v, dict)]
    for vid, v in items:
        n = v.get("n_frames", v.get("frame_count"))
        if isinstance(vid, str) and isinstance(n, int) and not isinstance(n, bool):
            out[vid] = n
    return out


def validate_dataset(root: Path, check_videos: bool = True) -> list:
    """All problems of the dataset root ``root`` (empty list = valid)."""
    return dataset_report(root, check_videos).problems


def dataset_report(root: Path, check_videos: bool = True) -> Report:
    """Problems and facts (``videos``, ``chunks``, ``events``) of a dataset root."""
    rep = Report(root)
    meta = read_json(rep, "dataset.json", "dataset")
    schema = read_parquet_schema(rep, "index.parquet")
    if schema is None:
        check_checksums(rep, _rows_from_parts(root))   # still name what changed
        return rep
    rep.extend("index.parquet", checks.compare_schema(schema, CHUNK_INDEX_SCHEMA))
    idx = read_parquet(rep, "index.parquet", CHUNK_INDEX_SCHEMA.names)
    if idx is None:
        check_checksums(rep, _rows_from_parts(root))
        return rep
    # the per-row checks need the contract's column types; a schema problem is already reported
    for f in CHUNK_INDEX_SCHEMA:
        if f.name not in idx.column_names or not idx.schema.field(f.name).type.equals(f.type):
            check_checksums(rep, _rows_from_parts(root))
            return rep
    rep.extend("index.parquet", checks.check_nulls(idx, CHUNK_INDEX_SCHEMA))
    rows = idx.to_pylist()
    rep.facts.update(videos=len({r.get("video_id") for r in rows}), chunks=len(rows),
                     events=sum(r["n_events"] for r in rows if isinstance(r.get("n_events"), int)))
    if not rows:
        rep.add("index.parquet", "has no chunks")

    lengths = _video_lengths(meta)
    by_video: dict[str, list[dict]] = {}
    seen: set = set()
    for i, r in enumerate(rows):
        key = (r.get("video_id"), r.get("chunk_id"))
        if key in seen:
            rep.add("index.parquet", f"row {i}: video {key[0]} chunk {key[1]} appears twice")
        seen.add(key)
        if isinstance(r.get("video_id"), str) and isinstance(r.get("chunk_id"), int):
            by_video.setdefault(r["video_id"], []).append(r)

    for vid, rs in sorted(by_video.items()):
        rs_sorted = sorted(rs, key=lambda r: r["chunk_id"])
        n = len(rs_sorted)
        totals: list[tuple[str, dict]] = []     # (metadata.json, original_video) per chunk
        for k, r in enumerate(rs_sorted):
            ov = _check_chunk(rep, r, first=(k == 0), last=(k == n - 1), check_videos=check_videos)
            if ov is not None:
                totals.append(ov)
        n_frames = lengths.get(vid)
        if n_frames is None:
            n_frames = _video_total(rep, vid, totals, n)
        tiles = [(r["chunk_id"], r["start_frame"], r["end_frame"]) for r in rs
                 if isinstance(r.get("start_frame"), int) and isinstance(r.get("end_frame"), int)]
        rep.extend("index.parquet", [f"video {vid}: {m}" for m in
                                     checks.check_chunk_tiling(tiles, n_frames)])
        for a, b in zip(rs_sorted, rs_sorted[1:]):
            if a.get("end_frame") == b.get("start_frame") and a.get("end_t_ns") != b.get("start_t_ns"):
                rep.add("index.parquet", f"video {vid}: chunk {a['chunk_id']} ends at t_ns "
                        f"{a.get('end_t_ns')}, chunk {b['chunk_id']} starts at {b.get('start_t_ns')}")
        fps = {r.get("fps") for r in rs}
        if len(fps) > 1:
            rep.add("index.parquet", f"video {vid}: chunks disagree on fps {sorted(map(str, fps))}")

    _check_shard_rule(rep, meta, rows)
    _check_index_parts(rep, rows)
    _check_orphans(rep, rows)
    check_checksums(rep, rows)
    return rep


def _rows_from_parts(root: Path) -> list[dict]:
    """Index rows from the readable ``index/*.parquet`` parts (when index.parquet itself
    cannot be used, so the checksum files can still be checked and name what changed)."""
    rows: list[dict] = []
    d = root / "index"
    for p in sorted(d.glob("*.parquet")) if d.is_dir() else []:
        if not p.name.startswith("."):
            try:
                rows.extend(pq.read_table(p).to_pylist())
            except Exception:  # noqa: BLE001 - a bad part is reported by the checksums
                pass
    return rows


def _video_total(rep: Report, vid: str, totals: list[tuple[str, dict]], n_chunks: int) -> int | None:
    """The video's frame count from its chunks' ``original_video.total_frames`` (format
    1.2.0; None when no chunk has it): every chunk that has it must agree, and
    ``total_chunks`` must equal the number of chunks in the index."""
    frames: dict[int, str] = {}
    for rel, ov in totals:
        tf, tc = ov.get("total_frames"), ov.get("total_chunks")
        if isinstance(tf, int) and not isinstance(tf, bool):
            frames.setdefault(tf, rel)
        if isinstance(tc, int) and not isinstance(tc, bool) and tc != n_chunks:
            rep.add(rel, f"original_video.total_chunks {tc} but index.parquet lists {n_chunks} "
                         f"chunks of video {vid}")
    if len(frames) > 1:
        (a, ra), (b, rb) = sorted(frames.items())[:2]
        rep.add(rb, f"original_video.total_frames {b} but {ra} says {a}")
    return max(frames) if frames else None


CRC32_RULE = "crc32(utf8(video_id)) % num_shards"


def _check_shard_rule(rep: Report, meta, rows: list[dict]) -> None:
    """If dataset.json declares the crc32 shard rule, every video is in its shard."""
    if not isinstance(meta, dict) or meta.get("shard_rule") != CRC32_RULE:
        return
    n = meta.get("num_shards")
    if not isinstance(n, int) or isinstance(n, bool) or n <= 0:
        return
    for vid in sorted({r.get("video_id") for r in rows if isinstance(r.get("video_id"), str)}):
        want = f"SHARD_{zlib.crc32(vid.encode('utf-8')) % n:04d}"
        got = {r.get("shard") for r in rows if r.get("video_id") == vid}
        if got != {want}:
            rep.add("index.parquet", f"video {vid} is in {sorted(map(str, got))}, the shard rule "
                                     f"({CRC32_RULE}, num_shards {n}) says {want}")


def _check_index_parts(rep: Report, rows: list[dict]) -> None:
    """``index/<video_id>.parquet`` (per-video parts that index.parquet is built from),
    when present, hold exactly the index rows of their video."""
    d = rep.root / "index"
    if not d.is_dir():
        return
    vids = {r.get("video_id") for r in rows}
    parts = {p.stem: p for p in d.glob("*.parquet") if not p.name.startswith(".")}
    key = lambda r: (r.get("chunk_id") or 0)  # noqa: E731
    for vid, p in sorted(parts.items()):
        rel = f"index/{p.name}"
        try:
            part = pq.read_table(p).to_pylist()
        except Exception as e:  # pyarrow raises several types for a bad file
            rep.add(rel, f"not a readable Parquet file ({' '.join(str(e).split())[:200]})")
            continue
        mine = sorted((r for r in rows if r.get("video_id") == vid), key=key)
        if sorted(part, key=key) != mine:
            rep.add(rel, f"differs from the rows of video {vid} in index.parquet "
                         f"({len(part)} rows here, {len(mine)} there)")
    for vid in sorted(v for v in vids if isinstance(v, str) and v not in parts):
        rep.add(f"index/{vid}.parquet", "missing: index.parquet lists this video")


ROOT_CHECKSUMS = "integrity.sha256"
CHUNK_FILES = ("actions_raw.parquet", "actions_processed.parquet", "metadata.json")


def _read_checksums(rep: Report, rel: str, algo: str = "sha256") -> dict[str, str]:
    """Parse and verify one ``sha256sum`` (``xxh128sum``: ``algo``) file of the root
    (paths relative to the root): every listed file exists and has the listed digest.
    Returns its entries."""
    from .session import verify_checksum_file
    entries, _text = verify_checksum_file(
        rep, rel, lambda _a, _d: f"{algo} does not match {rel}: the file changed after it "
                                 f"was written", algo)
    rep.facts["files_hashed"] = rep.facts.get("files_hashed", 0) + len(entries)
    return entries


def check_checksums(rep: Report, rows: list[dict]) -> None:
    """Checksum files (format 1.2.0; docs/contracts/validation.md, "checksums").

    Root ``integrity.sha256`` (``check_root_checksums``), required when any
    ``index/<video_id>.<algorithm>`` exists (nm-align writes them together); each
    video's ``index/<video_id>.xxh128`` or ``.sha256`` (``check_video_checksums``; one
    per video: nm-align removes the other when it writes one). A video without one is
    not an error (written before 1.2.0 or with ``--no-checksums``): counted in
    ``facts["videos_without_checksums"]``."""
    d = rep.root / "index"
    parts = sorted(p.name for p in d.iterdir() if p.is_file() and not p.name.startswith(".")) \
        if d.is_dir() else []
    sums = {n: algorithm_of(n) for n in parts if algorithm_of(n)}
    if (rep.root / ROOT_CHECKSUMS).is_file():
        check_root_checksums(rep, parts)
    elif sums:
        rep.add(ROOT_CHECKSUMS, f"missing: index/ has per-video checksum files "
                                f"({min(sums)}, ...), which nm-align writes with it")
    by_video: dict[str, list[dict]] = {}
    for r in rows:
        if isinstance(r.get("video_id"), str):
            by_video.setdefault(r["video_id"], []).append(r)
    without = 0
    for vid, rs in sorted(by_video.items()):
        mine = [a for a in ALGORITHMS if f"{vid}.{a}" in sums]
        if len(mine) > 1:
            rep.add(f"index/{vid}.{mine[1]}", f"a second checksum file of video {vid} (beside "
                                             f"index/{vid}.{mine[0]}; nm-align keeps one)")
        for a in mine:
            check_video_checksums(rep, vid, rs, a)
        if not mine:
            without += 1
    for name, a in sorted(sums.items()):
        if name[:-len(a) - 1] not in by_video:
            rep.add(f"index/{name}", "checksums of a video that index.parquet does not list")
    if without:
        rep.facts["videos_without_checksums"] = without


def check_root_checksums(rep: Report, parts: list[str]) -> None:
    """The root ``integrity.sha256``: verified, and it lists ``dataset.json``,
    ``index.parquet`` and every ``index/*.parquet`` and per-video checksum file
    (``parts``: the names in ``index/``)."""
    listed = _read_checksums(rep, ROOT_CHECKSUMS)
    want = ["dataset.json", "index.parquet"] + [f"index/{n}" for n in parts
                                                if n.endswith(".parquet") or algorithm_of(n)]
    for name in want:
        if name not in listed and (rep.root / name).is_file():
            rep.add(name, f"not covered by {ROOT_CHECKSUMS}")


def check_video_checksums(rep: Report, vid: str, rs: list[dict], algo: str = "sha256") -> None:
    """``index/<vid>.<algo>``: verified; it lists every file of the video's chunks (the
    index rows' paths ``rs`` plus whatever is on disk in the video's folders) and no
    other existing file."""
    rel = f"index/{vid}.{algo}"
    listed = _read_checksums(rep, rel, algo)
    mine: set[str] = set()
    tops = set()
    for r in rs:
        for f in ("video_path", "audio_path"):
            if isinstance(r.get(f), str) and _safe_rel(r[f]):
                mine.add(r[f])
                tops.add(str(PurePosixPath(r[f]).parent))
        ad = r.get("actions_dir")
        if isinstance(ad, str) and _safe_rel(ad):
            mine.update(f"{ad}/{n}" for n in CHUNK_FILES
                        if n != "actions_processed.parquet" or (rep.root / ad / n).exists())
            tops.add(str(PurePosixPath(ad).parent))
    for top in sorted(tops):       # files on disk in the video's folders
        base = rep.root / top
        if base.is_dir() and PurePosixPath(top).name == vid:
            for p in base.rglob("*"):
                sub = p.relative_to(base).parts
                if p.is_file() and not any(x.startswith(".") for x in sub):
                    mine.add(p.relative_to(rep.root).as_posix())
    for name in sorted(mine - set(listed)):
        rep.add(name, f"not covered by {rel}")
    for name in sorted(set(listed) - mine):
        if (rep.root / name).is_file():     # a missing one is reported already
            rep.add(rel, f"lists {name}, which is not a file of video {vid}'s chunks")


def _check_layout(rep: Report, r: dict, field: str, top: str) -> bool:
    p = r.get(field)
    cid = r.get("chunk_id")
    if not _safe_rel(p):
        rep.add("index.parquet", f"video {r.get('video_id')} chunk {cid}: {field} {p!r} is not a "
                                 f"relative path inside the dataset")
        return False
    parts = PurePosixPath(p).parts
    if len(parts) < 4 or parts[0] != top or parts[1] != r.get("shard") or parts[2] != r.get("video_id"):
        rep.add("index.parquet", f"video {r.get('video_id')} chunk {cid}: {field} {p!r} is not "
                                 f"{top}/<shard>/<video_id>/... (shard {r.get('shard')})")
    return True


def _check_chunk(rep: Report, r: dict, first: bool, last: bool,
                 check_videos: bool) -> tuple[str, dict] | None:
    """Check one chunk's files; returns (its metadata.json, its ``original_video``) when
    that parses, for the per-video checks."""
    vid, cid = r["video_id"], r["chunk_id"]
    s, e = r.get("start_frame"), r.get("end_frame")
    size = (e - s) if isinstance(s, int) and isinstance(e, int) else None
    st, et = r.get("start_t_ns"), r.get("end_t_ns")
    if isinstance(st, int) and isinstance(et, int) and et <= st:
        rep.add("index.parquet", f"video {vid} chunk {cid}: end_t_ns {et} is not after start_t_ns {st}")
    if isinstance(r.get("shard"), str) and not (r["shard"].startswith("SHARD_") and r["shard"][6:].isdigit()):
        rep.add("index.parquet", f"video {vid} chunk {cid}: shard {r['shard']!r} is not SHARD_<digits>")

    # chunk video
    if _check_layout(rep, r, "video_path", "video"):
        vp = r["video_path"]
        if not (rep.root / vp).is_file():
            rep.add(vp, "missing (listed in index.parquet)")
        elif check_videos and size is not None:
            vc = count_video_frames(rep.root / vp)
            if vc.error:
                rep.add(vp, vc.error)
            elif vc.n_frames != size:
                rep.add(vp, f"has {vc.n_frames} frames, chunk {cid} covers {size} "
                            f"(frames [{s}, {e}))")
    ap = r.get("audio_path")
    if ap is not None:
        if _check_layout(rep, r, "audio_path", "audio") and not (rep.root / ap).is_file():
            rep.add(ap, "missing (listed in index.parquet)")

    # actions folder
    if not _check_layout(rep, r, "actions_dir", "actions"):
        return None
    ad = r["actions_dir"]
    if not (rep.root / ad).is_dir():
        rep.add(ad, "missing (listed in index.parquet)")
        return None
    md = read_json(rep, f"{ad}/metadata.json", "chunk_metadata")
    if isinstance(md, dict):
        _check_chunk_meta(rep, f"{ad}/metadata.json", md, r, size)
    _check_actions(rep, f"{ad}/actions_raw.parquet", ACTIONS_RAW_SCHEMA, r, first, last, required=True)
    if (rep.root / ad / "actions_processed.parquet").exists():
        _check_actions(rep, f"{ad}/actions_processed.parquet", ACTIONS_PROCESSED_SCHEMA, r, first,
                       last, required=False)
    ov = md.get("original_video") if isinstance(md, dict) else None
    return (f"{ad}/metadata.json", ov) if isinstance(ov, dict) else None


def _check_chunk_meta(rep: Report, rel: str, md: dict, r: dict, size: int | None) -> None:
    cid = md.get("chunk_id")
    try:
        cid_int = int(cid) if not isinstance(cid, bool) else None
    except (TypeError, ValueError):
        cid_int = None
    if cid_int is not None and cid_int != r["chunk_id"]:
        rep.add(rel, f"chunk_id {cid!r} but index.parquet says {r['chunk_id']}")
    cs = md.get("chunk_size")
    if isinstance(cs, int) and size is not None and cs != size:
        rep.add(rel, f"chunk_size {cs} but the chunk covers {size} frames")
    ov = md.get("original_video")
    if isinstance(ov, dict):
        for k in ("start_frame", "end_frame"):
            if isinstance(ov.get(k), int) and isinstance(r.get(k), int) and ov[k] != r[k]:
                rep.add(rel, f"original_video.{k} {ov[k]} but index.parquet says {r[k]}")
        if isinstance(ov.get("video_id"), str) and ov["video_id"] != r["video_id"]:
            rep.add(rel, f"original_video.video_id {ov['video_id']!r} but index.parquet says "
                         f"{r['video_id']!r}")
        fps = ov.get("fps")
        if isinstance(fps, (int, float)) and isinstance(r.get("fps"), float) and r["fps"] > 0 \
                and abs(fps - r["fps"]) > 1e-3 * r["fps"]:
            rep.add(rel, f"original_video.fps {fps} but index.parquet says {r['fps']}")


def _check_actions(rep: Report, rel: str, schema, r: dict, first: bool, last: bool,
                   required: bool) -> None:
    sch = read_parquet_schema(rep, rel)
    if sch is None:
        return
    rep.extend(rel, checks.compare_schema(sch, schema))
    t = read_parquet(rep, rel, ["timestamp_ms", "frame_idx", "t_ns", "frame_ref", "confidence",
                                "state", "event_type", "mouse_x_norm", "mouse_y_norm"])
    if t is None:
        return
    rep.extend(rel, [m for m in checks.check_nulls(t, schema)])
    rep.extend(rel, _check_held_rows(t, r, processed=not required))
    t = t.select([c for c in ("timestamp_ms", "frame_idx", "t_ns", "frame_ref", "confidence")
                  if c in t.column_names])
    if required and isinstance(r.get("n_events"), int) and t.num_rows != r["n_events"]:
        rep.add(rel, f"has {t.num_rows} rows, index.parquet n_events says {r['n_events']}")
    s, e = r.get("start_frame"), r.get("end_frame")
    st, et = r.get("start_t_ns"), r.get("end_t_ns")
    if not all(isinstance(v, int) for v in (s, e, st, et)):
        return
    tn = column(t, "t_ns")
    if tn is None or not np.all(tn[1]):
        return
    rep.extend(rel, checks.check_non_decreasing(tn[0], "t_ns"))
    fr = column(t, "frame_ref")
    ref, ref_ok = (fr if fr is not None else (np.zeros(t.num_rows, np.int64), np.zeros(t.num_rows, bool)))
    rep.extend(rel, checks.check_in_range(ref, ref_ok, s, e, "frame_ref"))
    # events on a frame of this chunk happen inside the chunk's time span
    inside = (tn[0] >= st) & (tn[0] < et)
    bad = ref_ok & ~inside
    if np.any(bad):
        i = int(np.flatnonzero(bad)[0])
        rep.add(rel, f"t_ns outside the chunk [{st}, {et}): row {i} has {int(tn[0][i])} "
                     f"({int(bad.sum())} rows)")
    # rows without a frame belong before the first frame (first chunk) or after the end (last)
    stray = ~ref_ok & ~(((tn[0] < st) & first) | ((tn[0] >= et) & last) | inside)
    if np.any(stray):
        i = int(np.flatnonzero(stray)[0])
        rep.add(rel, f"row {i} has no frame_ref and t_ns {int(tn[0][i])} is not before the video "
                     f"or after it ({int(stray.sum())} rows)")
    fi = column(t, "frame_idx")
    if fi is not None:
        rep.extend(rel, checks.check_in_range(fi[0], fi[1], 0, e - s, "frame_idx"))
        both = fi[1] & ref_ok
        mism = both & (fi[0] != ref - s)
        if np.any(mism):
            i = int(np.flatnonzero(mism)[0])
            rep.add(rel, f"frame_idx is not frame_ref - start_frame: row {i} has {int(fi[0][i])}, "
                         f"expected {int(ref[i] - s)} ({int(mism.sum())} rows)")
    ts = column(t, "timestamp_ms")
    if ts is not None:
        exact = tn[0] - st          # ns since the chunk's first frame
        off = np.abs(ts[0] * _NS_PER_MS - exact)
        badts = ts[1] & (off >= _NS_PER_MS)
        if np.any(badts):
            i = int(np.flatnonzero(badts)[0])
            rep.add(rel, f"timestamp_ms is not ms since the chunk's first frame: row {i} has "
                         f"{int(ts[0][i])}, t_ns says {exact[i] / _NS_PER_MS:.3f} ({int(badts.sum())} rows)")
    conf = column(t, "confidence")
    if conf is not None:
        rep.extend(rel, checks.check_in_range(conf[0], conf[1], 0.0, 1.0, "confidence", hi_inclusive=True))


# event types a ``held`` row may have: keys/buttons down at the chunk start, and (format
# 1.1.0) the carried mouse position and focus
HELD_EVENT_TYPES = ("keydown", "mousedown", "mousemove", "focus")


def _check_held_rows(t, r: dict, processed: bool) -> list[str]:
    """``state == "held"`` rows (docs/contracts/dataset-layout.md): only in
    actions_processed, first in the file, at the chunk start (t_ns = start_t_ns,
    timestamp_ms 0, frame_idx 0, frame_ref = start_frame), of a known kind, at most one
    mousemove and one focus, and a held mousemove has normalized coordinates in [0, 1]."""
    if "state" not in t.column_names or not pa.types.is_string(t.schema.field("state").type):
        return []
    state = t.column("state").to_pylist()
    held = np.array([v == "held" for v in state], bool)
    if not held.any():
        return []
    rows = np.flatnonzero(held)
    if not processed:
        return [f"{rows.size} rows have state 'held' (row {int(rows[0])}): carried state "
                f"belongs in actions_processed only"]
    out = []
    if rows[-1] != rows.size - 1:
        i = int(np.flatnonzero(~held)[0])
        out.append(f"held rows must come first: row {i} is not held but row {int(rows[-1])} is")
    et = t.column("event_type").to_pylist() if "event_type" in t.column_names else \
        [None] * len(state)
    kinds = [et[i] for i in rows.tolist()]
    bad = [(i, k) for i, k in zip(rows.tolist(), kinds) if k not in HELD_EVENT_TYPES]
    if bad:
        out.append(f"held row {bad[0][0]} has event_type {bad[0][1]!r} (held rows are "
                   f"{', '.join(HELD_EVENT_TYPES)}; {len(bad)} rows)")
    for k in ("mousemove", "focus"):
        if kinds.count(k) > 1:
            out.append(f"{kinds.count(k)} held {k} rows (at most one per chunk)")
    for name, want in (("t_ns", r.get("start_t_ns")), ("timestamp_ms", 0), ("frame_idx", 0),
                       ("frame_ref", r.get("start_frame"))):
        c = column(t, name)
        if c is None or not isinstance(want, int):
            continue
        wrong = rows[~c[1][rows] | (c[0][rows] != want)]
        if wrong.size:
            i = int(wrong[0])
            got = int(c[0][i]) if c[1][i] else None
            out.append(f"held row {i} has {name} {got}, expected {want} (the chunk start; "
                       f"{wrong.size} rows)")
    moves = rows[[k == "mousemove" for k in kinds]]
    if moves.size:
        for name in ("mouse_x_norm", "mouse_y_norm"):
            c = column(t, name)
            if c is None:
                continue
            with np.errstate(invalid="ignore"):
                ok = c[1][moves] & (c[0][moves] >= 0.0) & (c[0][moves] <= 1.0)
            if not ok.all():
                i = int(moves[~ok][0])
                v = c[0][i] if c[1][i] else None
                out.append(f"held mousemove row {i} has {name} {v}: the carried position "
                           f"needs normalized coordinates in [0, 1]")
    return out


def _check_orphans(rep: Report, rows: list[dict]) -> None:
    listed_files = {r.get("video_path") for r in rows} | {r.get("audio_path") for r in rows}
    listed_dirs = {r.get("actions_dir") for r in rows}
    for top in ("video", "audio"):
        base = rep.root / top
        if base.is_dir():
            for p in sorted(base.rglob("*")):
                if p.is_file() and not p.name.startswith("."):
                    rel = p.relative_to(rep.root).as_posix()
                    if rel not in listed_files:
                        rep.add(rel, "not listed in index.parquet")
    base = rep.root / "actions"
    if base.is_dir():
        for p in sorted(base.glob("*/*/*")):
            if p.is_dir() and not p.name.startswith("."):
                rel = p.relative_to(rep.root).as_posix()
                if rel not in listed_dirs:
                    rep.add(rel, "chunk folder not listed in index.parquet")
