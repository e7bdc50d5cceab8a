"""companion.align.mkv on hand-built bytes: EBML vints, element headers, the segment
layout and the cluster walk, including unknown sizes, cut elements and lacing; and
property tests that random or damaged input only ever raises MkvError."""
from __future__ import annotations

import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from companion.align import mkv, sei
from companion.align.mkv import (BLOCK, BLOCK_DURATION, BLOCK_GROUP, CLUSTER, CODEC_DELAY,
                                 CODEC_ID, CODEC_PRIVATE, CUES, DEFAULT_DURATION, DURATION,
                                 EBML, EBML_DOCTYPE, INFO, REFERENCE_BLOCK, SEGMENT,
                                 SIMPLE_BLOCK, TIMECODE, TIMECODE_SCALE, TRACK_ENTRY,
                                 TRACK_NUMBER, TRACK_TYPE, TRACKS, UNKNOWN, VOID, MkvError,
                                 element, encode_size, uint_element)


# -- vints -------------------------------------------------------------------------------

@pytest.mark.parametrize("data,value,length", [
    (b"\x81", 1, 1), (b"\x80", 0, 1), (b"\xfe", 126, 1), (b"\xff", UNKNOWN, 1),
    (b"\x40\x7f", 127, 2), (b"\x7f\xfe", 16382, 2), (b"\x7f\xff", UNKNOWN, 2),
    (b"\x40\x01", 1, 2),                       # non-shortest encodings are valid
    (b"\x20\x00\x00", 0, 3), (b"\x10\x00\x00\x05", 5, 4),
    (b"\x01\xff\xff\xff\xff\xff\xff\xff", UNKNOWN, 8),
    (b"\x01\xff\xff\xff\xff\xff\xff\xfe", (1 << 56) - 2, 8),
    (b"\x01\x00\x00\x00\x00\x00\x00\x00", 0, 8),
])
def test_read_vint(data, value, length):
    assert mkv.read_vint(data + b"\xAA", 0, len(data) + 1) == (value, length)


def test_vint_zero_first_byte_and_cut_are_errors():
    with pytest.raises(MkvError):
        mkv.read_vint(b"\x00\x81", 0, 2)      # would be a 9+ byte vint
    with pytest.raises(MkvError):
        mkv.read_vint(b"\x40", 0, 1)          # 2-byte vint, 1 byte present
    with pytest.raises(MkvError):
        mkv.read_vint(b"\x10\x00\x00\x00", 0, 3)   # cut by ``end``, not by the buffer
    with pytest.raises(MkvError):
        mkv.read_vint(b"", 0, 0)


def test_read_id_keeps_marker_and_limits_length():
    assert mkv.read_id(b"\x1a\x45\xdf\xa3", 0, 4) == (EBML, 4)
    assert mkv.read_id(b"\xa3", 0, 1) == (SIMPLE_BLOCK, 1)
    assert mkv.read_id(b"\x2a\xd7\xb1", 0, 3) == (TIMECODE_SCALE, 3)
    with pytest.raises(MkvError):
        mkv.read_id(b"\x08\x00\x00\x00\x00", 0, 5)   # 5-byte IDs exceed EBMLMaxIDLength 4
    with pytest.raises(MkvError):
        mkv.read_id(b"\x1a\x45", 0, 2)


@given(st.integers(0, (1 << 56) - 2), st.integers(1, 8))
def test_size_roundtrip(n, length):
    if n >= (1 << (7 * length)) - 1:
        with pytest.raises(ValueError):
            encode_size(n, length)
        return
    b = encode_size(n, length)
    assert len(b) == length and mkv.read_vint(b, 0, length) == (n, length)


@pytest.mark.parametrize("length", range(1, 9))
def test_unknown_size_every_length(length):
    b = encode_size(UNKNOWN, length)
    assert len(b) == length and mkv.read_vint(b, 0, length) == (UNKNOWN, length)


def test_read_header_cut_element():
    e = element(0x4282, b"matroska")
    assert mkv.read_header(e, 0, len(e)) == (0x4282, 8, 3)
    with pytest.raises(MkvError, match="cut"):
        mkv.read_header(e[:-1], 0, len(e) - 1)
    # a parent that ends later than the buffer (``limit``) is not a cut
    assert mkv.read_header(e[:5], 0, 5, limit=100) == (0x4282, 8, 3)


def test_read_float_and_uint():
    assert mkv.read_float(struct.pack(">d", 1234.5), 0, 8) == 1234.5
    assert mkv.read_float(struct.pack(">f", 2.5), 0, 4) == 2.5
    assert mkv.read_float(b"", 0, 0) == 0.0
    with pytest.raises(MkvError):
        mkv.read_float(b"\x00" * 3, 0, 3)
    assert mkv.read_uint(b"\x01\x00", 0, 2) == 256
    with pytest.raises(MkvError):
        mkv.read_uint(b"\x00" * 9, 0, 9)


# -- hand-built files -------------------------------------------------------------------

def ebml_header(doc=b"matroska"):
    return element(EBML, element(EBML_DOCTYPE, doc))


def track(num, typ, codec, **extra):
    body = uint_element(TRACK_NUMBER, num) + uint_element(TRACK_TYPE, typ) + \
        element(CODEC_ID, codec.encode())
    if "private" in extra:
        body += element(CODEC_PRIVATE, extra["private"])
    if "dd" in extra:
        body += uint_element(DEFAULT_DURATION, extra["dd"])
    if "delay" in extra:
        body += uint_element(CODEC_DELAY, extra["delay"])
    return element(TRACK_ENTRY, body)


def simple_block(tr, rel, flags, payload):
    return element(SIMPLE_BLOCK, encode_size(tr) + struct.pack(">hB", rel, flags) + payload)


def block_group(tr, rel, payload, duration=None, ref=None, extra=b""):
    body = element(BLOCK, encode_size(tr) + struct.pack(">hB", rel, 0) + payload)
    if duration is not None:
        body += uint_element(BLOCK_DURATION, duration)
    if ref is not None:
        body += element(REFERENCE_BLOCK, struct.pack(">h", ref))
    return element(BLOCK_GROUP, body + extra)


def cluster(tc, *blocks, size_length=None):
    return element(CLUSTER, uint_element(TIMECODE, tc) + b"".join(blocks), size_length)


def segment(*children, unknown=False):
    body = b"".join(children)
    if unknown:
        return mkv.encode_id(SEGMENT) + encode_size(UNKNOWN, 8) + body
    return element(SEGMENT, body, 8)


INFO_EL = element(INFO, uint_element(TIMECODE_SCALE, 1_000_000) +
                  element(DURATION, struct.pack(">d", 3000.0)))
TRACKS_EL = element(TRACKS, track(1, 1, "V_MPEG4/ISO/AVC", private=b"\x01\x64\x00\x1f\xff",
                                  dd=16_666_666) +
                    track(2, 2, "A_AAC", private=b"\x11\x90", delay=21_333_333))


def sample_file(unknown=False, tail=b""):
    c1 = cluster(0, simple_block(1, 0, 0x80, b"\x00\x00\x00\x02\x65\x88"),
                 simple_block(2, 0, 0x80, b"AAC0"),
                 simple_block(1, 33, 0x00, b"\x00\x00\x00\x02\x41\x9a"),
                 simple_block(1, 17, 0x00, b"\x00\x00\x00\x02\x01\x9e"))
    c2 = cluster(1000, block_group(1, -5, b"\x00\x00\x00\x01\x41", duration=16, ref=-17),
                 block_group(2, 2, b"AAC1"),
                 element(VOID, b"\x00" * 3),
                 size_length=8)
    return ebml_header() + segment(element(VOID, b"\x00" * 10), INFO_EL, TRACKS_EL, c1, c2,
                                   element(CUES, b"\x00" * 20), unknown=unknown) + tail


def test_layout_of_hand_built_file():
    data = sample_file()
    lay = mkv.parse_layout(data)
    assert lay.doc_type == "matroska" and lay.segment_size_known
    assert lay.segment_end == len(data) and lay.timecode_scale == 1_000_000
    assert lay.duration == 3000.0
    v, a = lay.tracks
    assert (v.number, v.type, v.codec_id, v.default_duration) == (1, 1, "V_MPEG4/ISO/AVC", 16_666_666)
    assert v.codec_private == b"\x01\x64\x00\x1f\xff"
    assert (a.number, a.type, a.codec_id, a.codec_delay) == (2, 2, "A_AAC", 21_333_333)
    assert lay.track(2) is a and lay.track(3) is None
    assert data[lay.first_cluster:lay.first_cluster + 4] == mkv.encode_id(CLUSTER)


def test_blocks_of_hand_built_file():
    data = sample_file()
    blocks = list(mkv.iter_blocks(data, mkv.parse_layout(data)))
    got = [(t, ts, k, bytes(data[p:p + n]), d, x) for t, ts, k, p, n, d, x in blocks]
    assert got == [
        (1, 0, True, b"\x00\x00\x00\x02\x65\x88", None, False),
        (2, 0, True, b"AAC0", None, False),
        (1, 33, False, b"\x00\x00\x00\x02\x41\x9a", None, False),
        (1, 17, False, b"\x00\x00\x00\x02\x01\x9e", None, False),
        (1, 995, False, b"\x00\x00\x00\x01\x41", 16, False),   # ReferenceBlock: not a key
        (2, 1002, True, b"AAC1", None, False),                # no ReferenceBlock: key
    ]


def test_same_blocks_through_a_reader_and_a_buffer():
    data = sample_file()
    lay = mkv.parse_layout(data)
    reads = []

    def read(pos, n):
        reads.append(n)
        return data[pos:pos + n]
    assert list(mkv.iter_blocks(read, lay)) == list(mkv.iter_blocks(data, lay))
    assert max(reads) <= mkv.HEAD


def test_unknown_size_segment_extends_to_the_end():
    data = sample_file(unknown=True)
    lay = mkv.parse_layout(data)
    assert not lay.segment_size_known and lay.segment_end == len(data)
    assert len(list(mkv.iter_blocks(data, lay))) == 6


def test_layout_from_the_file_head_only():
    data = sample_file()
    head = data[:mkv.parse_layout(data).first_cluster + 12]
    assert mkv.parse_layout(head, len(data)).first_cluster == mkv.parse_layout(data).first_cluster
    with pytest.raises(mkv.MkvShort):
        mkv.parse_layout(data[:60], len(data))          # Tracks not in the head yet
    with pytest.raises(MkvError):
        mkv.parse_layout(data[:60])                      # the whole file: it is cut


@pytest.mark.parametrize("bad,match", [
    (lambda: cluster(0, simple_block(1, 0, 0x82, b"x")), "laced"),             # Xiph lacing
    (lambda: cluster(0, simple_block(1, 0, 0x86, b"x")), "laced"),             # EBML lacing
    (lambda: cluster(5, simple_block(1, -6, 0x80, b"x")), "negative"),
    (lambda: element(CLUSTER, simple_block(1, 0, 0x80, b"x")), "before the cluster"),
    (lambda: cluster(0, element(0xC5, b"?")), "in a cluster"),
    (lambda: cluster(0) + element(0x4DBB, b""), "level-1"),
    (lambda: mkv.encode_id(CLUSTER) + encode_size(UNKNOWN, 8) + uint_element(TIMECODE, 0)
     + simple_block(1, 0, 0x80, b"x"), "unknown size"),
    (lambda: cluster(0, mkv.encode_id(SIMPLE_BLOCK) + encode_size(UNKNOWN, 2) + b"\x81\x00\x00\x80"),
     "unknown size"),
    (lambda: cluster(0, uint_element(TIMECODE, 3)), "second cluster timestamp"),
    (lambda: cluster(0, element(BLOCK_GROUP, uint_element(BLOCK_DURATION, 3))), "without a block"),
])
def test_walk_errors(bad, match):
    data = ebml_header() + segment(INFO_EL, TRACKS_EL, bad())
    with pytest.raises(MkvError, match=match):
        list(mkv.iter_blocks(data, mkv.parse_layout(data)))


def test_block_group_side_data_is_flagged_not_fatal():
    extra = element(0x75A2, b"\x10")             # DiscardPadding
    data = ebml_header() + segment(INFO_EL, TRACKS_EL,
                                   cluster(0, block_group(2, 0, b"A", extra=extra)))
    (b,) = mkv.iter_blocks(data, mkv.parse_layout(data))
    assert b[-1] is True


@pytest.mark.parametrize("cut", [1, 5, 20, 41])
def test_cut_file_is_an_error(cut):
    data = sample_file()
    lay = mkv.parse_layout(data)
    short = data[:-cut]
    with pytest.raises(MkvError):
        lay2 = mkv.parse_layout(short)   # known segment size: cut at once
        list(mkv.iter_blocks(short, lay2))
    # with an unknown-size segment, a cut inside a cluster is found by the walk
    data = sample_file(unknown=True)
    short = data[:lay.first_cluster + 40]
    with pytest.raises(MkvError, match="cut|past"):
        list(mkv.iter_blocks(short, mkv.parse_layout(short)))


@pytest.mark.parametrize("prefix,match", [
    (b"RIFF....", "EBML"),
    (ebml_header(b"webmx"), "not Matroska"),
    (ebml_header() + element(INFO, b""), "Segment"),
])
def test_not_matroska(prefix, match):
    with pytest.raises(MkvError, match=match):
        mkv.parse_layout(prefix + b"\x00" * 16)


def test_webm_doctype_and_trailing_bytes_reported_by_layout():
    data = ebml_header(b"webm") + segment(INFO_EL, TRACKS_EL, cluster(0)) + b"junk"
    lay = mkv.parse_layout(data)
    assert lay.doc_type == "webm" and lay.segment_end == len(data) - 4


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_damaged_files_only_raise_mkverror(data):
    """Any byte flipped, inserted or removed anywhere: parse and walk either succeed or
    raise MkvError (the scan then falls back to PyAV), never another exception."""
    base = bytearray(sample_file(unknown=data.draw(st.booleans())))
    for _ in range(data.draw(st.integers(1, 4))):
        i = data.draw(st.integers(0, len(base) - 1))
        op = data.draw(st.sampled_from(["flip", "insert", "delete", "truncate"]))
        if op == "flip":
            base[i] = data.draw(st.integers(0, 255))
        elif op == "insert":
            base.insert(i, data.draw(st.integers(0, 255)))
        elif op == "delete" and len(base) > 1:
            del base[i]
        else:
            del base[max(1, i):]
    buf = bytes(base)
    try:
        lay = mkv.parse_layout(buf)
        for b in mkv.iter_blocks(buf, lay):
            assert 0 <= b[3] and b[3] + b[4] <= len(buf)
    except MkvError:
        pass


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=200))
def test_random_bytes_only_raise_mkverror(blob):
    for buf in (blob, ebml_header() + blob, ebml_header() + segment(INFO_EL, TRACKS_EL) + blob):
        try:
            lay = mkv.parse_layout(buf)
            list(mkv.iter_blocks(buf, lay))
        except MkvError:
            pass


# -- sei: the NAL walk through a reader gives what the in-memory walk gives ---------------

_nal = st.one_of(
    st.binary(min_size=1, max_size=40).map(lambda b: bytes([b[0] & 0x7F]) + b[1:]),
    st.just(sei.build_h264_sei_nal([(4, sei.build_ga94_t35([(1, 0, 0x94, 0x2C)]))])),
    st.just(sei.build_hevc_sei_nal([(4, sei.build_ga94_t35([(1, 0, 0x14, 0x2F)]))])),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(_nal, max_size=6), st.sampled_from([1, 2, 4]), st.sampled_from(["h264", "hevc", "av1"]),
       st.binary(max_size=3), st.booleans())
def test_cc_data_from_reader_equals_in_memory(nals, n, codec, junk, annexb):
    nals = [x for x in nals if len(x) < (1 << (8 * n))]
    pkt = (sei.annexb(nals) if annexb else sei.length_prefixed(nals, n)) + junk
    reads = []

    def peek(i, k):
        reads.append((i, k))
        return pkt[i:i + k]
    assert sei.cc_data_from_reader(peek, len(pkt), codec, n) == \
        sei.cc_data_from_packet(pkt, codec, n)
