"""nm-validate: check a session folder or dataset root against the data contract."""
from __future__ import annotations

import argparse
import json
import sys

from .common import run_cli

EPILOG = """\
PATH is a session folder (metadata.json, frames.parquet, events.parquet,
integrity.sha256, the recording), a folder of session folders, or a dataset root
(dataset.json, index.parquet, actions/ video/ audio/). Every problem is printed as
'<file>: <message>'. What is checked: docs/contracts/validation.md.

Exit codes: 0 valid, 1 problems found, 2 bad PATH or usage.
"""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="nm-validate", description=__doc__, epilog=EPILOG,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("path", metavar="PATH", help="session folder or dataset root")
    p.add_argument("--json", action="store_true",
                   help='print {"path", "kind", "ok", "problems": [{"path", "message"}]} on stdout')
    p.add_argument("--no-video", action="store_true",
                   help="dataset: do not demux chunk videos to count frames (faster)")
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)

    def run() -> int:
        from pathlib import Path

        from ..validate import detect_kind, validate_path
        kind = detect_kind(Path(args.path))
        problems = validate_path(args.path, check_videos=not args.no_video)
        if args.json:
            print(json.dumps({"path": args.path, "kind": kind, "ok": not problems,
                              "problems": [p.to_dict() for p in problems]}, indent=2))
        else:
            for p in problems:
                print(str(p))
            if problems:
                print(f"nm-validate: {len(problems)} problem(s) in {kind} {args.path}", file=sys.stderr)
            else:
                print(f"OK: {kind} {args.path} matches the contract")
        return 1 if problems else 0

    return run_cli("nm-validate", run)


if __name__ == "__main__":
    sys.exit(main())
