"""actions.py: per-chunk actions_raw / actions_processed from an events table (pure).

These feed whole tables (``process_table``); tests/test_actions_stream.py checks that any
split into batches gives the same output."""
from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pytest

from companion.contract.schemas import ACTIONS_PROCESSED_SCHEMA, ACTIONS_RAW_SCHEMA
from companion.dataset.actions import (DEBOUNCE_NS, OUT_OF_FRAME_CONFIDENCE,
                                       SYNTHETIC_CONFIDENCE, ActionsProcessor, process_table)
from companion.util.errors import BadInput
from tests.test_dataset_media import events_table

T0 = 1_700_000_000_000_000_000
IV = 33_333_333          # 30 fps frame interval, ns
N = 90                   # 3 chunks of 30 frames
FT = T0 + np.arange(N, dtype=np.int64) * IV
END = int(FT[-1]) + IV
W, H = 1920, 1080
MS = 1_000_000


def key(t, down, vk=65, code="KeyA", name="a"):
    return dict(t_ns=t, event_type="key_down" if down else "key_up", source="keyboard",
                state="pressed" if down else "released", key_code=vk, key=name, code=code)


def move(t, x, y, **kw):
    return dict(t_ns=t, event_type="mouse_move", source="mouse", mouse_x_px=x, mouse_y_px=y,
                mouse_x_norm=x / W, mouse_y_norm=y / H, **kw)


def click(t, down, button="left", idx=0, x=10.0, y=20.0):
    return dict(t_ns=t, event_type="mouse_click", source="mouse", mouse_button=button,
                button_index=idx, state="pressed" if down else "released",
                mouse_x_px=x, mouse_y_px=y, mouse_x_norm=x / W, mouse_y_norm=y / H)


CHUNKS = [(0, 30), (30, 60), (60, 90)]


def chunks(rows):
    out = []
    for c, ch in enumerate(process_table(events_table(rows, FT), FT, CHUNKS, W, H, END)):
        raw, proc, st = ch.raw, ch.processed, ch.stats
        assert ch.index == c
        assert raw.schema.equals(ACTIONS_RAW_SCHEMA, check_metadata=False)
        assert proc.schema.equals(ACTIONS_PROCESSED_SCHEMA, check_metadata=False)
        out.append((raw.to_pylist(), proc.to_pylist(), st))
    return out


def test_a_move_back_after_a_click_elsewhere_is_kept():
    """A move is dropped as repeated only when the pointer is already there: after a
    click (or wheel) at another position, a move back to the earlier position is a real
    move and the last known position is the move's, not the click's."""
    t = int(FT[2])
    rows = [move(t, 100, 100), click(t + MS, True, x=300.0, y=200.0),
            click(t + 2 * MS, False, x=300.0, y=200.0), move(t + 3 * MS, 100, 100),
            move(t + 4 * MS, 100, 100),                     # now a repeat
            move(t + 5 * MS, 300, 200)]                     # a real move back again
    (_, proc, st), (_, proc1, _), _ = chunks(rows)
    assert [(r["event_type"], r["mouse_x"]) for r in proc] == [
        ("mousemove", 100.0), ("mousedown", 300.0), ("mouseup", 300.0), ("mousemove", 100.0),
        ("mousemove", 300.0)]
    assert st["dropped_repeated_move"] == 1
    held = [r for r in proc1 if r["state"] == "held" and r["event_type"] == "mousemove"]
    assert [(r["mouse_x"], r["mouse_y"]) for r in held] == [(300.0, 200.0)]


def test_raw_rows_relative_time_frame_and_vocab():
    t = int(FT[31]) + 5 * MS + 123  # 5.000123 ms after frame 31 (chunk 1, frame 1)
    rows = [key(t, True), key(t + 20 * MS, False), click(int(FT[40]), True, "right", 2),
            click(int(FT[40]) + 1, False, "right", 2),
            dict(t_ns=int(FT[50]), event_type="wheel", source="mouse", wheel_dy=-2.0,
                 wheel_dx=0.5, mouse_x_px=5.0, mouse_y_px=6.0),
            dict(t_ns=int(FT[55]), event_type="focus", source="window", window_id="0x42")]
    (r0, _, _), (r1, _, _), (r2, _, _) = chunks(rows)
    assert r0 == [] and r2 == []
    a = r1[0]
    assert a["timestamp_ms"] == (t - int(FT[30])) // MS == 38
    assert a["frame_idx"] == 1 and a["frame_ref"] == 31 and a["t_ns"] == t
    assert [r["event_type"] for r in r1] == ["keydown", "keyup", "mousedown", "mouseup",
                                             "wheel", "focus"]
    assert [r["state"] for r in r1[:4]] == ["pressed", "released", "pressed", "released"]
    assert r1[2]["mouse_button"] == 2 and r1[2]["mouse_x"] == 10.0
    assert r1[4]["mouse_wheel"] == -2.0
    assert json.loads(r1[4]["meta"]) == {"wheel_dx": 0.5}
    assert json.loads(r1[0]["meta"]) == {"vk": 65}
    assert json.loads(r1[5]["meta"]) == {"window_id": "0x42"}


def test_chunk_membership_follows_frame_times():
    rows = [move(int(FT[29]) + IV - 1, 1, 1),   # last ns of frame 29 -> chunk 0
            move(int(FT[30]), 2, 2),            # first ns of frame 30 -> chunk 1
            move(int(FT[0]) - 1, 3, 3),         # before the video -> nowhere
            move(END - 1, 4, 4), move(END, 5, 5)]  # last ns of the video / after it
    (r0, _, _), (r1, _, _), (r2, _, _) = chunks(rows)
    assert [r["mouse_x"] for r in r0] == [1.0]
    assert [r["mouse_x"] for r in r1] == [2.0] and r1[0]["timestamp_ms"] == 0
    assert [r["mouse_x"] for r in r2] == [4.0] and r2[0]["frame_idx"] == 29


def test_duplicates_repeated_moves_and_autorepeat_are_dropped():
    t = int(FT[2])
    rows = [move(t, 100, 100, hash="A"), move(t, 100, 100, hash="A"),   # exact duplicate
            move(t + MS, 100, 100), move(t + 2 * MS, 101, 100),           # repeat, then new
            key(t + 3 * MS, True), key(t + 40 * MS, True), key(t + 70 * MS, True),  # auto-repeat
            key(t + 90 * MS, False)]
    (raw, proc, st), _, _ = chunks(rows)
    assert len(raw) == 8
    assert [(r["event_type"], r["mouse_x"]) for r in proc] == [
        ("mousemove", 100.0), ("mousemove", 101.0), ("keydown", None), ("keyup", None)]
    assert st["dropped_duplicate"] == 1 and st["dropped_repeated_move"] == 1
    assert st["dropped_auto_repeat"] == 2
    assert all(r["is_valid"] and r["confidence"] == 1.0 for r in proc)


def test_bounce_and_x11_autorepeat_pairs_collapse_to_one_hold():
    t = int(FT[3])
    rows = [key(t, True), key(t + 30 * MS, False), key(t + 30 * MS, True),   # X11 pair
            key(t + 60 * MS, False), key(t + 60 * MS + DEBOUNCE_NS, True),   # bounce
            key(t + 200 * MS, False),
            key(t + 300 * MS, True), key(t + 400 * MS, False),               # a real re-press
            ]
    (_, proc, st), _, _ = chunks(rows)
    assert [(r["event_type"], r["t_ns"] - t) for r in proc] == [
        ("keydown", 0), ("keyup", 200 * MS), ("keydown", 300 * MS), ("keyup", 400 * MS)]
    assert st["dropped_bounce"] == 4


def test_orphan_release_is_flagged_not_dropped():
    rows = [key(int(FT[5]), False)]
    (raw, proc, st), _, _ = chunks(rows)
    assert len(proc) == 1 and proc[0]["is_valid"] is False and proc[0]["confidence"] == 0.0
    assert "release without a press" in proc[0]["notes"]
    assert st["orphan_releases"] == 1


def test_key_state_carries_across_chunks_and_synthetic_release_at_end():
    rows = [key(int(FT[10]), True),                                  # held chunk 0 -> 1
            key(int(FT[35]), False),
            key(int(FT[50]), True, vk=16, code="ShiftLeft", name="Shift"),  # never released
            click(int(FT[20]), True), click(int(FT[70]), False)]      # button held 0 -> 2
    (_, p0, _), (_, p1, s1), (_, p2, s2) = chunks(rows)
    assert [(r["event_type"], r["state"]) for r in p0] == [("keydown", "pressed"),
                                                           ("mousedown", "pressed")]
    assert [(r["event_type"], r["state"], r["timestamp_ms"], r["frame_idx"]) for r in p1[:2]] == [
        ("keydown", "held", 0, 0), ("mousedown", "held", 0, 0)]
    assert p1[0]["code"] == "KeyA" and p1[1]["mouse_button"] == 0
    assert p1[0]["mouse_x"] is None and "pressed at t_ns" in p1[0]["notes"]
    assert s1["held_at_start"] == 2
    # chunk 2: Shift and the mouse button are held at its start; Shift never released
    assert [(r["code"] or r["event_type"], r["state"]) for r in p2[:2]] == [
        ("mousedown", "held"), ("ShiftLeft", "held")]
    last = p2[-1]
    assert (last["event_type"], last["state"], last["code"]) == ("keyup", "released", "ShiftLeft")
    assert last["confidence"] == SYNTHETIC_CONFIDENCE and last["is_valid"]
    assert last["frame_idx"] == 29 and last["t_ns"] == int(FT[89])
    assert s2["synthetic_releases"] == 1
    # the raw tables never contain synthetic or held rows
    assert all(r["state"] != "held" for c in chunks(rows) for r in c[0])


def test_key_pressed_before_first_frame_is_held_in_chunk_0():
    rows = [key(int(FT[0]) - 10 * MS, True), key(int(FT[3]), False)]
    (raw, proc, _), _, _ = chunks(rows)
    assert len(raw) == 1
    assert [(r["event_type"], r["state"], r["is_valid"]) for r in proc] == [
        ("keydown", "held", True), ("keyup", "released", True)]


def test_out_of_frame_coordinates_are_clamped_and_flagged():
    rows = [move(int(FT[1]), -50, 500), move(int(FT[2]), 2500, 2000), move(int(FT[3]), 960, 540)]
    (raw, proc, st), _, _ = chunks(rows)
    assert raw[0]["mouse_x_norm"] == pytest.approx(-50 / W)   # raw keeps what was logged
    assert [(r["mouse_x_norm"], r["mouse_y_norm"]) for r in proc[:2]] == [
        (0.0, pytest.approx(500 / H)), (1.0, 1.0)]
    assert [r["confidence"] for r in proc] == [OUT_OF_FRAME_CONFIDENCE] * 2 + [1.0]
    assert all(r["is_valid"] for r in proc) and "clamped" in proc[0]["notes"]
    assert st["out_of_frame"] == 2


def test_norm_computed_from_pixels_when_missing_and_nan_invalid():
    rows = [dict(t_ns=int(FT[1]), event_type="mouse_move", source="mouse",
                 mouse_x_px=480.0, mouse_y_px=270.0),
            dict(t_ns=int(FT[2]), event_type="mouse_move", source="mouse",
                 mouse_x_px=float("nan"), mouse_y_px=1.0)]
    (_, proc, _), _, _ = chunks(rows)
    assert proc[0]["mouse_x_norm"] == 0.25 and proc[0]["mouse_y_norm"] == 0.25
    assert proc[1]["is_valid"] is False and "non-finite" in proc[1]["notes"]


def test_unsorted_events_and_no_events():
    rows = [move(int(FT[5]), 2, 2), move(int(FT[1]), 1, 1)]
    (raw, _, _), _, _ = chunks(rows)
    assert [r["mouse_x"] for r in raw] == [1.0, 2.0]
    out = process_table(None, FT, CHUNKS, W, H, END)
    assert [(c.raw.num_rows, c.processed.num_rows, c.stats["events"]) for c in out] == \
        [(0, 0, 0)] * 3


def test_bad_inputs_are_one_line_errors():
    with pytest.raises(BadInput, match="lacks columns"):
        process_table(pa.table({"t_ns": [1]}), FT, CHUNKS, W, H, END)
    with pytest.raises(BadInput, match="lacks columns"):
        ActionsProcessor(FT, CHUNKS, W, H, END).feed(pa.table({"t_ns": [1]}))
    with pytest.raises(BadInput, match="video size"):
        ActionsProcessor(FT, CHUNKS, 0, H, END)
    with pytest.raises(BadInput, match="non-decreasing"):
        ActionsProcessor(FT[::-1], CHUNKS, W, H, END)


def test_many_events_are_processed_column_wise_fast():
    """600k mouse moves (1000 Hz for 10 min): all chunks well under the time the video
    cut takes (here: under 5 s even on a loaded 2-core box)."""
    import time
    n = 600_000
    t = T0 + np.arange(n, dtype=np.int64) * 1_000_000
    frames = T0 + np.arange(36_000, dtype=np.int64) * 16_666_667
    x = (np.arange(n) % 1900).astype(np.float32)
    tbl = pa.table({"t_ns": t, "event_type": pa.array(["mouse_move"] * n),
                    "session_id": pa.array(["s"] * n), "source": pa.array(["mouse"] * n),
                    "hash": pa.array(np.arange(n).astype(str)),
                    "mouse_x_px": x, "mouse_y_px": x, "window_id": pa.array(["w1"] * n)})
    from companion.contract.schemas import EVENTS_SCHEMA
    for f in EVENTS_SCHEMA:
        if f.name not in tbl.column_names:
            tbl = tbl.append_column(f.name, pa.nulls(n, f.type))
    t0 = time.perf_counter()
    out = process_table(tbl, frames, [(c * 1200, (c + 1) * 1200) for c in range(30)], W, H,
                        int(frames[-1]) + 16_666_667)
    total = sum(c.raw.num_rows for c in out)
    dt = time.perf_counter() - t0
    assert total == n
    assert dt < 5.0, dt


def test_events_during_a_pause_belong_to_the_last_frame_before_it():
    """Frames 0-29 then a 10 s pause (capture time jumps) then frames 30-89: an event in
    the pause is on the screen of frame 29 (the design's frame_ref rule)."""
    ft = FT.copy()
    ft[30:] += 10_000_000_000
    end = int(ft[-1]) + IV
    t_pause = int(ft[29]) + 5_000_000_000
    out = process_table(events_table([move(t_pause, 7, 7), move(int(ft[30]), 8, 8)], ft),
                        ft, [(0, 30), (30, 60)], W, H, end)
    raw0, raw1 = out[0].raw, out[1].raw
    assert raw0.column("frame_idx").to_pylist() == [29]
    assert raw0.column("timestamp_ms").to_pylist() == [(t_pause - int(ft[0])) // MS]
    assert raw1.column("frame_idx").to_pylist() == [0]


# --- carried state: the last known mouse position and the focused window (format 1.1.0) --

def held(proc, kind):
    return [r for r in proc if r["state"] == "held" and r["event_type"] == kind]


def focus(t, wid, title):
    return dict(t_ns=t, event_type="focus", source="window", window_id=wid,
                metadata=[("title", title)])


def test_position_carried_across_one_and_several_chunks():
    """A move in chunk 0, then only keys: chunks 1 and 2 start with a held mousemove at
    that position (pixels and normalized), which is not in actions_raw."""
    rows = [move(int(FT[3]), 100, 200), move(int(FT[5]), 960, 540), key(int(FT[40]), True),
            key(int(FT[41]), False), key(int(FT[70]), True), key(int(FT[71]), False)]
    (r0, p0, s0), (r1, p1, s1), (r2, p2, s2) = chunks(rows)
    assert held(p0, "mousemove") == [] and s0["held_mouse_position"] == 0
    for c, (raw, proc, st) in ((1, (r1, p1, s1)), (2, (r2, p2, s2))):
        (h,) = held(proc, "mousemove")
        assert proc.index(h) == 0
        assert (h["mouse_x"], h["mouse_y"]) == (960.0, 540.0)
        assert (h["mouse_x_norm"], h["mouse_y_norm"]) == (0.5, 0.5)
        assert (h["timestamp_ms"], h["frame_idx"], h["t_ns"], h["frame_ref"]) == (
            0, 0, int(FT[30 * c]), 30 * c)
        assert h["is_valid"] and h["confidence"] == 1.0 and h["source"] == "mouse"
        assert h["notes"] == ("mouse position held since before the chunk start "
                              f"(last seen at t_ns {int(FT[5])})")
        assert h["key"] is None and h["mouse_button"] is None and h["mouse_wheel"] is None
        assert all(r["state"] != "held" for r in raw)
        assert st["held_mouse_position"] == 1 and st["held_at_start"] == 0
        assert st["processed_rows"] == len(proc) == len(raw) + 1
    # a newer position in chunk 1 (a click) replaces it for chunk 2
    rows.append(click(int(FT[45]), True, x=30.0, y=40.0))
    _, _, (_, p2, _) = chunks(rows)
    (h,) = held(p2, "mousemove")
    assert (h["mouse_x"], h["mouse_y"], h["t_ns"]) == (30.0, 40.0, int(FT[60]))


def test_no_position_before_the_first_move():
    rows = [key(int(FT[10]), True), key(int(FT[50]), False), move(int(FT[65]), 5, 5)]
    (_, p0, _), (_, p1, s1), (_, p2, _) = chunks(rows)
    assert held(p0, "mousemove") == held(p1, "mousemove") == held(p2, "mousemove") == []
    assert held(p1, "focus") == [] and s1["held_mouse_position"] == s1["held_focus"] == 0
    assert [r["event_type"] for r in p1 if r["state"] == "held"] == ["keydown"]


def test_invalid_last_move_carries_the_previous_valid_one():
    """Non-finite moves do not count; an out-of-frame (clamped) one does, with its
    confidence and the out-of-frame note; an orphan release (invalid) does not count."""
    rows = [move(int(FT[4]), 100, 100),
            dict(t_ns=int(FT[20]), event_type="mouse_move", source="mouse",
                 mouse_x_px=float("nan"), mouse_y_px=3.0),
            click(int(FT[25]), False, x=7.0, y=7.0),                   # release, no press
            move(int(FT[40]), 2500, -10),                              # outside the frame
            dict(t_ns=int(FT[50]), event_type="mouse_move", source="mouse",
                 mouse_x_px=float("inf"), mouse_y_px=3.0, mouse_x_norm=float("inf"),
                 mouse_y_norm=0.1)]
    (_, p0, _), (_, p1, _), (_, p2, _) = chunks(rows)
    assert p0[1]["is_valid"] is False and p0[2]["is_valid"] is False
    (h1,) = held(p1, "mousemove")
    assert (h1["mouse_x"], h1["mouse_y"], h1["confidence"]) == (100.0, 100.0, 1.0)
    (h2,) = held(p2, "mousemove")
    assert (h2["mouse_x"], h2["mouse_y"]) == (2500.0, -10.0)         # pixels as logged
    assert (h2["mouse_x_norm"], h2["mouse_y_norm"]) == (1.0, 0.0)    # clamped
    assert h2["confidence"] == OUT_OF_FRAME_CONFIDENCE and h2["is_valid"]
    assert h2["notes"].endswith("; mouse outside the video frame; normalized coordinates "
                                "clamped")
    assert f"last seen at t_ns {int(FT[40])}" in h2["notes"]


def test_focus_carried_and_order_of_held_rows():
    """Held rows: keys/buttons in press order, then the position, then the focus."""
    rows = [focus(int(FT[2]), "0x1", "Editor"), key(int(FT[3]), True), move(int(FT[4]), 10, 10),
            click(int(FT[5]), True), focus(int(FT[50]), "0x2", "Game")]
    (_, p0, _), (_, p1, s1), (_, p2, _) = chunks(rows)
    assert held(p0, "focus") == []
    kinds = [(r["event_type"], r["state"]) for r in p1]
    assert kinds == [("keydown", "held"), ("mousedown", "held"), ("mousemove", "held"),
                     ("focus", "held"), ("focus", None)]
    f1 = p1[3]
    assert json.loads(f1["meta"]) == {"window_id": "0x1", "title": "Editor"}
    assert f1["source"] == "window" and f1["is_valid"] and f1["confidence"] == 1.0
    assert f1["notes"] == f"focus held since before the chunk start (focused at t_ns {int(FT[2])})"
    assert f1["mouse_x"] is None and f1["t_ns"] == int(FT[30]) and f1["frame_idx"] == 0
    assert s1["held_focus"] == 1 and s1["held_at_start"] == 2
    (f2,) = held(p2, "focus")
    assert json.loads(f2["meta"]) == {"window_id": "0x2", "title": "Game"}
    assert [r["event_type"] for r in p2[:4]] == ["keydown", "mousedown", "mousemove", "focus"]


def test_chunk_0_gets_carried_state_only_from_events_before_the_first_frame():
    inside = [move(int(FT[0]), 1, 1), focus(int(FT[0]), "0x1", "A")]   # at frame 0: not before
    (_, p0, s0), _, _ = chunks(inside)
    assert [r["state"] for r in p0] == [None, None]
    assert s0["held_mouse_position"] == s0["held_focus"] == 0
    before = [focus(int(FT[0]) - 30 * MS, "0x1", "A"), move(int(FT[0]) - 20 * MS, 8, 9),
              key(int(FT[0]) - 10 * MS, True)]
    (raw, p0, s0), (_, p1, _), _ = chunks(before)
    assert raw == []                              # the events themselves are in no chunk
    assert [(r["event_type"], r["state"]) for r in p0] == [
        ("keydown", "held"), ("mousemove", "held"), ("focus", "held")]
    assert (p0[1]["mouse_x"], p0[1]["mouse_y"], p0[1]["t_ns"]) == (8.0, 9.0, int(FT[0]))
    assert [r["event_type"] for r in p1] == ["keydown", "mousemove", "focus"]
    assert s0["held_mouse_position"] == s0["held_focus"] == 1
