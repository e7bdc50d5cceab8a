"""Events JSONL -> RawEvents -> events.parquet rows (companion/align/events.py).

The JSONL files are written with the companion's own line formatter
(companion.capture.writer.format_line), i.e. exactly as a recording session writes them.
"""
from __future__ import annotations

import hashlib
import json
import os

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from companion.align.events import (RawEvents, build_events_table, read_events_jsonl)
from companion.capture.writer import format_line
from companion.contract.schemas import EVENTS_SCHEMA
from companion.util.errors import BadInput

T0 = 1_740_119_250_000_000_000      # a realistic epoch ns
MS = 1_000_000

CTRL, WIN, REC = "control_publisher", "window_publisher", "recorder"


def win(title, rect, hwnd, pid=100, app="app"):
    return {"title": title, "rect": rect, "hWnd": hwnd, "pid": pid, "app": app}


def write_jsonl(path, events, tail: str = "") -> list[bytes]:
    """Write (t, src, data) events like the companion does; return the line bytes."""
    lines = [format_line(t, s, d) for t, s, d in events]
    with open(path, "w", encoding="utf-8", newline="") as f:
        f.write("".join(lines) + tail)
    return [ln.rstrip("\n").encode() for ln in lines]


def rows(table: pa.Table) -> list[dict]:
    return table.to_pylist()


def build(raw, frames=(), **kw):
    return build_events_table(raw, "sess-1", np.asarray(frames, np.int64), **kw)


ALL_FORMS = [
    (T0 + 0 * MS, REC, {"event": "session.start", "session_id": "sess-1", "epoch_ns": T0,
                        "mono_ns": 5_000}),
    (T0 + 1 * MS, REC, {"event": "clock", "epoch_ns": T0 + 1 * MS, "mono_ns": 1_005_000}),
    (T0 + 2 * MS, WIN, win("Game", [100, 50, 500, 350], 0x3a00007)),
    (T0 + 3 * MS, CTRL, ["keyboard.press", 162, "ctrl_l"]),
    (T0 + 4 * MS, CTRL, ["keyboard.press", 67]),                 # open-world-agents form
    (T0 + 5 * MS, CTRL, ["keyboard.release", 67, "c"]),
    (T0 + 6 * MS, CTRL, ["keyboard.release", 162, "ctrl_l"]),
    (T0 + 7 * MS, CTRL, ["keyboard.press", None, "\u00e9"]),      # no VK known
    (T0 + 8 * MS, CTRL, ["mouse.move", 300, 200]),
    (T0 + 9 * MS, CTRL, ["mouse.click", 300, 200, "left", True]),
    (T0 + 10 * MS, CTRL, ["mouse.click", 300, 200, "left", False]),
    (T0 + 11 * MS, CTRL, ["mouse.click", 310, 210, "right", True]),
    (T0 + 12 * MS, CTRL, ["mouse.click", 310, 210, "middle", True]),
    (T0 + 13 * MS, CTRL, ["mouse.click", 310, 210, "x1", True]),
    (T0 + 14 * MS, CTRL, ["mouse.click", 310, 210, "x2", False]),
    (T0 + 15 * MS, CTRL, ["mouse.click", 310, 210, "button10", True]),
    (T0 + 16 * MS, CTRL, ["mouse.scroll", 320, 220, 0, -2]),
    (T0 + 17 * MS, CTRL, ["mouse.scroll", 320, 220, 1, 0]),
    (T0 + 18 * MS, REC, {"event": "clock", "epoch_ns": T0 + 18 * MS, "mono_ns": 18_005_000}),
    (T0 + 19 * MS, CTRL, ["mouse.move", 100.5, 50.25]),           # macOS reports floats
    (T0 + 20 * MS, REC, {"event": "input.suppressed", "reason": "window filter"}),
    (T0 + 21 * MS, REC, {"event": "session.end", "reason": "stop"}),
]


# ---------------------------------------------------------------- reading
def test_every_event_form_is_read(tmp_path):
    p = tmp_path / "s.jsonl"
    write_jsonl(p, ALL_FORMS)
    raw = read_events_jsonl(p)
    assert isinstance(raw, RawEvents)
    assert raw.n_lines == len(ALL_FORMS) and not raw.torn_tail and raw.skipped == 0
    assert len(raw) == 16
    assert raw.kind.tolist() == [0, 0, 1, 1, 0, 2, 3, 3, 3, 3, 3, 3, 3, 4, 4, 2]
    assert raw.vk.tolist()[:5] == [162, 67, 67, 162, -1]
    assert raw.key_name.to_pylist()[:5] == ["ctrl_l", None, "c", "ctrl_l", "\u00e9"]
    assert raw.button.to_pylist()[6:13] == ["left", "left", "right", "middle", "x1", "x2",
                                            "button10"]
    assert raw.pressed.tolist()[6:13] == [True, False, True, True, True, False, True]
    assert raw.x.tolist()[-1] == 100.5 and raw.y.tolist()[-1] == 50.25
    assert raw.dx.tolist()[13:15] == [0, 1] and raw.dy.tolist()[13:15] == [-2, 0]
    assert raw.line.tolist()[0] == 4
    assert raw.clock_pairs.tolist() == [[T0 + MS, 1_005_000], [T0 + 18 * MS, 18_005_000]]
    assert [m[1]["event"] for m in raw.markers] == ["session.start", "clock", "clock",
                                                   "input.suppressed", "session.end"]
    assert raw.markers[0][0] == T0
    (w,) = raw.windows
    assert (w.t_ns, w.window_id, w.title, w.rect) == (T0 + 2 * MS, str(0x3a00007), "Game",
                                                     (100.0, 50.0, 500.0, 350.0))


def test_hash_is_sha256_of_the_exact_line_bytes(tmp_path):
    p = tmp_path / "s.jsonl"
    lines = write_jsonl(p, ALL_FORMS)
    t = build(read_events_jsonl(p))
    want = {hashlib.sha256(ln).hexdigest() for i, ln in enumerate(lines)
            if ALL_FORMS[i][1] != REC}
    assert set(t.column("hash").to_pylist()) == want
    # and a specific row: the first key press (line 4)
    row = [r for r in rows(t) if r["event_type"] == "key_down"][0]
    assert row["hash"] == hashlib.sha256(lines[3]).hexdigest()


def test_torn_last_line_is_dropped_and_reported(tmp_path):
    p = tmp_path / "s.jsonl"
    full = format_line(T0 + 99 * MS, CTRL, ["mouse.move", 1, 2])
    write_jsonl(p, ALL_FORMS, tail=full[:37])
    raw = read_events_jsonl(p)
    assert raw.torn_tail and raw.torn_line == len(ALL_FORMS) + 1
    assert len(raw) == 16 and raw.n_lines == len(ALL_FORMS)


def test_zero_filled_tail_after_power_loss_is_a_torn_line(tmp_path):
    p = tmp_path / "s.jsonl"
    write_jsonl(p, ALL_FORMS[:5], tail='{"timestamp_ns":17401' + "\x00" * 50)
    raw = read_events_jsonl(p)
    assert raw.torn_tail and len(raw) == 2


def test_complete_last_line_without_newline_is_kept(tmp_path):
    p = tmp_path / "s.jsonl"
    write_jsonl(p, ALL_FORMS)
    with open(p, "ab") as f:
        f.write(format_line(T0 + 99 * MS, CTRL, ["mouse.move", 1, 2]).rstrip("\n").encode())
    raw = read_events_jsonl(p)
    assert not raw.torn_tail and len(raw) == 17 and raw.t_ns[-1] == T0 + 99 * MS


@pytest.mark.parametrize("bad,why", [
    ('{"timestamp_ns":1740119250000000000,"event_src":"control_pub', "not valid JSON"),
    ('{"timestamp_ns":"x","event_src":"control_publisher","event_data":"[]"}', "timestamp_ns"),
    ('{"timestamp_ns":1740119250000000000,"event_src":"control_publisher",'
     '"event_data":"[\\"mouse.move\\",1"}', "event_data is not valid JSON"),
    ('{"timestamp_ns":1740119250000000000,"event_src":"control_publisher",'
     '"event_data":"[\\"mouse.move\\",\\"a\\",1]"}', "x must be a number"),
    ('{"timestamp_ns":1740119250000000000,"event_src":"control_publisher",'
     '"event_data":"[\\"mouse.click\\",1,2,\\"left\\"]"}', "needs 4 values"),
    ('{"timestamp_ns":1740119250000000000,"event_src":"control_publisher",'
     '"event_data":["mouse.move",1,2]}', "serialized to a string"),
    ('{"timestamp_ns":1740119250000000000,"event_src":"window_publisher",'
     '"event_data":"[1,2]"}', "must be a JSON object"),
    ('[1,2,3]', "not a JSON object"),
])
def test_garbled_middle_line_names_file_and_line(tmp_path, bad, why):
    p = tmp_path / "s.jsonl"
    lines = [format_line(t, s, d) for t, s, d in ALL_FORMS]
    lines.insert(6, bad + "\n")
    p.write_text("".join(lines), encoding="utf-8")
    with pytest.raises(BadInput) as e:
        read_events_jsonl(p)
    msg = str(e.value)
    assert f"{p}:7:" in msg and why in msg and "\n" not in msg


def test_line_numbers_count_blank_lines_and_blank_lines_are_ignored(tmp_path):
    p = tmp_path / "s.jsonl"
    lines = [format_line(t, s, d) for t, s, d in ALL_FORMS[:6]]
    text = lines[0] + "\n\n" + "".join(lines[1:]) + "   \n"
    p.write_text(text, encoding="utf-8")
    raw = read_events_jsonl(p)
    assert len(raw) == 3 and raw.line.tolist() == [6, 7, 8]
    p.write_text(lines[0] + "\n\n" + "{oops}\n" + "".join(lines[1:]), encoding="utf-8")
    with pytest.raises(BadInput, match=r":4: not valid JSON"):
        read_events_jsonl(p)


def test_binary_file_is_refused(tmp_path):
    p = tmp_path / "s.mkv"
    p.write_bytes(b"\x1aE\xdf\xa3\x93B\x82\x88matroska\x00\x00\x01" * 20)
    with pytest.raises(BadInput, match="binary"):
        read_events_jsonl(p)


def test_other_text_files_are_refused(tmp_path):
    p = tmp_path / "notes.txt"
    p.write_text("hello\nworld\n")
    with pytest.raises(BadInput, match="not an events JSONL"):
        read_events_jsonl(p)
    q = tmp_path / "anchors.jsonl"            # valid JSONL, wrong kind of file
    q.write_text('{"kind":"header","v":1}\n{"kind":"segment","s":0}\n')
    with pytest.raises(BadInput, match=r":1: not an event line: missing timestamp_ns"):
        read_events_jsonl(q)


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(BadInput, match="not found"):
        read_events_jsonl(tmp_path / "nope.jsonl")
    with pytest.raises(BadInput, match="directory"):
        read_events_jsonl(tmp_path)


def test_empty_file_gives_an_empty_table_with_the_schema(tmp_path):
    p = tmp_path / "s.jsonl"
    p.write_bytes(b"")
    raw = read_events_jsonl(p)
    assert len(raw) == 0 and raw.n_lines == 0 and not raw.torn_tail
    t = build(raw, [T0])
    assert t.num_rows == 0 and t.schema.equals(EVENTS_SCHEMA, check_metadata=True)


def test_unknown_sources_and_actions_are_skipped_and_counted(tmp_path):
    p = tmp_path / "s.jsonl"
    write_jsonl(p, ALL_FORMS[2:5] + [
        (T0 + 50 * MS, "keyboard_state", {"buttons": [1, 2]}),
        (T0 + 51 * MS, CTRL, ["gamepad.button", 3, True]),
        (T0 + 52 * MS, CTRL, ["mouse.move", 5, 6]),
    ])
    raw = read_events_jsonl(p)
    assert raw.skipped == 2 and len(raw) == 3
    assert raw.kind.tolist() == [0, 0, 2] and raw.line.tolist() == [2, 3, 6]
    assert len(raw.hash) == 3


def test_fast_path_and_json_path_agree(tmp_path):
    """The same events with json.dumps' default spacing, CRLF endings, escaped names and
    extra elements (the last two only json.loads reads) give the same values; hashes
    follow the bytes."""
    events = ALL_FORMS + [(T0 + 30 * MS, CTRL, ["keyboard.press", 0xDE, '"']),
                          (T0 + 31 * MS, CTRL, ["keyboard.press", 0xBC, ","]),
                          (T0 + 32 * MS, CTRL, ["mouse.move", -5, 1e3]),
                          (T0 + 33 * MS, CTRL, ["mouse.move", 0, 0, "extra"])]
    a = tmp_path / "a.jsonl"
    write_jsonl(a, events)
    b = tmp_path / "b.jsonl"
    blines = [json.dumps({"timestamp_ns": t, "event_src": s, "event_data": json.dumps(d)})
              for t, s, d in events]
    b.write_bytes(("\r\n".join(blines) + "\r\n").encode())
    ta = build(read_events_jsonl(a), [T0, T0 + 10 * MS], video_size=(1000, 500))
    tb = build(read_events_jsonl(b), [T0, T0 + 10 * MS], video_size=(1000, 500))
    assert ta.drop_columns(["hash"]).equals(tb.drop_columns(["hash"]))
    want = [hashlib.sha256(ln.encode()).hexdigest()
            for ln, (_, s, _) in zip(blines, events) if s != REC]
    assert sorted(tb.column("hash").to_pylist()) == sorted(want)
    names = [r["metadata"] for r in rows(ta) if r["key_code"] in (0xDE, 0xBC)]
    assert names == [[("key_name", '"')], [("key_name", ",")]]


def test_per_line_outer_path_gives_the_same_table(tmp_path):
    """A whitespace-only line in the middle makes pyarrow's row count differ from the line
    count, so the reader re-reads every line with json.loads: same table, same hashes."""
    a = tmp_path / "a.jsonl"
    write_jsonl(a, ALL_FORMS)
    b = tmp_path / "b.jsonl"
    lines = [format_line(t, s, d) for t, s, d in ALL_FORMS]
    b.write_text("".join(lines[:5]) + " \t \n" + "".join(lines[5:]), encoding="utf-8")
    ra, rb = read_events_jsonl(a), read_events_jsonl(b)
    assert rb.line.tolist() == [x + (x > 5) for x in ra.line.tolist()]
    ta = build(ra, [T0], video_size=(1000, 500))
    tb = build(rb, [T0], video_size=(1000, 500))
    assert ta.equals(tb)


# ---------------------------------------------------------------- building
def test_table_has_exactly_the_events_schema_and_roundtrips_parquet(tmp_path):
    p = tmp_path / "s.jsonl"
    write_jsonl(p, ALL_FORMS)
    t = build(read_events_jsonl(p), [T0], video_size=(1920, 1080), to_mono=lambda a: a - T0)
    assert t.schema.equals(EVENTS_SCHEMA, check_metadata=True)
    pq.write_table(t, tmp_path / "e.parquet")
    assert pq.read_table(tmp_path / "e.parquet").equals(t)


def test_columns_of_every_row_kind(tmp_path):
    p = tmp_path / "s.jsonl"
    write_jsonl(p, ALL_FORMS)
    t = build(read_events_jsonl(p), [T0], video_size=(1000, 500),
              to_mono=lambda a: a - T0 + 5_000, frame_interval_ns=100 * MS)
    r = rows(t)
    assert [x["event_type"] for x in r] == (
        ["focus", "key_down", "key_down", "key_up", "key_up", "key_down", "mouse_move"]
        + ["mouse_click"] * 7 + ["wheel", "wheel", "mouse_move"])
    assert {x["session_id"] for x in r} == {"sess-1"}
    assert [x["mono_ns"] for x in r][:2] == [2 * MS + 5_000, 3 * MS + 5_000]
    focus, ctrl_down, c_down, c_up = r[0], r[1], r[2], r[3]
    assert focus["source"] == "window" and focus["window_id"] == str(0x3a00007)
    assert dict(focus["metadata"]) == {"title": "Game", "app": "app", "pid": "100",
                                       "rect": "[100,50,500,350]"}
    assert focus["key_code"] is None and focus["mouse_x"] is None and focus["state"] is None
    assert (ctrl_down["key_code"], ctrl_down["key"], ctrl_down["code"], ctrl_down["state"],
            ctrl_down["source"]) == (162, "Control", "ControlLeft", "pressed", "keyboard")
    assert dict(ctrl_down["metadata"]) == {"key_name": "ctrl_l"}
    assert (c_down["key_code"], c_down["key"], c_down["code"], c_down["metadata"]) == \
        (67, "c", "KeyC", None)
    assert c_up["state"] == "released" and c_up["window_id"] == str(0x3a00007)
    no_vk = r[5]
    assert no_vk["key_code"] is None and no_vk["key"] is None and \
        dict(no_vk["metadata"]) == {"key_name": "\u00e9"}
    move = r[6]
    assert (move["mouse_x_px"], move["mouse_y_px"]) == (300, 200)
    assert (move["mouse_x"], move["mouse_y"]) == (0.5, 0.5)           # window-relative
    assert move["mouse_x_norm"] == pytest.approx(0.3, rel=1e-6)
    assert move["mouse_y_norm"] == pytest.approx(0.4, rel=1e-6)
    assert move["mouse_button"] is None and move["state"] is None and move["delta"] is None
    clicks = r[7:14]
    assert [c["mouse_button"] for c in clicks] == ["left", "left", "right", "middle", "x1",
                                                   "x2", "button10"]
    assert [c["button_index"] for c in clicks] == [0, 0, 2, 1, 3, 4, None]
    assert [c["state"] for c in clicks] == ["pressed", "released", "pressed", "pressed",
                                            "pressed", "released", "pressed"]
    w1, w2 = r[14], r[15]
    assert (w1["delta"], w1["wheel_dx"], w1["wheel_dy"]) == (-2, 0, -2)
    assert (w2["delta"], w2["wheel_dx"], w2["wheel_dy"]) == (0, 1, 0)
    assert w1["key_code"] is None and w1["mouse_button"] is None
    assert all(x["frame_ref"] == 0 for x in r)


def test_mouse_is_normalized_to_the_active_window_rect_at_that_time(tmp_path):
    p = tmp_path / "s.jsonl"
    write_jsonl(p, [
        (T0, CTRL, ["mouse.move", 10, 10]),                                 # no window yet
        (T0 + 1, WIN, win("A", [100, 100, 300, 200], 1)),
        (T0 + 2, CTRL, ["mouse.move", 150, 125]),
        (T0 + 3, WIN, win("A", [0, 0, 100, 100], 1)),                      # A moved
        (T0 + 4, CTRL, ["mouse.move", 150, 125]),                          # outside A now
        (T0 + 5, WIN, win("B", [0, 0, 0, 0], 2)),                          # zero-size
        (T0 + 6, CTRL, ["mouse.move", 1, 1]),
        (T0 + 7, WIN, {"title": "C", "hWnd": 3}),                          # no rect
        (T0 + 8, CTRL, ["mouse.move", 1, 1]),
    ])
    r = [x for x in rows(build(read_events_jsonl(p))) if x["source"] == "mouse"]
    assert (r[0]["mouse_x"], r[0]["window_id"]) == (None, None)
    assert (r[1]["mouse_x"], r[1]["mouse_y"], r[1]["window_id"]) == (0.25, 0.25, "1")
    assert (r[2]["mouse_x"], r[2]["mouse_y"]) == (1.5, 1.25)   # beyond 1: cursor outside
    assert (r[3]["mouse_x"], r[3]["window_id"]) == (None, "2")
    assert (r[4]["mouse_x"], r[4]["window_id"]) == (None, "3")
    assert all(x["mouse_x_norm"] is None for x in r)            # no video_size given


def test_focus_rows_only_when_the_active_window_changes(tmp_path):
    p = tmp_path / "s.jsonl"
    beats = [(T0 + i * 1000 * MS, WIN, win("A", [0, 0, 10, 10], 1)) for i in range(3)]
    write_jsonl(p, beats + [
        (T0 + 3500 * MS, WIN, win("A - renamed", [0, 0, 10, 10], 1)),   # same window
        (T0 + 4000 * MS, WIN, win("B", [0, 0, 10, 10], 2)),
        (T0 + 5000 * MS, WIN, win("B", [0, 0, 10, 10], 2)),
        (T0 + 6000 * MS, WIN, win("A", [0, 0, 10, 10], 1)),
        (T0 + 7000 * MS, WIN, {"title": "no id"}),
        (T0 + 7500 * MS, WIN, {"title": "no id"}),
        (T0 + 8000 * MS, WIN, {"title": "no id 2"}),
    ])
    r = rows(build(read_events_jsonl(p)))
    assert [(x["t_ns"] - T0) // MS for x in r] == [0, 4000, 6000, 7000, 8000]
    assert [x["window_id"] for x in r] == ["1", "2", "1", None, None]
    assert [dict(x["metadata"])["title"] for x in r] == ["A", "B", "A", "no id", "no id 2"]
    assert {x["event_type"] for x in r} == {"focus"}


def test_frame_ref_boundaries(tmp_path):
    frames = [T0 + 1000, T0 + 2000, T0 + 3000]
    ts = [999, 1000, 1001, 1999, 2000, 2999, 3000, 3999, 4000, 10_000]
    p = tmp_path / "s.jsonl"
    write_jsonl(p, [(T0 + d, CTRL, ["mouse.move", 1, 1]) for d in ts])
    raw = read_events_jsonl(p)
    got = [x["frame_ref"] for x in rows(build(raw, frames))]   # interval: median = 1000
    assert got == [None, 0, 0, 0, 1, 1, 2, 2, None, None]
    got = [x["frame_ref"] for x in rows(build(raw, frames, frame_interval_ns=500))]
    assert got == [None, 0, 0, 0, 1, 1, 2, None, None, None]
    assert all(x["frame_ref"] is None for x in rows(build(raw, [])))
    got = [x["frame_ref"] for x in rows(build(raw, [T0 + 1000]))]   # one frame, no interval
    assert got == [None, 0] + [None] * 8


def test_frame_ref_with_a_pause_gap_and_repeated_times(tmp_path):
    frames = [T0, T0 + 10, T0 + 20, T0 + 1000, T0 + 1010]     # paused between 20 and 1000
    p = tmp_path / "s.jsonl"
    write_jsonl(p, [(T0 + d, CTRL, ["mouse.move", 1, 1]) for d in (25, 500, 1005, 1019, 1020)])
    got = [x["frame_ref"] for x in rows(build(read_events_jsonl(p), frames))]
    assert got == [2, 2, 3, 4, None]


def test_unsorted_frames_are_refused(tmp_path):
    p = tmp_path / "s.jsonl"
    write_jsonl(p, ALL_FORMS[:4])
    with pytest.raises(BadInput, match="not in order"):
        build(read_events_jsonl(p), [T0 + 10, T0])


def test_rows_sorted_by_time_with_ties_in_file_order(tmp_path):
    p = tmp_path / "s.jsonl"
    write_jsonl(p, [
        (T0 + 5, CTRL, ["mouse.move", 5, 0]),
        (T0 + 1, CTRL, ["mouse.move", 1, 0]),           # written late (out of order)
        (T0 + 5, WIN, win("A", [0, 0, 10, 10], 1)),     # same ns as the first line
        (T0 + 5, CTRL, ["mouse.move", 6, 0]),
        (T0 + 3, CTRL, ["keyboard.press", 65, "a"]),
    ])
    r = rows(build(read_events_jsonl(p)))
    assert [(x["t_ns"] - T0, x["event_type"], x["mouse_x_px"]) for x in r] == [
        (1, "mouse_move", 1), (3, "key_down", None), (5, "mouse_move", 5),
        (5, "focus", None), (5, "mouse_move", 6)]
    # the window event at t=5 applies to every event at t >= 5
    assert [x["window_id"] for x in r] == [None, None, "1", "1", "1"]
    # out of order without focus rows: the Arrow columns (hash, metadata) move too
    lines = write_jsonl(p, [(T0 + 5, CTRL, ["mouse.move", 5, 0]),
                            (T0 + 3, CTRL, ["keyboard.press", 65, "a"])])
    r = rows(build(read_events_jsonl(p)))
    assert [(x["t_ns"] - T0, x["hash"], x["metadata"]) for x in r] == [
        (3, hashlib.sha256(lines[1]).hexdigest(), [("key_name", "a")]),
        (5, hashlib.sha256(lines[0]).hexdigest(), None)]


def test_bad_arguments(tmp_path):
    p = tmp_path / "s.jsonl"
    write_jsonl(p, ALL_FORMS[:4])
    raw = read_events_jsonl(p)
    with pytest.raises(BadInput, match="session_id"):
        build_events_table(raw, "", np.array([T0]))
    with pytest.raises(BadInput, match="video size"):
        build(raw, [T0], video_size=(0, 1080))
    with pytest.raises(BadInput, match="to_mono"):
        build(raw, [T0], to_mono=lambda a: a[:1])


def test_many_random_events_match_a_per_line_reference(tmp_path):
    """5000 random events through the vectorized path vs. a plain per-line reading."""
    rng = np.random.default_rng(7)
    events = []
    t = T0
    for i in range(5000):
        t += int(rng.integers(0, 3 * MS))
        k = rng.random()
        if k < 0.02:
            h = int(rng.integers(1, 4))
            events.append((t, WIN, win(f"w{h}", [h * 10, h * 20, h * 10 + 640, h * 20 + 480], h)))
        elif k < 0.6:
            events.append((t, CTRL, ["mouse.move", int(rng.integers(-50, 2000)),
                                     int(rng.integers(0, 1100))]))
        elif k < 0.8:
            vk = int(rng.integers(0, 260))
            events.append((t, CTRL, [rng.choice(["keyboard.press", "keyboard.release"]), vk,
                                     f"k{vk}"]))
        elif k < 0.9:
            events.append((t, CTRL, ["mouse.click", int(rng.integers(0, 1920)), 5,
                                     str(rng.choice(["left", "right", "middle"])),
                                     bool(rng.random() < 0.5)]))
        else:
            events.append((t, CTRL, ["mouse.scroll", 1, 2, 0, int(rng.integers(-3, 4))]))
    p = tmp_path / "s.jsonl"
    lines = write_jsonl(p, events)
    frames = np.arange(T0, t, 16_666_667, dtype=np.int64)
    r = rows(build(read_events_jsonl(p), frames, video_size=(1920, 1080)))
    ctrl = [(e, ln) for e, ln in zip(events, lines) if e[1] == CTRL]
    got = [x for x in r if x["source"] != "window"]
    assert len(got) == len(ctrl)
    rect = None
    wins = [(e[0], e[2]["rect"]) for e in events if e[1] == WIN]
    for (ev_, ln), x in zip(ctrl, got):
        tt, _, d = ev_
        assert x["t_ns"] == tt and x["hash"] == hashlib.sha256(ln).hexdigest()
        fr = int(np.searchsorted(frames, tt, "right")) - 1
        assert x["frame_ref"] == (fr if tt < frames[-1] + 16_666_667 else None)
        if d[0].startswith("keyboard"):
            assert x["key_code"] == d[1] and dict(x["metadata"]) == {"key_name": d[2]}
        else:
            rect = None
            for wt, wr in wins:
                if wt <= tt:
                    rect = wr
            assert x["mouse_x_px"] == d[1] and x["mouse_y_px"] == d[2]
            assert x["mouse_x_norm"] == pytest.approx(d[1] / 1920, rel=1e-6)
            if rect is None:
                assert x["mouse_x"] is None
            else:
                assert x["mouse_x"] == pytest.approx((d[1] - rect[0]) / (rect[2] - rect[0]),
                                                     rel=1e-6)


@pytest.mark.parametrize("text", [b"a\nbb\nccc\n\ndddd\r\ne\nff", b"x\ny\nz\nw\nv\nu\nt"])
def test_line_hashes_across_chunk_boundaries(text):
    from companion.align.events import _hash_lines
    lines, starts, ends, pos = [], [], [], 0
    for piece in text.split(b"\n"):
        ln = piece[:-1] if piece.endswith(b"\r") else piece
        if ln:
            lines.append(ln)
            starts.append(pos)
            ends.append(pos + len(ln))
        pos += len(piece) + 1
    want = [hashlib.sha256(ln).hexdigest() for ln in lines]
    for chunk in (1, 2, 3, 100):
        got = _hash_lines(text, np.array(starts), np.array(ends), chunk=chunk).to_pylist()
        assert got == want


@pytest.mark.parametrize("block", [1, 2, 3, 7, 64, 300])
@pytest.mark.parametrize("memory", [0, 1 << 30])
def test_block_reading_gives_the_same_result(tmp_path, block, memory):
    """The reader reads and parses a block of bytes at a time and may spill the parsed
    blocks to disk; block edges and spilling change nothing, also with a whitespace-only
    line, an unknown action and an unknown source inside."""
    from companion.align.eventlog import read_event_log
    lines = [format_line(t, s, d) for t, s, d in ALL_FORMS]
    lines.insert(9, "  \n")
    lines.insert(4, format_line(T0 + 4 * MS, CTRL, ["gamepad.stick", 0.5]))
    lines.insert(2, format_line(T0 + 2 * MS, "other_publisher", {"a": 1}))
    p = tmp_path / "s.jsonl"
    p.write_text("".join(lines), encoding="utf-8")
    ref = read_events_jsonl(p)
    with read_event_log(p, block_bytes=block, memory_bytes=memory, spill_dir=tmp_path) as log:
        got = log.raw()
        assert log.spilled == (log.n_parts if memory == 0 else 0)
        assert log.n_parts > (1 if block < 100 else 0)
    assert [f.name for f in tmp_path.iterdir()] == ["s.jsonl"]     # spill file removed
    assert got.skipped == ref.skipped == 2 and len(got) == len(ref) == 16
    for f in ("t_ns", "line", "kind", "vk", "pressed", "clock_pairs"):
        assert np.array_equal(getattr(got, f), getattr(ref, f)), f
    for f in ("x", "y", "dx", "dy"):
        assert np.array_equal(getattr(got, f), getattr(ref, f), equal_nan=True), f
    for f in ("hash", "key_name", "button"):
        assert getattr(got, f).equals(getattr(ref, f)), f
    assert [(w.t_ns, w.line, w.hash) for w in got.windows] == \
        [(w.t_ns, w.line, w.hash) for w in ref.windows]
    assert got.markers == ref.markers
    assert build(got, [T0]).equals(build(ref, [T0]))
    lines_b = [ln.rstrip("\n").encode() for ln in lines if ln.strip()]
    want = [hashlib.sha256(b).hexdigest() for b in lines_b if b'"control_publisher"' in b
            and b"gamepad" not in b]
    assert got.hash.to_pylist() == want


def test_numbers_beyond_float_range_are_refused(tmp_path):
    p = tmp_path / "s.jsonl"
    lines = [format_line(t, s, d) for t, s, d in ALL_FORMS[:6]]
    lines.insert(3, '{"timestamp_ns":1740119250000000000,"event_src":"control_publisher",'
                    '"event_data":"[\\"mouse.move\\",1e400,5]"}\n')
    p.write_text("".join(lines), encoding="utf-8")
    with pytest.raises(BadInput, match=r":4: x must be finite"):
        read_events_jsonl(p)


def test_invalid_utf8_leading_zeros_and_lone_surrogates(tmp_path):
    good = format_line(T0, CTRL, ["mouse.move", 1, 2]).encode()
    p = tmp_path / "u.jsonl"
    p.write_bytes(good + b'{"timestamp_ns":1740119250000000001,"event_src":"window_publisher",'
                         b'"event_data":"{\\"title\\":\\"\xff\xfe\\"}"}\n' + good)
    with pytest.raises(BadInput, match=r":2: not UTF-8 text"):
        read_events_jsonl(p)
    p.write_bytes(good + b'{"timestamp_ns":1740119250000000001,"event_src":"control_publisher",'
                         b'"event_data":"[\\"keyboard.press\\",007,\\"a\\"]"}\n' + good)
    with pytest.raises(BadInput, match=r":2: event_data is not valid JSON"):
        read_events_jsonl(p)
    # half of an emoji typed on Windows: kept, as U+FFFD
    p.write_text("".join([format_line(T0, CTRL, ["keyboard.press", None, "\ud83d"]),
                          format_line(T0 + 1, WIN, {"title": "a\udc00", "hWnd": 5}),
                          format_line(T0 + 2, CTRL, ["mouse.click", 1, 2, "\udc00", True])]),
                 encoding="utf-8")
    r = rows(build(read_events_jsonl(p)))
    assert dict(r[0]["metadata"]) == {"key_name": "\ufffd"}
    assert dict(r[1]["metadata"]) == {"title": "a\ufffd"}
    assert r[2]["mouse_button"] == "\ufffd" and r[2]["button_index"] is None


def _child_case(tmp_path, eol="\n", tail=""):
    """An events file (every form, a window and a few hundred moves) and its line bytes."""
    events = list(ALL_FORMS) + [(T0 + (100 + i) * MS, CTRL, ["mouse.move", i, 2 * i])
                                for i in range(300)]
    lines = [format_line(t, s, d).replace("\n", eol) for t, s, d in events]
    p = tmp_path / "s.jsonl"
    p.write_bytes(("".join(lines) + tail).encode())
    return p, [ln.rstrip("\r\n").encode() for ln in lines]


@pytest.fixture
def child_spy(monkeypatch):
    """Hash in a child for any file size; records whether its digests were used."""
    import companion.align.events as mod
    monkeypatch.setattr(mod, "_CHILD_MIN_BYTES", 0)
    used: list[bool] = []
    orig = mod._ChildHasher.digest_file

    def digest_file(self):
        r = orig(self)
        used.append(self.used)
        return r
    monkeypatch.setattr(mod._ChildHasher, "digest_file", digest_file)
    return used


def _child_outputs():
    import tempfile
    return {f for f in os.listdir(tempfile.gettempdir()) if f.startswith("nm-events-hash-")}


def _ctrl_hashes(lines):
    return [hashlib.sha256(b).hexdigest() for b in lines if b'"control_publisher"' in b]


@pytest.mark.parametrize("tail", ["", '{"timestamp_ns":17401192'])
def test_line_hashes_from_the_child_process(tmp_path, child_spy, tail):
    """Large files are hashed by a child process; same hashes, torn tail excluded, and
    its output file is removed."""
    before = _child_outputs()
    p, lines = _child_case(tmp_path, tail=tail)
    raw = read_events_jsonl(p)
    assert child_spy == [True]
    assert raw.torn_tail == bool(tail)
    assert raw.hash.to_pylist() == _ctrl_hashes(lines)
    assert [w.hash for w in raw.windows] == [hashlib.sha256(b).hexdigest() for b in lines
                                             if b'"window_publisher"' in b]
    assert _child_outputs() == before


@pytest.mark.parametrize("block", [1, 7, 100])
def test_child_hashes_across_its_read_blocks(tmp_path, child_spy, monkeypatch, block):
    """The child reads 4 MB at a time; with tiny blocks, lines span several of them."""
    import companion.align.events as mod
    assert "f.read(1 << 22)" in mod._HASH_CHILD
    monkeypatch.setattr(mod, "_HASH_CHILD", mod._HASH_CHILD.replace("1 << 22", str(block)))
    p, lines = _child_case(tmp_path, tail='{"timestamp_ns":17401192')
    assert read_events_jsonl(p).hash.to_pylist() == _ctrl_hashes(lines)
    assert child_spy == [True]


def test_child_not_used_for_crlf_lines(tmp_path, child_spy):
    p, lines = _child_case(tmp_path, eol="\r\n")
    assert read_events_jsonl(p).hash.to_pylist() == _ctrl_hashes(lines)
    assert child_spy == []


def test_child_failure_falls_back_to_hashing_here(tmp_path, child_spy, monkeypatch):
    import companion.align.events as mod
    monkeypatch.setattr(mod, "_HASH_CHILD", "import sys; sys.exit(3)")
    p, lines = _child_case(tmp_path)
    assert read_events_jsonl(p).hash.to_pylist() == _ctrl_hashes(lines)
    assert child_spy == [False]


def test_child_digests_unused_when_the_file_changes(tmp_path, child_spy, monkeypatch):
    """A file appended to while it is parsed: the hashes are those of the bytes read
    (hashed again here: the child's digests are not trusted)."""
    import companion.align.eventlog as mod
    p, lines = _child_case(tmp_path)
    orig = mod._lines

    def split_and_append(*a, **kw):
        out = orig(*a, **kw)
        p.write_bytes(p.read_bytes() + b"\n")
        return out
    monkeypatch.setattr(mod, "_lines", split_and_append)
    assert read_events_jsonl(p).hash.to_pylist() == _ctrl_hashes(lines)
    assert child_spy == [False]


def test_parse_error_stops_the_child(tmp_path, child_spy):
    before = _child_outputs()
    p, lines = _child_case(tmp_path)
    p.write_bytes(p.read_bytes().replace(b'"mouse.move\\",5,', b'"mouse.move\\",5,,', 1))
    with pytest.raises(BadInput, match=r"s\.jsonl:28: event_data is not valid JSON"):
        read_events_jsonl(p)
    assert _child_outputs() == before


def test_numpy_huge_page_setting_is_restored(tmp_path):
    """Reading and building turn NumPy's huge-page advice off meanwhile and restore it,
    also after an error."""
    import companion.align.events as mod
    setting = mod._NO_HUGE_PAGES._set
    if setting is None:
        pytest.skip("this NumPy has no huge-page switch")
    p = tmp_path / "s.jsonl"
    write_jsonl(p, ALL_FORMS)
    bad = tmp_path / "bad.jsonl"
    write_jsonl(bad, ALL_FORMS, tail="{\n" + format_line(T0, CTRL, ["mouse.move", 1, 2]))
    original = setting(True)
    try:
        for want in (True, False):
            setting(want)
            build(read_events_jsonl(p), [T0])
            with pytest.raises(BadInput, match=r"bad\.jsonl:\d+: "):
                read_events_jsonl(bad)
            assert setting(want) == want
    finally:
        setting(original)


hyp = pytest.importorskip("hypothesis")
st = pytest.importorskip("hypothesis.strategies")

_num = st.one_of(st.integers(-10**6, 10**6), st.floats(-1e6, 1e6, allow_nan=False))
_event = st.one_of(
    st.tuples(st.sampled_from(["keyboard.press", "keyboard.release"]),
              st.one_of(st.none(), st.integers(0, 2**31 - 1)),
              st.one_of(st.none(), st.text(max_size=4))).map(list),
    st.tuples(st.sampled_from(["keyboard.press"]), st.integers(0, 300)).map(list),
    st.tuples(st.just("mouse.move"), _num, _num).map(list),
    st.tuples(st.just("mouse.click"), _num, _num,
              st.sampled_from(["left", "right", "middle", "x1", "x2", "button9"]),
              st.booleans()).map(list),
    st.tuples(st.just("mouse.scroll"), _num, _num, _num, _num).map(list),
)


@hyp.settings(max_examples=40, deadline=None,
              suppress_health_check=[hyp.HealthCheck.function_scoped_fixture])
@hyp.given(st.lists(st.tuples(st.integers(0, 10**9), _event), min_size=1, max_size=30))
def test_property_fast_and_json_paths_agree(tmp_path, evs):
    """Random values through the companion's compact lines (fast path) and through lines
    whose event_data starts with a space (no fast prefix matches: all json.loads) give
    the same table."""
    events = [(T0 + dt, CTRL, d) for dt, d in evs]
    a = tmp_path / "pa.jsonl"
    write_jsonl(a, events)
    b = tmp_path / "pb.jsonl"
    b.write_text("".join(json.dumps({"timestamp_ns": t, "event_src": s,
                                     "event_data": " " + json.dumps(d)}) + "\n"
                         for t, s, d in events), encoding="utf-8")
    frames = [T0, T0 + 10**8, T0 + 5 * 10**8]
    ta = build(read_events_jsonl(a), frames, video_size=(640, 480))
    tb = build(read_events_jsonl(b), frames, video_size=(640, 480))
    assert ta.drop_columns(["hash"]).equals(tb.drop_columns(["hash"]))
    assert ta.num_rows == len(events)


def test_torn_line_followed_by_whitespace_lines_is_still_the_torn_tail(tmp_path):
    p = tmp_path / "s.jsonl"
    write_jsonl(p, ALL_FORMS[:5], tail='{"timestamp_ns":17401192\n  \n\t\n')
    raw = read_events_jsonl(p)
    assert raw.torn_tail and raw.torn_line == 6 and len(raw) == 2


def test_single_garbled_line_is_not_a_torn_tail(tmp_path):
    p = tmp_path / "s.jsonl"
    p.write_text('{"timestamp_ns":17401192')
    with pytest.raises(BadInput, match=r":1: not valid JSON"):
        read_events_jsonl(p)


def test_digest_files_of_killed_runs_are_removed(tmp_path, child_spy):
    """A run killed while its hashing child worked leaves a digest file in the temp
    folder; the next run that starts a child removes it (its process is gone)."""
    import subprocess
    import sys
    import tempfile
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = os.path.join(tempfile.gettempdir(), f"nm-events-hash-{dead.pid}-zz.hex")
    with open(stale, "wb") as f:
        f.write(b"0" * 64)
    p, lines = _child_case(tmp_path)
    assert read_events_jsonl(p).hash.to_pylist() == _ctrl_hashes(lines)
    assert child_spy == [True] and not os.path.exists(stale)
