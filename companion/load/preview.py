"""Look at alignment instead of reading numbers: overlay MP4, PNG contact sheet, HTML viewer.

Sources (:class:`PreviewSource`):

- a **session folder** (``frames.parquet`` + ``events.parquet`` + ``<session_id>.mkv``,
  written by nm-align): :func:`load_session`;
- a **dataset chunk** (``index.parquet`` + chunk MP4 + actions): :func:`load_chunk`.

What is drawn at frame ``f`` is exactly the loader's action state at ``f``
(:mod:`companion.load.actions`: events with ``frame_ref < f``), plus context: the cursor
trail of the last :data:`TRAIL_FRAMES` frames, a ring for each click of the last
:data:`CLICK_FRAMES` frames, held keys (new presses highlighted), wheel steps, focused
window, frame number and time.

Outputs: :func:`render_mp4` (H.264, overlay burned in), :func:`render_contact_sheet`
(PNG grid, PyAV's png encoder), :func:`write_viewer` (one HTML file: the video as a base64
data URI or a relative link, the events as inline JSON, a scrubbable timeline canvas kept
in sync with ``video.currentTime``, and the keys/mouse overlay drawn in the browser).
"""
from __future__ import annotations

import base64
import html
import io
import json
import os
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pyarrow.parquet as pq

from companion.contract.keys import vk_to_dom
from companion.util.atomic import atomic_path, write_bytes_atomic, write_text_atomic
from companion.util.errors import BadInput

from . import draw
from .actions import (K_BTN_DOWN, K_BTN_HELD, K_BTN_UP, K_FOCUS, K_FOCUS_HELD, K_KEY_DOWN,
                      K_KEY_HELD,
                      K_KEY_UP, K_WHEEL, ActionTrack, EventColumns, build_track,
                      events_from_actions, events_from_session)
from .decode import DecoderPool, FrameIndex, scan_frames, to_array

def _readable(path: Path) -> None:
    """Atomic writes create 0600 temp files; give outputs the usual umask-based mode."""
    um = os.umask(0)
    os.umask(um)
    try:
        os.chmod(path, 0o666 & ~um)
    except OSError:
        pass


TRAIL_FRAMES = 15      # cursor trail length, frames
CLICK_FRAMES = 10      # a click ring stays this many frames
BUTTON_COLORS = {0: (255, 64, 64), 1: (64, 220, 64), 2: (64, 128, 255), 3: (255, 200, 0),
                 4: (255, 0, 255)}
BUTTON_NAMES = {0: "LEFT", 1: "MIDDLE", 2: "RIGHT", 3: "BACK", 4: "FWD"}


@dataclass
class PreviewSource:
    """Frames to show and the events of their video.

    ``video``: path of the file holding the frames. ``file_frames``: indices of the shown
    frames within that file (presentation order). ``frame_ids``: the same frames in
    ``frame_ref`` numbering (video frame index). ``capture_ns``: epoch ns capture times.
    ``video_s``: presentation time in seconds since the first shown frame.
    ``events``/``track``: all events of the video and the per-frame action state.
    ``width``/``height``: coded size of the video in pixels; ``fps``: nominal rate.
    """

    name: str
    video: str
    file_frames: np.ndarray
    frame_ids: np.ndarray
    capture_ns: np.ndarray
    video_s: np.ndarray
    events: EventColumns
    track: ActionTrack
    width: int
    height: int
    fps: float
    index: FrameIndex

    def __len__(self) -> int:
        return len(self.file_frames)

    def event_video_s(self) -> np.ndarray:
        """Each event's time on the shown video's clock (s since the first shown frame)."""
        ev = self.events
        k = ev.frame_ref - int(self.frame_ids[0])
        k = np.clip(k, 0, len(self) - 1)
        return self.video_s[k] + (ev.t_ns - self.capture_ns[k]) / 1e9

    def local(self, f: int) -> int:
        return int(f - self.frame_ids[0])


def _select(n: int, start: int, frames: int | None) -> np.ndarray:
    if start < 0 or start >= n:
        raise BadInput(f"--start {start} is outside the {n} frames (0..{n - 1})")
    stop = n if frames is None else min(n, start + max(1, int(frames)))
    return np.arange(start, stop)


def load_session(folder: str | os.PathLike, start: int = 0, frames: int | None = None
                 ) -> PreviewSource:
    """A session folder written by nm-align; shows frames ``start .. start+frames``."""
    d = Path(folder)
    if not d.is_dir():
        raise BadInput(f"{d}: not a folder")
    for need in ("frames.parquet", "events.parquet"):
        if not (d / need).is_file():
            raise BadInput(f"{d}: not an aligned session folder (no {need}; run nm-align first)")
    mkv = None
    meta = d / "metadata.json"
    if meta.is_file():
        try:
            doc = json.loads(meta.read_text())
        except ValueError:
            doc = {}
        sid = doc.get("session_id") if isinstance(doc, dict) else None
        al = doc.get("alignment") if isinstance(doc, dict) else None
        vf = al.get("video_file") if isinstance(al, dict) else None
        if isinstance(vf, str) and vf and (d / vf).is_file():
            mkv = d / vf                  # the recording nm-align aligned (maybe elsewhere)
        elif sid and (d / f"{sid}.mkv").is_file():
            mkv = d / f"{sid}.mkv"
    if mkv is None:
        cands = sorted(p for p in d.iterdir() if p.suffix.lower() in (".mkv", ".mp4", ".webm"))
        if len(cands) != 1:
            raise BadInput(f"{d}: expected one <session_id>.mkv recording, found "
                           f"{len(cands) or 'none'}")
        mkv = cands[0]
    try:
        ft = pq.read_table(d / "frames.parquet", columns=["frame_idx", "t_ns"])
        et = pq.read_table(d / "events.parquet")
    except Exception as e:   # pyarrow raises several types for a bad file
        raise BadInput(f"{d}: unreadable Parquet ({str(e).splitlines()[0]})") from None
    fi = scan_frames(mkv)
    fidx = ft.column("frame_idx").to_numpy()
    t_ns = ft.column("t_ns").to_numpy()
    if len(fidx) == 0:
        raise BadInput(f"{d}/frames.parquet: no frames")
    if int(fidx.max()) >= len(fi):
        raise BadInput(f"{mkv}: has {len(fi)} frames but frames.parquet refers to frame "
                       f"{int(fidx.max())}")
    sel = _select(len(fidx), start, frames)
    file_frames = fidx[sel].astype(np.int64)
    p = fi.pts[file_frames]
    video_s = ((p - p[0]) * float(fi.time_base)).astype(np.float64)
    ev = events_from_session(et)
    track = build_track(ev, len(fidx))
    fps = float(len(fi) - 1) / max(1e-9, (int(fi.pts[-1]) - int(fi.pts[0])) *
                                   float(fi.time_base)) if len(fi) > 1 else 30.0
    return PreviewSource(d.name, str(mkv), file_frames, fidx[sel].astype(np.int64),
                         t_ns[sel].astype(np.int64), video_s, ev, track, fi.width, fi.height,
                         fps, fi)


def load_chunk(root: str | os.PathLike, video_id: str | None = None, chunk_id: int = 0,
               start: int = 0, frames: int | None = None) -> PreviewSource:
    """Chunk ``chunk_id`` of ``video_id`` (default: the first video) of a dataset;
    ``start``/``frames`` select chunk-relative frames."""
    from .dataset import open_dataset
    ds = open_dataset(root)
    vid = video_id if video_id is not None else ds.videos()[0]
    ch = ds.chunk(vid, int(chunk_id))
    ci = ch.info
    fi = ch.frame_index()
    sel = _select(ci.n_frames, start, frames)
    cap = ci.start_t_ns + (ci.end_t_ns - ci.start_t_ns) * sel // ci.n_frames
    p = fi.pts[sel]
    video_s = ((p - p[0]) * float(fi.time_base)).astype(np.float64)
    from .dataset import _ACTION_COLUMNS
    parts = [events_from_actions(ds._read_actions(c, True, columns=_ACTION_COLUMNS))
             for c in ds.chunks(vid)]
    return PreviewSource(f"{vid}_chunk_{ci.chunk_id:04d}", ds._join(ci.video_path), sel,
                         ci.start_frame + sel, np.asarray(cap, np.int64), video_s,
                         EventColumns.concat(parts), ds.actions(vid), fi.width, fi.height,
                         float(ci.fps), fi)


def load_source(path: str | os.PathLike, video_id: str | None = None, chunk_id: int = 0,
                start: int = 0, frames: int | None = None) -> PreviewSource:
    """A dataset root (has index.parquet) or a session folder (has frames.parquet)."""
    p = Path(path)
    if (p / "index.parquet").is_file():
        return load_chunk(p, video_id, chunk_id, start, frames)
    if (p / "frames.parquet").is_file():
        return load_session(p, start, frames)
    if not p.exists():
        raise BadInput(f"{p}: does not exist")
    raise BadInput(f"{p}: neither a dataset root (index.parquet) nor an aligned session "
                   f"folder (frames.parquet)")


# ---- labels ------------------------------------------------------------------------------

_SHORT = {" ": "SPACE", "Space": "SPACE", "ArrowLeft": "LEFT", "ArrowRight": "RIGHT",
          "ArrowUp": "UP", "ArrowDown": "DOWN", "Escape": "ESC", "Control": "CTRL",
          "Backspace": "BKSP", "CapsLock": "CAPS", "PageUp": "PGUP", "PageDown": "PGDN",
          "Delete": "DEL", "Insert": "INS", "Meta": "META", "ContextMenu": "MENU"}


def _vk_label(vk: int) -> str:
    """DOM code (else key, else ``VK<n>``) of a Windows VK, for display."""
    key, code = vk_to_dom(vk)
    return code or key or f"VK{vk}"


def short_key(label: str | None) -> str:
    """A short upper-case key name for drawing: ``KeyA`` -> ``A``, ``ShiftLeft`` -> ``SHIFT``."""
    if not label:
        return "?"
    if label in _SHORT:
        return _SHORT[label]
    for pre in ("Key", "Digit"):
        if label.startswith(pre) and len(label) == len(pre) + 1:
            return label[-1].upper()
    for side in ("Left", "Right"):
        if label.endswith(side) and len(label) > len(side):
            base = label[: -len(side)]
            return _SHORT.get(base, base.upper())[:8]
    return label.upper()[:8]


# ---- burned-in overlay -------------------------------------------------------------------

def draw_overlay(img: np.ndarray, src: PreviewSource, f: int) -> np.ndarray:
    """Draw the action state of video frame ``f`` onto ``img`` (any size; in place)."""
    h, w = img.shape[:2]
    sc = max(1, int(round(h / 360)))
    st = src.track.state(f)
    ev = src.events
    b = ev.frame_ref
    # cursor trail: moves of the last TRAIL_FRAMES frames, then the current position
    lo = np.searchsorted(b, f - TRAIL_FRAMES, side="left")
    hi = np.searchsorted(b, f, side="left")
    sel = np.arange(lo, hi)
    sel = sel[~np.isnan(ev.x_norm[sel]) & ~np.isnan(ev.y_norm[sel])]
    pts = [(ev.x_norm[i] * w, ev.y_norm[i] * h, b[i]) for i in sel]
    for (x0, y0, b0), (x1, y1, _) in zip(pts, pts[1:]):
        age = (f - b0) / TRAIL_FRAMES
        draw.line(img, x0, y0, x1, y1, (255, 230, 0), thickness=max(2, sc + 1),
                  alpha=float(np.clip(1.0 - age, 0.15, 1.0)))
    # click rings
    clicks = np.flatnonzero((ev.kind[lo:hi] == K_BTN_DOWN)) + lo
    for i in clicks:
        if b[i] < f - CLICK_FRAMES:
            continue
        x, y = ev.x_norm[i], ev.y_norm[i]
        if np.isnan(x) or np.isnan(y):
            x, y = st.mouse_norm
        if np.isnan(x):
            continue
        age = f - 1 - b[i]
        col = BUTTON_COLORS.get(int(ev.button[i]), (255, 255, 255))
        draw.ring(img, x * w, y * h, (8 + 3 * age) * sc, 2 * sc, col,
                  alpha=float(max(0.2, 1 - age / CLICK_FRAMES)))
    # cursor
    mx, my = st.mouse_norm
    if not (np.isnan(mx) or np.isnan(my)):
        cx, cy = mx * w, my * h
        fill = (255, 255, 255)
        if st.buttons:
            fill = BUTTON_COLORS.get(min(st.buttons), fill)
        draw.disc(img, cx, cy, 6 * sc, (0, 0, 0))
        draw.disc(img, cx, cy, 4 * sc, fill)
        if st.wheel or st.wheel_dx:
            txt = " ".join(([f"WHEEL {st.wheel:+g}"] if st.wheel else [])
                           + ([f"HWHEEL {st.wheel_dx:+g}"] if st.wheel_dx else []))
            draw.text(img, cx + 10 * sc, cy - 4 * sc, txt, (255, 255, 255), sc, bg=(0, 0, 0))
    # header: frame, time, focus
    k = src.local(f)
    head = f"F {f}  {src.video_s[k]:.3f}S"
    x = draw.text(img, 4 * sc, 4 * sc, head, (255, 255, 255), sc, bg=(0, 0, 0))
    if st.focus_title:
        draw.text(img, x + 4 * sc, 4 * sc, st.focus_title[:40], (180, 220, 255), sc, bg=(0, 0, 0))
    # keys: held (dark box), pressed since the previous frame (yellow box)
    x, y = 4 * sc, h - (draw.GLYPH_H + 6) * sc - 4
    pressed = set(np.flatnonzero(st.keys_pressed_multi_hot).tolist())
    for vk in sorted(set(st.keys_vk) | pressed):
        lab = short_key(src.track.key_labels.get(vk) or _vk_label(vk))
        new = vk in pressed
        x = draw.text(img, x, y, lab, (0, 0, 0) if new else (255, 255, 255), sc,
                      bg=(255, 220, 0) if new else (40, 40, 40), bg_alpha=0.85)
    for bt in sorted(st.buttons):
        x = draw.text(img, x, y, BUTTON_NAMES.get(bt, str(bt)), (255, 255, 255), sc,
                      bg=BUTTON_COLORS.get(bt, (90, 90, 90)), bg_alpha=0.85)
    return img


def _out_path(out) -> Path:
    """An output file path; a directory there is bad input (named, not its temp file)."""
    out = Path(out)
    if out.is_dir():
        raise BadInput(f"{out}: is a directory; give an output file name")
    return out


def _even(n: int) -> int:
    return max(2, int(n) // 2 * 2)


def _out_size(src: PreviewSource, width: int | None) -> tuple[int, int]:
    if not width or width >= src.width:
        return _even(src.width), _even(src.height)
    return _even(width), _even(round(src.height * width / src.width))


def _frames(src: PreviewSource, size: tuple[int, int], pool: DecoderPool | None = None,
            which=None):
    pool = pool or DecoderPool(capacity=1)
    for k in (range(len(src)) if which is None else which):
        fr = pool.frame(src.video, int(src.file_frames[k]))
        yield k, to_array(fr, "rgb24", size)


def _encode_h264(frames, out: Path, size: tuple[int, int], times_s: np.ndarray, fps: float,
                 crf: int = 23, progress=None) -> None:
    """Encode (k, rgb) frames to H.264 MP4 with presentation times ``times_s[k]`` exactly
    (1/90000 s ticks); no B-frames, so browsers show frame k at currentTime times_s[k]."""
    with atomic_path(out, suffix=".mp4") as tmp:
        c = av.open(str(tmp), "w", format="mp4", options={"movflags": "+faststart"})
        try:
            vs = c.add_stream("libx264", rate=Fraction(fps).limit_denominator(1001))
            vs.width, vs.height, vs.pix_fmt = size[0], size[1], "yuv420p"
            vs.codec_context.time_base = Fraction(1, 90000)
            vs.time_base = Fraction(1, 90000)
            vs.options = {"crf": str(crf), "preset": "veryfast", "bf": "0",
                          "profile": "high"}
            last = -1
            for k, rgb in frames:
                vf = av.VideoFrame.from_ndarray(rgb, format="rgb24")
                pts = max(int(round(times_s[k] * 90000)), last + 1)
                vf.pts, vf.time_base = pts, Fraction(1, 90000)
                last = pts
                for p in vs.encode(vf):
                    c.mux(p)
                if progress:
                    progress.update()
            for p in vs.encode(None):
                c.mux(p)
        finally:
            c.close()


def render_mp4(src: PreviewSource, out: str | os.PathLike, width: int | None = None,
               crf: int = 20, progress=None) -> Path:
    """The shown frames with the overlay burned in, as H.264 MP4 (written atomically).
    ``width``: output width in px (height keeps the aspect ratio); default source size."""
    out = _out_path(out)
    size = _out_size(src, width)
    frames = ((k, draw_overlay(img, src, int(src.frame_ids[k]))) for k, img in _frames(src, size))
    _encode_h264(frames, out, size, src.video_s, src.fps, crf, progress)
    _readable(out)
    return out


def encode_png(rgb: np.ndarray) -> bytes:
    """PNG bytes of an (H, W, 3) uint8 image (PyAV's png encoder)."""
    cc = av.CodecContext.create("png", "w")
    cc.width, cc.height, cc.pix_fmt = rgb.shape[1], rgb.shape[0], "rgb24"
    cc.time_base = Fraction(1, 1)
    pk = cc.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24"))
    pk += cc.encode(None)
    return b"".join(bytes(p) for p in pk)


def decode_png(data: bytes) -> np.ndarray:
    """(H, W, 3) uint8 RGB of PNG bytes (PyAV's png decoder)."""
    with av.open(io.BytesIO(data), format="png_pipe") as c:
        return next(c.decode(video=0)).to_ndarray(format="rgb24")


def contact_sheet_frames(src: PreviewSource, n: int) -> np.ndarray:
    """Indices (into the shown frames) of ``n`` frames spread evenly, first and last included."""
    n = max(1, min(n, len(src)))
    return np.unique(np.rint(np.linspace(0, len(src) - 1, n)).astype(np.int64))


def render_contact_sheet(src: PreviewSource, out: str | os.PathLike, cols: int = 4,
                         rows: int = 3, thumb_width: int = 320) -> Path:
    """A PNG grid of ``cols * rows`` overlaid frames spread over the shown range."""
    if cols < 1 or rows < 1:
        raise BadInput("contact sheet needs at least 1 column and 1 row")
    out = _out_path(out)
    tw, th = _out_size(src, thumb_width)
    which = contact_sheet_frames(src, cols * rows)
    gap = 4
    nrows = (len(which) + cols - 1) // cols
    sheet = np.full((nrows * (th + gap) + gap, cols * (tw + gap) + gap, 3), 24, np.uint8)
    for n, (k, img) in enumerate(_frames(src, (tw, th), which=which)):
        draw_overlay(img, src, int(src.frame_ids[k]))
        r, c = divmod(n, cols)
        y, x = gap + r * (th + gap), gap + c * (tw + gap)
        sheet[y:y + th, x:x + tw] = img
    write_bytes_atomic(out, encode_png(sheet))
    _readable(out)
    return out


# ---- HTML viewer -------------------------------------------------------------------------

MAX_MOVES_PER_FRAME = 8   # viewer JSON: mouse moves kept per frame interval (trail detail)


def _thin_moves(idx: np.ndarray, buckets: np.ndarray, k: int) -> np.ndarray:
    """Keep at most about ``k`` of the moves in each frame interval, evenly spaced, always
    the last one (it is the cursor position at the next frame, so the state is exact).
    A 1000 Hz mouse otherwise puts ~33 moves per 30 fps frame into the page."""
    if len(idx) == 0:
        return idx
    starts = np.r_[0, np.flatnonzero(np.diff(buckets)) + 1]
    counts = np.diff(np.r_[starts, len(idx)])
    rank = np.arange(len(idx)) - np.repeat(starts, counts)
    cnt = np.repeat(counts, counts)
    step = np.maximum(1, -(-cnt // k))
    keep = (rank % step == 0) | (rank == cnt - 1)
    return idx[keep]


def viewer_data(src: PreviewSource) -> dict:
    """The viewer's inline JSON: frame times, and events in shown-frame numbering.

    Frame-exact state uses frame numbers like the loader (``f`` = index among the shown
    frames; an event "before frame f" has ``b < f``); drawing uses seconds on the video
    clock. ``keys``: [start_f, end_f (or null), label, vk, t_start_s, t_end_s, is_press]
    -- held for shown frames start_f <= f < end_f; ``is_press`` 0 when the span starts
    with a "held at chunk start" row (not a new press). ``buttons``: the same for mouse buttons.
    ``moves``: [t_s, b, x_norm, y_norm]. ``clicks``: [t_s, b, button, x_norm, y_norm].
    ``wheel``: [t_s, b, steps]. ``focus``: [t_s, b, title].
    """
    ev = src.events
    tv = src.event_video_s()
    f0 = int(src.frame_ids[0])
    b = ev.frame_ref - f0          # shown-frame numbering; < 0 before the first shown frame
    n = len(src)
    r4 = lambda v: None if v is None or not np.isfinite(v) else round(float(v), 4)   # noqa: E731

    def spans(kinds_down, kind_up, ids):
        out, open_ = [], {}
        for i in np.flatnonzero(np.isin(ev.kind, list(kinds_down) + [kind_up])):
            ident = int(ids[i])
            if ident < 0:
                continue
            if ev.kind[i] != kind_up:
                open_.setdefault(ident, i)
            elif ident in open_:
                s = open_.pop(ident)
                out.append((s, i))
        out += [(s, None) for s in open_.values()]
        rows = []
        for s, e in out:
            sf = int(b[s]) + 1
            ef = None if e is None else int(b[e]) + 1
            if (ef is not None and ef <= 0) or sf >= n:
                continue
            rows.append([sf, ef, s, e])
        return rows

    keys = []
    for sf, ef, s, e in spans((K_KEY_DOWN, K_KEY_HELD), K_KEY_UP, ev.vk):
        vk = int(ev.vk[s])
        lab = short_key(ev.label[s] or src.track.key_labels.get(vk) or _vk_label(vk))
        keys.append([sf, ef, lab, vk, r4(tv[s]), None if e is None else r4(tv[e]),
                     int(ev.kind[s] == K_KEY_DOWN)])
    buttons = []
    for sf, ef, s, e in spans((K_BTN_DOWN, K_BTN_HELD), K_BTN_UP, ev.button):
        buttons.append([sf, ef, int(ev.button[s]), r4(tv[s]), None if e is None else r4(tv[e])])
    keep = (b >= -1) & (b < n)     # what can be seen in (or just before) the shown range
    mv = np.flatnonzero(keep & ~np.isnan(ev.x_norm) & ~np.isnan(ev.y_norm))
    # carry the last position before the range, so the cursor shows from frame 0
    before = np.flatnonzero((b < -1) & ~np.isnan(ev.x_norm) & ~np.isnan(ev.y_norm))
    if len(before):
        mv = np.concatenate([before[-1:], mv])
    mv = _thin_moves(mv, b[mv], MAX_MOVES_PER_FRAME)
    moves = [[r4(tv[i]), int(max(b[i], -1)), r4(ev.x_norm[i]), r4(ev.y_norm[i])] for i in mv]
    clicks = [[r4(tv[i]), int(b[i]), int(ev.button[i]), r4(ev.x_norm[i]), r4(ev.y_norm[i])]
              for i in np.flatnonzero(keep & (ev.kind == K_BTN_DOWN))]
    wheel = [[r4(tv[i]), int(b[i]), r4(ev.wheel[i])]
             for i in np.flatnonzero(keep & (ev.kind == K_WHEEL))]
    foc_i = np.flatnonzero((ev.kind == K_FOCUS) | (ev.kind == K_FOCUS_HELD))
    focus = [[r4(tv[i]), int(max(b[i], -1)), ev.title[i] or ev.window_id[i] or ""]
             for i in foc_i if b[i] < n]
    if focus:   # only the last focus before the range matters
        first_in = next((j for j, x in enumerate(focus) if x[1] >= 0), len(focus))
        focus = focus[max(0, first_in - 1):]
    dur = float(src.video_s[-1] + 1.0 / max(src.fps, 1e-6))
    return {
        "name": src.name, "fps": src.fps, "width": src.width, "height": src.height,
        "first_frame": f0, "n_frames": n, "duration": round(dur, 6),
        "frame_times": [round(float(t), 6) for t in src.video_s],
        "keys": keys, "buttons": buttons, "moves": moves, "clicks": clicks,
        "wheel": wheel, "focus": focus,
        "trail_s": round(TRAIL_FRAMES / max(src.fps, 1e-6), 4),
    }


def write_viewer(src: PreviewSource, out: str | os.PathLike, embed: bool = True,
                 width: int | None = 960, crf: int = 26, progress=None) -> Path:
    """Write the HTML viewer. ``embed``: video inside the HTML as a base64 data URI (one
    self-contained file); else ``<out stem>.mp4`` beside it, linked relatively. The video
    is re-encoded to H.264 (plays in every browser; MKV/HEVC sources do not) at ``width``
    px, with each frame at its exact presentation time."""
    out = _out_path(out)
    size = _out_size(src, width)
    if embed:
        tmp_mp4 = out.with_name(f".{out.name}.video.mp4")
        try:
            _encode_h264(_frames(src, size), tmp_mp4, size, src.video_s, src.fps, crf, progress)
            video_url = "data:video/mp4;base64," + base64.b64encode(tmp_mp4.read_bytes()).decode()
        finally:
            tmp_mp4.unlink(missing_ok=True)
    else:
        mp4 = out.with_suffix(".mp4")
        _encode_h264(_frames(src, size), mp4, size, src.video_s, src.fps, crf, progress)
        _readable(mp4)
        video_url = mp4.name
    data = viewer_data(src)
    page = (_TEMPLATE
            .replace("__TITLE__", html.escape(f"nm-preview: {src.name}"))
            .replace("__VIDEO__", html.escape(video_url, quote=True))
            .replace("__DATA__", json.dumps(data, separators=(",", ":")).replace("</", "<\\/")))
    write_text_atomic(out, page)
    _readable(out)
    return out


_TEMPLATE = r"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>__TITLE__</title>
<style>
 body{margin:0;background:#15171a;color:#ddd;font:13px/1.4 system-ui,sans-serif}
 #wrap{max-width:1280px;margin:0 auto;padding:10px}
 #stage{position:relative;display:inline-block;line-height:0;background:#000}
 #video{display:block}
 #overlay{position:absolute;left:0;top:0;pointer-events:none}
 #timeline{display:block;width:100%;height:150px;margin-top:8px;cursor:pointer;background:#202328}
 #bar{display:flex;gap:10px;align-items:center;margin-top:6px;flex-wrap:wrap}
 #info{font:12px/1.4 ui-monospace,monospace;white-space:pre;color:#cde}
 button{background:#2d3238;color:#ddd;border:1px solid #444;border-radius:4px;padding:3px 10px}
 .key{display:inline-block;padding:1px 6px;margin:0 2px;border-radius:3px;background:#333}
 .key.new{background:#fc0;color:#000}
 #nm-state{display:none}
</style></head>
<body><div id="wrap">
<div id="stage"><video id="video" src="__VIDEO__" muted playsinline preload="auto"></video>
<canvas id="overlay"></canvas></div>
<canvas id="timeline" title="click or drag to seek"></canvas>
<div id="bar"><button id="play">play</button><button id="prev">&#9664; frame</button>
<button id="next">frame &#9654;</button><label><input type="checkbox" id="showov" checked> overlay</label>
<span id="keys"></span></div>
<div id="info"></div>
<pre id="nm-state"></pre>
</div>
<script id="nm-data" type="application/json">__DATA__</script>
<script>
"use strict";
const D = JSON.parse(document.getElementById("nm-data").textContent);
const V = document.getElementById("video"), OV = document.getElementById("overlay");
const TL = document.getElementById("timeline"), INFO = document.getElementById("info");
const KEYS = document.getElementById("keys"), STATE = document.getElementById("nm-state");
const BTN = {0:"#ff4040",1:"#40dc40",2:"#4080ff",3:"#ffc800",4:"#ff00ff"};
const BTN_NAME = {0:"left",1:"middle",2:"right",3:"back",4:"forward"};
const T = D.frame_times, N = D.n_frames, DUR = D.duration;
window.nmViewer = {ready:false, errors:[]};
window.addEventListener("error", e => window.nmViewer.errors.push(String(e.message)));

// largest i with T[i] <= t (frame on screen at video time t)
function frameAt(t) {
  let lo = 0, hi = N - 1;
  if (t <= T[0]) return 0;
  while (lo < hi) { const m = (lo + hi + 1) >> 1; if (T[m] <= t + 1e-6) lo = m; else hi = m - 1; }
  return lo;
}
// last row (sorted by b) with b < f
function lastBefore(rows, f) {
  let lo = 0, hi = rows.length - 1, r = -1;
  while (lo <= hi) { const m = (lo + hi) >> 1; if (rows[m][1] < f) { r = m; lo = m + 1; } else hi = m - 1; }
  return r;
}
function stateAt(f) {
  const held = D.keys.filter(k => k[0] <= f && (k[1] === null || f < k[1]));
  const keys = held.map(k => k[2]), keys_vk = [...new Set(held.map(k => k[3]))].sort((a, b) => a - b);
  const newp = D.keys.filter(k => k[0] === f && k[6]);
  const pressed = newp.map(k => k[2]), pressed_vk = [...new Set(newp.map(k => k[3]))].sort((a, b) => a - b);
  const buttons = D.buttons.filter(b => b[0] <= f && (b[1] === null || f < b[1])).map(b => b[2]);
  const mi = lastBefore(D.moves, f);
  const mouse = mi >= 0 ? [D.moves[mi][2], D.moves[mi][3]] : null;
  let wheel = 0; for (const w of D.wheel) if (w[1] === f - 1) wheel += w[2];
  const fi = lastBefore(D.focus, f);
  return {keys, keys_vk, pressed, pressed_vk, buttons: [...new Set(buttons)].sort(), mouse, wheel,
          focus: fi >= 0 ? D.focus[fi][2] : null};
}
function tx(t) { return t / DUR * TL.width; }

// ---- timeline background (drawn once per resize) ----
let BG = null;
function drawBackground() {
  const w = TL.clientWidth * devicePixelRatio, h = TL.clientHeight * devicePixelRatio;
  TL.width = w; TL.height = h;
  BG = document.createElement("canvas"); BG.width = w; BG.height = h;
  const g = BG.getContext("2d"), s = devicePixelRatio;
  g.fillStyle = "#202328"; g.fillRect(0, 0, w, h);
  const lanes = {focus: [0, 14], keys: [16, 70], buttons: [72, 92], wheel: [94, 106], move: [108, 146]};
  g.font = (10 * s) + "px monospace";
  // seconds grid
  g.strokeStyle = "#30343a"; g.fillStyle = "#778";
  for (let t = 0; t <= DUR; t += (DUR > 60 ? 10 : 1)) {
    g.beginPath(); g.moveTo(tx(t), 0); g.lineTo(tx(t), h); g.stroke();
    g.fillText(t.toFixed(0) + "s", tx(t) + 2, h - 2);
  }
  const L = (name) => [lanes[name][0] * s, (lanes[name][1] - lanes[name][0]) * s];
  // focus changes
  let [y, hh] = L("focus");
  D.focus.forEach((f, i) => {
    const x0 = Math.max(0, tx(f[0])), x1 = i + 1 < D.focus.length ? tx(D.focus[i + 1][0]) : w;
    g.fillStyle = i % 2 ? "#2f4a5a" : "#3a3f60"; g.fillRect(x0, y, x1 - x0, hh);
    g.fillStyle = "#cde"; g.fillText(String(f[2]).slice(0, 40), x0 + 3, y + hh - 3);
  });
  // keys: one row per distinct key (up to 6 rows, then shared)
  [y, hh] = L("keys");
  const ids = [...new Set(D.keys.map(k => k[3]))], rows = Math.min(6, Math.max(1, ids.length));
  const rh = hh / rows;
  D.keys.forEach(k => {
    const r = ids.indexOf(k[3]) % rows, x0 = Math.max(0, tx(k[4])), x1 = k[5] === null ? w : tx(k[5]);
    g.fillStyle = "#c9a200"; g.fillRect(x0, y + r * rh + 1, Math.max(2 * s, x1 - x0), rh - 2);
    g.fillStyle = "#000"; if (x1 - x0 > 20 * s) g.fillText(k[2], x0 + 2, y + r * rh + rh - 3);
  });
  // buttons
  [y, hh] = L("buttons");
  D.buttons.forEach(b => {
    const x0 = Math.max(0, tx(b[3])), x1 = b[4] === null ? w : tx(b[4]);
    g.fillStyle = BTN[b[2]] || "#fff"; g.fillRect(x0, y + 2, Math.max(2 * s, x1 - x0), hh - 4);
  });
  // wheel ticks
  [y, hh] = L("wheel");
  g.fillStyle = "#7fd";
  D.wheel.forEach(wv => g.fillRect(tx(wv[0]), y, 2 * s, hh));
  // cursor speed (normalized units per second), as a filled plot
  [y, hh] = L("move");
  g.strokeStyle = "#6af"; g.beginPath();
  let prev = null, vmax = 1e-9; const sp = [];
  for (const m of D.moves) { if (prev && m[0] > prev[0]) { const v = Math.hypot(m[2] - prev[2], m[3] - prev[3]) / (m[0] - prev[0]); sp.push([m[0], v]); vmax = Math.max(vmax, v); } prev = m; }
  sp.forEach((p, i) => { const X = tx(p[0]), Y = y + hh - Math.min(1, p[1] / vmax) * hh; i ? g.lineTo(X, Y) : g.moveTo(X, Y); });
  g.stroke();
  g.fillStyle = "#889";
  for (const [name, [a]] of Object.entries(lanes)) if (name !== "focus") g.fillText(name, 2, a * s + 10 * s);
}

function drawOverlay(f, st, t) {
  const r = V.getBoundingClientRect();
  OV.style.width = r.width + "px"; OV.style.height = r.height + "px";
  const w = OV.width = Math.max(1, Math.round(r.width * devicePixelRatio));
  const h = OV.height = Math.max(1, Math.round(r.height * devicePixelRatio));
  const g = OV.getContext("2d"); g.clearRect(0, 0, w, h);
  if (!document.getElementById("showov").checked) return;
  const s = devicePixelRatio;
  // trail: moves within trail_s before the frame's time
  const ft = T[f]; g.strokeStyle = "rgba(255,230,0,0.9)"; g.lineWidth = 2 * s; g.beginPath();
  let started = false;
  for (const m of D.moves) { if (m[1] >= f) break; if (m[0] < ft - D.trail_s) continue;
    const X = m[2] * w, Y = m[3] * h; started ? g.lineTo(X, Y) : g.moveTo(X, Y); started = true; }
  g.stroke();
  for (const c of D.clicks) { if (c[1] >= f || c[1] < f - 10 || c[3] === null) continue;
    const age = f - 1 - c[1]; g.strokeStyle = BTN[c[2]] || "#fff"; g.lineWidth = 2 * s;
    g.globalAlpha = Math.max(0.2, 1 - age / 10);
    g.beginPath(); g.arc(c[3] * w, c[4] * h, (8 + 3 * age) * s, 0, 7); g.stroke(); g.globalAlpha = 1; }
  if (st.mouse) { const X = st.mouse[0] * w, Y = st.mouse[1] * h;
    g.fillStyle = "#000"; g.beginPath(); g.arc(X, Y, 6 * s, 0, 7); g.fill();
    g.fillStyle = st.buttons.length ? BTN[Math.min(...st.buttons)] : "#fff";
    g.beginPath(); g.arc(X, Y, 4 * s, 0, 7); g.fill(); }
  g.font = "bold " + (14 * s) + "px monospace"; let x = 6 * s; const y = h - 8 * s;
  for (const k of st.keys.concat(st.pressed.filter(p => !st.keys.includes(p)))) {
    const tw = g.measureText(k).width + 8 * s, isNew = st.pressed.includes(k);
    g.fillStyle = isNew ? "rgba(255,220,0,0.9)" : "rgba(30,30,30,0.85)"; g.fillRect(x, y - 16 * s, tw, 20 * s);
    g.fillStyle = isNew ? "#000" : "#fff"; g.fillText(k, x + 4 * s, y - 1 * s); x += tw + 4 * s; }
}

// fit the video into the page width and ~60% of the window height, keeping its aspect
// ratio, so the timeline stays on screen; small videos are scaled up
function layout() {
  const maxW = document.getElementById("wrap").clientWidth - 2, maxH = Math.max(120, innerHeight * 0.6);
  const ar = (V.videoWidth || D.width) / (V.videoHeight || D.height);
  let w = maxW, h = w / ar;
  if (h > maxH) { h = maxH; w = h * ar; }
  V.style.width = Math.floor(w) + "px"; V.style.height = Math.floor(h) + "px";
}
let lastKey = "";
function render() {
  const t = V.currentTime, f = frameAt(t), st = stateAt(f);
  const c = TL.getContext("2d");
  if (BG) c.drawImage(BG, 0, 0);
  const px = tx(t);
  c.fillStyle = "rgba(255,255,255,0.08)"; c.fillRect(tx(T[f]), 0, Math.max(1, tx(f + 1 < N ? T[f + 1] : DUR) - tx(T[f])), TL.height);
  c.strokeStyle = "#ff3b3b"; c.lineWidth = 2 * devicePixelRatio;
  c.beginPath(); c.moveTo(px, 0); c.lineTo(px, TL.height); c.stroke();
  drawOverlay(f, st, t);
  const key = f + "|" + t.toFixed(3);
  if (key !== lastKey) {
    lastKey = key;
    INFO.textContent = `frame ${D.first_frame + f} (${f + 1}/${N})  t=${t.toFixed(3)}s  ` +
      `mouse=${st.mouse ? (st.mouse[0] * D.width).toFixed(0) + "," + (st.mouse[1] * D.height).toFixed(0) : "-"}  ` +
      `buttons=[${st.buttons.map(b => BTN_NAME[b] || b).join(",")}]  wheel=${st.wheel}  focus=${st.focus || "-"}`;
    KEYS.innerHTML = st.keys.map(k => `<span class="key${st.pressed.includes(k) ? " new" : ""}">${k.replace(/[&<>]/g, "")}</span>`).join("");
    Object.assign(window.nmViewer, {ready: true, time: t, frame: D.first_frame + f, local_frame: f,
      playhead_x: px, timeline_width: TL.width, duration: DUR, paused: V.paused, state: st});
    STATE.textContent = JSON.stringify(window.nmViewer);
  }
}
function loop() { render(); requestAnimationFrame(loop); }

function seekTo(ev) {
  const r = TL.getBoundingClientRect(), x = Math.min(Math.max(0, ev.clientX - r.left), r.width);
  V.currentTime = Math.min(x / r.width * DUR, T[N - 1] + 1e-3);
  render();
}
let dragging = false;
TL.addEventListener("mousedown", e => { dragging = true; seekTo(e); });
window.addEventListener("mousemove", e => { if (dragging) seekTo(e); });
window.addEventListener("mouseup", () => { dragging = false; });
const step = d => { V.pause(); const f = Math.min(N - 1, Math.max(0, frameAt(V.currentTime) + d)); V.currentTime = T[f] + 1e-4; };
document.getElementById("play").onclick = () => V.paused ? V.play() : V.pause();
document.getElementById("prev").onclick = () => step(-1);
document.getElementById("next").onclick = () => step(1);
window.addEventListener("keydown", e => {
  if (e.key === " ") { e.preventDefault(); V.paused ? V.play() : V.pause(); }
  else if (e.key === "ArrowLeft") step(-1); else if (e.key === "ArrowRight") step(1);
});
V.addEventListener("play", () => document.getElementById("play").textContent = "pause");
V.addEventListener("pause", () => document.getElementById("play").textContent = "play");
V.addEventListener("seeked", render); V.addEventListener("timeupdate", render);
V.addEventListener("loadedmetadata", () => { layout(); drawBackground(); render(); });
window.addEventListener("resize", () => { layout(); drawBackground(); render(); });
layout();
drawBackground();
if (new URLSearchParams(location.search).has("autoplay")) V.play();
requestAnimationFrame(loop);
</script></body></html>
"""
