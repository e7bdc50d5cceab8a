"""The dataset loader on hand-built seed-000 datasets (real H.264 MP4 chunks, real Parquet)."""
from __future__ import annotations

import math
import pickle
import random
import shutil

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from companion.load import KEY_VOCAB_SIZE, open_dataset
from companion.util.errors import BadInput, NMError
from tests.test_load_support import H, W, frame_number, frame_t, make_dataset, reference_state


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    return make_dataset(tmp_path_factory.mktemp("ds") / "root", extra_video=True)


def _processed_table(rows):
    """An actions_processed table of ``rows`` (dicts; other columns null, valid rows)."""
    from companion.contract.schemas import ACTIONS_PROCESSED_SCHEMA
    full = []
    for r in rows:
        x = {n: None for n in ACTIONS_PROCESSED_SCHEMA.names}
        x.update(is_valid=True, confidence=1.0, timestamp_ms=0, **r)
        full.append(x)
    return pa.Table.from_pylist(full, schema=ACTIONS_PROCESSED_SCHEMA)


def test_listing(built):
    ds = open_dataset(built.root)
    assert ds.videos() == ["vid0", "vid1"]
    ch = ds.chunks("vid0")
    assert [(c.start_frame, c.end_frame) for c in ch] == built.chunks
    assert len(ds) == 54 + 12
    assert ds.info["format_version"] == "1.0.0"
    assert [c.info.video_id for c in ds.iter_chunks()] == ["vid0"] * 3 + ["vid1"]
    a = [(c.info.video_id, c.info.chunk_id) for c in ds.iter_chunks(shuffle=True, seed=3)]
    b = [(c.info.video_id, c.info.chunk_id) for c in ds.iter_chunks(shuffle=True, seed=3)]
    assert a == b and sorted(a) == sorted((c.video_id, c.chunk_id) for c in ds.chunks())


def test_sequential_decode_is_frame_exact(built):
    ds = open_dataset(built.root)
    seen = []
    for s in ds.iter_frames(video_id="vid0"):
        assert s.image.shape == (H, W, 3) and s.image.dtype == np.uint8
        assert frame_number(s.image) == s.frame
        seen.append(s.frame)
        assert s.t_ns == frame_t(s.frame)
        # each chunk file is decoded once, front to back: one (initial) seek, one decoder
        (entry,) = ds._pool._entries.values()
        assert entry.seeks == 1
    assert seen == list(range(54))
    assert not ds._pool._entries      # a finished chunk's decoder is closed


def test_random_access_equals_sequential(built):
    ds_seq = open_dataset(built.root)
    ref = {s.frame: s.image for s in ds_seq.iter_frames(video_id="vid0")}
    ds = open_dataset(built.root, cache_size=2)     # small LRU: containers get evicted
    order = list(range(54)) * 2
    random.Random(7).shuffle(order)
    for f in order:
        s = ds.get("vid0", f)
        assert np.array_equal(s.image, ref[f]), f"frame {f} differs from sequential decode"
    # backwards within one GOP and across chunks
    for f in [53, 52, 41, 40, 39, 20, 19, 7, 0]:
        assert np.array_equal(ds.get("vid0", f).image, ref[f])


def test_resize_and_gray(built):
    ds = open_dataset(built.root)
    s = ds.get("vid0", 17, size=(96, 48))
    assert s.image.shape == (48, 96, 3)
    g = ds.get("vid0", 17, format="gray")
    assert g.image.shape == (H, W) and g.image.dtype == np.uint8
    # the burned-in blocks survive in gray: bit 0 of 17 is white, bit 1 black
    assert g.image[4:12, 4:12].mean() > 200 and g.image[4:12, 20:28].mean() < 60
    with pytest.raises(BadInput, match="pixel format"):
        ds.get("vid0", 1, format="yuv")


@pytest.mark.parametrize("f", range(54))
def test_action_state_matches_events(built, f):
    ds = open_dataset(built.root)
    st = ds.action_state("vid0", f)
    ref = reference_state(built.events, f)
    assert st.keys_vk == frozenset(ref["keys"])
    assert st.keys_multi_hot.shape == (KEY_VOCAB_SIZE,)
    assert set(np.flatnonzero(st.keys_multi_hot)) == ref["keys"]
    assert set(np.flatnonzero(st.keys_pressed_multi_hot)) == ref["pressed"]
    assert st.buttons == frozenset(ref["buttons"])
    for a, b in zip(st.mouse_px, ref["pos"]):
        assert (math.isnan(a) and math.isnan(b)) or a == b
    assert st.mouse_delta_px == pytest.approx(ref["delta"])
    assert st.wheel == pytest.approx(ref["wheel"])
    assert st.wheel_dx == pytest.approx(ref["wheel_dx"])
    assert st.focus_title == ref["focus"]


def test_action_state_spot_checks(built):
    """The same facts as above, written out by hand for a few frames."""
    ds = open_dataset(built.root)
    s4 = ds.get("vid0", 4).action
    assert s4.keys_vk == {65} and s4.keys == ("a",) and s4.focus_title == "Game"
    assert s4.focus_window_id == "0x1"
    assert math.isnan(ds.action_state("vid0", 1).mouse_px[0])       # first move is in frame 1
    assert ds.action_state("vid0", 2).mouse_px == (100.0, 50.0)
    assert ds.action_state("vid0", 6).mouse_delta_px == (20.0, 5.0)  # two moves in frame 5
    assert ds.action_state("vid0", 6).mouse_norm == pytest.approx((120 / 1920, 55 / 1080))
    assert ds.action_state("vid0", 7).buttons == {0}
    assert ds.action_state("vid0", 9).buttons == frozenset()
    assert ds.action_state("vid0", 11).wheel == 3.0
    assert ds.action_state("vid0", 12).wheel == 0.0
    # horizontal wheel (meta.wheel_dx of wheel rows): -1 then +2 inside frame 22
    assert ds.action_state("vid0", 23).wheel_dx == 1.0 and ds.action_state("vid0", 23).wheel == 1.0
    assert ds.action_state("vid0", 11).wheel_dx == 0.0 and ds.action_state("vid0", 24).wheel_dx == 0.0
    assert ds.action_state("vid0", 23).as_arrays()["wheel_dx"] == np.float32(1.0)
    # a Shift tap inside frame 12: never "held" at a capture time, but "pressed" at 13
    assert 160 not in ds.action_state("vid0", 13).keys_vk
    assert ds.action_state("vid0", 13).keys_pressed_multi_hot[160] == 1
    # 'a' is held across the chunk boundary (pressed in chunk 0, released in chunk 1)
    assert ds.action_state("vid0", 20).keys_vk == {65, 32}
    assert ds.action_state("vid0", 26).keys_vk == {32}
    assert ds.action_state("vid0", 31).focus_title == "Browser"
    assert 87 not in ds.action_state("vid0", 40).keys_vk              # is_valid=False row
    assert ds.action_state("vid0", 46).buttons == {2}
    arr = ds.action_state("vid0", 20).as_arrays()
    assert arr["keys"].dtype == np.uint8 and arr["mouse_px"].dtype == np.float32


def test_video_without_events(built):
    ds = open_dataset(built.root)
    s = ds.get("vid1", 11)
    assert frame_number(s.image) == 11
    assert s.action.keys_vk == frozenset() and math.isnan(s.action.mouse_px[0])
    assert s.action.focus_title is None


def test_pickle_and_fork_safety(built):
    """A pickled dataset (what DataLoader workers receive) reopens its decoders."""
    ds = open_dataset(built.root)
    ds.get("vid0", 5)
    ds2 = pickle.loads(pickle.dumps(ds))
    assert frame_number(ds2.get("vid0", 33).image) == 33
    import multiprocessing as mp
    ctx = mp.get_context("fork")
    # Pool.map pickles its arguments: each task gets a pickled copy of ``ds`` (empty
    # decoder pool), so this checks pickling inside a forked worker, not fork inheritance
    # (test_fork_inherited_dataset does that)
    with ctx.Pool(1) as pool:
        got = pool.map(_child_frame, [(ds, f) for f in (5, 6, 30)])
    assert got == [5, 6, 30]
    assert frame_number(ds.get("vid0", 6).image) == 6    # parent unaffected


def _child_frame(arg):
    ds, f = arg
    return frame_number(ds.get("vid0", f).image)


_INHERITED = None     # the Dataset a forked child inherits (no pickling)


def _inherited_child(conn, frames):
    import os as _os
    try:
        ds = _INHERITED
        pool = ds._pool
        before = dict(pool._entries)          # the parent's open containers, inherited
        inherited_pid = pool._pid
        got = [frame_number(ds.get("vid0", f).image) for f in frames]
        conn.send(dict(got=got, inherited=len(before), parent_pid=inherited_pid,
                       pool_pid=pool._pid, me=_os.getpid(),
                       reused=any(e is before.get(k) for k, e in pool._entries.items())))
    except BaseException as e:   # report, never hang the parent
        conn.send(dict(error=repr(e)))
    finally:
        conn.close()
        _os._exit(0)


def test_fork_inherited_dataset(built):
    """A forked child that inherits an opened Dataset through a global (no pickling, as
    a fork-started DataLoader worker does) must not reuse the parent's open containers
    (their file offsets and demuxer state are shared with the parent): the pool sees
    the new pid and starts empty. The parent's decoders keep their position."""
    global _INHERITED
    import multiprocessing as mp
    import os as _os
    ds = _INHERITED = open_dataset(built.root)
    try:
        for f in range(0, 6):                 # parent: an open decoder mid-GOP in chunk 0
            assert frame_number(ds.get("vid0", f).image) == f
        (entry,) = ds._pool._entries.values()
        seeks = entry.seeks
        ctx = mp.get_context("fork")
        r, w = ctx.Pipe(duplex=False)
        p = ctx.Process(target=_inherited_child, args=(w, [6, 7, 3, 25, 50]))
        p.start()
        w.close()
        assert r.poll(60), "forked child did not answer"
        res = r.recv()
        p.join(30)
        assert "error" not in res, res
        assert res["got"] == [6, 7, 3, 25, 50]
        assert res["inherited"] == 1 and res["parent_pid"] == _os.getpid()
        assert res["pool_pid"] == res["me"] != _os.getpid()   # the pool noticed the fork
        assert not res["reused"]                            # and opened its own containers
        # parent: the same container continues forward (no new seek), frames still right
        for f in (6, 7, 8):
            assert frame_number(ds.get("vid0", f).image) == f
        assert ds._pool._entries[next(iter(ds._pool._entries))] is entry
        assert entry.seeks == seeks
    finally:
        _INHERITED = None


def test_decoded_pts_are_checked_against_the_index(built):
    """The decoder's pts must be the index's: a shifted index (as if the demux pass and
    the decoder disagreed), an index missing a frame (a packet lost from the index) and
    an index claiming a frame the stream never yields all raise a clear NMError instead
    of returning a wrong picture."""
    import dataclasses
    from companion.load.decode import DecoderPool
    ds = open_dataset(built.root)
    path = ds._join(ds.chunks("vid0")[0].video_path)
    fi = ds._pool.index(path)
    shifted = dataclasses.replace(fi, pts=fi.pts + 1)
    ds._pool._indexes[path] = shifted
    with pytest.raises(NMError, match=r"decoded frame pts \d+ is not in the frame index "
                                      r"\(expected pts \d+ for frame 5\)") as e:
        ds.get("vid0", 5)
    assert "\n" not in str(e.value) and "vid0_chunk_0000.mp4" in str(e.value)

    def pool_with(index):
        p = DecoderPool(2, 1)
        p._indexes[path] = index
        return p
    keep = np.ones(len(fi), bool)
    assert fi.keyframe[8]
    keep[8] = False     # keyframe 8's packet is not in the index (a reference frame: the
    # decoder always outputs it; a non-reference pre-roll frame is skipped, never seen)
    dropped = dataclasses.replace(fi, pts=fi.pts[keep], keyframe=fi.keyframe[keep])
    with pytest.raises(NMError, match="decoded frame pts .* is not in the frame index"):
        pool_with(dropped).frame(path, 9)
    step = int(fi.pts[1] - fi.pts[0])
    extra = dataclasses.replace(fi, pts=np.append(fi.pts, fi.pts[-1] + step),
                                keyframe=np.append(fi.keyframe, False))
    with pytest.raises(NMError, match="stream ended before frame 20"):
        pool_with(extra).frame(path, 20)
    # the true index still decodes every frame right
    p = pool_with(fi)
    assert [frame_number(p.frame(path, i).to_ndarray(format="rgb24")) for i in (19, 4, 0)] == \
        [19, 4, 0]


def test_fsspec_url(built):
    pytest.importorskip("fsspec", reason="fsspec not installed (optional extra)")
    ds = open_dataset("file://" + str(built.root))
    assert ds.videos() == ["vid0", "vid1"]
    assert frame_number(ds.get("vid0", 27).image) == 27
    assert ds.action_state("vid0", 4).keys_vk == {65}


def test_memory_filesystem_root(built):
    """A non-local root: the whole dataset copied into fsspec's in-memory filesystem (no
    local path anywhere), opened by URL; decoders read through file objects."""
    fsspec = pytest.importorskip("fsspec", reason="fsspec not installed (test extra)")
    fs = fsspec.filesystem("memory")
    root = "/nm_test_memory_ds"
    if fs.exists(root):
        fs.rm(root, recursive=True)
    for p in sorted(built.root.rglob("*")):
        if p.is_file():
            fs.pipe_file(f"{root}/{p.relative_to(built.root).as_posix()}", p.read_bytes())
    try:
        ds = open_dataset("memory://" + root)
        assert ds.fs is fs and ds.videos() == ["vid0", "vid1"]
        order = [27, 3, 53, 0, 20, 19, 41]
        assert [frame_number(ds.get("vid0", f).image) for f in order] == order
        assert [s.frame for s in ds.iter_frames(video_id="vid1")] == list(range(12))
        local = open_dataset(built.root)
        for f in (4, 23, 46):
            a, b = ds.action_state("vid0", f), local.action_state("vid0", f)
            assert (a.keys_vk, a.buttons, a.focus_title, a.wheel_dx) == \
                (b.keys_vk, b.buttons, b.focus_title, b.wheel_dx)
        assert np.array_equal(ds.get("vid0", 33).image, local.get("vid0", 33).image)
        ds2 = pickle.loads(pickle.dumps(ds))            # what a spawned worker receives
        assert frame_number(ds2.get("vid0", 45).image) == 45
        fs.rm(f"{root}/video/SHARD_0000/vid0/vid0_chunk_0002.mp4")
        with pytest.raises(BadInput, match="vid0_chunk_0002.mp4"):
            open_dataset("memory://" + root).get("vid0", 41)
        with pytest.raises(BadInput, match="not a dataset"):
            open_dataset("memory:///nm_test_no_such_root")
    finally:
        fs.rm(root, recursive=True)


def test_webm_chunks(tmp_path):
    """Chunks may be WebM (seed 000 allows it); VP9 without B-frames decodes the same way."""
    from tests.test_load_support import encode_mp4
    b = make_dataset(tmp_path / "d", bounds=((0, 10),), events=[])
    vp = b.root / "video/SHARD_0000/vid0/vid0_chunk_0000.mp4"
    wp = vp.with_suffix(".webm")
    encode_mp4(wp, range(0, 10), codec="libvpx-vp9", fmt="webm")
    vp.unlink()
    t = pq.read_table(b.root / "index.parquet")
    t = t.set_column(t.schema.get_field_index("video_path"), "video_path",
                     pa.array([str(wp.relative_to(b.root))]))
    pq.write_table(t, b.root / "index.parquet")
    ds = open_dataset(b.root)
    assert [frame_number(ds.get("vid0", f).image) for f in (9, 3, 0, 4)] == [9, 3, 0, 4]


# ---- bad input ---------------------------------------------------------------------------

def test_not_a_dataset(tmp_path):
    with pytest.raises(BadInput, match="not a dataset: .* has no index.parquet"):
        open_dataset(tmp_path)
    with pytest.raises(BadInput, match="does not exist"):
        open_dataset(tmp_path / "nope")
    (tmp_path / "index.parquet").write_bytes(b"not parquet")
    with pytest.raises(BadInput, match="not a readable Parquet file"):
        open_dataset(tmp_path)
    pq.write_table(pa.table({"a": [1]}), tmp_path / "index.parquet")
    with pytest.raises(BadInput, match="missing columns: video_id"):
        open_dataset(tmp_path)


def test_missing_and_broken_chunk_files(tmp_path):
    b = make_dataset(tmp_path / "d")
    ds = open_dataset(b.root)
    (b.root / "video/SHARD_0000/vid0/vid0_chunk_0001.mp4").unlink()
    with pytest.raises(BadInput, match="missing chunk video for chunk 1 of 'vid0'"):
        ds.get("vid0", 25)
    assert frame_number(ds.get("vid0", 5).image) == 5     # other chunks still load
    shutil.rmtree(b.root / "actions/SHARD_0000/vid0/vid0_chunk_0002")
    ds = open_dataset(b.root)
    with pytest.raises(BadInput, match="missing actions file for chunk 2"):
        ds.get("vid0", 3)
    (b.root / "video/SHARD_0000/vid0/vid0_chunk_0000.mp4").write_bytes(b"\x00" * 100)
    with pytest.raises(BadInput, match="vid0_chunk_0000.mp4"):
        open_dataset(b.root).get("vid0", 3)


def test_frame_count_mismatch_is_caught(tmp_path):
    b = make_dataset(tmp_path / "d", bounds=((0, 20), (20, 40)), events=[])
    t = pq.read_table(b.root / "index.parquet").to_pylist()
    t[1]["end_frame"] = 41            # index claims one frame more than the file has
    from companion.contract.schemas import CHUNK_INDEX_SCHEMA
    pq.write_table(pa.Table.from_pylist(t, schema=CHUNK_INDEX_SCHEMA), b.root / "index.parquet")
    with pytest.raises(BadInput, match="has 20 frames but index.parquet says chunk 1 has 21"):
        open_dataset(b.root).get("vid0", 22)


def test_bad_requests(built):
    ds = open_dataset(built.root)
    with pytest.raises(BadInput, match="no video 'zzz'"):
        ds.get("zzz", 0)
    with pytest.raises(BadInput, match="frame 54 of 'vid0' is in no chunk"):
        ds.get("vid0", 54)
    with pytest.raises(BadInput, match="frame -1"):
        ds.get("vid0", -1)
    with pytest.raises(BadInput, match="size must be positive"):
        ds.get("vid0", 0, size=(0, 10))
    assert issubclass(BadInput, NMError)


def test_wrong_major_version(tmp_path):
    b = make_dataset(tmp_path / "d", bounds=((0, 4),), events=[])
    (b.root / "dataset.json").write_text('{"format_version": "2.0.0"}')
    with pytest.raises(BadInput, match="format_version 2.0.0 is not readable"):
        open_dataset(b.root)


def test_held_rows_at_chunk_start():
    """companion.dataset repeats keys/buttons held at a chunk start as ``state == "held"``
    rows with frame_ref = the start frame: down AT that frame, not a new press."""
    import json as _json
    from companion.load.actions import EventColumns, build_track, events_from_actions

    tab = _processed_table

    vk = _json.dumps({"vk": 65})
    # chunk 0 [0,10): 'a' was pressed before the first frame; left button pressed in frame 4
    c0 = tab([dict(t_ns=100, frame_ref=0, source="keyboard", event_type="keydown",
                   state="held", key="a", code="KeyA", meta=vk),
              dict(t_ns=450, frame_ref=4, source="mouse", event_type="mousedown",
                   state="pressed", mouse_button=0)])
    # chunk 1 [10,20): both still held at its start; 'a' released in frame 12
    c1 = tab([dict(t_ns=1000, frame_ref=10, source="keyboard", event_type="keydown",
                   state="held", key="a", code="KeyA", meta=vk),
              dict(t_ns=1000, frame_ref=10, source="mouse", event_type="mousedown",
                   state="held", mouse_button=0),
              dict(t_ns=1250, frame_ref=12, source="keyboard", event_type="keyup",
                   state="released", key="a", code="KeyA", meta=vk)])
    whole = build_track(EventColumns.concat([events_from_actions(c0), events_from_actions(c1)]), 20)
    assert [65 in whole.state(f).keys_vk for f in (0, 12, 13)] == [True, True, False]
    assert whole.state(0).keys_pressed_multi_hot.sum() == 0      # held is not a press
    assert whole.state(10).keys_pressed_multi_hot.sum() == 0
    assert [whole.state(f).buttons for f in (4, 5, 10, 19)] == [set(), {0}, {0}, {0}]
    # chunk 1 alone (without chunk 0) already knows what is held at its start
    alone = build_track(events_from_actions(c1), 20)
    assert 65 in alone.state(10).keys_vk and alone.state(10).buttons == {0}


def test_held_position_and_focus_rows():
    """Format 1.1.0 carries the last mouse position and the focus into every chunk as
    ``held`` mousemove / focus rows: they set the state AT the chunk's start frame and
    are never a movement, even when they disagree with what came before."""
    import json as _json
    from companion.load.actions import EventColumns, build_track, events_from_actions

    tab = _processed_table

    def mv(t, fr, x, y, state=None):
        return dict(t_ns=t, frame_ref=fr, source="mouse", event_type="mousemove", state=state,
                    mouse_x=x, mouse_y=y, mouse_x_norm=x / 100, mouse_y_norm=y / 100)

    win = lambda t, fr, title, state=None: dict(   # noqa: E731
        t_ns=t, frame_ref=fr, source="window", event_type="focus", state=state,
        meta=_json.dumps({"window_id": title.lower(), "title": title}))
    # chunk 0 [0,10): focus A at frame 2, moves in frames 3 and 9
    c0 = tab([win(250, 2, "A"), mv(350, 3, 10.0, 10.0), mv(950, 9, 20.0, 30.0)])
    # chunk 1 [10,20): held position (deliberately not where chunk 0 left it) and focus,
    # then a move in frame 12 and a focus change in frame 15
    c1 = tab([mv(1000, 10, 50.0, 50.0, "held"), win(1000, 10, "A", "held"),
              mv(1250, 12, 53.0, 46.0), win(1550, 15, "B")])
    whole = build_track(EventColumns.concat([events_from_actions(c0), events_from_actions(c1)]), 20)
    alone = build_track(events_from_actions(c1), 20)
    assert whole.state(10).mouse_delta_px == (10.0, 20.0)   # the move in frame 9 only
    for tr in (whole, alone):
        s = tr.state(10)
        assert s.mouse_px == (50.0, 50.0) and s.mouse_norm == pytest.approx((0.5, 0.5))
        assert (s.focus_title, s.focus_window_id) == ("A", "a")
        assert tr.state(11).mouse_delta_px == (0.0, 0.0)      # the held row is no movement
        assert tr.state(13).mouse_delta_px == (3.0, -4.0)     # measured from the held position
        assert tr.state(13).mouse_px == (53.0, 46.0)
        assert tr.state(15).focus_title == "A" and tr.state(16).focus_title == "B"
    assert alone.state(10).mouse_delta_px == (0.0, 0.0)
    assert math.isnan(alone.state(9).mouse_px[0]) and alone.state(9).focus_title is None
    assert whole.state(9).mouse_px == (10.0, 10.0) and whole.state(9).focus_title == "A"


def test_session_events_normalisation():
    """events.parquet rows (seed 001 names) give the same state as dataset actions."""
    import numpy as _np
    from companion.load.actions import build_track, events_from_session
    from tests.test_dataset_media import events_table
    ft = _np.arange(10, dtype=_np.int64) * 1000 + 10_000
    rows = [dict(t_ns=9_000, event_type="key_down", key_code=None, code="KeyQ", state="pressed",
                 source="keyboard"),
            dict(t_ns=10_500, event_type="focus", source="window", window_id="w1",
                 metadata=[("title", "Term")]),
            dict(t_ns=11_500, event_type="mouse_click", mouse_button="middle", state="pressed",
                 source="mouse"),                                     # no button_index
            dict(t_ns=12_500, event_type="mouse_move", mouse_x_px=5.0, mouse_y_px=6.0,
                 mouse_x_norm=0.5, mouse_y_norm=0.6, source="mouse"),
            dict(t_ns=13_500, event_type="mouse_click", mouse_button="middle", state="released",
                 source="mouse"),
            dict(t_ns=14_500, event_type="wheel", delta=-2.0, source="mouse"),   # no wheel_dy
            dict(t_ns=14_700, event_type="wheel", delta=0.0, wheel_dy=0.0, wheel_dx=4.0,
                 source="mouse"),                                     # horizontal
            dict(t_ns=15_500, event_type="key_up", key_code=81, state="released",
                 source="keyboard")]
    tr = build_track(events_from_session(events_table(rows, ft)), 10)
    assert [81 in tr.state(f).keys_vk for f in (0, 5, 6)] == [True, True, False]   # up in 5
    assert tr.state(0).focus_title is None and tr.state(1).focus_title == "Term"
    assert tr.state(1).focus_window_id == "w1"
    assert [tr.state(f).buttons for f in (1, 2, 3, 4)] == [set(), {1}, {1}, set()]
    assert tr.state(3).mouse_norm == pytest.approx((0.5, 0.6)) and tr.state(5).wheel == -2.0
    assert tr.state(5).wheel_dx == 4.0 and tr.state(4).wheel_dx == 0.0
    assert tr.state(4).keys == ("KeyQ",)     # the DOM key, else the DOM code
