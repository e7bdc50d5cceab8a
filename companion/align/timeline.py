"""Frame-exact timeline: pure functions from anchors and pts to capture times.

No I/O. Units: ns everywhere. ``mono`` is OBS's monotonic clock (os_gettime_ns),
``epoch`` is wall-clock ns since 1970 (time.time_ns()).

Model (docs/contracts/captions-and-sidecar.md): the recorded frame in grid slot
``p`` (``p = round(pts_ns / interval_ns)``; OBS's encoder pts is a frame counter,
so gaps in ``p`` are frames OBS left out) belongs to the last segment whose
``pts_base <= p`` and was captured at ``frame_ns + (p - pts_base) * interval_ns``.
Epoch time comes from a linear fit of the clock pairs:
``epoch = mono + off0 + a + b * (mono - m0)`` where ``off0`` is an exact integer
and ``a``, ``b`` are small floats (drift in ppm = ``b * 1e6``).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction
from typing import Sequence

import numpy as np

from ..contract.captions import ClockPair, SegmentAnchor


class TimelineError(ValueError):
    pass


@dataclass(frozen=True)
class ClockFit:
    """``epoch = mono + off0 + a + b * (mono - m0)`` fitted over clock pairs."""

    m0: int
    off0: int
    a: float
    b: float
    n: int
    residual_max_ns: float = 0.0
    residual_rms_ns: float = 0.0
    span_ns: int = 0
    residuals_ns: tuple = field(default=(), repr=False)

    @property
    def drift_ppm(self) -> float:
        return self.b * 1e6

    def epoch_of(self, mono) -> np.ndarray:
        m = np.asarray(mono, dtype=np.int64)
        corr = np.rint(self.a + self.b * (m - self.m0).astype(np.float64)).astype(np.int64)
        return m + np.int64(self.off0) + corr

    def mono_of(self, epoch) -> np.ndarray:
        e = np.asarray(epoch, dtype=np.int64)
        # invert: epoch - off0 = mono + a + b*(mono - m0)  =>  mono = (e' - a + b*m0)/(1+b)
        x = (e - np.int64(self.off0) - np.int64(self.m0)).astype(np.float64)
        return np.int64(self.m0) + np.rint((x - self.a) / (1.0 + self.b)).astype(np.int64)

    def summary(self) -> dict:
        return {"clock_pairs": self.n, "clock_drift_ppm": round(self.drift_ppm, 4),
                "clock_fit_residual_max_ns": round(self.residual_max_ns),
                "clock_fit_residual_rms_ns": round(self.residual_rms_ns),
                "clock_pairs_span_s": round(self.span_ns / 1e9, 3)}


def fit_clock(pairs: Sequence[ClockPair], min_span_for_drift_ns: int = 5_000_000_000) -> ClockFit:
    """Least-squares fit of ``epoch - mono`` against ``mono``.

    Drift is only fitted when the pairs span at least ``min_span_for_drift_ns``
    (default 5 s); shorter spans give a pure offset (drift 0) because a slope over a
    second or two of jittery pairs is noise, not drift.
    """
    if not pairs:
        raise TimelineError("no clock pairs")
    mono = np.array([p.mono_ns for p in pairs], dtype=np.int64)
    off = np.array([p.epoch_ns - p.mono_ns for p in pairs], dtype=np.int64)
    order = np.argsort(mono, kind="stable")
    mono, off = mono[order], off[order]
    m0 = int(mono[0])
    off0 = int(np.median(off))
    x = (mono - m0).astype(np.float64)
    y = (off - off0).astype(np.float64)
    span = int(mono[-1] - mono[0])
    if len(pairs) >= 3 and span >= min_span_for_drift_ns:
        b, a = np.polyfit(x, y, 1)
    else:
        b, a = 0.0, float(np.mean(y))
    res = y - (a + b * x)
    return ClockFit(m0=m0, off0=off0, a=float(a), b=float(b), n=len(pairs),
                    residual_max_ns=float(np.max(np.abs(res))),
                    residual_rms_ns=float(np.sqrt(np.mean(res ** 2))), span_ns=span,
                    residuals_ns=tuple(float(r) for r in res))


def grid_slots(pts: np.ndarray, time_base: Fraction, interval_ns: int) -> np.ndarray:
    """Frame-grid slot of each pts: ``round(pts * time_base / interval)`` in exact
    integer arithmetic (MKV stores ms, so 30 fps pts are 0, 33, 67, 100, ...)."""
    pts = np.asarray(pts, dtype=np.int64)
    num = int(time_base.numerator) * 1_000_000_000
    den = int(time_base.denominator) * int(interval_ns)
    # round half up of pts*num/den, all int64 (pts*num fits: pts < 2^40, num <= 1e9*1000)
    return (pts * num * 2 + den) // (2 * den)


def check_segments(segments: Sequence[SegmentAnchor]) -> list[SegmentAnchor]:
    """Sort, de-duplicate and sanity-check segment anchors."""
    uniq = {}
    for s in segments:
        prev = uniq.get(s.segment)
        if prev is not None and prev != s:
            raise TimelineError(f"conflicting anchors for segment {s.segment}: {prev} vs {s}")
        uniq[s.segment] = s
    segs = [uniq[k] for k in sorted(uniq)]
    if not segs:
        raise TimelineError("no segment anchors")
    if segs[0].segment != 0 or segs[0].pts_base != 0:
        raise TimelineError("segment 0 anchor missing")
    for prev, cur in zip(segs, segs[1:]):
        if cur.segment != prev.segment + 1:
            raise TimelineError(f"segment anchor {prev.segment + 1} missing")
        if cur.pts_base < prev.pts_base or cur.frame_ns <= prev.frame_ns:
            raise TimelineError(f"segment {cur.segment} anchor goes backwards")
        if cur.interval_ns != prev.interval_ns:
            raise TimelineError("frame interval changed between segments")
    return segs


def frame_mono_times(slots: np.ndarray, segments: Sequence[SegmentAnchor]) -> tuple[np.ndarray, np.ndarray]:
    """Capture time (OBS monotonic ns) and segment number of each frame slot."""
    segs = check_segments(segments)
    slots = np.asarray(slots, dtype=np.int64)
    bases = np.array([s.pts_base for s in segs], dtype=np.int64)
    idx = np.searchsorted(bases, slots, side="right") - 1
    if len(slots) and idx.min() < 0:
        raise TimelineError("frame before segment 0")
    starts = np.array([s.frame_ns for s in segs], dtype=np.int64)
    interval = np.int64(segs[0].interval_ns)
    mono = starts[idx] + (slots - bases[idx]) * interval
    return mono, idx.astype(np.int32)


def frame_ref(frame_t_ns: np.ndarray, t_ns: np.ndarray, frame_end_ns: int | None = None) -> np.ndarray:
    """Index of the frame on screen at each time: ``i`` with
    ``frame_t_ns[i] <= t < frame_t_ns[i+1]``; -1 before the first frame and after
    ``frame_end_ns`` (end of the last frame) when given."""
    ft = np.asarray(frame_t_ns, dtype=np.int64)
    t = np.asarray(t_ns, dtype=np.int64)
    ref = np.searchsorted(ft, t, side="right") - 1
    if frame_end_ns is not None:
        ref = np.where(t >= frame_end_ns, -1, ref)
    return ref.astype(np.int64)


def start_from_stop(frame0_ns: int, interval_ns: int, n_packets: int, stop_mono_ns: int,
                    paused_ns: int = 0) -> tuple[int, int]:
    """Where the recording really starts, pinned from its end: ``(shift, margin_ns)``.

    OBS's recording muxer keeps exactly the video packets whose system dts precede the
    stop time it reads right after the output's ``stopping`` signal; packet ``j`` (decode
    order) has system dts ``F0 + j * interval`` on the pause-compressed timeline. So with
    ``n_packets`` in the file, ``F0`` is the one frame-grid time in
    ``[T - n*interval, T - (n-1)*interval)`` with ``T = stop_mono_ns - paused_ns``.
    ``shift`` is ``(F0 - frame0_ns) // interval`` for the first-active-tick anchor
    ``frame0_ns`` (normally 0; 1 when OBS's encoder started a frame late). ``margin_ns``
    is how far ``T - n*interval`` lies below that grid time: the signal handler runs
    microseconds before OBS reads its clock, so a margin below that delay is in doubt.
    """
    if interval_ns <= 0 or n_packets <= 0:
        raise TimelineError("no packets or no interval")
    lo = stop_mono_ns - paused_ns - n_packets * interval_ns
    shift = -((frame0_ns - lo) // interval_ns)          # smallest k: frame0 + k*I >= lo
    margin = frame0_ns + shift * interval_ns - lo
    return int(shift), int(margin)
