"""The OBS start race, on a real recording that has it (tests/fixtures, recorded by OBS 29
during a full test run): the first-active-tick anchor says frame 0 was captured one frame
earlier than it was. The sidecar's stop rule finds the shift and the aligner corrects it;
the frame numbers OBS painted into the frames prove the corrected times."""
from __future__ import annotations

from pathlib import Path

from companion.align.anchors import choose_anchors
from companion.align.demux import scan_video
from companion.align.session import build_frames
from companion.contract.sidecar import read_sidecar
from tests.marker import check_markers, video_markers

FIX = Path(__file__).parent / "fixtures"
MKV = FIX / "obs29_h264_60fps_startrace.mkv"


def _expected(frames, interval):
    return [int((m // interval) % 4096) for m in frames.column("mono_ns").to_numpy()]


def test_start_race_is_found_and_corrected():
    scan = scan_video(MKV)
    sidecar = read_sidecar(FIX / "obs29_h264_60fps_startrace.anchors.jsonl")
    interval = sidecar.header["interval_ns"]
    shown = video_markers(MKV)
    anchors = choose_anchors(scan.captions, sidecar, [], None)
    frames, facts = build_frames(scan, anchors)
    assert facts["start_check"]["method"] == "stop_rule"
    assert facts["start_check"]["start_shift_frames"] == 1 and facts["start_check"]["applied"]
    assert any("start race" in w for w in anchors.warnings)
    res = check_markers(shown, _expected(frames, interval))
    assert res["wrong"] == [] and res["exact"] > 0.5 * len(shown)
    # the first-active-tick anchor alone (captions only: no stop record) is one frame early
    caps = choose_anchors(scan.captions, None, [], None)
    frames_c, facts_c = build_frames(scan, caps)
    assert facts_c["start_check"]["method"] is None
    exp_c = _expected(frames_c, interval)
    assert len(check_markers(shown, exp_c)["wrong"]) > 0.9 * len(shown)
    # every frame one frame late, except the first frame after the pause, which the
    # uncorrected frames-before-pause count puts into the wrong segment
    off_by_one = check_markers(shown, [(e + 1) % 4096 for e in exp_c])["wrong"]
    seg = frames_c.column("segment").to_pylist()
    assert [w[0] for w in off_by_one] == [seg.index(1) - 1]


DOUBT = FIX / "obs29_h264_60fps_unpause_doubt.mkv"


def test_doubtful_unpause_edge_is_moved_when_the_end_needs_it():
    """A real recording whose unpause edge the script placed one frame late (its signal
    handler ran more than the 92 us margin after OBS's clock read; OBS's painted frame
    numbers show segment 1 starting a frame earlier). The stop rule alone would call it
    a start one frame *before* the anchor and shift segment 0 (94 wrong frames); nm-align
    moves the doubtful edge instead and every frame is right."""
    scan = scan_video(DOUBT)
    sidecar = read_sidecar(FIX / "obs29_h264_60fps_unpause_doubt.anchors.jsonl")
    interval = sidecar.header["interval_ns"]
    shown = video_markers(DOUBT)
    for caps in ([], scan.captions):
        anchors = choose_anchors(caps, sidecar, [], None)
        frames, facts = build_frames(scan, anchors)
        sc = facts["start_check"]
        assert sc["method"] == "stop_rule" and sc["start_shift_frames"] == 0
        assert sc["unpause_edges_moved"] == [1]
        assert any("unpause edge" in w for w in anchors.warnings)
        assert check_markers(shown, _expected(frames, interval))["wrong"] == []
        seg1 = facts["segments"][1]
        assert seg1["frame_mono_ns"] == sidecar.segments[1].frame_ns - interval
    # without the move (captions alone, no stop record) segment 1 is a frame late
    frames_c, _ = build_frames(scan, choose_anchors(scan.captions, None, [], None))
    exp_c = _expected(frames_c, interval)
    b = sidecar.segments[1].pts_base
    wrong = [w[0] for w in check_markers(shown, exp_c)["wrong"]]
    # (segment 1's first frame, showing a picture one slot older than its time says,
    # cannot be told from OBS lagging at the resume: the checker counts it stale)
    assert wrong[0] == b + 1 and len(wrong) >= 0.9 * (len(shown) - b - 1), wrong
    assert set(wrong) <= set(range(b + 1, len(shown)))
    moved = exp_c[:b] + [(e - 1) % 4096 for e in exp_c[b:]]
    assert check_markers(shown, moved)["wrong"] == []


def test_edge_move_rules_on_generated_anchors():
    """Pure: which edges may move, in which order, and when nothing moves."""
    from companion.align.anchors import AnchorSet
    from companion.align.session import EDGE_DOUBT_NS, _check_start
    from companion.contract.captions import SegmentAnchor
    I = 16_666_666
    f0 = 1_000_000_000_000
    # two pauses of 10 frames; 20 frames per segment; 60 packets really in the file
    def segs(u1, u2):
        return [SegmentAnchor("X", 0, 0, f0, I, 0),
                SegmentAnchor("X", 1, 20, f0 + 30 * I - u1 * I, I, 10 * I - u1 * I),
                SegmentAnchor("X", 2, 40, f0 + 60 * I - (u1 + u2) * I, I, 20 * I - (u1 + u2) * I)]
    # 60 packets + 20 paused frames; OBS's stop time 1 ms before the 61st packet's dts
    stop = f0 + 80 * I - 1_000_000
    def run(u1, u2, m1, m2, n=60):
        s = segs(0, 0)                           # recorded edges: as the script placed them
        # the truth has unpause 1 and/or 2 a frame earlier: the file holds n packets
        st = {"signal_mono_ns": stop - (u1 + u2) * I, "paused": False,
              "pause_total_ns": 20 * I, "unpause_margins": {s[1].frame_ns: m1, s[2].frame_ns: m2}}
        a = AnchorSet("sidecar", "exact", "X", s, [], stop=st)
        return _check_start(s, n, a), a
    # recorded edges right: nothing to do
    (out, chk), _ = run(0, 0, 50_000, 50_000)
    assert chk["start_shift_frames"] == 0 and "unpause_edges_moved" not in chk and out == segs(0, 0)
    # one edge a frame late, both in doubt: the one with less margin moves
    (out, chk), a = run(1, 0, 90_000, 2_000_000)
    assert chk["unpause_edges_moved"] == [1] and chk["start_shift_frames"] == 0
    assert out[1].frame_ns == segs(0, 0)[1].frame_ns - I
    assert out[2].pause_offset_ns == 20 * I - I and out[2].frame_ns == segs(0, 0)[2].frame_ns
    # both late and both in doubt: both move
    (out, chk), _ = run(1, 1, 90_000, 2_000_000)
    assert chk["unpause_edges_moved"] == [1, 2] and chk["start_shift_frames"] == 0
    # an edge with a safe margin is never moved: the early start stays unexplained
    (out, chk), _ = run(1, 0, EDGE_DOUBT_NS + 1, EDGE_DOUBT_NS + 1)
    assert "unpause_edges_moved" not in chk and chk["start_shift_frames"] == -1


def test_obs_pause_offsets_settle_edges_on_generated_anchors():
    """Pure: with OBS's own paused totals (sidecar 1.2.0+) a pause or unpause edge the
    script placed late is put back, and the stop rule then sees no start shift. Without
    them a late pause edge is indistinguishable from a one-frame start race."""
    from companion.align.anchors import AnchorSet
    from companion.align.session import _check_start, _settle_pause_edges
    from companion.contract.captions import SegmentAnchor
    I = 16_666_666
    f0 = 1_000_000_000_000
    # truth: 20 frames, a pause of 10 frames, 20 frames; 40 packets in the file; OBS's
    # stop time 1 ms before the 41st packet's dts on the pause-compressed timeline
    signal = f0 + 50 * I - 1_000_000
    truth = [SegmentAnchor("X", 0, 0, f0, I, 0), SegmentAnchor("X", 1, 20, f0 + 30 * I, I, 10 * I)]

    def run(seg1, obs_offsets):
        s = [truth[0], seg1]
        st = {"signal_mono_ns": signal, "paused": False, "pause_total_ns": seg1.pause_offset_ns,
              "unpause_margins": {seg1.frame_ns: 9_000_000}}
        a = AnchorSet("sidecar", "exact", "X", s, [], stop=st, obs_pause_offsets=obs_offsets)
        settled, rep = _settle_pause_edges(s, a)
        ok = rep is not None and rep["method"] is not None
        out, chk = _check_start(settled, 40, a, s if ok else None)
        return out, chk, rep, a

    # the pause edge a frame late: 21 frames before the pause, a 9-frame pause
    late_pause = SegmentAnchor("X", 1, 21, f0 + 30 * I, I, 9 * I)
    out, chk, rep, a = run(late_pause, {0: 0, 1: 10 * I})
    assert out == truth and chk["start_shift_frames"] == 0
    assert rep["pause_edges_moved"] == [{"segment": 1, "frames": 1}]
    assert rep["unpause_edges_moved"] == []
    assert any("pause edge before segment 1" in w for w in a.warnings)
    # ... and without OBS's offsets it reads as a start race (the old ambiguity)
    out, chk, rep, _ = run(late_pause, None)
    assert rep is None and chk["start_shift_frames"] == 1 and chk["applied"]
    assert out[0].frame_ns == f0 + I            # the first segment a frame late
    # the unpause edge a frame late: segment 1 starts a frame earlier than recorded
    late_unpause = SegmentAnchor("X", 1, 20, f0 + 31 * I, I, 11 * I)
    out, chk, rep, _ = run(late_unpause, {0: 0, 1: 10 * I})
    assert out == truth and chk["start_shift_frames"] == 0
    assert rep["unpause_edges_moved"] == [{"segment": 1, "frames": 1}]
    assert "unpause_edges_moved" not in chk        # not the margin-based move
    # edges right: nothing moves, nothing warned
    out, chk, rep, a = run(truth[1], {0: 0, 1: 10 * I})
    assert out == truth and rep["pause_edges_moved"] == rep["unpause_edges_moved"] == []
    assert not a.warnings
    # OBS's number off by a non-whole frame: kept as recorded, said so, old rules apply
    out, chk, rep, a = run(late_pause, {0: 0, 1: 10 * I + 5})
    assert rep["method"] is None and chk["start_shift_frames"] == 1   # read as a race
    assert any("differs from the script's" in w for w in a.warnings)
