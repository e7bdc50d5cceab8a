"""nm-align: frame-exact timeline, events.parquet and the sharded dataset for one recording."""
from __future__ import annotations

import argparse
import json
import math
import sys

from ..util.checksum import ALGORITHMS, DEFAULT
from .common import run_cli

EPILOG = """\
Inputs: an OBS recording made with the nm_timestamps script (anchors as captions in the
MKV and/or <name>.anchors.jsonl beside it), an open-world-agents MKV (epoch-ns subtitle
track), or the app's zip export (<session_id>.zip). Events default to the JSONL of the
same name (<name>.jsonl).

Outputs (next to the video unless --out): frames.parquet (one row per frame, capture
time in epoch and OBS monotonic ns), events.parquet (one row per input/focus event with
frame_ref), metadata.json (gains an "alignment" section), integrity.sha256.
With --dataset ROOT also the seed-000 layout: actions/ video/ audio/ SHARD_xxxx/...,
index.parquet, the video's checksum file index/<video_id>.xxh128 (xxh128sum format; with
--checksums sha256 index/<video_id>.sha256, sha256sum format; none with --no-checksums)
and integrity.sha256 (sha256sum format) over dataset.json and index/.

Exit codes: 0 ok, 2 bad input, 4 environment (permissions, disk), 1 other.
"""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="nm-align", description=__doc__, epilog=EPILOG,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("video", help="session video (.mkv), session folder, or export .zip")
    p.add_argument("--events", help="events JSONL (default: <video stem>.jsonl)")
    p.add_argument("--out", help="folder for session outputs (default: the video's folder)")
    p.add_argument("--dataset", metavar="ROOT", help="also write 20-second chunks into this dataset root")
    p.add_argument("--chunk-seconds", type=float, default=20.0, help="chunk length (default 20)")
    p.add_argument("--video-id", help="video id in the dataset (default: the session id)")
    p.add_argument("--session-id", help="session id (default: the video's file name stem)")
    p.add_argument("--owa-out", metavar="MKV", help="also write an open-world-agents MKV "
                   "(stream copy + epoch-ns subtitle track tagged as ours), with copies of "
                   "the JSONL and the sidecar beside it")
    p.add_argument("--owa-per", choices=("frame", "second"), default="frame",
                   help="with --owa-out: one epoch-ns cue per frame (default) or per second")
    p.add_argument("--allow-truncated", action="store_true",
                   help="align a recording that is cut short (interrupted copy, full disk, "
                        "crashed recorder) from the frames it has, instead of refusing it")
    ck = p.add_mutually_exclusive_group()
    ck.add_argument("--checksums", choices=ALGORITHMS, default=DEFAULT,
                    help="with --dataset: the hash of every chunk file in "
                         "index/<video_id>.<algorithm>: xxh128 (default; XXH3-128, checked by "
                         "xxh128sum -c and nm-validate) or sha256 (sha256sum -c; costs ~0.8 s "
                         "more CPU per 10 minutes of 1080p60)")
    ck.add_argument("--no-checksums", action="store_true",
                    help="with --dataset: do not hash the chunk files (nm-validate then "
                         "cannot catch a changed byte that keeps the files well-formed)")
    p.add_argument("--json", action="store_true", help="print a JSON summary on stdout")
    p.add_argument("--quiet", action="store_true", help="no progress output")
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    # nm-align uses numpy for vector work only, never BLAS: one OpenBLAS thread instead
    # of a pool per core, whose start-up spin costs ~0.08 s of CPU in every process that
    # imports numpy (this one and the audio child it starts). A user's setting wins.
    import os
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    # On 2 CPUs the copy (and audio) children keep the second core busy: Arrow's thread
    # pool (one thread per core by default) then only adds hand-offs to the many small
    # Parquet writes (measured, docs/benchmarks.md). Larger machines keep the default.
    from ..util.procs import usable_cpus
    if usable_cpus() <= 2:
        os.environ.setdefault("OMP_NUM_THREADS", "1")

    def run():
        from ..util.errors import BadInput
        if not math.isfinite(args.chunk_seconds) or args.chunk_seconds <= 0:
            raise BadInput("--chunk-seconds must be a positive number of seconds")
        checksums = False if args.no_checksums else args.checksums
        if args.dataset and checksums:
            from ..util.checksum import ChecksumUnavailable, check_available
            from ..util.errors import EnvProblem
            try:
                check_available(checksums)
            except ChecksumUnavailable as e:
                raise EnvProblem(str(e)) from None
        pre = None
        if args.dataset and not args.owa_out:
            # ffmpeg (chunk MP4s + audio) starts before the heavy imports below
            from pathlib import Path
            from ..dataset.early import begin_early
            pre = begin_early(args.video, args.dataset, args.chunk_seconds,
                              args.video_id or args.session_id or Path(args.video).stem,
                              checksums=checksums)
        try:
            from ..align.session import align_session
            summary = align_session(args.video, events=args.events, out=args.out,
                                    dataset=args.dataset, chunk_seconds=args.chunk_seconds,
                                    video_id=args.video_id, session_id=args.session_id,
                                    progress=not args.quiet and not args.json,
                                    owa_out=args.owa_out, owa_per=args.owa_per,
                                    early_start=pre, checksums=checksums,
                                    allow_truncated=args.allow_truncated)
        finally:
            if pre is not None:
                pre.discard()   # idempotent; stops ffmpeg if anything failed before use
        if args.json:
            print(json.dumps(summary, indent=2, default=str))
        else:
            for w in summary.get("warnings", []):
                print(f"nm-align: warning: {w}", file=sys.stderr)
            print(f"{summary['session_id']}: {summary['frames']} frames, {summary['events']} events, "
                  f"anchors from {summary['anchor_source']} ({summary['confidence']}), "
                  f"drift {summary['clock_drift_ppm']} ppm -> {summary['out']}")
            if "dataset" in summary:
                ds = summary["dataset"]
                print(f"dataset: {ds.get('chunks', ds)} chunk(s) in {args.dataset}")
        return 0

    return run_cli("nm-align", run)


def entry() -> None:
    """The ``nm-align`` console script: ``main`` then a prompt exit (``exit_now``)."""
    from .common import exit_now
    exit_now(main())


if __name__ == "__main__":
    entry()
