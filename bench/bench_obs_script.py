"""Benchmark: the nm_timestamps script's cost per frame inside a real OBS.

Starts a headless OBS (Debian obs-studio, Xvfb, software GL), records ``--seconds`` at
``--fps`` with the script loaded, and reads the script's own per-tick cost from the
sidecar's stop record (time.perf_counter_ns around the whole tick body, every frame of
the recording). Baselines printed: the 0.1 ms goal and the frame interval (the whole
budget OBS has for a frame).
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from companion.capture.headless import ObsInstance  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--fps", type=int, default=60)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as td:
        with ObsInstance(Path(td), fps_num=args.fps) as obs:
            mkv = obs.record(args.seconds)
        side = mkv.with_name(mkv.stem + ".anchors.jsonl")
        stop = [json.loads(x) for x in side.read_text().splitlines() if '"kind":"stop"' in x][0]
    mean_us = stop["tick_cost_ns_mean"] / 1000
    max_us = stop["tick_cost_ns_max"] / 1000
    interval_us = 1e6 / args.fps
    print(f"OBS {args.fps} fps, {args.seconds:g} s recording, {stop['ticks']} ticks measured")
    print(f"script cost per frame: mean {mean_us:.1f} us, max {max_us:.1f} us")
    print(f"ratio mean / goal (100 us): {mean_us / 100:.3f}x")
    print(f"ratio mean / frame interval ({interval_us:.0f} us): {mean_us / interval_us:.5f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
