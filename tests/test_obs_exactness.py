"""Frame exactness, proven on a real OBS (Debian obs-studio 29 under Xvfb).

A test-only OBS script paints OBS's own frame number (frame time // interval, mod
4096) into every frame. The aligner recovers each frame's capture time from the
anchors alone (captions demuxed from the MKV, and the sidecar, separately); the
frame number implied by that time must equal the one painted into the picture:
zero frames of error, at 30 and 60 fps, across a pause/unpause.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from companion.align.anchors import choose_anchors
from companion.align.demux import scan_video
from companion.align.session import build_frames
from companion.contract.sidecar import read_sidecar, sidecar_path_for
from tests.marker import MARKER_SCRIPT, check_markers, video_markers
from tests.obs_harness import ObsInstance, obs_available

pytestmark = [pytest.mark.obs,
              pytest.mark.skipif(not obs_available(), reason="needs obs-studio and Xvfb")]


def _expected(frames, interval):
    mono = frames.column("mono_ns").to_numpy()
    return [int((m // interval) % 4096) for m in mono]


@pytest.mark.parametrize("fps", [30, 60])
def test_recovered_frame_times_equal_obs_frame_clock(tmp_path, fps):
    with ObsInstance(tmp_path, fps_num=fps, markers=2,
                     extra_scripts=[(MARKER_SCRIPT, {})]) as obs:
        mkv = obs.record(4.0, pause_at=1.5, pause_for=1.2)
    scan = scan_video(mkv)
    sidecar = read_sidecar(sidecar_path_for(mkv))
    shown = video_markers(mkv)
    assert len(shown) == len(scan.pts) > 3 * fps

    # 1) in-band captions alone
    caps = choose_anchors(scan.captions, None, [], None)
    assert caps is not None and caps.source == "captions"
    # 2) sidecar alone
    side = choose_anchors([], sidecar, [], None)
    assert side.source == "sidecar"
    # 3) both, cross-checked
    both = choose_anchors(scan.captions, sidecar, [], None)
    assert both.source == "captions+sidecar", both.warnings

    interval = sidecar.header["interval_ns"]
    results = {}
    for name, anchors in (("sidecar", side), ("both", both)):
        frames, facts = build_frames(scan, anchors)
        # script 1.2.0: OBS's own pause offsets settle any pause edge placed late
        assert facts["pause_edges"]["method"] == "obs_encoder_pause_offset", facts["pause_edges"]
        results[name] = check_markers(shown, _expected(frames, interval))
        assert results[name]["wrong"] == [], (name, results[name]["wrong"][:10])
        assert len(facts["segments"]) == 2  # the pause split the recording
    # Captions alone carry neither the stop record nor OBS's pause offsets, so they
    # cannot see OBS's rare start race nor a pause edge the script placed late under
    # load (docs/contracts/captions-and-sidecar.md): they are exact exactly when the
    # sidecar needed no correction, and otherwise wrong only where the correction acts.
    frames_c, _ = build_frames(scan, caps)
    frames_b, facts_b = build_frames(scan, both)
    sc, pe = facts_b["start_check"], facts_b["pause_edges"]
    shift = sc["start_shift_frames"]
    assert sc["method"] == "stop_rule"
    exp_c = _expected(frames_c, interval)
    wrong_c = [w[0] for w in check_markers(shown, exp_c)["wrong"]]
    edges_moved = pe["pause_edges_moved"] + pe["unpause_edges_moved"]
    if shift == 0 and not edges_moved:
        assert wrong_c == []
    elif shift == 0:
        # an edge the script placed late (its handler delayed past its margin): the
        # frames from that pause on are off in captions alone, and only they
        # (a lagged slot repeating an older picture counts as stale, not wrong)
        seg = frames_b.column("segment").to_pylist()
        first = min(e["segment"] for e in edges_moved)
        after = [i for i, k in enumerate(seg) if k >= first]
        assert set(wrong_c) <= set(after) and len(wrong_c) >= 0.9 * len(after), wrong_c
    else:
        # the start race: `shift` frames late everywhere, except the first `shift` frames
        # after the pause, which the uncorrected frames-before-pause count puts into the
        # wrong segment
        off = check_markers(shown, [(e + shift) % 4096 for e in exp_c])["wrong"]
        seg = frames_c.column("segment").to_pylist()
        if not edges_moved:
            assert [w[0] for w in off] == list(range(seg.index(1) - shift, seg.index(1))), off

    res = results["both"]
    lagged = sidecar.stop["lagged_frames"]
    assert res["stale"] <= lagged, res
    # stale frames depend on machine load (OBS lagging), exact ones prove the timing
    assert res["exact"] >= 0.5 * len(shown), res
    # the pause: the capture-time jump between the segments equals the pause length
    t = frames_c.column("mono_ns").to_numpy()
    seg = frames_c.column("segment").to_numpy()
    b = int(np.argmax(seg == 1))
    gap = t[b] - t[b - 1]
    assert 1.0e9 < gap < 2.0e9


LATE_HANDLER = Path(__file__).parent / "obs_scripts" / "late_edge_handler.py"


@pytest.mark.parametrize("edge", ["pause", "unpause"])
def test_edge_placed_late_is_settled_from_obs_pause_offset(tmp_path, edge):
    """The script's pause (or unpause) handler made to run a frame interval late, as a
    loaded machine does now and then (the handler waits for the GIL): the script places
    that edge late. The stop rule alone would take a late pause edge for a start race
    (the first segment then a frame late); OBS's own pause offset in the sidecar settles
    either edge: every frame exact."""
    with ObsInstance(tmp_path, fps_num=60, markers=2,
                     extra_scripts=[(MARKER_SCRIPT, {}), (LATE_HANDLER, {"signal": edge})]) as obs:
        mkv = obs.record(4.0, pause_at=1.5, pause_for=1.2)
    scan = scan_video(mkv)
    sidecar = read_sidecar(sidecar_path_for(mkv))
    shown = video_markers(mkv)
    interval = sidecar.header["interval_ns"]
    seg1 = [r for r in sidecar.records if r.get("kind") == "segment" and r["segment"] == 1]
    diff = (seg1[0]["obs_pause_offset_ns"] - seg1[0]["pause_offset_ns"]) // interval
    late = diff if edge == "pause" else -diff
    assert late >= 1, seg1          # the delay worked: the script's edge is late
    lagged = sidecar.stop["lagged_frames"]
    for caps in ([], scan.captions):
        anchors = choose_anchors(caps, sidecar, [], None)
        frames, facts = build_frames(scan, anchors)
        pe = facts["pause_edges"]
        assert pe[f"{edge}_edges_moved"] == [{"segment": 1, "frames": late}], pe
        assert pe["pause_edges_moved" if edge == "unpause" else "unpause_edges_moved"] == []
        # OBS may also have started a frame or two late (the start race, more likely on a
        # loaded machine): the stop rule corrects that on its own; either way every frame
        # shows its expected marker, but for pictures OBS repeated while it lagged
        shift = facts["start_check"]["start_shift_frames"]
        res = check_markers(shown, _expected(frames, interval))
        assert res["wrong"] == [] and res["stale"] <= lagged, (shift, res)
        assert any(f"the {edge} edge before segment 1" in w for w in anchors.warnings)
    if edge == "pause":
        # the same sidecar without OBS's offsets (a script before 1.2.0) reads as a
        # start race: the first segment, and only it, is then late
        old = choose_anchors([], sidecar, [], None)
        old.obs_pause_offsets = None
        frames_o, facts_o = build_frames(scan, old)
        assert facts_o["start_check"]["start_shift_frames"] == late + shift
        wrong = [w[0] for w in check_markers(shown, _expected(frames_o, interval))["wrong"]]
        seg = frames_o.column("segment").to_pylist()
        first = [i for i, k in enumerate(seg) if k == 0]
        # (a lagged slot repeating an older picture counts as stale, not wrong)
        assert set(wrong) <= set(first) and len(wrong) >= 0.9 * len(first), wrong


def test_naive_caption_text_is_not_frame_time(tmp_path):
    """The reason for the design: the clock caption text on a frame is not its time."""
    with ObsInstance(tmp_path, fps_num=30, markers=2, extra_scripts=[(MARKER_SCRIPT, {})]) as obs:
        mkv = obs.record(3.0)
    scan = scan_video(mkv)
    anchors = choose_anchors(scan.captions, None, [], None)
    frames, _ = build_frames(scan, anchors)
    mono = frames.column("mono_ns").to_numpy()
    from companion.contract.captions import ClockPair, decode_caption
    lags = []
    for idx, text in scan.captions:
        rec = decode_caption(text)
        if isinstance(rec, ClockPair) and idx > 0:
            lags.append((rec.mono_ns - mono[idx]) / 1e9)
    assert lags, "no clock captions landed"
    # clock captions land on frames captured well before the reading in their text
    assert max(abs(x) for x in lags) > 0.1, lags
