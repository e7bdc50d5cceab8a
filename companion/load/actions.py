"""Per-frame action state from event rows: pure logic, no I/O.

Two event sources share one normalised form, :class:`EventColumns`:

- a dataset chunk's ``actions_processed.parquet`` / ``actions_raw.parquet``
  (``ACTIONS_*_SCHEMA``, seed 000 names: ``keydown keyup mousemove mousedown mouseup
  wheel focus``), via :func:`events_from_actions`;
- a session's ``events.parquet`` (``EVENTS_SCHEMA``: ``key_down key_up mouse_move
  mouse_click wheel focus``), via :func:`events_from_session`.

:func:`build_track` turns the events of one whole video into an :class:`ActionTrack`:
fixed-shape per-frame arrays, from which :meth:`ActionTrack.state` builds the
:class:`ActionState` of one frame.

Timing convention (what "the action state at frame f" means)
------------------------------------------------------------
Every event carries ``frame_ref`` = the frame on screen when it happened
(``t_ns[r] <= t < t_ns[r+1]``; -1 / null before frame 0). The state at frame ``f`` is
the input-device state **at the capture time of frame f**: every event with
``frame_ref < f`` has been applied, none with ``frame_ref >= f``. The deltas
(mouse dx/dy, wheel) of frame ``f`` accumulate the events with ``frame_ref == f - 1``,
i.e. what happened between the capture of the previous frame and this one. The action a
player took *after* seeing frame ``f`` is therefore the delta part of frame ``f + 1``.

Rows with ``state == "held"`` (a dataset chunk's carried state, repeated at its start
with ``frame_ref`` = its first frame: keys/buttons down, and from format 1.1.0 the last
known mouse position and the focused window) hold AT that frame: they are applied
before it and are never a press nor a movement. The mouse delta of a frame sums the
steps from one known position to the next of the real rows; a held mousemove row sets
the position without a step, so a chunk read on its own knows the cursor position and
focus at its first frame, and its deltas there never contain a jump from "unknown" or
from the previous chunk's position.

Key vocabulary
--------------
Keys are identified by Windows virtual-key codes (``companion.contract.keys``: the
canonical ``key_code`` on every OS). The multi-hot vector has :data:`KEY_VOCAB_SIZE`
= 256 entries; entry ``vk`` is 1 while that key is held (65 = 'A', 160 = left Shift,
162 = left Ctrl, 32 = Space, 37..40 = arrows; full table in
``companion/contract/keys.py``). Mouse buttons use DOM numbering (0 left, 1 middle,
2 right, 3 back/x1, 4 forward/x2) in a :data:`BUTTON_VOCAB_SIZE` = 5 multi-hot.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from companion.contract.keys import dom_code_to_vk, vk_to_dom

KEY_VOCAB_SIZE = 256
BUTTON_VOCAB_SIZE = 5

# normalised event kinds
K_OTHER, K_KEY_DOWN, K_KEY_UP, K_MOVE, K_BTN_DOWN, K_BTN_UP, K_WHEEL, K_FOCUS = range(8)
# "held at the chunk start" rows (state == "held", frame_ref = the chunk's start frame):
# the key/button is down AT that frame, and it is not a new press
K_KEY_HELD, K_BTN_HELD = 8, 9
# carried state at a chunk start (format 1.1.0): the mouse is AT that position and the
# window has focus AT that frame; the position is not a movement
K_MOVE_HELD, K_FOCUS_HELD = 10, 11
_HELD_KINDS = (K_KEY_HELD, K_BTN_HELD, K_MOVE_HELD, K_FOCUS_HELD)

_ACTION_KINDS = {
    "keydown": K_KEY_DOWN, "keyup": K_KEY_UP, "mousemove": K_MOVE,
    "mousedown": K_BTN_DOWN, "mouseup": K_BTN_UP, "wheel": K_WHEEL, "focus": K_FOCUS,
}
_SESSION_KINDS = {
    "key_down": K_KEY_DOWN, "key_up": K_KEY_UP, "mouse_move": K_MOVE,
    "wheel": K_WHEEL, "focus": K_FOCUS,
}
_BUTTON_NAMES = {"left": 0, "middle": 1, "right": 2, "x1": 3, "x2": 4}


@dataclass
class EventColumns:
    """Events of one video (or one chunk) as parallel numpy columns, sorted by time.

    ``frame_ref``: video frame on screen at the event (-1 before frame 0).
    ``t_ns``: epoch ns. ``kind``: one of the ``K_*`` constants. ``vk``: Windows VK or -1.
    ``label``: short display name of a key (DOM ``key`` or ``code``) or None.
    ``x_px``/``y_px``: absolute mouse pixels (NaN when the row has none);
    ``x_norm``/``y_norm``: 0-1 of the video frame (NaN when unknown).
    ``button``: DOM button index or -1. ``wheel``: vertical wheel steps (0 when none).
    ``wheel_dx``: horizontal wheel steps, positive = right (0 when none).
    ``title``/``window_id``: focus rows' window title and platform id (None otherwise).
    """

    t_ns: np.ndarray
    frame_ref: np.ndarray
    kind: np.ndarray
    vk: np.ndarray
    label: np.ndarray
    x_px: np.ndarray
    y_px: np.ndarray
    x_norm: np.ndarray
    y_norm: np.ndarray
    button: np.ndarray
    wheel: np.ndarray
    title: np.ndarray
    window_id: np.ndarray
    wheel_dx: np.ndarray

    def __len__(self) -> int:
        return len(self.t_ns)

    @staticmethod
    def concat(parts: list["EventColumns"]) -> "EventColumns":
        """Concatenate and re-sort by (t_ns, original order)."""
        if not parts:
            return _empty()
        cols = {f: np.concatenate([getattr(p, f) for p in parts]) for f in _FIELDS}
        order = np.argsort(cols["t_ns"], kind="stable")
        return EventColumns(**{f: v[order] for f, v in cols.items()})


_FIELDS = ("t_ns", "frame_ref", "kind", "vk", "label", "x_px", "y_px", "x_norm", "y_norm",
           "button", "wheel", "title", "window_id", "wheel_dx")


def _empty() -> EventColumns:
    f = np.zeros(0, np.float64)
    o = np.zeros(0, object)
    return EventColumns(np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.int8),
                        np.zeros(0, np.int32), o, f, f, f, f, np.zeros(0, np.int32), f, o, o,
                        f)


def _col(table: pa.Table, name: str):
    return table.column(name) if name in table.column_names else None


def _float(table: pa.Table, name: str) -> np.ndarray:
    c = _col(table, name)
    if c is None:
        return np.full(table.num_rows, np.nan)
    return c.to_numpy(zero_copy_only=False).astype(np.float64)  # nulls -> NaN


def _int(table: pa.Table, name: str, null: int) -> np.ndarray:
    c = _col(table, name)
    if c is None:
        return np.full(table.num_rows, null, np.int64)
    return np.array(c.fill_null(null).to_numpy(zero_copy_only=False), dtype=np.int64)  # copy


def _lookup(table: pa.Table, name: str, mapping: dict) -> np.ndarray:
    """int8 codes of a string column through ``mapping`` (unknown/null -> K_OTHER)."""
    c = _col(table, name)
    if c is None:
        return np.zeros(table.num_rows, np.int8)
    names = list(mapping)
    idx = pc.index_in(c, value_set=pa.array(names, pa.string())).fill_null(-1)
    idx = np.asarray(idx.to_numpy(zero_copy_only=False), np.int64)
    codes = np.asarray([mapping[k] for k in names] + [K_OTHER], np.int8)
    return codes[idx]     # -1 picks the trailing K_OTHER


def _equals(table: pa.Table, name: str, value: str) -> np.ndarray:
    c = _col(table, name)
    if c is None:
        return np.zeros(table.num_rows, bool)
    return np.asarray(pc.equal(c, value).fill_null(False).to_numpy(zero_copy_only=False), bool)


def _is_null(table: pa.Table, name: str) -> np.ndarray:
    c = _col(table, name)
    if c is None:
        return np.ones(table.num_rows, bool)
    return np.asarray(c.is_null().to_numpy(zero_copy_only=False), bool)


def _meta_window(meta: dict) -> tuple[str | None, str | None]:
    """(title, window id) from a ``meta`` JSON object, trying the names writers use."""
    win = meta.get("window") if isinstance(meta.get("window"), dict) else {}
    title = meta.get("title", meta.get("window_title", win.get("title")))
    wid = meta.get("window_id", meta.get("hWnd", win.get("id", win.get("hWnd"))))
    if title is None and isinstance(meta.get("window"), str):
        title = meta["window"]
    return (None if title is None else str(title)), (None if wid is None else str(wid))


def _finish(t_ns, frame_ref, kind, vk, label, x_px, y_px, x_norm, y_norm, button, wheel,
            title, window_id, wheel_dx) -> EventColumns:
    ev = EventColumns(
        np.asarray(t_ns, np.int64), np.asarray(frame_ref, np.int64),
        np.asarray(kind, np.int8), np.asarray(vk, np.int32),
        np.asarray(label, object), np.asarray(x_px, np.float64), np.asarray(y_px, np.float64),
        np.asarray(x_norm, np.float64), np.asarray(y_norm, np.float64),
        np.asarray(button, np.int32), np.nan_to_num(np.asarray(wheel, np.float64)),
        np.asarray(title, object), np.asarray(window_id, object),
        np.nan_to_num(np.asarray(wheel_dx, np.float64)))
    order = np.argsort(ev.t_ns, kind="stable")
    if not np.all(order == np.arange(len(order))):
        ev = EventColumns(**{f: getattr(ev, f)[order] for f in _FIELDS})
    return ev


def events_from_actions(table: pa.Table) -> EventColumns:
    """Normalise an ``actions_processed`` (or ``actions_raw``) table of one chunk.

    Rows with ``is_valid == False`` are dropped. A row whose ``state`` is ``held``
    (companion.dataset repeats keys/buttons still held at a chunk start, and the last
    mouse position and focus, with ``frame_ref`` = the chunk's start frame) means "down /
    there / focused at that frame": it is applied before that frame and is not counted
    as a new press or a movement (kinds ``K_*_HELD``).
    The VK comes from ``meta.vk`` when present, else from the DOM ``code``. Horizontal
    wheel steps come from ``meta.wheel_dx`` of wheel rows (``mouse_wheel`` is vertical).
    """
    if "is_valid" in table.column_names:
        valid = table.column("is_valid").fill_null(True).to_numpy(zero_copy_only=False)
        if not valid.all():
            table = table.filter(pa.array(valid))
    n = table.num_rows
    # vectorised over all rows (mouse moves are most of them, at up to 1000 Hz); the
    # Python loop below only visits key and focus rows
    kind = _lookup(table, "event_type", _ACTION_KINDS)
    held = _equals(table, "state", "held")
    has_key = ~(_is_null(table, "code") & _is_null(table, "key"))
    keyish = np.isin(kind, (K_KEY_DOWN, K_KEY_UP)) | ((kind == K_OTHER) & has_key)
    kind[held & keyish] = K_KEY_HELD
    kind[held & ~keyish & np.isin(kind, (K_BTN_DOWN, K_BTN_UP, K_OTHER))] = K_BTN_HELD
    kind[held & (kind == K_MOVE)] = K_MOVE_HELD
    kind[held & (kind == K_FOCUS)] = K_FOCUS_HELD
    vk = np.full(n, -1, np.int32)
    label = np.full(n, None, object)
    title = np.full(n, None, object)
    wid = np.full(n, None, object)
    wheel_dx = np.zeros(n, np.float64)
    slow = np.flatnonzero(np.isin(kind, (K_KEY_DOWN, K_KEY_UP, K_KEY_HELD, K_FOCUS,
                                         K_FOCUS_HELD))
                          | ((kind == K_WHEEL) & ~_is_null(table, "meta")))
    if len(slow):
        take = pa.array(slow)
        sub = {c: (table.column(c).take(take).to_pylist() if c in table.column_names
                   else [None] * len(slow)) for c in ("code", "key", "meta")}
        for j, i in enumerate(slow.tolist()):
            k = kind[i]
            meta = None
            m = sub["meta"][j]
            if m:
                try:
                    meta = json.loads(m)
                except ValueError:
                    meta = None
                if not isinstance(meta, dict):
                    meta = None
            if k == K_FOCUS or k == K_FOCUS_HELD:
                if meta:
                    title[i], wid[i] = _meta_window(meta)
                continue
            if k == K_WHEEL:
                dx = meta.get("wheel_dx") if meta else None
                if isinstance(dx, (int, float)) and math.isfinite(dx):
                    wheel_dx[i] = float(dx)
                continue
            v = meta.get("vk") if meta else None
            if v is None:
                v = dom_code_to_vk(sub["code"][j])
            if isinstance(v, (int, float)) and 0 <= int(v) < KEY_VOCAB_SIZE:
                vk[i] = int(v)
            label[i] = sub["key"][j] or sub["code"][j]
    frame_ref = _int(table, "frame_ref", -1)
    held = np.isin(kind, _HELD_KINDS)
    frame_ref[held] -= 1      # down / there / focused at its frame = applied before it
    return _finish(_int(table, "t_ns", 0), frame_ref, kind, vk, label,
                   _float(table, "mouse_x"), _float(table, "mouse_y"),
                   _float(table, "mouse_x_norm"), _float(table, "mouse_y_norm"),
                   _int(table, "mouse_button", -1), _float(table, "mouse_wheel"), title, wid,
                   wheel_dx)


def events_from_session(table: pa.Table) -> EventColumns:
    """Normalise a session's ``events.parquet`` (``EVENTS_SCHEMA``)."""
    n = table.num_rows
    kind = _lookup(table, "event_type", {**_SESSION_KINDS, "mouse_click": K_BTN_DOWN})
    click = kind == K_BTN_DOWN
    kind[click & _equals(table, "state", "released")] = K_BTN_UP
    button = np.full(n, -1, np.int32)
    bidx = _int(table, "button_index", -1)
    by_name = _lookup(table, "mouse_button", {k: v + 1 for k, v in _BUTTON_NAMES.items()})
    button[click] = np.where(bidx[click] >= 0, bidx[click], by_name[click].astype(np.int32) - 1)
    key_code = _int(table, "key_code", -1)
    vk = np.full(n, -1, np.int32)
    label = np.full(n, None, object)
    title = np.full(n, None, object)
    wid = np.full(n, None, object)
    slow = np.flatnonzero(np.isin(kind, (K_KEY_DOWN, K_KEY_UP, K_FOCUS)))
    if len(slow):
        take = pa.array(slow)
        sub = {c: (table.column(c).take(take).to_pylist() if c in table.column_names
                   else [None] * len(slow)) for c in ("code", "key", "metadata", "window_id")}
        for j, i in enumerate(slow.tolist()):
            if kind[i] == K_FOCUS:
                m = dict(sub["metadata"][j] or [])
                title[i] = m.get("title", m.get("window_title"))
                w = sub["window_id"][j]
                wid[i] = w if w is not None else m.get("window_id")
                continue
            v = int(key_code[i]) if key_code[i] >= 0 else dom_code_to_vk(sub["code"][j])
            if v is not None and 0 <= v < KEY_VOCAB_SIZE:
                vk[i] = v
            lab = sub["key"][j] or sub["code"][j]
            if lab is None and v is not None:
                dk, dc = vk_to_dom(v)
                lab = dk or dc
            label[i] = lab
    wheel = _float(table, "wheel_dy")
    delta = _float(table, "delta")
    wheel = np.where(np.isnan(wheel), delta, wheel)
    return _finish(_int(table, "t_ns", 0), _int(table, "frame_ref", -1), kind, vk, label,
                   _float(table, "mouse_x_px"), _float(table, "mouse_y_px"),
                   _float(table, "mouse_x_norm"), _float(table, "mouse_y_norm"),
                   button, wheel, title, wid, _float(table, "wheel_dx"))


@dataclass(frozen=True)
class ActionState:
    """The input-device state at one frame (see the module docstring for timing).

    ``keys_vk``: Windows VK codes held. ``keys``: display names of the held keys.
    ``keys_multi_hot``: uint8 (256,), 1 at each held VK.
    ``mouse_px``: (x, y) absolute pixels of the last known cursor position, NaN if none yet.
    ``mouse_norm``: the same as 0-1 of the video frame (NaN if unknown).
    ``mouse_delta_px``: (dx, dy) cursor movement in pixels since the previous frame.
    ``wheel``: vertical wheel steps since the previous frame (positive = away from user).
    ``wheel_dx``: horizontal wheel steps since the previous frame (positive = right).
    ``keys_pressed_multi_hot``: uint8 (256,), 1 at each VK with a key-down since the previous
    frame (catches taps shorter than a frame, which ``keys_multi_hot`` cannot show).
    ``buttons``: DOM indices of mouse buttons held; ``buttons_multi_hot``: uint8 (5,).
    ``buttons_pressed_multi_hot``: uint8 (5,), buttons pressed since the previous frame
    (a click is usually shorter than a frame).
    ``focus_title`` / ``focus_window_id``: the focused window (None before the first focus
    event).
    """

    keys_vk: frozenset
    keys: tuple
    keys_multi_hot: np.ndarray
    keys_pressed_multi_hot: np.ndarray
    mouse_px: tuple
    mouse_norm: tuple
    mouse_delta_px: tuple
    wheel: float
    buttons: frozenset
    buttons_multi_hot: np.ndarray
    buttons_pressed_multi_hot: np.ndarray
    focus_title: str | None
    focus_window_id: str | None
    wheel_dx: float = 0.0

    def as_arrays(self) -> dict[str, np.ndarray]:
        """Fixed-shape numeric arrays (collatable by any framework)."""
        return {
            "keys": self.keys_multi_hot,
            "keys_pressed": self.keys_pressed_multi_hot,
            "mouse_px": np.asarray(self.mouse_px, np.float32),
            "mouse_norm": np.asarray(self.mouse_norm, np.float32),
            "mouse_delta_px": np.asarray(self.mouse_delta_px, np.float32),
            "wheel": np.float32(self.wheel),
            "wheel_dx": np.float32(self.wheel_dx),
            "buttons": self.buttons_multi_hot,
            "buttons_pressed": self.buttons_pressed_multi_hot,
        }


@dataclass
class ActionTrack:
    """Per-frame action arrays of one video (frames ``0 .. n_frames-1``).

    ``keys_bits``: uint8 (n, 32), the 256-key multi-hot packed with ``np.packbits``.
    ``pressed_bits``: the same packing for key-downs since the previous frame.
    ``buttons``: uint8 (n, 5); ``buttons_pressed``: uint8 (n, 5) presses since the previous
    frame. ``mouse_px``/``mouse_norm``/``mouse_delta_px``: float32 (n, 2).
    ``wheel`` / ``wheel_dx``: float32 (n,) vertical / horizontal wheel steps since the
    previous frame. ``focus``: int32 (n,) index into ``focus_windows`` or -1.
    ``key_labels``: VK -> display name seen in the events.
    """

    n_frames: int
    keys_bits: np.ndarray
    pressed_bits: np.ndarray
    buttons: np.ndarray
    buttons_pressed: np.ndarray
    mouse_px: np.ndarray
    mouse_norm: np.ndarray
    mouse_delta_px: np.ndarray
    wheel: np.ndarray
    focus: np.ndarray
    focus_windows: list = field(default_factory=list)
    key_labels: dict = field(default_factory=dict)
    wheel_dx: np.ndarray | None = None     # None: all zero

    def __post_init__(self):
        if self.wheel_dx is None:
            self.wheel_dx = np.zeros(self.n_frames, np.float32)

    def keys_multi_hot(self, f: int) -> np.ndarray:
        return np.unpackbits(self.keys_bits[f])[:KEY_VOCAB_SIZE]

    def state(self, f: int) -> ActionState:
        """The :class:`ActionState` at video frame ``f``."""
        if not 0 <= f < self.n_frames:
            raise IndexError(f"frame {f} outside 0..{self.n_frames - 1}")
        mh = self.keys_multi_hot(f)
        vks = frozenset(int(v) for v in np.flatnonzero(mh))
        btn = self.buttons[f].copy()
        fi = int(self.focus[f])
        title, wid = self.focus_windows[fi] if fi >= 0 else (None, None)
        return ActionState(
            keys_vk=vks,
            keys=tuple(self.key_labels.get(v) or vk_to_dom(v)[0] or f"vk{v}" for v in sorted(vks)),
            keys_multi_hot=mh,
            keys_pressed_multi_hot=np.unpackbits(self.pressed_bits[f])[:KEY_VOCAB_SIZE],
            mouse_px=(float(self.mouse_px[f, 0]), float(self.mouse_px[f, 1])),
            mouse_norm=(float(self.mouse_norm[f, 0]), float(self.mouse_norm[f, 1])),
            mouse_delta_px=(float(self.mouse_delta_px[f, 0]), float(self.mouse_delta_px[f, 1])),
            wheel=float(self.wheel[f]),
            buttons=frozenset(int(b) for b in np.flatnonzero(btn)),
            buttons_multi_hot=btn,
            buttons_pressed_multi_hot=self.buttons_pressed[f].copy(),
            focus_title=title, focus_window_id=wid, wheel_dx=float(self.wheel_dx[f]))


def _last_before(buckets: np.ndarray, values: np.ndarray, n_frames: int) -> np.ndarray:
    """Per frame f, ``values`` of the last event with bucket < f (NaN when none).

    ``buckets`` must be non-decreasing (events sorted by time have non-decreasing
    frame_ref).
    """
    idx = np.searchsorted(buckets, np.arange(n_frames), side="left") - 1
    out = np.full(n_frames, np.nan)
    ok = idx >= 0
    out[ok] = values[idx[ok]]
    return out


def _intervals(n_frames: int, width: int, ids: np.ndarray, down: np.ndarray,
               buckets: np.ndarray) -> np.ndarray:
    """uint8 (n_frames, width): 1 where an id is held. A press in bucket r holds from frame
    r+1 until the frame after the bucket of its release (inclusive of r+1, exclusive of
    release bucket + 1)."""
    out = np.zeros((n_frames, width), np.uint8)
    start: dict[int, int] = {}
    for i, d, r in zip(ids.tolist(), down.tolist(), buckets.tolist()):
        if i < 0 or i >= width:
            continue
        if d:
            start.setdefault(i, r + 1)
        elif i in start:
            s = max(start.pop(i), 0)
            out[s:max(r + 1, s), i] = 1
    for i, s in start.items():
        out[max(s, 0):, i] = 1
    return out


def build_track(ev: EventColumns, n_frames: int) -> ActionTrack:
    """Per-frame arrays for frames ``0..n_frames-1`` of a video from all its events.

    Events are applied in time order. ``frame_ref`` of events sorted by time is
    non-decreasing; out-of-order rows (a writer bug) are clamped to stay monotonic.
    """
    n_frames = int(n_frames)
    b = np.maximum.accumulate(np.maximum(ev.frame_ref, -1)) if len(ev) else ev.frame_ref

    key = (ev.kind == K_KEY_DOWN) | (ev.kind == K_KEY_UP) | (ev.kind == K_KEY_HELD)
    keys = _intervals(n_frames, KEY_VOCAB_SIZE, ev.vk[key], ev.kind[key] != K_KEY_UP, b[key])
    pressed = np.zeros((n_frames, KEY_VOCAB_SIZE), np.uint8)
    kd = (ev.kind == K_KEY_DOWN) & (ev.vk >= 0)
    tgt = b[kd] + 1
    ok = (tgt >= 0) & (tgt < n_frames)
    pressed[tgt[ok], ev.vk[kd][ok]] = 1
    btn = (ev.kind == K_BTN_DOWN) | (ev.kind == K_BTN_UP) | (ev.kind == K_BTN_HELD)
    buttons = _intervals(n_frames, BUTTON_VOCAB_SIZE, ev.button[btn],
                         ev.kind[btn] != K_BTN_UP, b[btn])

    bpressed = np.zeros((n_frames, BUTTON_VOCAB_SIZE), np.uint8)
    bd = (ev.kind == K_BTN_DOWN) & (ev.button >= 0) & (ev.button < BUTTON_VOCAB_SIZE)
    tgt = b[bd] + 1
    ok = (tgt >= 0) & (tgt < n_frames)
    bpressed[tgt[ok], ev.button[bd][ok]] = 1

    def pos(xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
        has = ~np.isnan(xs) & ~np.isnan(ys)
        return np.stack([_last_before(b[has], xs[has], n_frames),
                         _last_before(b[has], ys[has], n_frames)], axis=1).astype(np.float32)

    mouse_px = pos(ev.x_px, ev.y_px)
    mouse_norm = pos(ev.x_norm, ev.y_norm)
    # movement: each row with a position moves the cursor from the previous known position
    # to its own, except a held row (carried state at a chunk start: it says where the
    # cursor is, it is not a movement, so a chunk read alone and the whole video agree).
    # Frame f sums the steps of bucket f-1; nothing before the first known position.
    delta = np.zeros((n_frames, 2), np.float32)
    has = np.flatnonzero(~np.isnan(ev.x_px) & ~np.isnan(ev.y_px))
    if n_frames > 1 and len(has) > 1:
        xy = np.stack([ev.x_px[has], ev.y_px[has]], axis=1)
        step = np.zeros_like(xy)
        step[1:] = xy[1:] - xy[:-1]
        step[ev.kind[has] == K_MOVE_HELD] = 0.0
        tgt = b[has] + 1
        ok = (tgt >= 1) & (tgt < n_frames)
        for axis in (0, 1):
            delta[:, axis] = np.bincount(tgt[ok], weights=step[ok, axis],
                                         minlength=n_frames)[:n_frames]
        delta[1:][np.isnan(mouse_px[:-1, 0])] = 0.0   # position unknown at the previous frame

    wheel = np.zeros(n_frames, np.float32)
    wheel_dx = np.zeros(n_frames, np.float32)
    w = ev.kind == K_WHEEL
    if w.any():
        tgt = b[w] + 1    # delta of frame f accumulates bucket f-1
        ok = (tgt >= 0) & (tgt < n_frames)
        wheel = np.bincount(tgt[ok], weights=ev.wheel[w][ok], minlength=n_frames)
        wheel = wheel[:n_frames].astype(np.float32)
        wheel_dx = np.bincount(tgt[ok], weights=ev.wheel_dx[w][ok], minlength=n_frames)
        wheel_dx = wheel_dx[:n_frames].astype(np.float32)

    foc = np.flatnonzero((ev.kind == K_FOCUS) | (ev.kind == K_FOCUS_HELD))
    windows: list = []
    seen: dict = {}
    fidx = np.zeros(len(foc), np.int64)
    for j, i in enumerate(foc):
        k = (ev.title[i], ev.window_id[i])
        if k not in seen:
            seen[k] = len(windows)
            windows.append(k)
        fidx[j] = seen[k]
    at = np.searchsorted(b[foc], np.arange(n_frames), side="left") - 1
    focus = np.where(at >= 0, fidx[np.maximum(at, 0)] if len(foc) else -1, -1).astype(np.int32)

    labels: dict = {}
    for v, lab in zip(ev.vk[key].tolist(), ev.label[key].tolist()):
        if v >= 0 and lab:
            labels.setdefault(v, lab)
    return ActionTrack(n_frames, np.packbits(keys, axis=1), np.packbits(pressed, axis=1),
                       buttons, bpressed, mouse_px, mouse_norm,
                       delta, wheel, focus, windows, labels, wheel_dx)
