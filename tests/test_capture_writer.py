"""JsonlWriter: exact seed 002 lines, concurrency, crash safety, write failures."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time

import pytest

from companion.capture.writer import JsonlWriter, format_line
from companion.util.errors import EnvProblem

PY = sys.executable

# Lines copied from the seed 002 example (the open-world-agents format)
SEED_LINES = [
    '{"timestamp_ns":1740119250371185500,"event_src":"window_publisher","event_data":"{\\"title\\":\\"index.md - open-world-agents - Visual Studio Code\\",\\"rect\\":[1720,0,3440,1392],\\"hWnd\\":133820}"}',
    '{"timestamp_ns":1740119255179855200,"event_src":"control_publisher","event_data":"[\\"keyboard.press\\",162]"}',
    '{"timestamp_ns":1740119329446280600,"event_src":"control_publisher","event_data":"[\\"mouse.move\\",2592,1309]"}',
    '{"timestamp_ns":1740119329619434700,"event_src":"control_publisher","event_data":"[\\"mouse.scroll\\",2575,1310,0,1]"}',
]


def test_lines_match_seed_002_byte_for_byte(tmp_path):
    p = tmp_path / "s.jsonl"
    with JsonlWriter(p) as w:
        for line in SEED_LINES:
            rec = json.loads(line)
            w.put(rec["timestamp_ns"], rec["event_src"], json.loads(rec["event_data"]))
    assert p.read_text() == "".join(line + "\n" for line in SEED_LINES)
    assert w.close() == {"written": 4, "dropped": 0, "max_queue": w.max_queue,
                         "bytes": p.stat().st_size, "error": None, "failed": None}


def test_non_ascii_titles_are_escaped_and_round_trip():
    title = "Spiel – Level ✓ 😀"
    line = format_line(1, "window_publisher", {"title": title})
    assert line.isascii() and line.endswith("}\n") and "\n" not in line[:-1]
    assert json.loads(json.loads(line)["event_data"])["title"] == title


def test_many_threads_nothing_lost_per_thread_order_kept(tmp_path):
    p = tmp_path / "s.jsonl"
    w = JsonlWriter(p).start()
    n_threads, n_each = 4, 25_000

    def producer(k):
        for i in range(n_each):
            w.put(time.time_ns(), "control_publisher", ["mouse.move", k, i])

    threads = [threading.Thread(target=producer, args=(k,)) for k in range(n_threads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    counts = w.close()
    assert counts["written"] == n_threads * n_each and counts["dropped"] == 0
    assert counts["max_queue"] >= 1
    seen = {k: [] for k in range(n_threads)}
    for line in p.read_text().splitlines():
        _, k, i = json.loads(json.loads(line)["event_data"])
        seen[k].append(i)
    for k in range(n_threads):
        assert seen[k] == list(range(n_each))


def test_appends_keeps_queued_before_start_and_sorts_a_batch(tmp_path):
    p = tmp_path / "s.jsonl"
    p.write_text(SEED_LINES[0] + "\n")
    w = JsonlWriter(p)
    w.put(5, "recorder", {"event": "b"})
    w.put(3, "recorder", {"event": "a"})  # enqueued later, earlier timestamp
    w.start()
    w.close()
    lines = p.read_text().splitlines()
    assert lines[0] == SEED_LINES[0]
    assert [json.loads(x)["timestamp_ns"] for x in lines[1:]] == [3, 5]


def test_bad_events_are_counted_not_fatal(tmp_path):
    p = tmp_path / "s.jsonl"
    w = JsonlWriter(p).start()
    w.put(1, "control_publisher", ["mouse.move", 1, 2])
    w.put(2, "control_publisher", [object()])          # not JSON
    w.put(2.5, "control_publisher", ["mouse.move", 1, 2])  # not an int timestamp
    w.put(3, "control_publisher", ["mouse.move", float("nan"), 2])  # NaN is not JSON
    w.put(4, "control_publisher", ["mouse.move", 3, 4])
    counts = w.close()
    assert counts["written"] == 2 and counts["dropped"] == 3
    assert counts["error"].startswith("unserializable event") and "\n" not in counts["error"]
    assert counts["failed"] is None  # a dropped bad event is not a failed write
    w.put(5, "control_publisher", ["late"])
    assert w.stats()["dropped"] == 4 and w.close()["dropped"] == 3  # close() result is final
    assert len(p.read_text().splitlines()) == 2


def test_missing_folder_is_env_problem(tmp_path):
    with pytest.raises(EnvProblem, match=r"cannot write event log .*: folder does not exist$"):
        JsonlWriter(tmp_path / "nope" / "s.jsonl").start()


def _child(code: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([PY, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                          timeout=60, **kw)


@pytest.mark.skipif(os.geteuid() != 0, reason="drops to uid 65534 to get a real EACCES")
def test_unwritable_folder_is_one_line_env_problem(tmp_path):
    # root ignores permission bits, so the child drops to 'nobody' after importing.
    d = tmp_path / "ro"
    d.mkdir(mode=0o755)
    os.chmod(tmp_path, 0o755)
    r = _child(f"""
        import os, sys
        from companion.capture.writer import JsonlWriter
        from companion.util.errors import EnvProblem
        os.setgid(65534); os.setuid(65534)
        try:
            JsonlWriter({str(d / 's.jsonl')!r}).start()
        except EnvProblem as e:
            print(e); sys.exit(e.exit_code)
    """)
    assert r.returncode == 4, r.stderr
    assert r.stdout == f"cannot write event log {d / 's.jsonl'}: folder is not writable\n"
    assert r.stderr == ""


def test_disk_full_counts_drops(tmp_path):
    # /dev/full accepts open(O_APPEND) and fails every write with ENOSPC
    w = JsonlWriter("/dev/full").start()
    for i in range(10):
        w.put(i, "control_publisher", ["mouse.move", i, i])
    counts = w.close()
    assert counts["written"] == 0 and counts["dropped"] == 10
    assert counts["error"] == "writing /dev/full failed: No space left on device"
    assert counts["failed"] == counts["error"]  # a failed write of the file: fatal for a session


def test_partial_write_is_cut_back_to_a_line_boundary(tmp_path):
    # RLIMIT_FSIZE makes the kernel accept only part of a write (then EFBIG): a real
    # torn write. The writer must cut the partial line so the file ends on "\n".
    p = tmp_path / "s.jsonl"
    r = _child(f"""
        import json, resource, signal
        from companion.capture.writer import JsonlWriter
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (1000, 1000))
        w = JsonlWriter({str(p)!r})
        for i in range(100):
            w.put(i, "control_publisher", ["mouse.move", i, i])
        w.start()
        print(json.dumps(w.close()))
    """)
    assert r.returncode == 0, r.stderr
    counts = json.loads(r.stdout)
    data = p.read_bytes()
    assert 0 < len(data) <= 1000 and data.endswith(b"\n")
    lines = data.decode().splitlines()
    assert [json.loads(x)["timestamp_ns"] for x in lines] == list(range(len(lines)))
    assert counts["written"] == len(lines) and counts["dropped"] == 100 - len(lines)
    assert counts["bytes"] == len(data) and "File too large" in counts["error"]
    assert counts["failed"] == counts["error"]


def test_sigkill_loses_at_most_a_torn_last_line(tmp_path):
    p = tmp_path / "s.jsonl"
    child = subprocess.Popen([PY, "-c", textwrap.dedent(f"""
        import sys, time, threading
        from companion.capture.writer import JsonlWriter
        w = JsonlWriter({str(p)!r}).start()
        def report():
            while True:
                print(w.written, flush=True)
                time.sleep(0.01)
        threading.Thread(target=report, daemon=True).start()
        i = 0
        while True:
            w.put(time.time_ns(), "control_publisher", ["mouse.move", i, i, "x" * (i % 50)])
            i += 1
            if i % 64 == 0:
                time.sleep(0)
    """)], stdout=subprocess.PIPE, text=True)
    reported = 0
    for line in child.stdout:
        reported = int(line)
        if reported > 50_000:
            break
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    assert child.returncode == -signal.SIGKILL
    raw = p.read_bytes().split(b"\n")
    complete, tail = raw[:-1], raw[-1]  # tail: b"" or a torn line
    for i, line in enumerate(complete):
        rec = json.loads(line)
        assert json.loads(rec["event_data"])[1] == i  # no gaps, no garbled middle line
    assert len(complete) >= reported  # what the writer said it wrote is all there
    if tail:
        with pytest.raises(json.JSONDecodeError):
            json.loads(tail)


def test_appending_after_a_crash_cuts_the_torn_line_first(tmp_path):
    p = tmp_path / "s.jsonl"
    torn = SEED_LINES[2][:37]
    p.write_text(SEED_LINES[0] + "\n" + SEED_LINES[1] + "\n" + torn)
    w = JsonlWriter(p).start()
    w.put(7, "recorder", {"event": "session.start"})
    counts = w.close()
    lines = p.read_text().splitlines()
    assert lines[:2] == SEED_LINES[:2] and len(lines) == 3
    assert json.loads(lines[2])["timestamp_ns"] == 7
    assert w.repaired_bytes == len(torn) and "torn last line" in counts["error"]
    assert counts["failed"] is None  # a repaired tail is a note, not a write failure
    # a file that is one torn line only
    q = tmp_path / "t.jsonl"
    q.write_text('{"timestamp_ns":1,"ev')
    JsonlWriter(q).start().close()
    assert q.read_text() == ""
