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

from companion.align import mkv
from companion.align.cea608 import Cea608Decoder
from companion.align.header import header_info, snap_standard_rate, video_streams
from companion.align.sei import (cc_data_from_packet, cc_data_from_reader,
                                 nal_length_size_from_extradata, normalize_codec)
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
    demuxer: str = "pyav"
    """Which reader produced the packets: ``"pyav"`` or ``"matroska-walker"`` (the
    same results either way; see :mod:`companion.align.mkv`)."""

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
    best = snap_standard_rate(measured, tol)
    if best is not None:
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


@dataclass
class _Packets:
    """What a reader collected from the packets (decode order)."""

    pts: array = field(default_factory=lambda: array("q"))  # 8 bytes per frame: flat memory
    key: array = field(default_factory=lambda: array("b"))
    end_max: tuple[int, int] | None = None  # (pts, duration) of the packet with the largest pts
    reordered: bool = False
    no_ts: int = 0
    captions: list[tuple[int, str]] = field(default_factory=list)  # (decode index, text)
    cues: list[tuple[int, int, str]] = field(default_factory=list)
    error: str | None = None


def _cue(sub_tb: Fraction, pts: int, duration: int, codec: str, data: bytes):
    t0 = pts * sub_tb
    start_ns = int(t0 * 1_000_000_000)
    end_ns = int((t0 + duration * sub_tb) * 1_000_000_000)
    return start_ns, end_ns, _subtitle_text(codec, data)


class _PyAVReader:
    """Packets from PyAV's demuxer (any container FFmpeg reads)."""

    name = "pyav"

    def __init__(self, container, vs, sub, audio):
        self.container, self.vs, self.sub, self.audio = container, vs, sub, audio

    def read(self, sink, progress, cap_codec, nls) -> _Packets:
        container, vs, sub, audio = self.container, self.vs, self.sub, self.audio
        wanted = [vs] + ([sub] if sub is not None else []) + ([audio] if sink is not None else [])
        for s in container.streams:
            if s not in wanted:
                try:
                    s.discard = av.stream.Discard.all
                except Exception:  # pragma: no cover - older PyAV without Discard
                    pass
        r = _Packets()
        pts_l, key_l, caps_raw, cues = r.pts, r.key, r.captions, r.cues
        end_l_max = None
        prev_pts = None
        dec = Cea608Decoder()
        feed = dec.feed
        vidx = vs.index
        sub_codec = sub.codec_context.name if sub is not None else ""
        sub_tb = Fraction(sub.time_base) if sub is not None and sub.time_base else None
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
                            cues.append(_cue(sub_tb, pkt.pts, pkt.duration or 0, sub_codec,
                                             bytes(pkt)))
                        continue
                    pts = pkt.pts
                    if pts is None:
                        pts = pkt.dts
                        if pts is None:
                            r.no_ts += 1
                            continue
                    if prev_pts is not None and pts < prev_pts:
                        r.reordered = True
                    prev_pts = pts
                    if end_l_max is None or pts >= end_l_max[0]:
                        end_l_max = (pts, pkt.duration or 0)
                    if cap_codec is not None:
                        trips = cc_data_from_packet(memoryview(pkt), cap_codec, nls)
                        if trips:
                            _feed_captions(trips, feed, caps_raw, len(pts_l))
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
            r.error = _ffmsg(e)
        if progress is not None and pending:
            progress.update(pending)
        r.end_max = end_l_max
        return r


# -- Matroska fast path ---------------------------------------------------------------

# CodecIDs whose blocks FFmpeg's Matroska demuxer hands over unchanged, one frame each
# (checked field by field against PyAV in tests/test_mkv_scan.py).
WALKER_VIDEO_CODECS = {"V_MPEG4/ISO/AVC": "h264", "V_MPEGH/ISO/HEVC": "hevc", "V_AV1": "av1"}
WALKER_SUBTITLE_CODECS = {"S_TEXT/UTF8": ("subrip", "srt", "text"),
                          "S_TEXT/ASS": ("ass", "ssa"), "S_TEXT/SSA": ("ass", "ssa"),
                          "S_ASS": ("ass", "ssa"), "S_SSA": ("ass", "ssa")}
_STREAM_TYPE = {mkv.TRACK_VIDEO: "video", mkv.TRACK_AUDIO: "audio",
                mkv.TRACK_SUBTITLE: "subtitle"}


# The walker reads with pread on a private descriptor (binary mode on Windows, where
# os.open defaults to text mode and there is no os.pread: seek + read there; each
# descriptor is used by one thread).
_O_RDONLY = os.O_RDONLY | getattr(os, "O_BINARY", 0)


def _pread_seek(fd: int, n: int, offset: int) -> bytes:
    """pread where the OS has none (Windows): seek + read."""
    os.lseek(fd, offset, os.SEEK_SET)
    return os.read(fd, n)


_pread = getattr(os, "pread", _pread_seek)


class WalkerDeclined(Exception):
    """The Matroska walker does not handle this file (one-line reason)."""


def walk_matroska(path: Path, container, vs, sub, audio, progress=None, cap_codec=None,
                  nls: int = 4, walk_sink=None, audio_feed=None):
    """Read ``path``'s packets with :mod:`companion.align.mkv` by ``pread``: returns a
    reader whose ``read`` hands the audio to the sink, or None when the file is anything
    the walker does not fully understand (then nothing was consumed and the PyAV reader
    is used). The walk itself (block headers, caption NALs) has no side effect besides
    ``progress``. ``container`` is the open PyAV container: stream parameters come from
    it, so both readers share the header facts. ``audio``: the audio stream a sink will
    decode (None: audio blocks are not read). ``walk_sink``: ``(sink, codec, width,
    height)`` for ``scan_video``'s ``walk_sink`` (its ``walk_blocks`` calls).
    ``audio_feed``: an audio sink with ``begin_blocks``/``add_blocks`` (one that decodes
    elsewhere, ``dataset.audio_child``): given the audio blocks as the walk finds them
    (``read`` sends the rest and ``end_blocks``)."""
    counted = [0]
    try:
        return _MkvWalk.plan(path, container, vs, sub, audio, progress, cap_codec, nls, counted,
                             walk_sink, audio_feed)
    except (WalkerDeclined, mkv.MkvError, OSError, ValueError, IndexError, OverflowError,
            BufferError):
        if counted[0] and isinstance(getattr(progress, "done", None), int):
            progress.done -= counted[0]   # the PyAV reader counts the packets again
        return None


def walker_decline_reason(path, *, audio: bool = True) -> str | None:
    """Why the walker would not read ``path`` (None: it would). For tests and tools."""
    path = Path(path)
    with av.open(str(path)) as c:
        videos = video_streams(c)
        if not videos:
            return "no video stream"
        sub = next((s for s in c.streams.subtitles
                    if s.codec_context.name in TEXT_SUBTITLE_CODECS), None)
        a = c.streams.audio[0] if (audio and c.streams.audio) else None
        try:
            codec = header_info(c, videos[0], a)[0].codec
            nls = nal_length_size_from_extradata(videos[0].codec_context.extradata, codec) or 4
            _MkvWalk.plan(path, c, videos[0], sub, a, None, normalize_codec(codec), nls, [0])
        except (WalkerDeclined, mkv.MkvError, OSError, ValueError, IndexError,
                OverflowError, BufferError) as e:
            return f"{type(e).__name__}: {e}"
        return None


class WalkTable:
    """The video blocks a Matroska walk read, in decode order (``pts``, ``key``, file
    ``offsets``, ``sizes``), where the last frame ends (``end_pts``), the codec, its
    CodecPrivate, the frame size and the time base: what a stream copy of the frames
    needs (``dataset.mux_copy``) without reading the file again."""

    def __init__(self, src, pts, key, offsets, sizes, end_pts: int, codec: str,
                 codec_private: bytes | None, width: int, height: int, time_base):
        self.src = Path(src)
        self.pts = np.asarray(pts, dtype=np.int64)
        self.key = np.asarray(key, dtype=bool)
        self.offsets = np.asarray(offsets, dtype=np.int64)
        self.sizes = np.asarray(sizes, dtype=np.int64)
        self.end_pts, self.codec = int(end_pts), codec
        self.codec_private = codec_private
        self.width, self.height, self.time_base = int(width), int(height), time_base


class _MkvWalk:
    name = "matroska-walker"

    def __init__(self, path: Path, packets: _Packets, audio_cols, audio_stream, audio_shift: int,
                 tb: Fraction, video_cols=None, codec_private: bytes | None = None):
        self.path, self.packets = path, packets
        self.video_cols = video_cols          # (file offsets, sizes) of the video blocks
        self.codec_private = codec_private
        self.audio_cols, self.audio_stream, self.audio_shift = audio_cols, audio_stream, audio_shift
        self.tb = tb
        self.audio_sent: int | None = None    # blocks given to an audio_feed during the walk

    @classmethod
    def plan(cls, path: Path, container, vs, sub, audio, progress, cap_codec, nls,
             counted: list, walk_sink=None, audio_feed=None) -> "_MkvWalk":
        fd = os.open(path, _O_RDONLY)
        try:
            return cls._plan(path, fd, container, vs, sub, audio, progress, cap_codec, nls,
                             counted, walk_sink, audio_feed)
        finally:
            os.close(fd)

    @classmethod
    def _plan(cls, path, fd, container, vs, sub, audio, progress, cap_codec, nls,
              counted, walk_sink=None, audio_feed=None) -> "_MkvWalk":
        size, lay = _read_layout(fd)
        read = _pread_reader(fd)
        if lay.segment_size_known and lay.segment_end != size:
            raise WalkerDeclined("bytes after the segment")
        tracks = lay.tracks
        streams = list(container.streams)
        if len(streams) < len(tracks):
            raise WalkerDeclined("fewer streams than tracks")
        for t, s in zip(tracks, streams):
            if _STREAM_TYPE.get(t.type) != s.type:
                raise WalkerDeclined(f"track {t.number} ({t.type}) is stream {s.index} ({s.type})")
        tb = Fraction(lay.timecode_scale, 1_000_000_000)

        def track_of(stream, what):
            if stream.index >= len(tracks):
                raise WalkerDeclined(f"{what} stream is not a track")
            t = tracks[stream.index]
            if t.encoded:
                raise WalkerDeclined(f"{what} track has content encodings")
            if t.codec_delay and what != "audio":
                raise WalkerDeclined(f"{what} track has a codec delay")
            if t.timecode_scale not in (None, 1.0):
                raise WalkerDeclined(f"{what} track has a timestamp scale")
            if not stream.time_base or Fraction(stream.time_base) != tb:
                raise WalkerDeclined(f"{what} time base differs from TimestampScale")
            return t

        vt = track_of(vs, "video")
        if vt.codec_id not in WALKER_VIDEO_CODECS or \
                cap_codec != WALKER_VIDEO_CODECS[vt.codec_id]:
            raise WalkerDeclined(f"video codec {vt.codec_id}")
        st = None
        if sub is not None:
            st = track_of(sub, "subtitle")
            if sub.codec_context.name not in WALKER_SUBTITLE_CODECS.get(st.codec_id, ()):
                raise WalkerDeclined(f"subtitle codec {st.codec_id}")
        at = None
        if audio is not None:
            at = track_of(audio, "audio")
            if not (at.codec_id == "A_AAC" or at.codec_id.startswith("A_AAC/")):
                raise WalkerDeclined(f"audio codec {at.codec_id}")
        known = {t.number for t in tracks}
        vnum = vt.number
        snum = st.number if st is not None else -1
        anum = at.number if at is not None else -1
        r = _Packets()
        pts_l, key_l, caps_raw, cues = r.pts, r.key, r.captions, r.cues
        a_ts, a_off, a_size = array("q"), array("q"), array("q")
        v_off, v_size = array("q"), array("q")
        feed = Cea608Decoder().feed
        sub_codec = sub.codec_context.name if sub is not None else ""
        sub_tb = Fraction(sub.time_base) if sub is not None else None
        end_pts = -1
        end_dur = None
        prev = None
        pending = 0
        step_at = -1                       # walk_sink: the block count of its next call
        if walk_sink is not None:
            ws, ws_codec, ws_w, ws_h = walk_sink
            step = int(ws.step)
            step_at = step + 1 if step > 0 else -1
        # FFmpeg moves an audio track's packets earlier by its CodecDelay (encoder
        # priming), rounded to the nearest tick; the decoder drops the primed samples
        shift = 0
        if at is not None and at.codec_delay:
            num = at.codec_delay * tb.denominator
            den = 1_000_000_000 * tb.numerator
            shift = (2 * num + den) // (2 * den)
        a_feed, a_sent, a_next = None, 0, -1   # audio_feed: blocks sent so far, next send
        if audio_feed is not None and at is not None and \
                audio_feed.begin_blocks(path, audio.index, tb, shift):
            a_feed, a_next = audio_feed.add_blocks, AUDIO_FEED_STEP
        for track, ts, key, off, n, dur, extras in mkv.iter_blocks(read, lay):
            if track == vnum:
                if extras:
                    raise WalkerDeclined(f"video block group with side data at offset {off}")
                if not n:
                    raise WalkerDeclined(f"empty video block at offset {off}")
                if prev is not None and ts < prev:
                    r.reordered = True
                prev = ts
                if ts >= end_pts:
                    end_pts, end_dur = ts, dur
                if cap_codec is not None:
                    trips = cc_data_from_reader(lambda i, k: read(off + i, k), n, cap_codec, nls)
                    if trips:
                        _feed_captions(trips, feed, caps_raw, len(pts_l))
                pts_l.append(ts)
                key_l.append(key)
                v_off.append(off)
                v_size.append(n)
                if len(pts_l) == step_at:
                    ws.walk_blocks(path, ws_codec, vt.codec_private, ws_w, ws_h, tb, pts_l,
                                   key_l, v_off, v_size)
                    step_at += step
                if progress is not None:
                    pending += 1
                    if pending >= 64:
                        progress.update(pending)
                        counted[0] += pending
                        pending = 0
            elif track == anum:
                if extras or not n:
                    raise WalkerDeclined(f"audio block with side data or empty at offset {off}")
                a_ts.append(ts)
                a_off.append(off)
                a_size.append(n)
                if len(a_ts) == a_next:
                    a_feed(a_ts[a_sent:], a_off[a_sent:], a_size[a_sent:])
                    a_sent, a_next = a_next, a_next + AUDIO_FEED_STEP
            elif track == snum:
                if extras or not n or not dur:
                    raise WalkerDeclined(f"subtitle block without a duration at offset {off}")
                data = read(off, n)
                if len(data) != n:
                    raise WalkerDeclined(f"subtitle block cut at offset {off}")
                cues.append(_cue(sub_tb, ts, dur, sub_codec, bytes(data)))
            elif track not in known:
                raise WalkerDeclined(f"block of undeclared track {track}")
        if progress is not None and pending:
            progress.update(pending)
            counted[0] += pending
        if not len(pts_l):
            raise WalkerDeclined("no video blocks")
        # duration of the video packet with the largest pts (the last one if tied), as
        # FFmpeg gives it: BlockDuration, else DefaultDuration in whole ticks
        if end_dur is None and vt.default_duration:
            end_dur = vt.default_duration // lay.timecode_scale
        if not end_dur or end_dur <= 0:
            raise WalkerDeclined("last video block has no duration")
        r.end_max = (end_pts, end_dur)
        w = cls(path, r, (a_ts, a_off, a_size) if at is not None else None, audio, shift, tb,
                (v_off, v_size), vt.codec_private)
        w.audio_sent = a_sent if a_feed is not None else None
        return w

    def table(self, codec: str, width: int, height: int):
        """The video blocks as a :class:`WalkTable` (decode order)."""
        r = self.packets
        end_pts, end_dur = r.end_max
        return WalkTable(self.path, np.frombuffer(r.pts, np.int64),
                         np.frombuffer(r.key, np.int8).astype(bool),
                         np.frombuffer(self.video_cols[0], np.int64),
                         np.frombuffer(self.video_cols[1], np.int64),
                         end_pts + max(int(end_dur), 0), codec, self.codec_private,
                         width, height, self.tb)

    def read(self, sink, progress, cap_codec, nls) -> _Packets:
        """Feed the audio sink the packets PyAV's demuxer would give it (read with
        ``pread``: a few hundred bytes each, no mapping) and return the walk's packets."""
        if sink is not None:
            try:
                if self.audio_cols is not None:
                    k = self.audio_sent
                    if k is not None:
                        # a sink decoding elsewhere (dataset.audio_child) got the blocks
                        # as the walk found them: the rest, then the end; if it cannot
                        # take them, every packet is decoded here after all
                        ts, off, size = self.audio_cols
                        if not (sink.add_blocks(ts[k:], off[k:], size[k:]) and sink.end_blocks()):
                            self._audio(sink)
                    else:
                        self._audio(sink)
            finally:
                sink.finish()
        return self.packets

    def _audio(self, sink) -> None:
        ts, off, size = self.audio_cols
        try:
            decode_blocks(self.path, self.audio_stream, self.tb, self.audio_shift, ts, off,
                          size, sink.put)
        except ShortRead:
            raise _bad(self.path, "the file changed while it was read") from None


class ShortRead(OSError):
    """An audio block read back shorter than the walk found it (the file changed)."""


AUDIO_FEED_STEP = 512
"""Audio blocks per ``add_blocks`` call to an audio feed during the walk (~11 s of AAC)."""


def decode_blocks(path, stream, tb: Fraction, shift: int, ts, off, size, put,
                  eos: bool = True) -> None:
    """Hand ``put`` the packets PyAV's demuxer would give for the audio blocks the walk
    found (``ts`` in ticks of ``tb``, file offsets and sizes; read with ``pread``, a few
    hundred bytes each, no mapping), then (``eos``) PyAV's empty end-of-stream packet.
    ``stream``: the PyAV stream they belong to (its decoder is used). Raises
    ``ShortRead``. Runs in the scan, or in ``dataset.audio_child``'s process on the same
    blocks, a batch at a time."""
    Packet = av.Packet
    pread = _pread
    fd = os.open(path, _O_RDONLY)
    try:
        for i in range(len(ts)):
            n = size[i]
            data = pread(fd, n, off[i])
            if len(data) != n:
                raise ShortRead(f"{path}: audio block at {off[i]} read short")
            p = Packet(data)
            p.pts = p.dts = ts[i] - shift
            p.time_base = tb
            p.stream = stream
            put(p)
    finally:
        os.close(fd)
    if eos:
        p = Packet()
        p.stream = stream
        put(p)


def _read_layout(fd: int, cut_ok: bool = False) -> tuple[int, mkv.Layout]:
    """``(file size, Matroska layout)``: the head is read until it reaches the first
    cluster (MkvError when the file is not one Matroska segment; ``cut_ok``: also when
    the segment declares more bytes than the file has, then ``segment_end`` is past
    the end of the file)."""
    size = os.fstat(fd).st_size
    head = _pread(fd, min(size, 1 << 16), 0)
    while True:
        try:
            return size, mkv.parse_layout(head, 1 << 62 if cut_ok else size)
        except mkv.MkvShort:
            if len(head) >= size:
                raise
            head = _pread(fd, min(size, 8 * len(head)), 0)


def matroska_cut(path) -> str | None:
    """Why the Matroska file ``path`` is cut short (one line), or None: it is whole, or
    its structure cannot be followed (then the demuxer's own checks decide)."""
    try:
        fd = os.open(path, _O_RDONLY)
    except OSError:
        return None
    try:
        size, lay = _read_layout(fd, cut_ok=True)
        return mkv.find_cut(_pread_reader(fd), lay, size)
    except (mkv.MkvError, OSError, ValueError, IndexError):
        return None
    finally:
        os.close(fd)


def _pread_reader(fd: int, min_read: int = 128):
    """``read(pos, n)`` by ``pread``, keeping the last read: the walker reads a few
    dozen bytes at each element and the caption walk's first NAL header is among them."""
    cache = [0, b""]
    pread = _pread

    def read(pos: int, n: int):
        off = pos - cache[0]
        buf = cache[1]
        if off >= 0 and off + n <= len(buf):
            return buf[off:off + n]
        buf = pread(fd, n if n > min_read else min_read, pos)
        cache[0], cache[1] = pos, buf
        return buf[:n] if len(buf) > n else buf
    return read


def _feed_captions(trips, feed, caps_raw: list, frame_in_decode_order: int) -> None:
    """Feed a packet's CEA-608 field-1 byte pairs to the decoder; a caption completed on
    this packet is recorded for its frame (decode-order index)."""
    for valid, typ, b1, b2 in trips:
        if valid and typ == 0:
            text = feed(b1, b2)
            if text is not None:
                caps_raw.append((frame_in_decode_order, text))


def scan_video(path: str | os.PathLike, progress=None, *, on_header=None,
               audio_sink=None, walk_sink=None, mkv_walker: bool = True) -> VideoScan:
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
    early); returning None leaves the audio discarded as without a sink. A sink that
    decodes elsewhere also has ``begin_blocks(path, stream_index, time_base, shift)``
    (True: it takes blocks), ``add_blocks(ts, offsets, sizes)`` and ``end_blocks()``
    (False: it cannot, and gets the packets by ``put`` after all): when the walker
    reads the file it gets the audio blocks' places as they are found instead of
    packets (``dataset.audio_child``).
    ``walk_sink``: gets the video blocks' pts, keyframe flags, file offsets and sizes
    (decode order) while the Matroska walker reads them: ``walk_blocks(path, codec,
    codec_private, width, height, time_base, pts, key, offsets, sizes)`` with the growing
    columns each time ``walk_sink.step`` more blocks (plus one) are known (read once the
    header callback has run; 0: no such calls), and
    ``put_walk(table: WalkTable)`` once the walk is complete. Neither is called when the
    file is read by PyAV; ``walk_blocks`` may have been called when the walker then
    gives up. Used to write the chunk MP4s without a second read (``dataset.mux_copy``).
    """
    path = Path(path)
    container = _open(path)
    try:
        return _scan(container, path, progress, on_header, audio_sink, mkv_walker, walk_sink)
    finally:
        container.close()


def _scan(container, path: Path, progress, on_header=None, audio_sink=None,
          mkv_walker: bool = True, walk_sink=None) -> VideoScan:
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
    if progress is not None and getattr(progress, "total", 1) is None and declared_end_s:
        rate = vs.average_rate or vs.guessed_rate
        if rate:
            progress.total = int(declared_end_s * float(rate)) + 1
    # The Matroska walker reads a few bytes per block instead of the whole file; it
    # gives up (None) on anything it does not fully understand, before any side effect.
    sink = None
    if audio_sink is not None and audio is not None and audio_rate and audio_channels:
        sink = audio_sink(audio_rate, audio_channels)
    try:
        walk = None
        if mkv_walker and fmt.startswith("matroska"):
            walk = walk_matroska(path, container, vs, sub,
                                 audio if audio_sink is not None else None, progress,
                                 cap_codec, nls,
                                 (walk_sink, codec, width, height) if walk_sink is not None else None,
                                 sink if hasattr(sink, "begin_blocks") else None)
        reader = _PyAVReader(container, vs, sub, audio) if walk is None else walk
        if walk is not None and walk_sink is not None:
            walk_sink.put_walk(walk.table(codec, width, height))
    except BaseException:
        if sink is not None:
            sink.finish()
        raise
    r = reader.read(sink, progress, cap_codec, nls)
    pts_l, key_l, end_l_max, reordered = r.pts, r.key, r.end_max, r.reordered
    no_ts, caps_raw, cues, demux_error = r.no_ts, r.captions, r.cues, r.error
    warnings: list[str] = []

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
    if walk is None and fmt.startswith("matroska"):
        # a walk that completed read every element to the end: only then is it known whole
        cut = matroska_cut(path)
        if cut:
            reasons.append(cut)
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
        truncated_reason="; ".join(reasons) or None, demuxer=reader.name)
