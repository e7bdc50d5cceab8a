"""One demux pass over a recording: per-frame pts/keyframes, in-band captions, subtitles.

``scan_video(path)`` reads every video packet once with PyAV and never decodes a
picture. Per packet it keeps only three numbers (pts, keyframe flag, decode index) and
hands the packet bytes, zero-copy, to :func:`companion.align.sei.cc_data_from_packet`,
which inspects NAL/OBU headers only. The cc_data of all packets, in decode order, go
through one :class:`~companion.align.cea608.Cea608Decoder`; a caption that completes
(EOC) on a packet belongs to that packet's frame. Frame indices are presentation order:
the rank of a packet's pts among all video pts (ties keep decode order).

Audio packets are discarded by the demuxer; only the first audio stream's parameters
are reported. The first text subtitle track (SRT/ASS/WebVTT/mov_text; open-world-agents
MKVs keep one whose cue text is the epoch time in ns) is collected as
``(start_ns, end_ns, text)`` on the container timeline.
"""
from __future__ import annotations

import os
from array import array
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from companion.align.cea608 import Cea608Decoder
from companion.align.header import STANDARD_RATES, header_info, video_streams
from companion.align.sei import cc_data_from_packet, nal_length_size_from_extradata, normalize_codec
from companion.util.errors import BadInput


TEXT_SUBTITLE_CODECS = ("subrip", "srt", "ass", "ssa", "webvtt", "mov_text", "text")

# A declared duration longer than the last video packet's end by more than this many
# seconds means a cut file. The video track's own duration is exact; the container's
# covers audio too, which may run a little longer than the video.
TRUNCATION_SLACK_VIDEO_S = 0.1  # or 3 frame intervals, whichever is larger
TRUNCATION_SLACK_CONTAINER_S = 1.5


@dataclass(eq=False)
class VideoScan:
    """What one demux pass learned about a recording.

    Times: ``pts`` are integer ticks of ``time_base`` seconds, sorted into presentation
    order (frame ``i`` has ``pts[i]``); ``duration_ns`` is the video span from the first
    frame's pts to the end of the last frame, in ns. ``fps`` is frames per second.
    ``captions`` holds ``(frame_idx, text)`` in the order the captions were displayed
    (decode order); ``subtitle_cues`` holds ``(start_ns, end_ns, text)`` of the first
    text subtitle track (``end_ns == start_ns`` if the container gave no duration).
    """

    path: str
    codec: str
    width: int
    height: int
    fps: Fraction
    time_base: Fraction
    pts: np.ndarray
    keyframe: np.ndarray
    captions: list[tuple[int, str]]
    subtitle_cues: list[tuple[int, int, str]]
    has_audio: bool
    audio_rate: int | None
    audio_channels: int | None
    duration_ns: int
    truncated: bool
    has_bframes: bool
    # -- beyond the design-doc minimum -------------------------------------------------
    duplicate_pts: int = 0
    """Frames whose pts equals the previous frame's pts (presentation order)."""
    missing_frames: int = 0
    """Frames absent from the constant-rate grid (sum over pts gaps)."""
    pts_gaps: list[tuple[int, int]] = field(default_factory=list)
    """``(frame_idx, n_missing)``: ``n_missing`` grid slots are empty before frame_idx."""
    warnings: list[str] = field(default_factory=list)
    """One-line notes: why ``truncated`` is set, dropped packets, odd timing."""
    truncated_reason: str | None = None
    """Why ``truncated`` is True (one line; the same text is also in ``warnings``)."""

    @property
    def n_frames(self) -> int:
        return int(self.pts.shape[0])

    def frame_time_s(self, i: int) -> float:
        """Presentation time of frame ``i`` in seconds on the container timeline."""
        return float(self.pts[i] * self.time_base)


def _bad(path, what: str) -> BadInput:
    return BadInput(f"{path}: {what}")


def _open(path: Path):
    if not path.exists():
        raise _bad(path, "no such file")
    if path.is_dir():
        raise _bad(path, "is a directory, not a video file")
    try:
        if path.stat().st_size == 0:
            raise _bad(path, "empty file, not a video")
    except OSError as e:
        raise _bad(path, f"cannot read ({e.strerror or e})") from None
    try:
        return av.open(str(path), mode="r")
    except av.error.FFmpegError as e:
        hint = ""
        if path.suffix.lower() in (".mp4", ".mov", ".m4v"):
            hint = "; an MP4/MOV whose recording was interrupted has no index (record to MKV)"
        raise _bad(path, f"not a readable video file ({_ffmsg(e)}){hint}") from None
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise _bad(path, f"cannot open ({e})") from None


def _ffmsg(e: Exception) -> str:
    s = getattr(e, "strerror", None) or str(e)
    return " ".join(str(s).split())


def _choose_fps(stream, pts_sorted: np.ndarray, tb: Fraction) -> Fraction:
    """Frames per second, from the mean spacing of consecutive pts that are on the grid.

    Spacings far from the median (gaps of dropped frames, duplicated pts) are left
    out: rate = (number of regular spacings) / (their total duration). The measured
    rate snaps to a standard rate (24000/1001 ... 240) if within the measurement error
    (1.5 ticks over the measured span, at least 0.05 %), else to a declared stream
    rate (guessed/average/base) within 1 %, else it is rounded to a fraction with
    denominator <= 1001. With no usable spacing the declared rate is used (0 if none).
    """
    declared = []
    for attr in ("guessed_rate", "average_rate", "base_rate"):
        try:
            r = getattr(stream, attr)
        except Exception:  # pragma: no cover - PyAV version differences
            r = None
        if r and 0 < r < 2000:
            declared.append(Fraction(r))
    d = np.diff(pts_sorted)
    d = d[d > 0]
    if d.size:
        med = float(np.median(d))
        d = d[(d >= 0.5 * med) & (d <= 1.5 * med)]
    span = int(d.sum()) if d.size else 0
    if span <= 0:
        return declared[0] if declared else Fraction(0)
    measured = Fraction(int(d.size)) / (Fraction(span) * tb)
    tol = max(Fraction(1, 2000), Fraction(3, 2 * span))
    best = min(STANDARD_RATES, key=lambda r: abs(r - measured))
    if abs(best - measured) <= best * tol:
        return best
    for r in declared:
        if r.denominator <= 1001 and abs(r - measured) <= measured / 100:
            return r
    return measured.limit_denominator(1001)


def _subtitle_text(codec: str, data: bytes) -> str:
    if codec == "mov_text" and len(data) >= 2:
        n = int.from_bytes(data[:2], "big")
        data = data[2:2 + n]
    text = data.decode("utf-8", errors="replace").rstrip("\x00")
    if codec in ("ass", "ssa"):
        # Matroska ASS blocks: ReadOrder,Layer,Style,Name,MarginL,MarginR,MarginV,Effect,Text
        parts = text.split(",", 8)
        if len(parts) == 9:
            text = parts[8]
        text = text.replace("\\N", "\n").replace("\\n", "\n")
        out, depth = [], 0
        for ch in text:  # drop {\override} blocks
            if ch == "{":
                depth += 1
            elif ch == "}" and depth:
                depth -= 1
            elif not depth:
                out.append(ch)
        text = "".join(out)
    return text.strip()


def scan_video(path: str | os.PathLike, progress=None, *, on_header=None,
               audio_sink=None) -> VideoScan:
    """Demux ``path`` once (no decoding) and return a :class:`VideoScan`.

    ``progress``: a :class:`companion.util.progress.Progress` (or anything with
    ``update(n)``), advanced by the number of video packets read; its ``total`` is set
    to the estimated frame count if it has none. Raises :class:`BadInput` with a
    one-line message naming the file if it is missing, empty, not a media file, or has
    no video stream.

    ``on_header(info: header.HeaderInfo)``: called once the header is read, before the first
    packet (its exceptions propagate). ``audio_sink(rate, channels)``: called then when
    the file has audio; it may return an object whose ``put(pkt)`` receives every packet
    of the first audio stream in stream order (PyAV's empty end-of-stream packet last)
    and whose ``finish()`` is called after the last one (also when demuxing stopped
    early); returning None leaves the audio discarded as without a sink.
    """
    path = Path(path)
    container = _open(path)
    try:
        return _scan(container, path, progress, on_header, audio_sink)
    finally:
        container.close()


def _scan(container, path: Path, progress, on_header=None, audio_sink=None) -> VideoScan:
    fmt = (container.format.name or "") if container.format else ""
    if fmt.startswith("image2") or fmt.endswith("_pipe"):
        raise _bad(path, f"is a still image ({fmt}), not a video")
    videos = video_streams(container)
    if not videos:
        raise _bad(path, "no video stream")
    vs = videos[0]
    cc = vs.codec_context
    audio = container.streams.audio[0] if container.streams.audio else None
    info, declared_src = header_info(container, vs, audio)
    codec, tb = info.codec, info.time_base
    audio_rate, audio_channels = info.audio_rate, info.audio_channels
    declared_end_s = info.declared_end_s
    width, height = int(cc.width or 0), int(cc.height or 0)
    cap_codec = normalize_codec(codec)
    nls = nal_length_size_from_extradata(cc.extradata, codec) or 4

    sub = None
    for s in container.streams.subtitles:
        if s.codec_context.name in TEXT_SUBTITLE_CODECS:
            sub = s
            break
    if on_header is not None:
        on_header(info)
    sink = None
    if audio_sink is not None and audio is not None and audio_rate and audio_channels:
        sink = audio_sink(audio_rate, audio_channels)
    wanted = [vs] + ([sub] if sub is not None else []) + ([audio] if sink is not None else [])
    for s in container.streams:
        if s not in wanted:
            try:
                s.discard = av.stream.Discard.all
            except Exception:  # pragma: no cover - older PyAV without Discard
                pass

    if progress is not None and getattr(progress, "total", 1) is None and declared_end_s:
        rate = vs.average_rate or vs.guessed_rate
        if rate:
            progress.total = int(declared_end_s * float(rate)) + 1

    warnings: list[str] = []
    pts_l = array("q")  # 8 bytes per frame: memory stays flat for hours of video
    key_l = array("b")
    end_l_max = None  # (pts, duration) of the packet with the largest pts
    reordered = False
    prev_pts = None
    no_ts = 0
    caps_raw: list[tuple[int, str]] = []
    cues: list[tuple[int, int, str]] = []
    dec = Cea608Decoder()
    feed = dec.feed
    vidx = vs.index
    sub_codec = sub.codec_context.name if sub is not None else ""
    sub_tb = Fraction(sub.time_base) if sub is not None and sub.time_base else None
    demux_error = None
    pending = 0
    aidx = audio.index if sink is not None else -1
    aput = sink.put if sink is not None else None

    try:
        try:
            for pkt in container.demux(*wanted):
                if not pkt.size:
                    # PyAV's end-of-stream flush packets (their stream_index is 0: ask .stream)
                    if aput is not None and pkt.stream is audio:
                        aput(pkt)
                    continue
                si = pkt.stream_index
                if si != vidx:
                    if si == aidx:
                        aput(pkt)
                    elif sub is not None and si == sub.index and pkt.pts is not None:
                        t0 = pkt.pts * sub_tb
                        start_ns = int(t0 * 1_000_000_000)
                        end_ns = int((t0 + (pkt.duration or 0) * sub_tb) * 1_000_000_000)
                        cues.append((start_ns, end_ns, _subtitle_text(sub_codec, bytes(pkt))))
                    continue
                pts = pkt.pts
                if pts is None:
                    pts = pkt.dts
                    if pts is None:
                        no_ts += 1
                        continue
                if prev_pts is not None and pts < prev_pts:
                    reordered = True
                prev_pts = pts
                if end_l_max is None or pts >= end_l_max[0]:
                    end_l_max = (pts, pkt.duration or 0)
                if cap_codec is not None:
                    trips = cc_data_from_packet(memoryview(pkt), cap_codec, nls)
                    if trips:
                        for valid, typ, b1, b2 in trips:
                            if valid and typ == 0:
                                text = feed(b1, b2)
                                if text is not None:
                                    caps_raw.append((len(pts_l), text))
                pts_l.append(pts)
                key_l.append(1 if pkt.is_keyframe else 0)
                if progress is not None:
                    pending += 1
                    if pending >= 64:
                        progress.update(pending)
                        pending = 0
        finally:
            if sink is not None:
                sink.finish()
    except av.error.EOFError:
        pass
    except av.error.FFmpegError as e:
        demux_error = _ffmsg(e)
    if progress is not None and pending:
        progress.update(pending)

    n = len(pts_l)
    if n == 0:
        if demux_error:
            raise _bad(path, f"no readable video packets ({demux_error})")
        if no_ts:
            raise _bad(path, f"none of the {no_ts} video packets has a timestamp "
                             "(raw elementary stream?); remux it into MKV first")
        raise _bad(path, "video stream has no packets")
    if no_ts:
        warnings.append(f"{no_ts} video packets without timestamps were skipped")

    pts_dec = np.frombuffer(pts_l, dtype=np.int64).copy()
    key_dec = np.frombuffer(key_l, dtype=np.int8).astype(np.bool_)
    del pts_l, key_l
    order = np.argsort(pts_dec, kind="stable")
    pts = pts_dec[order]
    keyframe = key_dec[order]
    rank = np.empty(n, dtype=np.int64)
    rank[order] = np.arange(n, dtype=np.int64)
    captions = [(int(rank[i]), text) for i, text in caps_raw]

    fps = _choose_fps(vs, pts, tb)
    deltas = np.diff(pts)
    duplicate_pts = int(np.count_nonzero(deltas == 0))
    if duplicate_pts:
        warnings.append(f"{duplicate_pts} frames repeat the previous frame's pts")
    missing = 0
    gaps: list[tuple[int, int]] = []
    if fps > 0 and n >= 2:
        interval = 1 / (fps * tb)  # ticks per frame (Fraction)
        big = np.nonzero(deltas > float(interval) * 1.5)[0]
        for j in big:
            k = int(round(Fraction(int(deltas[j])) / interval)) - 1
            if k > 0:
                gaps.append((int(j) + 1, k))
                missing += k
        if missing:
            warnings.append(f"{missing} frames missing from the {float(fps):g} fps grid "
                            f"in {len(gaps)} gaps")
    last_pts, last_dur = end_l_max
    if last_dur <= 0:
        last_dur = float(1 / (fps * tb)) if fps > 0 else 0
    end_ticks = last_pts + last_dur
    duration_ns = int(round((end_ticks - int(pts[0])) * tb * 1_000_000_000))

    reasons: list[str] = []
    if demux_error:
        reasons.append(f"demuxing stopped early: {demux_error}")
    actual_end_s = float(end_ticks * tb)
    if declared_end_s is not None:
        if declared_src == "container duration":
            slack = TRUNCATION_SLACK_CONTAINER_S
        elif fps > 0:
            slack = max(TRUNCATION_SLACK_VIDEO_S, 3 / float(fps))
        else:
            slack = 0.5
        if declared_end_s - actual_end_s > slack:
            reasons.append(f"{declared_src} says {declared_end_s:.3f} s but video packets "
                           f"end at {actual_end_s:.3f} s")
    warnings.extend(reasons)
    truncated = bool(reasons)

    return VideoScan(
        path=str(path), codec=codec, width=width, height=height, fps=fps, time_base=tb,
        pts=pts, keyframe=keyframe, captions=captions, subtitle_cues=cues,
        has_audio=audio is not None, audio_rate=audio_rate, audio_channels=audio_channels,
        duration_ns=duration_ns, truncated=truncated, has_bframes=reordered,
        duplicate_pts=duplicate_pts, missing_frames=missing, pts_gaps=gaps, warnings=warnings,
        truncated_reason="; ".join(reasons) or None)
