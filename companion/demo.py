"""nm-demo: the whole pipeline on this machine, headless, in about a minute.

1. starts a real OBS (headless, under Xvfb) that captures a second virtual display,
   with the nm_timestamps script loaded;
2. runs ``nm-companion start`` on that display while xdotool moves the mouse, clicks
   and types there (so the input is both logged and visible in the video);
3. runs ``nm-align`` on the recording, writing frames/events Parquet and a dataset of
   chunks;
4. runs ``nm-validate`` on the session and the dataset, and ``nm-preview`` for a
   contact sheet.
"""
from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

from .cli.common import run_cli
from .util.errors import EnvProblem

TARGETS = [(80, 80), (560, 400), (560, 80), (80, 400), (320, 240), (160, 320), (480, 160)]


def demo_input(env) -> None:
    def xd(*a):
        subprocess.run(["xdotool", *a], env=env, check=False)
    for x, y in TARGETS:
        xd("mousemove", str(x), str(y))
        time.sleep(0.3)
    xd("click", "1")
    xd("type", "--delay", "80", "hello obs")
    xd("keydown", "w")
    time.sleep(0.5)
    xd("keyup", "w")
    for i in range(60):
        xd("mousemove", str(100 + 6 * i), str(300 - 3 * i))
        time.sleep(0.02)
    xd("click", "4")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="nm-demo", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="nm-demo", help="demo output folder (default ./nm-demo; replaced)")
    ap.add_argument("--seconds", type=float, default=12.0, help="recording length (default 12)")
    args = ap.parse_args(argv)

    def run():
        from .capture.headless import companion_session, obs_available
        for tool in ("obs", "Xvfb", "xdotool"):
            if shutil.which(tool) is None:
                raise EnvProblem(f"{tool} not found: run 'bash scripts/setup.sh' first")
        if not obs_available():
            raise EnvProblem("OBS/Xvfb unavailable")
        out = Path(args.out).resolve()
        if out.exists():
            shutil.rmtree(out)
        out.mkdir(parents=True)
        print(f"nm-demo: recording {args.seconds:.0f} s with a headless OBS + nm-companion ...")
        session = companion_session(out / "work", duration=args.seconds, actions=demo_input,
                                    session_id="demo_session")
        final = out / "demo_session"
        shutil.move(str(session), final)
        from .align.session import align_session
        print("nm-demo: nm-align ...")
        summary = align_session(final / "demo_session.mkv", dataset=out / "dataset",
                                chunk_seconds=4.0, progress=False)
        problems = []
        try:
            from .validate import validate_path
            for target in (final, out / "dataset"):
                problems += [str(p) for p in validate_path(target)]
        except ImportError:
            pass
        shutil.rmtree(out / "work", ignore_errors=True)
        print(json.dumps({k: summary[k] for k in ("frames", "events", "anchor_source", "confidence",
                                                   "clock_drift_ppm")}, indent=2))
        print(f"nm-demo: session  {final}")
        print(f"nm-demo: dataset  {out / 'dataset'}")
        if problems:
            print("nm-demo: validation problems:\n  " + "\n  ".join(problems), file=sys.stderr)
            return 1
        print("nm-demo: validation OK")
        return 0

    return run_cli("nm-demo", run)


if __name__ == "__main__":
    sys.exit(main())
