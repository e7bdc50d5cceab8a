"""Benchmark: the dataset step's actions processing, whole table vs streamed from the file.

    .venv/bin/python bench/bench_actions.py --ref DIR [--events 1000000 4000000] [--repeat 2]

``--ref DIR``: a checkout of the code before streaming, e.g.
``mkdir /tmp/ref && git -C . archive eaa257b | tar -x -C /tmp/ref``.

Generates, per size N, a realistic ``events.parquet`` sorted by t_ns into bench/out/
(gitignored): 1000 Hz mouse moves (a few repeated positions), key presses with long
holds, OS auto-repeat and release/press bounces, clicks, wheel steps and a focus change
every 30 s, written with the aligner's Parquet options (``parquet_write_options``,
pyarrow's default row groups of 1Mi rows); a 60 fps frame clock over the same time and
20 s chunks. Then runs, each in a fresh child process (peak RSS from ``os.wait4``, so it is
the case's own; time measured inside the child after its imports):

- ``old``: the whole-table code of --ref: ``pq.read_table`` (nm-align held the table in
  memory anyway), ``prepare_actions`` + ``chunk_actions`` per chunk, both Parquet files
  of every chunk written.
- ``stream``: this checkout, what ``write_dataset`` does with a path:
  ``ParquetFile.iter_batches`` -> ``ActionsProcessor.feed`` -> chunk files written as
  chunks complete.
- ``table``: this checkout given the whole table (``pq.read_table`` then
  ``table_batches``), for the speed of the same input as ``old``.

Prints wall/CPU seconds (best of --repeat), peak RSS and the ratios stream/old, and
checks that every chunk file is byte-identical across the cases.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
OUT = HERE / "out"
T0 = 1_740_119_250_000_000_000
FPS = 60
CHUNK_FRAMES = 20 * FPS
BLOCK = 250_000                      # events generated per block (time-ordered blocks)


def _strings(values: list[str], idx):
    import numpy as np
    import pyarrow as pa
    return pa.array(np.asarray(values, dtype=object)[idx], pa.string())


def generate(path: Path, n_events: int, seed: int = 1):
    """Write ``n_events`` events into ``path``; returns the frame times (epoch ns)."""
    import binascii

    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    from companion.contract.schemas import EVENTS_SCHEMA, parquet_write_options
    rng = np.random.default_rng(seed)
    keys = [(87, "w", "KeyW"), (65, "a", "KeyA"), (83, "s", "KeyS"), (68, "d", "KeyD"),
            (32, " ", "Space"), (160, "Shift", "ShiftLeft"), (162, "Control", "ControlLeft"),
            (69, "e", "KeyE"), (81, "q", "KeyQ"), (82, "r", "KeyR")]
    writer = None
    start = T0
    done = 0
    while done < n_events:
        n = min(BLOCK, n_events - done)
        span = int(n / 0.93 * 1_000_000)            # ~93 % of the events are 1 kHz moves
        end = start + span
        parts: dict[str, list] = {k: [] for k in ("t", "kind", "down", "k", "b", "x", "y")}

        def add(t, kind, down=0, k=-1, b=-1, x=None, y=None):
            m = len(t)
            parts["t"].append(np.asarray(t, np.int64))
            parts["kind"].append(np.full(m, kind, np.int8))
            parts["down"].append(np.broadcast_to(np.asarray(down, np.int8), (m,)).copy())
            parts["k"].append(np.broadcast_to(np.asarray(k, np.int16), (m,)).copy())
            parts["b"].append(np.broadcast_to(np.asarray(b, np.int16), (m,)).copy())
            parts["x"].append(np.full(m, np.nan, np.float32) if x is None else x)
            parts["y"].append(np.full(m, np.nan, np.float32) if y is None else y)

        m = span // 1_000_000
        tm = start + np.arange(m, dtype=np.int64) * 1_000_000 + rng.integers(0, 200_000, m)
        xm = np.clip(960 + np.cumsum(rng.integers(-3, 4, m)), 0, 1919).astype(np.float32)
        ym = np.clip(540 + np.cumsum(rng.integers(-3, 4, m)), 0, 1079).astype(np.float32)
        add(tm, 0, x=xm, y=ym)
        nk = max(1, span // 250_000_000)                      # 4 presses a second
        tp = np.sort(rng.integers(start, end, nk))
        dur = np.where(rng.random(nk) < 0.15, rng.integers(600, 2000, nk),
                       rng.integers(30, 300, nk)) * 1_000_000
        tr = np.minimum(tp + dur, end - 1)
        kk = rng.integers(0, len(keys), nk)
        add(tp, 1, 1, kk)
        add(tr, 1, 0, kk)
        for i in np.flatnonzero(dur > 500_000_000):            # OS auto-repeat while held
            rep = np.arange(tp[i] + 500_000_000, tr[i], 33_000_000)
            add(rep, 1, 1, kk[i])
        bo = np.flatnonzero(rng.random(nk) < 0.2)              # bounces inside holds
        add((tp[bo] + tr[bo]) // 2, 1, 0, kk[bo])
        add((tp[bo] + tr[bo]) // 2 + 2_000_000, 1, 1, kk[bo])
        nc = max(1, span // 1_000_000_000)                     # a click a second
        tc = np.sort(rng.integers(start, end - 100_000_000, nc))
        bc = rng.choice([0, 2], nc)
        add(tc, 2, 1, b=bc, x=np.full(nc, 500, np.float32), y=np.full(nc, 400, np.float32))
        add(tc + 80_000_000, 2, 0, b=bc, x=np.full(nc, 500, np.float32),
            y=np.full(nc, 400, np.float32))
        nw = max(1, span // 500_000_000)
        add(np.sort(rng.integers(start, end, nw)), 3, x=np.full(nw, 700, np.float32),
            y=np.full(nw, 300, np.float32))
        add(np.arange(start, end, 30_000_000_000), 4)
        cols = {k: np.concatenate(v) for k, v in parts.items()}
        order = np.argsort(cols["t"], kind="stable")[:n]
        c = {k: v[order] for k, v in cols.items()}
        t, kind, down = c["t"], c["kind"], c["down"]
        n = len(t)
        is_key, is_click, is_mouse = kind == 1, kind == 2, kind != 1
        etype = np.where(kind == 0, 0, np.where(is_key, np.where(down == 1, 1, 2),
                                                 np.where(is_click, 3, np.where(kind == 3, 4, 5))))
        kidx = np.where(is_key, c["k"], 0)
        hexes = binascii.hexlify(rng.bytes(32 * n))
        hashes = pa.StringArray.from_buffers(
            n, pa.py_buffer(np.arange(0, 64 * (n + 1), 64, dtype=np.int32).tobytes()),
            pa.py_buffer(hexes))
        x, y = c["x"], c["y"]
        none = pa.nulls(n)
        tbl = pa.table({
            "t_ns": t,
            "event_type": _strings(["mouse_move", "key_down", "key_up", "mouse_click", "wheel",
                                    "focus"], etype),
            "key_code": pa.array(np.asarray([k[0] for k in keys], np.int32)[kidx],
                                 mask=~is_key),
            "mouse_x": pa.array(x / 1920, mask=~is_mouse | np.isnan(x)),
            "mouse_y": pa.array(y / 1080, mask=~is_mouse | np.isnan(y)),
            "mouse_button": pa.array(np.where(c["b"] == 2, "right", "left").astype(object),
                                     pa.string(), mask=~is_click),
            "delta": pa.array(np.full(n, -1, np.float32), mask=kind != 3),
            "frame_ref": none.cast(pa.int64()),
            "window_id": _strings(["62914567"], np.zeros(n, int)),
            "session_id": _strings(["bench"], np.zeros(n, int)),
            "hash": hashes,
            "metadata": pa.array([[("title", "Game - Level 3"), ("app", "game")]
                                  if k == 4 else ([("key_name", keys[kk][1])] if k == 1 else
                                                  None) for k, kk in zip(kind.tolist(),
                                                                        kidx.tolist())],
                                 pa.map_(pa.string(), pa.string())),
            "mono_ns": t - T0,
            "source": _strings(["mouse", "keyboard", "mouse", "mouse", "window"], kind),
            "state": pa.array(np.where(down == 1, "pressed", "released").astype(object),
                              pa.string(), mask=~(is_key | is_click)),
            "key": pa.array(np.asarray([k[1] for k in keys], object)[kidx], pa.string(),
                            mask=~is_key),
            "code": pa.array(np.asarray([k[2] for k in keys], object)[kidx], pa.string(),
                             mask=~is_key),
            "mouse_x_px": pa.array(x, mask=np.isnan(x)),
            "mouse_y_px": pa.array(y, mask=np.isnan(y)),
            "mouse_x_norm": pa.array(x / 1920, mask=np.isnan(x)),
            "mouse_y_norm": pa.array(y / 1080, mask=np.isnan(y)),
            "button_index": pa.array(c["b"].astype(np.int32), mask=~is_click),
            "wheel_dx": pa.array(np.zeros(n, np.float32), mask=kind != 3),
            "wheel_dy": pa.array(np.full(n, -1, np.float32), mask=kind != 3),
        }).cast(EVENTS_SCHEMA)
        if writer is None:
            writer = pq.ParquetWriter(path, EVENTS_SCHEMA, **parquet_write_options(EVENTS_SCHEMA))
        writer.write_table(tbl, row_group_size=1024 * 1024)
        done += n
        start = end
    writer.close()
    # frames: 60 fps from 0.5 s before the first event to the end (the events run on
    # 0.2 s past the last frame, so some lie outside the video at both ends)
    n_frames = int((start - T0 - 700_000_000) * FPS // 1_000_000_000)
    return T0 + 500_000_000 + (np.arange(n_frames, dtype=np.int64) * 1_000_000_000) // FPS


CHILD = r"""
import json, os, resource, sys, time
mode, events, frames, out = sys.argv[1:5]
sys.path.insert(0, sys.argv[5])
import numpy as np, pyarrow as pa, pyarrow.parquet as pq

def rss_mb():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024

ft = np.load(frames)
n = ft.size
chunks = [(s, min(n, s + %(chunk)d)) for s in range(0, n, %(chunk)d)]
end = int(ft[-1]) + 16_666_667
opts = {"compression": "zstd", "compression_level": 1, "use_dictionary": False}
if mode == "old":
    from companion.dataset.actions import chunk_actions, prepare_actions
else:
    from companion.dataset.actions import ActionsProcessor, table_batches
    from companion.dataset.writer import _event_batches
base = rss_mb()
w0, c0 = time.perf_counter(), time.process_time()
n_rows = 0

def write(c, raw, proc):
    d = os.path.join(out, f"chunk_{c:04d}")
    os.makedirs(d)
    pq.write_table(raw, os.path.join(d, "actions_raw.parquet"), **opts)
    pq.write_table(proc, os.path.join(d, "actions_processed.parquet"), **opts)

if mode == "old":
    tbl = pq.read_table(events)
    prep = prepare_actions(tbl, ft, 1920, 1080, end)
    for c, (s, e) in enumerate(chunks):
        raw, proc, st = chunk_actions(prep, s, e, is_last=(e == n))
        n_rows += st["events"]
        write(c, raw, proc)
else:
    proc = ActionsProcessor(ft, chunks, 1920, 1080, end)
    batches = _event_batches(events) if mode == "stream" else table_batches(pq.read_table(events))
    for b in batches:
        for ch in proc.feed(b):
            n_rows += ch.stats["events"]
            write(ch.index, ch.raw, ch.processed)
    for ch in proc.finish():
        n_rows += ch.stats["events"]
        write(ch.index, ch.raw, ch.processed)
print(json.dumps({"wall": time.perf_counter() - w0, "cpu": time.process_time() - c0,
                  "base_mb": base, "rows": n_rows}))
""" % {"chunk": CHUNK_FRAMES}


def run_case(mode: str, events: Path, frames: Path, out: Path, code_dir: Path) -> dict:
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    p = subprocess.Popen([sys.executable, "-c", CHILD, mode, str(events), str(frames), str(out),
                          str(code_dir)], stdout=subprocess.PIPE, cwd=code_dir)
    stdout = p.stdout.read()
    _, status, ru = os.wait4(p.pid, 0)
    p.returncode = os.waitstatus_to_exitcode(status)
    if p.returncode:
        raise SystemExit(f"{mode} failed ({p.returncode})")
    res = json.loads(stdout)
    res["peak_mb"] = ru.ru_maxrss / 1024
    return res


def digest(out: Path) -> str:
    h = hashlib.sha256()
    for f in sorted(out.rglob("*.parquet")):
        h.update(f.relative_to(out).as_posix().encode())
        h.update(f.read_bytes())
    return h.hexdigest()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ref", type=Path, required=True, help="checkout of the old code")
    ap.add_argument("--events", type=int, nargs="+", default=[1_000_000, 4_000_000])
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--cases", default="old,stream,table", help="comma-separated subset")
    args = ap.parse_args()
    import numpy as np
    sys.path.insert(0, str(REPO))
    OUT.mkdir(exist_ok=True)
    for n in args.events:
        ev = OUT / f"actions_events_{n}.parquet"
        fr = OUT / f"actions_frames_{n}.npy"
        if not ev.exists() or not fr.exists():
            t = time.perf_counter()
            np.save(fr, generate(ev, n))
            print(f"generated {ev.name} ({ev.stat().st_size / 1e6:.0f} MB) in "
                  f"{time.perf_counter() - t:.1f} s")
        best: dict[str, dict] = {}
        digests = {}
        for _ in range(args.repeat):
            for mode in args.cases.split(","):
                code = args.ref.resolve() if mode == "old" else REPO
                out = OUT / f"actions_out_{mode}"
                r = run_case(mode, ev, fr, out, code)
                digests[mode] = digest(out)
                shutil.rmtree(out)
                peak = max(r["peak_mb"], best.get(mode, r)["peak_mb"])   # worst peak
                if mode not in best or r["wall"] < best[mode]["wall"]:
                    best[mode] = r
                best[mode]["peak_mb"] = peak
        chunks = -(-int(np.load(fr).size) // CHUNK_FRAMES)
        print(f"\n{n:,} events ({next(iter(best.values()))['rows']:,} in {chunks} chunks "
              f"of 20 s), best of {args.repeat}:")
        for mode in best:
            r = best[mode]
            print(f"  {mode:6s} wall {r['wall']:6.2f} s  cpu {r['cpu']:6.2f} s  "
                  f"peak RSS {r['peak_mb']:6.0f} MB (after imports {r['base_mb']:.0f} MB)")
        o, s, t = best.get("old"), best.get("stream"), best.get("table")
        if o and s:
            print(f"  stream/old: time {s['wall'] / o['wall']:.2f}x, "
                  f"cpu {s['cpu'] / o['cpu']:.2f}x, peak RSS {s['peak_mb'] / o['peak_mb']:.2f}x")
        if o and t:
            print(f"  table/old: time {t['wall'] / o['wall']:.2f}x, cpu {t['cpu'] / o['cpu']:.2f}x")
        print(f"  outputs identical: {len(set(digests.values())) == 1}")


if __name__ == "__main__":
    main()
