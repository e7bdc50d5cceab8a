"""Benchmark: the dataset loader vs plain PyAV vs LeRobot-style decode-at-timestamp.

Generates (once, cached under bench/out/loader/) an OBS-like recording -- H.264 with a
keyframe every 2 s and 2 B-frames (ffmpeg testsrc2), default 1280x720 at 30 fps, 60 s --
and turns it into a dataset with companion.align.demux.scan_video +
companion.dataset.write_dataset (20 s chunks, 1000 Hz mouse events plus key presses).
Then, in one run, each method in a fresh child process (alternating, best of --repeat):

  sequential, every frame in order to an RGB numpy array:
    loader      companion.load: Dataset.iter_frames() (decode + pts check + action state)
    pyav        plain PyAV: av.open(chunk); for frame in decode(): frame.to_ndarray("rgb24")
    lerobot     decode-at-timestamp (below) called for each frame in order, as a LeRobot
                dataset's __getitem__ does when iterated without shuffling; only the
                first --seq-lerobot-frames frames (whole 2 s GOPs; it is slow)
  random access, --samples uniformly random (video, frame) pairs, same seed for all:
    loader      Dataset.get(video_id, frame) (decoder LRU, seek to keyframe, decode forward)
    pyav        plain PyAV seek-and-decode: containers kept open (one per chunk file);
                seek to the keyframe at or before the frame's pts, decode until that pts
    lerobot     decode-at-timestamp as LeRobot does it, re-implemented: per sample open
                the chunk file, seek to the timestamp (keyframe at or before), decode until
                pts >= timestamp - 1e-4 s, take that frame, close. Lenient: only the target
                frame is converted to RGB (LeRobot's torchvision reader converts every
                decoded frame), so the real LeRobot path is slower than this baseline.
  and, when torch is installed, a DataLoader with 2 workers (multiprocessing_context=
  "spawn", as docs/loader.md advises) over FrameDataset (random sampler, --samples
  items): frames/s and each worker's peak RSS.

Prints frames/s, the ratios loader/baseline, and peak RSS per process ("memory per
worker": a process doing only that work). Run from the repo root:

    .venv/bin/python bench/bench_loader.py [--width 1280 --height 720 --fps 30
        --seconds 60 --samples 150 --seq-lerobot-frames 120 --repeat 3]
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
OUT = HERE / "out" / "loader"
REPO = HERE.parent


def generate(w: int, h: int, fps: int, seconds: float) -> Path:
    path = OUT / f"rec_{w}x{h}p{fps}_{seconds:g}s.mkv"
    if path.exists():
        return path
    OUT.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".part.mkv")
    print(f"generating {path.name} (cached afterwards)...", flush=True)
    subprocess.run([
        "ffmpeg", "-v", "error", "-y", "-f", "lavfi",
        "-i", f"testsrc2=size={w}x{h}:rate={fps}", "-t", str(seconds),
        "-c:v", "libx264", "-preset", "veryfast", "-bf", "2", "-g", str(2 * fps),
        "-keyint_min", str(2 * fps), "-sc_threshold", "0", "-b:v", "4M",
        "-pix_fmt", "yuv420p", str(tmp)], check=True)
    tmp.rename(path)
    return path


_BUILD = r"""
import sys
sys.path.insert(0, REPO)
import numpy as np, pyarrow as pa
from companion.contract.schemas import EVENTS_SCHEMA, FRAMES_SCHEMA
from companion.align.demux import scan_video
from companion.align.anchors import AnchorSet
from companion.align.session import build_frames
from companion.dataset.writer import write_dataset
sc = scan_video(SRC)
n = len(sc.pts)
T0 = 1_700_000_000_000_000_000
# frame times as nm-align derives them without OBS anchors (frame 0 pinned to T0)
frames, _ = build_frames(sc, AnchorSet("recording_start_marker", "low", start_epoch_ns=T0))
m = int(n / float(sc.fps) * 1000)
t = T0 + np.arange(m, dtype=np.int64) * 1_000_000
x = (np.arange(m) % 1200).astype(np.float32)
et = np.array(["mouse_move"] * m, dtype=object)
kc = np.full(m, None, dtype=object)
st = np.full(m, None, dtype=object)
src = np.array(["mouse"] * m, dtype=object)
for k in range(0, m - 200, 700):          # a key tap about every 0.7 s
    et[k], et[k + 150] = "key_down", "key_up"
    kc[k] = kc[k + 150] = 65 + (k // 700) % 26
    st[k], st[k + 150] = "pressed", "released"
    src[k] = src[k + 150] = "keyboard"
ev = {"t_ns": t, "event_type": pa.array(et.tolist()), "session_id": pa.array(["s"] * m),
      "source": pa.array(src.tolist()), "hash": pa.array(np.arange(m).astype(str)),
      "key_code": pa.array(kc.tolist(), pa.int32()), "state": pa.array(st.tolist()),
      "mouse_x_px": x, "mouse_y_px": x % 700, "window_id": pa.array(["0x1"] * m)}
events = pa.table({f.name: (pa.array(ev[f.name], f.type) if f.name in ev else pa.nulls(m, f.type))
                   for f in EVENTS_SCHEMA})
write_dataset(ROOT, "bench", sc, frames, events, {"input_device": "keyboard+mouse"},
              chunk_seconds=20.0)
"""

_COMMON = r"""
import json, random, resource, sys, time
sys.path.insert(0, REPO)
import av, numpy as np
from fractions import Fraction
from companion.load import open_dataset
ds = open_dataset(ROOT)
chunks = ds.chunks()
rnd = random.Random(1234)
pairs = ds.frame_list()
samples = [pairs[rnd.randrange(len(pairs))] for _ in range(SAMPLES)]
def decode_at(path, ts, tol=1e-4):
    # LeRobot-style: open, seek to the keyframe at/before ts, decode until pts >= ts
    with av.open(path) as cont:
        vs = cont.streams.video[0]
        start = vs.start_time or 0
        cont.seek(start + int(ts / vs.time_base), stream=vs, backward=True, any_frame=False)
        for fr in cont.decode(vs):
            if float((fr.pts - start) * vs.time_base) >= ts - tol:
                return fr.to_ndarray(format="rgb24")
    raise RuntimeError("not found")
rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
def cpu():
    r = resource.getrusage(resource.RUSAGE_SELF)   # all threads of this process
    return r.ru_utime + r.ru_stime
CPU0 = cpu()
def done(n, t):
    c = cpu() - CPU0
    print(json.dumps({"frames": n, "seconds": t, "fps": n / t, "cpu_s": c, "fps_cpu": n / c,
                      "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                      "rss_after_import_mb": rss0}))
"""

_METHODS = {
    "seq_loader": r"""
CPU0 = cpu(); t0 = time.perf_counter(); n = 0
for s in ds.iter_frames():
    n += 1
done(n, time.perf_counter() - t0)
""",
    "seq_pyav": r"""
CPU0 = cpu(); t0 = time.perf_counter(); n = 0
for c in chunks:
    with av.open(ds._join(c.video_path)) as cont:
        for fr in cont.decode(video=0):
            fr.to_ndarray(format="rgb24"); n += 1
done(n, time.perf_counter() - t0)
""",
    "seq_lerobot": r"""
CPU0 = cpu(); t0 = time.perf_counter(); n = 0
for vid, f in pairs[:SEQ_LEROBOT]:
    c = ds.chunk_of(vid, f)
    decode_at(ds._join(c.video_path), (f - c.start_frame) / c.fps); n += 1
done(n, time.perf_counter() - t0)
""",
    "rand_loader": r"""
CPU0 = cpu(); t0 = time.perf_counter()
for vid, f in samples:
    ds.get(vid, f)
done(len(samples), time.perf_counter() - t0)
""",
    "rand_pyav": r"""
# plain PyAV seek-and-decode with the containers kept open; frame k of a chunk file is
# the k-th smallest packet pts (one demux pass per file, as any exact reader needs)
opened = {}
def frame_at(path, k):
    if path not in opened:
        cont = av.open(path)
        vs = cont.streams.video[0]
        pts = sorted(p.pts for p in cont.demux(vs) if p.pts is not None and p.size)
        opened[path] = (cont, vs, pts)
    cont, vs, pts = opened[path]
    target = pts[k]
    cont.seek(target, stream=vs, backward=True, any_frame=False)
    for fr in cont.decode(vs):
        if fr.pts >= target:
            return fr.to_ndarray(format="rgb24")
    raise RuntimeError("not found")
CPU0 = cpu(); t0 = time.perf_counter()
for vid, f in samples:
    c = ds.chunk_of(vid, f)
    frame_at(ds._join(c.video_path), f - c.start_frame)
done(len(samples), time.perf_counter() - t0)
""",
    "rand_lerobot": r"""
CPU0 = cpu(); t0 = time.perf_counter()
for vid, f in samples:
    c = ds.chunk_of(vid, f)
    decode_at(ds._join(c.video_path), (f - c.start_frame) / c.fps)
done(len(samples), time.perf_counter() - t0)
""",
    "torch_2workers": r"""
try:
    import torch
    from torch.utils.data import DataLoader, RandomSampler
except ImportError:
    print(json.dumps({"skipped": "torch not installed"})); sys.exit(0)
from companion.load.torch import FrameDataset
fd = FrameDataset(ROOT, transform=tag)
sampler = RandomSampler(fd, replacement=True, num_samples=SAMPLES,
                        generator=torch.Generator().manual_seed(0))
dl = DataLoader(fd, batch_size=None, sampler=sampler, num_workers=2,
                multiprocessing_context="spawn")
t0 = time.perf_counter(); n = 0; workers = {}; t1 = None
for item in dl:
    n += 1; workers[item["pid"]] = max(workers.get(item["pid"], 0), item["rss_mb"])
    if t1 is None:
        t1 = time.perf_counter()     # spawned workers started and delivered a first item
t = time.perf_counter() - t0
print(json.dumps({"frames": n, "seconds": t, "fps": n / t, "startup_s": t1 - t0,
                  "fps_after_first": (n - 1) / max(time.perf_counter() - t1, 1e-9),
                  "worker_peak_rss_mb": sorted(workers.values())}))
""",
}


# Top level of every child script. Spawned DataLoader workers re-import the script as
# __mp_main__: they need ``tag`` (the transform, pickled by reference) and must not run
# the benchmark body, which is under ``if __name__ == "__main__"``.
_HEAD = r"""
import os, resource
def tag(item):
    item["rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    item["pid"] = os.getpid()
    return item
"""


def run_child(name: str, root: Path, samples: int, seq_lerobot: int) -> dict:
    body = (f"REPO={str(REPO)!r}\nROOT={str(root)!r}\nSAMPLES={samples}\n"
            f"SEQ_LEROBOT={seq_lerobot}\n" + _COMMON + _METHODS[name])
    code = (_HEAD + "if __name__ == '__main__':\n"
            + "".join("    " + ln if ln.strip() else ln for ln in body.splitlines(True)))
    script = OUT / f"child_{name}.py"
    script.write_text(code)
    r = subprocess.run([sys.executable, str(script)], capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(f"{name} failed:\n{r.stderr}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--width", type=int, default=1280)
    ap.add_argument("--height", type=int, default=720)
    ap.add_argument("--fps", type=int, default=30)
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--samples", type=int, default=150, help="random-access samples")
    ap.add_argument("--seq-lerobot-frames", type=int, default=120,
                    help="frames of the sequential LeRobot-style pass (from frame 0)")
    ap.add_argument("--repeat", type=int, default=3)
    a = ap.parse_args()
    src = generate(a.width, a.height, a.fps, a.seconds)
    root = OUT / f"dataset_{src.stem}"
    if not (root / "index.parquet").exists():
        print("building the dataset (cached afterwards)...", flush=True)
        code = f"REPO={str(REPO)!r}\nSRC={str(src)!r}\nROOT={str(root)!r}\n" + _BUILD
        subprocess.run([sys.executable, "-c", code], check=True)
    print(f"dataset: {root} ({src.stem}, 20 s chunks, keyframe every 2 s, 2 B-frames)")
    best: dict[str, dict] = {}
    names = list(_METHODS)
    for i in range(a.repeat):
        # rotate the order each repeat so no method always runs first (cache/clock effects)
        for name in names[i % len(names):] + names[:i % len(names)]:
            r = run_child(name, root, a.samples, a.seq_lerobot_frames)
            if "skipped" in r:
                best[name] = r
                continue
            key = "fps_cpu" if "fps_cpu" in r else "fps"
            if name not in best or r[key] > best[name][key]:
                best[name] = r
            extra = (f", {r['fps_cpu']:.1f} frames per CPU-s, peak RSS {r['peak_rss_mb']:.0f} MB"
                     if "peak_rss_mb" in r else
                     f", worker peak RSS {[round(x) for x in r['worker_peak_rss_mb']]} MB")
            print(f"run {i + 1} {name:15s} {r['fps']:8.1f} frames/s wall ({r['frames']} frames "
                  f"in {r['seconds']:.2f} s{extra})", flush=True)
    b = best
    print(f"\nbest of {a.repeat} (by frames per CPU-second: all threads of the process; "
          f"robust on a shared machine), {a.width}x{a.height}@{a.fps}:")
    for what, ours, base, bname in (
            ("sequential", "seq_loader", "seq_pyav", "plain PyAV decode()"),
            ("sequential", "seq_loader", "seq_lerobot", "LeRobot-style decode-at-timestamp"),
            ("random", "rand_loader", "rand_pyav", "plain PyAV seek-and-decode"),
            ("random", "rand_loader", "rand_lerobot", "LeRobot-style decode-at-timestamp")):
        o, r = b[ours], b[base]
        print(f"{what:10s} loader {o['fps_cpu']:.1f} vs {bname} {r['fps_cpu']:.1f} frames/CPU-s: "
              f"ratio loader/baseline {o['fps_cpu'] / r['fps_cpu']:.2f}x  (wall: {o['fps']:.1f} vs "
              f"{r['fps']:.1f} frames/s, {o['fps'] / r['fps']:.2f}x)")
    print(f"random vs sequential (loader, CPU): "
          f"{b['rand_loader']['fps_cpu'] / b['seq_loader']['fps_cpu']:.3f}x")
    for name in ("seq_loader", "seq_pyav", "seq_lerobot", "rand_loader", "rand_pyav",
                 "rand_lerobot"):
        print(f"memory {name:13s} peak RSS {b[name]['peak_rss_mb']:.0f} MB "
              f"(after imports {b[name]['rss_after_import_mb']:.0f} MB)")
    t = b.get("torch_2workers", {})
    if "skipped" in t:
        print(f"torch DataLoader: skipped ({t['skipped']})")
    elif t:
        print(f"torch DataLoader, 2 spawned workers, random sampler: {t['fps_after_first']:.1f} "
              f"frames/s after the first item ({t['fps']:.1f} with the {t['startup_s']:.1f} s "
              f"worker start-up), worker peak RSS "
              f"{[round(x) for x in t['worker_peak_rss_mb']]} MB")


if __name__ == "__main__":
    main()
