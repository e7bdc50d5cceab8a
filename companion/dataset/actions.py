"""Pure action processing: the events table -> per-chunk actions_raw / actions_processed.

Two steps, both pure (tables and arrays in, tables out):

1. ``prepare_actions(events, frame_t_ns, width, height, end_t_ns)`` works on the whole
   session once: sorts events by time, maps them to seed 000 columns, and takes every
   cleaning decision (which rows to drop, which are invalid, key/button hold spans) with
   the whole session in view, so key state carries across chunk boundaries and a key
   pressed before the first frame is known to be held in chunk 0.
2. ``chunk_actions(prep, start_frame, end_frame, is_last)`` slices one chunk's tables.

Chunk membership: an event belongs to the chunk whose frames were on screen at its
``t_ns``: ``frame_ref = searchsorted(frame_t_ns, t_ns, 'right') - 1`` (docs/design.md),
recomputed here from the frames table so the dataset is consistent with it. Events
before the first frame, or at/after ``end_t_ns`` (end of the last frame's display
interval), belong to no chunk (they still feed the key state).

actions_raw (one row per event of the chunk, nothing dropped or changed):
  ``timestamp_ms = (t_ns - chunk_start_t_ns) // 1_000_000`` (floor, so >= 0; the exact
  time stays in ``t_ns``), ``frame_idx = frame_ref - start_frame``; ``event_type`` in the
  seed 000 vocabulary (keydown keyup mousemove mousedown mouseup wheel, plus ``focus``
  for window changes); ``mouse_x``/``mouse_y`` absolute screen pixels;
  ``mouse_*_norm`` as logged (0-1 of the video frame, may be outside);
  ``mouse_wheel`` vertical scroll steps; ``mouse_button`` DOM numbering (0 left,
  1 middle, 2 right, 3/4 back/forward); ``meta`` JSON object (``vk``: Windows
  virtual-key code, ``window_id``, ``wheel_dx``, entries of the event's metadata map).

actions_processed (same columns plus ``is_valid``, ``confidence``, ``notes``):
  * dropped: exact duplicates (same ``t_ns`` and same source-line ``hash``), a mouse
    move to the same position as the previous move, a keydown/mousedown of a key/button
    already held (OS auto-repeat), and a release followed within ``DEBOUNCE_NS`` by a
    press of the same key/button (switch bounce, X11 auto-repeat pairs): both rows go
    and the key stays held. Counts per reason are returned as chunk stats.
  * normalized coordinates: taken from the event or computed from pixels / video size,
    clamped to [0, 1]; a clamped row keeps ``is_valid`` but gets ``confidence``
    ``OUT_OF_FRAME_CONFIDENCE`` and a note. Non-finite coordinates: ``is_valid`` false.
  * key state repair: a release with no press held -> ``is_valid`` false,
    ``confidence`` 0, note. A key or button still held at a chunk start appears as a
    first row with ``state == "held"`` (event_type keydown/mousedown, ``timestamp_ms``
    0, ``frame_idx`` 0, no coordinates, note saying when it was pressed): such rows are
    not new presses. A press never released by the end of the recording gets a synthetic
    release row (``state`` released) at the last frame's time in the last chunk, with
    ``confidence`` ``SYNTHETIC_CONFIDENCE`` and a note.
  * rows are in ``t_ns`` order (held rows first).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from companion.contract.schemas import (ACTIONS_PROCESSED_SCHEMA, ACTIONS_RAW_SCHEMA,
                                        EVENTS_SCHEMA)
from companion.util.errors import BadInput

DEBOUNCE_NS = 5_000_000          # release -> re-press of the same key within 5 ms
OUT_OF_FRAME_CONFIDENCE = 0.5
SYNTHETIC_CONFIDENCE = 0.5

_TYPE_MAP = {"key_down": "keydown", "key_up": "keyup", "mouse_move": "mousemove",
             "mouse_click": "mousedown", "wheel": "wheel", "focus": "focus",
             # already seed 000 names (e.g. a zip import) pass through
             "keydown": "keydown", "keyup": "keyup", "mousemove": "mousemove",
             "mousedown": "mousedown", "mouseup": "mouseup"}
_SEED_TYPES = {"keydown", "keyup", "mousemove", "mousedown", "mouseup", "wheel", "focus"}

# drop reasons (index into DROP_REASONS; 0 = kept)
DROP_REASONS = ("kept", "duplicate", "repeated_move", "auto_repeat", "bounce")
_KINDS = ("keydown", "keyup", "mousemove", "mousedown", "mouseup", "wheel", "focus")
KINDS = _KINDS

_RAW_NAMES = [f.name for f in ACTIONS_RAW_SCHEMA]


@dataclass
class Hold:
    """A key or button held from row ``press`` until row ``release`` (-1: never released).
    Row numbers index the prepared (time-sorted) session arrays."""

    ident: tuple
    press: int
    release: int


@dataclass
class PreparedActions:
    """Session-wide, time-sorted event columns and the processing decisions.

    ``events``: the EVENTS_SCHEMA table sorted by t_ns; ``tcode``: index into ``KINDS``
    of each row's seed 000 event type (-1 unknown);
    ``t_ns`` (epoch ns) and ``frame_ref`` (global frame index, -1 before frame 0) as
    numpy; ``drop`` reason code per row; ``is_valid``/``confidence``/``flags`` (F_* bits,
    turned into notes) for kept rows; ``norm_x``/``norm_y`` clamped normalized coords; ``holds`` key/button hold spans; ``frame_t_ns`` capture time of each frame;
    ``end_t_ns`` end of the last frame's display interval.
    """

    events: pa.Table
    tcode: np.ndarray
    t_ns: np.ndarray
    frame_ref: np.ndarray
    drop: np.ndarray
    is_valid: np.ndarray
    confidence: np.ndarray
    norm_x: np.ndarray
    norm_y: np.ndarray
    flags: np.ndarray
    holds: list[Hold]
    frame_t_ns: np.ndarray
    end_t_ns: int
    out_of_frame: np.ndarray = field(default_factory=lambda: np.zeros(0, bool))
    orphan: np.ndarray = field(default_factory=lambda: np.zeros(0, bool))


def _np(col: pa.ChunkedArray | pa.Array, dtype, fill) -> np.ndarray:
    arr = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
    return np.asarray(arr.fill_null(fill).to_numpy(zero_copy_only=False), dtype=dtype)


# per-row flags (bits) and the note each one adds to actions_processed.notes
F_NONFINITE, F_OUT_OF_FRAME, F_UNKNOWN_TYPE, F_ORPHAN = 1, 2, 4, 8
_FLAG_NOTES = ((F_NONFINITE, "non-finite mouse coordinates"),
               (F_OUT_OF_FRAME, "mouse outside the video frame; normalized coordinates clamped"),
               (F_UNKNOWN_TYPE, "unknown event type"),
               (F_ORPHAN, "release without a press"))
_NOTE_OF_FLAGS = np.array(["; ".join(t for b, t in _FLAG_NOTES if f & b) or None
                           for f in range(16)], dtype=object)


def _build_meta(ev: pa.Table) -> pa.Array:
    """``meta`` JSON object strings (null when empty), one per event row.

    Keys: ``vk`` (key_code), ``window_id``, ``wheel_dx``, then the entries of the
    event's ``metadata`` map. Built per distinct (vk, window_id, wheel_dx) combination,
    so a million mouse moves cost a few array operations, not a million json.dumps.
    """
    n = ev.num_rows
    if n == 0:
        return pa.array([], pa.string())
    fields = []     # (json key, values list, codes array: index into values or -1)
    vk = ev.column("key_code").combine_chunks()
    for key, col in (("vk", vk), ("window_id", ev.column("window_id").combine_chunks()),
                     ("wheel_dx", ev.column("wheel_dx").combine_chunks())):
        if col.null_count == n:
            continue
        enc = pc.dictionary_encode(col)
        codes = enc.indices.fill_null(-1).to_numpy(zero_copy_only=False).astype(np.int64)
        fields.append((key, enc.dictionary.to_pylist(), codes))
    md = ev.column("metadata").combine_chunks()
    md_rows = np.zeros(0, np.int64)
    if md.null_count < n:
        # map arrays have list-like offsets (pyarrow has no list_value_length kernel for maps)
        offs = md.offsets.to_numpy(zero_copy_only=False)
        lengths = np.where(md.is_null().to_numpy(zero_copy_only=False), 0, np.diff(offs))
        md_rows = np.flatnonzero(lengths > 0)
    if not fields and md_rows.size == 0:
        return pa.nulls(n, pa.string())
    if np.prod([float(len(v) + 1) for _, v, _ in fields]) >= 2.0 ** 62:
        raise BadInput("events table has too many distinct key/window/wheel values")
    combo = np.zeros(n, np.int64)
    for _, values, codes in fields:
        combo = combo * (len(values) + 1) + (codes + 1)
    uniq, inverse = np.unique(combo, return_inverse=True)
    texts = []
    for u in uniq.tolist():
        obj = {}
        for key, values, _ in reversed(fields):
            base = len(values) + 1
            u, c = divmod(u, base)
            if c:
                obj[key] = values[c - 1]
        obj = dict(reversed(list(obj.items())))
        texts.append(json.dumps(obj, ensure_ascii=False) if obj else None)
    out = pc.take(pa.array(texts, pa.string()), pa.array(inverse.astype(np.int64)))
    if md_rows.size:
        repl = []
        for i in md_rows.tolist():
            base = json.loads(out[i].as_py() or "{}")
            base.update(dict(md[i].as_py()))
            repl.append(json.dumps(base, ensure_ascii=False))
        mask = np.zeros(n, bool)
        mask[md_rows] = True
        out = pc.replace_with_mask(out, pa.array(mask), pa.array(repl, pa.string()))
    return out


def _isnull(col) -> np.ndarray:
    return np.asarray(col.is_null().to_numpy(zero_copy_only=False), dtype=bool)


def _raw_cols(ev: pa.Table, tcode: np.ndarray) -> pa.Table:
    """ACTIONS_RAW columns (except timestamp_ms, frame_idx, t_ns, frame_ref) of event rows
    ``ev`` whose seed 000 kinds are ``tcode``."""
    et = ev.column("event_type").combine_chunks()
    enc = pc.dictionary_encode(et)
    mapped = pa.array([_TYPE_MAP.get(v, v) for v in enc.dictionary.to_pylist()], pa.string())
    etype = pc.take(mapped, enc.indices)
    up = tcode == _KINDS.index("mouseup")
    etype = pc.if_else(pa.array(up), pa.scalar("mouseup"), etype)
    is_down = (tcode == 0) | (tcode == 3)
    is_up = (tcode == 1) | (tcode == 4)
    # state for presses/releases when the table left it empty
    state = pc.if_else(pa.array(is_down), pa.scalar("pressed"),
                       pc.if_else(pa.array(is_up), pa.scalar("released"),
                                  ev.column("state").combine_chunks()))
    wheel = pc.coalesce(ev.column("wheel_dy").combine_chunks(), ev.column("delta").combine_chunks())
    return pa.table({
        "source": ev.column("source").combine_chunks(),
        "event_type": etype,
        "state": state,
        "key": ev.column("key").combine_chunks(),
        "code": ev.column("code").combine_chunks(),
        "mouse_x": ev.column("mouse_x_px").combine_chunks(),
        "mouse_y": ev.column("mouse_y_px").combine_chunks(),
        "mouse_x_norm": ev.column("mouse_x_norm").combine_chunks(),
        "mouse_y_norm": ev.column("mouse_y_norm").combine_chunks(),
        "mouse_wheel": pc.cast(wheel, pa.float32()),
        "mouse_button": ev.column("button_index").combine_chunks(),
        "meta": _build_meta(ev),
    })


def prepare_actions(events: pa.Table | None, frame_t_ns: np.ndarray, width: int, height: int,
                    end_t_ns: int, debounce_ns: int = DEBOUNCE_NS) -> PreparedActions:
    """Session-wide preparation (see the module docstring).

    ``events``: EVENTS_SCHEMA table (any row order; None or empty = no events).
    ``frame_t_ns``: epoch-ns capture time of every frame (frames.parquet ``t_ns``),
    non-decreasing. ``width``/``height``: video size in pixels (for normalization).
    ``end_t_ns``: end of the last frame's display interval (last t_ns + frame interval).
    """
    frame_t_ns = np.asarray(frame_t_ns, dtype=np.int64)
    if frame_t_ns.size and np.any(np.diff(frame_t_ns) < 0):
        raise BadInput("frames table t_ns is not non-decreasing")
    if width <= 0 or height <= 0:
        raise BadInput(f"invalid video size {width}x{height}")
    if events is None:
        events = EVENTS_SCHEMA.empty_table()
    missing = [f.name for f in EVENTS_SCHEMA if f.name not in events.column_names]
    if missing:
        raise BadInput(f"events table lacks columns: {', '.join(missing)}")
    try:
        events = events.select([f.name for f in EVENTS_SCHEMA]).cast(EVENTS_SCHEMA)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError) as e:
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise BadInput(f"events table does not match the events.parquet schema: {msg}") from None
    t = _np(events.column("t_ns"), np.int64, 0)
    if t.size and np.any(np.diff(t) < 0):
        order = np.argsort(t, kind="stable")
        events = events.take(pa.array(order))
        t = t[order]
    n = events.num_rows
    frame_ref = (np.searchsorted(frame_t_ns, t, side="right") - 1).astype(np.int64)

    # --- event kinds (int codes; the string columns are built per chunk) ---------------
    raw_enc = pc.dictionary_encode(events.column("event_type").combine_chunks())
    raw_idx = raw_enc.indices.to_numpy(zero_copy_only=False)
    raw_names = raw_enc.dictionary.to_pylist()
    lut = np.array([_KINDS.index(_TYPE_MAP[v]) if v in _TYPE_MAP else -1 for v in raw_names]
                   + [-1], np.int8)
    tcode = lut[raw_idx] if n else np.zeros(0, np.int8)
    released = np.asarray(pc.fill_null(pc.equal(events.column("state"), "released"), False)
                          .to_numpy(zero_copy_only=False), dtype=bool) if n else np.zeros(0, bool)
    clicks = [i for i, v in enumerate(raw_names) if v == "mouse_click"]
    if clicks:
        tcode[np.isin(raw_idx, clicks) & released] = _KINDS.index("mouseup")

    def type_mask(*names: str) -> np.ndarray:
        m = np.zeros(n, bool)
        for x in names:
            m |= tcode == _KINDS.index(x)
        return m

    is_down = type_mask("keydown", "mousedown")
    is_up = type_mask("keyup", "mouseup")
    is_keyev = type_mask("keydown", "keyup")

    drop = np.zeros(n, np.int8)
    is_valid = np.ones(n, bool)
    confidence = np.ones(n, np.float32)
    flags = np.zeros(n, np.uint8)

    # --- exact duplicates: same t_ns and same source-line hash -------------------------
    # t is sorted, so candidates are runs of equal t_ns (rare with ns clocks).
    if n > 1:
        eq = np.flatnonzero(t[1:] == t[:-1]) + 1
        if eq.size:
            hashes = events.column("hash").combine_chunks()
            seen: dict = {}
            for i in eq.tolist():
                if i - 1 not in seen:
                    seen = {i - 1: None}
                    group = {hashes[i - 1].as_py()}
                h = hashes[i].as_py()
                if h in group:
                    drop[i] = 1
                group.add(h)
                seen[i] = None

    # --- normalized coordinates --------------------------------------------------------
    px = _np(events.column("mouse_x_px"), np.float64, np.nan)
    py = _np(events.column("mouse_y_px"), np.float64, np.nan)
    nx = _np(events.column("mouse_x_norm"), np.float64, np.nan)
    ny = _np(events.column("mouse_y_norm"), np.float64, np.nan)
    nx = np.where(np.isnan(nx), px / width, nx)
    ny = np.where(np.isnan(ny), py / height, ny)
    has_pos = ~(_isnull(events.column("mouse_x_px")) & _isnull(events.column("mouse_x_norm")))
    with np.errstate(invalid="ignore"):
        bad = has_pos & ~(np.isfinite(nx) & np.isfinite(ny))
        oof = has_pos & ~bad & ((nx < 0) | (nx > 1) | (ny < 0) | (ny > 1))
    is_valid[bad] = False
    confidence[bad] = 0.0
    flags[bad] |= F_NONFINITE
    confidence[oof] = np.minimum(confidence[oof], OUT_OF_FRAME_CONFIDENCE)
    flags[oof] |= F_OUT_OF_FRAME
    nx = np.clip(nx, 0.0, 1.0)
    ny = np.clip(ny, 0.0, 1.0)

    # --- repeated identical moves ------------------------------------------------------
    moves = np.flatnonzero(type_mask("mousemove") & (drop == 0))
    if moves.size > 1:
        mx = np.where(np.isnan(px[moves]), nx[moves] * width, px[moves])
        my = np.where(np.isnan(py[moves]), ny[moves] * height, py[moves])
        rep = np.zeros(moves.size, bool)
        rep[1:] = (mx[1:] == mx[:-1]) & (my[1:] == my[:-1])
        drop[moves[rep]] = 2

    # unknown event types
    unknown = ~type_mask(*_SEED_TYPES)
    is_valid[unknown] = False
    confidence[unknown] = 0.0
    flags[unknown] |= F_UNKNOWN_TYPE

    # --- key / button state machine ----------------------------------------------------
    holds: list[Hold] = []
    orphan = np.zeros(n, bool)
    kb = np.flatnonzero((is_down | is_up) & (drop == 0))
    if kb.size:
        take = pa.array(kb)
        sub = {c: events.column(c).take(take).to_pylist()
               for c in ("code", "key", "key_code", "button_index", "mouse_button")}
        kev = is_keyev[kb].tolist()

        def ident(j: int) -> tuple:
            if kev[j]:
                if sub["key_code"][j] is not None:
                    return ("key", "vk", sub["key_code"][j])
                if sub["code"][j] is not None:
                    return ("key", "code", sub["code"][j])
                return ("key", "name", sub["key"][j])
            b = sub["button_index"][j]
            return ("button", b if b is not None else sub["mouse_button"][j])

        ids = [ident(j) for j in range(kb.size)]
        # next key event of the same ident, for bounce detection
        nxt = [-1] * kb.size
        last_seen: dict = {}
        for j in range(kb.size - 1, -1, -1):
            nxt[j] = last_seen.get(ids[j], -1)
            last_seen[ids[j]] = j
        held: dict[tuple, int] = {}
        skip = set()
        for j, i in enumerate(kb.tolist()):
            if j in skip:
                continue
            k = ids[j]
            if is_down[i]:
                if k in held:
                    drop[i] = 3
                else:
                    held[k] = i
            else:
                if k not in held:
                    orphan[i] = True
                    is_valid[i] = False
                    confidence[i] = 0.0
                    flags[i] |= F_ORPHAN
                    continue
                jn = nxt[j]
                if jn >= 0 and is_down[kb[jn]] and t[kb[jn]] - t[i] <= debounce_ns:
                    drop[i] = 4
                    drop[kb[jn]] = 4
                    skip.add(jn)
                    continue
                holds.append(Hold(k, held.pop(k), i))
        for k, i in held.items():
            holds.append(Hold(k, i, -1))
        holds.sort(key=lambda h: h.press)

    return PreparedActions(events=events, tcode=tcode, t_ns=t, frame_ref=frame_ref, drop=drop,
                           is_valid=is_valid, confidence=confidence,
                           norm_x=nx, norm_y=ny, flags=flags, holds=holds,
                           frame_t_ns=frame_t_ns, end_t_ns=int(end_t_ns),
                           out_of_frame=oof, orphan=orphan)


def chunk_rows(prep: PreparedActions, start_frame: int, end_frame: int) -> tuple[int, int]:
    """Row slice ``[lo, hi)`` of the prepared arrays belonging to frames [start, end)."""
    t0 = int(prep.frame_t_ns[start_frame])
    t1 = int(prep.frame_t_ns[end_frame]) if end_frame < prep.frame_t_ns.size else prep.end_t_ns
    lo = int(np.searchsorted(prep.t_ns, t0, side="left"))
    hi = int(np.searchsorted(prep.t_ns, t1, side="left"))
    return lo, hi


def _null_row(names) -> dict:
    return {n: None for n in names}


def chunk_actions(prep: PreparedActions, start_frame: int, end_frame: int,
                  is_last: bool) -> tuple[pa.Table, pa.Table, dict]:
    """``(actions_raw, actions_processed, stats)`` of the chunk holding frames
    ``[start_frame, end_frame)``. ``is_last``: the chunk ends the recording (synthetic
    releases go here). ``stats`` counts rows and drops per reason."""
    lo, hi = chunk_rows(prep, start_frame, end_frame)
    t0 = int(prep.frame_t_ns[start_frame])
    sl = _raw_cols(prep.events.slice(lo, hi - lo), prep.tcode[lo:hi])
    t = prep.t_ns[lo:hi]
    fr = prep.frame_ref[lo:hi]
    ts_ms = (t - t0) // 1_000_000
    fidx = fr - start_frame
    raw = pa.table({
        "timestamp_ms": pa.array(ts_ms, pa.int64()),
        "frame_idx": pa.array(fidx, pa.int64()),
        **{name: sl.column(name) for name in sl.column_names},
        "t_ns": pa.array(t, pa.int64()),
        "frame_ref": pa.array(fr, pa.int64()),
    }).select(_RAW_NAMES).cast(ACTIONS_RAW_SCHEMA)

    keep = prep.drop[lo:hi] == 0
    kidx = np.flatnonzero(keep)
    body = raw if kidx.size == raw.num_rows else raw.take(pa.array(kidx))
    body = body.set_column(body.schema.get_field_index("mouse_x_norm"), "mouse_x_norm",
                           _norm_col(prep.norm_x[lo:hi][kidx], raw.column("mouse_x_norm"), kidx,
                                     sl.column("mouse_x")))
    body = body.set_column(body.schema.get_field_index("mouse_y_norm"), "mouse_y_norm",
                           _norm_col(prep.norm_y[lo:hi][kidx], raw.column("mouse_y_norm"), kidx,
                                     sl.column("mouse_y")))
    body = body.append_column("is_valid", pa.array(prep.is_valid[lo:hi][kidx], pa.bool_()))
    body = body.append_column("confidence", pa.array(prep.confidence[lo:hi][kidx], pa.float32()))
    body = body.append_column("notes", pa.array(_NOTE_OF_FLAGS[prep.flags[lo:hi][kidx] & 15],
                                                pa.string()))

    names = [f.name for f in ACTIONS_PROCESSED_SCHEMA]
    extra_head, extra_tail = [], []
    def press_row(i: int) -> dict:
        return _raw_cols(prep.events.slice(i, 1), prep.tcode[i:i + 1]).to_pylist()[0]

    for h in prep.holds:
        if h.press >= hi:
            break
        released_before = h.release != -1 and h.release < lo
        if h.press < lo and not released_before:
            r = _null_row(names)
            pr = press_row(h.press)
            src = {c: pr[c] for c in ("source", "event_type", "key", "code", "mouse_button",
                                      "meta")}
            r.update(src)
            r.update(timestamp_ms=0, frame_idx=0, state="held", t_ns=t0,
                     frame_ref=start_frame, is_valid=True, confidence=1.0,
                     notes=f"held since before the chunk start (pressed at t_ns "
                           f"{int(prep.t_ns[h.press])})")
            extra_head.append(r)
        if is_last and h.release == -1 and h.press < hi:
            last_frame = end_frame - 1
            ts = max(int(prep.frame_t_ns[last_frame]), int(prep.t_ns[h.press]))
            fref = int(np.searchsorted(prep.frame_t_ns, ts, side="right") - 1)
            r = _null_row(names)
            pr = press_row(h.press)
            src = {c: pr[c] for c in ("source", "key", "code", "mouse_button", "meta")}
            r.update(src)
            up = "keyup" if h.ident[0] == "key" else "mouseup"
            r.update(timestamp_ms=(ts - t0) // 1_000_000, frame_idx=fref - start_frame,
                     event_type=up, state="released", t_ns=ts, frame_ref=fref,
                     is_valid=True, confidence=SYNTHETIC_CONFIDENCE,
                     notes="synthetic release: no release logged before the end of the "
                           "recording")
            extra_tail.append(r)
    parts = []
    if extra_head:
        parts.append(pa.Table.from_pylist(extra_head, schema=ACTIONS_PROCESSED_SCHEMA))
    parts.append(body.cast(ACTIONS_PROCESSED_SCHEMA))
    if extra_tail:
        parts.append(pa.Table.from_pylist(extra_tail, schema=ACTIONS_PROCESSED_SCHEMA))
    processed = pa.concat_tables(parts) if len(parts) > 1 else parts[0]
    if extra_tail:
        processed = processed.take(pc.sort_indices(processed, [("t_ns", "ascending")]))
    processed = processed.select(names)

    d = prep.drop[lo:hi]
    stats = {"events": int(hi - lo), "processed_rows": processed.num_rows,
             "held_at_start": len(extra_head), "synthetic_releases": len(extra_tail),
             "orphan_releases": int(prep.orphan[lo:hi].sum()),
             "out_of_frame": int(prep.out_of_frame[lo:hi].sum()),
             "invalid": int((~prep.is_valid[lo:hi][keep]).sum())}
    for code, reason in enumerate(DROP_REASONS[1:], start=1):
        stats[f"dropped_{reason}"] = int((d == code).sum())
    return raw, processed, stats


def _norm_col(values: np.ndarray, raw_col, kidx, px_col) -> pa.Array:
    """Normalized coordinate column: the clamped value where the row has a position."""
    raw_null = np.asarray(raw_col.is_null().to_numpy(zero_copy_only=False))[kidx] if len(kidx) \
        else np.zeros(0, bool)
    px_null = np.asarray(px_col.is_null().to_numpy(zero_copy_only=False))[kidx] if len(kidx) \
        else np.zeros(0, bool)
    mask = raw_null & px_null
    return pa.array(values.astype(np.float32), pa.float32(), mask=mask)
