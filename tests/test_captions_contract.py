"""The OBS script's caption encoder (stdlib, runs inside OBS) and the contract codec agree."""
from __future__ import annotations

import pytest
from hypothesis import given, strategies as st

from companion.contract import captions as cc
from obs_script import nm_timestamps as script

ids = st.text(alphabet="0123456789ABCDEF", min_size=8, max_size=8)
ns = st.integers(min_value=0, max_value=2**63 - 1)


@given(ids, st.integers(0, 10_000), st.integers(0, 10**9), ns, st.integers(1, 10**9), ns)
def test_anchor_round_trip_and_script_agrees(rec, seg, base, f, i, p):
    a = cc.SegmentAnchor(rec, seg, base, f, i, p)
    text = cc.encode_anchor(a)
    assert text == script.anchor_caption(rec, seg, base, f, i, p)
    assert len(text) <= 128
    assert cc.decode_caption(text) == a


@given(ids, ns, ns)
def test_clock_round_trip_and_script_agrees(rec, e, m):
    c = cc.ClockPair(rec, e, m)
    text = cc.encode_clock(c)
    assert text == script.clock_caption(rec, e, m)
    assert cc.decode_caption(text) == c


def test_wrapped_rows_decode_both_ways():
    a = cc.SegmentAnchor("0A1B2C3D", 1, 32, 413702729239, 33333333, 999999990)
    text = cc.encode_anchor(a)
    # libcaption wraps at spaces (rows) ...
    assert cc.decode_caption(text.replace(" F=", "\nF=").replace(" K=", "\nK=")) == a
    # ... or inside a token when one is longer than a row
    assert cc.decode_caption(text[:32] + "\n" + text[32:]) == a


@pytest.mark.parametrize("bad", ["NM1 A R=1 S=0 K=00000000", "NM1 C R=AB E=1 M=2 K=DEADBEEF",
                                 "NM1 Z R=AB K=" + cc.crc_of("NM1 Z R=AB")])
def test_corrupt_captions_raise(bad):
    with pytest.raises(cc.CaptionError):
        cc.decode_caption(bad)


def test_foreign_subtitles_are_not_ours():
    assert cc.decode_caption("Hello there") is None
    assert cc.decode_caption("1740119250371185500") is None


def test_captions_only_for_codecs_obs_can_carry():
    assert script.codec_supports_captions("h264", "29.0.2")
    assert not script.codec_supports_captions("hevc", "30.1.0")
    assert script.codec_supports_captions("hevc", "30.2.3")
    assert script.codec_supports_captions("av1", "31.0.0-rc1")
    assert not script.codec_supports_captions("prores", "31.0.0")
