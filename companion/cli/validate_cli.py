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
                   help='print {"path", "kind", "ok", "problems": [{"path", "message"}], "checked": {...}} '
                        'on stdout')
    p.add_argument("--no-video", action="store_true",
                   help="dataset: do not demux chunk videos to count frames (faster)")
    return p


def _noun(key: str, n: int) -> str:
    """``files_hashed`` -> ``files hashed``; singular for 1 (``1 video``, ``1 file hashed``)."""
    words = key.split("_")
    if n == 1 and words[0].endswith("s"):
        words[0] = words[0][:-1]
    return " ".join(words)


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)

    def run() -> int:
        from pathlib import Path

        from ..validate import validate_report
        kind, problems, facts = validate_report(Path(args.path), check_videos=not args.no_video)
        if args.json:
            print(json.dumps({"path": args.path, "kind": kind, "ok": not problems,
                              "problems": [p.to_dict() for p in problems], "checked": facts},
                             indent=2))
        else:
            for p in problems:
                print(str(p))
            if problems:
                print(f"nm-validate: {len(problems)} problem(s) in {kind} {args.path}", file=sys.stderr)
            else:
                what = ", ".join(f"{v} {_noun(k, v)}" for k, v in facts.items())
                print(f"OK: {kind} {args.path} matches the contract" + (f" ({what})" if what else ""))
        return 1 if problems else 0

    return run_cli("nm-validate", run)


if __name__ == "__main__":
    sys.exit(main())
