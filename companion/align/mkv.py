"""A header-only Matroska block walker: pure parsing over a bytes-like object.

No I/O here: the functions take a buffer (``bytes``, ``memoryview``, an ``mmap``) with
absolute offsets into it, or, for the cluster walk, a ``read(pos, n)`` function the
caller implements (``scan_video`` uses ``pread``, seek + read where the OS has none).
Only the bytes needed are read: the file's head up to the first cluster (Info, Tracks),
then :data:`HEAD` bytes per element in the clusters (ID, size, a block's track,
timestamp and flags). Block payloads are never read; the caller gets their offset and
size.

EBML (RFC 8794): an element is ``ID, size, data``. IDs and sizes are variable-length
integers ("vints"): the number of leading zero bits of the first byte, plus one, is the
length in bytes (1-8); the marker bit ends that prefix. IDs keep their marker bit
(Segment is ``0x18538067``); sizes drop it, and a size whose data bits are all ones is
"unknown" (the element extends to the end of its parent or to the next element that
cannot be its child). Matroska (RFC 9559): ``Segment > Info (TimestampScale, Duration),
Tracks > TrackEntry (TrackNumber, TrackType, CodecID, CodecPrivate, DefaultDuration),
Cluster > Timestamp, SimpleBlock, BlockGroup > Block, BlockDuration, ReferenceBlock``.
A block's data starts with the track number (a size-style vint), a signed 16-bit
big-endian timestamp relative to the cluster's, and a flags byte (SimpleBlock: 0x80
keyframe; both: 0x06 lacing). A BlockGroup's block is a keyframe when the group has no
ReferenceBlock.

Anything this walker does not fully understand raises :class:`MkvError` (lacing, unknown
sizes it cannot bound, elements it does not know inside a cluster, a cut element, a
second segment, encrypted blocks, ...): the caller then uses a general demuxer instead.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterator

# Element IDs (marker bits kept).
EBML = 0x1A45DFA3
EBML_DOCTYPE = 0x4282
EBML_MAX_ID_LENGTH = 0x42F2
EBML_MAX_SIZE_LENGTH = 0x42F3
SEGMENT = 0x18538067
SEEKHEAD = 0x114D9B74
INFO = 0x1549A966
TIMECODE_SCALE = 0x2AD7B1
DURATION = 0x4489
TRACKS = 0x1654AE6B
TRACK_ENTRY = 0xAE
TRACK_NUMBER = 0xD7
TRACK_TYPE = 0x83
CODEC_ID = 0x86
CODEC_PRIVATE = 0x63A2
DEFAULT_DURATION = 0x23E383
TRACK_TIMECODE_SCALE = 0x23314F
CODEC_DELAY = 0x56AA
CONTENT_ENCODINGS = 0x6D80
CLUSTER = 0x1F43B675
TIMECODE = 0xE7
POSITION = 0xA7
PREV_SIZE = 0xAB
SILENT_TRACKS = 0x5854
SIMPLE_BLOCK = 0xA3
BLOCK_GROUP = 0xA0
BLOCK = 0xA1
BLOCK_DURATION = 0x9B
REFERENCE_BLOCK = 0xFB
REFERENCE_PRIORITY = 0xFA
CUES = 0x1C53BB6B
CHAPTERS = 0x1043A770
ATTACHMENTS = 0x1941A469
TAGS = 0x1254C367
VOID = 0xEC
CRC32 = 0xBF

TRACK_VIDEO, TRACK_AUDIO, TRACK_SUBTITLE = 1, 2, 0x11

UNKNOWN = -1
"""Size value of an element of unknown size (all data bits of its size vint set)."""

LEVEL1 = frozenset((SEEKHEAD, INFO, TRACKS, CLUSTER, CUES, CHAPTERS, ATTACHMENTS, TAGS,
                    VOID, CRC32))
_SKIP_IN_GROUP = frozenset((REFERENCE_PRIORITY, VOID, CRC32))
_SKIP_IN_CLUSTER = frozenset((POSITION, PREV_SIZE, SILENT_TRACKS, VOID, CRC32))


class MkvError(ValueError):
    """The bytes are not Matroska this walker fully understands (one-line reason)."""


class MkvShort(MkvError):
    """The buffer holds only the start of the file and the answer lies beyond it."""


# -- EBML primitives ---------------------------------------------------------------------

def vint_length(first: int) -> int:
    """Length in bytes (1-8) of a vint whose first byte is ``first``; 0x00 is invalid."""
    if not first:
        raise MkvError("invalid EBML vint (first byte 0x00)")
    return 9 - first.bit_length()


def read_vint(buf, pos: int, end: int) -> tuple[int, int]:
    """``(value, length)`` of the size vint at ``buf[pos]`` (marker bit removed);
    ``value`` is :data:`UNKNOWN` when all its data bits are set. Raises MkvError if it
    runs past ``end``."""
    if pos >= end:
        raise MkvError(f"EBML size cut at offset {pos}")
    first = buf[pos]
    n = vint_length(first)
    if pos + n > end:
        raise MkvError(f"EBML size cut at offset {pos}")
    v = first & (0xFF >> n)
    for k in range(1, n):
        v = v << 8 | buf[pos + k]
    if v == (1 << (7 * n)) - 1:
        return UNKNOWN, n
    return v, n


def read_id(buf, pos: int, end: int) -> tuple[int, int]:
    """``(id, length)`` of the element ID at ``buf[pos]`` (marker bit kept, 1-4 bytes)."""
    if pos >= end:
        raise MkvError(f"EBML ID cut at offset {pos}")
    first = buf[pos]
    n = vint_length(first)
    if n > 4:
        raise MkvError(f"invalid EBML ID at offset {pos}")
    if pos + n > end:
        raise MkvError(f"EBML ID cut at offset {pos}")
    v = first
    for k in range(1, n):
        v = v << 8 | buf[pos + k]
    return v, n


def read_header(buf, pos: int, end: int, limit: int | None = None) -> tuple[int, int, int]:
    """``(id, size, data_pos)`` of the element at ``buf[pos]`` (``buf`` valid up to
    ``end``); ``size`` may be :data:`UNKNOWN`. A known size must end by ``limit``
    (default ``end``; the element's parent or the file may end later than ``buf``),
    else MkvError: the element is cut."""
    eid, a = read_id(buf, pos, end)
    size, b = read_vint(buf, pos + a, end)
    data = pos + a + b
    lim = end if limit is None else limit
    if size != UNKNOWN and data + size > lim:
        raise MkvError(f"element 0x{eid:X} at offset {pos} is cut "
                       f"({size} bytes declared, {lim - data} present)")
    return eid, size, data


def read_uint(buf, pos: int, size: int) -> int:
    if size > 8:
        raise MkvError(f"unsigned integer of {size} bytes at offset {pos}")
    return int.from_bytes(bytes(buf[pos:pos + size]), "big")


def read_float(buf, pos: int, size: int) -> float:
    import struct
    if size == 0:
        return 0.0
    if size == 4:
        return struct.unpack(">f", bytes(buf[pos:pos + 4]))[0]
    if size == 8:
        return struct.unpack(">d", bytes(buf[pos:pos + 8]))[0]
    raise MkvError(f"float of {size} bytes at offset {pos}")


def read_string(buf, pos: int, size: int) -> str:
    return bytes(buf[pos:pos + size]).split(b"\x00", 1)[0].decode("utf-8", "replace")


def children(buf, pos: int, end: int) -> Iterator[tuple[int, int, int]]:
    """``(id, data_pos, size)`` of each element in ``buf[pos:end]`` (all of known size)."""
    while pos < end:
        eid, size, data = read_header(buf, pos, end)
        if size == UNKNOWN:
            raise MkvError(f"element 0x{eid:X} of unknown size at offset {pos}")
        yield eid, data, size
        pos = data + size


# -- Header: EBML header, Segment, Info, Tracks -------------------------------------------

@dataclass(frozen=True)
class Track:
    number: int
    type: int
    codec_id: str
    codec_private: bytes | None = None
    default_duration: int | None = None
    """ns per frame, as stored (DefaultDuration)."""
    codec_delay: int = 0
    timecode_scale: float | None = None
    """TrackTimestampScale if present (deprecated; 1.0 is the only sane value)."""
    encoded: bool = False
    """ContentEncodings present (compression/encryption): payloads are not the frames."""


@dataclass
class Layout:
    """What the header says. Offsets are absolute positions in the buffer."""

    doc_type: str
    segment_data: int
    segment_end: int
    """End of the segment's data: its declared end, or the buffer's end if its size is
    unknown (``segment_size_known`` False)."""
    segment_size_known: bool
    timecode_scale: int
    duration: float | None
    tracks: list[Track] = field(default_factory=list)
    first_cluster: int | None = None
    """Offset of the first Cluster element (None: no cluster before the segment ends)."""

    def track(self, number: int) -> Track | None:
        for t in self.tracks:
            if t.number == number:
                return t
        return None


def parse_layout(buf, file_size: int | None = None) -> Layout:
    """Parse the EBML header and the Segment's level-1 elements up to the first Cluster.

    ``buf`` holds the file's first bytes (all of it, or enough to reach the first
    cluster); ``file_size``: the whole file's size (default ``len(buf)``). Raises
    MkvError for anything but a single Matroska/WebM segment whose Info and Tracks come
    before the first cluster (as every muxer writes them), and :class:`MkvShort` when
    ``buf`` ends before the first cluster's header (read more and try again)."""
    end = len(buf)
    fsize = end if file_size is None else file_size
    if bytes(buf[:4]) != b"\x1a\x45\xdf\xa3":
        raise MkvError("not an EBML file")
    eid, size, data = read_header(buf, 0, end)
    if eid != EBML or size == UNKNOWN:
        raise MkvError("not an EBML file")
    doc_type = ""
    for cid, p, n in children(buf, data, data + size):
        if cid == EBML_DOCTYPE:
            doc_type = read_string(buf, p, n)
        elif cid == EBML_MAX_ID_LENGTH and read_uint(buf, p, n) > 4:
            raise MkvError("EBMLMaxIDLength > 4")
        elif cid == EBML_MAX_SIZE_LENGTH and read_uint(buf, p, n) > 8:
            raise MkvError("EBMLMaxSizeLength > 8")
    if doc_type not in ("matroska", "webm"):
        raise MkvError(f"EBML document type {doc_type!r} is not Matroska")
    pos = data + size
    # Void elements may sit between the EBML header and the segment
    while True:
        eid, size, data = read_header(buf, pos, end, fsize)
        if eid == SEGMENT:
            break
        if eid != VOID or size == UNKNOWN:
            raise MkvError(f"element 0x{eid:X} where the Segment should be")
        pos = data + size
    known = size != UNKNOWN
    seg_end = data + size if known else fsize
    lay = Layout(doc_type=doc_type, segment_data=data, segment_end=seg_end,
                 segment_size_known=known, timecode_scale=1_000_000, duration=None)
    pos = data
    seen_info = seen_tracks = False
    while pos < seg_end:
        if pos + 12 > end and end < fsize:
            raise MkvShort(f"first cluster not within the first {end} bytes")
        eid, size, cdata = read_header(buf, pos, min(seg_end, end), seg_end)
        if eid == CLUSTER:
            lay.first_cluster = pos
            break
        if size != UNKNOWN and cdata + size > end:
            raise MkvShort(f"element 0x{eid:X} at offset {pos} ends after the buffer")
        if size == UNKNOWN:
            raise MkvError(f"level-1 element 0x{eid:X} of unknown size at offset {pos}")
        if eid == INFO:
            if seen_info:
                raise MkvError("two Info elements")
            seen_info = True
            _parse_info(buf, cdata, cdata + size, lay)
        elif eid == TRACKS:
            if seen_tracks:
                raise MkvError("two Tracks elements")
            seen_tracks = True
            for tid, p, n in children(buf, cdata, cdata + size):
                if tid == TRACK_ENTRY:
                    lay.tracks.append(_parse_track(buf, p, p + n))
                elif tid not in (VOID, CRC32):
                    raise MkvError(f"element 0x{tid:X} in Tracks")
        elif eid not in LEVEL1:
            raise MkvError(f"unknown level-1 element 0x{eid:X} at offset {pos}")
        pos = cdata + size
    if not seen_tracks:
        raise MkvError("no Tracks element before the first cluster")
    nums = [t.number for t in lay.tracks]
    if len(set(nums)) != len(nums) or 0 in nums:
        raise MkvError("track numbers are not unique and positive")
    return lay


def _parse_info(buf, pos: int, end: int, lay: Layout) -> None:
    for eid, p, n in children(buf, pos, end):
        if eid == TIMECODE_SCALE:
            lay.timecode_scale = read_uint(buf, p, n)
            if lay.timecode_scale <= 0:
                raise MkvError("TimestampScale is 0")
        elif eid == DURATION:
            lay.duration = read_float(buf, p, n)


def _parse_track(buf, pos: int, end: int) -> Track:
    kw: dict = {"number": 0, "type": 0, "codec_id": ""}
    for eid, p, n in children(buf, pos, end):
        if eid == TRACK_NUMBER:
            kw["number"] = read_uint(buf, p, n)
        elif eid == TRACK_TYPE:
            kw["type"] = read_uint(buf, p, n)
        elif eid == CODEC_ID:
            kw["codec_id"] = read_string(buf, p, n)
        elif eid == CODEC_PRIVATE:
            kw["codec_private"] = bytes(buf[p:p + n])
        elif eid == DEFAULT_DURATION:
            kw["default_duration"] = read_uint(buf, p, n)
        elif eid == CODEC_DELAY:
            kw["codec_delay"] = read_uint(buf, p, n)
        elif eid == TRACK_TIMECODE_SCALE:
            kw["timecode_scale"] = read_float(buf, p, n)
        elif eid == CONTENT_ENCODINGS:
            kw["encoded"] = True
    return Track(**kw)


# -- Blocks ---------------------------------------------------------------------------

HEAD = 32
"""Bytes read at each element in a cluster: its ID and size, a block's header and the
first bytes of its payload (a video frame's first NAL length and header)."""


def buffer_reader(buf):
    """``read(pos, n)`` over a buffer in memory (``bytes``, ``mmap``, ...)."""
    mv = memoryview(buf)
    return lambda pos, n: mv[pos:pos + n]


def parse_block_head(buf, pos: int, end: int) -> tuple[int, int, int, int]:
    """``(track, relative_timestamp, flags, payload_pos)`` of a (Simple)Block whose data
    is ``buf[pos:end]``."""
    track, n = read_vint(buf, pos, end)
    p = pos + n
    if track == UNKNOWN or p + 3 > end:
        raise MkvError(f"block header cut at offset {pos}")
    rel = buf[p] << 8 | buf[p + 1]
    if rel >= 0x8000:
        rel -= 0x10000
    return track, rel, buf[p + 2], p + 3


def _element_head(h, p: int, cend: int) -> tuple[int, int, int]:
    """``(id, size, data_pos)`` of the element whose first bytes are ``h`` (at file
    offset ``p``), inside a parent ending at ``cend``; no unknown sizes."""
    n = len(h)
    cid = h[0]
    if cid & 0x80:
        q = 1
    else:
        cid, q = read_id(h, 0, n)
    if q >= n:
        raise MkvError(f"element header cut at offset {p}")
    s = h[q]
    if s & 0x80:
        size, d = s & 0x7F, q + 1
        if size == 0x7F:
            raise MkvError(f"element of unknown size at offset {p}")
    else:
        size, k = read_vint(h, q, n)
        if size == UNKNOWN:
            raise MkvError(f"element of unknown size at offset {p}")
        d = q + k
    if p + d + size > cend:
        raise MkvError(f"element 0x{cid:X} at offset {p} runs past its parent")
    return cid, size, d


def iter_blocks(src, layout: Layout
                ) -> Iterator[tuple[int, int, bool, int, int, int | None, bool]]:
    """Yield ``(track, timestamp, keyframe, payload_pos, payload_size, block_duration,
    extras)`` for every block of every cluster, in file order.

    ``src``: the file as a buffer, or a function ``read(pos, n)`` returning its bytes
    ``[pos, pos + n)`` (fewer at the end): only :data:`HEAD` bytes are read per element,
    so block payloads are skipped, not read. ``timestamp`` is the cluster's plus the
    block's relative one (TimestampScale ticks); ``block_duration`` is the BlockGroup's
    BlockDuration or None; ``extras`` is True when the BlockGroup carries more than a
    plain frame (BlockAdditions, DiscardPadding, CodecState, Slices, ...): a demuxer
    turns those into side data. Raises MkvError on laced blocks, negative timestamps,
    unknown cluster children, elements of unknown size, a cluster without a Timestamp
    before its first block, or anything cut; level-1 elements after the clusters (Cues,
    Tags, ...) are skipped by their sizes."""
    if layout.first_cluster is None:
        return
    read = src if callable(src) else buffer_reader(src)
    end = layout.segment_end
    pos = layout.first_cluster
    while pos < end:
        h = read(pos, 16)
        eid, size, data = read_header(h, 0, len(h), end - pos)
        if size == UNKNOWN:
            raise MkvError(f"element 0x{eid:X} of unknown size at offset {pos}")
        data += pos
        cend = data + size
        if eid != CLUSTER:
            if eid not in LEVEL1:
                raise MkvError(f"unknown level-1 element 0x{eid:X} at offset {pos}")
            pos = cend
            continue
        ctime = None
        p = data
        while p < cend:
            h = read(p, HEAD)
            if len(h) < HEAD and p + len(h) < cend:
                raise MkvError(f"short read at offset {p}")
            # inlined _element_head for the common SimpleBlock forms
            cid = h[0]
            if cid == 0xA3 and len(h) >= 13:
                s = h[1]
                if s >= 0x80:
                    csize, d, unk = s & 0x7F, 2, 0x7F
                elif s >= 0x40:
                    csize, d, unk = (s & 0x3F) << 8 | h[2], 3, 0x3FFF
                elif s >= 0x20:
                    csize, d, unk = (s & 0x1F) << 16 | h[2] << 8 | h[3], 4, 0x1FFFFF
                elif s >= 0x10:
                    csize, d, unk = (s & 0x0F) << 24 | h[2] << 16 | h[3] << 8 | h[4], 5, 0xFFFFFFF
                else:
                    csize, d = read_vint(h, 1, len(h))
                    d += 1
                    unk = UNKNOWN
                if csize == unk:
                    raise MkvError(f"element of unknown size at offset {p}")
                if p + d + csize > cend:
                    raise MkvError(f"element 0xA3 at offset {p} runs past its parent")
            else:
                cid, csize, d = _element_head(h, p, cend)
            nxt = p + d + csize
            if cid == SIMPLE_BLOCK:
                if ctime is None:
                    raise MkvError(f"block before the cluster timestamp at offset {p}")
                track = h[d] if d < len(h) else 0
                if track & 0x80 and csize >= 4 and d + 4 <= len(h):
                    track &= 0x7F
                    if track == 0x7F:
                        raise MkvError(f"block of unknown track at offset {p}")
                    rel = h[d + 1] << 8 | h[d + 2]
                    flags = h[d + 3]
                    pay = p + d + 4
                    if rel >= 0x8000:
                        rel -= 0x10000
                else:
                    track, rel, flags, k = parse_block_head(h, d, min(len(h), d + csize))
                    pay = p + k
                if flags & 0x06:
                    raise MkvError(f"laced block at offset {p}")
                ts = ctime + rel
                if ts < 0:
                    raise MkvError(f"negative block timestamp at offset {p}")
                yield track, ts, flags >= 0x80, pay, nxt - pay, None, False
            elif cid == BLOCK_GROUP:
                if ctime is None:
                    raise MkvError(f"block before the cluster timestamp at offset {p}")
                yield _block_group(read, p + d, nxt, ctime)
            elif cid == TIMECODE:
                if ctime is not None:
                    raise MkvError(f"second cluster timestamp at offset {p}")
                if d + csize > len(h):
                    raise MkvError(f"cluster timestamp of {csize} bytes at offset {p}")
                ctime = read_uint(h, d, csize)
            elif cid not in _SKIP_IN_CLUSTER:
                raise MkvError(f"element 0x{cid:X} in a cluster at offset {p}")
            p = nxt
        pos = cend


def find_cut(read, layout: Layout, file_size: int) -> str | None:
    """Where a Matroska file is cut short, as one line, or None when it is whole.

    A cut file is what an interrupted copy, a full disk or a crashed recorder leaves:
    the segment declares more bytes than the file has, or an element (a cluster, a
    block, a level-1 element after them) ends past the end of the file. Only element
    headers are read (``read(pos, n)`` as for :func:`iter_blocks`): one per level-1
    element, plus one per child of a cluster whose size is unknown (a live-written
    cluster). A segment of unknown size is not a cut by itself (streamed files have
    one), but an element inside it that runs past the end is. Never raises for a cut;
    raises :class:`MkvError` only when the structure cannot be followed at all."""
    if layout.segment_size_known and layout.segment_end > file_size:
        short = layout.segment_end - file_size
        return (f"the file ends {short} byte{'s' if short != 1 else ''} before the end of "
                f"its Matroska segment")
    end = min(layout.segment_end, file_size)
    pos = layout.first_cluster if layout.first_cluster is not None else end
    try:
        while pos < end:
            eid, size, data = _head_in_file(read, pos, end)
            if size != UNKNOWN:
                pos = data + size
                continue
            if eid != CLUSTER:
                raise MkvError(f"level-1 element 0x{eid:X} of unknown size at offset {pos}")
            p = data                  # a cluster of unknown size: walk its children
            while p < end:
                cid, csize, cdata = _head_in_file(read, p, end)
                if cid in LEVEL1 and cid not in (VOID, CRC32):
                    break             # the next level-1 element ends the cluster
                if csize == UNKNOWN:
                    raise MkvError(f"element 0x{cid:X} of unknown size at offset {p}")
                p = cdata + csize
            pos = p
    except _Cut as cut:
        return str(cut)
    return None


class _Cut(Exception):
    """The file ends inside an element (``find_cut``'s answer, not a parse error)."""


def _head_in_file(read, pos: int, end: int) -> tuple[int, int, int]:
    """``(id, size, data_pos)`` of the element at ``pos`` of a file ending at ``end``;
    :class:`_Cut` when the file ends in its header or before its declared end."""
    h = read(pos, 16)
    try:
        eid, size, d = read_header(h, 0, len(h), 1 << 62)
    except MkvError:
        if pos + len(h) >= end:
            raise _Cut(f"the file ends inside an element header at offset {pos}") from None
        raise
    if size != UNKNOWN and pos + d + size > end:
        raise _Cut(f"the file ends inside element 0x{eid:X} at offset {pos} "
                   f"({pos + d + size - end} of its {size} bytes missing)")
    return eid, size, pos + d


def _block_group(read, pos: int, end: int, ctime: int):
    block = None
    duration = None
    referenced = False
    extras = False
    p = pos
    while p < end:
        h = read(p, HEAD)
        eid, size, d = _element_head(h, p, end)
        if eid == BLOCK:
            if block is not None:
                raise MkvError(f"two blocks in a block group at offset {pos}")
            if size < 4:
                raise MkvError(f"block header cut at offset {p}")
            track, rel, flags, k = parse_block_head(h, d, min(len(h), d + size))
            block = (p, track, rel, flags, p + k, p + d + size)
        elif eid == BLOCK_DURATION:
            if d + size > len(h):
                raise MkvError(f"block duration of {size} bytes at offset {p}")
            duration = read_uint(h, d, size)
        elif eid == REFERENCE_BLOCK:
            referenced = True
        elif eid not in _SKIP_IN_GROUP:
            extras = True   # BlockAdditions, DiscardPadding, CodecState, Slices...
        p += d + size
    if block is None:
        raise MkvError(f"block group without a block at offset {pos}")
    at, track, rel, flags, pay, bend = block
    if flags & 0x06:
        raise MkvError(f"laced block at offset {at}")
    ts = ctime + rel
    if ts < 0:
        raise MkvError(f"negative block timestamp at offset {at}")
    return track, ts, not referenced, pay, bend - pay, duration, extras


# -- Builders, for tests (the inverse operations) ----------------------------------------

def encode_id(eid: int) -> bytes:
    return eid.to_bytes((eid.bit_length() + 7) // 8, "big")


def encode_size(n: int, length: int | None = None) -> bytes:
    """Size vint of ``n`` (:data:`UNKNOWN`: all ones) in ``length`` bytes (shortest if None)."""
    if n == UNKNOWN:
        length = length or 1
        return ((1 << (8 * length - length + 1)) - 1 | 1 << (8 * length - length)).to_bytes(length, "big")
    if length is None:
        length = 1
        while n >= (1 << (7 * length)) - 1:
            length += 1
    if n >= (1 << (7 * length)) - 1:
        raise ValueError(f"{n} does not fit a {length}-byte vint")
    return (n | 1 << (7 * length)).to_bytes(length, "big")


def element(eid: int, data: bytes = b"", size_length: int | None = None) -> bytes:
    return encode_id(eid) + encode_size(len(data), size_length) + data


def uint_element(eid: int, v: int) -> bytes:
    return element(eid, v.to_bytes(max(1, (v.bit_length() + 7) // 8), "big"))
