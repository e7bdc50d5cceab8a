"""open-world-agents (OWA) interop: MKV with a subtitle track of epoch-ns cues.

OWA's recorder (seed 002) stores, beside the video, a subtitle track whose cue texts
are the wall-clock time (ns since the Unix epoch) of the frame on screen when the cue
starts. This module writes such an MKV from our recording and its ``frames.parquet``
(:func:`export_owa`) and maps such cues back to frames (:func:`frames_from_epoch_cues`;
the aligner reads cues with ``companion.align.demux.scan_video().subtitle_cues``).

Cue timing: Matroska stores timestamps in milliseconds. A cue for frame ``i`` starts
exactly at the output video's timestamp of frame ``i`` (its pts rescaled to ms the way
FFmpeg's muxer does, round half away from zero) and ends where the next cue starts (the
last one after one frame interval). So a reader finds the frame of a cue by equality of
start time and frame time, with no sub-millisecond ambiguity.

Our own tracks are marked: besides the title ``epoch_ns`` the subtitle track carries the
Matroska tags ``NM_EPOCH_TRACK`` (``frame`` or ``second``), ``NM_FRAMES`` (video frame
count), ``NM_FORMAT_VERSION`` and, when known, ``NM_RECORDING_ID`` and ``NM_CONFIDENCE``
(:func:`epoch_track_tags` reads them back). A per-frame track so marked holds the frame times ``nm-align`` computed
from the original's anchors -- including the start-race correction that only the sidecar
can give -- so the aligner prefers it to the NM1 captions that the stream copy also carries
(docs/contracts/captions-and-sidecar.md, "Choosing anchors"). The recording's sidecar,
when there is one, is copied beside the output too.
"""
from __future__ import annotations

import math
import os
import shutil
import tempfile
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import pyarrow as pa

from ..util.atomic import atomic_path
from ..util.errors import BadInput, EnvProblem

PER_CHOICES = ("frame", "second")
SUBTITLE_TITLE = "epoch_ns"
# Matroska tags on the subtitle track that mark it as written by nm (FFmpeg upper-cases
# tag names on write; epoch_track_tags() compares them case-insensitively)
TAG_TRACK = "NM_EPOCH_TRACK"          # "frame" | "second": the export's cue density
TAG_FRAMES = "NM_FRAMES"              # number of video frames the cues were planned for
TAG_RECORDING_ID = "NM_RECORDING_ID"  # the NM1 recording id of the source, if known
TAG_FORMAT_VERSION = "NM_FORMAT_VERSION"
TAG_CONFIDENCE = "NM_CONFIDENCE"      # the source alignment's confidence (exact, low, ...)


@dataclass(frozen=True)
class Cue:
    """One subtitle cue: ``start_ms``/``end_ms`` on the output container timeline (ms),
    ``epoch_ns`` the capture time of the frame shown at ``start_ms``."""

    start_ms: int
    end_ms: int
    epoch_ns: int
    frame_idx: int


def _rescale_round(pts: int, tb: Fraction, to_den: int = 1000) -> int:
    """``pts * tb`` in units of ``1/to_den`` s, rounded half away from zero (FFmpeg's
    av_rescale_q / AV_ROUND_NEAR_INF)."""
    v = Fraction(pts) * tb * to_den
    return math.floor(v + Fraction(1, 2)) if v >= 0 else -math.floor(-v + Fraction(1, 2))


def plan_cues(pts: Sequence[int] | np.ndarray, t_ns: Sequence[int] | np.ndarray,
              time_base: Fraction, per: str = "frame") -> list[Cue]:
    """Pure: the cues for frames with container ``pts`` (ticks of ``time_base`` s,
    presentation order) captured at epoch ``t_ns``.

    ``per="frame"``: one cue per frame. ``per="second"``: one cue at the first frame of
    every whole second of video time since the first frame, text = that frame's t_ns.
    """
    if per not in PER_CHOICES:
        raise BadInput(f"per must be one of {', '.join(PER_CHOICES)}, not {per!r}")
    pts = np.asarray(pts, dtype=np.int64)
    t_ns = np.asarray(t_ns, dtype=np.int64)
    n = len(pts)
    if n == 0:
        return []
    if len(t_ns) != n:
        raise BadInput(f"frames table has {len(t_ns)} t_ns values for {n} frames")
    if n > 1 and np.any(np.diff(pts) <= 0):
        raise BadInput("frames table pts are not strictly increasing")
    ms = [_rescale_round(int(p), time_base) for p in pts]
    if n > 1 and any(b <= a for a, b in zip(ms, ms[1:])):
        raise BadInput("frames are less than 1 ms apart: Matroska's ms timestamps cannot "
                       "tell them apart")
    step = (ms[-1] - ms[0]) / (n - 1) if n > 1 else 1000 / 30
    if per == "frame":
        idx = list(range(n))
    else:
        idx, last_sec = [], None
        p0 = int(pts[0])
        for i, p in enumerate(pts):
            sec = math.floor((int(p) - p0) * time_base)
            if sec != last_sec:
                idx.append(i)
                last_sec = sec
    cues = []
    for k, i in enumerate(idx):
        start = ms[i]
        end = ms[idx[k + 1]] if k + 1 < len(idx) else ms[n - 1] + max(1, round(step))
        cues.append(Cue(start, end, int(t_ns[i]), i))
    return cues


def _ssa_file(cues: Iterable[Cue]):
    import pysubs2
    subs = pysubs2.SSAFile()
    for c in cues:
        subs.append(pysubs2.SSAEvent(start=c.start_ms, end=c.end_ms, text=str(c.epoch_ns)))
    return subs


def write_srt(cues: Iterable[Cue], path: str | os.PathLike) -> None:
    """Write cues as an SRT file (pysubs2), text = epoch ns."""
    _ssa_file(cues).save(str(path), format_="srt", encoding="utf-8")


def _frames_columns(frames_table: pa.Table) -> tuple[np.ndarray, np.ndarray]:
    if not isinstance(frames_table, pa.Table):
        raise BadInput("frames_table must be a pyarrow Table (frames.parquet)")
    missing = [c for c in ("pts", "t_ns") if c not in frames_table.column_names]
    if missing:
        raise BadInput(f"frames table lacks column(s) {', '.join(missing)}")
    for c in ("pts", "t_ns"):
        if frames_table.column(c).null_count:
            raise BadInput(f"frames table column {c} has nulls")
    pts = frames_table.column("pts").to_numpy().astype(np.int64)
    t_ns = frames_table.column("t_ns").to_numpy().astype(np.int64)
    if "frame_idx" in frames_table.column_names:
        order = np.argsort(frames_table.column("frame_idx").to_numpy(), kind="stable")
        pts, t_ns = pts[order], t_ns[order]
    return pts, t_ns


def export_owa(video_path: str | os.PathLike, frames_table: pa.Table, out_mkv: str | os.PathLike,
               per: str = "frame", jsonl: str | os.PathLike | None = None,
               recording_id: str | None = None, confidence: str | None = None) -> dict:
    """Write ``out_mkv``: the video and every audio stream of ``video_path`` stream-copied
    (no re-encoding) plus a subtitle track (SubRip, title ``epoch_ns``, tagged as ours:
    see the module doc) of epoch-ns cues from ``frames_table`` (``frames.parquet``:
    ``pts`` in the video's stream time base, ``t_ns`` epoch ns), one per frame or per
    second.

    ``jsonl``: the session's event log (seed 002 shape); if given it is copied beside the
    MKV as ``<out stem>.jsonl``, the pair OWA tools expect. The recording's anchor
    sidecar (``<video stem>.anchors.jsonl``), if it exists, is copied as
    ``<out stem>.anchors.jsonl``: with it a re-alignment of the output recomputes the
    same frame times from the same anchors, whatever ``per`` is. ``recording_id``: the
    NM1 recording id, written as a tag so a reader can check the track against the
    captions in the video; ``confidence``: the alignment's confidence, also a tag (a
    re-alignment from the track is no surer than the alignment that wrote it).

    Files appear atomically. Returns ``{"out", "n_cues", "n_frames", "per", "jsonl",
    "sidecar"}``. Raises BadInput if the video is unreadable or the table does not
    describe it.
    """
    import av
    from ..contract.sidecar import sidecar_path_for

    video_path, out_mkv = Path(video_path), Path(out_mkv)
    if per not in PER_CHOICES:
        raise BadInput(f"per must be one of {', '.join(PER_CHOICES)}, not {per!r}")
    pts_col, t_col = _frames_columns(frames_table)
    if not video_path.is_file():
        raise BadInput(f"{video_path}: no such file")
    jsonl_out = None
    if jsonl is not None:
        jsonl = Path(jsonl)
        if not jsonl.is_file():
            raise BadInput(f"{jsonl}: no such events file")
        jsonl_out = out_mkv.with_suffix(".jsonl")
        if jsonl_out.resolve() == jsonl.resolve():
            jsonl_out = None          # already in place
    sidecar_in = sidecar_path_for(video_path)
    sidecar_out = sidecar_path_for(out_mkv) if sidecar_in.is_file() else None
    if sidecar_out is not None and sidecar_out.resolve() == sidecar_in.resolve():
        sidecar_out = None            # writing beside the source under its own name
    tags = {TAG_TRACK: per, TAG_FRAMES: str(len(pts_col)), TAG_FORMAT_VERSION: _format_version()}
    if recording_id:
        tags[TAG_RECORDING_ID] = str(recording_id)
    if confidence:
        tags[TAG_CONFIDENCE] = str(confidence)
    try:
        src = av.open(str(video_path))
    except (av.FFmpegError, OSError, ValueError) as e:
        raise BadInput(f"{video_path}: not a readable video ({_msg(e)})") from None
    try:
        if not src.streams.video:
            raise BadInput(f"{video_path}: no video stream")
        vs = src.streams.video[0]
        tb = Fraction(vs.time_base)
        cues = plan_cues(pts_col, t_col, tb, per)
        known_pts = set(int(p) for p in pts_col)
        audio = list(src.streams.audio)
        with tempfile.TemporaryDirectory(prefix="nm-owa-") as td:
            srt = Path(td) / "epoch.srt"
            write_srt(cues, srt)
            try:
                with atomic_path(out_mkv, suffix=".mkv") as tmp:
                    n_video = _remux(src, vs, audio, srt, tmp, known_pts, tags)
                    if n_video != len(pts_col):
                        raise BadInput(f"{video_path}: has {n_video} video frames, frames table "
                                       f"has {len(pts_col)}")
                if jsonl_out is not None:
                    with atomic_path(jsonl_out) as tmpj:
                        shutil.copyfile(jsonl, tmpj)
                if sidecar_out is not None:
                    with atomic_path(sidecar_out) as tmps:
                        shutil.copyfile(sidecar_in, tmps)
            except OSError as e:
                raise EnvProblem(f"cannot write {out_mkv}: {e.strerror or _msg(e)}") from None
    finally:
        src.close()
    return {"out": str(out_mkv), "n_cues": len(cues), "n_frames": n_video, "per": per,
            "jsonl": str(jsonl_out or jsonl) if jsonl is not None else None,
            "sidecar": str(sidecar_out) if sidecar_out is not None else None}


def _format_version() -> str:
    from ..contract.version import FORMAT_VERSION
    return FORMAT_VERSION


def epoch_track_tags(video_path: str | os.PathLike) -> dict[str, str]:
    """The tags of the subtitle track the aligner reads cues from (the first text
    subtitle track, as ``companion.align.demux`` picks it), names upper-cased; ``{}``
    when there is none or the file cannot be opened (the demuxer reports that)."""
    import av
    from ..align.demux import TEXT_SUBTITLE_CODECS
    try:
        with av.open(str(video_path)) as c:
            for s in c.streams.subtitles:
                if s.codec_context.name in TEXT_SUBTITLE_CODECS:
                    return {str(k).upper(): str(v) for k, v in s.metadata.items()}
    except (av.FFmpegError, OSError, ValueError):
        pass
    return {}


def _remux(src, vs, audio, srt: Path, tmp: Path, known_pts: set[int], tags: dict[str, str]) -> int:
    import av

    try:
        subs_in = av.open(str(srt))
    except av.FFmpegError as e:  # pragma: no cover - we wrote the file ourselves
        raise BadInput(f"cannot read generated subtitles ({_msg(e)})") from None
    n_video = 0
    try:
        with av.open(str(tmp), "w", format="matroska") as out:
            ov = out.add_stream_from_template(vs)
            oa = {a.index: out.add_stream_from_template(a) for a in audio}
            ss = subs_in.streams.subtitles[0]
            os_ = out.add_stream_from_template(ss)
            os_.metadata["title"] = SUBTITLE_TITLE
            for k, v in tags.items():
                os_.metadata[k] = v
            sub_packets = [p for p in subs_in.demux(ss) if p.size]
            sub_tb = Fraction(ss.time_base)
            si = 0
            mapping = {vs.index: ov, **oa}
            for pkt in src.demux(vs, *audio):
                if not pkt.size or pkt.dts is None and pkt.pts is None:
                    continue
                t = (pkt.dts if pkt.dts is not None else pkt.pts) * Fraction(pkt.time_base)
                while si < len(sub_packets) and sub_packets[si].pts * sub_tb <= t:
                    sp = sub_packets[si]
                    sp.stream = os_
                    out.mux(sp)
                    si += 1
                if pkt.stream_index == vs.index:
                    if pkt.pts is None or int(pkt.pts) not in known_pts:
                        raise BadInput(f"video frame with pts {pkt.pts} is not in the frames table")
                    n_video += 1
                pkt.stream = mapping[pkt.stream_index]
                out.mux(pkt)
            while si < len(sub_packets):
                sp = sub_packets[si]
                sp.stream = os_
                out.mux(sp)
                si += 1
    except av.FFmpegError as e:
        raise BadInput(f"cannot remux into Matroska ({_msg(e)})") from None
    finally:
        subs_in.close()
    return n_video


def parse_epoch_cue(text: str) -> int | None:
    """A cue text -> epoch ns, or None if it is not a plain non-negative integer."""
    t = text.strip()
    if not t.isascii() or not t.isdigit() or len(t) > 19:
        return None
    v = int(t)
    return v if v < 2**63 else None


def frames_from_epoch_cues(frame_pts_ns: np.ndarray,
                           cues: Sequence[tuple[int, int, str]]) -> tuple[np.ndarray, np.ndarray, int]:
    """Pure: map subtitle cues ``(start_ns, end_ns, text)`` (container timeline) to frames.

    ``frame_pts_ns``: presentation times of the frames on the same timeline, ns,
    increasing. A cue belongs to the frame whose time is nearest its start, if within
    half the median frame interval (cue starts are ms-rounded). Returns
    ``(frame_idx, epoch_ns, n_ignored)``: arrays of matched frames (increasing) and
    their epoch ns, and how many cues were ignored (not a number, no frame nearby, or a
    second cue on the same frame).
    """
    f = np.asarray(frame_pts_ns, dtype=np.int64)
    if len(f) == 0:
        return np.empty(0, np.int64), np.empty(0, np.int64), len(cues)
    half = (float(np.median(np.diff(f))) / 2) if len(f) > 1 else 5e8
    out_i: list[int] = []
    out_t: list[int] = []
    seen: set[int] = set()
    ignored = 0
    for start, _end, text in cues:
        v = parse_epoch_cue(text)
        if v is None:
            ignored += 1
            continue
        j = int(np.searchsorted(f, start))
        best = None
        for k in (j - 1, j):
            if 0 <= k < len(f) and (best is None or abs(int(f[k]) - start) <= abs(int(f[best]) - start)):
                best = k
        if best is None or abs(int(f[best]) - start) > half or best in seen:
            ignored += 1
            continue
        seen.add(best)
        out_i.append(best)
        out_t.append(v)
    order = np.argsort(np.asarray(out_i, dtype=np.int64), kind="stable")
    return (np.asarray(out_i, dtype=np.int64)[order], np.asarray(out_t, dtype=np.int64)[order], ignored)


def _msg(e: BaseException) -> str:
    return " ".join(str(e).split())[:200] or type(e).__name__


__all__ = ["export_owa", "plan_cues", "write_srt", "frames_from_epoch_cues", "parse_epoch_cue",
           "epoch_track_tags", "Cue", "PER_CHOICES"]
