"""Benchmark: events JSONL -> events.parquet, against a naive baseline, same machine, same run.

    .venv/bin/python bench/bench_events.py [--events 1000000] [--repeat 3]

Generates a realistic event log (mostly mouse moves at ~125 Hz, key presses/releases,
clicks, scrolls, a window heartbeat per second and a focus change now and then) into
bench/out/ (gitignored), then times, each in a fresh subprocess (so peak RSS is the
stage's own):

- ``fast``: what nm-align runs: companion.align.eventlog.read_event_log (a block at a
  time, parts spilled to disk past 32 MB) + write_events_parquet (part by part).
- ``whole``: the in-memory API: companion.align.events.read_events_jsonl +
  build_events_table + write Parquet (the whole table at once).
- ``naive`` (the named baseline): per line ``json.loads`` of the outer object and of
  event_data, ``hashlib.sha256(line).hexdigest()``, one dict per row with the same
  values, ``pa.Table.from_pylist(rows, schema=EVENTS_SCHEMA)``, write Parquet.

Prints seconds (best of --repeat), CPU seconds (threads and child processes: the fast
stage hashes lines in a child Python process), rows, peak RSS (of the stage's own process)
and the ratio naive/fast, and checks that both produce the same table.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import resource
import subprocess
import sys
import time
from pathlib import Path

OUT = Path(__file__).resolve().parent / "out"
T0 = 1_740_119_250_000_000_000   # epoch ns
FPS = 60


def generate(path: Path, n_events: int, seed: int = 1) -> None:
    """Write ``n_events`` lines the way companion/capture/writer.py formats them."""
    from companion.capture.writer import format_line
    rng = random.Random(seed)
    t = T0
    x, y = 960, 540
    windows = [(0x3a00007, "Game - Level 3", [0, 0, 1920, 1080], "game"),
               (0x2c00011, "Discord", [200, 100, 1400, 900], "discord"),
               (0x1e0000a, "OBS 30.2.3 - Profile: stream", [0, 0, 1280, 720], "obs")]
    win = 0
    next_beat = t
    held: list[tuple[int, str]] = []
    keys = [(87, "w"), (65, "a"), (83, "s"), (68, "d"), (32, "space"), (160, "shift"),
            (162, "ctrl"), (69, "e"), (81, "q"), (82, "r"), (49, "1"), (50, "2")]
    lines: list[str] = []
    pending: list[tuple[int, str]] = []
    written = 0
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        while written < n_events:
            t += rng.randint(2_000_000, 14_000_000)   # ~8 ms between input events
            while pending and pending[0][0] <= t:       # button releases, in time order
                lines.append(pending.pop(0)[1])
                written += 1
            if t >= next_beat:
                if rng.random() < 0.02:
                    win = rng.randrange(len(windows))
                wid, title, rect, app = windows[win]
                lines.append(format_line(t, "window_publisher", {
                    "title": title, "rect": rect, "hWnd": wid, "pid": 4242 + win, "app": app}))
                next_beat = t + 1_000_000_000
                written += 1
                continue
            r = rng.random()
            if r < 0.80:
                x = min(1919, max(0, x + rng.randint(-6, 6)))
                y = min(1079, max(0, y + rng.randint(-6, 6)))
                lines.append(format_line(t, "control_publisher", ["mouse.move", x, y]))
            elif r < 0.92:
                if held and (rng.random() < 0.5 or len(held) > 3):
                    vk, name = held.pop(rng.randrange(len(held)))
                    lines.append(format_line(t, "control_publisher", ["keyboard.release", vk, name]))
                else:
                    vk, name = rng.choice(keys)
                    held.append((vk, name))
                    lines.append(format_line(t, "control_publisher", ["keyboard.press", vk, name]))
            elif r < 0.97:
                b = rng.choice(["left", "left", "left", "right", "middle"])
                lines.append(format_line(t, "control_publisher", ["mouse.click", x, y, b, True]))
                pending.append((t + 80_000_000, format_line(
                    t + 80_000_000, "control_publisher", ["mouse.click", x, y, b, False])))
            else:
                lines.append(format_line(t, "control_publisher",
                                         ["mouse.scroll", x, y, 0, rng.choice([-1, 1])]))
            written += 1
            if len(lines) >= 65536:
                f.write("".join(lines))
                lines.clear()
        f.write("".join(lines))


def frame_times(path: Path) -> "object":
    import numpy as np
    with open(path, "rb") as f:
        first = json.loads(f.readline())["timestamp_ns"]
        f.seek(max(0, os.path.getsize(path) - 4096))
        last = json.loads(f.read().splitlines()[-1])["timestamp_ns"]
    step = 1_000_000_000 // FPS
    return np.arange(first + 5_000_000, last, step, dtype=np.int64)


def stage_fast(src: Path, dst: Path) -> int:
    from companion.align.eventlog import read_event_log, write_events_parquet
    ft = frame_times(src)
    with read_event_log(src, spill_dir=dst.parent) as log:
        stats = write_events_parquet(log, dst, "bench", ft, video_size=(1920, 1080),
                                     to_mono=lambda a: a - T0,
                                     frame_interval_ns=1_000_000_000 // FPS)
    return stats["rows"]


def stage_whole(src: Path, dst: Path) -> int:
    import pyarrow.parquet as pq
    from companion.align.events import build_events_table, read_events_jsonl
    ft = frame_times(src)
    raw = read_events_jsonl(src)
    table = build_events_table(raw, "bench", ft, video_size=(1920, 1080),
                               to_mono=lambda a: a - T0, frame_interval_ns=1_000_000_000 // FPS)
    from companion.contract.schemas import parquet_write_options
    pq.write_table(table, dst, **parquet_write_options(table.schema))
    return table.num_rows


def stage_naive(src: Path, dst: Path) -> int:
    """The baseline: straightforward per-line Python producing the same rows."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq
    from companion.contract.events import DOM_BUTTON_INDEX
    from companion.contract.keys import vk_to_dom
    from companion.contract.schemas import EVENTS_SCHEMA
    ft = frame_times(src)
    end = int(ft[-1]) + 1_000_000_000 // FPS
    rows = []
    rect = None
    wid = None
    prev_id = object()
    with open(src, "rb") as f:
        for lineno, line in enumerate(f, 1):
            line = line.rstrip(b"\r\n")
            if not line:
                continue
            o = json.loads(line)
            t, s, d = o["timestamp_ns"], o["event_src"], json.loads(o["event_data"])
            h = hashlib.sha256(line).hexdigest()
            fr = int(np.searchsorted(ft, t, "right")) - 1
            fr = fr if fr >= 0 and t < end else None
            row = dict.fromkeys(EVENTS_SCHEMA.names)
            row.update(t_ns=t, frame_ref=fr, session_id="bench", hash=h, mono_ns=t - T0,
                       _line=lineno)
            if s == "window_publisher":
                rect = d.get("rect")
                wid = str(d["hWnd"])
                if wid == prev_id:
                    continue
                prev_id = wid
                row.update(event_type="focus", source="window", window_id=wid, metadata=[
                    ("title", d["title"]), ("app", d["app"]), ("pid", str(d["pid"])),
                    ("rect", json.dumps(rect, separators=(",", ":")))])
                rows.append(row)
                continue
            if s != "control_publisher":
                continue
            a = d[0]
            row["window_id"] = wid
            if a.startswith("keyboard."):
                key, code = vk_to_dom(d[1])
                row.update(event_type="key_down" if a == "keyboard.press" else "key_up",
                           source="keyboard", key_code=d[1], key=key, code=code,
                           state="pressed" if a == "keyboard.press" else "released",
                           metadata=[("key_name", d[2])])
            else:
                x, y = d[1], d[2]
                row.update(source="mouse", mouse_x_px=x, mouse_y_px=y,
                           mouse_x_norm=x / 1920, mouse_y_norm=y / 1080)
                if rect:
                    row["mouse_x"] = (x - rect[0]) / (rect[2] - rect[0])
                    row["mouse_y"] = (y - rect[1]) / (rect[3] - rect[1])
                if a == "mouse.move":
                    row["event_type"] = "mouse_move"
                elif a == "mouse.click":
                    row.update(event_type="mouse_click", mouse_button=d[3],
                               button_index=DOM_BUTTON_INDEX.get(d[3]),
                               state="pressed" if d[4] else "released")
                else:
                    row.update(event_type="wheel", delta=d[4], wheel_dx=d[3], wheel_dy=d[4])
            rows.append(row)
    rows.sort(key=lambda r: (r["t_ns"], r["_line"]))
    for r in rows:
        del r["_line"]
    table = pa.Table.from_pylist(rows, schema=EVENTS_SCHEMA)
    pq.write_table(table, dst, compression="zstd")
    return table.num_rows


def _child(stage: str, src: str, dst: str) -> None:
    import numpy  # noqa: F401  -- imports are not part of the measured time
    import pyarrow.parquet  # noqa: F401
    import companion.align.events  # noqa: F401
    import companion.align.eventlog  # noqa: F401
    import companion.contract.schemas  # noqa: F401
    def child_cpu() -> float:
        r = resource.getrusage(resource.RUSAGE_CHILDREN)
        return r.ru_utime + r.ru_stime
    t0, c0, k0 = time.perf_counter(), time.process_time(), child_cpu()
    n = {"fast": stage_fast, "whole": stage_whole, "naive": stage_naive}[stage](Path(src),
                                                                              Path(dst))
    dt, cpu, kids = time.perf_counter() - t0, time.process_time() - c0, child_cpu() - k0
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"seconds": dt, "cpu_seconds": cpu + kids, "child_cpu_seconds": kids,
                      "rows": n, "peak_rss_mb": rss_mb}))


def run_stage(stage: str, src: Path, dst: Path) -> dict:
    out = subprocess.run([sys.executable, __file__, "--child", stage, str(src), str(dst)],
                         check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--stages", default="fast,whole,naive",
                    help="comma-separated stages to run (naive takes ~40 s per 1M events)")
    ap.add_argument("--child", nargs=3, metavar=("STAGE", "SRC", "DST"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        _child(*args.child)
        return
    OUT.mkdir(parents=True, exist_ok=True)
    src = OUT / f"events_{args.events}.jsonl"
    if not src.exists():
        t0 = time.perf_counter()
        generate(src, args.events)
        print(f"generated {src} ({src.stat().st_size / 1e6:.1f} MB) in "
              f"{time.perf_counter() - t0:.1f} s")
    res = {}
    stages = [s for s in args.stages.split(",") if s]
    for stage in stages:
        runs = [run_stage(stage, src, OUT / f"events_{stage}.parquet")
                for _ in range(args.repeat if stage == "fast" else max(1, args.repeat // 2))]
        best = min(runs, key=lambda r: r["seconds"])
        best["peak_rss_mb"] = max(r["peak_rss_mb"] for r in runs)
        res[stage] = best
        print(f"{stage:>6}: {best['seconds']:.3f} s wall ({best['cpu_seconds']:.3f} s CPU, all "
              f"threads and child processes: {best['child_cpu_seconds']:.3f} s) best of "
              f"{len(runs)}  rows={best['rows']}  peak RSS {best['peak_rss_mb']:.0f} MB  "
              f"(load average {os.getloadavg()[0]:.1f})")
    import pyarrow.parquet as pq
    tables = [pq.read_table(OUT / f"events_{s}.parquet") for s in stages]
    same = all(t.equals(tables[0]) for t in tables)
    print(f"tables identical ({', '.join(stages)}): {same}")
    if "whole" in res and "fast" in res:
        print(f"ratio whole/fast: {res['whole']['seconds'] / res['fast']['seconds']:.2f}x wall, "
              f"peak RSS {res['whole']['peak_rss_mb'] / res['fast']['peak_rss_mb']:.2f}x")
    if "naive" in res and "fast" in res:
        print(f"ratio naive/fast: {res['naive']['seconds'] / res['fast']['seconds']:.1f}x wall, "
              f"{res['naive']['cpu_seconds'] / res['fast']['cpu_seconds']:.1f}x CPU "
              f"(baseline: per-line json.loads + pa.Table.from_pylist)")
    print(f"cpu: {os.cpu_count()} cores visible, python {sys.version.split()[0]}")
    if not same:
        sys.exit(1)


if __name__ == "__main__":
    main()
