"""Benchmark: peak memory of ``nm-align --dataset`` as the event log grows, in one run.

    .venv/bin/python bench/bench_memory.py [--minutes 2] [--events 500000,2000000,4000000]
                                           [--ref DIR]

The goal (issue 3): nm-align's peak memory stays under 500 MB whatever the length of
the session. What grows with length is the event log: a 1000 Hz mouse logs 3.6M events
an hour. Input: the generated 1080p60 recording of bench/bench_align.py (``--minutes``,
sidecar anchors) with event logs of each ``--events`` size spread over it (mouse moves,
keys, clicks, scrolls, a window heartbeat per second of log: the counts stand in for
longer sessions, e.g. 4M events = 67 minutes of nonstop 1000 Hz mouse motion).
For each size, ``nm-align REC --events LOG --out DIR --dataset ROOT`` runs in a fresh
process and its peak RSS (``wait4``) and wall time are printed; ``--ref DIR`` also runs
the checkout in DIR (e.g. ``git archive REV | tar -x -C DIR``, the named baseline) on the
same inputs and prints the ratios.
"""
from __future__ import annotations

import argparse
import os
import random
import shutil
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import bench_align  # noqa: E402  (the recording and its anchors)

OUT = HERE / "out" / "memory"


def make_events(path: Path, n: int, t0: int, seconds: float, seed: int = 7) -> None:
    """``n`` events in the companion's line format, evenly over ``seconds`` from ``t0``."""
    from companion.capture.writer import format_line
    rnd = random.Random(seed)
    step = int(seconds * 1e9) // max(1, n)
    next_beat = t0
    x = y = 500
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        buf = []
        for i in range(n):
            t = t0 + i * step
            if t >= next_beat:
                buf.append(format_line(t, "window_publisher", {
                    "title": "Game", "rect": [0, 0, 1920, 1080], "hWnd": 0x3a00007,
                    "pid": 4242, "app": "game"}))
                next_beat += 1_000_000_000
            r = rnd.random()
            if r < 0.9:
                x = min(1919, max(0, x + rnd.randint(-6, 6)))
                y = min(1079, max(0, y + rnd.randint(-6, 6)))
                buf.append(format_line(t, "control_publisher", ["mouse.move", x, y]))
            elif r < 0.96:
                act = "keyboard.press" if i % 2 else "keyboard.release"
                buf.append(format_line(t, "control_publisher", [act, 87, "w"]))
            elif r < 0.99:
                buf.append(format_line(t, "control_publisher",
                                       ["mouse.click", x, y, "left", bool(i % 2)]))
            else:
                buf.append(format_line(t, "control_publisher", ["mouse.scroll", x, y, 0, -1]))
            if len(buf) >= 65536:
                f.write("".join(buf))
                buf.clear()
        f.write("".join(buf))


def run_align(tree: Path, mkv: Path, events: Path, work: Path) -> tuple[float, float]:
    """(wall s, peak RSS MB) of nm-align from the checkout ``tree``."""
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    cmd = [sys.executable, "-c", "import sys; from companion.cli.align_cli import main; "
           "sys.exit(main())", str(mkv), "--events", str(events), "--out", str(work / "s"),
           "--dataset", str(work / "ds"), "--quiet"]
    env = dict(os.environ, PYTHONPATH=str(tree))
    t0 = time.perf_counter()
    p = subprocess.Popen(cmd, cwd=tree, env=env, stdout=subprocess.DEVNULL,
                         stderr=subprocess.PIPE)
    _, status, ru = os.wait4(p.pid, 0)
    dt = time.perf_counter() - t0
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"nm-align failed in {tree}:\n{p.stderr.read().decode()[-2000:]}")
    return dt, ru.ru_maxrss / 1024


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=2.0)
    ap.add_argument("--events", default="500000,2000000,4000000")
    ap.add_argument("--ref", type=Path, default=None,
                    help="also run the checkout in this folder (the baseline)")
    args = ap.parse_args()
    mkv = bench_align.make_input(args.minutes)
    OUT.mkdir(parents=True, exist_ok=True)
    secs = args.minutes * 60
    rows = []
    for n in (int(v) for v in args.events.split(",") if v):
        ev = OUT / f"events_{n}.jsonl"
        if not ev.exists():
            print(f"generating {n} events ...", flush=True)
            make_events(ev, n, bench_align.E0 + 1234, secs)
        # nm-align looks for the sidecar beside the recording: link it in
        rec = OUT / f"rec_{n}.mkv"
        for src, dst in ((mkv, rec), (mkv.with_name(mkv.stem + ".anchors.jsonl"),
                                      OUT / f"rec_{n}.anchors.jsonl")):
            if not dst.exists():
                os.link(src, dst)
        ours = run_align(bench_align.REPO, rec, ev, OUT / "work")
        ref = run_align(args.ref, rec, ev, OUT / "work_ref") if args.ref else None
        rows.append((n, ours, ref))
        line = (f"{n:>9} events ({ev.stat().st_size / 1e6:.0f} MB JSONL): this tree "
                f"{ours[1]:.0f} MB peak, {ours[0]:.1f} s")
        if ref:
            line += (f"; baseline {ref[1]:.0f} MB, {ref[0]:.1f} s; memory ratio "
                     f"baseline/this {ref[1] / ours[1]:.2f}x")
        print(line + f"  (load average {os.getloadavg()[0]:.1f})", flush=True)
    worst = max(r[1][1] for r in rows)
    print(f"peak RSS of this tree over all sizes: {worst:.0f} MB (goal < 500 MB: "
          f"{'met' if worst < 500 else 'NOT met'})")
    shutil.rmtree(OUT / "work", ignore_errors=True)
    shutil.rmtree(OUT / "work_ref", ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
