"""nm-preview: overlay MP4, contact sheet, viewer data, session folders, CLI errors."""
from __future__ import annotations

import json
import subprocess
import sys

import av
import numpy as np
import pyarrow.parquet as pq
import pytest

from companion.load import open_dataset
from companion.load import preview as pv
from companion.util.errors import BadInput
from tests.test_load_support import H, W, ev, frame_number, make_dataset


def preview_events():
    """Cursor in the middle of the frame, a left press held over frames 6..9, keys."""
    def mv(fr, x, y, frac=0.5):
        return ev(fr, "mousemove", frac, mouse_x=x * 10.0, mouse_y=y * 10.0,
                  mouse_x_norm=x / W, mouse_y_norm=y / H)
    return [
        ev(-1, "focus", meta=json.dumps({"title": "Game", "window_id": "7"})),
        mv(1, 96, 60), mv(3, 100, 62), mv(4, 110, 64, 0.3), mv(4, 120, 66, 0.8),
        ev(5, "mousedown", mouse_button=0, state="pressed", mouse_x=1200.0, mouse_y=660.0,
           mouse_x_norm=120 / W, mouse_y_norm=66 / H),
        ev(9, "mouseup", mouse_button=0, state="released", mouse_x=1200.0, mouse_y=660.0,
           mouse_x_norm=120 / W, mouse_y_norm=66 / H),
        ev(2, "keydown", key="d", code="KeyD", state="pressed", meta=json.dumps({"vk": 68})),
        ev(14, "keyup", key="d", code="KeyD", state="released", meta=json.dumps({"vk": 68})),
        ev(12, "wheel", mouse_wheel=2.0),
        ev(16, "mousemove", mouse_x=500.0, mouse_y=300.0, mouse_x_norm=50 / W, mouse_y_norm=30 / H),
    ]


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("pv") / "ds"
    return make_dataset(root, bounds=((0, 20), (20, 30)), events=preview_events())


def _decode(path):
    with av.open(str(path)) as c:
        vs = c.streams.video[0]
        out = [(f.to_ndarray(format="rgb24"), float(f.pts * vs.time_base)) for f in c.decode(vs)]
    return out


def test_overlay_mp4_draws_the_loader_state(built, tmp_path):
    src = pv.load_chunk(built.root, "vid0", 0)
    out = pv.render_mp4(src, tmp_path / "o.mp4")
    frames = _decode(out)
    assert len(frames) == 20
    assert [round(t, 4) for _, t in frames] == [round(float(t), 4) for t in src.video_s]
    ds = open_dataset(built.root)
    clean = {s.frame: s.image for s in ds.iter_frames(video_id="vid0") if s.frame < 20}
    for f, (img, _) in enumerate(frames):
        st = ds.action_state("vid0", f)
        if not np.isnan(st.mouse_norm[0]):
            x, y = int(round(st.mouse_norm[0] * W)), int(round(st.mouse_norm[1] * H))
            px = img[y, x].astype(int)
            if st.buttons == {0}:   # cursor filled red while the left button is held
                assert px[0] > 180 and px[1] < 110 and px[2] < 110, (f, px)
            else:                   # white otherwise
                assert px.min() > 190, (f, px)
        # the key box at the bottom-left: yellow for a new press, dark while held, absent
        box = img[H - 19:H - 8, 1:12].reshape(-1, 3)
        med = np.median(box, axis=0)
        if st.keys_pressed_multi_hot.any():
            assert med[0] > 190 and med[1] > 170 and med[2] < 90, (f, med)
        elif st.keys_vk:
            assert med.max() < 90, (f, med)
        else:
            ref = np.median(clean[f][H - 19:H - 8, 1:12].reshape(-1, 3), axis=0)
            assert np.abs(med - ref).max() < 25, (f, med, ref)
    # a click ring is drawn around the press position right after the press (frame 6)
    # (radius 8 px, 2 px thick, red: 7 px above the press point; nothing there at frame 2)
    ring_px = frames[6][0][66 - 7, 120].astype(int)
    assert ring_px[0] > 170 and ring_px[1] < 130, ring_px
    assert np.abs(frames[2][0][66 - 7, 120].astype(int) - clean[2][66 - 7, 120]).max() < 30
    # the trail: a yellow line from the move in frame 3 (100, 62) to the first move in
    # frame 4 (110, 64), drawn at frames 5 and 6 (15 px from the cursor: not the cursor);
    # the clean picture there is the blue-120 gradient, and frame 2 has no trail yet
    for f in (5, 6):
        px = frames[f][0][63, 105].astype(int)
        assert px[0] > 180 and px[1] > 150 and px[2] < 70, (f, px)
    assert np.abs(frames[2][0][63, 105].astype(int) - clean[2][63, 105]).max() < 30


def test_contact_sheet(built, tmp_path):
    src = pv.load_chunk(built.root, "vid0", 1)
    assert pv.contact_sheet_frames(src, 4).tolist() == [0, 3, 6, 9]
    assert pv.contact_sheet_frames(src, 50).tolist() == list(range(10))
    out = pv.render_contact_sheet(src, tmp_path / "s.png", cols=2, rows=2, thumb_width=W)
    img = pv.decode_png(out.read_bytes())
    gap = 4
    assert img.shape == (2 * (H + gap) + gap, 2 * (W + gap) + gap, 3)
    ds = open_dataset(built.root)
    # each cell's lower half (below the header and above the key row) is the frame itself
    for n, k in enumerate([0, 3, 6, 9]):
        r, c = divmod(n, 2)
        y, x = gap + r * (H + gap), gap + c * (W + gap)
        cell = img[y:y + H, x:x + W].astype(int)
        ref = ds.get("vid0", 20 + k).image.astype(int)
        assert np.abs(cell[30:70, 60:] - ref[30:70, 60:]).mean() < 3
        # the overlay is on the cell: the cursor at the last move (norm 50/W, 30/H, i.e.
        # pixel (50, 30) at this size), white inside a black ring; the clean frame there
        # is the blue-120 gradient, neither white nor black
        assert cell[30, 50].min() > 200 and ref[30, 50].min() < 150, (k, cell[30, 50])
        assert cell[30, 55].max() < 60 and ref[30, 55].max() > 100, (k, cell[30, 55])


def test_viewer_data_matches_loader_state(built):
    src = pv.load_chunk(built.root, "vid0", 0)
    d = pv.viewer_data(src)
    ds = open_dataset(built.root)
    assert d["n_frames"] == 20 and d["frame_times"][0] == 0.0
    for f in range(20):
        held = {k[3] for k in d["keys"] if k[0] <= f and (k[1] is None or f < k[1])}
        assert held == ds.action_state("vid0", f).keys_vk
        btn = {b[2] for b in d["buttons"] if b[0] <= f and (b[1] is None or f < b[1])}
        assert btn == ds.action_state("vid0", f).buttons


def test_session_folder_preview(tmp_path):
    """A session folder (frames.parquet + events.parquet + <id>.mkv) previews like a chunk."""
    from tests.test_dataset_media import events_table, frames_table, make_video, read_frame_number, scan
    d = tmp_path / "sess"
    d.mkdir()
    make_video(d / "sess.mkv", 24, gop=6, bframes=2)
    sc = scan(d / "sess.mkv")
    fr = frames_table(sc)
    ft = fr.column("t_ns").to_numpy()
    rows = [dict(t_ns=int(ft[2]) + 1000, event_type="key_down", source="keyboard", key_code=65,
                 key="a", code="KeyA", state="pressed"),
            dict(t_ns=int(ft[3]) + 1000, event_type="mouse_move", source="mouse",
                 mouse_x_px=640.0, mouse_y_px=320.0, mouse_x_norm=0.5, mouse_y_norm=0.5),
            dict(t_ns=int(ft[4]) + 1000, event_type="mouse_click", source="mouse",
                 mouse_button="right", button_index=2, state="pressed", mouse_x_norm=0.5,
                 mouse_y_norm=0.5),
            dict(t_ns=int(ft[10]) + 1000, event_type="key_up", source="keyboard", key_code=65,
                 key="a", code="KeyA", state="released")]
    pq.write_table(fr, d / "frames.parquet")
    pq.write_table(events_table(rows, ft, "sess"), d / "events.parquet")
    (d / "metadata.json").write_text(json.dumps({"session_id": "sess"}))
    src = pv.load_source(d, start=2, frames=12)
    assert len(src) == 12 and src.frame_ids[0] == 2
    assert src.track.state(3).keys_vk == {65} and src.track.state(11).keys_vk == frozenset()
    assert src.track.state(5).buttons == {2}
    out = pv.render_mp4(src, tmp_path / "s.mp4")
    imgs = _decode(out)
    assert len(imgs) == 12
    # the cursor (filled blue: right button held) sits at the frame centre from frame 5 on
    img5 = imgs[5 - 2][0]
    assert img5[32, 64][2] > 180 and img5[32, 64][0] < 120
    # away from the overlay, output frame k is recording frame 2 + k, shown at its own time
    with av.open(str(d / "sess.mkv")) as c:
        clean = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
    assert read_frame_number(clean[7]) == 7
    for k, (img, t) in enumerate(imgs):
        assert np.abs(img[18:44, 90:].astype(int) - clean[2 + k][18:44, 90:]).mean() < 4
        assert t == pytest.approx(src.video_s[k], abs=2e-5)   # the MKV's own ms times
    html = pv.write_viewer(src, tmp_path / "s.html")
    assert "data:video/mp4;base64," in html.read_text()


def test_bad_sources(tmp_path):
    with pytest.raises(BadInput, match="neither a dataset root"):
        pv.load_source(tmp_path)
    with pytest.raises(BadInput, match="does not exist"):
        pv.load_source(tmp_path / "nope")
    (tmp_path / "frames.parquet").write_bytes(b"x")
    with pytest.raises(BadInput, match="no events.parquet; run nm-align first"):
        pv.load_session(tmp_path)
    (tmp_path / "events.parquet").write_bytes(b"x")
    with pytest.raises(BadInput, match="expected one <session_id>.mkv recording, found none"):
        pv.load_session(tmp_path)


def test_cli(built, tmp_path):
    exe = [sys.executable, "-m", "companion.cli.preview_cli"]
    r = subprocess.run(exe + [str(tmp_path / "missing")], capture_output=True, text=True)
    assert r.returncode == 2 and r.stderr.strip().count("\n") == 0
    assert r.stderr.startswith("nm-preview: error: ") and "does not exist" in r.stderr
    r = subprocess.run(exe + [str(built.root), "--chunk", "7"], capture_output=True, text=True)
    assert r.returncode == 2 and "has no chunk 7" in r.stderr
    r = subprocess.run(exe + [str(built.root), "--start", "99"], capture_output=True, text=True)
    assert r.returncode == 2 and "--start 99 is outside the 20 frames" in r.stderr
    r = subprocess.run(exe + [str(built.root), "--chunk", "1", "--quiet", "--sheet",
                              str(tmp_path / "a.png"), "--html", str(tmp_path / "a.html"),
                              "--link-video"], capture_output=True, text=True, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "a.png").is_file() and (tmp_path / "a.mp4").is_file()
    assert 'src="a.mp4"' in (tmp_path / "a.html").read_text()
    r = subprocess.run(exe + [str(built.root), "--quiet"], capture_output=True, text=True,
                       cwd=tmp_path)
    assert r.returncode == 0 and (tmp_path / "vid0_chunk_0000.html").is_file()
    assert frame_number(_decode(tmp_path / "a.mp4")[0][0]) == 20
    # --mp4: the overlay video of chunk 0, through the CLI
    r = subprocess.run(exe + [str(built.root), "--chunk", "0", "--quiet", "--mp4",
                              str(tmp_path / "o.mp4")], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == f"wrote {tmp_path / 'o.mp4'} (20 frames)"
    frames = _decode(tmp_path / "o.mp4")
    assert len(frames) == 20
    ds = open_dataset(built.root)
    clean = ds.get("vid0", 6).image.astype(int)
    px = frames[6][0][66, 120].astype(int)    # cursor filled red: left button held at 6
    assert px[0] > 180 and px[1] < 110 and px[2] < 110 and abs(px - clean[66, 120]).max() > 60
    # away from the overlay, output frame 11 is frame 11
    ref11 = ds.get("vid0", 11).image.astype(int)
    assert np.abs(frames[11][0][30:70, 140:].astype(int) - ref11[30:70, 140:]).mean() < 4
    assert np.abs(frames[11][0][30:70, 140:].astype(int) - clean[30:70, 140:]).mean() > 10
    r = subprocess.run(exe + [str(built.root), "--mp4", str(tmp_path), "--quiet"],
                       capture_output=True, text=True)
    assert r.returncode == 2 and r.stderr.strip().count("\n") == 0
    assert r.stderr.strip() == f"nm-preview: error: {tmp_path}: is a directory; give an output file name"


def test_drawing_primitives_clip_and_hit_the_right_pixels():
    from companion.load import draw
    img = np.zeros((40, 60, 3), np.uint8)
    draw.line(img, -10, 5, 70, 5, (255, 0, 0), thickness=1)          # crosses the whole image
    assert (img[5, :, 0] == 255).all() and img[4].max() == 0 and img[6].max() == 0
    draw.disc(img, 59, 39, 3, (0, 255, 0))                            # corner, clipped
    assert tuple(img[39, 59]) == (0, 255, 0) and tuple(img[35, 59]) == (0, 0, 0)
    draw.ring(img, 30, 20, 6, 1, (0, 0, 255))
    assert img[20, 30, 2] == 0 and img[14, 30, 2] == 255              # hollow centre
    end = draw.text(img, 50, 30, "AB", (255, 255, 255), scale=1)     # runs off the right edge
    assert end > 60 and img[30:37, 50:55].max() == 255
    a = np.zeros((7, 5, 3), np.uint8)
    draw.text(a, 0, 0, "T", scale=1)
    assert (a[..., 0] > 0).astype(int).tolist() == [[int(c) for c in r]
                                                     for r in "11111 00100 00100 00100 00100 00100 00100".split()]
    draw.line(img, 0, 0, 1e9, 1e9, (1, 1, 1))                         # absurd: ignored, no hang


def test_thin_moves_keeps_the_last_move_of_each_frame():
    idx = np.arange(100)
    buckets = np.repeat([0, 1, 2, 3], [40, 3, 50, 7])
    kept = pv._thin_moves(idx, buckets, 8)
    for b in range(4):
        mine = kept[buckets[kept] == b]
        assert mine[-1] == idx[buckets == b][-1]          # the position at the next frame
        assert len(mine) <= 8 + 1
    assert set(idx[buckets == 1]) <= set(kept) and set(idx[buckets == 3]) <= set(kept)


def test_short_key_names():
    assert [pv.short_key(x) for x in ("KeyA", "Digit7", " ", "ShiftLeft", "ControlRight",
                                      "ArrowUp", "F5", None)] == \
        ["A", "7", "SPACE", "SHIFT", "CTRL", "UP", "F5", "?"]
    assert pv.short_key(pv._vk_label(65)) == "A" and pv.short_key(pv._vk_label(162)) == "CTRL"
