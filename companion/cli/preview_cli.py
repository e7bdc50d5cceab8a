"""nm-preview: see the input on the pixels -- overlay MP4, PNG contact sheet, HTML viewer."""
from __future__ import annotations

import argparse
import sys

from .common import run_cli

EPILOG = """\
SOURCE is an aligned session folder (frames.parquet + events.parquet + <session_id>.mkv,
from nm-align) or a dataset root (index.parquet; pick the chunk with --video/--chunk).

Drawn at each frame: the cursor (filled with the colour of a held button) and its trail,
a ring per click (red left, green middle, blue right), held keys (yellow = pressed since
the previous frame), wheel steps, the focused window, frame number and time. The state
shown at frame f is the loader's: every event logged before frame f was captured.

Outputs (any combination; default: --html <name>.html in the current folder):
  --mp4 OUT     H.264 MP4 with the overlay burned in
  --sheet OUT   PNG contact sheet (--cols x --rows frames spread over the range)
  --html OUT    one self-contained HTML file: video, scrubbable event timeline synced to
                the video, overlay drawn in the browser (--link-video: video as OUT.mp4
                beside it instead of embedded)

Exit codes: 0 ok, 2 bad input, 4 environment (permissions, disk), 1 other.
"""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="nm-preview", description=__doc__, epilog=EPILOG,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("source", help="session folder or dataset root")
    p.add_argument("--video", metavar="ID", help="dataset video id (default: the first)")
    p.add_argument("--chunk", type=int, default=0, metavar="N", help="dataset chunk id (default 0)")
    p.add_argument("--start", type=int, default=0, metavar="F",
                   help="first frame to show, relative to the session/chunk (default 0)")
    p.add_argument("--frames", type=int, metavar="N", help="number of frames (default: all)")
    p.add_argument("--mp4", metavar="OUT", help="write an overlay MP4")
    p.add_argument("--sheet", metavar="OUT", help="write a PNG contact sheet")
    p.add_argument("--html", metavar="OUT", help="write the HTML viewer")
    p.add_argument("--link-video", action="store_true",
                   help="HTML: reference the video as a file beside it instead of embedding")
    p.add_argument("--width", type=int, metavar="PX",
                   help="output width for --mp4/--html (default: source width for MP4, "
                        "at most 960 for HTML)")
    p.add_argument("--cols", type=int, default=4, help="contact sheet columns (default 4)")
    p.add_argument("--rows", type=int, default=3, help="contact sheet rows (default 3)")
    p.add_argument("--quiet", action="store_true", help="no progress output")
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)

    def run():
        from ..load import preview
        from ..util.errors import BadInput
        from ..util.progress import Progress
        if args.frames is not None and args.frames < 1:
            raise BadInput("--frames must be at least 1")
        if args.width is not None and args.width < 2:
            raise BadInput("--width must be at least 2")
        src = preview.load_source(args.source, args.video, args.chunk, args.start, args.frames)
        html = args.html
        if not (args.mp4 or args.sheet or html):
            html = f"{src.name}.html"
        if args.mp4:
            pr = Progress("overlay mp4", len(src), enabled=not args.quiet)
            out = preview.render_mp4(src, args.mp4, width=args.width, progress=pr)
            pr.close()
            print(f"wrote {out} ({len(src)} frames)")
        if args.sheet:
            out = preview.render_contact_sheet(src, args.sheet, cols=args.cols, rows=args.rows)
            print(f"wrote {out}")
        if html:
            pr = Progress("viewer video", len(src), enabled=not args.quiet)
            out = preview.write_viewer(src, html, embed=not args.link_video,
                                       width=args.width or 960, progress=pr)
            pr.close()
            print(f"wrote {out} (open it in a browser)")
        return 0

    return run_cli("nm-preview", run)


if __name__ == "__main__":
    sys.exit(main())
