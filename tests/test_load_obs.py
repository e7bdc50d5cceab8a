"""The proof on real data: a dataset the suite built from a real OBS recording with real
xdotool input (fixtures ``obs_dataset`` / ``obs_aligned`` in tests/conftest.py).

Checked: every frame decodes with the index's pts; the picture changes from frame to
frame (tests/obs_scripts/x_activity.py repaints a dark strip every ~4 ms), so random
access being pixel-equal to sequential decode tells frames apart; the action state at
each frame (keys, buttons, wheel both ways, mouse position in pixels and normalized,
mouse delta, focused window) matches the session's events.parquet rows around it; the
X focus changes between the helper's two windows show up; the input the harness typed
shows up; the torch adapter feeds a 2-worker DataLoader; and the HTML viewer plays the
chunk in Chromium in sync.
"""
from __future__ import annotations

import math
import random

import numpy as np
import pyarrow.parquet as pq
import pytest

from companion.load import open_dataset
from companion.load import preview as pv
from tests.test_load_writer import oracle

# Workers are started with "spawn": forking a process that already runs decoder and
# pyarrow threads (as a long test session does) can deadlock or crash the child; the
# same advice is in docs/loader.md.
MP = "spawn"

pytestmark = pytest.mark.obs


@pytest.fixture(scope="module")
def ds(obs_dataset):
    return open_dataset(obs_dataset)


@pytest.fixture(scope="module")
def session_events(obs_aligned):
    return pq.read_table(obs_aligned["session"] / "events.parquet")


@pytest.fixture(scope="module")
def sequential(ds):
    vid = ds.videos()[0]
    return vid, {s.frame: s.image for s in ds.iter_frames(video_id=vid)}


def test_every_frame_decodes_in_order(ds, sequential):
    vid, seq = sequential
    assert sorted(seq) == list(range(ds.n_frames(vid)))
    chunks = ds.chunks(vid)
    assert len(chunks) >= 3 and chunks[0].start_frame == 0
    assert all(a.end_frame == b.start_frame for a, b in zip(chunks, chunks[1:]))
    h, w = next(iter(seq.values())).shape[:2]
    assert (w, h) == (640, 480)


def _tellable(seq: dict) -> list:
    """Frames whose picture differs from both neighbours'."""
    n = len(seq)
    return [f for f in range(1, n - 1) if not np.array_equal(seq[f], seq[f - 1])
            and not np.array_equal(seq[f], seq[f + 1])]


def test_every_frame_differs_from_its_neighbour(sequential, session_events):
    """conftest.drive_input first starts tests/obs_scripts/x_activity.py, which repaints
    a dark strip at the bottom of the captured screen every ~4 ms, then drives the input:
    from then on consecutive frames differ, so the pixel comparisons here can tell a
    frame from its neighbours. (The frames before it starts are the recording's first
    second or so: black but for the cursor.)"""
    vid, seq = sequential
    n = len(seq)
    strip = [seq[f][466:478, :, :] for f in range(n)]
    moved = [f for f in range(1, n) if not np.array_equal(strip[f], strip[f - 1])]
    assert moved, "the strip never changed"
    first = moved[0]
    # the painter is drawing before the harness's first input event
    first_input = min(r["frame_ref"] for r in session_events.to_pylist()
                      if r["frame_ref"] is not None and r["frame_ref"] >= 0
                      and r["event_type"] != "focus")
    assert first <= first_input + 1, (first, first_input)
    changed = len(moved) / (n - first)
    # not 100 %: a slot OBS renders late ("lagged") repeats the previous picture, and a
    # 4 ms painter can stall past a 33 ms frame interval on a loaded machine (seen: 89 %
    # with other OBS captures running on the 2 cores)
    assert changed >= 0.75, (changed, n, first)
    # the strip stays dark: the cursor test (test_e2e_sync) sees only the cursor
    assert max(int(s.max()) for s in strip) <= 60


def test_random_access_equals_sequential(ds, sequential):
    vid, seq = sequential
    tellable = _tellable(seq)     # a wrong neighbour would not be equal to these
    assert len(tellable) >= 100
    rnd = random.Random(11)
    picks = rnd.sample(tellable, 60)
    for c in ds.chunks(vid):          # chunk edges: first/last frame of every chunk
        picks += [c.start_frame, c.end_frame - 1]
    rnd.shuffle(picks)
    fresh = open_dataset(ds.root, cache_size=2)
    for f in picks:
        assert np.array_equal(fresh.get(vid, f).image, seq[f]), f"frame {f}"


def test_action_state_matches_events_at_every_frame(ds, session_events):
    vid = ds.videos()[0]
    n = ds.n_frames(vid)
    w, h = 640, 480                     # captured display == video size
    moved = 0
    for f in range(n):
        st = ds.action_state(vid, f)
        ref = oracle(session_events, f)
        assert st.keys_vk == ref["keys"], f
        assert st.buttons == ref["buttons"], f
        assert st.wheel == pytest.approx(ref["wheel"]), f
        assert st.wheel_dx == pytest.approx(ref["wheel_dx"]), f
        assert st.focus_title == ref["focus"], f
        assert st.mouse_delta_px == pytest.approx(ref["delta"]), f
        moved += ref["delta"] != (0.0, 0.0)
        if ref["pos"] is None:
            assert math.isnan(st.mouse_px[0]) and math.isnan(st.mouse_norm[0])
        else:
            assert st.mouse_px == pytest.approx(ref["pos"]), f
            assert st.mouse_norm == pytest.approx((ref["pos"][0] / w, ref["pos"][1] / h),
                                                  abs=1e-5), f
    assert moved >= 20          # the cursor jumps and the final drag are in the deltas


def test_focus_changes_of_the_capture(ds, session_events):
    """conftest.drive_input moves the X input focus A -> B -> A between the two windows
    of tests/obs_scripts/x_activity.py: the companion logs it (no window manager: the
    tracker reads the input focus) and the loader's focus state follows it."""
    from tests.conftest import FOCUS_TITLES
    vid = ds.videos()[0]
    tr = ds.actions(vid)
    titles = [tr.state(f).focus_title for f in range(tr.n_frames)]
    runs = [t for i, t in enumerate(titles) if i == 0 or t != titles[i - 1]]
    runs = [t for t in runs if t is not None]
    a, b = FOCUS_TITLES
    assert runs[-3:] == [a, b, a], runs
    ids = {tr.state(f).focus_window_id for f in range(tr.n_frames)
           if titles[f] in FOCUS_TITLES}
    assert len(ids) == 2 and None not in ids
    logged = [dict(r["metadata"]).get("title") for r in session_events.to_pylist()
              if r["event_type"] == "focus"]
    assert a in logged and b in logged


def test_the_harness_input_is_in_the_state(ds, obs_dataset):
    """What conftest.drive_input typed/clicked on the captured display."""
    vid = ds.videos()[0]
    tr = ds.actions(vid)
    n = tr.n_frames
    pressed = np.zeros(256, int)
    held_w = []
    for f in range(n):
        st = tr.state(f)
        pressed += st.keys_pressed_multi_hot
        held_w.append(87 in st.keys_vk)
    for vk in (71, 32, 87, 80, 65, 9):      # g, space, w, p, a (ctrl+a), Tab (shift+Tab)
        assert pressed[vk] >= 1, vk
    # "gg": two key-downs. Under load xdotool's keystrokes can land within one frame
    # interval, where the per-frame "pressed since the previous frame" flag is set once,
    # so count them in the chunks' actions_processed rows.
    import pyarrow.parquet as pq
    g_downs = 0
    for c in ds.chunks(vid):
        t = pq.read_table(obs_dataset / c.actions_dir / "actions_processed.parquet",
                          columns=["event_type", "code", "is_valid"]).to_pylist()
        g_downs += sum(r["event_type"] == "keydown" and r["code"] == "KeyG" and r["is_valid"]
                       for r in t)
    assert g_downs >= 2
    assert pressed[162] >= 1 or pressed[17] >= 1     # ctrl
    assert pressed[160] >= 1 or pressed[16] >= 1     # shift
    # "keydown w; sleep 0.6; keyup w": the longest run of frames with w held is ~0.6 s
    runs, cur = [], 0
    for h in held_w:
        cur = cur + 1 if h else 0
        runs.append(cur)
    fps = ds.chunks(vid)[0].fps
    assert 0.45 * fps <= max(runs) <= 0.9 * fps
    clicks = sum(tr.buttons_pressed[f] for f in range(n))
    assert clicks[0] >= 1 and clicks[2] >= 1          # click 1, click 3
    assert (tr.wheel > 0).any() and (tr.wheel < 0).any()   # click 4 / click 5
    assert (tr.wheel_dx < 0).any() and (tr.wheel_dx > 0).any()   # click 6 / click 7
    # the cursor visited the harness's far-apart targets (screen 640x480 == video)
    from tests.conftest import CURSOR_TARGETS
    pos = {(round(float(x)), round(float(y))) for x, y in tr.mouse_px if not np.isnan(x)}
    assert sum(t in pos for t in CURSOR_TARGETS) >= 6


def test_torch_two_workers(obs_dataset, ds):
    torch = pytest.importorskip("torch", reason="torch not installed (optional extra)")
    from torch.utils.data import DataLoader
    from companion.load.torch import ChunkIterableDataset, FrameDataset
    vid = ds.videos()[0]
    seen = []
    for item in DataLoader(ChunkIterableDataset(obs_dataset, size=(160, 120)), batch_size=None,
                           multiprocessing_context=MP,
                           num_workers=2):
        assert item["image"].shape == (3, 120, 160)
        seen.append(int(item["frame"]))
    assert sorted(seen) == list(range(ds.n_frames(vid)))
    fd = FrameDataset(obs_dataset, size=(160, 120))
    idx = list(range(0, len(fd), max(1, len(fd) // 16)))
    batches = list(DataLoader(torch.utils.data.Subset(fd, idx), batch_size=4, num_workers=2,
                              multiprocessing_context=MP))
    got = torch.cat([b["frame"] for b in batches]).tolist()
    assert got == [fd.key(i)[1] for i in idx]
    for b in batches:
        for i, f in enumerate(b["frame"].tolist()):
            assert np.array_equal(b["keys"][i].numpy(), ds.action_state(vid, f).keys_multi_hot)


def test_preview_outputs_of_the_real_session(obs_aligned, tmp_path):
    src = pv.load_session(obs_aligned["session"])
    assert len(src) > 100
    sheet = pv.render_contact_sheet(src, tmp_path / "sheet.png", cols=4, rows=2)
    img = pv.decode_png(sheet.read_bytes())
    assert img.std() > 10
    out = pv.render_mp4(src, tmp_path / "o.mp4", width=320)
    import av
    with av.open(str(out)) as c:
        assert sum(1 for _ in c.decode(video=0)) == len(src)


def test_viewer_in_chromium_on_a_real_chunk(obs_dataset, ds, tmp_path):
    from tests.test_preview_browser import CHROMIUM, Browser, check_viewer, screenshot_ok
    if CHROMIUM is None:
        pytest.skip("needs a working Chromium (Debian's chromium package)")
    vid = ds.videos()[0]
    busiest = max(ds.chunks(vid), key=lambda c: c.n_events)
    src = pv.load_chunk(obs_dataset, vid, busiest.chunk_id)
    html = pv.write_viewer(src, tmp_path / "real.html")
    b = Browser(tmp_path)
    try:
        n = len(src)
        check_viewer(b, html, ds, vid, sorted({0, 1, n // 3, n // 2, n - 2, n - 1}),
                     chunk_start=busiest.start_frame, burned_numbers=False)
        screenshot_ok(b)
    finally:
        b.close()
