"""``write_dataset``: one aligned recording -> its chunks in a sharded dataset root.

Atomicity and idempotence. Everything of one video (chunk MP4s, WAVs, actions folders,
its index part) is built under ``ROOT/.staging/<video_id>.<pid>.<random>/``. Only when
all of it exists is it swapped in: under the video's lock a journal
``ROOT/.staging/<video_id>.swap.json`` is written listing the renames, then each of
``actions/ video/ audio/ SHARD/<video_id>`` and ``index/<video_id>.parquet`` is replaced
(old moved to a trash folder, new renamed in; a part the new run no longer has, such as
audio, is removed). A run that dies mid-swap leaves the journal; the next run for that
video (or any ``recover``) rolls it forward. A run that fails before the swap removes
its staging folder and leaves the previous chunks untouched. Then ``index.parquet`` is
rebuilt from all ``index/*.parquet`` under the root's index lock, so concurrent runs
writing different videos never lose each other's rows.

Checksums (format 1.2.0; the algorithm a choice since 1.4.0, on unless
``checksums=False``): ``index/<video_id>.xxh128`` (default) or ``.sha256`` lists the
digest of every file of the video's chunks (root-relative ``xxh128sum`` / ``sha256sum``
lines, ``util.checksum``); it is staged and swapped in with the video's index part, and
the swap removes the video's checksum file of the other algorithm. The chunk MP4s written
from the Matroska walk are hashed by the copy child from the bytes it copies
(``mux_copy``); every other file is hashed here right after it is written. Under the
index lock, after ``index.parquet``, the root ``integrity.sha256`` is rewritten over
``dataset.json``, ``index.parquet`` and every ``index/*`` file, from the same bytes the
index was built from.
"""
from __future__ import annotations

import hashlib
import json
import os
import secrets
import shutil
import time
from concurrent.futures import ThreadPoolExecutor
from fractions import Fraction
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from companion.contract.schemas import CHUNK_INDEX_SCHEMA, EVENTS_SCHEMA
from companion.contract.version import FORMAT_VERSION
from companion.util.atomic import atomic_path
from companion.util import checksum
from companion.util.integrity import sha256_file
from companion.util.procs import pid_alive
from companion.util.errors import BadInput, EnvProblem, NMError

from .actions import BATCH_ROWS, ActionsProcessor, table_batches
from .chunking import ChunkPlan, plan_chunks
from .layout import (DATASET_META, INDEX_FILE, INDEX_PARTS, ROOT_CHECKSUMS, STAGING,
                     VideoLayout, ensure_dataset, layout_for, locked, validate_video_id)
from .early import EarlyStart
from .ffmpeg_copy import split_video_fast

# Chunk files are small (a few thousand rows): per-file encoder set-up dominates. ZSTD
# level 1 without dictionary pages writes them in ~40 % of the time of the defaults and
# smaller (plain strings compress well here); any Parquet reader reads them.
# Page CRC-32s (format 1.2.0) let a reader that asks for verification
# (``page_checksum_verification=True``, as nm-validate does) catch a damaged data page
# even without the sha256 files; they cost ~3 % of the Parquet encoding time (62k events,
# 12 MB: 0.065 s vs 0.063 s).
_PARQUET_OPTS = {"compression": "zstd", "compression_level": 1, "use_dictionary": False,
                 "write_page_checksum": True}


def _frame_interval_ns(fps: Fraction) -> int:
    return int(round(Fraction(1_000_000_000) / Fraction(fps)))


def _check_inputs(scan, frames: pa.Table) -> None:
    n = len(scan.pts)
    if n == 0:
        raise BadInput(f"{scan.path}: the video has no frames")
    if frames.num_rows != n:
        raise BadInput(f"frames table has {frames.num_rows} rows but {scan.path} has {n} "
                       f"frames: the frames table belongs to another video")
    for col in ("pts", "t_ns", "pts_ns"):
        if col not in frames.column_names:
            raise BadInput(f"frames table lacks column {col!r}")
    fpts = frames.column("pts").to_numpy()
    if not np.array_equal(fpts, np.asarray(scan.pts)):
        raise BadInput(f"frames table pts differ from {scan.path}: it belongs to another video")
    if not scan.width or not scan.height:
        raise BadInput(f"{scan.path}: unknown video size")


def _source_label(session_meta: dict, has_audio: bool) -> str:
    if isinstance(session_meta.get("source"), str) and session_meta["source"]:
        return session_meta["source"]
    return "screen+audio" if has_audio else "screen"


def _modality_config(session_meta: dict, scan, events_present: set[str]) -> dict:
    dev = str(session_meta.get("input_device") or "")
    kb = "keyboard" in dev or "keyboard" in events_present
    ms = "mouse" in dev or "mouse" in events_present
    audio = bool(scan.has_audio)
    return {
        "screen": {"enabled": True},
        "webcam": {"enabled": bool(session_meta.get("webcam", False))},
        "audio": {"enabled": audio,
                  "channels": int(scan.audio_channels) if audio and scan.audio_channels else None,
                  "sample_rate": int(scan.audio_rate) if audio and scan.audio_rate else None},
        "keyboard": {"enabled": kb},
        "mouse": {"enabled": ms, "coordinate_space": "screen"},
        "gamepad": {"enabled": False},
    }


def _chunk_metadata(video_id: str, plan: ChunkPlan, lay: VideoLayout, scan, pts_ns: np.ndarray,
                    frame_t: np.ndarray, end_t_ns: int, mode: str, demoted: str | None,
                    has_audio_files: bool, audio_stat: dict | None, act_stats: dict,
                    session_meta: dict, modality: dict, timing: dict, n_chunks: int) -> dict:
    fps = Fraction(scan.fps)
    n = len(pts_ns)
    interval = Fraction(1_000_000_000) / fps
    start_s = int(pts_ns[plan.start_frame]) / 1e9
    end_ns = int(pts_ns[plan.end_frame]) if plan.end_frame < n else \
        int(pts_ns[-1]) + int(round(interval))
    t1 = int(frame_t[plan.end_frame]) if plan.end_frame < n else end_t_ns
    align = session_meta.get("alignment") if isinstance(session_meta.get("alignment"), dict) else {}
    cname = lay.chunk_actions(plan.chunk_id).name
    meta = {
        "format_version": FORMAT_VERSION,
        "uuid": f"{cname}_actions",
        "chunk_id": f"{plan.chunk_id:04d}",
        "chunk_size": plan.n_frames,
        "original_video": {
            # seed 000 example order: [height, width]; width/height keys say it explicitly
            "resolution": [int(scan.height), int(scan.width)],
            "width": int(scan.width),
            "height": int(scan.height),
            "video_id": video_id,
            "session_id": session_meta.get("session_id"),
            "source": _source_label(session_meta, bool(scan.has_audio)),
            "url": str(lay.chunk_video(plan.chunk_id)),
            "start_time": start_s,
            "end_time": end_ns / 1e9,
            "duration": end_ns / 1e9 - start_s,
            "start_frame": plan.start_frame,
            "end_frame": plan.end_frame,
            "total_frames": n,
            "total_chunks": n_chunks,
            "fps": float(fps),
            "fps_rational": f"{fps.numerator}/{fps.denominator}",
            "codec": scan.codec,
        },
        "modality_config": modality,
        "bbox_controller_overlay": [0, 0, 0, 0],
        "bbox_game_area": {"xtl": 0.0, "ytl": 0.0, "xbr": 1.0, "ybr": 1.0},
        "bbox_others": [],
        "sync": {
            "timebase": "ms",
            "video_offset_ms": 0,
            "audio_offset_ms": 0,
            "clock_drift_ppm": session_meta.get("clock_drift_ppm"),
            "anchor_source": align.get("anchor_source"),
            "alignment_confidence": align.get("confidence"),
        },
        "t_ns": {"start": int(frame_t[plan.start_frame]), "end": t1},
        "timing": timing,
        "video": {"path": str(lay.chunk_video(plan.chunk_id)), "cut": mode,
                  **({"reencode_reason": demoted} if demoted else {})},
        "audio": ({"path": str(lay.chunk_audio(plan.chunk_id)),
                   "samples": audio_stat["samples"] if audio_stat else None,
                   "silence_samples": (audio_stat["samples"] - audio_stat["filled"])
                   if audio_stat else None} if has_audio_files else None),
        "actions": act_stats,
    }
    return meta


def _reencode_reason(plan: ChunkPlan, scan, res) -> str | None:
    """Why a chunk was (partly) re-encoded (None when it was stream-copied)."""
    if res.modes[plan.chunk_id] == "copy":
        return None
    if plan.chunk_id in res.demoted:
        why = res.demoted[plan.chunk_id]
    elif not bool(scan.keyframe[plan.start_frame]):
        why = f"frame {plan.start_frame} (first of the chunk) is not a keyframe"
    else:
        why = f"frame {plan.end_frame} (first of the next chunk) is not a keyframe"
    if plan.chunk_id in res.smart_fallback:
        why += f"; whole chunk re-encoded: {res.smart_fallback[plan.chunk_id]}"
    return why


def _chunk_timing(frames: pa.Table, plan: ChunkPlan) -> dict:
    """Recording segments (pauses) and OBS frame-grid gaps inside the chunk."""
    out: dict = {}
    sl = frames.slice(plan.start_frame, plan.n_frames)
    if "segment" in frames.column_names:
        out["segments"] = sorted(set(sl.column("segment").unique().to_pylist()))
    if "slot" in frames.column_names:
        slots = sl.column("slot").to_numpy()
        out["frame_slots_missing"] = int(slots[-1] - slots[0] + 1 - len(slots))
    return out


def _write_parquet(table: pa.Table, path: Path) -> None:
    pq.write_table(table, path, **_PARQUET_OPTS)


def _event_batches(events):
    """Event batches in t_ns order from None, an events table (any row order, sorted in
    memory as before) or the path of an events.parquet file (read a batch at a time;
    the file must be sorted by t_ns, as nm-align writes it: ``ActionsProcessor`` raises
    BadInput at the first row going back in time).

    A file is read one row group at a time, each by a fresh ``ParquetFile``: one reader
    over the whole file keeps every column chunk it has read allocated until it is
    closed (pyarrow 26: +130 MB per 4M events), so memory would grow with the file."""
    if events is None or isinstance(events, pa.Table):
        yield from table_batches(events)
        return
    if not isinstance(events, (str, os.PathLike)):
        raise BadInput(f"events must be None, a pyarrow Table or a path, not "
                       f"{type(events).__name__}")
    path = Path(events)
    try:
        with pq.ParquetFile(path) as pf:
            md = pf.metadata
            missing = [f.name for f in EVENTS_SCHEMA if f.name not in pf.schema_arrow.names]
        if missing:
            raise BadInput(f"{path}: events table lacks columns: {', '.join(missing)}")
        for group in range(md.num_row_groups):
            with pq.ParquetFile(path, metadata=md) as pf:
                yield from pf.iter_batches(batch_size=BATCH_ROWS, row_groups=[group],
                                           columns=EVENTS_SCHEMA.names)
    except FileNotFoundError:
        raise BadInput(f"{path}: events file not found") from None
    except (OSError, pa.ArrowException) as e:
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise BadInput(f"{path}: unreadable events file ({msg})") from None


def write_dataset(root, video_id: str, scan, frames: pa.Table,
                  events: pa.Table | str | os.PathLike | None,
                  session_meta: dict | None, chunk_seconds: float = 20.0, progress=None, *,
                  num_shards: int | None = None, video_path=None,
                  use_ffmpeg: bool = True, early: EarlyStart | None = None,
                  checksums: bool | str = True) -> dict:
    """Write the chunks of one video into the dataset at ``root`` (seed 000 layout).

    ``scan``: the ``VideoScan`` of the recording (``scan.path`` is read unless
    ``video_path`` is given); ``frames``: its FRAMES_SCHEMA table; ``events``: its
    EVENTS_SCHEMA table, any row order, or the path of its events.parquet file sorted by
    ``t_ns`` (as nm-align writes it; read a row group and ``BATCH_ROWS`` rows at a time,
    so memory does not grow with the recording length; a file not sorted by t_ns is a
    BadInput), None = no events. Either way the actions of a chunk are written as soon as
    its events are complete. ``session_meta``: the session metadata dict (seed 001
    fields plus ``alignment``). ``chunk_seconds``: chunk length in seconds
    (``round(chunk_seconds * fps)`` frames). ``progress``: a ``util.progress.Progress``
    (its total is set to the chunk count and it advances once per chunk video).
    ``num_shards``: only when creating the root (default 16). ``use_ffmpeg``: when
    every chunk is a plain stream copy, cut the MP4s with one ffmpeg CLI process
    (``ffmpeg_copy.py``, checked against the plan, PyAV fallback); False: always PyAV.

    Returns a JSON-able summary: ``video_id, shard, chunks, copied, reencoded,
    frames, events, audio, seconds, root``, ``copy_tool`` (``mp4mux``: the chunk MP4s were
    written from the scan's Matroska walk, ``mux_copy.py``; ``ffmpeg``; ``pyav``) and,
    when the ffmpeg output was rejected, ``ffmpeg_fallback`` (why).

    ``early``: an ``EarlyStart`` begun before the scan; its staging folder, chunk MP4s
    (from the walk or an early ffmpeg) and audio spool are used when they match the
    real scan and plan (the same frames, timestamps and WAV bytes either way).

    ``checksums``: the algorithm of ``index/<video_id>.<algorithm>`` (every chunk
    file's digest; see the module doc): ``"xxh128"`` (True: the default) or
    ``"sha256"``. False (``nm-align --no-checksums``) skips hashing the chunk files and
    removes the video's previous checksum file; the root ``integrity.sha256`` over the
    index files is kept either way (a few small files).
    """
    t_start = time.monotonic()
    algo = checksum.normalize(checksums)
    if algo is not None:
        try:
            checksum.check_available(algo)
        except checksum.ChecksumUnavailable as e:
            raise EnvProblem(str(e)) from None
    session_meta = dict(session_meta or {})
    root = Path(root)
    validate_video_id(video_id)           # before touching the disk
    _check_inputs(scan, frames)
    src = Path(video_path or scan.path)
    if not src.is_file():
        raise BadInput(f"{src}: video file not found")
    if isinstance(events, (str, os.PathLike)) and not Path(events).is_file():
        raise BadInput(f"{events}: events file not found")
    ds = ensure_dataset(root, num_shards=num_shards, chunk_seconds=chunk_seconds)
    lay = layout_for(video_id, ds["num_shards"])

    n = len(scan.pts)
    plans = plan_chunks(n, scan.fps, scan.keyframe, chunk_seconds)
    if progress is not None:
        progress.total = len(plans)
    frame_t = frames.column("t_ns").to_numpy().astype(np.int64)
    pts_ns = frames.column("pts_ns").to_numpy().astype(np.int64)
    align = session_meta.get("alignment") if isinstance(session_meta.get("alignment"), dict) else {}
    end_t_ns = align.get("end_t_ns")
    if not isinstance(end_t_ns, int) or end_t_ns <= int(frame_t[-1]):
        end_t_ns = int(frame_t[-1]) + _frame_interval_ns(scan.fps)

    recover(root, video_id)
    staging = early.take(root, video_id) if early is not None else None
    early_copy = early_spool = None
    if staging is not None:
        early_copy, early.copy = early.copy, None
        early_spool, early.spool = early.spool, None
    else:
        if early is not None:
            early.discard()
        staging = root / STAGING / f"{video_id}.{os.getpid()}.{secrets.token_hex(4)}"
        try:
            staging.mkdir(parents=True)
        except OSError as e:
            raise EnvProblem(f"cannot create {staging}: {e.strerror}") from None
    committing = False
    try:
        has_audio = bool(scan.has_audio and scan.audio_rate and scan.audio_channels)
        vpaths = [staging / "video" / lay.chunk_video(p.chunk_id).name for p in plans]
        apaths = [staging / "audio" / lay.chunk_audio(p.chunk_id).name for p in plans] \
            if has_audio else None

        digests: dict[str, str] = {}     # staged file (str) -> hex digest (algo)

        def put(path: Path, data: bytes) -> None:
            path.write_bytes(data)
            if algo:
                digests[str(path)] = checksum.bytes_digest(algo, data)

        def on_chunk(cid: int, mode: str) -> None:
            if progress is not None:
                progress.update(1)

        def build_actions() -> tuple[list[dict], set]:
            """actions_*.parquet of every chunk, written as soon as the chunk is complete
            while the events stream through; returns (per-chunk stats, event sources)."""
            proc = ActionsProcessor(frame_t, [(p.start_frame, p.end_frame) for p in plans],
                                    int(scan.width), int(scan.height), end_t_ns)
            out: list[dict] = []

            def write(done) -> None:
                for ch in done:
                    p = plans[ch.index]
                    assert ch.index == len(out)
                    adir = staging / "actions" / lay.chunk_actions(p.chunk_id).name
                    adir.mkdir(parents=True)
                    for name, table in (("actions_raw.parquet", ch.raw),
                                        ("actions_processed.parquet", ch.processed)):
                        _write_parquet(table, adir / name)
                        if algo:            # small files, still in the page cache
                            digests[str(adir / name)] = checksum.file_digest(adir / name,
                                                                             algo)
                    out.append(ch.stats)

            from_file = isinstance(events, (str, os.PathLike))
            try:
                for batch in _event_batches(events):
                    write(proc.feed(batch))
            except BadInput as e:
                if from_file and not str(e).startswith(str(events)):
                    raise BadInput(f"{events}: {e}") from None
                raise
            write(proc.finish())
            return out, proc.sources

        # actions (pyarrow/numpy, mostly GIL-free) overlap the video pass
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="nm-actions") as pool:
            fut = pool.submit(build_actions)
            try:
                e_copy, early_copy = early_copy, None
                res = split_video_fast(src, scan, plans, vpaths, apaths, on_chunk=on_chunk,
                                       ffmpeg=None if use_ffmpeg else False, early=e_copy,
                                       audio_spool=early_spool)
            finally:
                if early_spool is not None:
                    early_spool.remove()
                    early_spool = None
                act_err = fut.exception()
            if act_err is not None:
                raise act_err
            act_stats, sources = fut.result()
        has_audio_files = res.audio is not None
        if algo and res.copy_tool == "mp4mux" and getattr(e_copy, "checksums", None) == algo:
            # MP4s from the walk were hashed by the copy child as it wrote them (with
            # this algorithm); every other file without a digest yet is hashed by
            # _video_checksums
            digests.update(getattr(e_copy, "digests", None) or {})

        modality = _modality_config(session_meta, scan, sources)
        index_rows = []
        total_events = 0
        for p in plans:
            adir = staging / "actions" / lay.chunk_actions(p.chunk_id).name
            stats = act_stats[p.chunk_id]
            meta = _chunk_metadata(video_id, p, lay, scan, pts_ns, frame_t, end_t_ns,
                                   res.modes[p.chunk_id], _reencode_reason(p, scan, res),
                                   has_audio_files,
                                   res.audio[p.chunk_id] if res.audio else None, stats,
                                   session_meta, modality,
                                   _chunk_timing(frames, p), len(plans))
            if res.fast_fallback:
                meta["video"]["ffmpeg_fallback"] = res.fast_fallback
            put(adir / "metadata.json", (json.dumps(meta, indent=2) + "\n").encode("utf-8"))
            total_events += stats["events"]
            index_rows.append({
                "video_id": video_id, "chunk_id": p.chunk_id, "shard": lay.shard,
                "start_frame": p.start_frame, "end_frame": p.end_frame,
                "fps": float(Fraction(scan.fps)),
                "start_t_ns": meta["t_ns"]["start"], "end_t_ns": meta["t_ns"]["end"],
                "n_events": stats["events"],
                "video_path": str(lay.chunk_video(p.chunk_id)),
                "actions_dir": str(lay.chunk_actions(p.chunk_id)),
                "audio_path": str(lay.chunk_audio(p.chunk_id)) if has_audio_files else None,
            })
        _write_parquet(pa.Table.from_pylist(index_rows, schema=CHUNK_INDEX_SCHEMA),
                       staging / "index.parquet")
        if algo:
            (staging / f"index.{algo}").write_text(
                _video_checksums(staging, lay, digests, algo), encoding="utf-8")
        rel = staging.relative_to(root).as_posix()
        moves = [
            [f"{rel}/actions", str(lay.actions_dir)],
            [f"{rel}/video", str(lay.video_dir)],
            [f"{rel}/audio" if has_audio_files else None, str(lay.audio_dir)],
            [f"{rel}/index.parquet", str(lay.index_part)],
        ] + [[f"{rel}/index.{a}" if a == algo else None, str(lay.index_checksums(a))]
             for a in checksum.ALGORITHMS]
        with locked(root, f"video-{video_id}"):
            journal = root / STAGING / f"{video_id}.swap.json"
            with atomic_path(journal) as tmp:
                tmp.write_text(json.dumps({"staging": rel, "moves": moves}),
                               encoding="utf-8")
            committing = True   # from here on the journal, not this process, owns staging
            _apply_journal(root, journal)
    except BaseException as e:
        if early_copy is not None:
            early_copy.discard()
        if early_spool is not None:
            early_spool.remove()
        if not committing:
            shutil.rmtree(staging, ignore_errors=True)
        if isinstance(e, OSError) and not isinstance(e, NMError):
            # disk full, permissions, ... while writing (PyAV's errno errors are OSErrors too)
            raise EnvProblem(f"writing the dataset under {root} failed: "
                             f"{e.strerror or e}") from None
        if type(e).__module__.startswith("av") and not isinstance(e, NMError):
            raise NMError(f"FFmpeg failed while writing chunks of {video_id}: "
                          f"{str(e).splitlines()[0] if str(e) else type(e).__name__}") from None
        raise
    rebuild_index(root)
    modes = res.modes
    return {"root": str(root), "video_id": video_id, "shard": lay.shard,
            "chunks": len(plans), "copied": modes.count("copy"),
            "smart_cut": modes.count("smart"), "reencoded": modes.count("reencode"),
            "reencode_reasons": {str(p.chunk_id): _reencode_reason(p, scan, res)
                                 for p in plans if modes[p.chunk_id] != "copy"},
            "frames": n, "events": total_events, "audio": has_audio_files,
            "copy_tool": res.copy_tool, "checksums": algo or False,
            **({"ffmpeg_fallback": res.fast_fallback} if res.fast_fallback else {}),
            "seconds": round(time.monotonic() - t_start, 3)}


def _video_checksums(staging: Path, lay: VideoLayout, digests: dict[str, str],
                     algo: str) -> str:
    """``index/<video_id>.<algo>``: one ``<hex digest>  <root-relative path>`` line per
    file of the video's staged ``actions/``, ``video/`` and ``audio/`` folders, sorted by
    path (dot-names, work files that readers ignore, are left out). A file without a
    digest in ``digests`` (computed with ``algo``) is hashed here."""
    lines = []
    for top, final in (("actions", lay.actions_dir), ("video", lay.video_dir),
                       ("audio", lay.audio_dir)):
        base = staging / top
        if not base.is_dir():
            continue
        for f in sorted(base.rglob("*")):
            sub = f.relative_to(base)
            if f.is_file() and not any(x.startswith(".") for x in sub.parts):
                digest = digests.get(str(f)) or checksum.file_digest(f, algo)
                lines.append(f"{digest}  {(final / sub.as_posix()).as_posix()}\n")
    return "".join(sorted(lines, key=lambda ln: ln.partition("  ")[2]))


def _apply_journal(root: Path, journal: Path) -> None:
    """Roll a swap journal forward (idempotent: safe to repeat after a crash).

    Journal: ``{"staging": rel, "moves": [[staged_rel | null, final_rel], ...]}``, paths
    relative to the root; ``null`` means "remove final". Replaced finals go to
    ``<staging>/.trash`` and are deleted with the staging folder at the end."""
    spec = json.loads(journal.read_text(encoding="utf-8"))
    staging = root / spec["staging"]
    trash = staging / ".trash"
    trash.mkdir(parents=True, exist_ok=True)
    for k, (staged, final) in enumerate(spec["moves"]):
        final_p = root / final
        staged_p = root / staged if staged else None
        if staged_p is not None and not staged_p.exists():
            continue                         # already moved in by an earlier attempt
        if final_p.exists() or final_p.is_symlink():
            dest = trash / f"{k}.{final_p.name}"
            if dest.exists():
                shutil.rmtree(dest) if dest.is_dir() else dest.unlink()
            os.replace(final_p, dest)
        if staged_p is not None:
            final_p.parent.mkdir(parents=True, exist_ok=True)
            os.replace(staged_p, final_p)
    journal.unlink()
    shutil.rmtree(staging, ignore_errors=True)


def recover(root, video_id: str | None = None) -> None:
    """Finish swaps interrupted by a crash (all videos, or one) and remove staging
    folders of runs that are no longer alive."""
    root = Path(root)
    st = root / STAGING
    if not st.is_dir():
        return
    for journal in sorted(st.glob("*.swap.json")):
        vid = journal.name[:-len(".swap.json")]
        if video_id is not None and vid != video_id:
            continue
        with locked(root, f"video-{vid}"):
            if journal.exists():
                _apply_journal(root, journal)
    for d in st.iterdir():
        parts = d.name.rsplit(".", 2)
        if len(parts) != 3 or not d.is_dir() or not parts[1].isdigit():
            continue
        if video_id is not None and parts[0] != video_id:
            continue
        if not pid_alive(int(parts[1])):
            shutil.rmtree(d, ignore_errors=True)


def rebuild_index(root) -> pa.Table:
    """Rebuild ``ROOT/index.parquet`` from every ``ROOT/index/*.parquet`` (under the
    root's index lock) and return it, sorted by video_id, chunk_id."""
    root = Path(root)
    with locked(root, "index"):
        parts_dir = root / INDEX_PARTS
        tables = []
        sums: dict[str, str] = {}       # root manifest: root-relative path -> sha256
        if parts_dir.is_dir():
            for p in sorted(parts_dir.iterdir()):
                if p.name.startswith(".") or not p.is_file() or not (
                        p.suffix == ".parquet" or checksum.algorithm_of(p.name)):
                    continue
                try:
                    data = p.read_bytes()   # hashed and parsed from the same bytes
                    if p.suffix == ".parquet":
                        tables.append(pq.read_table(pa.BufferReader(data),
                                                    schema=CHUNK_INDEX_SCHEMA))
                except (OSError, pa.ArrowException) as e:
                    raise BadInput(f"{p}: unreadable index part ({e})") from None
                sums[f"{INDEX_PARTS}/{p.name}"] = hashlib.sha256(data).hexdigest()
        table = pa.concat_tables(tables) if tables else CHUNK_INDEX_SCHEMA.empty_table()
        if table.num_rows:
            table = table.sort_by([("video_id", "ascending"), ("chunk_id", "ascending")])
        with atomic_path(root / INDEX_FILE) as tmp:
            pq.write_table(table, tmp, **_PARQUET_OPTS)
            sums[INDEX_FILE] = sha256_file(tmp)
        sums[DATASET_META] = sha256_file(root / DATASET_META)
        with atomic_path(root / ROOT_CHECKSUMS) as tmp:
            tmp.write_text("".join(f"{d}  {n}\n" for n, d in sorted(sums.items())),
                           encoding="utf-8")
        return table


def remove_video(root, video_id: str) -> bool:
    """Remove every chunk of ``video_id`` from the dataset (atomically, like a rewrite with
    nothing). Returns False if the video was not there."""
    root = Path(root)
    ds = ensure_dataset(root)
    lay = layout_for(video_id, ds["num_shards"])
    present = any((root / p).exists() for p in (lay.actions_dir, lay.video_dir, lay.audio_dir,
                                                lay.index_part, *lay.all_index_checksums))
    if not present:
        return False
    staging = root / STAGING / f"{video_id}.{os.getpid()}.{secrets.token_hex(4)}"
    staging.mkdir(parents=True)
    rel = staging.relative_to(root).as_posix()
    moves = [[None, str(p)] for p in (lay.actions_dir, lay.video_dir, lay.audio_dir,
                                      lay.index_part, *lay.all_index_checksums)]
    with locked(root, f"video-{video_id}"):
        journal = root / STAGING / f"{video_id}.swap.json"
        with atomic_path(journal) as tmp:
            tmp.write_text(json.dumps({"staging": rel, "moves": moves}),
                           encoding="utf-8")
        _apply_journal(root, journal)
    rebuild_index(root)
    return True
