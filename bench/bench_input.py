"""Sustained high-rate mouse motion through the companion's input path, on Xvfb.

    .venv/bin/python bench/bench_input.py [--duration 60] [--rate 1000] [--display 79] [--process]

An injector *process* (so its CPU is not counted) moves the pointer with XTest
(python-xlib ``xtest.fake_input``) at ``--rate`` Hz to unique positions, recording
``time.time_ns()`` just before each injection. Two listeners run, one after the other:

- ``bare-pynput`` (baseline): a pynput mouse listener whose callback only appends
  ``(time.time_ns(), x, y)`` to a list -- the least any pynput-based logger can do;
- ``xserver-time`` (reference): a pynput mouse listener recording only the X server's
  event time (as InputCapture converts it): how late the X server itself dated the
  injected input, the floor for any X11 logger;
- ``companion``: ``InputCapture`` (keyboard + mouse listeners, privacy filter with
  consent) -> ``JsonlWriter`` (JSONL file on disk), plus a ``WindowTracker`` at 0.1 s,
  in the bench's own process: the companion's input path *without* its obs-websocket
  client and session loop;
- ``nm-companion`` (with ``--process``): the real ``nm-companion start --consent``
  process recording a headless OBS 29 (companion/capture/headless.py: OBS captures a
  second Xvfb, where the injector moves the pointer), websocket client, session loop,
  recorder markers and all. Its CPU is the whole process's (``/proc/<pid>/stat`` user +
  system) from injection start to 0.3 s after the last injection; lost and latency come
  from the session's JSONL after it finished.

Reported per listener: events injected, logged, lost (injected positions never logged),
CPU % of one core of the listening process (``time.process_time`` over wall time,
injection start to queue drained), and injection-to-timestamp latency (callback
``time_ns`` minus the injector's ``time_ns`` before ``fake_input``; same host clock)
p50/p99/max. Then the companion/baseline ratios.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

W, H = 1280, 720


def position(i: int) -> tuple[int, int]:
    """Unique on-screen position for injection number i (i < 1000 * 600)."""
    return 100 + i % 1000, 50 + (i // 1000) % 600


def match_moves(records, stamps, n: int) -> tuple[set, list]:
    """Injected move ``i`` (at ``position(i)``, injected at ``stamps[i]``) matched to the
    first logged ``(timestamp_ns, x, y)`` there: (indices seen, sorted latencies ns)."""
    pos_index = {position(i): i for i in range(n)}
    lat, seen = [], set()
    for t, x, y in records:
        i = pos_index.get((x, y))
        if i is not None and i not in seen:
            seen.add(i)
            lat.append(t - stamps[i])
    lat.sort()
    return seen, lat


def inject(display: str, n: int, rate: float, out: str) -> None:
    """Injector process body: n absolute pointer moves at ``rate`` Hz."""
    from Xlib import X, display as xdisplay
    from Xlib.ext import xtest

    d = xdisplay.Display(display)
    stamps = [0] * n
    period = 1e9 / rate
    t0 = time.monotonic_ns()
    for i in range(n):
        due = t0 + int(i * period)
        while True:
            now = time.monotonic_ns()
            if now >= due:
                break
            if due - now > 1_500_000:
                time.sleep((due - now - 1_000_000) / 1e9)
        x, y = position(i)
        stamps[i] = time.time_ns()
        xtest.fake_input(d, X.MotionNotify, x=x, y=y)
        d.flush()
    d.sync()
    elapsed = (time.monotonic_ns() - t0) / 1e9
    Path(out).write_text(json.dumps({"stamps": stamps, "elapsed_s": elapsed}))


def start_xvfb(num: int) -> subprocess.Popen:
    from Xlib import display as xdisplay
    if os.path.exists(f"/tmp/.X{num}-lock"):
        sys.exit(f"error: display :{num} is in use (pick another with --display)")
    proc = subprocess.Popen(["Xvfb", f":{num}", "-screen", "0", f"{W}x{H}x24", "-nolisten", "tcp", "-noreset"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            xdisplay.Display(f":{num}").close()
            return proc
        except Exception:
            time.sleep(0.05)
    proc.kill()
    sys.exit(f"error: Xvfb :{num} did not start")


def percentile(sorted_vals: list[int], q: float) -> float:
    if not sorted_vals:
        return float("nan")
    k = min(len(sorted_vals) - 1, max(0, int(round(q / 100 * (len(sorted_vals) - 1)))))
    return sorted_vals[k]


def run_injector(display: str, n: int, rate: float, tmp: Path) -> tuple[list[int], float]:
    out = tmp / "inject.json"
    subprocess.run([sys.executable, __file__, "--_inject", display, str(n), str(rate), str(out)],
                   check=True)
    d = json.loads(out.read_text())
    return d["stamps"], d["elapsed_s"]


def _bare_listener(records: list):
    """Baseline: a pynput mouse listener that only stamps and appends."""
    from pynput import mouse

    def on_move(x, y, injected=False):
        records.append((time.time_ns(), x, y))

    lst = mouse.Listener(on_move=on_move)
    lst.start()
    lst.wait()
    time.sleep(0.2)  # pynput enables its RECORD context just after wait() returns

    def finish() -> dict | None:
        # pynput's own X11 stop() waits for the next input event and drops what the
        # server still buffers; end the RECORD transfer the way InputCapture does
        from companion.capture.inputs import _disable_x11_record
        _disable_x11_record(lst, os.environ.get("DISPLAY"))
        lst.join(5)
        try:
            lst.stop()
        except Exception:
            pass
        return None
    return finish, lambda: None


def _xserver_time_listener(records: list):
    """Reference: a pynput mouse listener that only records the X server's event time
    (converted to epoch ns as InputCapture does) -- what the X server itself says."""
    from pynput import mouse

    from companion.capture.inputs import _disable_x11_record, _timed_listener, x11_event_epoch_ns

    holder = []

    def on_move(x, y, injected=False):
        t = time.time_ns()
        records.append((x11_event_epoch_ns(holder[0]._nm_xtime, t, time.monotonic_ns()) or t, x, y))

    lst = _timed_listener(mouse.Listener)(on_move=on_move)
    holder.append(lst)
    lst.start()
    lst.wait()
    time.sleep(0.2)

    def finish() -> None:
        _disable_x11_record(lst, os.environ.get("DISPLAY"))
        lst.join(5)
        try:
            lst.stop()
        except Exception:
            pass
        return None
    return finish, lambda: None


def _companion(records: list, tmp: Path):
    """What nm-companion runs: InputCapture -> JsonlWriter, plus a WindowTracker."""
    from companion.capture.inputs import InputCapture
    from companion.capture.privacy import PrivacyFilter
    from companion.capture.window import WindowTracker
    from companion.capture.writer import JsonlWriter

    path = tmp / "events.jsonl"
    writer = JsonlWriter(path).start()
    pf = PrivacyFilter(consent=True)
    tracker = WindowTracker(writer.put, interval_s=0.1, privacy=pf)
    tracker.start()
    cap = InputCapture(writer.put, privacy=pf, window=tracker.current, window_at=tracker.window_at)
    cap.start()

    def finish() -> dict:
        cap.stop()
        tracker.stop()
        counts = writer.close()  # drains the queue and fsyncs: part of the cost
        counts.update(clock=cap.clock, max_delivery_ms=cap.max_delivery_ns / 1e6)
        return counts

    def read_back() -> None:  # not timed
        for line in path.read_text().splitlines():
            rec = json.loads(line)
            data = json.loads(rec["event_data"])
            if isinstance(data, list) and data[0] == "mouse.move":
                records.append((rec["timestamp_ns"], data[1], data[2]))
    return finish, read_back


def thread_cpu_s() -> dict[str, float]:
    """CPU seconds (user+sys) per live thread of this process, by thread name (Linux)."""
    import threading
    names = {t.native_id: t.name for t in threading.enumerate()}
    tick = os.sysconf("SC_CLK_TCK")
    out: dict[str, float] = {}
    try:
        tids = os.listdir("/proc/self/task")
    except OSError:
        return out
    for tid in tids:
        try:
            with open(f"/proc/self/task/{tid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        name = names.get(int(tid), f"tid-{tid}")
        out[name] = out.get(name, 0.0) + (int(fields[11]) + int(fields[12])) / tick
    return out


def measure(kind: str, display: str, n: int, rate: float, tmp: Path) -> dict:
    """Run one listener kind while injecting; returns the result row."""
    records: list[tuple[int, int, int]] = []
    if kind == "bare-pynput":
        finish, read_back = _bare_listener(records)
    elif kind == "xserver-time":
        finish, read_back = _xserver_time_listener(records)
    else:
        finish, read_back = _companion(records, tmp)
    threads0 = thread_cpu_s()
    wall0, cpu0 = time.monotonic(), time.process_time()
    stamps, inj_elapsed = run_injector(display, n, rate, tmp)
    time.sleep(0.3)  # let the last events arrive
    threads1 = thread_cpu_s()
    wall_threads = time.monotonic() - wall0
    writer_counts = finish()
    cpu1, wall1 = time.process_time(), time.monotonic()
    read_back()
    seen, lat = match_moves(records, stamps, n)
    return {"kind": kind, "injected": n, "inject_rate_hz": n / inj_elapsed,
            "logged": len(seen), "lost": n - len(seen),
            "cpu_pct": 100 * (cpu1 - cpu0) / (wall1 - wall0),
            "p50_ms": percentile(lat, 50) / 1e6, "p99_ms": percentile(lat, 99) / 1e6,
            "max_ms": (lat[-1] / 1e6) if lat else float("nan"), "writer": writer_counts,
            "threads_pct": {k: round(100 * (v - threads0.get(k, 0.0)) / wall_threads, 2)
                            for k, v in threads1.items() if v - threads0.get(k, 0.0) > 0}}


def proc_cpu_s(pid: int) -> float:
    """CPU seconds (user + system, all threads) of process ``pid`` so far (Linux)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measure_process(n: int, rate: float, tmp: Path) -> dict:
    """The real ``nm-companion start`` process against a headless OBS (see docstring)."""
    from companion.capture.headless import ObsInstance
    inj_s = n / rate
    with ObsInstance(tmp / "obs", scene="xshm", width=640, height=360, fps_num=30,
                     capture_size=f"{W}x{H}x24") as o:
        env = dict(os.environ, DISPLAY=o.capture_display, NM_OBS_PASSWORD=o.password,
                   NM_COMPANION_STATE_DIR=str(tmp / "state"),
                   NM_COMPANION_CONFIG=str(tmp / "no-config.json"))
        out = tmp / "sessions"
        cmd = [sys.executable, "-m", "companion.cli.companion_cli", "start", "--port", str(o.port),
               "--out", str(out), "--session-id", "bench", "--consent",
               "--duration", str(inj_s + 12.0)]
        log = open(tmp / "companion.log", "w")
        proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=str(ROOT))
        try:
            deadline = time.monotonic() + 30
            while not list(out.glob("*/bench.jsonl")) and time.monotonic() < deadline:
                if proc.poll() is not None:
                    raise RuntimeError("nm-companion exited: " + (tmp / "companion.log").read_text()[-1500:])
                time.sleep(0.05)
            time.sleep(2.0)  # recording started, listeners up
            wall0, cpu0 = time.monotonic(), proc_cpu_s(proc.pid)
            stamps, inj_elapsed = run_injector(o.capture_display, n, rate, tmp)
            time.sleep(0.3)
            cpu1, wall1 = proc_cpu_s(proc.pid), time.monotonic()
            proc.wait(inj_s + 90)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)
            log.close()
    if proc.returncode != 0:
        raise RuntimeError(f"nm-companion failed ({proc.returncode}): "
                           + (tmp / "companion.log").read_text()[-1500:])
    jsonl = next(out.glob("*/bench.jsonl"))
    records = []
    for line in jsonl.read_text().splitlines():
        try:
            rec = json.loads(line)
            data = json.loads(rec["event_data"])
        except (ValueError, KeyError):
            continue
        if isinstance(data, list) and data and data[0] == "mouse.move":
            records.append((rec["timestamp_ns"], data[1], data[2]))
    seen, lat = match_moves(records, stamps, n)
    md = json.loads(next(out.glob("*/metadata.json")).read_text())
    return {"kind": "nm-companion", "injected": n, "inject_rate_hz": n / inj_elapsed,
            "logged": len(seen), "lost": n - len(seen),
            "cpu_pct": 100 * (cpu1 - cpu0) / (wall1 - wall0),
            "p50_ms": percentile(lat, 50) / 1e6, "p99_ms": percentile(lat, 99) / 1e6,
            "max_ms": (lat[-1] / 1e6) if lat else float("nan"),
            "writer": None, "threads_pct": {}, "events": md.get("events")}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--duration", type=float, default=60.0, help="seconds of injection per listener (default 60)")
    ap.add_argument("--rate", type=float, default=1000.0, help="injected pointer moves per second (default 1000)")
    ap.add_argument("--display", type=int, default=79, help="X display number for the bench's Xvfb (default 79)")
    ap.add_argument("--json", action="store_true", help="print the result rows as JSON too")
    ap.add_argument("--process", action="store_true",
                    help="also measure the real `nm-companion start` process recording a headless "
                         "OBS (needs obs-studio; takes the OBS test lock)")
    args = ap.parse_args(argv)
    n = int(args.duration * args.rate)
    if n < 1 or n > 600_000:
        sys.exit("error: duration * rate must be between 1 and 600000 events")
    xv = start_xvfb(args.display)
    display = f":{args.display}"
    os.environ["DISPLAY"] = display
    rows = []
    try:
        with tempfile.TemporaryDirectory(prefix="nm-bench-input-") as td:
            for kind in ("bare-pynput", "xserver-time", "companion"):
                sub = Path(td) / kind
                sub.mkdir()
                rows.append(measure(kind, display, n, args.rate, sub))
            if args.process:
                sub = Path(td) / "process"
                sub.mkdir()
                rows.append(measure_process(n, args.rate, sub))
    finally:
        xv.terminate()
        xv.wait(10)
    print(f"{n} pointer moves at {args.rate:g} Hz for {args.duration:g} s on Xvfb {display}, "
          f"{os.cpu_count()} CPUs, python {sys.version.split()[0]}")
    hdr = f"{'listener':<12} {'injected':>8} {'rate Hz':>8} {'logged':>8} {'lost':>5} {'CPU %':>6} {'p50 ms':>7} {'p99 ms':>7} {'max ms':>7}"
    print(hdr)
    for r in rows:
        print(f"{r['kind']:<12} {r['injected']:>8} {r['inject_rate_hz']:>8.0f} {r['logged']:>8} {r['lost']:>5} "
              f"{r['cpu_pct']:>6.2f} {r['p50_ms']:>7.3f} {r['p99_ms']:>7.3f} {r['max_ms']:>7.2f}")
    base, xref, comp = rows[:3]
    def ratio(a, b):
        return a / b if b else float("nan")
    print(f"ratio companion / bare-pynput: CPU {ratio(comp['cpu_pct'], base['cpu_pct']):.2f}x, "
          f"p50 latency {ratio(comp['p50_ms'], base['p50_ms']):.2f}x, "
          f"p99 latency {ratio(comp['p99_ms'], base['p99_ms']):.2f}x")
    print(f"companion timestamp vs the X server's own event time: p50 {comp['p50_ms'] - xref['p50_ms']:+.3f} ms, "
          f"p99 {comp['p99_ms'] - xref['p99_ms']:+.3f} ms (xserver-time row: how late the X server "
          f"dated the injected input)")
    if comp["writer"]:
        w = comp["writer"]
        print(f"companion: clock {w['clock']}, max X delivery delay {w['max_delivery_ms']:.1f} ms; "
              f"writer: written {w['written']}, dropped {w['dropped']}, max queue {w['max_queue']}")
    if args.process:
        pr = rows[3]
        print(f"nm-companion process / in-process companion: CPU {ratio(pr['cpu_pct'], comp['cpu_pct']):.2f}x; "
              f"session events: {pr['events']}")
    for r in rows:
        if r["threads_pct"]:
            parts = ", ".join(f"{k} {v:.2f}" for k, v in sorted(r["threads_pct"].items(), key=lambda kv: -kv[1]))
            print(f"{r['kind']} CPU % by thread (before stop): {parts}")
    if args.json:
        print(json.dumps(rows))
    return 0


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--_inject":
        inject(sys.argv[2], int(sys.argv[3]), float(sys.argv[4]), sys.argv[5])
    else:
        sys.exit(main())
