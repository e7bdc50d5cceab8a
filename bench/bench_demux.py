"""Benchmark: scan_video vs. `ffmpeg -c copy -f segment` on a long 1080p60 recording.

The aligner's budget is 1.5x the time FFmpeg needs to stream-copy the same file into
segments; scan_video is the part of it that touches the video, so it should use well
under that. Prints both wall times and the ratio scan_video / ffmpeg.

The input is built once and cached: a 10 s 1080p60 H.264 clip (testsrc2, x264 veryfast,
20 Mbit/s, 2 B-frames, 48 kHz stereo AAC) with OBS-style caption SEI NALs appended to
every 60th video packet (as OBS 29 does), concatenated by stream copy to ``--seconds``.

    .venv/bin/python bench/bench_demux.py [--seconds 600] [--cache /tmp/nm-bench] [--repeat 2]

Each run times scan_video with the Matroska walker and with PyAV's demuxer
(``mkv_walker=False``), alternating, without and with the audio sink nm-align
--dataset uses, and prints wall time and CPU seconds of each.
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import av
import numpy as np

from companion.align import sei
from companion.align.cea608 import encode_pop_on, split_messages
from companion.align.demux import scan_video
from companion.contract.captions import ClockPair, encode_clock
from companion.dataset.audio import AudioSpool


def _clip(path: Path, seconds: int = 10, fps: int = 60) -> None:
    """A ``seconds`` long 1080p60 clip at about 20 Mbit/s (x264 veryfast, 2 B-frames, like
    OBS defaults) with stereo AAC; then remuxed by PyAV appending an OBS-style caption
    SEI NAL (length-prefixed, after the slice) to every 60th video packet."""
    raw = path.with_suffix(".raw.mkv")
    subprocess.run(["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-y",
                    "-f", "lavfi", "-i", f"testsrc2=size=1920x1080:rate={fps}",
                    "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000",
                    "-t", str(seconds), "-c:v", "libx264", "-preset", "veryfast", "-b:v", "20M",
                    "-bf", "2", "-g", "250", "-pix_fmt", "yuv420p", "-c:a", "aac", "-ac", "2",
                    str(raw)], check=True)
    src = av.open(str(raw))
    out = av.open(str(path), "w")
    vin, ain = src.streams.video[0], src.streams.audio[0]
    vout = out.add_stream_from_template(vin)
    aout = out.add_stream_from_template(ain)
    n = 0
    for p in src.demux(vin, ain):
        if not p.size:
            continue
        if p.stream is vin:
            if n % 60 == 0:
                text = encode_clock(ClockPair("bench", 1_700_000_000_000_000_000 + n, n))
                t35 = [sei.build_ga94_t35(m) for m in split_messages(encode_pop_on(text))]
                nal = sei.build_h264_sei_nal([(4, t) for t in t35])
                q = av.Packet(bytes(p) + len(nal).to_bytes(4, "big") + nal)
                q.pts, q.dts, q.time_base, q.is_keyframe = p.pts, p.dts, p.time_base, p.is_keyframe
                p = q
            n += 1
            p.stream = vout
        else:
            p.stream = aout
        out.mux(p)
    out.close()
    src.close()
    raw.unlink()


def build_input(cache: Path, seconds: int) -> Path:
    cache.mkdir(parents=True, exist_ok=True)
    final = cache / f"bench_1080p60_{seconds}s_v2.mkv"
    if final.exists():
        return final
    clip = cache / "clip_1080p60_10s_v2.mkv"
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
    load0 = os.getloadavg()
    # alternate the Matroska walker and PyAV's demuxer, each with and without the audio
    # sink nm-align --dataset uses (an AudioSpool decoding the AAC track)
    res: dict[str, list[tuple[float, float]]] = {}
    scans = {}
    spool_dir = Path(tempfile.mkdtemp(prefix="nm-bench-spool-"))
    try:
        for _ in range(a.repeat):
            for walker in (True, False):
                for audio in (False, True):
                    tag = ("walker" if walker else "pyav") + (" + audio" if audio else "")
                    sink = (lambda r, c: AudioSpool(spool_dir / "a.s16", r, c)) if audio else None
                    t0, c0 = time.perf_counter(), time.process_time()
                    scans[tag] = scan_video(src, audio_sink=sink, mkv_walker=walker)
                    res.setdefault(tag, []).append((time.perf_counter() - t0,
                                                    time.process_time() - c0))
    finally:
        shutil.rmtree(spool_dir, ignore_errors=True)
    scan = scans["walker"]
    assert scan.demuxer == "matroska-walker" and scans["pyav"].demuxer == "pyav"
    same = all(np.array_equal(scan.pts, scans[t].pts) and scan.captions == scans[t].captions
               for t in scans)
    print(f"input: {src.name} {size_mb:.0f} MB, {scan.n_frames} frames, "
          f"{len(scan.captions)} captions (pts and captions identical in all runs: {same})")
    print(f"baseline ffmpeg -c copy -f segment: {base:.2f} s")
    for tag, runs in res.items():
        best = min(w for w, _ in runs)
        print(f"scan_video, {tag:14s}: wall {best:.2f} s (ratio {best / base:.2f}x), CPU "
              + " ".join(f"{c:.2f}" for _, c in runs) + " s")
    print("load average at start: {:.2f} {:.2f} {:.2f}; at end: {:.2f} {:.2f} {:.2f}".format(
        *load0, *os.getloadavg()))


if __name__ == "__main__":
    main()
