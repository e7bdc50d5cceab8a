"""Benchmark: peak memory of ``nm-align --dataset`` as sessions get longer, in one run.

    .venv/bin/python bench/bench_memory.py [--minutes 8,32,64] [--rate 1000] [--ref DIR]

The goal (issue 3): nm-align's peak memory stays under 500 MB whatever the length of
the session. What grows with length: frames, audio, and above all the event log (a
1000 Hz mouse logs 3.6M events an hour). Input per length: a 640x360 60 fps H.264 + AAC
recording of ``--minutes`` (bench/bench_align.py's generator, sidecar anchors; the
small frame size keeps the files small, the frame count is that of any 60 fps
recording) and an event log at ``--rate`` events a second (mouse moves, keys, clicks,
scrolls, a window heartbeat a second). For each length, ``nm-align REC --events LOG --out DIR --dataset ROOT`` runs in a fresh
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
    """``n`` events in the companion's line format, evenly over ``seconds`` from ``t0``
    (a window heartbeat every second comes on top)."""
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
    ap.add_argument("--minutes", default="8,32,64", help="comma-separated session lengths")
    ap.add_argument("--rate", type=int, default=1000, help="input events per second")
    ap.add_argument("--ref", type=Path, default=None,
                    help="also run the checkout in this folder (the baseline)")
    args = ap.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    rows = []
    for minutes in (float(v) for v in args.minutes.split(",") if v):
        mkv = bench_align.make_input(minutes, size="640x360")
        secs = minutes * 60
        n = int(secs * args.rate)
        ev = OUT / f"events_{minutes:g}min_{args.rate}hz.jsonl"
        if not ev.exists():
            print(f"generating {n} events ...", flush=True)
            make_events(ev, n, bench_align.E0 + 1234, secs)
        rec = mkv
        ours = run_align(bench_align.REPO, rec, ev, OUT / "work")
        ref = run_align(args.ref, rec, ev, OUT / "work_ref") if args.ref else None
        rows.append((n, ours, ref))
        line = (f"{minutes:g} min, {n} events ({ev.stat().st_size / 1e6:.0f} MB JSONL): this tree "
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
