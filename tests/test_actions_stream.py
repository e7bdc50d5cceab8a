"""Streaming actions processing (companion/dataset/actions.py) against the whole-table
implementation it replaced: same tables, bytes and stats for any split of the events
into batches.

The oracle, ``prepare_actions`` + ``chunk_actions`` at the bottom of this file, is the
whole-table implementation as of commit eaa257b (only here: the package has the
streaming code alone), changed since only by the two format 1.1.0 rules, each made in
both places in the same commit: the carried mouse/focus rows at chunk starts and the
repeated-move rule. It is a deliberate copy, not an import: it sees the whole session
at once, so it cannot get batch or chunk boundaries wrong in the ways a streaming
implementation can, and sharing its helpers with the code under test would hide a
change in either.
"""
from __future__ import annotations

import io
import json
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import companion.dataset.actions as A
from companion.contract.schemas import (ACTIONS_PROCESSED_SCHEMA, ACTIONS_RAW_SCHEMA,
                                        EVENTS_SCHEMA)
from companion.dataset.writer import _PARQUET_OPTS
from companion.util.errors import BadInput

MS = 1_000_000
T0 = 1_700_000_000_000_000_000
IV = 10 * MS                       # 100 fps: a 5 ms debounce window is half a frame
W, H = 100, 50
SPLITS = (1, 2, 3, 7)


# --- streams ---------------------------------------------------------------------------

def make_frames(n: int, pause_at: int | None = None) -> tuple[np.ndarray, int]:
    ft = T0 + np.arange(n, dtype=np.int64) * IV
    if pause_at is not None:
        ft[pause_at:] += 250 * MS
    return ft, int(ft[-1]) + IV


def make_table(rows: list[dict]) -> pa.Table:
    cols = {f.name: [r.get(f.name) for r in rows] for f in EVENTS_SCHEMA}
    cols["session_id"] = ["s"] * len(rows)
    cols["hash"] = [r.get("hash", f"h{i}") for i, r in enumerate(rows)]
    return pa.Table.from_pydict(cols, schema=EVENTS_SCHEMA)


KEYS = [dict(key_code=65, key="a", code="KeyA"), dict(key_code=16, key="Shift", code="ShiftLeft"),
        dict(key_code=None, key="b", code="KeyB"), dict(key_code=None, key="q", code=None)]
BUTTONS = [dict(button_index=0, mouse_button="left"), dict(button_index=2, mouse_button="right"),
           dict(button_index=None, mouse_button="button10")]
COORD = [0.0, 10.0, 10.0, 50.0, 99.0, 150.0, -5.0, float("nan"), float("inf")]


def _pos(draw) -> dict:
    x = draw(st.sampled_from(COORD + [None]))
    y = draw(st.sampled_from(COORD))
    d = dict(mouse_x_px=x, mouse_y_px=y if x is not None else None)
    norm = draw(st.sampled_from(["derived", "none", "none", "odd"]))
    if norm == "derived" and x is not None:
        d.update(mouse_x_norm=x / W, mouse_y_norm=y / H)
    elif norm == "odd":
        d.update(mouse_x_norm=draw(st.sampled_from([0.5, 1.5, -0.1, float("nan")])),
                 mouse_y_norm=draw(st.sampled_from([0.25, 2.0, float("nan")])))
    return d


@st.composite
def event(draw, t: int) -> dict:
    kind = draw(st.sampled_from(["key", "key", "key", "button", "button", "move", "move",
                                 "move", "wheel", "focus", "unknown"]))
    r: dict = {"t_ns": t}
    if draw(st.integers(0, 5)) == 0:
        r["hash"] = draw(st.sampled_from(["A", "B"]))     # equal hashes: duplicate candidates
    if kind == "key":
        down = draw(st.booleans())
        seed = draw(st.integers(0, 4)) == 0
        r.update(draw(st.sampled_from(KEYS)), source="keyboard",
                 event_type=("keydown" if down else "keyup") if seed else
                 ("key_down" if down else "key_up"),
                 state=draw(st.sampled_from(["pressed" if down else "released", None])))
        if draw(st.integers(0, 4)) == 0:
            r["metadata"] = [("key_name", r["key"])]
    elif kind == "button":
        down = draw(st.booleans())
        r.update(draw(st.sampled_from(BUTTONS)), source="mouse", **_pos(draw))
        if draw(st.integers(0, 4)) == 0:
            r.update(event_type="mousedown" if down else "mouseup",
                     state=draw(st.sampled_from(["pressed" if down else "released", None])))
        else:
            r.update(event_type="mouse_click", state="pressed" if down else "released")
    elif kind == "move":
        r.update(event_type=draw(st.sampled_from(["mouse_move", "mousemove"])), source="mouse",
                 window_id=draw(st.sampled_from([None, "7"])), **_pos(draw))
    elif kind == "wheel":
        r.update(event_type="wheel", source="mouse", wheel_dx=draw(st.sampled_from([None, 0.5])),
                 **{draw(st.sampled_from(["wheel_dy", "delta"])): -1.0}, **_pos(draw))
    elif kind == "focus":
        r.update(event_type="focus", source="window", window_id=draw(st.sampled_from(["7", "9"])),
                 metadata=draw(st.sampled_from([None, [("title", "Gäme"), ("app", "x")]])))
    else:
        r.update(event_type=draw(st.sampled_from(["gamepad", "touch"])),
                 source=draw(st.sampled_from(["pad", "mouse"])))
    return r


@st.composite
def session(draw):
    """(frames, end, chunks, sorted events table) with the edge cases dense: times on and
    next to chunk starts and debounce windows, equal times, exact repeats of the last row."""
    nf = draw(st.integers(1, 14))
    pause = draw(st.one_of(st.none(), st.integers(1, nf))) if nf > 1 else None
    ft, end = make_frames(nf, pause if pause is not None and pause < nf else None)
    starts = sorted(set([0] + draw(st.lists(st.integers(1, nf - 1), max_size=4)))) if nf > 1 \
        else [0]
    chunks = list(zip(starts, starts[1:] + [nf]))
    if draw(st.integers(0, 5)) == 0 and len(chunks) > 1:
        chunks = chunks[:-1]                       # a chunk list not reaching the video end
    marks = [int(ft[s]) for s, _ in chunks] + [end, int(ft[0])]
    d = A.DEBOUNCE_NS
    near = [m + o for m in marks for o in (-d - 1, -d, -1, 0, 1, d - 1, d, d + 1)]
    times = st.one_of(st.sampled_from(near),
                      st.integers(int(ft[0]) - 40 * MS, end + 40 * MS))
    rows: list[dict] = []
    t = draw(times)
    for _ in range(draw(st.integers(0, 45))):
        step = draw(st.sampled_from(["same", "same", "bounce", "small", "jump", "jump"]))
        if step == "bounce":
            t += draw(st.sampled_from([d - 1, d, d + 1]))
        elif step == "small":
            t += draw(st.integers(1, 3 * MS))
        elif step == "jump":
            t = max(t, draw(times))
        if rows and draw(st.integers(0, 6)) == 0:
            rows.append(dict(rows[-1], t_ns=t))    # exact repeat (duplicate / auto-repeat)
        else:
            rows.append(draw(event(t)))
    return ft, end, chunks, make_table(rows)


# --- comparison --------------------------------------------------------------------------

def pq_bytes(table: pa.Table) -> bytes:
    buf = io.BytesIO()
    pq.write_table(table, buf, **_PARQUET_OPTS)
    return buf.getvalue()


def reference(events, ft, end, chunks):
    prep = prepare_actions(events, ft, W, H, end)
    return [chunk_actions(prep, s, e, is_last=(e == ft.size)) for s, e in chunks]


def streamed(events, ft, end, chunks, sizes) -> tuple[list, A.ActionsProcessor]:
    proc = A.ActionsProcessor(ft, chunks, W, H, end)
    out, off, k = [], 0, 0
    while off < events.num_rows:
        size = sizes[k % len(sizes)]
        out += proc.feed(events.slice(off, size))
        off, k = off + size, k + 1
    out += proc.finish()
    return out, proc


def assert_same(events, ft, end, chunks, splits):
    """Streamed with each batch-size cycle of ``splits`` == the oracle, byte for byte."""
    ref = reference(events, ft, end, chunks)
    want = [(stats, pq_bytes(raw), pq_bytes(processed)) for raw, processed, stats in ref]
    for sizes in splits:
        got, proc = streamed(events, ft, end, chunks, sizes)
        assert [c.index for c in got] == list(range(len(chunks)))
        for c, ((stats, raw_b, proc_b), g) in enumerate(zip(want, got)):
            assert g.raw.schema.equals(ACTIONS_RAW_SCHEMA, check_metadata=False)
            assert g.processed.schema.equals(ACTIONS_PROCESSED_SCHEMA, check_metadata=False)
            assert g.stats == stats, (c, sizes)
            if pq_bytes(g.processed) != proc_b:
                assert g.processed.to_pylist() == ref[c][1].to_pylist(), (c, sizes)
                pytest.fail(f"chunk {c}: same rows, different Parquet bytes")
            assert pq_bytes(g.raw) == raw_b, (c, sizes)
        assert proc.n_events == events.num_rows
        assert proc.sources == set(events.column("source").to_pylist())
    return ref


# --- properties --------------------------------------------------------------------------

@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(session(), st.lists(st.integers(1, 12), min_size=1, max_size=6))
def test_any_batch_split_gives_the_whole_table_result(s, random_sizes):
    ft, end, chunks, events = s
    assert_same(events, ft, end, chunks, [(n,) for n in SPLITS] +
                [tuple(random_sizes), (max(events.num_rows, 1),)])


@settings(max_examples=40, deadline=None)
@given(session(), st.randoms(use_true_random=False))
def test_unsorted_table_is_sorted_like_before(s, rnd):
    """A table in any row order (table_batches sorts it, stably, as before)."""
    ft, end, chunks, events = s
    order = list(range(events.num_rows))
    rnd.shuffle(order)
    shuffled = events.take(pa.array(order, pa.int64()))
    ref = reference(shuffled, ft, end, chunks)
    got = A.process_table(shuffled, ft, chunks, W, H, end, batch_rows=3)
    for (raw, processed, stats), g in zip(ref, got, strict=True):
        assert g.stats == stats
        assert pq_bytes(g.raw) == pq_bytes(raw)
        assert pq_bytes(g.processed) == pq_bytes(processed)


# --- scripted streams: every case named in the design, at every batch boundary -----------

NF = 12
FT, END = make_frames(NF)
CHUNKS = [(0, 4), (4, 8), (8, 12)]
B1, B2 = int(FT[4]), int(FT[8])
D = A.DEBOUNCE_NS


def key(t, down, k=0, **kw):
    return dict(t_ns=t, event_type="key_down" if down else "key_up", source="keyboard",
                state="pressed" if down else "released", **KEYS[k], **kw)


def click(t, down, b=0, x=10.0, y=10.0):
    return dict(t_ns=t, event_type="mouse_click", source="mouse", state="pressed" if down
                else "released", mouse_x_px=x, mouse_y_px=y, **BUTTONS[b])


def move(t, x, y, **kw):
    return dict(t_ns=t, event_type="mouse_move", source="mouse", mouse_x_px=x, mouse_y_px=y,
                **kw)


SCRIPT = [
    key(int(FT[0]) - 20 * MS, True, k=2),                    # pressed before the first frame,
    key(int(FT[0]) - 2 * MS, False, k=2),                    # bounces across frame 0
    key(int(FT[0]) + 2 * MS, True, k=2),
    move(int(FT[0]) - MS, 5.0, 5.0),                         # before the video
    dict(t_ns=int(FT[0]) - 5 * MS, event_type="focus", source="window", window_id="7",
         metadata=[("title", "Gäme")]),                      # focus before the video
    key(int(FT[1]), False, k=3),                             # release without a press
    key(int(FT[1]), True, k=1),                              # Shift held over 2 chunk starts
    move(int(FT[2]), 10.0, 10.0, hash="A"),
    move(int(FT[2]), 10.0, 10.0, hash="A"),                  # exact duplicate
    move(int(FT[2]), 10.0, 10.0, hash="B"),                  # same time, other line: repeat
    click(int(FT[3]), True, b=0),
    move(B1 - MS, 20.0, 20.0),
    key(B1 - 3 * MS, True, k=0),
    key(B1 - 2 * MS, False, k=0),                            # a release that bounces
    key(B1 + 2 * MS, True, k=0),                             # over the chunk 1 start
    move(B1, 20.0, 20.0),                                    # repeated move across the start
    move(B1 + MS, 150.0, -5.0),                              # out of frame
    move(B1 + 2 * MS, float("nan"), 3.0),                    # non-finite
    dict(t_ns=B1 + 3 * MS, event_type="gamepad", source="pad"),  # unknown type
    click(int(FT[5]), False, b=0),                           # button held over chunk 1 start
    key(int(FT[6]), True, k=0),                              # auto-repeat of the held key
    dict(t_ns=int(FT[6]) + MS, event_type="focus", source="window", window_id="9"),
    click(int(FT[7]), True, b=0, x=40.0, y=40.0),            # position carried to chunk 2:
    move(B2 - 4 * MS, float("nan"), 5.0),                    # not this invalid move,
    click(B2 - 2 * MS, False, b=0, x=45.0, y=45.0),          # nor this release, which
    click(B2 + 2 * MS, True, b=0, x=45.0, y=45.0),           # bounces over the chunk start
    click(int(FT[9]) + MS, False, b=0, x=46.0, y=46.0),
    key(B2 - MS, False, k=0),                                # release, re-press > 5 ms later:
    key(B2 + D, True, k=0),                                  # a real release and a new press
    key(B2 + D + MS, True, k=0),
    move(B2, 30.0, 30.0, hash="Z"), move(B2, 30.0, 30.0, hash="Z"),  # duplicate at B2
    key(int(FT[9]), False, k=1),                             # Shift released in chunk 2
    click(int(FT[10]), True, b=1),                           # never released: synthetic
    key(int(FT[11]), False, k=0),
    key(int(FT[11]) + 3 * MS, True, k=0),                    # bounce near the end...
    key(END - 1, True, k=2),                                 # auto-repeat of the k=2 hold
    key(END + MS, False, k=0),                               # released after the end
    move(END, 1.0, 1.0),                                     # after the video
]


def scripted() -> pa.Table:
    t = make_table(SCRIPT)
    return t.take(pa.array(np.argsort(t.column("t_ns").to_numpy(), kind="stable")))


def test_script_exercises_every_case():
    """The oracle's own view of SCRIPT: each case of the design happens in it."""
    ref = reference(scripted(), FT, END, CHUNKS)
    s = [r[2] for r in ref]
    p = [r[1].to_pylist() for r in ref]
    # KeyB over frame 0, KeyA over B1, the left button over B2
    assert [x["dropped_bounce"] for x in s] == [2, 2, 3]
    assert [x["dropped_duplicate"] for x in s] == [1, 0, 1]
    assert [x["dropped_repeated_move"] for x in s] == [1, 1, 0]
    assert [x["dropped_auto_repeat"] for x in s] == [0, 1, 2]
    assert [x["orphan_releases"] for x in s] == [1, 0, 0]
    assert s[1]["out_of_frame"] == 1 and s[1]["invalid"] == 3     # 2 NaN + unknown type
    what = {"keydown": lambda r: r["code"], "mousedown": lambda r: r["mouse_button"],
            "mousemove": lambda r: (r["mouse_x"], r["mouse_y"]), "focus": lambda r: r["meta"]}
    held = [[what[r["event_type"]](r) for r in c if r["state"] == "held"] for c in p]
    assert held == [["KeyB", (5.0, 5.0), '{"window_id": "7", "title": "Gäme"}'],
                    ["KeyB", "ShiftLeft", 0, "KeyA", (20.0, 20.0), '{"window_id": "7", '
                                                                    '"title": "Gäme"}'],
                    ["KeyB", "ShiftLeft", 0, (40.0, 40.0), '{"window_id": "9"}']]
    assert [(x["held_mouse_position"], x["held_focus"]) for x in s] == [(1, 1)] * 3
    # chunk 1: the last valid position before B1 is the move to (20, 20) just before it
    # (the repeat of it at B1 is dropped, the out-of-frame and NaN moves come after B1)
    pos1 = [r for r in p[1] if r["event_type"] == "mousemove" and r["state"] == "held"]
    assert [(r["t_ns"], r["timestamp_ms"], r["frame_idx"], r["frame_ref"]) for r in pos1] == [
        (B1, 0, 0, 4)]
    assert pos1[0]["notes"].endswith(f"(last seen at t_ns {B1 - MS})")
    synth = [r for r in p[2] if r["notes"] and r["notes"].startswith("synthetic")]
    assert [(r["event_type"], r["code"], r["mouse_button"]) for r in synth] == [
        ("keyup", "KeyB", None), ("mouseup", None, 2)]             # KeyA: released after END
    assert s[2]["synthetic_releases"] == 2


def test_script_streamed_at_every_split_point():
    events = scripted()
    n = events.num_rows
    assert_same(events, FT, END, CHUNKS, [(k,) for k in SPLITS] + [(k, n) for k in range(1, n)])


def test_chunks_come_out_once_their_releases_are_final():
    """A chunk is returned as soon as an event at its end + the debounce window is seen,
    not at finish(); only the last chunk waits for the end of the stream."""
    proc = A.ActionsProcessor(FT, CHUNKS, W, H, END)
    assert proc.feed(make_table([key(B1 - MS, True), key(B1 - MS // 2, False)])) == []
    assert proc.feed(make_table([move(B1 + D - 1, 1.0, 1.0)])) == []   # a bounce may come
    out = proc.feed(make_table([key(B1 + D, True)]))
    assert [c.index for c in out] == [0]
    assert out[0].stats["dropped_bounce"] == 0 and out[0].stats["events"] == 2
    assert proc.feed(make_table([move(END + 10 * MS, 1.0, 1.0)]))[0].index == 1
    last = proc.finish()
    assert [c.index for c in last] == [2] and last[0].stats["synthetic_releases"] == 1
    assert proc.finish() == []
    with pytest.raises(RuntimeError):
        proc.feed(make_table([move(END + 20 * MS, 1.0, 1.0)]))


def test_events_going_back_in_time_are_a_one_line_error():
    proc = A.ActionsProcessor(FT, CHUNKS, W, H, END)
    proc.feed(make_table([move(int(FT[5]), 1.0, 1.0)]))
    with pytest.raises(BadInput, match=r"not sorted by t_ns \(event 1 "):
        proc.feed(make_table([move(int(FT[4]), 1.0, 1.0)]))
    proc = A.ActionsProcessor(FT, CHUNKS, W, H, END)
    with pytest.raises(BadInput, match=r"not sorted by t_ns \(event 2 "):
        proc.feed(make_table([move(int(FT[5]), 1.0, 1.0), move(int(FT[6]), 1.0, 1.0),
                              move(int(FT[4]), 1.0, 1.0)]))


def test_bad_chunk_lists_are_refused():
    for chunks in ([(0, 4), (5, 12)], [(4, 2)], [(0, 13)]):
        with pytest.raises(BadInput, match="chunk"):
            A.ActionsProcessor(FT, chunks, W, H, END)
    with pytest.raises(BadInput, match="end_t_ns"):
        A.ActionsProcessor(FT, CHUNKS, W, H, int(FT[-1]))


# --- the reference: whole-table implementation as of eaa257b (+ the 1.1.0 rules) ---------

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

    # --- repeated moves: a move to the previous position row's position (session 3:
    # the previous move, click or wheel row with finite coordinates, not only moves)
    last = None
    for i in np.flatnonzero(type_mask("mousemove", "mousedown", "mouseup", "wheel")
                            & (drop == 0)).tolist():
        x = nx[i] * width if np.isnan(px[i]) else px[i]
        y = ny[i] * height if np.isnan(py[i]) else py[i]
        if not (np.isfinite(x) and np.isfinite(y)):
            continue
        if tcode[i] == _KINDS.index("mousemove") and last == (x, y):
            drop[i] = 2
        last = (x, y)

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
    n_held_keys = len(extra_head)
    extra_head += carried_rows(prep, lo, t0, start_frame)
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
             "held_at_start": n_held_keys,
             "held_mouse_position": sum(r["event_type"] == "mousemove" for r in extra_head),
             "held_focus": sum(r["event_type"] == "focus" for r in extra_head),
             "synthetic_releases": len(extra_tail),
             "orphan_releases": int(prep.orphan[lo:hi].sum()),
             "out_of_frame": int(prep.out_of_frame[lo:hi].sum()),
             "invalid": int((~prep.is_valid[lo:hi][keep]).sum())}
    for code, reason in enumerate(DROP_REASONS[1:], start=1):
        stats[f"dropped_{reason}"] = int((d == code).sum())
    return raw, processed, stats


def carried_rows(prep: PreparedActions, lo: int, t0: int, start_frame: int) -> list[dict]:
    """Added with format 1.1.0 (not part of eaa257b): the ``held`` mousemove and focus
    rows of a chunk whose first row in the time-sorted session is ``lo``, by the rule of
    docs/contracts/dataset-layout.md, over the whole session at once: the last row before
    the chunk start that is kept, valid, of kind mousemove/mousedown/mouseup/wheel and has
    both normalized coordinates gives the position; the last kept valid focus row gives
    the focus."""
    names = [f.name for f in ACTIONS_PROCESSED_SCHEMA]
    kept = (prep.drop[:lo] == 0) & prep.is_valid[:lo]
    kinds = prep.tcode[:lo]
    mouse = np.zeros(lo, bool)
    for k in ("mousemove", "mousedown", "mouseup", "wheel"):
        mouse |= kinds == _KINDS.index(k)
    located = ~np.isnan(prep.norm_x[:lo]) & ~np.isnan(prep.norm_y[:lo])
    rows = []
    at = np.flatnonzero(kept & mouse & located)
    if at.size:
        i = int(at[-1])
        ev = prep.events.slice(i, 1).to_pylist()[0]
        r = _null_row(names)
        note = f"mouse position held since before the chunk start (last seen at t_ns " \
               f"{int(prep.t_ns[i])})"
        if prep.out_of_frame[i]:
            note += "; mouse outside the video frame; normalized coordinates clamped"
        r.update(source=ev["source"], event_type="mousemove", state="held",
                 mouse_x=ev["mouse_x_px"], mouse_y=ev["mouse_y_px"],
                 mouse_x_norm=float(prep.norm_x[i]), mouse_y_norm=float(prep.norm_y[i]),
                 timestamp_ms=0, frame_idx=0, t_ns=t0, frame_ref=start_frame, is_valid=True,
                 confidence=float(prep.confidence[i]), notes=note)
        rows.append(r)
    at = np.flatnonzero(kept & (kinds == _KINDS.index("focus")))
    if at.size:
        i = int(at[-1])
        src = _raw_cols(prep.events.slice(i, 1), prep.tcode[i:i + 1]).to_pylist()[0]
        r = _null_row(names)
        r.update(source=src["source"], event_type="focus", state="held", meta=src["meta"],
                 timestamp_ms=0, frame_idx=0, t_ns=t0, frame_ref=start_frame, is_valid=True,
                 confidence=1.0, notes=f"focus held since before the chunk start (focused at "
                                       f"t_ns {int(prep.t_ns[i])})")
        rows.append(r)
    return rows


def _norm_col(values: np.ndarray, raw_col, kidx, px_col) -> pa.Array:
    """Normalized coordinate column: the clamped value where the row has a position."""
    raw_null = np.asarray(raw_col.is_null().to_numpy(zero_copy_only=False))[kidx] if len(kidx) \
        else np.zeros(0, bool)
    px_null = np.asarray(px_col.is_null().to_numpy(zero_copy_only=False))[kidx] if len(kidx) \
        else np.zeros(0, bool)
    mask = raw_null & px_null
    return pa.array(values.astype(np.float32), pa.float32(), mask=mask)
