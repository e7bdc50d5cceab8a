"""Cut a video into chunk MP4s holding exact frame ranges.

``split_video`` reads the source once, sequentially (one demux pass, no video
decoding), and feeds every chunk's muxer from that pass:

* **copy chunks** (``ChunkPlan.copy``): the video packets whose pts fall in the chunk's
  frame range are remuxed unchanged into ``<chunk>.mp4``. Timestamps are rebased so the
  chunk's first frame has pts 0, in the source stream's time base. Decode timestamps are
  regenerated (Matroska stores none for the first reordered packets): the k-th packet of
  a chunk in decode order gets the k-th smallest pts of the chunk minus the reorder
  delay. A chunk is demoted to re-encoding when the copy would not decode to exactly its
  frames: its first packet is not its keyframe, a packet of it arrives after the next
  chunk's keyframe (an open GOP's leading picture), or its packet count is wrong.
* **re-encode chunks**: after the pass, each is cut by seeking to the keyframe at or
  before its first frame, decoding, and encoding exactly its frames with libx264
  (``ENCODE_OPTIONS``, same resolution, same timestamps rebased to 0).
* **audio** (optional): decoded in the same pass and handed to ``audio.AudioSplitter``.

Chunk MP4s carry video only; the chunk's audio is the separate WAV (seed 000).
Peak memory is bounded by a few packets per open chunk (at most two chunks are open
at once), independent of the recording's length.
"""
from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from companion.util.errors import BadInput, EnvProblem, NMError

from .audio import AudioProcess, AudioSplitter
from .chunking import ChunkPlan

# libx264 settings for frames that cannot be stream-copied: CRF 14 is visually lossless
# for screen content; "veryfast" (OBS's default x264 preset) keeps a 1080p60 re-encode
# practical (bench: 1.7x less CPU and 1.5x less memory than "faster" for the same size).
ENCODE_CODEC = "libx264"
ENCODE_OPTIONS = {"crf": "14", "preset": "veryfast"}

# Packets buffered at the start of each copy chunk to measure the reorder delay
# (B-frame depth). x264 uses at most 16 B-frames, so 32 packets always suffice.
_REORDER_WINDOW = 32


@dataclass
class SplitResult:
    """What ``split_video`` did. ``modes[i]`` is ``"copy"``, ``"smart"`` (ends re-encoded,
    middle copied) or ``"reencode"`` for chunk i; ``demoted`` maps chunk ids planned as
    copy but not copied to the reason; ``smart_fallback`` maps chunks where a smart cut
    was not possible to the reason; ``audio`` per-chunk sample stats (or None).
    ``copy_tool``: what wrote the chunk MP4s, ``"pyav"`` (this module) or ``"ffmpeg"``
    (the CLI fast path, ``ffmpeg_copy.py``); ``fast_skipped``: why the fast path was not
    tried (ffmpeg missing, a chunk needs re-encoding, ...); ``fast_fallback``: why its
    output was rejected or it failed (then this module cut the chunks);
    ``early_rejected``: see below."""

    modes: list[str]
    demoted: dict[int, str] = field(default_factory=dict)
    smart_fallback: dict[int, str] = field(default_factory=dict)
    audio: list[dict] | None = None
    copy_tool: str = "pyav"
    fast_skipped: str | None = None
    fast_fallback: str | None = None
    early_rejected: str | None = None
    """why the ffmpeg run started before the scan (``ffmpeg_copy.EarlyCopy``) was not
    used (None: it was, or there was none)."""


class _CopyChunk:
    """Muxer of one stream-copied chunk, fed packets in decode order."""

    def __init__(self, plan: ChunkPlan, path: Path, in_stream, chunk_pts: np.ndarray):
        self.plan = plan
        self.path = path
        self.in_stream = in_stream
        self.sorted_pts = chunk_pts.tolist()   # presentation order == ascending pts
        self.base = self.sorted_pts[0]
        self.k = 0
        self.buf: list = []
        self.shift: int | None = None
        self.dirty: str | None = None
        self.out = None
        self.ostream = None
        self.closed = False

    def mark_dirty(self, reason: str) -> None:
        if self.dirty is None:
            self.dirty = reason

    def add(self, pkt) -> None:
        if self.dirty is not None or self.closed:
            if self.closed and self.dirty is None:
                self.dirty = "a packet arrived after the chunk was closed"
            return
        if self.k == 0 and (pkt.pts != self.base or not pkt.is_keyframe):
            self.dirty = "first packet in decode order is not the chunk's keyframe"
            return
        if self.k >= len(self.sorted_pts):
            self.dirty = "more packets than frames"
            return
        self.k += 1
        if self.shift is None:
            self.buf.append(pkt)
            if len(self.buf) >= _REORDER_WINDOW or self.k == len(self.sorted_pts):
                self._flush_buf()
        else:
            self._write(pkt, self.k - 1)

    def _flush_buf(self) -> None:
        self.shift = max(self.sorted_pts[j] - p.pts for j, p in enumerate(self.buf))
        self._open()
        for j, p in enumerate(self.buf):
            self._write(p, j)
        self.buf = []

    def _open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.out = av_open(self.path, "w", format="mp4")
        self.ostream = self.out.add_stream_from_template(self.in_stream, opaque=True)
        self.ostream.time_base = self.in_stream.time_base
        self.ostream.codec_context.codec_tag = "avc1" if self.in_stream.codec_context.name == "h264" \
            else self.ostream.codec_context.codec_tag

    def _write(self, pkt, k: int) -> None:
        if self.dirty is not None:
            return
        pts = pkt.pts - self.base
        dts = self.sorted_pts[k] - self.base - self.shift
        if dts > pts:
            self.dirty = "B-frame reorder deeper than the copy window"
            return
        pkt.pts = pts
        pkt.dts = dts
        pkt.stream = self.ostream
        self.out.mux(pkt)

    def close(self) -> None:
        if self.closed:
            return
        if self.shift is None and self.buf and self.dirty is None:
            self._flush_buf()
        self.closed = True
        if self.out is not None:
            try:
                self.out.close()
            except Exception as e:  # noqa: BLE001 - any muxer failure demotes the chunk
                self.mark_dirty(f"muxer failed: {e}")
        if self.dirty is None and self.k != len(self.sorted_pts):
            self.dirty = f"{self.k} packets for {len(self.sorted_pts)} frames"


def av_open(path, mode="r", **kw):
    """``av.open`` with FFmpeg errors turned into one-line BadInput/NMError."""
    import av
    try:
        return av.open(str(path), mode, **kw)
    except (av.FFmpegError, OSError) as e:
        if mode == "r":
            raise BadInput(f"cannot read video {path}: {e}") from None
        raise NMError(f"cannot write {path}: {e}") from None


def _check_inputs(scan, plans: Sequence[ChunkPlan], paths: Sequence[Path]) -> np.ndarray:
    pts = np.asarray(scan.pts, dtype=np.int64)
    n = pts.shape[0]
    if n == 0:
        raise BadInput(f"{scan.path}: the video has no frames")
    if np.any(np.diff(pts) <= 0):
        raise BadInput(f"{scan.path}: video pts are not strictly increasing in presentation order")
    if not plans or plans[0].start_frame != 0 or plans[-1].end_frame != n or any(
            a.end_frame != b.start_frame for a, b in zip(plans, plans[1:])):
        raise ValueError("chunk plans must cover every frame exactly once")
    if len(paths) != len(plans):
        raise ValueError("one output path per chunk")
    return pts


def chunk_time_ranges(scan, plans: Sequence[ChunkPlan]) -> list[tuple[Fraction, Fraction]]:
    """Container time ``[t0, t1)`` in seconds of each chunk: pts of its first frame to pts
    of the next chunk's first frame (last chunk: last pts + one frame duration)."""
    tb = Fraction(scan.time_base)
    pts = scan.pts
    out = []
    for p in plans:
        t0 = int(pts[p.start_frame]) * tb
        if p.end_frame < len(pts):
            t1 = int(pts[p.end_frame]) * tb
        else:
            t1 = int(pts[-1]) * tb + 1 / Fraction(scan.fps)
        out.append((t0, t1))
    return out


def split_video(src: str | os.PathLike, scan, plans: Sequence[ChunkPlan],
                video_paths: Sequence[Path], audio_paths: Sequence[Path] | None = None,
                on_chunk: Callable[[int, str], None] | None = None,
                encode_options: dict | None = None, smart: bool = True,
                audio_process: bool = False) -> SplitResult:
    """Write ``video_paths[i]`` holding exactly frames ``plans[i]`` of ``src``.

    ``scan`` is the ``VideoScan`` of ``src`` (``pts`` in presentation order, ``keyframe``,
    ``time_base``, ``fps``, ``width``, ``height``, ``has_audio``, ``audio_rate``,
    ``audio_channels``). With ``audio_paths`` and an audio track, also writes one WAV per
    chunk (see ``audio.py``). ``on_chunk(chunk_id, mode)`` is called as each MP4 is done.
    ``smart``: cut chunks that cannot be copied whole by re-encoding only their ends
    (see ``_smart_cut``); False re-encodes them whole. ``audio_process``: decode audio in
    a separate process that reads the file on its own, instead of a thread fed by this
    pass. Off by default: measured on the 2-core dev box it was slower (3.2 s vs 2.5 s
    wall for 10 min of 1080p60; the child pays interpreter start-up and a second demux),
    it may pay off with idle cores.
    """
    import av
    pts = _check_inputs(scan, plans, video_paths)
    n = pts.shape[0]
    chunk_of = np.empty(n, dtype=np.int64)
    for p in plans:
        chunk_of[p.start_frame:p.end_frame] = p.chunk_id
    chunk_of_l = chunk_of.tolist()
    frame_of = {v: i for i, v in enumerate(pts.tolist())}
    starts = [p.start_frame for p in plans]

    container = av_open(src)
    copies: dict[int, _CopyChunk] = {}
    audio_worker = None
    audio_proc = None
    try:
        if not container.streams.video:
            raise BadInput(f"{src}: no video stream")
        vs = container.streams.video[0]
        streams = [vs]
        splitter = None
        a_stream = None
        if audio_paths is not None and scan.has_audio and container.streams.audio:
            ranges = chunk_time_ranges(scan, plans)
            if audio_process:
                audio_proc = AudioProcess(src, ranges, audio_paths, int(scan.audio_rate),
                                          int(scan.audio_channels))
            else:
                a_stream = container.streams.audio[0]
                streams.append(a_stream)
                splitter = AudioSplitter(ranges, audio_paths, int(scan.audio_rate),
                                         int(scan.audio_channels))
                audio_worker = _AudioWorker(a_stream, splitter)
        for p in plans:
            if p.copy:
                copies[p.chunk_id] = _CopyChunk(p, Path(video_paths[p.chunk_id]), vs,
                                                pts[p.start_frame:p.end_frame])
        modes = ["reencode"] * len(plans)
        result = SplitResult(modes=modes)
        lowest_open = 0          # copy chunks below this id are closed
        max_started = -1         # highest chunk whose first keyframe has been demuxed
        vindex = vs.index
        try:
            for pkt in container.demux(streams):
                if pkt.stream_index == vindex:
                    ppts = pkt.pts
                    if ppts is None:
                        continue
                    fi = frame_of.get(ppts)
                    if fi is None:
                        continue          # not a frame of the scan (e.g. a discarded packet)
                    c = chunk_of_l[fi]
                    if fi == starts[c] and c > max_started:
                        max_started = c
                    cc = copies.get(c)
                    if cc is not None:
                        if c < max_started:
                            cc.mark_dirty("a packet of it follows the next chunk's keyframe "
                                          "(open GOP)")
                        cc.add(pkt)
                    while lowest_open < c - 1:
                        done = copies.get(lowest_open)
                        if done is not None:
                            done.close()
                            if done.dirty is None:
                                modes[lowest_open] = "copy"
                                if on_chunk:
                                    on_chunk(lowest_open, "copy")
                        lowest_open += 1
                elif audio_worker is not None:
                    audio_worker.put(pkt)
        except av.FFmpegError:
            pass   # truncated/corrupt tail: chunks that did not get all packets are demoted
        if audio_worker is not None:
            audio_worker.finish()
        for cid in range(lowest_open, len(plans)):
            cc = copies.get(cid)
            if cc is not None:
                cc.close()
                if cc.dirty is None:
                    modes[cid] = "copy"
                    if on_chunk:
                        on_chunk(cid, "copy")
        for cid, cc in copies.items():
            if cc.dirty is not None:           # (also if it went bad after being closed)
                modes[cid] = "reencode"
                result.demoted[cid] = cc.dirty
                with contextlib.suppress(FileNotFoundError):
                    Path(video_paths[cid]).unlink()
        if splitter is not None:
            result.audio = splitter.finish()
        if audio_proc is not None:
            result.audio = audio_proc.result()
        for p in plans:
            if modes[p.chunk_id] != "copy":
                path = Path(video_paths[p.chunk_id])
                opts = encode_options or ENCODE_OPTIONS
                mode = "reencode"
                if smart and p.chunk_id not in result.demoted:
                    why = _smart_cut(container, vs, scan, pts, p, path, opts)
                    if why is None:
                        mode = "smart"
                    else:
                        result.smart_fallback[p.chunk_id] = why
                if mode == "reencode":
                    _reencode(container, vs, scan, pts, p, path, opts)
                modes[p.chunk_id] = mode
                if on_chunk:
                    on_chunk(p.chunk_id, mode)
        return result
    finally:
        if audio_worker is not None:
            audio_worker.stop()
        if audio_proc is not None:
            audio_proc.stop()
        for cc in copies.values():             # only open ones if we are failing
            if cc.out is not None and not cc.closed:
                cc.closed = True
                with contextlib.suppress(Exception):
                    cc.out.close()
        container.close()


class _AudioWorker:
    """Decodes audio packets and feeds the splitter on a second thread, so audio decoding
    (FFmpeg releases the GIL) overlaps the video demux/remux of the main thread. Packets
    are handed over in batches to keep queue traffic low."""

    _BATCH = 64

    def __init__(self, stream, splitter: AudioSplitter):
        import queue
        import threading
        self.stream = stream
        self.splitter = splitter
        self.q: queue.Queue = queue.Queue(maxsize=64)   # bounded: at most 64 batches queued
        self.batch: list = []
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name="nm-audio", daemon=True)
        self.thread.start()

    def put(self, pkt) -> None:
        self.batch.append(pkt)
        if len(self.batch) >= self._BATCH:
            self.q.put(self.batch)
            self.batch = []

    def _run(self) -> None:
        import av
        try:
            while True:
                batch = self.q.get()
                if batch is None:
                    break
                for pkt in batch:
                    try:
                        frames = pkt.decode()
                    except av.FFmpegError:
                        continue          # a corrupt audio packet: its samples stay silent
                    for f in frames:
                        self.splitter.add_frame(f)
            with contextlib.suppress(av.FFmpegError):
                for f in self.stream.codec_context.decode(None):
                    self.splitter.add_frame(f)
        except BaseException as e:  # noqa: BLE001 - re-raised in the main thread
            self.error = e
            while self.q.get() is not None:   # drain so the producer never blocks
                pass

    def finish(self) -> None:
        """Hand over the last packets, wait for the thread, re-raise its error."""
        if self.batch:
            self.q.put(self.batch)
            self.batch = []
        self.q.put(None)
        self.thread.join()
        if self.error is not None:
            raise self.error

    def stop(self) -> None:
        if self.thread.is_alive():
            self.q.put(None)
            self.thread.join()


def _reencode(container, vs, scan, pts: np.ndarray, plan: ChunkPlan, path: Path,
              options: dict) -> None:
    """Decode frames ``[plan.start_frame, plan.end_frame)`` and encode them to ``path``."""
    import av
    if ENCODE_CODEC not in av.codecs_available:
        raise EnvProblem(f"chunk {plan.chunk_id} starts or ends off a keyframe and must be "
                         f"re-encoded, but this FFmpeg build has no {ENCODE_CODEC} encoder")
    want = pts[plan.start_frame:plan.end_frame].tolist()
    first = want[0]
    kf = np.flatnonzero(np.asarray(scan.keyframe[:plan.start_frame + 1], dtype=bool))
    targets = [int(pts[kf[-1]])] if kf.size else []
    targets.append(int(pts[0]))
    tb = Fraction(scan.time_base)
    for target in targets:
        container.seek(target, stream=vs, backward=True, any_frame=False)
        frames_iter = _decode_from(container, vs)
        head = None
        for f in frames_iter:
            if f.pts is None:
                continue
            if f.pts >= first:
                head = f
                break
        if head is not None and head.pts == first:
            break
    else:
        raise BadInput(f"{scan.path}: cannot decode frame {plan.start_frame} "
                       f"(pts {first}) for chunk {plan.chunk_id}")

    path.parent.mkdir(parents=True, exist_ok=True)
    out = av_open(path, "w", format="mp4")
    ok = False
    try:
        ost = out.add_stream(ENCODE_CODEC, rate=Fraction(scan.fps))
        ost.width = int(scan.width)
        ost.height = int(scan.height)
        src_fmt = head.format.name
        ost.pix_fmt = src_fmt if src_fmt in ("yuv420p", "yuv422p", "yuv444p", "yuv420p10le",
                                              "nv12") else "yuv420p"
        ost.codec_context.time_base = tb
        ost.time_base = tb
        _copy_color(vs.codec_context, ost.codec_context)
        ost.options = dict(options)
        j = 0
        f = head
        while True:
            if f.pts is not None and f.pts >= first:
                if j >= len(want) or f.pts != want[j]:
                    raise BadInput(f"{scan.path}: decoded frame pts {f.pts} where pts "
                                   f"{want[j] if j < len(want) else 'none'} was expected "
                                   f"(chunk {plan.chunk_id})")
                if f.format.name != ost.pix_fmt:
                    f = f.reformat(format=ost.pix_fmt)
                f.pts = want[j] - first
                f.time_base = tb
                for p in ost.encode(f):
                    out.mux(p)
                j += 1
                if j == len(want):
                    break
            f = next(frames_iter, None)
            if f is None:
                break
        if j != len(want):
            raise BadInput(f"{scan.path}: only {j} of {len(want)} frames of chunk "
                           f"{plan.chunk_id} could be decoded (truncated video?)")
        for p in ost.encode(None):
            out.mux(p)
        ok = True
    finally:
        try:
            out.close()
        finally:
            if not ok:
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()


def _copy_color(src, dst) -> None:
    """Carry the source's colour description (range, matrix, primaries, transfer) over to
    an encoder, so re-encoded frames convert to RGB exactly like copied ones (unset, a
    decoder would guess BT.601 for what OBS marks BT.709)."""
    for attr in ("color_range", "colorspace", "color_primaries", "color_trc"):
        with contextlib.suppress(AttributeError, ValueError, TypeError):
            setattr(dst, attr, getattr(src, attr))


def _avcc_parameter_sets(extradata: bytes | None) -> tuple[bytes, int] | None:
    """SPS+PPS NAL units of an ``avcC`` record, re-packed as length-prefixed NALs, and the
    NAL length size; None if ``extradata`` is not avcC (e.g. Annex B)."""
    if not extradata or len(extradata) < 7 or extradata[0] != 1:
        return None
    ext = bytes(extradata)
    size = (ext[4] & 3) + 1
    nals = []
    i = 5
    try:
        for count_mask in (0x1F, 0xFF):            # SPS count (5 bits), then PPS count
            count = ext[i] & count_mask
            i += 1
            for _ in range(count):
                n = int.from_bytes(ext[i:i + 2], "big")
                i += 2
                if i + n > len(ext):
                    return None
                nals.append(ext[i:i + n])
                i += n
    except IndexError:
        return None
    if not nals:
        return None
    return b"".join(len(n).to_bytes(size, "big") + n for n in nals), size


def _annexb_to_length_prefixed(data: bytes, size: int) -> bytes:
    """Annex B (start codes) -> length-prefixed NAL units (``size``-byte lengths)."""
    starts = []
    j = 0
    while True:
        k = data.find(b"\x00\x00\x01", j)
        if k < 0:
            break
        starts.append((k - 1 if k > 0 and data[k - 1] == 0 else k, k + 3))
        j = k + 3
    out = []
    for n, (_, begin) in enumerate(starts):
        end = starts[n + 1][0] if n + 1 < len(starts) else len(data)
        nal = data[begin:end]
        out.append(len(nal).to_bytes(size, "big") + nal)
    return b"".join(out)


class _SmartCutFailed(Exception):
    pass


def _smart_cut(container, vs, scan, pts: np.ndarray, plan: ChunkPlan, path: Path,
               options: dict) -> str | None:
    """Cut a chunk that does not start and end on keyframes, re-encoding only what must be.

    With ``k1`` the first keyframe in the chunk and ``k2`` the last keyframe at or before
    its end (or the end of the stream): frames ``[start, k1)`` (head) and ``[k2, end)``
    (tail) are decoded and re-encoded with libx264 (no B-frames, SPS/PPS in-band),
    packets of ``[k1, k2)`` are copied. The source's SPS/PPS are put in-band in front of
    the first copied packet, so a decoder switches parameter sets at each IDR boundary
    (FFmpeg-based decoders handle this; the MP4 sample entry is the source's avcC).
    H.264 with avcC extradata only. Returns None on success, else why it was not possible
    (nothing is left at ``path`` then, and the caller re-encodes the whole chunk).
    """
    import av
    s, e = plan.start_frame, plan.end_frame
    n = len(pts)
    if scan.codec != "h264" or ENCODE_CODEC not in av.codecs_available:
        return "smart cut needs H.264 and libx264"
    params = _avcc_parameter_sets(vs.codec_context.extradata)
    if params is None:
        return "source H.264 has no avcC parameter sets"
    kf = np.asarray(scan.keyframe, dtype=bool)
    inside = np.flatnonzero(kf[s:e]) + s
    if inside.size == 0:
        return "no keyframe inside the chunk"
    k1 = int(inside[0])
    if e == n or kf[e]:
        k2 = e
    else:
        k2 = int(inside[-1])
    if k2 <= k1:
        return "no complete GOP inside the chunk"
    param_bytes, nal_size = params
    tb = Fraction(scan.time_base)
    chunk_pts = (pts[s:e] - pts[s]).tolist()
    p_s, p_k1, p_k2 = int(pts[s]), int(pts[k1]), int(pts[k2]) if k2 < n else None
    p_last = int(pts[e - 1])

    def new_encoder():
        enc = av.CodecContext.create(ENCODE_CODEC, "w")
        enc.width, enc.height = int(scan.width), int(scan.height)
        enc.pix_fmt = "yuv420p"
        enc.time_base = tb
        enc.framerate = Fraction(scan.fps)
        _copy_color(vs.codec_context, enc)
        enc.options = {**options, "bf": "0"}
        return enc

    out = None
    try:
        # seek to the keyframe at or before the first frame we need
        first_needed = s if k1 > s else k1
        kfs = np.flatnonzero(kf[:first_needed + 1])
        container.seek(int(pts[kfs[-1]]) if kfs.size else int(pts[0]), stream=vs,
                       backward=True, any_frame=False)
        dec = vs.codec_context
        head_pk: list = []       # encoded head packets (presentation order, no B-frames)
        copy_pk: list = []
        tail_pk: list = []
        head_frames = 0
        tail_frames = 0
        enc = new_encoder() if k1 > s else None
        tail_enc = None          # created when the head's encoder is gone (memory)
        tail_started = False
        tail_done = k2 >= e
        copy_done_at = None      # packets seen since the first packet at/after k2

        def encode(encoder, frame, sink):
            if frame.format.name != "yuv420p":
                frame = frame.reformat(format="yuv420p")
            frame.pict_type = av.video.frame.PictureType.NONE
            frame.time_base = tb
            sink.extend(encoder.encode(frame))

        def take_head(frames):
            nonlocal head_frames
            for f in frames:
                if f.pts is not None and p_s <= f.pts < p_k1:
                    f.pts = f.pts - p_s
                    encode(enc, f, head_pk)
                    head_frames += 1

        def take_tail(frames):
            nonlocal tail_frames, tail_done, tail_enc
            for f in frames:
                if tail_enc is None:
                    tail_enc = new_encoder()
                if f.pts is not None and p_k2 <= f.pts <= p_last:
                    f.pts = f.pts - p_s
                    encode(tail_enc, f, tail_pk)
                    tail_frames += 1
                    if f.pts + p_s == p_last:
                        tail_done = True

        head_open = enc is not None
        for pkt in container.demux(vs):
            if pkt.pts is None:
                continue
            if pkt.pts < p_k1:
                if copy_pk or tail_started:
                    raise _SmartCutFailed("a head packet follows the copied keyframe (open GOP)")
                if head_open:
                    take_head(dec.decode(pkt))
                continue
            if head_open:                       # first packet at/after k1: drain the head
                take_head(dec.decode(None))
                head_pk.extend(enc.encode(None))
                dec.flush_buffers()
                head_open = False
                enc = None
            if p_k2 is None or pkt.pts < p_k2:
                if tail_started:
                    raise _SmartCutFailed("a copied packet follows the next keyframe (open GOP)")
                if not copy_pk and (pkt.pts != p_k1 or not pkt.is_keyframe):
                    raise _SmartCutFailed("the copied range does not start with its keyframe")
                copy_pk.append(pkt)
                continue
            tail_started = True
            if not tail_done:
                take_tail(dec.decode(pkt))
            copy_done_at = (copy_done_at or 0) + 1
            if tail_done and copy_done_at > _REORDER_WINDOW:
                break
        if head_open:
            take_head(dec.decode(None))
            head_pk.extend(enc.encode(None))
            enc = None
        if k2 < e:
            if not tail_done:
                take_tail(dec.decode(None))
            if tail_enc is not None:
                tail_pk.extend(tail_enc.encode(None))
                tail_enc = None
        dec.flush_buffers()
        if head_frames != k1 - s or len(copy_pk) != k2 - k1 or tail_frames != e - k2 \
                or len(head_pk) != k1 - s or len(tail_pk) != e - k2:
            raise _SmartCutFailed(f"got {head_frames}/{len(copy_pk)}/{tail_frames} frames for "
                                  f"{k1 - s}/{k2 - k1}/{e - k2} (head/copy/tail)")
        # decode timestamps: k-th packet in output order gets the k-th smallest pts - D,
        # D = the copied part's reorder delay (encoded parts have no B-frames)
        copy_sorted = chunk_pts[k1 - s:k2 - s]
        shift = max(cs - (p.pts - p_s) for cs, p in zip(copy_sorted, copy_pk))
        shift = max(shift, 0)
        path.parent.mkdir(parents=True, exist_ok=True)
        out = av_open(path, "w", format="mp4")
        ost = out.add_stream_from_template(vs, opaque=True)
        ost.time_base = vs.time_base
        ost.codec_context.codec_tag = "avc1"
        k = 0
        for group, encoded in ((head_pk, True), (copy_pk, False), (tail_pk, True)):
            for j, p in enumerate(group):
                if encoded:
                    q = av.Packet(_annexb_to_length_prefixed(bytes(p), nal_size))
                    q.is_keyframe = p.is_keyframe
                    q.pts = p.pts
                else:
                    if j == 0:     # switch the decoder back to the source's SPS/PPS
                        q = av.Packet(param_bytes + bytes(p))
                        q.is_keyframe = True
                    else:
                        q = p
                    q.pts = p.pts - p_s
                q.time_base = tb
                q.dts = chunk_pts[k] - shift
                if q.dts > q.pts:
                    raise _SmartCutFailed("B-frame reorder deeper than expected")
                k += 1
                q.stream = ost
                out.mux(q)
        out.close()
        out = None
        return None
    except (_SmartCutFailed, av.FFmpegError) as err:
        with contextlib.suppress(Exception):
            vs.codec_context.flush_buffers()
        if out is not None:
            with contextlib.suppress(Exception):
                out.close()
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        return str(err).splitlines()[0] if str(err) else type(err).__name__


def _decode_from(container, vs):
    """Decoded frames of ``vs`` from the current position; decode errors end the stream."""
    import av
    try:
        for pkt in container.demux(vs):
            try:
                frames = pkt.decode()
            except av.InvalidDataError:
                continue
            yield from frames
    except av.FFmpegError:
        return
