"""Reading the frame-number marker painted by tests/obs_scripts/frame_marker.py."""
from __future__ import annotations

from pathlib import Path

import av
import numpy as np

LEVELS = np.array([0, 85, 170, 255])
MARKER_SCRIPT = Path(__file__).resolve().parent / "obs_scripts" / "frame_marker.py"


def _dec6(rgb) -> int:
    i = [int(np.argmin(np.abs(LEVELS - c))) for c in rgb]
    return (i[0] << 4) | (i[1] << 2) | i[2]


def decode_marker(frame_rgb: np.ndarray) -> int:
    """k mod 4096 from a frame showing Marker (left half) and Marker2 (right half)."""
    h, w, _ = frame_rgb.shape
    left = frame_rgb[h // 4:3 * h // 4, w // 8:3 * w // 8].reshape(-1, 3).mean(0)
    right = frame_rgb[h // 4:3 * h // 4, 5 * w // 8:7 * w // 8].reshape(-1, 3).mean(0)
    return (_dec6(left) << 6) | _dec6(right)


def video_markers(path) -> list[int]:
    """Marker value of every frame of a video, in presentation order."""
    with av.open(str(path)) as c:
        return [decode_marker(f.to_ndarray(format="rgb24")) for f in c.decode(c.streams.video[0])]


SKIPPED_SLOTS = 8
"""the most grid slots a lagging OBS is taken to repeat one picture over"""


def check_markers(shown: list[int], expected: list[int]) -> dict:
    """Compare markers shown with markers expected from recovered frame times.

    A frame is *exact* when it shows its expected value. When OBS lags it repeats the
    last rendered picture in the next grid slot (the slot's time is still right, the
    picture is stale): such a frame shows the previous frame's value or, when the slots
    just before it are not in the file, the value of one of those slots. Slots are
    missing before the first frame, where OBS skipped slots while lagging, and before
    the first frame after a pause (OBS renders on while paused; a lag at the resume
    repeats the picture rendered for a paused slot); a picture from those slots is at
    most ``SKIPPED_SLOTS`` slots old (a repeat of the previous frame's, or the first
    frame's, at most 63). Anything else (a different
    value, a picture from the future, a whole segment off) is a misalignment.
    """
    exact = stale = 0
    wrong = []
    for i, (s, e) in enumerate(zip(shown, expected)):
        age = (e - s) % 4096
        if s == e:
            exact += 1
        elif 0 < age < 64 and (i == 0 or s == shown[i - 1]):
            stale += 1
        elif 0 < age <= SKIPPED_SLOTS and (
                0 < (s - expected[i - 1]) % 4096 < (e - expected[i - 1]) % 4096):
            stale += 1
        else:
            wrong.append((i, s, e))
    return {"exact": exact, "stale": stale, "wrong": wrong}
