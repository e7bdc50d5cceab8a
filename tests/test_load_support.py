"""Hand-built seed-000 datasets for the loader tests (helpers; no tests here).

The layout is written by hand straight from the contract (CHUNK_INDEX_SCHEMA,
ACTIONS_PROCESSED_SCHEMA, the directory layout of seed 000), independently of
companion.dataset, so the loader is checked against the contract rather than against
one writer. Every chunk video is real H.264 in MP4 (PyAV/libx264, B-frames, a keyframe
every GOP frames); every frame has its *video* frame number burned into the pixels, so a
decoded image says which frame it is.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from companion.contract.schemas import ACTIONS_PROCESSED_SCHEMA, CHUNK_INDEX_SCHEMA

BITS = 12
BW = 16      # block width, px
BH = 16      # block height, px
W, H = 192, 96
FPS = 30
T0 = 1_700_000_000_000_000_000
INTERVAL = 33_333_333   # ns per frame (what the capture clock says; 30 fps)


def draw(i: int, w: int = W, h: int = H) -> np.ndarray:
    """RGB frame: ``i`` as 12 black/white 16x16 blocks on top, a moving gradient below."""
    img = np.zeros((h, w, 3), np.uint8)
    yy, xx = np.mgrid[0:h, 0:w]
    img[..., 0] = (xx + i * 5) % 256
    img[..., 1] = (yy * 2 + i * 3) % 256
    img[..., 2] = 120
    img[:BH] = 0
    for b in range(BITS):
        if (i >> b) & 1:
            img[:BH, b * BW:(b + 1) * BW] = 255
    return img


def frame_number(rgb: np.ndarray) -> int:
    """Inverse of :func:`draw` on a decoded (lossy) full-size RGB frame."""
    v = 0
    for b in range(BITS):
        if rgb[3:BH - 3, b * BW + 3:(b + 1) * BW - 3].mean() > 128:
            v |= 1 << b
    return v


def encode_mp4(path: Path, frames: range, gop: int = 8, bframes: int = 2, pts0: int = 0,
               codec: str = "libx264", w: int = W, h: int = H, fmt: str = "mp4") -> None:
    """Encode the frames numbered ``frames`` (pts = pts0 + k, time base 1/FPS)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    c = av.open(str(path), "w", format=fmt)
    vs = c.add_stream(codec, rate=FPS)
    vs.width, vs.height, vs.pix_fmt = w, h, "yuv420p"
    if codec == "libx264":
        vs.options = {"g": str(gop), "keyint_min": str(gop), "sc_threshold": "0",
                      "bf": str(bframes), "crf": "12", "preset": "fast"}
    vs.codec_context.time_base = Fraction(1, FPS)
    for k, i in enumerate(frames):
        f = av.VideoFrame.from_ndarray(draw(i, w, h), format="rgb24")
        f.pts = pts0 + k
        f.time_base = Fraction(1, FPS)
        for p in vs.encode(f):
            c.mux(p)
    for p in vs.encode(None):
        c.mux(p)
    c.close()


def frame_t(f: int) -> int:
    """Capture time (epoch ns) of video frame ``f``."""
    return T0 + f * INTERVAL


def ev(frame_ref: int, event_type: str, frac: float = 0.5, **kw) -> dict:
    """An actions row happening ``frac`` of the way through frame ``frame_ref``."""
    t = frame_t(frame_ref) + int(frac * INTERVAL)
    src = kw.pop("source", "keyboard" if event_type.startswith("key") else
                 "window" if event_type == "focus" else "mouse")
    return dict(t_ns=t, frame_ref=frame_ref if frame_ref >= 0 else None, event_type=event_type,
                source=src, **kw)


def default_events() -> list[dict]:
    """Events of the test video (54 frames, chunks [0,20) [20,40) [40,54))."""
    return [
        ev(-1, "focus", 0.2, meta=json.dumps({"title": "Game", "window_id": "0x1"})),
        ev(1, "mousemove", mouse_x=100.0, mouse_y=50.0, mouse_x_norm=100 / 1920, mouse_y_norm=50 / 1080),
        ev(3, "keydown", key="a", code="KeyA", state="pressed", meta=json.dumps({"vk": 65})),
        ev(5, "mousemove", 0.2, mouse_x=110.0, mouse_y=52.0, mouse_x_norm=110 / 1920, mouse_y_norm=52 / 1080),
        ev(5, "mousemove", 0.7, mouse_x=120.0, mouse_y=55.0, mouse_x_norm=120 / 1920, mouse_y_norm=55 / 1080),
        ev(6, "mousedown", mouse_button=0, state="pressed", mouse_x=120.0, mouse_y=55.0,
           mouse_x_norm=120 / 1920, mouse_y_norm=55 / 1080),
        ev(8, "mouseup", mouse_button=0, state="released", mouse_x=120.0, mouse_y=55.0,
           mouse_x_norm=120 / 1920, mouse_y_norm=55 / 1080),
        ev(10, "wheel", 0.1, mouse_wheel=1.0),
        ev(10, "wheel", 0.9, mouse_wheel=2.0),
        ev(12, "keydown", 0.1, key="Shift", code="ShiftLeft", state="pressed"),   # vk from code
        ev(12, "keyup", 0.8, key="Shift", code="ShiftLeft", state="released"),    # a tap
        ev(18, "keydown", key=" ", code="Space", state="pressed", meta=json.dumps({"vk": 32})),
        ev(25, "keyup", key="a", code="KeyA", state="released", meta=json.dumps({"vk": 65})),
        ev(30, "focus", meta=json.dumps({"title": "Browser", "window_id": "0x2"})),
        ev(33, "mousemove", mouse_x=300.0, mouse_y=200.0, mouse_x_norm=300 / 1920, mouse_y_norm=200 / 1080),
        ev(35, "keydown", key="w", code="KeyW", state="pressed", meta=json.dumps({"vk": 87}),
           is_valid=False),                                          # invalid: ignored
        ev(41, "keyup", key=" ", code="Space", state="released", meta=json.dumps({"vk": 32})),
        ev(45, "mousedown", mouse_button=2, state="pressed", mouse_x=300.0, mouse_y=200.0),
        ev(50, "wheel", mouse_wheel=-1.0),
        ev(22, "wheel", 0.3, mouse_wheel=0.0, meta=json.dumps({"wheel_dx": -1.0})),  # tilt left
        ev(22, "wheel", 0.6, mouse_wheel=1.0, meta=json.dumps({"wheel_dx": 2.0})),
    ]


@dataclass
class Built:
    root: Path
    video_id: str
    chunks: list          # [(start, end)]
    events: list = field(default_factory=list)
    n_frames: int = 0


def make_dataset(root: Path, video_id: str = "vid0", bounds=((0, 20), (20, 40), (40, 54)),
                 events: list | None = None, gop: int = 8, bframes: int = 2,
                 extra_video: bool = False) -> Built:
    """Write a dataset by hand: dataset.json, index.parquet, chunk MP4s, actions."""
    events = default_events() if events is None else events
    rows = []
    videos = [(video_id, bounds, events)]
    if extra_video:
        videos.append(("vid1", ((0, 12),), []))
    for vid, bnds, evs in videos:
        for cid, (s, e) in enumerate(bnds):
            shard = "SHARD_0000"
            vpath = f"video/{shard}/{vid}/{vid}_chunk_{cid:04d}.mp4"
            adir = f"actions/{shard}/{vid}/{vid}_chunk_{cid:04d}"
            # chunk 1 keeps the source stream's pts (as a stream copy would)
            encode_mp4(root / vpath, range(s, e), gop, bframes, pts0=s if cid == 1 else 0)
            mine = [r for r in evs if (s <= (r["frame_ref"] if r["frame_ref"] is not None else -1) < e)
                    or (cid == 0 and r["frame_ref"] is None)]
            arows = []
            for r in mine:
                row = {n: None for n in ACTIONS_PROCESSED_SCHEMA.names}
                row.update(is_valid=True, confidence=1.0)
                row.update(r)
                row["timestamp_ms"] = (r["t_ns"] - frame_t(s)) // 1_000_000
                fr = r["frame_ref"]
                row["frame_idx"] = None if fr is None else fr - s
                arows.append(row)
            t = pa.Table.from_pylist(arows, schema=ACTIONS_PROCESSED_SCHEMA)
            (root / adir).mkdir(parents=True, exist_ok=True)
            pq.write_table(t, root / adir / "actions_processed.parquet")
            raw = t.drop_columns(["is_valid", "confidence", "notes"])
            pq.write_table(raw, root / adir / "actions_raw.parquet")
            (root / adir / "metadata.json").write_text(json.dumps({
                "uuid": f"{vid}_chunk_{cid:04d}_actions", "chunk_id": f"{cid:04d}",
                "chunk_size": e - s}))
            rows.append(dict(video_id=vid, chunk_id=cid, shard=shard, start_frame=s,
                             end_frame=e, fps=float(FPS), start_t_ns=frame_t(s),
                             end_t_ns=frame_t(e), n_events=len(arows), video_path=vpath,
                             actions_dir=adir, audio_path=None))
    pq.write_table(pa.Table.from_pylist(rows, schema=CHUNK_INDEX_SCHEMA), root / "index.parquet")
    (root / "dataset.json").write_text(json.dumps({"format_version": "1.0.0"}))
    return Built(root, video_id, list(bounds), [r for r in events], bounds[-1][1])


def reference_state(events: list[dict], f: int) -> dict:
    """The action state at frame ``f`` computed the slow, obvious way (test oracle):
    replay every valid event with frame_ref < f in time order."""
    from companion.contract.keys import dom_code_to_vk
    keys, buttons = set(), set()
    pos = prev = (float("nan"), float("nan"))
    focus = None
    wheel = wheel_dx = 0.0
    pressed = set()
    for r in sorted(events, key=lambda r: r["t_ns"]):
        if r.get("is_valid") is False:
            continue
        fr = -1 if r["frame_ref"] is None else r["frame_ref"]
        if fr >= f:
            continue
        et = r["event_type"]
        vk = json.loads(r["meta"]).get("vk") if r.get("meta") and et.startswith("key") else None
        if vk is None and et.startswith("key"):
            vk = dom_code_to_vk(r.get("code"))
        if et == "keydown":
            keys.add(vk)
            if fr == f - 1:
                pressed.add(vk)
        elif et == "keyup":
            keys.discard(vk)
        elif et == "mousedown":
            buttons.add(r["mouse_button"])
        elif et == "mouseup":
            buttons.discard(r["mouse_button"])
        elif et == "wheel" and fr == f - 1:
            wheel += r["mouse_wheel"]
            wheel_dx += json.loads(r["meta"]).get("wheel_dx", 0.0) if r.get("meta") else 0.0
        elif et == "focus":
            focus = json.loads(r["meta"])["title"]
        if r.get("mouse_x") is not None:
            if fr < f - 1:
                prev = (r["mouse_x"], r["mouse_y"])
            pos = (r["mouse_x"], r["mouse_y"])
    if np.isnan(prev[0]):
        d = (0.0, 0.0)
    else:
        d = (pos[0] - prev[0], pos[1] - prev[1])
    return dict(keys=keys, buttons=buttons, pos=pos, delta=d, wheel=wheel, wheel_dx=wheel_dx,
                focus=focus, pressed=pressed)
