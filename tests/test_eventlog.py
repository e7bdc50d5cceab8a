"""The event log read block by block (spilling to disk) and events.parquet written from it
as it goes (companion/align/eventlog.py) give exactly the whole-table results of
companion/align/events.py, whatever the block size, spilling, hashing mode or the
order of the lines in the file.

The JSONL files are written with the companion's own line formatter.
"""
from __future__ import annotations

import hashlib
import os
import random

import numpy as np
import pyarrow.parquet as pq
import pytest

import companion.align.events as events_mod
from companion.align.eventlog import read_event_log, write_events_parquet
from companion.align.events import build_events_table, read_events_jsonl
from companion.capture.writer import format_line
from companion.contract.schemas import EVENTS_SCHEMA
from companion.util.errors import BadInput

T0 = 1_740_119_250_000_000_000
MS = 1_000_000
CTRL, WIN, REC = "control_publisher", "window_publisher", "recorder"
FRAMES = np.arange(T0, T0 + 3_000 * MS, 16_666_667, dtype=np.int64)


def random_log(seed: int, n: int, jitter_ms: float) -> list[tuple[int, str, object]]:
    """A realistic log: moves, keys, clicks, scrolls, window changes and heartbeats,
    markers; times jittered so lines are out of order by up to ``jitter_ms``."""
    rnd = random.Random(seed)
    out = [(T0 - 5 * MS, REC, {"event": "recording.started"})]
    t = T0 - 200 * MS
    for i in range(n):
        t += rnd.randint(0, 3 * MS)
        tj = t - rnd.randint(0, int(jitter_ms * MS)) if jitter_ms else t
        r = rnd.random()
        if r < 0.6:
            out.append((tj, CTRL, ["mouse.move", rnd.randint(-50, 2000), rnd.randint(0, 1100)]))
        elif r < 0.75:
            vk = rnd.choice([65, 87, 16, 162, None])
            out.append((tj, CTRL, [rnd.choice(["keyboard.press", "keyboard.release"]), vk,
                                   rnd.choice(["a", "w", "shift", "ctrl_l"])]))
        elif r < 0.85:
            out.append((tj, CTRL, ["mouse.click", rnd.randint(0, 1920), rnd.randint(0, 1080),
                                   rnd.choice(["left", "right", "x1"]), rnd.random() < 0.5]))
        elif r < 0.9:
            out.append((tj, CTRL, ["mouse.scroll", 10, 20, 0, rnd.choice([-1, 1])]))
        elif r < 0.96:
            h = rnd.choice([0x3a00007, 0x3a00009])
            out.append((tj, WIN, {"title": f"w{h}", "rect": [h % 100, 0, 1280, 720],
                                  "hWnd": h, "pid": 7, "app": "game"}))
        elif r < 0.98:
            out.append((tj, REC, {"event": "clock", "epoch_ns": tj, "mono_ns": tj - T0}))
        else:                                   # the same ns as the line before
            out.append((out[-1][0], CTRL, ["mouse.move", 5, 5]))
    return out


def write_jsonl(path, events, eol="\n", tail="") -> None:
    text = "".join(format_line(t, s, d) for t, s, d in events)
    with open(path, "w", encoding="utf-8", newline="") as f:
        f.write(text.replace("\n", eol) + tail)


def whole_table(path, **kw):
    return build_events_table(read_events_jsonl(path), "s1", FRAMES, **kw)


def streamed_table(path, tmp_path, **read_kw):
    out = tmp_path / "events.parquet"
    with read_event_log(path, spill_dir=tmp_path, **read_kw) as log:
        stats = write_events_parquet(log, out, "s1", FRAMES, (1920, 1080),
                                     to_mono=lambda t: t - T0, frame_interval_ns=16_666_667)
        parts, spilled = log.n_parts, log.spilled
    tbl = pq.read_table(out)
    assert tbl.schema.equals(EVENTS_SCHEMA)
    assert stats["rows"] == tbl.num_rows
    assert stats["outside_video"] == tbl.column("frame_ref").null_count
    assert stats["sources"] == set(tbl.column("source").unique().to_pylist()) - {None}
    return tbl, parts, spilled


@pytest.mark.parametrize("jitter_ms", [0, 2, 40])
@pytest.mark.parametrize("block", [1500, 1 << 24])
@pytest.mark.parametrize("memory", [0, 1 << 30])
def test_streamed_events_parquet_equals_the_whole_table(tmp_path, jitter_ms, block, memory):
    p = tmp_path / "s.jsonl"
    write_jsonl(p, random_log(jitter_ms * 7 + block, 2000, jitter_ms))
    want = whole_table(p, video_size=(1920, 1080), to_mono=lambda t: t - T0,
                       frame_interval_ns=16_666_667)
    got, parts, spilled = streamed_table(p, tmp_path, block_bytes=block, memory_bytes=memory)
    assert parts > (10 if block < 5000 else 0)
    assert spilled == (parts if memory == 0 else 0)
    assert got.equals(want)
    t = got.column("t_ns").to_numpy()
    assert (np.diff(t) >= 0).all()
    assert sorted(os.listdir(tmp_path)) == ["events.parquet", "s.jsonl"]   # spill removed


def test_an_early_line_at_the_end_of_the_file_is_sorted_in(tmp_path):
    """The worst order: the last line is the earliest event. Rows still come out in
    time order (everything carries over to the end)."""
    ev = random_log(3, 2000, 0)
    ev.append((T0 - 400 * MS, CTRL, ["mouse.move", 1, 2]))
    p = tmp_path / "s.jsonl"
    write_jsonl(p, ev)
    want = whole_table(p, video_size=(1920, 1080), to_mono=lambda t: t - T0,
                       frame_interval_ns=16_666_667)
    got, parts, _ = streamed_table(p, tmp_path, block_bytes=2000, memory_bytes=0)
    assert parts > 10 and got.equals(want)
    assert got.column("t_ns")[0].as_py() == T0 - 400 * MS


@pytest.mark.parametrize("eol", ["\n", "\r\n"])
@pytest.mark.parametrize("tail", ["", '{"timestamp_ns":17401192'])
def test_hashes_from_the_child_with_small_blocks(tmp_path, monkeypatch, eol, tail):
    """Line hashes from the hashing child (looked up by line number per block), or
    computed here for "\\r\\n" lines; window events too; torn tail dropped."""
    monkeypatch.setattr(events_mod, "_CHILD_MIN_BYTES", 0)
    ev = random_log(5, 1500, 1)
    p = tmp_path / "s.jsonl"
    write_jsonl(p, ev, eol=eol, tail=tail)
    lines = [ln.rstrip(b"\r") for ln in p.read_bytes().split(b"\n") if ln.strip()]
    if tail:
        lines = lines[:-1]
    with read_event_log(p, block_bytes=3000, memory_bytes=0) as log:
        raw = log.raw()
        assert log.torn_tail == bool(tail)
        assert log.n_parts > 10
    assert raw.hash.to_pylist() == [hashlib.sha256(b).hexdigest() for b in lines
                                    if b'"control_publisher"' in b]
    assert [w.hash for w in raw.windows] == [hashlib.sha256(b).hexdigest() for b in lines
                                             if b'"window_publisher"' in b]


def test_long_lines_span_blocks_and_the_torn_check_sees_the_real_last_line(tmp_path):
    ev = [(T0 + i * MS, WIN, {"title": "x" * 5000 + str(i), "rect": [0, 0, 10, 10],
                              "hWnd": i}) for i in range(5)]
    p = tmp_path / "s.jsonl"
    write_jsonl(p, ev, tail="   \n\n")               # trailing whitespace lines
    with read_event_log(p, block_bytes=64) as log:
        assert [w.title[-1] for w in log.windows] == list("01234")
        assert not log.torn_tail and log.n_lines == 5
    p.write_bytes(p.read_bytes() + b'{"timestamp_ns": 17')
    with read_event_log(p, block_bytes=64) as log:
        assert log.torn_tail and log.torn_line == 8 and len(log.windows) == 5


def test_bad_line_in_a_later_block_names_its_line(tmp_path):
    ev = random_log(9, 800, 0)
    p = tmp_path / "s.jsonl"
    write_jsonl(p, ev)
    lines = p.read_bytes().split(b"\n")
    lines[700] = lines[700].replace(b"event_data", b"evnt_data")
    p.write_bytes(b"\n".join(lines))
    with pytest.raises(BadInput, match=r"s\.jsonl:701: "):
        read_event_log(p, block_bytes=2000, memory_bytes=0, spill_dir=tmp_path)
    assert sorted(os.listdir(tmp_path)) == ["s.jsonl"]          # no spill file left


def test_line_longer_than_the_limit_is_refused(tmp_path, monkeypatch):
    import companion.align.eventlog as mod
    monkeypatch.setattr(mod, "MAX_LINE_BYTES", 1000)
    p = tmp_path / "s.jsonl"
    write_jsonl(p, [(T0, WIN, {"title": "x" * 3000}), (T0 + 1, WIN, {"title": "y"})])
    with pytest.raises(BadInput, match=r"s\.jsonl:1: line longer than"):
        read_event_log(p, block_bytes=100)


def test_windows_only_and_empty_logs(tmp_path):
    p = tmp_path / "s.jsonl"
    write_jsonl(p, [(T0 + 5 * MS, WIN, {"title": "a", "hWnd": 1, "rect": [0, 0, 9, 9]}),
                    (T0 + 9 * MS, WIN, {"title": "b", "hWnd": 2, "rect": [0, 0, 9, 9]})])
    got, parts, _ = streamed_table(p, tmp_path)
    assert parts == 0 and got.column("event_type").to_pylist() == ["focus", "focus"]
    assert got.equals(whole_table(p, video_size=(1920, 1080), to_mono=lambda t: t - T0,
                                  frame_interval_ns=16_666_667))
    p.write_bytes(b"")
    got, parts, _ = streamed_table(p, tmp_path)
    assert got.num_rows == 0 and parts == 0


def test_spill_folder_problem_is_a_one_line_error(tmp_path):
    """Parts that cannot be spilled (here: the folder is gone) stop the read with an
    environment error naming the folder, not a read error of the events file."""
    from companion.util.errors import EnvProblem
    p = tmp_path / "s.jsonl"
    write_jsonl(p, random_log(1, 400, 0))
    gone = tmp_path / "gone"
    with pytest.raises(EnvProblem, match=r"cannot write the events spill file in .*gone"):
        read_event_log(p, block_bytes=2000, memory_bytes=0, spill_dir=gone)


def test_files_of_a_killed_run_are_removed_by_the_next(tmp_path):
    """A killed nm-align leaves its spill file; the next read in that folder removes it
    (its process is gone) but not the files of a process that still runs."""
    import subprocess
    import sys
    from companion.align.eventlog import SPILL_PREFIX
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = tmp_path / f"{SPILL_PREFIX}{dead.pid}-abc.arrow"
    live = tmp_path / f"{SPILL_PREFIX}{os.getpid()}-def.arrow"
    other = tmp_path / f"{SPILL_PREFIX}notapid.arrow"
    for f in (stale, live, other):
        f.write_bytes(b"x")
    p = tmp_path / "s.jsonl"
    write_jsonl(p, random_log(2, 50, 0))
    with read_event_log(p, spill_dir=tmp_path) as log:
        assert log.n_events > 0
    assert not stale.exists() and live.exists() and other.exists()
