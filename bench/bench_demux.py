"""Benchmark: scan_video vs. `ffmpeg -c copy -f segment` on a long 1080p60 recording.

The aligner's budget is 1.5x the time FFmpeg needs to stream-copy the same file into
segments; scan_video is the part of it that touches the video, so it should use well
under that. Prints both wall times and the ratio scan_video / ffmpeg.

The input is built once and cached: a 10 s 1080p60 H.264 clip (libx264 ultrafast, with
OBS-style caption SEI NALs appended to every 60th packet, as OBS 29 does) concatenated
by stream copy to ``--seconds`` seconds, plus 48 kHz stereo AAC.

    .venv/bin/python bench/bench_demux.py [--seconds 600] [--cache /tmp/nm-bench]
"""
from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from companion.align import sei
from companion.align.cea608 import encode_pop_on, split_messages
from companion.align.demux import scan_video
from companion.contract.captions import ClockPair, encode_clock


def _clip(path: Path, seconds: int = 10, fps: int = 60) -> None:
    out = av.open(str(path), "w")
    st = out.add_stream("libx264", rate=fps)
    st.width, st.height, st.pix_fmt = 1920, 1080, "yuv420p"
    st.codec_context.options = {"preset": "ultrafast", "x264-params": "keyint=250:bframes=0",
                                "crf": "18"}
    ast = out.add_stream("aac", rate=48000)
    ast.layout = "stereo"
    rng = np.random.default_rng(0)
    noise = rng.integers(0, 255, (1080, 1920 + 64 * seconds * fps // 60, 3), dtype=np.uint8)
    n = seconds * fps

    def mux(pkts):
        for p in pkts:
            if p.pts % 60 == 0:
                text = encode_clock(ClockPair("bench", 1_700_000_000_000_000_000 + p.pts, p.pts))
                t35 = [sei.build_ga94_t35(m) for m in split_messages(encode_pop_on(text))]
                q = av.Packet(bytes(p) + b"\x00\x00\x00\x01"
                              + sei.build_h264_sei_nal([(4, t) for t in t35]))
                q.pts, q.dts, q.time_base, q.is_keyframe = p.pts, p.dts, p.time_base, p.is_keyframe
                q.stream = st
                out.mux(q)
            else:
                out.mux(p)

    for i in range(n):
        x = (i * 64) // 60
        f = av.VideoFrame.from_ndarray(np.ascontiguousarray(noise[:, x:x + 1920]), format="rgb24")
        f.pts = i
        f.time_base = Fraction(1, fps)
        mux(st.encode(f))
    mux(st.encode(None))
    spf = 1024
    tone = (0.1 * np.sin(np.arange(spf * 2) / 20)).astype(np.float32).reshape(1, -1)
    for k in range(seconds * 48000 // spf):
        af = av.AudioFrame.from_ndarray(tone, format="flt", layout="stereo")
        af.sample_rate, af.pts = 48000, k * spf
        for p in ast.encode(af):
            out.mux(p)
    for p in ast.encode(None):
        out.mux(p)
    out.close()


def build_input(cache: Path, seconds: int) -> Path:
    cache.mkdir(parents=True, exist_ok=True)
    final = cache / f"bench_1080p60_{seconds}s.mkv"
    if final.exists():
        return final
    clip = cache / "clip_1080p60_10s.mkv"
    if not clip.exists():
        print("encoding a 10 s 1080p60 clip (once)...", file=sys.stderr)
        _clip(clip)
    lst = cache / "concat.txt"
    lst.write_text("".join(f"file '{clip.name}'\n" for _ in range(max(1, seconds // 10))))
    tmp = final.with_suffix(".tmp.mkv")
    subprocess.run(["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-y", "-f", "concat",
                    "-safe", "0", "-i", str(lst), "-c", "copy", str(tmp)], check=True)
    tmp.rename(final)
    return final


def time_ffmpeg_segment(src: Path) -> float:
    d = Path(tempfile.mkdtemp(prefix="nm-bench-seg-"))
    try:
        t0 = time.perf_counter()
        subprocess.run(["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-y", "-i", str(src),
                        "-map", "0", "-c", "copy", "-f", "segment", "-segment_time", "60",
                        "-reset_timestamps", "1", str(d / "seg%03d.mkv")], check=True)
        return time.perf_counter() - t0
    finally:
        shutil.rmtree(d, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=int, default=600)
    ap.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "nm-bench")
    ap.add_argument("--repeat", type=int, default=2, help="best of N runs of each")
    a = ap.parse_args()
    src = build_input(a.cache, a.seconds)
    size_mb = src.stat().st_size / 1e6
    # warm the page cache so both sides read from memory
    with open(src, "rb") as f:
        while f.read(1 << 24):
            pass
    base = min(time_ffmpeg_segment(src) for _ in range(a.repeat))
    best = None
    scan = None
    for _ in range(a.repeat):
        t0 = time.perf_counter()
        scan = scan_video(src)
        dt = time.perf_counter() - t0
        best = dt if best is None else min(best, dt)
    print(f"input: {src.name} {size_mb:.0f} MB, {scan.n_frames} frames, "
          f"{len(scan.captions)} captions")
    print(f"baseline ffmpeg -c copy -f segment: {base:.2f} s")
    print(f"scan_video:                         {best:.2f} s")
    print(f"ratio scan_video / ffmpeg segment:  {best / base:.2f}x")


if __name__ == "__main__":
    main()
