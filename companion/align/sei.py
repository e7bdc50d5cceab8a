"""Closed-caption bytes (ATSC A/53 ``cc_data``) from one demuxed video packet.

Pure logic, no I/O. OBS (through libcaption) carries CEA-608 captions as ATSC A/53
``GA94`` ``cc_data()`` inside an ITU-T T.35 registered-user-data envelope:

* H.264: SEI NAL (``nal_unit_type`` 6), message ``payloadType`` 4
  (``user_data_registered_itu_t_t35``), ITU-T H.264 section 7.3.2.3 / Annex D.
* HEVC: prefix SEI (type 39) or suffix SEI (type 40) NAL with a 2-byte NAL header,
  same SEI message syntax, ITU-T H.265 section 7.3.5 / Annex D.
* AV1: ``OBU_METADATA`` (type 5) with ``metadata_type`` 4 (ITU-T T.35),
  AV1 spec sections 5.3 (OBU header, leb128 sizes) and 5.8.

The T.35 payload is ``country 0xB5, provider 0x0031, user_identifier 'GA94',
user_data_type_code 3, cc_data()`` (ATSC A/53 Part 4 section 6.2.3, table 6.9)::

    cc_data() = flags(reserved:1 process_em_data:1 process_cc_data:1
                      additional_data:1 cc_count:5), em_data:8,
                cc_count x (marker:5 cc_valid:1 cc_type:2 cc_data_1:8 cc_data_2:8),
                marker:8

Packets in MKV/MP4 hold NAL units each preceded by a big-endian length of
``nal_length_size`` bytes (from ``avcC``/``hvcC`` extradata); Annex-B start codes
(``00 00 01``) are accepted too. Only NAL *headers* are inspected until an SEI NAL is
found, so slice payloads are never copied or scanned.
"""
from __future__ import annotations

from typing import Iterator, Union

Buffer = Union[bytes, bytearray, memoryview]
Triplet = tuple[int, int, int, int]
"""``(cc_valid, cc_type, cc_data_1, cc_data_2)``; bytes still carry CEA-608 parity."""

H264_NAL_SEI = 6
HEVC_NAL_PREFIX_SEI = 39
HEVC_NAL_SUFFIX_SEI = 40
AV1_OBU_METADATA = 5
AV1_METADATA_ITUT_T35 = 4
SEI_USER_DATA_REGISTERED_ITU_T_T35 = 4

T35_COUNTRY_USA = 0xB5
ATSC_PROVIDER = b"\x00\x31"
GA94 = b"GA94"
GA94_CC_DATA = 3

_CODEC_ALIASES = {"h264": "h264", "avc": "h264", "avc1": "h264", "libx264": "h264",
                  "hevc": "hevc", "h265": "hevc", "hvc1": "hevc", "hev1": "hevc",
                  "libx265": "hevc", "av1": "av1", "libaom-av1": "av1", "libdav1d": "av1",
                  "libsvtav1": "av1"}


def normalize_codec(codec: str) -> str | None:
    """Map an FFmpeg/container codec name to ``"h264"``, ``"hevc"``, ``"av1"`` or None."""
    return _CODEC_ALIASES.get(codec.lower())


def nal_length_size_from_extradata(extradata: Buffer | None, codec: str) -> int | None:
    """NAL length-field size in bytes (1, 2 or 4) declared by ``avcC``/``hvcC`` extradata.

    ``avcC`` (ISO/IEC 14496-15 section 5.3.3.1): byte 4 low 2 bits = lengthSizeMinusOne.
    ``hvcC`` (section 8.3.3.1): byte 21 low 2 bits = lengthSizeMinusOne.
    Returns None when the extradata is absent, Annex-B, or not recognised.
    """
    if not extradata:
        return None
    ed = bytes(extradata[:23])
    if ed[0] != 1:  # configurationVersion; Annex-B extradata starts with 00 00 (0) 01
        return None
    c = normalize_codec(codec)
    if c == "h264" and len(ed) >= 7:
        n = (ed[4] & 3) + 1
    elif c == "hevc" and len(ed) >= 23:
        n = (ed[21] & 3) + 1
    else:
        return None
    return n if n in (1, 2, 4) else None


def length_prefixed_spans(peek, size: int, n: int, keep: int | None = None
                          ) -> list[tuple[int, int]] | None:
    """(start, end) offsets of each NAL of a length-prefixed packet of ``size`` bytes, or
    None if the lengths do not tile it exactly. ``peek(i, k)`` returns the packet's bytes
    ``[i, i + k)`` (fewer at its end): only each NAL's length field and first header byte
    are read, so a caller may read them from a file. ``keep``: only the SEI NALs of a
    codec with a ``keep``-byte NAL header (1: H.264, 2: HEVC) are listed; the whole
    packet is still checked (this runs once per frame)."""
    out = []
    i = 0
    while i < size:
        if i + n > size:
            return None
        h = peek(i, n + 1)
        if len(h) <= n:
            return None
        if n == 4:
            ln = h[0] << 24 | h[1] << 16 | h[2] << 8 | h[3]
        else:
            ln = int.from_bytes(h[:n], "big")
        i += n
        first = h[n]
        if ln == 0 or i + ln > size or first & 0x80:  # forbidden_zero_bit must be 0
            return None
        if keep is None or _is_sei(first, keep):
            out.append((i, i + ln))
        i += ln
    return out


def _split_length_prefixed(data: Buffer, n: int, keep: int | None = None
                           ) -> list[tuple[int, int]] | None:
    """:func:`length_prefixed_spans` of a packet in memory."""
    mv = memoryview(data)
    return length_prefixed_spans(lambda i, k: mv[i:i + k], len(mv), n, keep)


def _split_annexb(data: Buffer) -> list[tuple[int, int]]:
    """(start, end) offsets of NAL payloads between Annex-B start codes."""
    b = data if isinstance(data, bytes) else bytes(data)
    starts = []
    i = b.find(b"\x00\x00\x01")
    while i >= 0:
        starts.append(i + 3)
        i = b.find(b"\x00\x00\x01", i + 3)
    out = []
    for k, s in enumerate(starts):
        e = starts[k + 1] - 3 if k + 1 < len(starts) else len(b)
        # trailing_zero_8bits / the leading zero of a 4-byte start code belong to no NAL
        while e > s and b[e - 1] == 0:
            e -= 1
        if e > s:
            out.append((s, e))
    return out


def split_nal_units(data: Buffer, nal_length_size: int = 4) -> list[memoryview]:
    """Split one access unit into NAL units (header included, still escaped).

    Tries length-prefixed framing with ``nal_length_size`` first and accepts it only if
    the lengths tile the packet exactly; otherwise falls back to Annex-B start codes.
    """
    mv = memoryview(data)
    spans = _split_length_prefixed(mv, nal_length_size) if nal_length_size in (1, 2, 3, 4) else None
    if spans is None:
        spans = _split_annexb(mv)
    return [mv[s:e] for s, e in spans]


def unescape_rbsp(nal: Buffer) -> bytes:
    """Remove emulation_prevention_three_byte (H.264 7.4.1 / H.265 7.4.2):
    every ``00 00 03`` becomes ``00 00``; the byte after the 03 starts a fresh count."""
    b = bytes(nal)
    if b"\x00\x00\x03" not in b:
        return b
    return b.replace(b"\x00\x00\x03", b"\x00\x00")


def sei_messages(rbsp: bytes) -> Iterator[tuple[int, bytes]]:
    """Yield ``(payloadType, payload)`` of each sei_message() in an SEI RBSP (NAL header
    already removed). Types and sizes use the 0xFF-extension coding (H.264 7.3.2.3.1).
    Stops at rbsp_trailing_bits or at a message that runs past the end (truncated)."""
    n = len(rbsp)
    i = 0
    while n - i >= 2:
        if rbsp[i] == 0x80 and not any(rbsp[i + 1:]):
            return  # rbsp_trailing_bits
        ptype = 0
        while i < n and rbsp[i] == 0xFF:
            ptype += 255
            i += 1
        if i >= n:
            return
        ptype += rbsp[i]
        i += 1
        psize = 0
        while i < n and rbsp[i] == 0xFF:
            psize += 255
            i += 1
        if i >= n:
            return
        psize += rbsp[i]
        i += 1
        if i + psize > n:
            return
        yield ptype, rbsp[i:i + psize]
        i += psize


def cc_data_from_t35(payload: Buffer) -> list[Triplet]:
    """cc_data triplets of an ITU-T T.35 payload (starting at the country code) if it is
    ATSC A/53 GA94 caption data, else ``[]``. Honors process_cc_data_flag; ignores a
    cc_count larger than the bytes present (keeps the whole triplets that are there)."""
    p = bytes(payload)
    if len(p) < 10 or p[0] != T35_COUNTRY_USA or p[1:3] != ATSC_PROVIDER or p[3:7] != GA94 \
            or p[7] != GA94_CC_DATA:
        return []
    flags = p[8]
    if not flags & 0x40:  # process_cc_data_flag
        return []
    count = flags & 0x1F
    out = []
    j = 10  # after flags and em_data
    for _ in range(count):
        if j + 3 > len(p):
            break
        b0 = p[j]
        out.append(((b0 >> 2) & 1, b0 & 3, p[j + 1], p[j + 2]))
        j += 3
    return out


def _cc_from_sei_nal(nal: Buffer, header_len: int) -> list[Triplet]:
    out: list[Triplet] = []
    for ptype, payload in sei_messages(unescape_rbsp(nal[header_len:])):
        if ptype == SEI_USER_DATA_REGISTERED_ITU_T_T35:
            out.extend(cc_data_from_t35(payload))
    return out


def _read_leb128(b: Buffer, i: int) -> tuple[int, int]:
    """Decode an unsigned leb128 (AV1 4.10.5) at ``b[i]``; returns (value, next index).
    Raises IndexError past the end."""
    value = 0
    for k in range(8):
        byte = b[i + k]
        value |= (byte & 0x7F) << (7 * k)
        if not byte & 0x80:
            return value, i + k + 1
    return value, i + 8


def av1_obus(data: Buffer) -> Iterator[tuple[int, memoryview]]:
    """Yield ``(obu_type, obu_payload)`` for each OBU of a low-overhead AV1 temporal unit
    (AV1 5.3.1-5.3.3). An OBU without obu_has_size_field extends to the end."""
    mv = memoryview(data)
    n = len(mv)
    i = 0
    while i < n:
        h = mv[i]
        obu_type = (h >> 3) & 0x0F
        ext = (h >> 2) & 1
        has_size = (h >> 1) & 1
        i += 1 + ext
        if i > n:
            return
        if has_size:
            try:
                size, i = _read_leb128(mv, i)
            except IndexError:
                return
        else:
            size = n - i
        if i + size > n:
            return
        yield obu_type, mv[i:i + size]
        i += size


def _cc_from_av1(data: Buffer) -> list[Triplet]:
    out: list[Triplet] = []
    for obu_type, payload in av1_obus(data):
        if obu_type != AV1_OBU_METADATA or not len(payload):
            continue
        try:
            mtype, j = _read_leb128(payload, 0)
        except IndexError:
            continue
        if mtype == AV1_METADATA_ITUT_T35:
            out.extend(cc_data_from_t35(payload[j:]))
    return out


def cc_data_from_packet(data: Buffer, codec: str, nal_length_size: int = 4) -> list[Triplet]:
    """All cc_data triplets carried by one video packet, in bitstream order.

    ``codec``: FFmpeg codec name (``h264``, ``hevc``, ``av1``; others give ``[]``).
    ``nal_length_size``: NAL length-field size in bytes for length-prefixed packets
    (MKV/MP4); Annex-B packets are detected automatically. Malformed or truncated
    data yields whatever complete triplets precede the damage, never an exception.
    """
    c = _CODEC_ALIASES.get(codec) or normalize_codec(codec)
    if c == "av1":
        return _cc_from_av1(data)
    if c == "h264":
        hdr = 1
    elif c == "hevc":
        hdr = 2
    else:
        return []
    mv = memoryview(data)
    spans = _split_length_prefixed(mv, nal_length_size, keep=hdr) \
        if nal_length_size in (1, 2, 3, 4) else None
    if spans is None:   # not length-prefixed: Annex-B start codes
        spans = [(s, e) for s, e in _split_annexb(mv) if _is_sei(mv[s], hdr)]
    out: list[Triplet] = []
    for s, e in spans:
        if e - s > hdr:
            out.extend(_cc_from_sei_nal(mv[s:e], hdr))
    return out


def cc_data_from_reader(peek, size: int, codec: str, nal_length_size: int = 4) -> list[Triplet]:
    """:func:`cc_data_from_packet` of a ``size``-byte packet read through ``peek(i, k)``
    (its bytes ``[i, i + k)``), reading only NAL length fields and headers and the SEI
    NALs when the packet is length-prefixed H.264/HEVC; otherwise (Annex-B, AV1, lengths
    that do not tile) the whole packet is read and handed to ``cc_data_from_packet``, so
    the result is always the same as for the packet in memory."""
    c = _CODEC_ALIASES.get(codec) or normalize_codec(codec)
    hdr = 1 if c == "h264" else 2 if c == "hevc" else 0
    if hdr and nal_length_size in (1, 2, 3, 4):
        spans = length_prefixed_spans(peek, size, nal_length_size, keep=hdr)
        if spans is not None:
            out: list[Triplet] = []
            for s, e in spans:
                if e - s > hdr:
                    out.extend(_cc_from_sei_nal(peek(s, e - s), hdr))
            return out
    if c is None:
        return []
    return cc_data_from_packet(peek(0, size), codec, nal_length_size)


def _is_sei(first: int, hdr: int) -> bool:
    """Whether a NAL header's first byte says SEI (``hdr``: 1 H.264, 2 HEVC prefix/suffix)."""
    if hdr == 1:
        return first & 0x1F == H264_NAL_SEI
    t = (first >> 1) & 0x3F
    return t == HEVC_NAL_PREFIX_SEI or t == HEVC_NAL_SUFFIX_SEI


# ---------------------------------------------------------------------------------------
# Builders: the inverse operations, for synthetic test media (what OBS/libcaption write).
# ---------------------------------------------------------------------------------------

def escape_rbsp(rbsp: Buffer) -> bytes:
    """Insert emulation_prevention_three_byte: after ``00 00``, a byte <= 3 gets a 03
    in front of it (H.264 7.4.1)."""
    out = bytearray()
    zeros = 0
    for byte in bytes(rbsp):
        if zeros >= 2 and byte <= 3:
            out.append(3)
            zeros = 0
        out.append(byte)
        zeros = zeros + 1 if byte == 0 else 0
    return bytes(out)


def build_ga94_t35(triplets: list[Triplet]) -> bytes:
    """ITU-T T.35 payload (country code first) carrying ATSC A/53 GA94 cc_data for
    ``triplets`` (at most 31, the 5-bit cc_count)."""
    if len(triplets) > 31:
        raise ValueError("cc_count is 5 bits: at most 31 triplets per cc_data()")
    body = bytearray([T35_COUNTRY_USA]) + ATSC_PROVIDER + GA94 + bytes([GA94_CC_DATA])
    body += bytes([0x40 | len(triplets), 0xFF])  # process_cc_data_flag, em_data
    for valid, typ, b1, b2 in triplets:
        body += bytes([0xF8 | (valid & 1) << 2 | (typ & 3), b1 & 0xFF, b2 & 0xFF])
    body.append(0xFF)  # marker_bits
    return bytes(body)


def build_sei_rbsp(messages: list[tuple[int, bytes]]) -> bytes:
    """sei_rbsp() bytes (unescaped, no NAL header) for ``(payloadType, payload)`` list."""
    out = bytearray()
    for ptype, payload in messages:
        for v in (ptype, len(payload)):
            while v >= 255:
                out.append(0xFF)
                v -= 255
            out.append(v)
        out += payload
    out.append(0x80)  # rbsp_trailing_bits
    return bytes(out)


def build_h264_sei_nal(messages: list[tuple[int, bytes]]) -> bytes:
    """An escaped H.264 SEI NAL unit (header byte 0x06, no start code / length)."""
    return bytes([H264_NAL_SEI]) + escape_rbsp(build_sei_rbsp(messages))


def build_hevc_sei_nal(messages: list[tuple[int, bytes]], suffix: bool = False) -> bytes:
    """An escaped HEVC prefix (39) or suffix (40) SEI NAL unit, layer 0, temporal id 0."""
    t = HEVC_NAL_SUFFIX_SEI if suffix else HEVC_NAL_PREFIX_SEI
    return bytes([t << 1, 0x01]) + escape_rbsp(build_sei_rbsp(messages))


def _leb128(v: int) -> bytes:
    out = bytearray()
    while True:
        byte = v & 0x7F
        v >>= 7
        out.append(byte | (0x80 if v else 0))
        if not v:
            return bytes(out)


def build_av1_t35_obu(t35_payload: bytes) -> bytes:
    """An AV1 OBU_METADATA (with obu_size) of metadata_type ITU-T T.35."""
    payload = _leb128(AV1_METADATA_ITUT_T35) + t35_payload + b"\x80"  # trailing bits
    return bytes([AV1_OBU_METADATA << 3 | 0x02]) + _leb128(len(payload)) + payload


def length_prefixed(nals: list[bytes], nal_length_size: int = 4) -> bytes:
    """Join NAL units MKV/MP4 style: each preceded by its big-endian length."""
    return b"".join(len(n).to_bytes(nal_length_size, "big") + n for n in nals)


def annexb(nals: list[bytes]) -> bytes:
    """Join NAL units with 4-byte Annex-B start codes."""
    return b"".join(b"\x00\x00\x00\x01" + n for n in nals)
