"""A minimal progress reporter for long work: a bar on a TTY, sparse lines otherwise."""
from __future__ import annotations

import sys
import time


class Progress:
    def __init__(self, label: str, total: int | None = None, stream=None, enabled: bool = True):
        self.label = label
        self.total = total
        self.stream = stream or sys.stderr
        self.enabled = enabled
        self.done = 0
        self._last = time.monotonic()   # nothing shown for work that ends quickly
        self._shown = False
        self._tty = hasattr(self.stream, "isatty") and self.stream.isatty()

    def update(self, n: int = 1) -> None:
        self.done += n
        now = time.monotonic()
        if not self.enabled or now - self._last < (0.1 if self._tty else 5.0):
            return
        self._last = now
        self._draw()

    def _draw(self, end: str = "") -> None:
        self._shown = True
        if self.total:
            frac = min(1.0, self.done / self.total)
            bar = "#" * int(frac * 30)
            msg = f"{self.label} [{bar:<30}] {self.done}/{self.total}"
        else:
            msg = f"{self.label} {self.done}"
        if self._tty:
            self.stream.write("\r" + msg + end)
        else:
            self.stream.write(msg + "\n")
        self.stream.flush()

    def close(self) -> None:
        if self.enabled and self._shown:
            self._draw(end="\n" if self._tty else "")
