"""The loader on datasets written by companion.dataset.writer (B-frames, held keys across
chunks), checked against the session's events.parquet rows directly."""
from __future__ import annotations

import math
import random

import numpy as np
import pytest

from companion.dataset.writer import write_dataset
from companion.load import open_dataset
from tests.test_dataset_media import events_table, frames_table, make_video, read_frame_number, scan

MS = 1_000_000


def session_rows(ft: np.ndarray) -> list[dict]:
    t = lambda f, frac=0.5: int(ft[f] + frac * (ft[1] - ft[0]))   # noqa: E731
    kb = dict(source="keyboard")
    return [
        dict(t_ns=int(ft[0]) - 50 * MS, event_type="key_down", state="pressed", key_code=65,
             key="a", code="KeyA", **kb),                                   # before frame 0
        dict(t_ns=int(ft[0]) - 40 * MS, event_type="focus", source="window", window_id="0x9",
             metadata=[("title", "Editor")]),
        dict(t_ns=int(ft[0]) - 30 * MS, event_type="mouse_move", source="mouse", mouse_x_px=5.0,
             mouse_y_px=6.0, mouse_x_norm=0.05, mouse_y_norm=0.06),          # before frame 0
        dict(t_ns=t(3, 0.2), event_type="mouse_move", source="mouse", mouse_x_px=10.0,
             mouse_y_px=20.0, mouse_x_norm=0.1, mouse_y_norm=0.2),
        dict(t_ns=t(3, 0.7), event_type="mouse_move", source="mouse", mouse_x_px=15.0,
             mouse_y_px=22.0, mouse_x_norm=0.15, mouse_y_norm=0.22),
        dict(t_ns=t(5), event_type="key_down", state="pressed", key_code=87, key="w",
             code="KeyW", **kb),
        dict(t_ns=t(12), event_type="mouse_click", source="mouse", mouse_button="left",
             button_index=0, state="pressed", mouse_x_px=15.0, mouse_y_px=22.0,
             mouse_x_norm=0.15, mouse_y_norm=0.22),
        dict(t_ns=t(20, 0.1), event_type="wheel", source="mouse", delta=1.0, wheel_dy=1.0),
        dict(t_ns=t(20, 0.6), event_type="wheel", source="mouse", delta=2.0, wheel_dy=2.0),
        dict(t_ns=t(20, 0.8), event_type="wheel", source="mouse", delta=0.0, wheel_dy=0.0,
             wheel_dx=-2.0),                                   # horizontal (tilt left)
        dict(t_ns=t(22), event_type="wheel", source="mouse", delta=1.0, wheel_dy=1.0,
             wheel_dx=3.0),                                    # both axes in one row
        dict(t_ns=t(31), event_type="mouse_move", source="mouse", mouse_x_px=40.0,
             mouse_y_px=30.0, mouse_x_norm=0.4, mouse_y_norm=0.3),
        dict(t_ns=t(33), event_type="mouse_click", source="mouse", mouse_button="left",
             button_index=0, state="released", mouse_x_px=40.0, mouse_y_px=30.0,
             mouse_x_norm=0.4, mouse_y_norm=0.3),
        dict(t_ns=t(40), event_type="key_up", state="released", key_code=87, key="w",
             code="KeyW", **kb),
        dict(t_ns=t(45), event_type="focus", source="window", window_id="0x2",
             metadata=[("title", "Game")]),
        dict(t_ns=t(50, 0.2), event_type="mouse_click", source="mouse", mouse_button="right",
             button_index=2, state="pressed", mouse_x_px=40.0, mouse_y_px=30.0,
             mouse_x_norm=0.4, mouse_y_norm=0.3),
        dict(t_ns=t(50, 0.6), event_type="mouse_click", source="mouse", mouse_button="right",
             button_index=2, state="released", mouse_x_px=40.0, mouse_y_px=30.0,
             mouse_x_norm=0.4, mouse_y_norm=0.3),
        dict(t_ns=t(59, 0.9), event_type="mouse_move", source="mouse", mouse_x_px=50.0,
             mouse_y_px=31.0, mouse_x_norm=0.45, mouse_y_norm=0.31),       # just before a cut
        dict(t_ns=t(61), event_type="mouse_move", source="mouse", mouse_x_px=64.0,
             mouse_y_px=32.0, mouse_x_norm=0.5, mouse_y_norm=0.5),
        dict(t_ns=t(70), event_type="wheel", source="mouse", delta=-1.0, wheel_dy=-1.0),
        dict(t_ns=t(80), event_type="key_up", state="released", key_code=65, key="a",
             code="KeyA", **kb),
        dict(t_ns=t(85), event_type="mouse_move", source="mouse", mouse_x_px=float("nan"),
             mouse_y_px=1.0),                                   # invalid: not a position
    ]


def oracle(events, f: int) -> dict:
    """State at frame f from the session's events.parquet rows, the obvious way. The
    dataset keeps events from frame 0 on, plus the state from before it: keys/buttons
    held, the last valid mouse position and the focus (carried, not a movement)."""
    rows = sorted(events.to_pylist(), key=lambda r: r["t_ns"])
    # a null frame_ref means before frame 0, or (after rows with one) after the last frame
    seen = [i for i, r in enumerate(rows) if r["frame_ref"] is not None and r["frame_ref"] >= 0]
    if seen:
        rows = rows[:seen[-1] + 1]
    keys, buttons, focus, pos, prev, wheel, wheel_dx = set(), set(), None, None, None, 0.0, 0.0
    for r in rows:
        fr = -1 if r["frame_ref"] is None else r["frame_ref"]
        if fr >= f:
            break
        e = r["event_type"]
        if e == "key_down":
            keys.add(r["key_code"])
        elif e == "key_up":
            keys.discard(r["key_code"])
        elif e == "mouse_click":
            (buttons.add if r["state"] == "pressed" else buttons.discard)(r["button_index"])
        if e == "focus":
            focus = dict(r["metadata"])["title"]
        located = r["mouse_x_px"] is not None and math.isfinite(r["mouse_x_px"])
        if fr < 0:                      # only state survives from before frame 0
            if located:
                pos = prev = (r["mouse_x_px"], r["mouse_y_px"])
            continue
        if e == "wheel" and fr == f - 1:
            wheel += r["wheel_dy"]
            wheel_dx += r.get("wheel_dx") or 0.0
        if located:
            if fr < f - 1:
                prev = (r["mouse_x_px"], r["mouse_y_px"])
            pos = (r["mouse_x_px"], r["mouse_y_px"])
    delta = (0.0, 0.0) if prev is None or pos is None else (pos[0] - prev[0], pos[1] - prev[1])
    return dict(keys=keys, buttons=buttons, focus=focus, pos=pos, delta=delta, wheel=wheel,
                wheel_dx=wheel_dx)


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    d = tmp_path_factory.mktemp("wr")
    src = d / "rec.mkv"
    make_video(src, 95, gop=10, bframes=3)
    sc = scan(src)
    frames = frames_table(sc)
    events = events_table(session_rows(frames.column("t_ns").to_numpy()),
                          frames.column("t_ns").to_numpy(), session_id="rec")
    write_dataset(d / "root", "rec", sc, frames, events, {"session_id": "rec"}, chunk_seconds=1.0)
    return d / "root", events


def test_frames_exact_and_random_equals_sequential(written):
    root, _ = written
    ds = open_dataset(root)
    assert [(c.start_frame, c.end_frame) for c in ds.chunks("rec")] == \
        [(0, 30), (30, 60), (60, 90), (90, 95)]
    seq = {}
    for s in ds.iter_frames():
        assert read_frame_number(s.image) == s.frame
        seq[s.frame] = s.image
    assert sorted(seq) == list(range(95))
    ds2 = open_dataset(root, cache_size=1)
    order = list(range(95))
    random.Random(5).shuffle(order)
    for f in order:
        assert np.array_equal(ds2.get("rec", f).image, seq[f]), f


@pytest.mark.parametrize("f", range(95))
def test_action_state_matches_session_events(written, f):
    root, events = written
    st = open_dataset(root).action_state("rec", f)
    ref = oracle(events, f)
    assert st.keys_vk == ref["keys"]
    assert st.buttons == ref["buttons"]
    assert st.focus_title == ref["focus"]
    if ref["pos"] is None:
        assert math.isnan(st.mouse_px[0])
    else:
        assert st.mouse_px == pytest.approx(ref["pos"])
    assert st.mouse_delta_px == pytest.approx(ref["delta"])
    assert st.wheel == pytest.approx(ref["wheel"])
    assert st.wheel_dx == pytest.approx(ref["wheel_dx"])
    assert st.as_arrays()["wheel_dx"] == pytest.approx(ref["wheel_dx"])


def test_spot_checks(written):
    ds = open_dataset(written[0])
    a = lambda f: ds.action_state("rec", f)   # noqa: E731
    assert a(0).keys_vk == {65}                     # pressed before the recording started
    assert a(0).keys_pressed_multi_hot.sum() == 0   # ... which is not a press at frame 0
    assert a(6).keys_pressed_multi_hot[87] == 1 and a(7).keys_pressed_multi_hot[87] == 0
    assert a(30).keys_vk == {65, 87} and a(30).buttons == {0}   # held across the chunk cut
    assert a(30).keys_pressed_multi_hot.sum() == 0
    assert a(41).keys_vk == {65} and a(34).buttons == frozenset()
    assert a(21).wheel == 3.0 and a(71).wheel == -1.0
    assert a(21).wheel_dx == -2.0 and a(23).wheel_dx == 3.0 and a(23).wheel == 1.0
    assert a(22).wheel_dx == 0.0 and a(71).wheel_dx == 0.0
    assert a(51).buttons == frozenset()             # right tap inside frame 50 ...
    assert a(51).buttons_pressed_multi_hot.tolist() == [0, 0, 1, 0, 0]   # ... still seen
    assert a(13).buttons_pressed_multi_hot[0] == 1 and a(30).buttons_pressed_multi_hot.sum() == 0
    assert a(46).focus_title == "Game" and a(46).focus_window_id == "0x2"
    assert a(0).focus_title == "Editor" and a(0).mouse_px == (5.0, 6.0)   # from before frame 0
    assert a(0).mouse_delta_px == (0.0, 0.0) and a(4).mouse_delta_px == (10.0, 16.0)
    assert a(60).mouse_delta_px == (10.0, 1.0)      # moved in frame 59: counted at 60, once
    assert a(61).mouse_delta_px == (0.0, 0.0)
    assert a(62).mouse_delta_px == (14.0, 1.0)


def test_chunk_start_state_is_carried(written):
    """At the first frame of every chunk, random access (a fresh loader) and the chunk's
    own actions alone give the same keys, buttons, mouse position and focus as decoding
    sequentially from chunk 0; the chunk's held rows hold that position and focus."""
    from companion.load.actions import build_track, events_from_actions
    root, _ = written
    ds = open_dataset(root)
    seq = {s.frame: s.action for s in ds.iter_frames()}
    want = {0: ((5.0, 6.0), "Editor"), 30: ((15.0, 22.0), "Editor"),
            60: ((50.0, 31.0), "Game"), 90: ((64.0, 32.0), "Game")}   # 90: keyboard-only chunk
    for ci in ds.chunks("rec"):
        f = ci.start_frame
        rnd = open_dataset(root).get("rec", f).action
        table = ds.chunk("rec", ci.chunk_id).actions()
        alone = build_track(events_from_actions(table), ci.end_frame)
        for st in (rnd, alone.state(f)):
            assert st.mouse_px == seq[f].mouse_px == want[f][0], f
            assert st.mouse_norm == seq[f].mouse_norm
            assert (st.focus_title, st.focus_window_id) == \
                (seq[f].focus_title, seq[f].focus_window_id) and st.focus_title == want[f][1]
            assert st.keys_vk == seq[f].keys_vk and st.buttons == seq[f].buttons
        assert rnd.mouse_delta_px == seq[f].mouse_delta_px
        # read alone, a chunk knows where the cursor is but not how it got there
        assert alone.state(f).mouse_delta_px == (0.0, 0.0)
        for g in range(f + 1, ci.end_frame):
            assert alone.state(g).mouse_px == seq[g].mouse_px
            assert alone.state(g).mouse_delta_px == seq[g].mouse_delta_px, g
            assert alone.state(g).focus_title == seq[g].focus_title
        rows = [r for r in table.to_pylist() if r["state"] == "held"]
        (mv,) = [r for r in rows if r["event_type"] == "mousemove"]
        (fo,) = [r for r in rows if r["event_type"] == "focus"]
        assert (mv["mouse_x"], mv["mouse_y"]) == want[f][0] and mv["frame_ref"] == f
        assert fo["t_ns"] == ci.start_t_ns and want[f][1] in fo["meta"]


def test_smart_cut_chunks_random_access(tmp_path):
    """Chunk cuts that are not on keyframes: the writer re-encodes the chunk ends around
    a stream-copied middle, so SPS/PPS change inside one file. Random access must still
    be frame-exact and pixel-equal to sequential decode, in any order."""
    src = tmp_path / "r.mkv"
    make_video(src, 80, gop=7, bframes=2)
    sc = scan(src)
    summary = write_dataset(tmp_path / "root", "r", sc, frames_table(sc), None, {},
                            chunk_seconds=1.0)
    assert summary["copied"] < summary["chunks"]           # the ends were not all copyable
    ds = open_dataset(tmp_path / "root", cache_size=1)
    seq = {s.frame: s.image for s in ds.iter_frames()}
    assert [read_frame_number(seq[f]) for f in range(80)] == list(range(80))
    order = list(range(80)) * 2
    random.Random(3).shuffle(order)
    for f in order:
        assert np.array_equal(ds.get("r", f).image, seq[f]), f
