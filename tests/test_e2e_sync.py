"""End-to-end sync against what the video shows, on a real OBS capture.

OBS captures the X display the input goes to (xshm_input with the cursor drawn), so
each xdotool cursor jump is both logged by the companion and visible in the video.
The first frame that shows the cursor at its new position must follow from the
event's frame_ref: normally frame_ref itself (the slot's picture was taken just after
the slot time) or frame_ref + 1. OBS takes a slot's picture when it processes the slot:
a lagged slot repeats the previous picture (later by up to the lagged count), and a slot
processed late but not counted as lagged shows a picture up to one frame newer than its
slot time (frame_ref - 1). Most jumps must land on frame_ref or frame_ref + 1, and few on
frame_ref - 1, so frame times off by one frame either way fail. A naive caption-time
alignment is off by ~15 frames and fails this.
"""
from __future__ import annotations

import json

import av
import numpy as np
import pyarrow.parquet as pq
import pytest

from tests.conftest import CURSOR_TARGETS

pytestmark = pytest.mark.obs


def cursor_centroid(rgb: np.ndarray):
    """Centroid of non-black pixels (the captured display is a black root window with
    only the cursor on it), or None."""
    mask = rgb.max(axis=2) > 60
    ys, xs = np.nonzero(mask)
    if len(xs) < 5:
        return None
    return float(xs.mean()), float(ys.mean())


def test_cursor_jumps_appear_in_the_frame_frame_ref_predicts(obs_aligned):
    session = obs_aligned["session"]
    frames = pq.read_table(session / "frames.parquet")
    events = pq.read_table(session / "events.parquet").to_pylist()
    meta = json.loads((session / "metadata.json").read_text())
    assert meta["alignment"]["anchor_source"] == "captions+sidecar"

    with av.open(str(session / "obs_demo.mkv")) as c:
        cents = [cursor_centroid(f.to_ndarray(format="rgb24")) for f in c.decode(c.streams.video[0])]
    assert len(cents) == frames.num_rows

    lagged = int(meta.get("lagged_frames") or 0)
    checked = 0
    offsets = []
    for ev in events:
        if ev["event_type"] != "mouse_move":
            continue
        pos = (ev["mouse_x_px"], ev["mouse_y_px"])
        if pos not in [tuple(map(float, t)) for t in CURSOR_TARGETS]:
            continue
        ref = ev["frame_ref"]
        assert ref is not None and ref >= 0
        # the frame before frame_ref must not show the cursor at the new position yet
        def at_target(i):
            c = cents[i]
            return c is not None and abs(c[0] - pos[0]) < 25 and abs(c[1] - pos[1]) < 25
        first = next(i for i in range(max(0, ref - 30), len(cents)) if i >= ref - 30 and at_target(i)
                     and (i == 0 or not at_target(i - 1)))
        assert first in range(ref - 1, ref + 2 + lagged), (pos, ref, first)
        offsets.append(first - ref)
        checked += 1
    assert checked >= 12, checked
    on_time = sum(1 for o in offsets if o in (0, 1))
    assert on_time >= 0.75 * checked, offsets
    # A frame's picture is taken at or after its slot time, so a change can show one frame
    # *before* frame_ref only when OBS processed that slot late. Frame times one frame too
    # early move every frame_ref one later and make that common (a real run: 13 x +1,
    # 3 x 0, never -1: it would read 13 x 0, 3 x -1); one frame too late leaves most jumps
    # at +2 (caught by on_time above).
    early = sum(1 for o in offsets if o < 0)
    assert early <= max(1, checked // 10), offsets
