"""The MP4 header of a stream-copied chunk: ``ftyp``, ``moov`` and the ``mdat`` header.

Pure (no I/O). The chunk's samples (coded frames, decode order) follow the returned
header back to back, so ``header + sample_0 + sample_1 + ...`` is the whole file; the
caller copies the samples from the recording (``util.rangecopy``). One video track, the
layout FFmpeg's MP4 muxer writes for a stream copy:

* ``ftyp`` isom (minor 512; isom, iso2, avc1, mp41); ``moov`` first, so a reader needs
  only the file's head.
* media timescale: the source time base's (1/1000 for OBS MKV) doubled until it is at
  least 10000 (FFmpeg does the same: 16000 for ms), so every timestamp stays exact;
  movie timescale 1000.
* decode times are the presentation times in sorted order (with B-frames the frames
  are stored out of order); ``ctts`` holds each sample's presentation - decode offset,
  shifted so none is negative, and an edit list (``elst``) starts the presentation at
  the first frame: presentation time ``t - t_first`` for a frame with source pts ``t``.
* each sample its own MP4 chunk (``stsc`` one entry, ``stco``/``co64`` one offset per
  sample), ``stss`` when not every sample is a sync sample.

``SAMPLE_ENTRIES`` names the codecs it can describe, each with the Matroska CodecPrivate
as its configuration box (the two formats store the same record): H.264 (``avc1`` +
``avcC``), HEVC (``hev1`` + ``hvcC``, as FFmpeg tags it: parameter sets may also be in
the stream) and AV1 (``av01`` + ``av1C``), the codecs OBS records.
"""
from __future__ import annotations

import struct
from fractions import Fraction

import numpy as np

MOVIE_TIMESCALE = 1000
_MATRIX = struct.pack(">9I", 0x00010000, 0, 0, 0, 0x00010000, 0, 0, 0, 0x40000000)

# codec -> (sample entry fourcc, configuration box fourcc, extra compatible brand)
SAMPLE_ENTRIES = {"h264": (b"avc1", b"avcC", b"avc1"), "hevc": (b"hev1", b"hvcC", b""),
                  "av1": (b"av01", b"av1C", b"av01")}


class MuxError(ValueError):
    """These samples cannot be described (unsupported codec, bad timestamps, ...)."""


def box(kind: bytes, *parts: bytes) -> bytes:
    body = b"".join(parts)
    return struct.pack(">I", 8 + len(body)) + kind + body


def full_box(kind: bytes, version: int, flags: int, *parts: bytes) -> bytes:
    return box(kind, struct.pack(">I", version << 24 | flags), *parts)


def media_timescale(time_base: Fraction) -> tuple[int, int]:
    """``(timescale, factor)``: MP4 ticks per second and MP4 ticks per source tick."""
    tb = Fraction(time_base)
    if tb <= 0 or tb.numerator != 1:
        raise MuxError(f"time base {tb} is not 1/n")
    ts, factor = tb.denominator, 1
    while ts < 10000:
        ts, factor = ts * 2, factor * 2
    if ts >= 1 << 32:
        raise MuxError(f"time base {tb} is too fine for MP4")
    return ts, factor


def _run_table(kind: bytes, values: np.ndarray) -> bytes:
    """An ``stts``/``ctts`` box: the run-length ``(count, value)`` pairs of the 1-d
    integer array ``values`` as big-endian 32-bit pairs (numpy only: a chunk of 1200
    B-frame offsets is ~1200 runs)."""
    if values.size == 0:
        return full_box(kind, 0, 0, struct.pack(">I", 0), b"")
    starts = np.flatnonzero(np.diff(values)) + 1
    starts = np.concatenate(([0], starts))
    counts = np.diff(np.append(starts, values.size))
    pairs = np.empty((starts.size, 2), dtype=">u4")
    pairs[:, 0] = counts
    pairs[:, 1] = values[starts]
    return full_box(kind, 0, 0, struct.pack(">I", starts.size), pairs.tobytes())


def chunk_header(codec: str, codec_private: bytes, width: int, height: int,
                 time_base: Fraction, pts: np.ndarray, key: np.ndarray, sizes: np.ndarray,
                 end_pts: int) -> bytes:
    """Header bytes of an MP4 holding these samples (decode order; ``pts`` in source
    ticks, ``key`` sync flags, ``sizes`` bytes). ``end_pts``: where the last frame
    ends (the next chunk's first pts, or the stream's end). Raises :class:`MuxError`."""
    entry = SAMPLE_ENTRIES.get(codec)
    if entry is None:
        raise MuxError(f"codec {codec} has no MP4 sample entry here")
    if not codec_private:
        raise MuxError("no codec configuration (CodecPrivate)")
    pts = np.asarray(pts, dtype=np.int64)
    n = int(pts.size)
    if n == 0:
        raise MuxError("no samples")
    sizes = np.asarray(sizes, dtype=np.int64)
    key = np.asarray(key, dtype=bool)
    if sizes.shape != pts.shape or key.shape != pts.shape:
        raise MuxError("sample columns differ in length")
    if not 0 < int(width) < 1 << 16 or not 0 < int(height) < 1 << 16:
        raise MuxError(f"frame size {width}x{height}")
    ts, factor = media_timescale(time_base)
    order = np.sort(pts)
    if n > 1 and not np.all(np.diff(order) > 0):
        raise MuxError("two frames share a pts")
    first = int(order[0])
    if int(end_pts) <= int(order[-1]):
        raise MuxError("the chunk ends before its last frame")
    dts = (order - first) * factor                       # decode times, from 0
    deltas = np.empty(n, dtype=np.int64)
    deltas[:-1] = np.diff(dts)
    deltas[-1] = (int(end_pts) - int(order[-1])) * factor
    comp = (pts - order) * factor                        # presentation - decode
    shift = max(0, -int(comp.min()))
    comp += shift
    duration = int(dts[-1] + deltas[-1])
    if duration >= 1 << 32 or int(comp.max()) >= 1 << 31 or int(deltas.max()) >= 1 << 32:
        raise MuxError("the chunk is too long for 32-bit MP4 times")
    movie_dur = (duration * MOVIE_TIMESCALE + ts // 2) // ts

    w, h = int(width), int(height)
    name = b"\x00" * 32
    visual = (b"\x00" * 6 + struct.pack(">H", 1) + b"\x00" * 16
              + struct.pack(">HHIIIH", w, h, 0x00480000, 0x00480000, 0, 1) + name
              + struct.pack(">Hh", 0x18, -1))
    stsd = full_box(b"stsd", 0, 0, struct.pack(">I", 1),
                    box(entry[0], visual, box(entry[1], bytes(codec_private))))
    stbl = [stsd, _run_table(b"stts", deltas)]
    if comp.any():
        stbl.append(_run_table(b"ctts", comp))
    if not key.all():
        sync = (np.flatnonzero(key) + 1).astype(">u4")
        stbl.append(full_box(b"stss", 0, 0, struct.pack(">I", sync.size), sync.tobytes()))
    stbl.append(full_box(b"stsc", 0, 0, struct.pack(">IIII", 1, 1, 1, 1)))
    stbl.append(full_box(b"stsz", 0, 0, struct.pack(">II", 0, n), sizes.astype(">u4").tobytes()))

    def moov_with(chunk_offsets: bytes, co64: bool) -> bytes:
        stco = full_box(b"co64" if co64 else b"stco", 0, 0, struct.pack(">I", n), chunk_offsets)
        minf = box(b"minf", full_box(b"vmhd", 0, 1, b"\x00" * 8),
                   box(b"dinf", full_box(b"dref", 0, 0, struct.pack(">I", 1),
                                         full_box(b"url ", 0, 1))),
                   box(b"stbl", *stbl, stco))
        mdia = box(b"mdia",
                   full_box(b"mdhd", 0, 0, struct.pack(">IIIIHH", 0, 0, ts, duration, 0x55C4, 0)),
                   full_box(b"hdlr", 0, 0, b"\x00" * 4 + b"vide" + b"\x00" * 12
                            + b"VideoHandler\x00"),
                   minf)
        edts = box(b"edts", full_box(b"elst", 0, 0, struct.pack(">IIiHH", 1, movie_dur, shift, 1, 0))) \
            if shift else b""
        tkhd = full_box(b"tkhd", 0, 3, struct.pack(">IIIII", 0, 0, 1, 0, movie_dur),
                        b"\x00" * 8 + struct.pack(">hhhH", 0, 0, 0, 0) + _MATRIX
                        + struct.pack(">II", w << 16, h << 16))
        mvhd = full_box(b"mvhd", 0, 0, struct.pack(">IIII", 0, 0, MOVIE_TIMESCALE, movie_dur),
                        struct.pack(">IH", 0x00010000, 0x0100), b"\x00" * 10, _MATRIX,
                        b"\x00" * 24, struct.pack(">I", 2))
        return box(b"moov", mvhd, box(b"trak", tkhd, edts, mdia))

    ftyp = box(b"ftyp", b"isom", struct.pack(">I", 512), b"isom", b"iso2", entry[2], b"mp41")
    payload = int(sizes.sum())
    big = payload + 8 >= 1 << 32
    mdat_head = struct.pack(">I4sQ", 1, b"mdat", payload + 16) if big else \
        struct.pack(">I4s", payload + 8, b"mdat")
    starts = np.concatenate(([0], np.cumsum(sizes)[:-1]))
    probe = moov_with(b"\x00" * (4 * n), False)
    base = len(ftyp) + len(probe) + len(mdat_head)
    co64 = base + payload >= 1 << 32
    if co64:
        probe = moov_with(b"\x00" * (8 * n), True)
        base = len(ftyp) + len(probe) + len(mdat_head)
    offsets = (starts + base).astype(">u8" if co64 else ">u4")
    moov = moov_with(offsets.tobytes(), co64)
    assert len(moov) == len(probe)
    return ftyp + moov + mdat_head
