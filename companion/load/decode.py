"""Frame-accurate decoding of chunk videos with decoder reuse.

A chunk file holds exactly the chunk's frames. :func:`scan_frames` demuxes it once (no
decoding) into a :class:`FrameIndex`: the pts of every frame in presentation order and
which are keyframes. Frame ``i`` of the chunk is the frame whose decoded pts equals
``pts[i]``; every decoded frame is checked against that, so a decoder that drops, repeats
or reorders frames raises instead of returning the wrong picture.

:class:`DecoderPool` keeps an LRU of open containers per process. To fetch frame ``i`` it
decodes forward from where the container already is when no keyframe lies between (the
sequential case costs one decode per frame), else seeks to the last keyframe at or before
``i`` and decodes forward. The pool remembers the pid that filled it; in a forked
DataLoader worker it starts empty instead of sharing the parent's demuxer state.
"""
from __future__ import annotations

import os
from collections import OrderedDict
from dataclasses import dataclass
from fractions import Fraction
from typing import Callable

import av
import numpy as np

from companion.util.errors import BadInput, NMError

FORMATS = ("rgb24", "gray")


@dataclass(frozen=True)
class FrameIndex:
    """Frames of one video file in presentation order.

    ``pts``: int64 presentation timestamps (stream ``time_base`` units), strictly increasing.
    ``keyframe``: bool, same order. ``width``/``height``: coded picture size in pixels.
    ``param_sets``: for streams whose H.264/HEVC parameter sets change mid-stream (e.g. a
    smart-cut chunk: re-encoded head and tail with their own in-band SPS/PPS around a
    stream-copied middle whose SPS/PPS are in the header), a map keyframe index ->
    length-prefixed SPS/PPS NAL units in force at that keyframe. A decoder keeps the
    last parameter sets it parsed across seeks, so before decoding from such a keyframe
    these are fed to it; otherwise starting in the copied middle after having decoded
    the head would decode with the head's SPS. None when nothing changes mid-stream.
    """

    pts: np.ndarray
    keyframe: np.ndarray
    time_base: Fraction
    width: int
    height: int
    codec: str
    param_sets: dict | None = None

    def __len__(self) -> int:
        return len(self.pts)

    def seconds(self, i: int) -> float:
        """Presentation time of frame ``i`` in seconds since the file's first frame."""
        return float((int(self.pts[i]) - int(self.pts[0])) * self.time_base)


def _open(source, opener: Callable | None):
    """av container for a local path or (with ``opener``) a file object."""
    try:
        if opener is None:
            return av.open(str(source), "r")
        return av.open(opener(source), "r")
    except FileNotFoundError:
        raise BadInput(f"missing video file: {source}") from None
    except (av.FFmpegError, OSError) as e:
        raise BadInput(f"cannot open video {source}: {e}") from None


def _video_stream(container, source):
    if not container.streams.video:
        raise BadInput(f"{source}: no video stream")
    return container.streams.video[0]


_PS_TYPES = {"h264": (7, 8), "hevc": (32, 33, 34)}


def _nal_type(codec: str, first_byte: int) -> int:
    return first_byte & 0x1F if codec == "h264" else (first_byte >> 1) & 0x3F


def _header_param_sets(codec: str, extradata: bytes | None):
    """(NAL length size, frozenset of parameter-set NAL units) from avcC/hvcC extradata,
    or None when the stream is not length-prefixed H.264/HEVC (then every keyframe is
    taken as a safe start)."""
    if codec not in _PS_TYPES or not extradata or extradata[0] != 1:
        return None
    d = bytes(extradata)
    nals = []
    try:
        if codec == "h264":
            size = (d[4] & 3) + 1
            i = 6
            for _ in range(d[5] & 0x1F):
                n = int.from_bytes(d[i:i + 2], "big")
                nals.append(d[i + 2:i + 2 + n])
                i += 2 + n
            for _ in range(d[i]):
                n = int.from_bytes(d[i + 1:i + 3], "big")
                nals.append(d[i + 3:i + 3 + n])
                i += 2 + n
        else:
            size = (d[21] & 3) + 1
            i = 23
            for _ in range(d[22]):
                count = int.from_bytes(d[i + 1:i + 3], "big")
                i += 3
                for _ in range(count):
                    n = int.from_bytes(d[i:i + 2], "big")
                    nals.append(d[i + 2:i + 2 + n])
                    i += 2 + n
    except IndexError:
        return None
    return size, frozenset(nals)


def _packet_param_sets(codec: str, data: bytes, size: int) -> frozenset:
    """Parameter-set NAL units inside one length-prefixed packet."""
    out, i, types = [], 0, _PS_TYPES[codec]
    while i + size < len(data):
        n = int.from_bytes(data[i:i + size], "big")
        nal = data[i + size:i + size + n]
        if nal and _nal_type(codec, nal[0]) in types:
            out.append(nal)
        i += size + n
    return frozenset(out)


def scan_frames(source, opener: Callable | None = None) -> FrameIndex:
    """Demux ``source`` once (no decoding) and index its frames."""
    c = _open(source, opener)
    try:
        vs = _video_stream(c, source)
        codec = vs.codec_context.name
        header = _header_param_sets(codec, vs.codec_context.extradata)
        pts, key, inband = [], [], []
        try:
            for pkt in c.demux(vs):
                if pkt.pts is None or pkt.size == 0 or getattr(pkt, "is_discard", False):
                    continue
                pts.append(pkt.pts)
                key.append(bool(pkt.is_keyframe))
                # parameter sets sent in-band by a keyframe (None: none, or not parsed)
                inband.append(_packet_param_sets(codec, bytes(pkt), header[0]) or None
                              if header is not None and pkt.is_keyframe else None)
        except av.FFmpegError as e:
            raise BadInput(f"{source}: unreadable video ({e})") from None
        if not pts:
            raise BadInput(f"{source}: video has no frames")
        p = np.asarray(pts, np.int64)
        order = np.argsort(p, kind="stable")
        p = p[order]
        if np.any(np.diff(p) <= 0):
            raise BadInput(f"{source}: duplicate frame timestamps; cannot index frames exactly")
        k = np.asarray(key, bool)[order]
        k[0] = True   # decoding can always start at the first frame
        param_sets = None
        if header is not None:
            # the parameter sets in force at each keyframe (keyframes keep their relative
            # order between decode and presentation order)
            size, active = header
            per_key, changed = {}, False
            for j in range(len(p)):
                if not k[j]:
                    continue
                ps = inband[order[j]]
                if ps:
                    active = ps
                changed |= active != header[1]
                per_key[j] = active
            if changed:
                types = _PS_TYPES[codec]
                param_sets = {
                    j: b"".join(len(n).to_bytes(size, "big") + n for n in
                                sorted(ps, key=lambda n: (types.index(_nal_type(codec, n[0])), n)))
                    for j, ps in per_key.items()}
        return FrameIndex(p, k, Fraction(vs.time_base), vs.codec_context.width,
                          vs.codec_context.height, codec, param_sets)
    finally:
        c.close()


class _Entry:
    """An open container positioned somewhere in its stream."""

    def __init__(self, source, index: FrameIndex, opener, threads: int):
        self.source = source
        self.index = index
        self.container = _open(source, opener)
        self.stream = _video_stream(self.container, source)
        if threads != 1:
            self.stream.thread_type = "AUTO"
        self.stream.thread_count = threads
        self.frames = None    # decode generator
        self.next_i = None    # index of the frame the generator yields next (if known)
        self.target_pts = None   # packets before this pts may skip non-reference frames
        self.skip_nonref = True
        self.seeks = 0

    def close(self) -> None:
        try:
            self.container.close()
        except Exception:   # pragma: no cover - closing a broken container
            pass

    def _restart(self, k: int) -> None:
        """Position the decoder so the next decoded frame is keyframe ``k`` (or earlier)."""
        self.container.seek(int(self.index.pts[k]), stream=self.stream, backward=True,
                            any_frame=False)
        self.seeks += 1
        self.frames = self._decode(self.index.param_sets)
        self.next_i = None

    def _decode(self, param_sets: dict | None = None):
        """Decode the stream from the current position. Frames presented before the
        target are only needed as references: packets with pts < ``target_pts`` are
        decoded with ``skip_frame = NONREF``, so the decoder drops non-reference frames
        (typically the B-frames) of the pre-roll instead of reconstructing them."""
        cc = self.stream.codec_context
        mode = cc.skip_frame
        first = True
        for pkt in self.container.demux(self.stream):
            if first and param_sets and pkt.size and pkt.pts is not None:
                first = False
                # prefix the start keyframe with the SPS/PPS in force there (see
                # FrameIndex.param_sets), as the h264_mp4toannexb filter does
                j = int(np.searchsorted(self.index.pts, pkt.pts))
                ps = param_sets.get(j)
                if ps:
                    fixed = av.Packet(ps + bytes(pkt))
                    fixed.pts, fixed.dts, fixed.time_base = pkt.pts, pkt.dts, pkt.time_base
                    fixed.is_keyframe = pkt.is_keyframe
                    pkt = fixed
            if self.skip_nonref:
                want = "NONREF" if (self.target_pts is not None and pkt.pts is not None
                                    and pkt.pts < self.target_pts) else "DEFAULT"
                if want != mode:
                    cc.skip_frame = mode = want
            yield from cc.decode(pkt)

    def frame(self, i: int) -> av.VideoFrame:
        """The decoded frame ``i`` (presentation order), checked against the index pts."""
        idx = self.index
        n = len(idx)
        if not 0 <= i < n:
            raise IndexError(f"frame {i} outside 0..{n - 1} of {self.source}")
        k = int(np.flatnonzero(idx.keyframe[: i + 1])[-1])
        if self.frames is None or self.next_i is None or not (k <= self.next_i <= i):
            self._restart(k)
        for attempt in (0, 1):
            try:
                got = self._decode_until(i)
            except BaseException:
                self.frames = self.next_i = None    # the decoder position is unknown now
                raise
            if got is not None:
                return got
            if attempt == 0:   # seek landed after the target (broken index): start over
                self._restart(0)
        raise NMError(f"{self.source}: could not decode frame {i} (pts {int(idx.pts[i])})")

    def _decode_until(self, i: int):
        target = int(self.index.pts[i])
        self.target_pts = target
        pts = self.index.pts
        try:
            for fr in self.frames:
                p = fr.pts
                if p is None:
                    raise NMError(f"{self.source}: decoded frame without pts")
                j = int(np.searchsorted(pts, p))
                if j >= len(pts) or pts[j] != p:
                    raise NMError(f"{self.source}: decoded frame pts {p} is not in the frame "
                                  f"index (expected pts {target} for frame {i})")
                self.next_i = j + 1
                if j == i:
                    return fr
                if j > i:
                    return None
        except av.FFmpegError as e:
            raise BadInput(f"{self.source}: decode error at frame {i}: {e}") from None
        self.frames = None
        self.next_i = None
        raise NMError(f"{self.source}: stream ended before frame {i} (pts {target}); "
                      f"the file has fewer decodable frames than packets")


def to_array(frame: av.VideoFrame, fmt: str = "rgb24", size: tuple[int, int] | None = None
             ) -> np.ndarray:
    """Convert a decoded frame to numpy: (H, W, 3) uint8 for rgb24, (H, W) for gray.

    ``size``: optional (width, height) in pixels to resize to (swscale bilinear).
    """
    if fmt not in FORMATS:
        raise BadInput(f"unknown pixel format {fmt!r}; use one of {', '.join(FORMATS)}")
    if size is None:
        return frame.to_ndarray(format=fmt)
    w, h = int(size[0]), int(size[1])
    if w <= 0 or h <= 0:
        raise BadInput(f"size must be positive (width, height), got {size!r}")
    return frame.to_ndarray(format=fmt, width=w, height=h)


class DecoderPool:
    """Per-process LRU of open containers keyed by source path.

    ``capacity``: open containers kept (each holds a demuxer and a decoder: a few MB to
    tens of MB at 1080p). ``threads``: decoder threads per container (0 = FFmpeg's choice,
    1 = single-threaded; use 1 inside DataLoader workers). ``opener``: maps a source to a
    binary file object (fsspec); None opens local paths directly.
    """

    def __init__(self, capacity: int = 8, threads: int = 0, opener: Callable | None = None):
        self.capacity = max(1, int(capacity))
        self.threads = int(threads)
        self.opener = opener
        self._pid = os.getpid()
        self._entries: OrderedDict = OrderedDict()
        self._indexes: OrderedDict = OrderedDict()

    def _check_pid(self) -> None:
        if os.getpid() != self._pid:
            # forked: the parent's containers share file offsets with it; drop (not close)
            self._entries = OrderedDict()
            self._pid = os.getpid()

    def index(self, source) -> FrameIndex:
        """The :class:`FrameIndex` of ``source`` (cached; the cache survives fork)."""
        key = str(source)
        fi = self._indexes.get(key)
        if fi is None:
            fi = scan_frames(source, self.opener)
            self._indexes[key] = fi
            if len(self._indexes) > 256:
                self._indexes.popitem(last=False)
        else:
            self._indexes.move_to_end(key)
        return fi

    def entry(self, source) -> _Entry:
        self._check_pid()
        key = str(source)
        e = self._entries.get(key)
        if e is None:
            e = _Entry(source, self.index(source), self.opener, self.threads)
            self._entries[key] = e
            while len(self._entries) > self.capacity:
                _, old = self._entries.popitem(last=False)
                old.close()
        else:
            self._entries.move_to_end(key)
        return e

    def frame(self, source, i: int) -> av.VideoFrame:
        """Decoded frame ``i`` of ``source`` (presentation order), pts-checked."""
        return self.entry(source).frame(i)

    def release(self, source) -> None:
        """Close the container of ``source`` if open (its frame index stays cached)."""
        self._check_pid()
        e = self._entries.pop(str(source), None)
        if e is not None:
            e.close()

    def close(self) -> None:
        self._check_pid()
        for e in self._entries.values():
            e.close()
        self._entries.clear()

    def __getstate__(self):
        return {"capacity": self.capacity, "threads": self.threads, "opener": self.opener}

    def __setstate__(self, st):
        self.__init__(st["capacity"], st["threads"], st["opener"])
