"""Benchmark: nm-align (scan + timeline + events + 20 s dataset chunks) against
``ffmpeg -c copy -f segment -segment_time 20`` of the same file, in one run.

Input (generated, cached under bench/out/, kept out of git): an H.264 1080p60 MKV of
``--minutes`` minutes (a 20 s x264 clip with keyframes every 2 s, concatenated by stream
copy), a sidecar in the nm_timestamps format with synthetic anchors (segment 0 and one
clock pair per second, 10 ppm drift) and a JSONL of 100 Hz mouse motion plus keys.
The anchors are generated, not recorded by OBS: OBS cannot render 1080p60 in real time on
this machine's software GPU. Caption scanning still inspects every packet's NAL headers.

Prints wall time of both, the ratio (goal <= 1.5, stretch 1.2), and peak RSS of
nm-align (goal < 500 MB). Ratios are given for the medians and the minima over
``--repeat`` runs (the runs alternate). Every timed run starts after ``sync`` (the
previous run's 1.3 GB of dirty pages otherwise slow whichever run comes next), and
nm-align runs with Python's bytecode cache as an installed package has it (this
sandbox sets PYTHONDONTWRITEBYTECODE=1, which would recompile the package's modules,
~0.2 s, on every run; one untimed warm-up run per tree writes the cache). ``--ref DIR`` also times the nm-align of another checkout (e.g. one made
with ``git archive REV | tar -x -C DIR``), alternating with this tree's runs so both see
the same machine load: a before/after comparison on a shared machine (``--align-args``
are given to both trees).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
OUT = Path(__file__).resolve().parent / "out" / "align"
E0 = 1_795_000_000_000_000_000
M0 = 500_000_000_000
FPS = 60
INTERVAL = 1_000_000_000 // FPS


def run(cmd, **kw):
    subprocess.run(cmd, check=True, **kw)


def make_input(minutes: float, size: str = "1920x1080") -> Path:
    """The recording (cached): ``minutes`` of H.264 at ``size`` and 60 fps plus AAC, its
    anchors sidecar and a 100 Hz events JSONL."""
    OUT.mkdir(parents=True, exist_ok=True)
    tag = "" if size == "1920x1080" else f"_{size}"
    name = f"rec_{minutes:g}min{tag}"
    mkv = OUT / f"{name}.mkv"
    if not mkv.exists():
        clip = OUT / f"clip20_video{tag}.mkv"
        if not clip.exists():
            print(f"generating a 20 s {size} 60 fps clip ...", flush=True)
            run(["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", f"testsrc2=size={size}:rate=60",
                 "-frames:v", "1200", "-c:v", "libx264", "-preset", "ultrafast", "-crf", "28",
                 "-g", "120", "-bf", "2", "-pix_fmt", "yuv420p", str(clip)])
        n = max(1, round(minutes * 3))
        lst = OUT / "concat.txt"
        lst.write_text("".join(f"file '{clip}'\n" for _ in range(n)))
        print(f"concatenating {n} clips and adding {n * 20} s of AAC audio ...", flush=True)
        video = OUT / "video_only.mkv"
        run(["ffmpeg", "-v", "error", "-y", "-f", "concat", "-safe", "0", "-i", str(lst),
             "-c", "copy", str(video)])
        run(["ffmpeg", "-v", "error", "-y", "-i", str(video), "-f", "lavfi", "-i",
             f"sine=frequency=440:sample_rate=48000:duration={n * 20}", "-map", "0:v", "-map", "1:a",
             "-c:v", "copy", "-c:a", "aac", "-b:a", "128k", str(mkv)])
        video.unlink()
    secs = minutes * 60
    side = mkv.with_name(mkv.stem + ".anchors.jsonl")
    if not side.exists():
        lines = [{"kind": "header", "caption_version": 1, "recording_id": "BENCH001", "fps_num": FPS,
                  "fps_den": 1, "interval_ns": INTERVAL, "output_width": int(size.split("x")[0]),
                  "output_height": int(size.split("x")[1])},
                 {"kind": "segment", "recording_id": "BENCH001", "segment": 0, "pts_base": 0,
                  "frame_ns": M0, "interval_ns": INTERVAL, "pause_offset_ns": 0}]
        for s in range(int(secs) + 1):
            m = M0 + s * 1_000_000_000
            lines.append({"kind": "clock", "epoch_ns": E0 + (m - M0) + (m - M0) // 100_000, "mono_ns": m})
        side.write_text("".join(json.dumps(x) + "\n" for x in lines))
    jsonl = mkv.with_suffix(".jsonl")
    if not jsonl.exists():
        with open(jsonl, "w") as f:
            for i in range(int(secs * 100)):
                t = E0 + i * 10_000_000 + 1234
                data = ["mouse.move", 100 + i % 1700, 100 + (i * 7) % 900]
                f.write(json.dumps({"timestamp_ns": t, "event_src": "control_publisher",
                                    "event_data": json.dumps(data, separators=(",", ":"))}) + "\n")
                if i % 50 == 0:
                    for act in ("keyboard.press", "keyboard.release"):
                        f.write(json.dumps({"timestamp_ns": t + (0 if act.endswith("press") else 5_000_000),
                                            "event_src": "control_publisher",
                                            "event_data": json.dumps([act, 87, "w"])}) + "\n")
    return mkv


CPU: dict[str, list[float]] = {}
ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


def timed(cmd, cwd=None, tag: str | None = None) -> tuple[float, int]:
    """Wall time and peak RSS of ``cmd``; its CPU seconds (user + system, waited-for
    children such as the ffmpeg copy included) go to ``CPU[tag]``."""
    os.sync()
    t0 = time.perf_counter()
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=cwd,
                         env=ENV)
    _, status, ru = os.wait4(p.pid, 0)
    dt = time.perf_counter() - t0
    err = p.stderr.read().decode(errors="replace")
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"failed: {' '.join(map(str, cmd))}\n{err[-2000:]}")
    if tag:
        CPU.setdefault(tag, []).append(ru.ru_utime + ru.ru_stime)
    return dt, ru.ru_maxrss * 1024


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--captured", action="store_true",
                    help="as after nm-companion: integrity.sha256 written at capture (not timed), "
                         "so nm-align reuses the recording's hash instead of computing it")
    ap.add_argument("--ref", type=Path, default=None,
                    help="also time nm-align of the checkout in this folder (alternating runs)")
    ap.add_argument("--align-args", default="",
                    help="extra nm-align arguments for the runs of both trees (e.g. '--no-checksums')")
    args = ap.parse_args()
    mkv = make_input(args.minutes)
    load0 = os.getloadavg()
    seg_dir = OUT / "ffmpeg_segments"
    ds = OUT / "dataset"
    res = {"ffmpeg": [], "nm-align": [], "ref": []}
    rss = 0
    rss_ref = 0

    def prepare():
        shutil.rmtree(ds, ignore_errors=True)
        for f in ("frames.parquet", "events.parquet", "metadata.json", "integrity.sha256"):
            (mkv.parent / f).unlink(missing_ok=True)
        if args.captured:
            from companion.util.integrity import write_integrity
            write_integrity(mkv.parent, [mkv.name, mkv.with_suffix(".jsonl").name,
                                         mkv.stem + ".anchors.jsonl"])

    align_cmd = [sys.executable, "-m", "companion.cli.align_cli", str(mkv), "--dataset", str(ds),
                 "--chunk-seconds", "20", "--quiet"]
    ours_cmd = align_cmd + args.align_args.split()     # both trees: like for like
    for tree in [REPO] + ([args.ref] if args.ref is not None else []):   # warm-up, untimed
        prepare()
        timed(ours_cmd, cwd=Path(tree).resolve())
    for _ in range(args.repeat):
        shutil.rmtree(seg_dir, ignore_errors=True)
        seg_dir.mkdir(parents=True)
        dt, _ = timed(["ffmpeg", "-v", "error", "-y", "-i", str(mkv), "-map", "0", "-c", "copy",
                       "-f", "segment", "-segment_time", "20", "-reset_timestamps", "1",
                       str(seg_dir / "seg_%04d.mp4")], tag="ffmpeg")
        res["ffmpeg"].append(dt)
        prepare()
        dt, r = timed(ours_cmd, cwd=REPO, tag="nm-align")
        res["nm-align"].append(dt)
        rss = max(rss, r)
        if args.ref is not None:
            prepare()
            dt, r = timed(ours_cmd, cwd=args.ref.resolve(), tag="ref")
            res["ref"].append(dt)
            rss_ref = max(rss_ref, r)
    base, ours = min(res["ffmpeg"]), min(res["nm-align"])
    med = statistics.median
    print(f"input: {mkv.name} ({mkv.stat().st_size / 1e6:.0f} MB, {args.minutes:g} min 1080p60 H.264)")
    print(f"baseline ffmpeg -c copy -f segment -segment_time 20: median {med(res['ffmpeg']):.2f} s, "
          f"min {base:.2f} s")
    mode = "recording hash reused from capture" if args.captured else "recording hashed by nm-align"
    print(f"nm-align --dataset {args.align_args + ' ' if args.align_args else ''}(chunk 20 s, {mode}): median {med(res['nm-align']):.2f} s, "
          f"min {ours:.2f} s")
    def paired(tag: str) -> float:
        """Median of each run's time over the ffmpeg run just before it (robust to the
        machine's speed drifting during the round)."""
        return med([a / b for a, b in zip(res[tag], res["ffmpeg"])])

    print(f"ratio nm-align / ffmpeg-segment: medians {med(res['nm-align']) / med(res['ffmpeg']):.2f}x, "
          f"minima {ours / base:.2f}x, per-run pairs {paired('nm-align'):.2f}x  "
          f"(goal <= 1.5x, stretch 1.2x)")
    if res["ref"]:
        ref = min(res["ref"])
        print(f"reference nm-align ({args.ref}): median {med(res['ref']):.2f} s, min {ref:.2f} s; "
              f"ratios {med(res['ref']) / med(res['ffmpeg']):.2f}x / {ref / base:.2f}x / "
              f"pairs {paired('ref'):.2f}x")
    print(f"nm-align peak RSS: {rss / 1e6:.0f} MB  (goal < 500 MB)"
          + (f"; reference {rss_ref / 1e6:.0f} MB" if rss_ref else ""))
    for tag in ("ffmpeg", "nm-align", "ref"):
        if res[tag]:
            print(f"  {tag:8s} runs: wall " + " ".join(f"{x:.2f}" for x in res[tag])
                  + "  CPU " + " ".join(f"{x:.2f}" for x in CPU.get(tag, [])))
    print("load average at start: {:.2f} {:.2f} {:.2f}; at end: {:.2f} {:.2f} {:.2f}".format(
        *load0, *os.getloadavg()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
