"""``nm-align``: one recording in, frame-exact session outputs (and dataset chunks) out.

Steps: demux once (pts, keyframes, captions; no decoding) -> choose anchors
(captions / sidecar / OWA subtitles / start marker) -> frame capture times ->
events table with frame_ref -> frames.parquet, events.parquet, metadata.json,
integrity.sha256 (each written atomically) -> optional dataset chunks.
"""
from __future__ import annotations

import datetime as _dt
import json
import os
from fractions import Fraction
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from .. import __version__
from ..contract.schemas import FRAMES_SCHEMA, parquet_write_options
from ..contract.sidecar import read_sidecar, sidecar_path_for
from ..contract.version import FORMAT_VERSION
from ..dataset.early import sidecar_fps as _sidecar_fps
from ..util.atomic import atomic_path, write_json_atomic
from ..util.integrity import recorded_hash, sha256_file, write_integrity
from ..util.errors import BadInput
from ..util.progress import Progress
from . import timeline
from .anchors import AnchorSet, choose_anchors

VIDEO_SUFFIXES = (".mkv", ".mp4", ".mov", ".webm", ".flv", ".ts", ".m4v")
ARTIFACTS = ("frames.parquet", "events.parquet", "metadata.json")


def _fps_from_interval(interval_ns: int) -> Fraction:
    return Fraction(1_000_000_000, interval_ns).limit_denominator(1001)


def _pts_ns(scan) -> np.ndarray:
    """The scan's frame pts in ns (exact integers, floored)."""
    tb = Fraction(scan.time_base)
    return (np.asarray(scan.pts, dtype=np.int64) * tb.numerator * 1_000_000_000) // tb.denominator


def build_frames(scan, anchors: AnchorSet) -> tuple[pa.Table, dict]:
    """frames table + alignment facts from a VideoScan and chosen anchors."""
    n = len(scan.pts)
    pts = np.asarray(scan.pts, dtype=np.int64)
    tb = Fraction(scan.time_base)
    pts_ns = _pts_ns(scan)
    facts: dict = {}
    mono = None
    if anchors.segments:
        segs = timeline.check_segments(anchors.segments)
        settled, facts["pause_edges"] = _settle_pause_edges(segs, anchors)
        exact_edges = (facts["pause_edges"] or {}).get("method") is not None
        segs, facts["start_check"] = _check_start(settled, n, anchors,
                                                  segs if exact_edges else None)
        interval = segs[0].interval_ns
        hdr = anchors.header or {}
        fps = (Fraction(int(hdr["fps_num"]), int(hdr["fps_den"]))
               if hdr.get("fps_num") and hdr.get("fps_den") else _fps_from_interval(interval))
        slots = timeline.grid_slots(pts, tb, interval)
        if n and np.any(np.diff(slots) <= 0):
            raise BadInput(f"{scan.path}: frame timestamps do not follow OBS's frame grid "
                           f"({interval} ns); was the recording re-encoded at another rate?")
        mono, seg_idx = timeline.frame_mono_times(slots, segs)
        if not anchors.clocks:
            raise BadInput(f"{scan.path}: anchors have no clock pairs; cannot map to wall-clock time")
        fit = timeline.fit_clock(anchors.clocks)
        t_ns = fit.epoch_of(mono)
        facts.update(fit.summary())
        facts["segments"] = [{"segment": s.segment, "pts_base": s.pts_base, "frame_mono_ns": s.frame_ns,
                              "pause_offset_ns": s.pause_offset_ns} for s in segs]
        facts["frame_slots_missing"] = int(slots[-1] + 1 - n) if n else 0
        end_ns = int(t_ns[-1] + interval) if n else None
        facts["to_mono"] = fit.mono_of
    else:
        # no OBS frame grid: frames in file order, times from the container timeline
        if anchors.raw_cues:
            # open-world-agents: a cue says "the frame at this container time was captured
            # at epoch E". Frames with a cue take it exactly; the others keep the offset of
            # the last cue before them (the first cue's for frames before it), so a pause
            # between cues moves the offset at the next cue instead of bending a fitted line.
            from ..interop.owa import frames_from_epoch_cues
            idx, epoch, ignored = frames_from_epoch_cues(pts_ns, anchors.raw_cues)
            if len(idx) == 0:
                raise BadInput(f"{scan.path}: the subtitle track has no epoch-ns cues on video frames")
            offs = epoch - pts_ns[idx]
            k = np.searchsorted(idx, np.arange(n), side="right") - 1
            t_ns = pts_ns + offs[np.clip(k, 0, len(idx) - 1)]
            facts.update({"cue_frames": int(len(idx)), "cues_ignored": int(ignored)})
        fps = Fraction(scan.fps)
        interval = int(round(1e9 / float(fps))) if fps else 0
        if not anchors.raw_cues:
            t_ns = pts_ns + np.int64(anchors.start_epoch_ns)
            t_ns += _pause_offsets(pts_ns, anchors.start_epoch_ns, anchors.pauses, interval)
            facts["marker_pauses"] = len(anchors.pauses)
        slots = np.arange(n, dtype=np.int64)
        seg_idx = np.zeros(n, dtype=np.int32)
        facts["clock_drift_ppm"] = None
        end_ns = int(t_ns[-1] + interval) if n else None
    table = pa.table({
        "frame_idx": pa.array(np.arange(n, dtype=np.int64)),
        "slot": pa.array(slots.astype(np.int64)),
        "pts": pa.array(pts),
        "pts_ns": pa.array(pts_ns.astype(np.int64)),
        "mono_ns": pa.array(mono.astype(np.int64)) if mono is not None else pa.nulls(n, pa.int64()),
        "t_ns": pa.array(np.asarray(t_ns, dtype=np.int64)),
        "segment": pa.array(np.asarray(seg_idx, dtype=np.int32)),
        "keyframe": pa.array(np.asarray(scan.keyframe, dtype=bool)),
    }, schema=FRAMES_SCHEMA)
    facts["first_t_ns"] = int(t_ns[0]) if n else None
    facts.update({"fps": [fps.numerator, fps.denominator], "fps_float": round(float(fps), 6),
                  "interval_ns": int(interval), "frames": n, "end_t_ns": end_ns})
    return table, facts


# How late OBS's encoder may start after the first-active-tick anchor (it waits for the
# paired audio encoder's first packet: 1 and 3 frames seen at 60 fps under load). A larger
# disagreement means something else is wrong (frames missing from the file).
PAIRING_SLACK_NS = 10_000_000_000
"""An events log must overlap the recording's time span give or take this much (the
companion logs from before the first frame to after the last; 10 s allows for a slow
start or stop of the recording, and refuses a log of the recording before or after)."""

MAX_START_SHIFT = 3            # frames, at least
MAX_START_SHIFT_NS = 150_000_000   # or this long, whichever is more frames


EDGE_DOUBT_NS = 6_000_000
"""A pause/unpause edge whose sidecar ``margin_ns`` is below this may be a frame off: the
script's handler can run this long after OBS's own clock read (GIL wait, up to Python's
5 ms switch interval, plus scheduling)."""


def max_start_shift(interval_ns: int) -> int:
    return max(MAX_START_SHIFT, -(-MAX_START_SHIFT_NS // int(interval_ns)))


def _move_unpause_edge(segs: list, k: int, delta_ns: int) -> None:
    """Segment ``k`` starts ``delta_ns`` later (earlier if negative): its unpause edge
    moves, and the paused time before it and every later segment changes by as much."""
    from dataclasses import replace
    segs[k] = replace(segs[k], frame_ns=segs[k].frame_ns + delta_ns)
    for i in range(k, len(segs)):
        segs[i] = replace(segs[i], pause_offset_ns=segs[i].pause_offset_ns + delta_ns)


def _settle_pause_edges(segs, anchors: AnchorSet):
    """Put every pause edge where OBS put it, from OBS's own paused totals.

    The script reads the clock in its pause/unpause signal handlers, which run after
    OBS's own read, so an edge it places can only be late (by a frame when the handler
    waited longer than its margin, e.g. for the GIL). The sidecar of script 1.2.0+ also
    carries, per segment, the video encoder's pause offset: the sum of OBS's own
    ``ts_end - ts_start`` before that segment. Comparing pause by pause: OBS's pause
    ``j`` frames longer than the script's means the script's pause edge was ``j`` frames
    late (the frames-before-pause count, every later segment's ``pts_base``, is ``j``
    too many); ``j`` frames shorter, its unpause edge was (that segment starts ``j``
    frames earlier). Both edges of one pause late by the same amount cancel out and stay
    unseen (a frame at the pause boundary off; rare squared). Returns the segments and
    a report for ``alignment.pause_edges`` (None without OBS's offsets)."""
    from dataclasses import replace
    offs = anchors.obs_pause_offsets
    if not offs or len(segs) < 2:
        return segs, None
    interval = segs[0].interval_ns
    out = list(segs)
    report = {"method": "obs_encoder_pause_offset", "pause_edges_moved": [],
              "unpause_edges_moved": []}
    if any(s.segment not in offs for s in out) or offs[out[0].segment] != 0:
        report.update(method=None, note="OBS pause offsets missing for some segments")
        return segs, report
    limit = max_start_shift(interval)
    moved = []
    for k in range(1, len(out)):
        d = offs[out[k].segment] - out[k].pause_offset_ns
        if d == 0:
            continue
        j, rem = divmod(abs(d), interval)
        if rem or j > limit:
            anchors.warnings.append(
                f"OBS's paused time before segment {out[k].segment} differs from the "
                f"script's by {d} ns (not a whole frame or too many); pause edges kept")
            report.update(method=None, note=f"disagreement of {d} ns at segment {out[k].segment}")
            return segs, report
        if d > 0:        # the pause edge was late: fewer frames before the pause
            for i in range(k, len(out)):
                out[i] = replace(out[i], pts_base=out[i].pts_base - j,
                                 pause_offset_ns=out[i].pause_offset_ns + d)
            kind = "pause"
        else:            # the unpause edge was late: the segment starts earlier
            _move_unpause_edge(out, k, d)
            kind = "unpause"
        report[f"{kind}_edges_moved"].append({"segment": out[k].segment, "frames": j})
        moved.append(f"the {kind} edge before segment {out[k].segment} {j} frame(s)")
    if moved:
        anchors.warnings.append("the OBS script placed " + ", ".join(moved) + " late (its "
                                "signal handler ran late); moved to OBS's own edges")
    return out, report


def _check_start(segs, n_packets: int, anchors: AnchorSet, unsettled=None):
    """Pin the first recorded frame from the recording's end (timeline.start_from_stop).

    The first-active-tick anchor is almost always the first recorded frame, but OBS's
    encoder can start a frame later (docs/contracts/captions-and-sidecar.md, "Start
    race"). With the sidecar's ``stopping`` record the start is recomputed from the
    number of packets and the stop time, and the segments are shifted when they differ.
    ``unsettled``: the segments as the script placed them, when ``segs`` has every pause
    edge settled from OBS's own pause offsets (``_settle_pause_edges``); then the paused
    total is OBS's and no edge is in doubt.
    """
    from dataclasses import replace
    st = anchors.stop
    if anchors.truncated:
        return segs, {"method": None, "note": "recording truncated: its end is missing, so the "
                      "start is the first-active-tick anchor, not cross-checked"}
    if st is None:
        return segs, {"method": None, "note": "no stopping record (captions only or an older "
                      "script): the start is the first-active-tick anchor, not cross-checked"}
    if st["paused"]:
        return segs, {"method": None, "note": "stopped while paused: start not cross-checked"}
    interval = segs[0].interval_ns
    # edges settled from OBS's own pause offsets change the paused total by as much
    total = st["pause_total_ns"]
    if unsettled is not None:
        total += segs[-1].pause_offset_ns - unsettled[-1].pause_offset_ns
    st = dict(st, pause_total_ns=total)
    shift, margin = timeline.start_from_stop(segs[0].frame_ns, interval, n_packets,
                                             st["signal_mono_ns"], total)
    check = {"method": "stop_rule", "start_shift_frames": shift, "margin_ns": margin}
    if shift < 0 and unsettled is None:     # settled edges are OBS's: none in doubt
        segs, shift, margin = _move_doubtful_unpause_edges(segs, shift, n_packets, st, anchors,
                                                           check)
        check.update({"start_shift_frames": shift, "margin_ns": margin})
    if shift == 0:
        return segs, check
    if abs(shift) > max_start_shift(interval):
        anchors.warnings.append(f"the recording's end implies a start {shift} frames off the "
                                f"start anchor; kept the anchor (frames missing from the file?)")
        check["applied"] = False
        return segs, check
    anchors.warnings.append(f"OBS started recording {shift} frame(s) after the start anchor "
                            f"(start race); frame times corrected from the recording's end")
    check["applied"] = True
    fixed = [replace(segs[0], frame_ns=segs[0].frame_ns + shift * interval)]
    fixed += [replace(s, pts_base=s.pts_base - shift) for s in segs[1:]]
    return fixed, check


def _pause_offsets(pts_ns: np.ndarray, start: int, pauses, interval: int) -> np.ndarray:
    """Per frame, the paused time before it, from the companion's pause/resume markers.

    A recording's timestamps skip its pauses; with only the start marker to pin frame 0,
    a frame's capture time is the start plus its pts plus every pause before it. A pause
    marked at epoch ``p`` sits at video time ``p - start - (earlier pauses)``; a frame
    belongs after it when its pts is past that point less half a frame (the markers are
    the companion's observation of OBS's events: tens of ms late, not frame-exact)."""
    off = np.zeros(len(pts_ns), dtype=np.int64)
    gone = 0
    for p, r in pauses:
        at = p - start - gone
        off[pts_ns >= at - interval // 2] += r - p
        gone += r - p
    return off


def _marker_pauses(log, start: int) -> list[tuple[int, int]]:
    """``(paused, resumed)`` epoch ns pairs of the companion's recording markers after
    ``start`` (a pause never resumed, the recording stopped while paused, adds nothing)."""
    out, paused = [], None
    for t, data in sorted(log.markers, key=lambda m: m[0]):
        ev = data.get("event") if isinstance(data, dict) else None
        if t < start:
            continue
        if ev == "recording.paused" and paused is None:
            paused = int(t)
        elif ev == "recording.resumed" and paused is not None:
            out.append((paused, int(t)))
            paused = None
    return out


def _move_doubtful_unpause_edges(segs, shift: int, n_packets: int, st: dict,
                                 anchors: AnchorSet, check: dict):
    """The stop rule put the first frame *before* the start anchor (``shift < 0``),
    which a late start cannot explain: the recording holds more frames than its start,
    end and pauses allow. The likely cause is an unpause edge the script placed one
    frame late: it reads the clock in the signal handler, which under load runs after
    OBS's own read (a Python handler may wait for the GIL, up to the 5 ms switch
    interval), and an edge whose ``margin_ns`` is below that delay is in doubt. Those
    edges, least margin first, are moved one frame earlier (their segment starts a
    frame earlier, the paused time shrinks by a frame) while the rule still says the
    start is early. Returns (segments, new shift, new margin)."""
    interval = segs[0].interval_ns
    margins = st.get("unpause_margins") or {}
    doubtful = sorted((margins[s.frame_ns], k) for k, s in enumerate(segs)
                      if k > 0 and margins.get(s.frame_ns, EDGE_DOUBT_NS) < EDGE_DOUBT_NS)
    total, moved, margin = st["pause_total_ns"], [], None
    for _m, k in doubtful:
        if shift >= 0:
            break
        total -= interval
        moved.append(k)
        shift, margin = timeline.start_from_stop(segs[0].frame_ns, interval, n_packets,
                                                 st["signal_mono_ns"], total)
    if not moved or shift < 0:
        return segs, check["start_shift_frames"], check["margin_ns"]
    out = list(segs)
    for k in moved:
        _move_unpause_edge(out, k, -interval)
    check["unpause_edges_moved"] = [segs[k].segment for k in moved]
    anchors.warnings.append(
        f"the unpause edge of segment(s) {', '.join(str(segs[k].segment) for k in moved)} "
        f"was in doubt (margin under {EDGE_DOUBT_NS // 1_000_000} ms) and the recording's end "
        f"needs it a frame earlier: moved")
    return out, shift, margin


def _start_marker(log) -> tuple[int, str] | None:
    for t, data in log.markers:
        if isinstance(data, dict) and data.get("event") == "recording.started":
            src = data.get("anchor_source")
            return int(t), ("export_start_time" if src == "export_start_time" else "recording_start_marker")
    return None


def _iso(t_ns: int) -> str:
    d = _dt.datetime.fromtimestamp(t_ns // 1_000_000_000, _dt.timezone.utc)
    return d.strftime("%Y-%m-%dT%H:%M:%S.") + "%03dZ" % ((t_ns // 1_000_000) % 1000)


class _BackgroundHash:
    """sha256 of a large file computed on another core while the aligner works
    (hashlib releases the GIL for large updates); reused from integrity.sha256 when
    that already records it (see ``recorded_hash``)."""

    def __init__(self, path: Path):
        import threading
        self.path = path
        self.digest = recorded_hash(path.parent, path.name)
        self.error = None
        self._t = threading.Thread(target=self._run, name="sha256", daemon=True)
        if self.digest is None:
            self._t.start()

    def _run(self):
        try:
            self.digest = sha256_file(self.path)
        except OSError as e:
            self.error = e

    def result(self) -> str:
        if self._t.is_alive() or self._t.ident is not None:
            self._t.join()
        if self.error is not None:
            raise self.error
        return self.digest


def _write_parquet(table: pa.Table, final: Path) -> None:
    with atomic_path(final) as tmp:
        pq.write_table(table, tmp, **parquet_write_options(table.schema))


def resolve_inputs(video: Path, events: Path | None, workdir: Path | None) -> tuple[Path, Path, Path | None]:
    """(video, events, imported session folder or None). Zip exports are imported first."""
    if not video.exists():
        raise BadInput(f"{video}: no such file")
    if video.is_dir():
        cands = sorted(p for p in video.iterdir() if p.suffix.lower() in VIDEO_SUFFIXES)
        if len(cands) != 1:
            raise BadInput(f"{video}: expected one video in the session folder, found {len(cands)}")
        video = cands[0]
    if video.suffix.lower() == ".zip":
        from ..interop.zip_export import import_zip
        folder = import_zip(video, workdir or video.parent)
        vids = sorted(p for p in folder.iterdir() if p.suffix.lower() in VIDEO_SUFFIXES)
        if not vids:
            raise BadInput(f"{video}: the export holds no video")
        return vids[0], events or vids[0].with_suffix(".jsonl"), folder
    return video, events or video.with_suffix(".jsonl"), None


def align_session(video, events=None, out=None, dataset=None, chunk_seconds: float = 20.0,
                  video_id: str | None = None, session_id: str | None = None,
                  progress: bool = True, owa_out=None, owa_per: str = "frame",
                  early_start=None, checksums: bool | str = True,
                  allow_truncated: bool = False) -> dict:
    """Align one recording. Returns a JSON-able summary. Raises NMError subclasses.

    A recording cut short (an interrupted copy, a full disk, a crashed recorder) is
    refused unless ``allow_truncated``: then the frames it has are aligned, the
    recording's end is not used to cross-check the start, and metadata says so
    (``alignment.truncated``).

    ``early_start``: an ``early.EarlyStart`` the caller began for exactly these
    arguments (``begin_early``); it is consumed (used or discarded). ``checksums``:
    passed to ``write_dataset``: True (its default algorithm, XXH3-128), ``"xxh128"``,
    ``"sha256"``, or False (no ``index/<video_id>.<algorithm>``)."""
    early: list = [early_start] if early_start is not None else []
    try:
        return _align_session(video, events, out, dataset, chunk_seconds, video_id, session_id,
                              progress, owa_out, owa_per, early, checksums, allow_truncated)
    finally:
        for e in early:
            e.discard()


def _align_session(video, events, out, dataset, chunk_seconds, video_id, session_id,
                   progress, owa_out, owa_per, early: list, checksums: bool | str = True,
                   allow_truncated: bool = False) -> dict:
    from .eventlog import read_event_log

    import math
    if dataset and not (isinstance(chunk_seconds, (int, float)) and math.isfinite(chunk_seconds)
                        and chunk_seconds > 0):
        raise BadInput(f"chunk length must be a positive number of seconds, got {chunk_seconds!r}")
    video = Path(video)
    events_path = Path(events) if events else None
    if dataset:
        # what would stop the dataset step is checked before any output is written
        from ..dataset.layout import check_dataset_root, validate_video_id
        check_dataset_root(Path(dataset), writable=True)
        if video_id or session_id:
            validate_video_id(video_id or session_id)
    video, events_path, imported = resolve_inputs(video, events_path, Path(out) if out else None)
    out_dir = Path(out) if out else (imported or video.parent)
    if imported is not None:
        out_dir = imported
    sid = session_id or video.stem
    if dataset:
        validate_video_id(video_id or sid)

    if not events_path.exists():
        raise BadInput(f"{events_path}: events file not found (pass --events FILE)")
    video_hash = _BackgroundHash(video)
    pre = early[0] if early else None
    if pre is None and dataset and not owa_out:
        # the chunk MP4s are cut (ffmpeg) and the audio decoded while the video is
        # scanned; write_dataset checks both against the scan and plan before use
        from ..dataset.early import EarlyStart
        pre = EarlyStart.begin(Path(dataset), video_id or sid, chunk_seconds, video,
                               _sidecar_fps(sidecar_path_for(video)), checksums=checksums)
        if pre is not None:
            early.append(pre)
    # the events file is parsed on another core while the video is demuxed
    # (pyarrow's JSON reader and FFmpeg's demuxer both run outside the GIL)
    from concurrent.futures import ThreadPoolExecutor
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="events") as pool:
        log_future = pool.submit(read_event_log, events_path,
                                 spill_dir=out_dir if out_dir.is_dir() else None)
        try:
            return _align_rest(video, events_path, out_dir, dataset, chunk_seconds, video_id,
                               sid, progress, owa_out, owa_per, pre, video_hash, log_future,
                               checksums, allow_truncated)
        finally:
            try:
                log_future.result().close()           # its spill file and hash digests
            except BaseException:  # noqa: BLE001 - the read's own error is already raised
                pass


def _align_rest(video, events_path, out_dir, dataset, chunk_seconds, video_id, sid, progress,
                owa_out, owa_per, pre, video_hash, log_future, checksums: bool | str = True,
                allow_truncated: bool = False) -> dict:
    from .demux import scan_video
    from .eventlog import write_events_parquet

    p = Progress(f"scan {video.name}", enabled=progress)
    try:
        scan = scan_video(video, progress=p,
                          on_header=pre.on_header if pre is not None else None,
                          audio_sink=pre.audio_sink if pre is not None else None,
                          walk_sink=pre)
    finally:
        p.close()
    log = log_future.result()
    truncated = None
    if scan.truncated:
        truncated = getattr(scan, "truncated_reason", None) or "the file ends mid-stream"
        if not allow_truncated:
            raise BadInput(f"{video}: truncated recording ({truncated}); --allow-truncated "
                           f"aligns the frames it has")
    if len(scan.pts) == 0:
        raise BadInput(f"{video}: no video frames")

    sc_path = sidecar_path_for(video)
    sidecar = read_sidecar(sc_path) if sc_path.exists() else None
    anchors = choose_anchors(scan.captions, sidecar, scan.subtitle_cues, _start_marker(log),
                             *_epoch_track(video, scan, sidecar))
    if anchors is None:
        raise BadInput(f"{video}: no timing anchors (no NM1 captions, no {sc_path.name}, no "
                       f"epoch subtitle track, no recording.started marker in {events_path.name})")
    if log.torn_tail:
        anchors.warnings.append(f"{events_path.name} ends in a torn line (line {log.torn_line}: "
                                f"the logger stopped mid-write); it was left out")
    if log.skipped:
        anchors.warnings.append(f"{log.skipped} line(s) of {events_path.name} are of kinds "
                                f"nm-align does not know; left out")
    if anchors.start_epoch_ns is not None and not anchors.segments and not anchors.raw_cues:
        anchors.pauses = _marker_pauses(log, anchors.start_epoch_ns)
        if anchors.pauses:
            anchors.warnings.append(f"{len(anchors.pauses)} pause(s) placed from the companion's "
                                    f"pause/resume markers (low confidence)")
    if truncated:
        anchors.warnings.append(f"truncated recording ({truncated}): aligned the "
                                f"{len(scan.pts)} frames it has; its end is missing")
        anchors.truncated = truncated  # the end the stop rule needs is not in the file
    try:
        frames, facts = build_frames(scan, anchors)
    except timeline.TimelineError as e:
        raise BadInput(f"{video}: bad anchors: {e}")
    to_mono = facts.pop("to_mono", None)
    frame_t = frames.column("t_ns").to_numpy()
    meta_path = out_dir / "metadata.json"
    meta = _load_meta(meta_path)   # the companion's, when there is one
    _check_same_session(video, events_path, frame_t, facts.get("end_t_ns"), log,
                        meta.get("session_id") or sid)
    out_dir.mkdir(parents=True, exist_ok=True)
    # events first: building them is what can still fail on bad input
    ev_stats = write_events_parquet(log, out_dir / "events.parquet", sid, frame_t,
                                    _input_space(meta, scan), to_mono=to_mono,
                                    frame_interval_ns=facts.get("interval_ns") or None)
    _write_parquet(frames, out_dir / "frames.parquet")
    log.close()                 # its spill file; the parsed log is no longer needed
    pa.default_memory_pool().release_unused()   # what reading it left to the dataset step
    meta = _merge_metadata(meta, sid, scan, anchors, facts, ev_stats, log, video, out_dir)
    write_json_atomic(meta_path, meta)
    artifacts = [video.name, events_path.name, "frames.parquet", "events.parquet", "metadata.json"]
    if sc_path.exists():
        artifacts.append(sc_path.name)

    summary = {"session_id": sid, "video": str(video), "out": str(out_dir),
               "frames": frames.num_rows, "events": ev_stats["rows"],
               "anchor_source": anchors.source, "confidence": anchors.confidence,
               "clock_drift_ppm": facts.get("clock_drift_ppm"), "warnings": anchors.warnings}
    try:
        # the dataset (and OWA export) run while the video is still being hashed
        if owa_out:
            from ..interop.owa import export_owa
            export_owa(video, frames, Path(owa_out), per=owa_per, jsonl=events_path,
                       recording_id=anchors.recording_id, confidence=anchors.confidence)
            summary["owa_out"] = str(owa_out)
        if dataset:
            from ..dataset.writer import write_dataset
            vid = video_id or sid
            dp = Progress(f"dataset {vid}", enabled=progress)
            # read back a batch at a time: memory stays flat in the number of events
            ds = write_dataset(Path(dataset), vid, scan, frames, out_dir / "events.parquet", meta,
                               chunk_seconds=chunk_seconds, progress=dp, early=pre,
                               checksums=checksums)
            dp.close()
            summary["dataset"] = ds
    finally:
        known = {video.name: video_hash.result()} if video.parent == out_dir else {}
        write_integrity(out_dir, [a for a in artifacts if (out_dir / a).exists()], known)
    return summary


def _video_file(video: Path, out_dir: Path) -> str:
    """The recording as ``alignment.video_file`` names it: its file name when it is in
    the session folder, else its path relative to that folder (``--out`` elsewhere), so
    nm-validate and nm-preview find it from the outputs."""
    video, out_dir = Path(video).resolve(), Path(out_dir).resolve()
    if video.parent == out_dir:
        return video.name
    try:
        return Path(os.path.relpath(video, out_dir)).as_posix()
    except ValueError:                  # another drive (Windows): no relative path
        return video.as_posix()


def _input_space(meta: dict, scan) -> tuple[int, int]:
    """Pixel size of the area the mouse coordinates are normalized against: the captured
    screen when the companion recorded it (metadata ``screen``), else the video size."""
    scr = meta.get("screen") or (meta.get("env") or {}).get("screen")
    if isinstance(scr, (list, tuple)) and len(scr) == 2 and all(isinstance(v, int) and v > 0 for v in scr):
        return int(scr[0]), int(scr[1])
    if isinstance(scr, dict) and isinstance(scr.get("width"), int) and isinstance(scr.get("height"), int):
        return scr["width"], scr["height"]
    return scan.width, scan.height


def _check_same_session(video, events_path, frame_t, end_t, log, session_id: str) -> None:
    """Refuse to pair a recording with an events log of another session.

    Two rules (docs/contracts/session-folder.md, "Pairing a recording with its events"):
    a log whose ``session.start`` marker names a session must name this one (the
    companion's metadata.json ``session_id``, else the session id: ``--session-id`` or
    the video's name); and the log's time span (input events and recorder markers) must
    overlap the video's, give or take :data:`PAIRING_SLACK_NS`."""
    for _t, data in log.markers:
        if isinstance(data, dict) and data.get("event") == "session.start":
            logged = data.get("session_id")
            if isinstance(logged, str) and logged and logged != session_id:
                raise BadInput(f"{events_path.name} was logged for session {logged!r}, not "
                               f"{session_id!r} ({video.name}); pass the right --events, or "
                               f"--session-id {logged} if the files were renamed")
            break
    ts = [int(t) for t, _d in log.markers]
    if log.t_min is not None:
        ts += [int(log.t_min), int(log.t_max)]
    if not ts or len(frame_t) == 0:
        return
    start, end = int(frame_t[0]), int(end_t or frame_t[-1])
    ev_min, ev_max = min(ts), max(ts)
    if ev_max < start - PAIRING_SLACK_NS or ev_min > end + PAIRING_SLACK_NS:
        fmt = lambda t: _dt.datetime.fromtimestamp(t / 1e9, _dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S")
        raise BadInput(f"{events_path.name} does not belong to {video.name}: events {fmt(ev_min)}.."
                       f"{fmt(ev_max)} UTC, video {fmt(start)}..{fmt(end)} UTC")


def _epoch_track(video: Path, scan, sidecar) -> tuple[dict | None, np.ndarray | None]:
    """(tags of the subtitle track, frame pts in ns) for ``choose_anchors``, when an nm
    epoch track could be chosen (a cue track, captions, no sidecar); else (None, None)."""
    if not scan.subtitle_cues or not scan.captions or sidecar is not None:
        return None, None
    from ..interop.owa import epoch_track_tags
    return epoch_track_tags(video), _pts_ns(scan)


# metadata.json is a flat record (seed 001 fields, env, alignment): a few levels deep.
# Deeper documents are refused, so writing it back and validating it cannot recurse out.
META_MAX_DEPTH = 32


def _load_meta(path: Path) -> dict:
    """The session's metadata.json (the companion's or a zip import's), or {} if none.

    Read with the format's strict reader (UTF-8, no NaN/Infinity, bounded nesting), its
    format_version checked (docs/contracts/versioning.md: another major is refused), and
    the fields nm-align reads or writes back checked against the session_metadata
    schema, so every problem is a one-line BadInput before anything is written.
    """
    from ..contract.metadata import check_format_version, loads_json_strict, validate_json
    if not path.exists():
        return {}
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise BadInput(f"{path}: cannot read ({e.strerror or e.__class__.__name__})")
    meta = loads_json_strict(raw, str(path), max_depth=META_MAX_DEPTH)
    if not isinstance(meta, dict):
        raise BadInput(f"{path}: not a JSON object")
    if "format_version" in meta:
        why = check_format_version(meta["format_version"])
        if why:
            raise BadInput(f"{path}: {why}")
    try:
        json.dumps(meta, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError as e:
        raise BadInput(f"{path}: a string holds a lone UTF-16 surrogate "
                       f"({e.object[e.start:e.end]!a}), not Unicode text")
    # required fields nm-align fills in itself (format_version, session_id, captured_at)
    problems = [m for m in validate_json(meta, "session_metadata")
                if not m.endswith("required field is missing")]
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise BadInput(f"{path}: {problems[0]}{more}")
    return meta


def _merge_metadata(meta: dict, sid: str, scan, anchors: AnchorSet, facts: dict, ev_stats: dict,
                    log, video, out_dir) -> dict:
    meta = dict(meta)
    meta.setdefault("format_version", FORMAT_VERSION)
    meta.setdefault("session_id", sid)
    first_t = facts.get("first_t_ns")
    if not meta.get("captured_at") and first_t is not None:
        meta["captured_at"] = _iso(first_t)
    meta.setdefault("resolution", [scan.width, scan.height])
    meta.setdefault("capture_fps", facts.get("fps_float"))
    meta.setdefault("codec", scan.codec)
    meta["clock_drift_ppm"] = facts.get("clock_drift_ppm")
    missing = facts.get("frame_slots_missing", 0)
    meta["dropped_frames"] = max(int(meta.get("dropped_frames") or 0), int(missing))
    n_ev = int(ev_stats["rows"])
    outside = int(ev_stats["outside_video"])
    meta["alignment"] = {
        "aligner_version": __version__,
        "aligned_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z"),
        "video_file": _video_file(video, out_dir),
        "anchor_source": anchors.source,
        "confidence": anchors.confidence,
        "recording_id": anchors.recording_id,
        "warnings": list(anchors.warnings),
        "crosscheck": anchors.crosscheck,
        "bad_captions": anchors.bad_captions,
        "frame_count": facts.get("frames"),
        "fps": facts.get("fps"),
        "frame_interval_ns": facts.get("interval_ns"),
        "first_frame_t_ns": first_t,
        "end_t_ns": facts.get("end_t_ns"),
        "segments": facts.get("segments", []),
        "start_check": facts.get("start_check"),
        "pause_edges": facts.get("pause_edges"),
        "frame_slots_missing": missing,
        "event_count": n_ev,
        "events_outside_video": outside,
        "events_torn_tail": bool(log.torn_tail),
        "events_torn_line": log.torn_line,
        "events_skipped_lines": int(log.skipped),
        "has_bframes": bool(scan.has_bframes),
        "truncated": anchors.truncated,
        **{k: v for k, v in facts.items() if k.startswith(("clock_", "cue_", "cues_", "marker_"))},
    }
    return meta
