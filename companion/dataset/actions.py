"""Pure, streaming action processing: events in ``t_ns`` order -> per-chunk
actions_raw / actions_processed tables.

``ActionsProcessor(frame_t_ns, chunks, width, height, end_t_ns)`` consumes the events a
batch at a time (``feed(batch)``, then ``finish()``); each call returns the chunks whose
output is final, in chunk order, as ``ChunkActions(index, raw, processed, stats)``. Only
the rows of chunks not yet returned are kept (plus a few per held key), so memory is
bounded by the chunk length and the batch size, not by the recording length. No I/O:
the caller reads the batches (``writer.py`` reads ``events.parquet`` with
``ParquetFile.iter_batches``); ``table_batches(table)`` turns an in-memory events table
(any row order) into batches. The output does not depend on how the events are split
into batches.

State carried across batch and chunk boundaries: the keys/buttons held (when and by
which row they were pressed), a release whose bounce partner may still come (see
below), the pointer position of the last move/click/wheel row (for repeated moves), the last known mouse
position and focused window (for the carried-state rows below), and the hashes of the
run of rows sharing the newest ``t_ns``. A chunk is returned once an event at or after its end plus
``DEBOUNCE_NS`` has been seen (so every release of the chunk knows whether it bounced),
the last chunk by ``finish()`` (its synthetic releases need the whole stream). Events
must come in non-decreasing ``t_ns`` order: a batch going back in time is a
``BadInput``.

Chunk membership: an event belongs to the chunk whose frames were on screen at its
``t_ns``: ``frame_ref = searchsorted(frame_t_ns, t_ns, 'right') - 1`` (docs/design.md),
recomputed here from the frames table so the dataset is consistent with it. Events
before the first chunk's first frame, or at/after the end of the last chunk (for the
chunk ending the video: ``end_t_ns``, end of the last frame's display interval), belong
to no chunk (they still feed the key state).

actions_raw (one row per event of the chunk, nothing dropped or changed):
  ``timestamp_ms = (t_ns - chunk_start_t_ns) // 1_000_000`` (floor, so >= 0; the exact
  time stays in ``t_ns``), ``frame_idx = frame_ref - start_frame``; ``event_type`` in the
  seed 000 vocabulary (keydown keyup mousemove mousedown mouseup wheel, plus ``focus``
  for window changes); ``mouse_x``/``mouse_y`` absolute screen pixels;
  ``mouse_*_norm`` as logged (0-1 of the video frame, may be outside);
  ``mouse_wheel`` vertical scroll steps; ``mouse_button`` DOM numbering (0 left,
  1 middle, 2 right, 3/4 back/forward); ``meta`` JSON object (``vk``: Windows
  virtual-key code, ``window_id``, ``wheel_dx``, entries of the event's metadata map).

actions_processed (same columns plus ``is_valid``, ``confidence``, ``notes``). Every
decision looks at the whole session in time order, not at one chunk:
  * dropped: exact duplicates (same ``t_ns`` and same source-line ``hash``), a mouse
    move to the same position as the previous move, a keydown/mousedown of a key/button
    already held (OS auto-repeat), and a release followed within ``DEBOUNCE_NS`` by a
    press of the same key/button as the next event of that key/button (switch bounce,
    X11 auto-repeat pairs): both rows go and the key stays held. Counts per reason are
    returned as chunk stats.
  * normalized coordinates: taken from the event or computed from pixels / video size,
    clamped to [0, 1]; a clamped row keeps ``is_valid`` but gets ``confidence``
    ``OUT_OF_FRAME_CONFIDENCE`` and a note. Non-finite coordinates: ``is_valid`` false.
  * key state repair: a release with no press held -> ``is_valid`` false,
    ``confidence`` 0, note. A key or button still held at a chunk start (pressed before
    it, also before the first frame) appears as a first row with ``state == "held"``
    (event_type keydown/mousedown, ``timestamp_ms`` 0, ``frame_idx`` 0, no coordinates,
    note saying when it was pressed): such rows are not new presses. A press never
    released (not even after the end of the video) gets a synthetic release row
    (``state`` released) at the last frame's time in the chunk ending the video, with
    ``confidence`` ``SYNTHETIC_CONFIDENCE`` and a note.
  * carried state (format 1.1.0): at every chunk start, after the held key/button rows,
    a ``held`` mousemove row with the last known mouse position and a ``held`` focus
    row with the focused window, when they exist. Last known position: the last row
    before the chunk start (in any chunk, or before the first frame) that is kept (not
    dropped), valid (``is_valid``: finite coordinates, not an orphan release) and of
    kind mousemove/mousedown/mouseup/wheel with both normalized coordinates; the held row
    repeats its ``mouse_x``/``mouse_y`` (pixels as logged, may be null) and its clamped
    normalized coordinates, its ``confidence`` (0.5 when clamped, with the out-of-frame
    note) and says when it was seen. Focus: the last kept valid focus row before the
    chunk start; the held row repeats its ``source`` and ``meta``. ``timestamp_ms`` 0,
    ``frame_idx`` 0, ``t_ns`` = the chunk start, as for held keys. Never in actions_raw.
  * rows are in ``t_ns`` order (held rows first: keys/buttons in press order, then the
    position, then the focus).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Iterator, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from companion.contract.schemas import (ACTIONS_PROCESSED_SCHEMA, ACTIONS_RAW_SCHEMA,
                                        EVENTS_SCHEMA)
from companion.util.errors import BadInput

DEBOUNCE_NS = 5_000_000          # release -> re-press of the same key within 5 ms
OUT_OF_FRAME_CONFIDENCE = 0.5
SYNTHETIC_CONFIDENCE = 0.5
BATCH_ROWS = 16_384              # rows per batch (table_batches, the writer's file reader)

_TYPE_MAP = {"key_down": "keydown", "key_up": "keyup", "mouse_move": "mousemove",
             "mouse_click": "mousedown", "wheel": "wheel", "focus": "focus",
             # already seed 000 names (e.g. a zip import) pass through
             "keydown": "keydown", "keyup": "keyup", "mousemove": "mousemove",
             "mousedown": "mousedown", "mouseup": "mouseup"}

# drop reasons (index into DROP_REASONS; 0 = kept)
DROP_REASONS = ("kept", "duplicate", "repeated_move", "auto_repeat", "bounce")
KINDS = ("keydown", "keyup", "mousemove", "mousedown", "mouseup", "wheel", "focus")
_KEYDOWN, _KEYUP, _MOVE, _MOUSEDOWN, _MOUSEUP, _WHEEL, _FOCUS = range(7)
_POSITION_KINDS = (_MOVE, _MOUSEDOWN, _MOUSEUP, _WHEEL)   # rows whose position is carried

_EVENT_NAMES = [f.name for f in EVENTS_SCHEMA]
_RAW_NAMES = [f.name for f in ACTIONS_RAW_SCHEMA]
_PROC_NAMES = [f.name for f in ACTIONS_PROCESSED_SCHEMA]
_PRESS_FIELDS = ("source", "event_type", "key", "code", "mouse_button", "meta")

# per-row flags (bits) and the note each one adds to actions_processed.notes
F_NONFINITE, F_OUT_OF_FRAME, F_UNKNOWN_TYPE, F_ORPHAN = 1, 2, 4, 8
_FLAG_NOTES = ((F_NONFINITE, "non-finite mouse coordinates"),
               (F_OUT_OF_FRAME, "mouse outside the video frame; normalized coordinates clamped"),
               (F_UNKNOWN_TYPE, "unknown event type"),
               (F_ORPHAN, "release without a press"))
_NOTES = pa.array(["; ".join(t for b, t in _FLAG_NOTES if f & b) or None for f in range(16)],
                  pa.string())


@dataclass
class ChunkActions:
    """Output of one chunk: ``index`` into the processor's chunk list, the
    ACTIONS_RAW / ACTIONS_PROCESSED tables and ``stats`` (row counts, drops per reason)."""

    index: int
    raw: pa.Table
    processed: pa.Table
    stats: dict


class _Hold:
    """A key or button held since ``press_t`` (``fields``: the press row's source,
    event_type, key, code, mouse_button, meta). ``release_t``: set once a release is
    final. ``pending_t``/``pending_ref``: a release not final yet (a press within the
    debounce window would make it a bounce); ``pending_ref`` = (drop array, row)."""

    __slots__ = ("ident", "press_t", "fields", "release_t", "pending_t", "pending_ref")

    def __init__(self, ident: tuple, press_t: int, fields: dict):
        self.ident, self.press_t, self.fields = ident, press_t, fields
        self.release_t = self.pending_t = self.pending_ref = None


def _np(col, dtype, fill) -> np.ndarray:
    arr = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
    return np.asarray(arr.fill_null(fill).to_numpy(zero_copy_only=False), dtype=dtype)


def _isnull(col) -> np.ndarray:
    return np.asarray(col.is_null().to_numpy(zero_copy_only=False), dtype=bool)


def _conform(events: pa.Table | pa.RecordBatch) -> pa.Table:
    """``events`` as an EVENTS_SCHEMA table (columns selected, types cast) or BadInput."""
    if isinstance(events, pa.RecordBatch):
        events = pa.Table.from_batches([events])
    missing = [n for n in _EVENT_NAMES if n not in events.column_names]
    if missing:
        raise BadInput(f"events table lacks columns: {', '.join(missing)}")
    events = events.select(_EVENT_NAMES)
    if events.schema.equals(EVENTS_SCHEMA, check_metadata=False):
        return events
    try:
        return events.cast(EVENTS_SCHEMA)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError) as e:
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise BadInput(f"events table does not match the events.parquet schema: {msg}") from None


def table_batches(events: pa.Table | None,
                  batch_rows: int = BATCH_ROWS) -> Iterator[pa.RecordBatch]:
    """Batches of an in-memory events table in ``t_ns`` order (a stable sort when the
    table is not sorted; null ``t_ns`` counts as 0). None: no batches."""
    if events is None:
        return
    events = _conform(events)
    t = _np(events.column("t_ns"), np.int64, 0)
    if t.size and np.any(np.diff(t) < 0):
        events = events.take(pa.array(np.argsort(t, kind="stable")))
    yield from events.to_batches(max_chunksize=batch_rows)


def _build_meta(ev: pa.Table) -> pa.Array:
    """``meta`` JSON object strings (null when empty), one per event row.

    Keys: ``vk`` (key_code), ``window_id``, ``wheel_dx``, then the entries of the
    event's ``metadata`` map. Built per distinct (vk, window_id, wheel_dx) combination,
    so a million mouse moves cost a few array operations, not a million json.dumps.
    Each row's text depends only on that row.
    """
    n = ev.num_rows
    if n == 0:
        return pa.array([], pa.string())
    fields = []     # (json key, values list, codes array: index into values or -1)
    for key, col in (("vk", ev.column("key_code").combine_chunks()),
                     ("window_id", ev.column("window_id").combine_chunks()),
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
        take = pa.array(md_rows)
        memo: dict = {}      # (base text, map entries) -> text: key rows repeat a lot
        repl = []
        for text, entries in zip(pc.take(out, take).to_pylist(), md.take(take).to_pylist()):
            k = (text, tuple(entries))
            r = memo.get(k)
            if r is None:
                base = json.loads(text or "{}")
                base.update(dict(entries))
                r = memo[k] = json.dumps(base, ensure_ascii=False)
            repl.append(r)
        mask = np.zeros(n, bool)
        mask[md_rows] = True
        out = pc.replace_with_mask(out, pa.array(mask), pa.array(repl, pa.string()))
    return out


def _raw_cols(ev: pa.Table, tcode: np.ndarray) -> pa.Table:
    """ACTIONS_RAW columns (except timestamp_ms, frame_idx, t_ns, frame_ref) of event rows
    ``ev`` whose seed 000 kinds are ``tcode``."""
    enc = pc.dictionary_encode(ev.column("event_type").combine_chunks())
    mapped = pa.array([_TYPE_MAP.get(v, v) for v in enc.dictionary.to_pylist()], pa.string())
    etype = pc.take(mapped, enc.indices)
    etype = pc.if_else(pa.array(tcode == _MOUSEUP), pa.scalar("mouseup"), etype)
    is_down = (tcode == _KEYDOWN) | (tcode == _MOUSEDOWN)
    is_up = (tcode == _KEYUP) | (tcode == _MOUSEUP)
    # state for presses/releases when the table left it empty
    state = pc.if_else(pa.array(is_down), pa.scalar("pressed"),
                       pc.if_else(pa.array(is_up), pa.scalar("released"),
                                  ev.column("state").combine_chunks()))
    wheel = pc.coalesce(ev.column("wheel_dy").combine_chunks(),
                        ev.column("delta").combine_chunks())
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


# per-row numpy columns kept for the rows of chunks not returned yet
_ROW_ARRAYS = ("t", "fr", "drop", "is_valid", "confidence", "nx", "ny", "flags", "orphan",
               "oof")


class ActionsProcessor:
    """Streaming actions processing (see the module docstring).

    ``frame_t_ns``: epoch-ns capture time of every frame (frames.parquet ``t_ns``),
    non-decreasing. ``chunks``: ``(start_frame, end_frame)`` of every chunk, contiguous
    and in order (a chunk ending at the last frame is the one that gets synthetic
    releases). ``width``/``height``: video size in pixels (for normalization).
    ``end_t_ns``: end of the last frame's display interval (last t_ns + frame interval).

    ``feed(batch)`` takes an EVENTS_SCHEMA ``RecordBatch`` or ``Table`` (rows in
    non-decreasing ``t_ns`` order, also across batches) and returns the chunks now
    complete; ``finish()`` returns the rest. Every chunk is returned exactly once, in
    order. ``n_events`` and ``sources`` (set of ``source`` values) cover every event fed,
    also those in no chunk.
    """

    def __init__(self, frame_t_ns, chunks: Sequence[tuple[int, int]], width: int, height: int,
                 end_t_ns: int, debounce_ns: int = DEBOUNCE_NS):
        ft = np.asarray(frame_t_ns, dtype=np.int64)
        if ft.size and np.any(np.diff(ft) < 0):
            raise BadInput("frames table t_ns is not non-decreasing")
        if width <= 0 or height <= 0:
            raise BadInput(f"invalid video size {width}x{height}")
        chunks = [(int(s), int(e)) for s, e in chunks]
        for k, (s, e) in enumerate(chunks):
            if not 0 <= s < e <= ft.size or (k and s != chunks[k - 1][1]):
                raise BadInput(f"chunk {k} frames [{s}, {e}) do not continue the chunk "
                               f"list of a {ft.size}-frame video")
        self.frame_t = ft
        self.chunks = chunks
        self.width, self.height = int(width), int(height)
        self.end_t_ns = int(end_t_ns)
        self.debounce_ns = int(debounce_ns)
        if chunks and chunks[-1][1] == ft.size and self.end_t_ns <= int(ft[-1]):
            raise BadInput(f"end_t_ns {self.end_t_ns} is not after the last frame")
        # chunk c holds t in [bounds[c], bounds[c + 1])
        ends = [int(ft[e]) if e < ft.size else self.end_t_ns for _, e in chunks]
        self._bounds = np.array([int(ft[s]) for s, _ in chunks] + ends[-1:], np.int64)
        self.n_events = 0
        self.sources: set = set()
        self._last_t: int | None = None       # newest t_ns seen
        self._dup_group: set = set()          # hashes of the rows at t == _last_t
        self._last_pos: tuple | None = None   # (x, y) of the last kept row with a position
        self._held: dict[tuple, _Hold] = {}   # ident -> hold, in press order
        self._pending: dict[tuple, _Hold] = {}  # holds whose release is not final yet
        self._snaps: dict[int, list[_Hold]] = {}  # chunk -> holds at its start
        self._next_snap = 0
        self._pieces: dict[int, list[tuple[pa.Table, dict]]] = {}
        self._next_emit = 0
        self._finished = False
        # carried state (mouse position, focus) at every chunk start, see _carry_state
        self._pos: list[tuple] = []             # position stack: (t, fields, ref)
        self._focus: tuple | None = None        # (t, fields) of the last kept valid focus
        self._state_snaps: dict[int, tuple] = {}  # chunk -> (position stack, focus)
        self._next_state_snap = 0

    # --- input -----------------------------------------------------------------------
    def feed(self, batch: pa.RecordBatch | pa.Table) -> list[ChunkActions]:
        """Process one batch; return the chunks it completed."""
        if self._finished:
            raise RuntimeError("feed() after finish()")
        ev = _conform(batch)
        n = ev.num_rows
        if n == 0:
            return []
        t = _np(ev.column("t_ns"), np.int64, 0)
        back = np.flatnonzero(np.diff(t) < 0)
        if back.size or (self._last_t is not None and t[0] < self._last_t):
            row = self.n_events + (int(back[0]) + 1 if back.size else 0)
            raise BadInput(f"events are not sorted by t_ns (event {row} is earlier than "
                           f"the one before it)")
        self.sources.update(pc.unique(ev.column("source")).to_pylist())
        self._process(ev, t)
        self.n_events += n
        self._last_t = int(t[-1])
        self._snapshot_until(self._last_t)
        return self._emit_ready()

    def finish(self) -> list[ChunkActions]:
        """No more events: every pending release is final; return the remaining chunks."""
        if self._finished:
            return []
        self._finished = True
        for h in list(self._pending.values()):
            self._release(h)
        self._snapshot_until(None)
        while self._next_state_snap < len(self.chunks):
            self._state_snaps[self._next_state_snap] = (list(self._pos), self._focus)
            self._next_state_snap += 1
        return self._emit_ready()

    # --- per-batch decisions -----------------------------------------------------------
    def _process(self, ev: pa.Table, t: np.ndarray) -> None:
        n = ev.num_rows
        fr = (np.searchsorted(self.frame_t, t, side="right") - 1).astype(np.int64)

        # event kinds (int codes; the string columns are built per chunk)
        enc = pc.dictionary_encode(ev.column("event_type").combine_chunks())
        raw_idx = enc.indices.to_numpy(zero_copy_only=False)
        names = enc.dictionary.to_pylist()
        lut = np.array([KINDS.index(_TYPE_MAP[v]) if v in _TYPE_MAP else -1 for v in names]
                       + [-1], np.int8)
        tcode = lut[raw_idx]
        clicks = [i for i, v in enumerate(names) if v == "mouse_click"]
        if clicks:
            released = np.asarray(pc.fill_null(pc.equal(ev.column("state"), "released"), False)
                                  .to_numpy(zero_copy_only=False), dtype=bool)
            tcode[np.isin(raw_idx, clicks) & released] = _MOUSEUP
        is_down = (tcode == _KEYDOWN) | (tcode == _MOUSEDOWN)
        is_up = (tcode == _KEYUP) | (tcode == _MOUSEUP)

        drop = np.zeros(n, np.int8)
        is_valid = np.ones(n, bool)
        confidence = np.ones(n, np.float32)
        flags = np.zeros(n, np.uint8)

        # exact duplicates: same t_ns and same source-line hash. t is sorted, so
        # candidates are runs of equal t_ns (rare with ns clocks); the run at the end of
        # the previous batch continues into this one.
        eqm = np.empty(n, bool)
        eqm[0] = self._last_t is not None and int(t[0]) == self._last_t
        eqm[1:] = t[1:] == t[:-1]
        hashes = ev.column("hash")
        group = self._dup_group
        for i in np.flatnonzero(eqm).tolist():
            if i and not eqm[i - 1]:
                group = {hashes[i - 1].as_py()}          # a run starting at row i - 1
            h = hashes[i].as_py()
            if h in group:
                drop[i] = 1
            group.add(h)
        self._dup_group = group if eqm[n - 1] else {hashes[n - 1].as_py()}

        # normalized coordinates
        px = _np(ev.column("mouse_x_px"), np.float64, np.nan)
        py = _np(ev.column("mouse_y_px"), np.float64, np.nan)
        nx = _np(ev.column("mouse_x_norm"), np.float64, np.nan)
        ny = _np(ev.column("mouse_y_norm"), np.float64, np.nan)
        nx = np.where(np.isnan(nx), px / self.width, nx)
        ny = np.where(np.isnan(ny), py / self.height, ny)
        has_pos = ~(_isnull(ev.column("mouse_x_px")) & _isnull(ev.column("mouse_x_norm")))
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

        # repeated moves: a move to the last known pointer position (of the previous
        # move, click or wheel row with coordinates, earlier batches included)
        pos = np.flatnonzero(np.isin(tcode, _POSITION_KINDS) & (drop == 0))
        if pos.size:
            mx = np.where(np.isnan(px[pos]), nx[pos] * self.width, px[pos])
            my = np.where(np.isnan(py[pos]), ny[pos] * self.height, py[pos])
            known = np.isfinite(mx) & np.isfinite(my)
            pos, mx, my = pos[known], mx[known], my[known]
        if pos.size:
            same = np.zeros(pos.size, bool)
            same[1:] = (mx[1:] == mx[:-1]) & (my[1:] == my[:-1])
            if self._last_pos is not None:
                same[0] = mx[0] == self._last_pos[0] and my[0] == self._last_pos[1]
            drop[pos[same & (tcode[pos] == _MOVE)]] = 2
            self._last_pos = (float(mx[-1]), float(my[-1]))

        # unknown event types
        unknown = tcode < 0
        is_valid[unknown] = False
        confidence[unknown] = 0.0
        flags[unknown] |= F_UNKNOWN_TYPE

        orphan = np.zeros(n, bool)
        kb = np.flatnonzero((is_down | is_up) & (drop == 0))
        if kb.size:
            self._keys(ev, t, tcode, kb, drop, is_valid, confidence, flags, orphan)
        self._carry_state(ev, t, tcode, drop, is_valid, confidence, nx, ny, oof)

        # keep the rows that belong to a chunk, split per chunk
        b = self._bounds
        if b.size < 2:
            return
        c_lo = max(0, int(np.searchsorted(b, t[0], side="right")) - 1)
        c_hi = min(len(self.chunks), int(np.searchsorted(b, t[-1], side="right")))
        if c_lo >= c_hi:
            return
        cuts = np.searchsorted(t, b[c_lo:c_hi + 1], side="left")
        a_all, z_all = int(cuts[0]), int(cuts[-1])
        if a_all >= z_all:
            return
        raw = _raw_cols(ev.slice(a_all, z_all - a_all), tcode[a_all:z_all])
        arrays = dict(t=t, fr=fr, drop=drop, is_valid=is_valid, confidence=confidence,
                      nx=nx, ny=ny, flags=flags, orphan=orphan, oof=oof)
        for k, c in enumerate(range(c_lo, c_hi)):
            a, z = int(cuts[k]), int(cuts[k + 1])
            if a < z:
                self._pieces.setdefault(c, []).append(
                    (raw.slice(a - a_all, z - a), {name: arr[a:z] for name, arr in arrays.items()}))

    def _keys(self, ev, t, tcode, kb, drop, is_valid, confidence, flags, orphan) -> None:
        """Key/button state machine over the batch's key and button rows ``kb``."""
        take = pa.array(kb)
        sub = {c: ev.column(c).take(take).to_pylist()
               for c in ("code", "key", "key_code", "button_index", "mouse_button")}
        kt = t[kb].tolist()
        kc = tcode[kb].tolist()
        new_holds: list[tuple[_Hold, int]] = []    # (hold, j): its press fields come below
        debounce = self.debounce_ns
        held, pending = self._held, self._pending
        b = self._bounds
        for j, i in enumerate(kb.tolist()):
            tj = kt[j]
            if self._next_snap < len(self.chunks) and tj >= b[self._next_snap]:
                self._snapshot_until(tj)
            code = kc[j]
            if code <= _KEYUP:
                if sub["key_code"][j] is not None:
                    k = ("key", "vk", sub["key_code"][j])
                elif sub["code"][j] is not None:
                    k = ("key", "code", sub["code"][j])
                else:
                    k = ("key", "name", sub["key"][j])
            else:
                bi = sub["button_index"][j]
                k = ("button", bi if bi is not None else sub["mouse_button"][j])
            down = code == _KEYDOWN or code == _MOUSEDOWN
            h = held.get(k)
            if h is not None and h.pending_t is not None:
                if down and tj - h.pending_t <= debounce:
                    arr, row = h.pending_ref        # bounce: both rows go, still held
                    arr[row] = 4
                    drop[i] = 4
                    h.pending_t = h.pending_ref = None
                    del pending[k]
                    continue
                self._release(h)
                h = None
            if down:
                if h is not None:
                    drop[i] = 3
                else:
                    held[k] = h = _Hold(k, tj, {})
                    new_holds.append((h, j))
            elif h is None:
                orphan[i] = True
                is_valid[i] = False
                confidence[i] = 0.0
                flags[i] |= F_ORPHAN
            else:
                h.pending_t, h.pending_ref = tj, (drop, i)
                pending[k] = h
        if new_holds:
            rows = kb[[j for _, j in new_holds]]
            pr = _raw_cols(ev.take(pa.array(rows)), tcode[rows])
            cols = [pr.column(c).to_pylist() for c in _PRESS_FIELDS]
            for (h, _), values in zip(new_holds, zip(*cols)):
                h.fields = dict(zip(_PRESS_FIELDS, values))

    def _carry_state(self, ev, t, tcode, drop, is_valid, confidence, nx, ny, oof) -> None:
        """Update the last known mouse position and focus with the batch's rows and record
        them at every chunk start the batch reaches (``_bounds[c] <= t[-1]``: no row
        before that start can come any more).

        Position candidates: rows of kind mousemove/mousedown/mouseup/wheel that are kept
        (``drop == 0``), valid and have both normalized coordinates (finite). A release
        still waiting for its bounce partner (``_pending``) may be dropped later, so the
        position is a stack: the last final candidate, then the tentative ones after it
        (each with a reference to its drop flag); ``_chunk`` takes the newest one still
        kept. Focus rows are never dropped after the fact (only exact duplicates, decided
        at once)."""
        if self._next_state_snap >= len(self.chunks):
            return
        n = t.size
        with np.errstate(invalid="ignore"):
            pos_rows = np.flatnonzero(is_valid & (drop == 0) & np.isfinite(nx) & np.isfinite(ny)
                                      & np.isin(tcode, _POSITION_KINDS))
        foc_rows = np.flatnonzero(is_valid & (drop == 0) & (tcode == _FOCUS))
        tent = np.array(sorted(h.pending_ref[1] for h in self._pending.values()
                               if h.pending_ref[0] is drop), np.int64)
        memo: dict = {}

        def pos_entry(i: int, tentative: bool) -> tuple:
            e = memo.get(i)
            if e is None:
                fields = {"source": ev.column("source")[i].as_py(),
                          "mouse_x": ev.column("mouse_x_px")[i].as_py(),
                          "mouse_y": ev.column("mouse_y_px")[i].as_py(),
                          "mouse_x_norm": float(nx[i]), "mouse_y_norm": float(ny[i]),
                          "confidence": float(confidence[i]), "oof": bool(oof[i])}
                e = memo[i] = (int(t[i]), fields, (drop, i) if tentative else None)
            return e

        def pos_upto(k: int) -> list:
            p = pos_rows[:int(np.searchsorted(pos_rows, k))]
            if not p.size:
                return list(self._pos)
            is_tent = np.isin(p, tent)
            final = p[~is_tent]
            if final.size:
                stack = [pos_entry(int(final[-1]), False)]
                rest = p[p > final[-1]]
            else:
                stack, rest = list(self._pos), p
            return stack + [pos_entry(int(i), True) for i in rest]

        def focus_upto(k: int) -> tuple | None:
            j = int(np.searchsorted(foc_rows, k))
            if j == 0:
                return self._focus
            i = int(foc_rows[j - 1])
            e = memo.get(("f", i))
            if e is None:
                fields = {"source": ev.column("source")[i].as_py(),
                          "meta": _build_meta(ev.slice(i, 1))[0].as_py()}
                e = memo[("f", i)] = (int(t[i]), fields)
            return e

        b = self._bounds
        while self._next_state_snap < len(self.chunks) and b[self._next_state_snap] <= t[-1]:
            k = int(np.searchsorted(t, b[self._next_state_snap], side="left"))
            self._state_snaps[self._next_state_snap] = (pos_upto(k), focus_upto(k))
            self._next_state_snap += 1
        self._pos, self._focus = pos_upto(n), focus_upto(n)

    def _release(self, h: _Hold) -> None:
        """The pending release of ``h`` is final: the hold ends there."""
        h.release_t = h.pending_t
        h.pending_t = h.pending_ref = None
        del self._pending[h.ident]
        del self._held[h.ident]

    def _snapshot_until(self, t: int | None) -> None:
        """Record the holds at the start of every chunk starting at or before ``t`` (all
        remaining chunks when None). The state then reflects exactly the rows before
        that start: called before the first key row at or after it."""
        b = self._bounds
        while self._next_snap < len(self.chunks) and (t is None or b[self._next_snap] <= t):
            self._snaps[self._next_snap] = list(self._held.values())
            self._next_snap += 1

    # --- output ------------------------------------------------------------------------
    def _emit_ready(self) -> list[ChunkActions]:
        out = []
        last = len(self.chunks) - 1
        while self._next_emit <= last:
            c = self._next_emit
            if not self._finished:
                # every release of the chunk must know whether it bounced
                if c == last or self._last_t is None or \
                        self._last_t < int(self._bounds[c + 1]) + self.debounce_ns:
                    break
                for h in list(self._pending.values()):
                    if h.pending_t + self.debounce_ns < self._last_t:
                        self._release(h)
            out.append(self._chunk(c))
            self._next_emit += 1
        return out

    def _chunk(self, c: int) -> ChunkActions:
        start_frame, end_frame = self.chunks[c]
        is_last = end_frame == self.frame_t.size
        t0 = int(self._bounds[c])
        pieces = self._pieces.pop(c, [])
        snap = self._snaps.pop(c, [])
        if pieces:
            sl = pa.concat_tables([p[0] for p in pieces]).combine_chunks() \
                if len(pieces) > 1 else pieces[0][0]
            a = {name: np.concatenate([p[1][name] for p in pieces]) for name in _ROW_ARRAYS}
        else:
            sl = _raw_cols(EVENTS_SCHEMA.empty_table(), np.zeros(0, np.int8))
            a = {name: np.zeros(0, dt) for name, dt in zip(
                _ROW_ARRAYS, (np.int64, np.int64, np.int8, bool, np.float32, np.float64,
                              np.float64, np.uint8, bool, bool))}
        t, fr = a["t"], a["fr"]
        raw = pa.table({
            "timestamp_ms": pa.array((t - t0) // 1_000_000, pa.int64()),
            "frame_idx": pa.array(fr - start_frame, pa.int64()),
            **{name: sl.column(name) for name in sl.column_names},
            "t_ns": pa.array(t, pa.int64()),
            "frame_ref": pa.array(fr, pa.int64()),
        }).select(_RAW_NAMES).cast(ACTIONS_RAW_SCHEMA)

        keep = a["drop"] == 0
        kidx = np.flatnonzero(keep)
        body = raw if kidx.size == raw.num_rows else raw.take(pa.array(kidx))
        for col, vals, px in (("mouse_x_norm", a["nx"], "mouse_x"),
                              ("mouse_y_norm", a["ny"], "mouse_y")):
            mask = (_isnull(raw.column(col)) & _isnull(sl.column(px)))[kidx]
            body = body.set_column(body.schema.get_field_index(col), col,
                                   pa.array(vals[kidx].astype(np.float32), pa.float32(),
                                            mask=mask))
        body = body.append_column("is_valid", pa.array(a["is_valid"][kidx], pa.bool_()))
        body = body.append_column("confidence", pa.array(a["confidence"][kidx], pa.float32()))
        body = body.append_column("notes", pc.take(_NOTES, pa.array(a["flags"][kidx] & 15)))

        head, tail = [], []
        for h in snap:
            if h.release_t is None or h.release_t >= t0:
                r = dict.fromkeys(_PROC_NAMES)
                r.update(h.fields)
                r.update(timestamp_ms=0, frame_idx=0, state="held", t_ns=t0,
                         frame_ref=start_frame, is_valid=True, confidence=1.0,
                         notes=f"held since before the chunk start (pressed at t_ns "
                               f"{h.press_t})")
                head.append(r)
        n_keys_held = len(head)
        pos_stack, focus = self._state_snaps.pop(c, ([], None))
        pos = next((e for e in reversed(pos_stack)
                    if e[2] is None or e[2][0][e[2][1]] == 0), None)
        if pos is not None:
            pt, f, _ = pos
            r = dict.fromkeys(_PROC_NAMES)
            r.update(source=f["source"], event_type="mousemove", state="held",
                     mouse_x=f["mouse_x"], mouse_y=f["mouse_y"],
                     mouse_x_norm=f["mouse_x_norm"], mouse_y_norm=f["mouse_y_norm"],
                     timestamp_ms=0, frame_idx=0, t_ns=t0, frame_ref=start_frame,
                     is_valid=True, confidence=f["confidence"],
                     notes=f"mouse position held since before the chunk start (last seen at "
                           f"t_ns {pt})" + ("; " + _FLAG_NOTES[1][1] if f["oof"] else ""))
            head.append(r)
        if focus is not None:
            ft_, f = focus
            r = dict.fromkeys(_PROC_NAMES)
            r.update(source=f["source"], event_type="focus", state="held", meta=f["meta"],
                     timestamp_ms=0, frame_idx=0, t_ns=t0, frame_ref=start_frame,
                     is_valid=True, confidence=1.0,
                     notes=f"focus held since before the chunk start (focused at t_ns {ft_})")
            head.append(r)
        if is_last:
            # finish() has run: what is still held was never released
            ts_last = int(self.frame_t[end_frame - 1])
            for h in self._held.values():
                if h.press_t >= self.end_t_ns:
                    continue
                ts = max(ts_last, h.press_t)
                fref = int(np.searchsorted(self.frame_t, ts, side="right") - 1)
                r = dict.fromkeys(_PROC_NAMES)
                r.update({k: v for k, v in h.fields.items() if k != "event_type"})
                r.update(timestamp_ms=(ts - t0) // 1_000_000, frame_idx=fref - start_frame,
                         event_type="keyup" if h.ident[0] == "key" else "mouseup",
                         state="released", t_ns=ts, frame_ref=fref,
                         is_valid=True, confidence=SYNTHETIC_CONFIDENCE,
                         notes="synthetic release: no release logged before the end of the "
                               "recording")
                tail.append(r)
        parts = []
        if head:
            parts.append(pa.Table.from_pylist(head, schema=ACTIONS_PROCESSED_SCHEMA))
        parts.append(body.cast(ACTIONS_PROCESSED_SCHEMA))
        if tail:
            parts.append(pa.Table.from_pylist(tail, schema=ACTIONS_PROCESSED_SCHEMA))
        processed = pa.concat_tables(parts) if len(parts) > 1 else parts[0]
        if tail:
            processed = processed.take(pc.sort_indices(processed, [("t_ns", "ascending")]))
        processed = processed.select(_PROC_NAMES)

        d = a["drop"]
        stats = {"events": int(t.size), "processed_rows": processed.num_rows,
                 "held_at_start": n_keys_held,
                 "held_mouse_position": int(pos is not None), "held_focus": int(focus is not None),
                 "synthetic_releases": len(tail),
                 "orphan_releases": int(a["orphan"].sum()),
                 "out_of_frame": int(a["oof"].sum()),
                 "invalid": int((~a["is_valid"][keep]).sum())}
        for code, reason in enumerate(DROP_REASONS[1:], start=1):
            stats[f"dropped_{reason}"] = int((d == code).sum())
        return ChunkActions(c, raw, processed, stats)


def process_table(events: pa.Table | None, frame_t_ns, chunks: Sequence[tuple[int, int]],
                  width: int, height: int, end_t_ns: int, debounce_ns: int = DEBOUNCE_NS,
                  batch_rows: int = BATCH_ROWS) -> list[ChunkActions]:
    """Every chunk of an in-memory events table (any row order; None = no events)."""
    proc = ActionsProcessor(frame_t_ns, chunks, width, height, end_t_ns, debounce_ns)
    out = []
    for batch in table_batches(events, batch_rows):
        out += proc.feed(batch)
    return out + proc.finish()
