"""Keyboard and mouse capture with pynput, stamped with epoch ns, handed to a sink.

Each pynput callback takes ``time.time_ns()`` first, builds the event_data array of
companion/contract/events.py, applies the privacy filter (pure, against the window
tracker's *cached* window: no window-system query in the callback) and calls
``sink(timestamp_ns, "control_publisher", event_data)``, normally
:meth:`companion.capture.writer.JsonlWriter.put`, which only enqueues. Nothing else
happens on the listener threads, so high-rate mouse input is neither dropped nor
delayed by disk I/O.

X11: the X server hands input to pynput (RECORD extension) in batches: it buffers
intercepted events until its buffer fills or it flushes output to some client, so a
callback can run 10-300 ms (unbounded on an idle server) after the input happened
(measured, see docs/contracts/events-jsonl.md). The callback time is then wrong by
that much. So on X11 the timestamp is the X server's own event time (ms of the
server's CLOCK_MONOTONIC, checked against ours at start) converted to epoch ns with
the callback's (time_ns, monotonic_ns) pair: accurate to +-0.5 ms however late the
callback runs (``clock == "x11-server"``). If the server's clock is not ours (remote
X), the callback time is used (``clock == "callback"``). A flusher thread makes the
server flush every ``flush_interval_s`` (0.1 s; one cheap round trip), bounding the delivery
delay; ``stop()`` disables the RECORD contexts *before* stopping pynput, which makes
the server deliver what it still buffers, so the last events are not lost.
Other OSes: pynput's hooks run promptly; the callback's ``time.time_ns()`` is used.

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
import re
import select
import struct
import sys
import threading
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


_MS = 1_000_000
_WRAP_MS = 1 << 32            # X timestamps are CARD32 milliseconds (wrap after 49.7 days)
MAX_EVENT_AGE_MS = 60_000     # older than this at callback time: use the callback time


def x11_event_epoch_ns(x_ms: int, epoch_ns: int, mono_ns: int) -> int | None:
    """Epoch ns of an X event whose server time is ``x_ms``. Pure.

    ``x_ms``: the event's X timestamp, ms of the server's CLOCK_MONOTONIC modulo 2**32;
    ``epoch_ns``/``mono_ns``: ``time.time_ns()``/``time.monotonic_ns()`` read together
    after the event. Returns the middle of the event's millisecond (at most
    ``epoch_ns``), or None if the event would be older than MAX_EVENT_AGE_MS.
    """
    now_ms = mono_ns // _MS
    age_ms = (now_ms - x_ms) % _WRAP_MS
    if age_ms >= _WRAP_MS - 1000:
        age_ms = 0  # server clock a hair ahead of ours (coarse clock, rounding)
    elif age_ms > MAX_EVENT_AGE_MS:
        return None
    ev_mono_ns = (now_ms - age_ms) * _MS + _MS // 2
    return min(epoch_ns, ev_mono_ns + (epoch_ns - mono_ns))


def _x11_server_clock_offset_ms(display_name: str | None, timeout_s: float = 2.0) -> int | None:
    """X server time minus our CLOCK_MONOTONIC, in ms (wrapped to +-2**31), or None.

    Reads the server time the ICCCM way: change a property on a private unmapped
    window and take the time of the PropertyNotify event.
    """
    from Xlib import X, Xatom, display as xdisplay

    for attempt in range(3):  # an X server resetting after its last client left refuses briefly
        try:
            d = xdisplay.Display(display_name)
            break
        except Exception:  # noqa: BLE001 - Xlib connection errors
            if attempt == 2:
                raise
            time.sleep(0.1)
    try:
        root = d.screen().root
        win = root.create_window(-10, -10, 1, 1, 0, X.CopyFromParent,
                                 event_mask=X.PropertyChangeMask, override_redirect=True)
        win.change_property(d.intern_atom("_NM_CLOCK_PROBE"), Xatom.STRING, 8, b"1")
        d.flush()
        deadline = time.monotonic() + timeout_s
        while True:
            while d.pending_events():
                e = d.next_event()
                if e.type == X.PropertyNotify and e.window.id == win.id:
                    now_ms = time.monotonic_ns() // _MS
                    win.destroy()
                    d.sync()
                    diff = (int(e.time) - now_ms) % _WRAP_MS
                    return diff - _WRAP_MS if diff >= _WRAP_MS // 2 else diff
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            select.select([d.fileno()], [], [], left)
    finally:
        d.close()


# A core MotionNotify event as the X protocol lays it out (32 bytes, the recording
# client's byte order): code, detail, sequence, time, root, event, child, root-x, root-y,
# event-x, event-y, state, same-screen. Only time, root-x and root-y are read.
_MOTION = struct.Struct("=4xI12xhh8x")
_MOTION_NOTIFY = 6
_BUTTON_EVENTS = (4, 5)      # ButtonPress, ButtonRelease (wheel steps are buttons 4-7)


def _timed_listener(cls, fast_motion: bool = False):
    """Subclass of a pynput X11 listener that remembers the X time of the event being
    handled (``_nm_xtime``, set just before pynput calls our callback, same thread).

    ``fast_motion`` (the mouse listener): pointer motion, by far the most frequent
    input (1000 Hz mice), is read straight from the RECORD reply's bytes (0.7 us an
    event) instead of through python-xlib's generic event parser (~17 us), which is
    then used only for the other events. Same callbacks, same values."""

    class TimedListener(cls):
        _nm_xtime = 0

        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self._nm_recording = threading.Event()  # set at RECORD StartOfData

        def _handler(self, events):
            # the first reply of an enabled RECORD context is StartOfData (no events):
            # from then on the server intercepts input for us
            self._nm_recording.set()
            if not fast_motion:
                return super()._handler(events)
            if not self.running:
                raise self.StopException()
            data = events.data
            if not data:
                return None
            n = len(data)
            off = 0
            unpack = _MOTION.unpack_from
            while off + 32 <= n:
                code = data[off] & 0x7F            # the top bit: sent with SendEvent
                if code == _MOTION_NOTIFY:
                    self._nm_xtime, x, y = unpack(data, off)
                    self.on_move(x, y, bool(data[off] & 0x80))
                elif code in _BUTTON_EVENTS:       # also 32 bytes: pynput parses it
                    event, _ = self._EVENT_PARSER.parse_binary_value(
                        data[off:off + 32], self._display_record.display, None, None)
                    self._handle_message(self._display_stop, event, event.send_event)
                else:
                    break
                off += 32
            if off < n:             # anything else: pynput's parser from there on
                super()._handler(events if off == 0 else _RecordData(data[off:]))
            return None

        def _handle_message(self, display, event, injected):
            self._nm_xtime = event.time
            super()._handle_message(display, event, injected)

        def run(self):
            # pynput lets an X connection error (X server gone) escape its thread as a
            # printed traceback; keep it as a one-line reason instead
            try:
                super().run()
            except Exception as e:  # noqa: BLE001
                self._nm_error = f"{type(e).__name__}: {e}".splitlines()[0]
                self._queue.put(None)

    TimedListener.__name__ = f"Timed{cls.__name__}"
    return TimedListener


class _RecordData:
    """The part of a RECORD reply left for pynput's parser (it reads ``.data``)."""

    __slots__ = ("data",)

    def __init__(self, data):
        self.data = data


def _disable_x11_record(listener, display_name: str | None) -> bool:
    """End a pynput X11 listener's RECORD transfer from a connection of our own.

    The server first sends what it still buffers (pynput handles it: the listener is
    still running), then EndOfData, and the listener thread exits by itself. (pynput's
    own ``stop()`` queues DisableContext on the connection its thread is blocked
    reading -- sent only at the next input event -- and drops data arriving after
    ``stop()``.) Returns False if the listener has no RECORD context (not X11).
    """
    ctx = getattr(listener, "_context", None)
    if ctx is None:
        return False
    try:
        from Xlib import display as xdisplay
        d = xdisplay.Display(display_name)
        try:
            d.record_disable_context(ctx)
            d.sync()
        finally:
            d.close()
    except Exception:  # noqa: BLE001 - server gone: the listener has ended anyway
        return False
    return True


class _X11Flusher(threading.Thread):
    """Makes the X server flush its RECORD buffers every ``interval_s`` (a round trip:
    the server flushes intercepted data whenever it flushes output to any client)."""

    def __init__(self, display_name: str | None, interval_s: float):
        super().__init__(name="nm-x11-flusher", daemon=True)
        from Xlib import display as xdisplay
        self._d = xdisplay.Display(display_name)
        self._interval = interval_s
        self._stop_evt = threading.Event()

    def run(self) -> None:
        try:
            while not self._stop_evt.wait(self._interval):
                self._d.get_input_focus()
        except Exception:  # noqa: BLE001 - X server gone; the listeners report that
            pass
        finally:
            try:
                self._d.close()
            except Exception:  # noqa: BLE001
                pass

    def stop(self) -> None:
        self._stop_evt.set()
        self.join(5)


def _no_x_display(msg: str) -> EnvProblem:
    """One-line error for an X server that cannot be reached (from an Xlib message)."""
    m = re.search(r"\[Errno \d+\] ([^'\")]+)", msg)
    reason = m.group(1).strip() if m else (msg.splitlines()[0] if msg else "unknown error")
    return EnvProblem(f"cannot connect to X display {os.environ.get('DISPLAY')!r} for "
                      f"keyboard/mouse capture: {reason}")


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
    used only for the privacy decision. Better, ``window_at``: returns the window that
    was active at a given epoch ns (``WindowTracker.window_at``); then the decision is
    made for the window active when the input *happened*, which matters on X11 where
    input is delivered late; passing ``window=tracker.current`` selects
    ``tracker.window_at`` automatically. ``flush_interval_s``: X11 only, how often the
    X server is made to deliver buffered input (bounds the delivery delay, not the
    timestamps, which are exact either way); 0 disables the flusher.

    After ``start()``: ``clock`` is "x11-server" or "callback" (see module docstring).
    Counters (read any time): ``seen`` events received from pynput, ``passed`` handed
    to the sink, ``filtered`` held back by privacy, ``errors`` callback exceptions
    (the first kept in ``error``), ``clock_fallbacks`` X events stamped with the
    callback time because their X time was implausible, ``max_delivery_ns`` the
    largest delay between an event and its callback (X11).
    """

    def __init__(self, sink: Sink, keyboard: bool = True, mouse: bool = True,
                 privacy: "PrivacyFilter | None" = None,
                 window: "Callable[[], WindowInfo | None] | None" = None,
                 flush_interval_s: float = 0.1,
                 window_at: "Callable[[int], WindowInfo | None] | None" = None):
        self._sink = sink
        self.keyboard = bool(keyboard)
        self.mouse = bool(mouse)
        self._privacy = privacy
        self._window = window or (lambda: None)
        if window_at is None:  # window=tracker.current: use the same tracker's history
            owner = getattr(window, "__self__", None)
            if callable(getattr(owner, "window_at", None)):
                window_at = owner.window_at
        self._window_at = window_at
        self.flush_interval_s = float(flush_interval_s)
        self._listeners: list = []
        self._kb = None
        self._ms = None
        self._x11 = False
        self._display_name: str | None = None
        self._flusher: _X11Flusher | None = None
        self._from_pynput = None
        self.clock = "callback"
        # [passed, filtered] per device; each list is only written by its listener
        # thread, so no increment is lost to a race between the two
        self._kb_counts = [0, 0]
        self._ms_counts = [0, 0]
        self.errors = 0
        self.clock_fallbacks = 0
        self.max_delivery_ns = 0
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
            msg = str(e).splitlines()[0] if str(e) else type(e).__name__
            if "X connection" in msg:  # pynput probes the X server when imported
                raise _no_x_display(msg) from None
            raise EnvProblem(f"cannot load the input backend (pynput): {msg}") from None
        except Exception as e:  # pynput's Xlib probe raises Xlib errors on a bad DISPLAY
            raise EnvProblem(f"cannot connect to the input system: {type(e).__name__}: "
                             f"{str(e).splitlines()[0] if str(e) else ''}") from None
        self._from_pynput = from_pynput
        kb_cls, ms_cls = pk.Listener, pm.Listener
        self._x11 = ms_cls.__module__.endswith("_xorg")
        try:
            if self._x11:
                self._display_name = os.environ.get("DISPLAY")
                try:
                    off = _x11_server_clock_offset_ms(self._display_name)
                except Exception as e:  # noqa: BLE001 - Xlib connection errors
                    raise _no_x_display(str(e)) from None
                if off is not None and abs(off) <= 50:
                    self.clock = "x11-server"
                kb_cls, ms_cls = _timed_listener(kb_cls), _timed_listener(ms_cls, fast_motion=True)
            if self.keyboard:
                self._kb = kb_cls(on_press=self._on_press, on_release=self._on_release)
                self._listeners.append(self._kb)
            if self.mouse:
                self._ms = ms_cls(on_move=self._on_move, on_click=self._on_click,
                                  on_scroll=self._on_scroll)
                self._listeners.append(self._ms)
            for lst in self._listeners:
                lst.start()
            for lst in self._listeners:
                _wait_ready(lst, 10.0)
            if self._x11:
                # pynput marks a listener ready just *before* it enables its RECORD
                # context: wait for the server's StartOfData so that input following
                # start() is not missed (untimed listeners: give it 0.1 s).
                for lst in self._listeners:
                    rec = getattr(lst, "_nm_recording", None)
                    if rec is None:
                        time.sleep(0.1)
                    elif not rec.wait(5.0):
                        raise TimeoutError("X RECORD did not start within 5 s")
                if self.flush_interval_s > 0 and self._listeners:
                    self._flusher = _X11Flusher(self._display_name, self.flush_interval_s)
                    self._flusher.start()
        except EnvProblem:
            self.stop()
            raise
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
        """Stop the listeners, delivering events still buffered; idempotent.

        No callbacks run after this returns.
        """
        died = self.listener_error()
        if died and self.error is None:
            self.error = f"input listener ended: {died}"
        for lst in self._listeners:
            if self._x11 and lst.is_alive() and _disable_x11_record(lst, self._display_name):
                lst.join(5.0)  # the thread drains the server's buffer, then exits
        for lst in self._listeners:
            try:
                lst.stop()  # bookkeeping; may raise if its X connection is already closed
            except Exception:  # noqa: BLE001
                pass
            if lst.is_alive():
                _disable_x11_record(lst, self._display_name)
            try:
                lst.join(5.0)
            except Exception:  # noqa: BLE001 - join re-raises callback errors; counted already
                pass
        self._listeners = []
        if self._flusher is not None:
            self._flusher.stop()
            self._flusher = None

    def running(self) -> bool:
        """True while every started listener thread is alive (False once one has died,
        e.g. because the X server went away; see ``listener_error()``)."""
        return bool(self._listeners) and all(lst.is_alive() for lst in self._listeners)

    def listener_error(self) -> str | None:
        """Why a listener thread ended on its own (one line), if one did."""
        for lst in self._listeners:
            err = getattr(lst, "_nm_error", None)
            if err:
                return err
        return None

    def stats(self) -> dict:
        """Counters and the clock in use (JSON-able)."""
        return {"seen": self.seen, "passed": self.passed, "filtered": self.filtered,
                "keyboard_passed": self._kb_counts[0], "mouse_passed": self._ms_counts[0],
                "errors": self.errors, "error": self.error or self.listener_error(),
                "clock": self.clock,
                "clock_fallbacks": self.clock_fallbacks,
                "max_delivery_ms": self.max_delivery_ns / 1e6}

    # -- callbacks (listener threads: stamp, filter, enqueue; nothing else) -----
    def _xstamp(self, lst, t: int) -> int:
        """Replace callback time ``t`` by the X server's event time (X11 clock mode).

        The wall/monotonic clock offset comes from two reads made back to back here, not
        from ``t``, which can be a thread switch older than the monotonic read; and one
        listener's stamps never go back. The X server delivers one device's events in
        order, and two of the same millisecond (a click's press and release) map to the
        same instant: an offset read across a thread switch once stamped such a release
        before its press, and the writer's sort by time then swapped them."""
        mono = time.monotonic_ns()
        now = time.time_ns()
        e = x11_event_epoch_ns(lst._nm_xtime, now, mono)
        if e is None:
            self.clock_fallbacks += 1
            e = t
        elif t - e > self.max_delivery_ns:
            self.max_delivery_ns = t - e
        last = getattr(lst, "_nm_last_stamp", None)
        if last is not None and e < last:
            e = last
        lst._nm_last_stamp = e
        return e

    @property
    def passed(self) -> int:
        """Events handed to the sink."""
        return self._kb_counts[0] + self._ms_counts[0]

    @property
    def filtered(self) -> int:
        """Events held back by the privacy filter."""
        return self._kb_counts[1] + self._ms_counts[1]

    @property
    def seen(self) -> int:
        """Events received from pynput and stamped (passed + filtered)."""
        return self.passed + self.filtered

    def _emit(self, t: int, data: list, counts: list) -> None:
        p = self._privacy
        if p is not None:
            if not p.uses_window:
                win = None
            elif self._window_at is not None:
                win = self._window_at(t)
            else:
                win = self._window()
            if not p.allows(ev.SRC_CONTROL, data, win):
                counts[1] += 1
                return
        self._sink(t, ev.SRC_CONTROL, data)
        counts[0] += 1

    def _fail(self, e: Exception) -> None:
        self.errors += 1
        if self.error is None:
            self.error = f"{type(e).__name__}: {e}".splitlines()[0]

    def _on_press(self, key, injected=False):
        t = time.time_ns()
        try:
            if self.clock == "x11-server":
                t = self._xstamp(self._kb, t)
            vk, name = self._from_pynput(key)
            self._emit(t, [ev.KEY_PRESS, vk, name], self._kb_counts)
        except Exception as e:  # noqa: BLE001 - never let pynput stop the listener
            self._fail(e)

    def _on_release(self, key, injected=False):
        t = time.time_ns()
        try:
            if self.clock == "x11-server":
                t = self._xstamp(self._kb, t)
            vk, name = self._from_pynput(key)
            self._emit(t, [ev.KEY_RELEASE, vk, name], self._kb_counts)
        except Exception as e:  # noqa: BLE001
            self._fail(e)

    def _on_move(self, x, y, injected=False):
        t = time.time_ns()
        try:
            if self.clock == "x11-server":
                t = self._xstamp(self._ms, t)
            self._emit(t, [ev.MOUSE_MOVE, int(x), int(y)], self._ms_counts)
        except Exception as e:  # noqa: BLE001
            self._fail(e)

    def _on_click(self, x, y, button, pressed, injected=False):
        t = time.time_ns()
        try:
            if self.clock == "x11-server":
                t = self._xstamp(self._ms, t)
            name = getattr(button, "name", None) or str(button)
            self._emit(t, [ev.MOUSE_CLICK, int(x), int(y), _BUTTON_NAMES.get(name, name), bool(pressed)],
                       self._ms_counts)
        except Exception as e:  # noqa: BLE001
            self._fail(e)

    def _on_scroll(self, x, y, dx, dy, injected=False):
        t = time.time_ns()
        try:
            if self.clock == "x11-server":
                t = self._xstamp(self._ms, t)
            self._emit(t, [ev.MOUSE_SCROLL, int(x), int(y), int(dx), int(dy)], self._ms_counts)
        except Exception as e:  # noqa: BLE001
            self._fail(e)
