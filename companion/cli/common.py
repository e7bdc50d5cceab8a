"""Shared CLI plumbing: one-line errors, never a traceback for user-facing failures."""
from __future__ import annotations

import os
import sys
import traceback
from typing import Callable

from ..util.errors import NMError


def run_cli(prog: str, fn: Callable[[], int | None]) -> int:
    try:
        rc = fn()
        return int(rc or 0)
    except NMError as e:
        print(f"{prog}: error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 1
    except MemoryError:
        print(f"{prog}: error: out of memory", file=sys.stderr)
        return 1
    except OSError as e:
        where = f" {e.filename}" if getattr(e, "filename", None) else ""
        print(f"{prog}: error:{where} {e.strerror or e}", file=sys.stderr)
        return 4
    except Exception as e:  # a bug, not bad input: still one line unless asked
        if os.environ.get("NM_DEBUG"):
            traceback.print_exc()
        msg = str(e).splitlines()[0] if str(e) else ""
        print(f"{prog}: internal error: {type(e).__name__}: {msg} "
              f"(set NM_DEBUG=1 for the traceback; please report it)", file=sys.stderr)
        return 1


def exit_now(code: int) -> None:
    """End the process with ``code`` as soon as the work is done: flush stdout and
    stderr, then ``os._exit``. A command whose outputs are all closed (every file is
    written with a context manager and renamed into place before ``main`` returns)
    gains nothing from the interpreter's normal shutdown, which frees every object and
    joins library thread pools: ~0.1 s of nm-align's run on a 10-minute recording
    (docs/benchmarks.md, session 7). Console scripts call this from their ``entry``;
    ``main`` stays an ordinary function for callers in the same process."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):       # a closed pipe or stream: nothing to flush to
            code = code or 1
    os._exit(code)
