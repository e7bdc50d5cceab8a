"""Keyboard and mouse capture with pynput, stamped in the callback, handed to a sink.

Each pynput callback takes ``time.time_ns()`` first, builds the event_data array of
companion/contract/events.py, applies the privacy filter (pure, against the window
tracker's *cached* window: no window-system query in the callback) and calls
``sink(timestamp_ns, "control_publisher", event_data)``, normally
:meth:`companion.capture.writer.JsonlWriter.put`, which only enqueues. Nothing else
happens on the listener threads, so high-rate mouse input is neither dropped nor
delayed by disk I/O.

Events (event_src ``control_publisher``):

- ``["keyboard.press", vk, name]`` / ``["keyboard.release", vk, name]``: vk is the
  Windows virtual-key code on every OS (None if the key has none), name from
  :func:`companion.contract.keys.from_pynput`.
- ``["mouse.move", x, y]``: pointer position, screen pixels (int).
- ``["mouse.click", x, y, button, pressed]``: button "left"/"right"/"middle"/"x1"/"x2"
  (other buttons: pynput's name, e.g. "button10"), pressed True on press.
- ``["mouse.scroll", x, y, dx, dy]``: wheel steps, dy > 0 = up/away, dx > 0 = right.
"""
from __future__ import annotations

import os
import sys
import time
from typing import TYPE_CHECKING, Callable

from companion.contract import events as ev
from companion.util.errors import EnvProblem

if TYPE_CHECKING:  # pragma: no cover - typing only
    from companion.capture.privacy import PrivacyFilter
    from companion.capture.window import WindowInfo

Sink = Callable[[int, str, object], None]

# pynput button names -> contract names (X11 reports side buttons as button8/9)
_BUTTON_NAMES = {"left": "left", "right": "right", "middle": "middle", "x1": "x1", "x2": "x2",
                 "button8": "x1", "button9": "x2"}


def _wake_x11_listener(listener) -> None:
    """Make a stopping pynput X11 listener return now instead of at the next X event.

    pynput's X11 ``stop()`` queues RECORD DisableContext on the connection its own thread
    is blocked reading, so it is only sent when the next input event arrives. Sending
    DisableContext from the listener's second connection (as the X RECORD spec allows)
    ends the data transfer at once. Uses pynput internals; silently does nothing if
    they are absent (other platforms, other pynput versions).
    """
    conn = getattr(listener, "_display_stop", None)
    ctx = getattr(listener, "_context", None)
    if conn is None or ctx is None:
        return
    try:
        conn.record_disable_context(ctx)
        conn.flush()
    except Exception:  # noqa: BLE001 - connection already closed: listener has ended
        pass


def _wait_ready(listener, timeout_s: float) -> None:
    """Like pynput's ``Listener.wait()`` but returns if the thread dies or times out.

    (pynput's wait() blocks forever when the backend fails before becoming ready.)
    """
    deadline = time.monotonic() + timeout_s
    while listener.is_alive() and not getattr(listener, "_ready", True):
        if time.monotonic() > deadline:
            raise TimeoutError(f"input listener not ready after {timeout_s:g} s")
        time.sleep(0.002)


class InputCapture:
    """pynput keyboard + mouse listeners feeding ``sink``.

    ``sink(timestamp_ns, event_src, event_data)`` must be thread-safe and fast (it is
    called on the listener threads). ``keyboard``/``mouse`` False: that listener is not
    started at all. ``privacy``: events it does not allow are not passed on.
    ``window``: returns the cached active window (e.g. ``WindowTracker.current``);
    used only for the privacy decision.

    Counters (read any time): ``seen`` events received from pynput, ``passed`` handed
    to the sink, ``filtered`` held back by privacy, ``errors`` callback exceptions
    (the first kept in ``error``).
    """

    def __init__(self, sink: Sink, keyboard: bool = True, mouse: bool = True,
                 privacy: "PrivacyFilter | None" = None,
                 window: "Callable[[], WindowInfo | None] | None" = None):
        self._sink = sink
        self.keyboard = bool(keyboard)
        self.mouse = bool(mouse)
        self._privacy = privacy
        self._window = window or (lambda: None)
        self._listeners: list = []
        self._from_pynput = None
        self.seen = 0
        self.passed = 0
        self.filtered = 0
        self.errors = 0
        self.error: str | None = None

    # -- lifecycle -------------------------------------------------------------
    def start(self) -> None:
        """Start the listeners and wait until they receive events.

        Raises EnvProblem (one line) when pynput cannot reach the input system (no
        DISPLAY / X server on Linux, missing accessibility permission on macOS).
        """
        if self._listeners:
            raise RuntimeError("InputCapture already started")
        if sys.platform.startswith("linux") and not os.environ.get("DISPLAY"):
            raise EnvProblem("no X display: DISPLAY is not set (keyboard/mouse capture needs X11)")
        try:
            from companion.contract.keys import from_pynput
            from pynput import keyboard as pk, mouse as pm
        except ImportError as e:
            raise EnvProblem(f"cannot load the input backend (pynput): {str(e).splitlines()[0]}") from None
        except Exception as e:  # pynput's Xlib probe raises Xlib errors on a bad DISPLAY
            raise EnvProblem(f"cannot connect to the input system: {type(e).__name__}: "
                             f"{str(e).splitlines()[0] if str(e) else ''}") from None
        self._from_pynput = from_pynput
        try:
            if self.keyboard:
                self._listeners.append(pk.Listener(on_press=self._on_press, on_release=self._on_release))
            if self.mouse:
                self._listeners.append(pm.Listener(on_move=self._on_move, on_click=self._on_click,
                                                   on_scroll=self._on_scroll))
            for lst in self._listeners:
                lst.start()
            for lst in self._listeners:
                _wait_ready(lst, 10.0)
            # pynput marks a listener ready just *before* it enables its record context
            # (X11 RECORD); give that request time to reach the server so events that
            # follow start() are not missed.
            time.sleep(0.1)
        except Exception as e:
            self.stop()
            raise EnvProblem(f"cannot start input listeners: {type(e).__name__}: {e}".splitlines()[0]) from None
        # a listener whose backend failed exits immediately; report that now
        dead = [lst for lst in self._listeners if not lst.is_alive()]
        if dead:
            msg = ""
            for lst in dead:
                try:
                    lst.join(0)
                except Exception as e:  # noqa: BLE001 - pynput re-raises the thread's error
                    msg = f"{type(e).__name__}: {e}".splitlines()[0]
            self.stop()
            raise EnvProblem(f"input listener stopped at start: {msg or 'unknown reason'}")

    def stop(self) -> None:
        """Stop and join the listeners; idempotent. No callbacks run after return."""
        for lst in self._listeners:
            if not lst.is_alive():
                continue  # pynput's stop() would wait forever for a listener that never got ready
            try:
                lst.stop()
            except Exception:  # noqa: BLE001 - stopping a half-started listener
                pass
            _wake_x11_listener(lst)
        for lst in self._listeners:
            try:
                lst.join(5.0)
            except Exception:  # noqa: BLE001 - join re-raises callback errors; counted already
                pass
        self._listeners = []

    def running(self) -> bool:
        """True while at least one listener thread is alive."""
        return any(lst.is_alive() for lst in self._listeners)

    def stats(self) -> dict:
        return {"seen": self.seen, "passed": self.passed, "filtered": self.filtered,
                "errors": self.errors, "error": self.error}

    # -- callbacks (listener threads: stamp, filter, enqueue; nothing else) -----
    def _emit(self, t: int, data: list) -> None:
        self.seen += 1
        p = self._privacy
        if p is not None and not p.allows(ev.SRC_CONTROL, data, self._window()):
            self.filtered += 1
            return
        self._sink(t, ev.SRC_CONTROL, data)
        self.passed += 1

    def _fail(self, e: Exception) -> None:
        self.errors += 1
        if self.error is None:
            self.error = f"{type(e).__name__}: {e}".splitlines()[0]

    def _on_press(self, key, injected=False):
        t = time.time_ns()
        try:
            vk, name = self._from_pynput(key)
            self._emit(t, [ev.KEY_PRESS, vk, name])
        except Exception as e:  # noqa: BLE001 - never let pynput stop the listener
            self._fail(e)

    def _on_release(self, key, injected=False):
        t = time.time_ns()
        try:
            vk, name = self._from_pynput(key)
            self._emit(t, [ev.KEY_RELEASE, vk, name])
        except Exception as e:  # noqa: BLE001
            self._fail(e)

    def _on_move(self, x, y, injected=False):
        t = time.time_ns()
        try:
            self._emit(t, [ev.MOUSE_MOVE, int(x), int(y)])
        except Exception as e:  # noqa: BLE001
            self._fail(e)

    def _on_click(self, x, y, button, pressed, injected=False):
        t = time.time_ns()
        try:
            name = getattr(button, "name", None) or str(button)
            self._emit(t, [ev.MOUSE_CLICK, int(x), int(y), _BUTTON_NAMES.get(name, name), bool(pressed)])
        except Exception as e:  # noqa: BLE001
            self._fail(e)

    def _on_scroll(self, x, y, dx, dy, injected=False):
        t = time.time_ns()
        try:
            self._emit(t, [ev.MOUSE_SCROLL, int(x), int(y), int(dx), int(dy)])
        except Exception as e:  # noqa: BLE001
            self._fail(e)
