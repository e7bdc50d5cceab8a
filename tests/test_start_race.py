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
