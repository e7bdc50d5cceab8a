"""Pure: what the marker checker (tests/marker.py) counts as exact, stale and wrong.
The real-OBS exactness tests rest on it, so its tolerance for OBS's lag is pinned here."""
from __future__ import annotations

from tests.marker import SKIPPED_SLOTS, check_markers


def _seq(start, n):
    return [(start + k) % 4096 for k in range(n)]


def test_exact_and_lag_repeats():
    exp = _seq(4090, 12)                        # wraps past 4095
    assert check_markers(exp, exp) == {"exact": 12, "stale": 0, "wrong": []}
    shown = list(exp)
    shown[3] = shown[4] = shown[2]              # OBS lagged: the picture repeated twice
    assert check_markers(shown, exp) == {"exact": 10, "stale": 2, "wrong": []}
    shown = [(exp[0] - 5) % 4096] + exp[1:]     # the first frame's older picture
    assert check_markers(shown, exp)["stale"] == 1


def test_pictures_from_slots_not_in_the_file():
    # slots 105..107 skipped while lagging: the next frame may show one of them
    exp = [100, 101, 102, 103, 104, 108, 109]
    shown = [100, 101, 102, 103, 104, 106, 109]
    assert check_markers(shown, exp) == {"exact": 6, "stale": 1, "wrong": []}
    # a pause (slots 105..199 paused): a lag at the resume shows a paused slot's picture
    exp = [100, 101, 102, 103, 104, 200, 201]
    shown = [100, 101, 102, 103, 104, 199, 201]
    assert check_markers(shown, exp) == {"exact": 6, "stale": 1, "wrong": []}
    # ... but not one from long before the resume, nor a picture of a slot in the file
    shown = [100, 101, 102, 103, 104, 200 - SKIPPED_SLOTS - 1, 201]
    assert check_markers(shown, exp)["wrong"] == [(5, 200 - SKIPPED_SLOTS - 1, 200)]
    shown = [100, 101, 102, 103, 104, 103, 201]
    assert check_markers(shown, exp)["wrong"] == [(5, 103, 200)]


def test_misalignment_is_wrong():
    exp = _seq(200, 10)
    future = list(exp)
    future[4] = exp[5]                          # a picture from the future
    assert check_markers(future, exp)["wrong"] == [(4, exp[5], exp[4])]
    # a segment placed one frame late after a pause: every frame of it is wrong, but
    # its first (one slot older than its time says, as a lag at the resume would be)
    exp = [100, 101, 102, 103] + _seq(201, 6)
    shown = [100, 101, 102, 103] + _seq(200, 6)
    res = check_markers(shown, exp)
    assert res["stale"] == 1 and [w[0] for w in res["wrong"]] == [5, 6, 7, 8, 9]
    # a whole recording off by one: all wrong but the first frame
    exp = _seq(10, 8)
    res = check_markers(_seq(9, 8), exp)
    assert [w[0] for w in res["wrong"]] == list(range(1, 8))
