"""Pure timeline logic: clock fit with drift, grid slots, segments, frame_ref."""
from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest

from companion.align import timeline as tl
from companion.contract.captions import ClockPair, SegmentAnchor

E0 = 1_795_249_280_000_000_000


def pairs(n, step_s=1.0, ppm=0.0, jitter_ns=0, seed=1, m0=400_000_000_000):
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        m = m0 + int(i * step_s * 1e9)
        e = E0 + (m - m0) + int((m - m0) * ppm * 1e-6) + int(rng.integers(-jitter_ns, jitter_ns + 1))
        out.append(ClockPair("R", e, m))
    return out


def test_drift_is_recovered_over_a_long_span():
    fit = tl.fit_clock(pairs(600, ppm=50.0, jitter_ns=2000))
    assert abs(fit.drift_ppm - 50.0) < 0.5
    assert fit.residual_max_ns <= 2100 and fit.residual_rms_ns < 2000
    # epoch of a mono time in the middle is right to within the jitter
    m = 400_000_000_000 + 300 * 10**9
    assert abs(int(fit.epoch_of([m])[0]) - (E0 + 300 * 10**9 + int(300e9 * 50e-6))) < 2000


def test_short_span_fits_offset_only_and_round_trips():
    fit = tl.fit_clock(pairs(3, ppm=80.0))
    assert fit.drift_ppm == 0.0 and fit.n == 3
    mono = np.array([400_000_000_000, 401_234_567_891], dtype=np.int64)
    assert np.array_equal(fit.mono_of(fit.epoch_of(mono)), mono)


def test_ntp_step_shows_in_residuals():
    ps = pairs(60)
    stepped = ps[:30] + [ClockPair("R", p.epoch_ns + 5_000_000, p.mono_ns) for p in ps[30:]]
    fit = tl.fit_clock(stepped)
    assert fit.residual_max_ns > 1_000_000


def test_no_pairs_is_an_error():
    with pytest.raises(tl.TimelineError):
        tl.fit_clock([])


@pytest.mark.parametrize("fps_num,fps_den", [(30, 1), (60, 1), (30000, 1001), (24000, 1001), (144, 1)])
def test_grid_slots_from_millisecond_pts(fps_num, fps_den):
    interval = fps_den * 1_000_000_000 // fps_num
    k = np.arange(0, 200_000, 7, dtype=np.int64)        # up to ~2 h at 30 fps
    pts_ms = np.rint(k * fps_den * 1000 / fps_num).astype(np.int64)   # what an MKV stores
    assert np.array_equal(tl.grid_slots(pts_ms, Fraction(1, 1000), interval), k)


def test_segments_map_slots_to_times_across_a_pause():
    I = 33_333_333
    segs = [SegmentAnchor("R", 0, 0, 1000, I), SegmentAnchor("R", 1, 32, 1000 + 62 * I, I, 30 * I)]
    mono, seg = tl.frame_mono_times(np.array([0, 31, 32, 33]), segs)
    assert mono.tolist() == [1000, 1000 + 31 * I, 1000 + 62 * I, 1000 + 63 * I]
    assert seg.tolist() == [0, 0, 1, 1]


def test_bad_segment_sets_are_rejected():
    I = 33_333_333
    with pytest.raises(tl.TimelineError, match="segment 0"):
        tl.check_segments([SegmentAnchor("R", 1, 5, 10, I)])
    with pytest.raises(tl.TimelineError, match="missing"):
        tl.check_segments([SegmentAnchor("R", 0, 0, 10, I), SegmentAnchor("R", 2, 5, 10**9, I)])
    with pytest.raises(tl.TimelineError, match="conflicting"):
        tl.check_segments([SegmentAnchor("R", 0, 0, 10, I), SegmentAnchor("R", 0, 0, 11, I)])
    with pytest.raises(tl.TimelineError, match="backwards"):
        tl.check_segments([SegmentAnchor("R", 0, 0, 10**9, I), SegmentAnchor("R", 1, 5, 10, I)])


def test_frame_ref_boundaries():
    ft = np.array([100, 200, 300])
    t = np.array([99, 100, 199, 200, 350, 399, 400])
    assert tl.frame_ref(ft, t, frame_end_ns=400).tolist() == [-1, 0, 0, 1, 2, 2, -1]


@pytest.mark.parametrize("late", [0, 1, 3, 5])
def test_stop_rule_corrects_a_late_start_at_60fps(late):
    """OBS started `late` frames after the first-active-tick anchor (1 and 3 seen in real
    runs at 60 fps): the stop rule finds it and the aligner shifts segment 0 and the
    frames-before-pause counts of later segments."""
    from companion.align.anchors import AnchorSet
    from companion.align.session import _check_start
    interval = 16_666_667
    f0 = 10_000_000_000
    true_f0 = f0 + late * interval
    n, before, paused = 300, 90, 1_200_000_000
    segs = [SegmentAnchor("r", 0, 0, f0, interval, 0),
            SegmentAnchor("r", 1, before + late, true_f0 + before * interval + paused, interval, paused)]
    stop = true_f0 + n * interval + paused - 5_000_000   # muxer keeps dts < stop
    anchors = AnchorSet("sidecar", "exact", stop={"signal_mono_ns": stop, "paused": False,
                                                    "pause_total_ns": paused})
    fixed, check = _check_start(segs, n, anchors)
    assert check["start_shift_frames"] == late
    assert fixed[0].frame_ns == true_f0 and fixed[1].pts_base == before
    assert bool(anchors.warnings) == (late != 0)


def test_stop_rule_refuses_an_implausible_shift():
    from companion.align.anchors import AnchorSet
    from companion.align.session import _check_start, max_start_shift
    interval = 16_666_667
    assert max_start_shift(interval) == 9 and max_start_shift(33_333_333) == 5
    segs = [SegmentAnchor("r", 0, 0, 0, interval, 0)]
    # a file missing 30 frames at the end looks like a start 30 frames late: kept, warned
    anchors = AnchorSet("sidecar", "exact", stop={"signal_mono_ns": 330 * interval - 1,
                                                    "paused": False, "pause_total_ns": 0})
    fixed, check = _check_start(segs, 300, anchors)
    assert check["start_shift_frames"] == 30 and check["applied"] is False
    assert fixed == segs and "frames missing" in anchors.warnings[0]
