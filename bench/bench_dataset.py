"""Benchmark: writing dataset chunks vs ``ffmpeg -c copy -f segment -segment_time 20``.

Generates (once, cached under bench/out/) an OBS-like recording: H.264 1080p60 with a
keyframe every 2 s and B-frames, AAC 48 kHz stereo, in Matroska. Then, in the same run
and alternating, times:

  baseline  ffmpeg -i in.mkv -map 0 -c copy -f segment -segment_time 20 seg_%04d.mkv
  ours      companion.align.demux.scan_video + companion.dataset.write_dataset
            (20 s chunk MP4s, per-chunk WAVs, actions parquet for 1000 Hz mouse input)

each in a fresh child process, and prints wall times, the ratio ours/baseline, and the
peak RSS of our child. Outputs stay under bench/out/ (not in git).

    .venv/bin/python bench/bench_dataset.py [--minutes 10] [--repeat 3] [--events-hz 1000]
"""
from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
OUT = HERE / "out"
REPO = HERE.parent


def _encode(path: Path, secs: float, gop: int = 120) -> None:
    tmp = path.with_suffix(".part.mkv")
    print(f"generating {path.name} ({secs:g} s of 1080p60; cached afterwards)...", flush=True)
    subprocess.run([
        "ffmpeg", "-v", "error", "-y",
        "-f", "lavfi", "-i", "testsrc2=size=1920x1080:rate=60",
        "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000",
        "-t", str(secs), "-map", "0:v", "-map", "1:a",
        "-c:v", "libx264", "-preset", "ultrafast", "-bf", "2", "-g", str(gop),
        "-keyint_min", str(gop), "-sc_threshold", "0", "-b:v", "6M", "-maxrate", "6M",
        "-bufsize", "12M", "-pix_fmt", "yuv420p",
        "-c:a", "aac", "-ac", "2", "-b:a", "160k", str(tmp)], check=True)
    tmp.rename(path)


def generate(minutes: int, gop_seconds: float = 2.0) -> Path:
    """An OBS-like recording of ``minutes`` minutes: one minute is encoded, longer files
    are that minute repeated with the concat demuxer (stream copy; timestamps continue,
    keyframes stay every 2 s), which takes seconds instead of an encode per minute."""
    OUT.mkdir(parents=True, exist_ok=True)
    tag = "" if gop_seconds == 2.0 else f"_gop{gop_seconds:g}s"
    one = OUT / f"rec_1080p60_1min{tag}.mkv"
    if not one.exists():
        _encode(one, 60, round(gop_seconds * 60))
    if minutes <= 1:
        return one
    path = OUT / f"rec_1080p60_{minutes}min{tag}.mkv"
    if path.exists():
        return path
    lst = OUT / f"concat_{minutes}.txt"
    lst.write_text("".join(f"file '{one.name}'\n" for _ in range(minutes)))
    tmp = path.with_suffix(".part.mkv")
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-f", "concat", "-safe", "0", "-i",
                    str(lst), "-map", "0", "-c", "copy", str(tmp)], check=True)
    tmp.rename(path)
    return path


def run_baseline(src: Path) -> tuple[float, float]:
    """(wall seconds, CPU seconds user+sys) of the ffmpeg segment copy."""
    dest = OUT / "ffmpeg_segments"
    shutil.rmtree(dest, ignore_errors=True)
    dest.mkdir(parents=True)
    r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-i", str(src), "-map", "0", "-c", "copy",
                    "-f", "segment", "-segment_time", "20", "-reset_timestamps", "1",
                    str(dest / "seg_%04d.mkv")], check=True)
    wall = time.perf_counter() - t0
    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)


_CHILD = r"""
import json, resource, sys, time
sys.path.insert(0, REPO)
import numpy as np, pyarrow as pa
from companion.contract.schemas import EVENTS_SCHEMA, FRAMES_SCHEMA
t0 = time.perf_counter()
c0 = time.process_time()
from companion.align.demux import scan_video
from companion.align.anchors import AnchorSet
from companion.align.session import build_frames
from companion.dataset.writer import write_dataset
sc = scan_video(SRC)
t_scan = time.perf_counter() - t0
c_scan = time.process_time() - c0
n = len(sc.pts)
T0 = 1_700_000_000_000_000_000
# frame times as nm-align derives them without OBS anchors (frame 0 pinned to T0)
frames, _ = build_frames(sc, AnchorSet("recording_start_marker", "low", start_epoch_ns=T0))
m = int(n / float(sc.fps) * HZ)
t = T0 + (np.arange(m, dtype=np.int64) * (1_000_000_000 // max(HZ, 1)))
x = (np.arange(m) % 1900).astype(np.float32)
ev = {"t_ns": t, "event_type": pa.array(["mouse_move"] * m), "session_id": pa.array(["s"] * m),
      "source": pa.array(["mouse"] * m), "hash": pa.array(np.arange(m).astype(str)),
      "mouse_x_px": x, "mouse_y_px": x % 1080, "window_id": pa.array(["0x1"] * m)}
events = pa.table({f.name: (pa.array(ev[f.name], f.type) if f.name in ev else pa.nulls(m, f.type))
                   for f in EVENTS_SCHEMA})
t1 = time.perf_counter()
c1 = time.process_time()
ch0 = resource.getrusage(resource.RUSAGE_CHILDREN)
s = write_dataset(ROOT, "bench", sc, frames, events, {"input_device": "mouse"}, chunk_seconds=20.0)
t_write = time.perf_counter() - t1
ch1 = resource.getrusage(resource.RUSAGE_CHILDREN)
c_write = time.process_time() - c1 + (ch1.ru_utime - ch0.ru_utime) + (ch1.ru_stime - ch0.ru_stime)
print(json.dumps({"scan_s": t_scan, "write_s": t_write, "total_s": t_scan + t_write,
                  "scan_cpu_s": c_scan, "write_cpu_s": c_write,
                  "setup_s": t1 - t0 - t_scan, "summary": s,
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def run_ours(src: Path, hz: int) -> dict:
    root = OUT / "dataset"
    shutil.rmtree(root, ignore_errors=True)
    code = (f"REPO={str(REPO)!r}\nSRC={str(src)!r}\nROOT={str(root)!r}\nHZ={hz}\n" + _CHILD)
    wall0 = time.perf_counter()
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    wall = time.perf_counter() - wall0
    if r.returncode != 0:
        sys.exit(f"our run failed:\n{r.stderr}")
    res = json.loads(r.stdout.strip().splitlines()[-1])
    res["wall_s"] = wall
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=int, default=10)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--events-hz", type=int, default=1000, help="synthetic mouse events per second")
    ap.add_argument("--gop-seconds", type=float, default=2.0,
                    help="keyframe interval of the generated file (not dividing 20 s -> smart cuts)")
    a = ap.parse_args()
    src = generate(a.minutes, a.gop_seconds)
    size_mb = src.stat().st_size / 1e6
    print(f"input: {src.name}, {size_mb:.0f} MB")
    base, base_cpu, ours = [], [], []
    for i in range(a.repeat):
        w, c = run_baseline(src)
        base.append(w)
        base_cpu.append(c)
        ours.append(run_ours(src, a.events_hz))
        o = ours[-1]
        print(f"run {i + 1}: ffmpeg segment copy {w:.2f} s (cpu {c:.2f} s) | ours scan "
              f"{o['scan_s']:.2f} s + write {o['write_s']:.2f} s = {o['total_s']:.2f} s "
              f"(cpu {o['scan_cpu_s']:.2f} + {o['write_cpu_s']:.2f} s; process wall "
              f"{o['wall_s']:.2f} s incl. imports, peak RSS {o['peak_rss_mb']:.0f} MB, "
              f"{o['summary']['chunks']} chunks, {o['summary']['copied']} copied, "
              f"{o['summary'].get('smart_cut', 0)} smart-cut)", flush=True)
    b, bc = min(base), min(base_cpu)
    best = min(ours, key=lambda o: o["total_s"])
    bw = min(o["write_s"] for o in ours)
    bwc = min(o["write_cpu_s"] for o in ours)
    btc = min(o["scan_cpu_s"] + o["write_cpu_s"] for o in ours)
    print(f"\nbaseline (ffmpeg -c copy -f segment -segment_time 20), best of {a.repeat}: "
          f"{b:.2f} s wall, {bc:.2f} s cpu")
    print(f"ours (scan_video + write_dataset, {a.events_hz} Hz events), best of {a.repeat}: "
          f"{best['total_s']:.2f} s wall (write_dataset alone {bw:.2f} s wall, {bwc:.2f} s cpu)")
    print(f"ratio ours/baseline, wall: {best['total_s'] / b:.2f}x  "
          f"(write_dataset alone: {bw / b:.2f}x; goal <= 1.5x)")
    print(f"ratio ours/baseline, cpu:  {btc / bc:.2f}x  (write_dataset alone: {bwc / bc:.2f}x)")
    print(f"peak RSS of our process: {max(o['peak_rss_mb'] for o in ours):.0f} MB (goal < 500 MB)")


if __name__ == "__main__":
    main()
