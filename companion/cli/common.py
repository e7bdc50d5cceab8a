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
