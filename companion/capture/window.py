"""The active (foreground) window, per OS, and a tracker thread that logs its changes.

- X11 (Linux/BSD): python-xlib, ``_NET_ACTIVE_WINDOW`` on the root window (set by the
  window manager; without one we fall back to the input focus), title from
  ``_NET_WM_NAME`` (UTF-8) or ``WM_NAME``, geometry translated to root coordinates,
  pid from ``_NET_WM_PID``, app from ``/proc/<pid>/comm`` or else ``WM_CLASS``.
- Windows: ctypes user32 ``GetForegroundWindow``, ``GetWindowTextW``,
  ``GetWindowRect``, ``GetWindowThreadProcessId``; app = executable base name.
- macOS: Quartz ``CGWindowListCopyWindowInfo`` (imported lazily, pyobjc), the
  frontmost on-screen window of layer 0; title needs the Screen Recording permission
  and is "" without it.

Coordinates are screen pixels of the virtual desktop (X11 root / Win32 virtual screen;
macOS global display points, which are what pynput reports there too).
"""
from __future__ import annotations

import os
import sys
import threading
import time
from dataclasses import dataclass
from typing import Callable

from companion.contract import events as ev
from companion.util.errors import EnvProblem


@dataclass(frozen=True)
class WindowInfo:
    """One observation of the active window.

    title: window title ("" if none); rect: (left, top, right, bottom) in screen pixels,
    right/bottom exclusive (right - left = width); window_id: X11 window id / Win32 HWND /
    macOS kCGWindowNumber; pid: owning process id if known; app: application/executable
    name if known (e.g. "firefox", "game.exe", "Safari").
    """

    title: str
    rect: tuple[int, int, int, int]
    window_id: int | str
    pid: int | None = None
    app: str | None = None

    def to_event(self) -> dict:
        """``window_publisher`` event_data (open-world-agents keys + pid/app)."""
        return {"title": self.title, "rect": list(self.rect), "hWnd": self.window_id,
                "pid": self.pid, "app": self.app}


# ---------------------------------------------------------------------------- X11
class _X11:
    """One python-xlib connection (not shared across threads: make one per thread)."""

    def __init__(self, display: str | None = None):
        try:
            from Xlib import X, Xatom, display as xdisplay, error as xerror
        except ImportError as e:  # pragma: no cover - python-xlib ships with pynput
            raise EnvProblem(f"python-xlib is needed for window tracking on X11: {e}") from None
        self.X, self.Xatom, self.xerror = X, Xatom, xerror
        name = display if display is not None else os.environ.get("DISPLAY")
        if not name:
            raise EnvProblem("no X display: DISPLAY is not set (window tracking needs X11)")
        try:
            self.d = xdisplay.Display(name)
        except Exception as e:  # Xlib raises DisplayNameError / DisplayConnectionError / OSError
            raise EnvProblem(f"cannot connect to X display {name!r}: {e}") from None
        self.root = self.d.screen().root
        a = self.d.intern_atom
        self.NET_ACTIVE = a("_NET_ACTIVE_WINDOW")
        self.NET_NAME = a("_NET_WM_NAME")
        self.NET_PID = a("_NET_WM_PID")
        self.UTF8 = a("UTF8_STRING")

    def close(self) -> None:
        try:
            self.d.close()
        except Exception:
            pass

    def screen_size(self) -> tuple[int, int]:
        s = self.d.screen()
        return int(s.width_in_pixels), int(s.height_in_pixels)

    def _prop(self, win, atom, typ):
        p = win.get_full_property(atom, typ)
        return None if p is None else p.value

    def _active_id(self) -> int | None:
        v = self._prop(self.root, self.NET_ACTIVE, self.X.AnyPropertyType)
        if v is not None and len(v) and int(v[0]):
            return int(v[0])
        if v is not None:
            return None  # a WM is running and says no window is active
        # No EWMH window manager: use the input focus, walked up to a top-level window.
        focus = self.d.get_input_focus().focus
        if not hasattr(focus, "id") or focus.id in (self.root.id, 0):
            return None  # PointerRoot / None / root
        win = focus
        while True:
            if win.get_wm_name() is not None or self._prop(win, self.NET_NAME, self.UTF8):
                return int(win.id)
            parent = win.query_tree().parent
            if parent is None or parent.id in (0, self.root.id):
                return int(win.id)
            win = parent

    def active_window(self) -> WindowInfo | None:
        try:
            wid = self._active_id()
            if wid is None:
                return None
            win = self.d.create_resource_object("window", wid)
            raw = self._prop(win, self.NET_NAME, self.UTF8)
            if raw is not None:
                title = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
            else:
                name = win.get_wm_name()
                title = (name.decode("latin-1") if isinstance(name, bytes) else name) or ""
            g = win.get_geometry()
            pos = self.root.translate_coords(win, 0, 0)
            rect = (int(pos.x), int(pos.y), int(pos.x) + int(g.width), int(pos.y) + int(g.height))
            pidv = self._prop(win, self.NET_PID, self.Xatom.CARDINAL)
            pid = int(pidv[0]) if pidv is not None and len(pidv) else None
            return WindowInfo(title, rect, wid, pid, self._app(win, pid))
        except self.xerror.XError:
            return None  # the window went away between the queries

    def _app(self, win, pid: int | None) -> str | None:
        if pid:
            try:
                with open(f"/proc/{pid}/comm", encoding="utf-8", errors="replace") as f:
                    return f.read().strip() or None
            except OSError:
                pass
        cls = win.get_wm_class()
        return cls[1] if cls else None


# -------------------------------------------------------------------------- Win32
def _win32_active_window() -> WindowInfo | None:  # pragma: no cover - Windows only
    import ctypes
    from ctypes import wintypes

    user32 = ctypes.WinDLL("user32", use_last_error=True)
    kernel32 = ctypes.WinDLL("kernel32", use_last_error=True)
    user32.GetForegroundWindow.restype = wintypes.HWND
    hwnd = user32.GetForegroundWindow()
    if not hwnd:
        return None
    n = user32.GetWindowTextLengthW(hwnd)
    buf = ctypes.create_unicode_buffer(n + 1)
    user32.GetWindowTextW(hwnd, buf, n + 1)
    r = wintypes.RECT()
    if not user32.GetWindowRect(hwnd, ctypes.byref(r)):
        return None
    pid = wintypes.DWORD()
    user32.GetWindowThreadProcessId(hwnd, ctypes.byref(pid))
    app = None
    PROCESS_QUERY_LIMITED_INFORMATION = 0x1000
    kernel32.OpenProcess.restype = wintypes.HANDLE
    h = kernel32.OpenProcess(PROCESS_QUERY_LIMITED_INFORMATION, False, pid.value)
    if h:
        try:
            size = wintypes.DWORD(1024)
            path = ctypes.create_unicode_buffer(size.value)
            if kernel32.QueryFullProcessImageNameW(h, 0, path, ctypes.byref(size)):
                app = path.value.replace("/", "\\").rsplit("\\", 1)[-1]
        finally:
            kernel32.CloseHandle(h)
    return WindowInfo(buf.value, (r.left, r.top, r.right, r.bottom), int(hwnd),
                      int(pid.value) or None, app)


def _win32_screen_size() -> tuple[int, int]:  # pragma: no cover - Windows only
    import ctypes
    user32 = ctypes.WinDLL("user32")
    SM_CXVIRTUALSCREEN, SM_CYVIRTUALSCREEN = 78, 79
    return int(user32.GetSystemMetrics(SM_CXVIRTUALSCREEN)), int(user32.GetSystemMetrics(SM_CYVIRTUALSCREEN))


# -------------------------------------------------------------------------- macOS
def _mac_active_window() -> WindowInfo | None:  # pragma: no cover - macOS only
    try:
        import Quartz
    except ImportError as e:
        raise EnvProblem(f"pyobjc-framework-Quartz is needed for window tracking on macOS: {e}") from None
    opts = Quartz.kCGWindowListOptionOnScreenOnly | Quartz.kCGWindowListExcludeDesktopElements
    for w in Quartz.CGWindowListCopyWindowInfo(opts, Quartz.kCGNullWindowID) or ():
        if w.get("kCGWindowLayer", 1) != 0:
            continue  # menu bar, dock, overlays
        b = w.get("kCGWindowBounds") or {}
        x, y = int(b.get("X", 0)), int(b.get("Y", 0))
        rect = (x, y, x + int(b.get("Width", 0)), y + int(b.get("Height", 0)))
        pid = w.get("kCGWindowOwnerPID")
        return WindowInfo(str(w.get("kCGWindowName") or ""), rect, int(w.get("kCGWindowNumber", 0)),
                          int(pid) if pid is not None else None, w.get("kCGWindowOwnerName"))
    return None


def _mac_screen_size() -> tuple[int, int]:  # pragma: no cover - macOS only
    import Quartz
    d = Quartz.CGMainDisplayID()
    return int(Quartz.CGDisplayPixelsWide(d)), int(Quartz.CGDisplayPixelsHigh(d))


# ----------------------------------------------------------------------- dispatch
_x11_local = threading.local()


def _x11() -> _X11:
    """This thread's X connection to the current $DISPLAY (reopened if it changed)."""
    disp = os.environ.get("DISPLAY")
    conn = getattr(_x11_local, "conn", None)
    if conn is None or _x11_local.name != disp:
        if conn is not None:
            conn.close()
        _x11_local.conn = None
        _x11_local.conn = _X11(disp)
        _x11_local.name = disp
    return _x11_local.conn


def _close_thread_conn() -> None:
    conn = getattr(_x11_local, "conn", None)
    if conn is not None:
        conn.close()
        _x11_local.conn = None


def active_window() -> WindowInfo | None:
    """The current foreground window, or None if there is none / it cannot be read.

    Raises EnvProblem if the platform's window system is unreachable (e.g. no DISPLAY).
    On X11 it keeps one connection per calling thread.
    """
    if sys.platform == "win32":
        return _win32_active_window()
    if sys.platform == "darwin":
        return _mac_active_window()
    return _x11().active_window()


def screen_size() -> tuple[int, int]:
    """(width, height) of the desktop in pixels (see module docstring for units)."""
    if sys.platform == "win32":
        return _win32_screen_size()
    if sys.platform == "darwin":
        return _mac_screen_size()
    return _x11().screen_size()


# ------------------------------------------------------------------------ tracker
Sink = Callable[[int, str, object], None]


class WindowTracker:
    """Polls the active window every ``interval_s`` s on its own thread.

    Emits ``sink(timestamp_ns, "window_publisher", {"title","rect","hWnd","pid","app"})``
    when the window (id, title or rect) changes and, while nothing changes, again every
    ``heartbeat_s`` s (as open-world-agents does), so readers always know the window
    within one heartbeat. ``timestamp_ns`` = ``time.time_ns()`` right after the query.

    With ``privacy`` the event is redacted (:meth:`PrivacyFilter.window_event`) and
    ``recorder`` markers ``input.suppressed`` / ``input.resumed`` are emitted when the
    active window stops/starts being allowed (input events in between are dropped by
    InputCapture using the same filter and :meth:`current`).

    ``source`` (default :func:`active_window`) is called on the tracker thread.
    """

    def __init__(self, sink: Sink, interval_s: float = 0.1, heartbeat_s: float = 1.0,
                 privacy=None, source: Callable[[], WindowInfo | None] | None = None):
        if interval_s <= 0 or heartbeat_s <= 0:
            raise ValueError("interval_s and heartbeat_s must be > 0")
        self._sink = sink
        self.interval_s = float(interval_s)
        self.heartbeat_s = float(heartbeat_s)
        self._privacy = privacy
        self._source = source or active_window
        self._current: WindowInfo | None = None
        self._allowed: bool | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.error: str | None = None  # last query error (one line), if any
        self.polls = 0
        self.emitted = 0

    def current(self) -> WindowInfo | None:
        """The last observed active window (cheap: no window-system query)."""
        return self._current

    def poll_once(self) -> WindowInfo | None:
        """Query the window now, update :meth:`current` and emit if due (tracker thread)."""
        self._poll(force=False)
        return self._current

    def start(self) -> None:
        """Take a first reading synchronously (so current() is valid), then start the thread.

        Raises EnvProblem if the window system cannot be reached at all.
        """
        if self._thread is not None:
            raise RuntimeError("WindowTracker already started")
        self._last_emit = -1e18
        self._last_key = None
        if self._source is active_window and sys.platform not in ("win32", "darwin"):
            # the first query must happen on the thread that will own the connection
            ready = threading.Event()
            err: list[BaseException] = []

            def first():
                try:
                    self._poll(force=True)
                except BaseException as e:  # noqa: BLE001 - reported to start()
                    err.append(e)
                ready.set()
                if not err:
                    self._run()

            self._thread = threading.Thread(target=first, name="nm-window-tracker", daemon=True)
            self._thread.start()
            ready.wait()
            if err:
                self._thread.join()
                self._thread = None
                raise err[0]
        else:
            self._poll(force=True)
            self._thread = threading.Thread(target=self._run, name="nm-window-tracker", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        """Stop the thread (waits at most about one interval)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def _run(self) -> None:
        try:
            while not self._stop.wait(self.interval_s):
                try:
                    self._poll(force=False)
                except Exception as e:  # noqa: BLE001 - keep tracking; report the last error
                    self.error = f"{type(e).__name__}: {e}".splitlines()[0]
        finally:
            _close_thread_conn()

    def _poll(self, force: bool) -> None:
        info = self._source()
        t = time.time_ns()
        self.polls += 1
        self._current = info
        key = None if info is None else (info.window_id, info.title, info.rect, info.pid, info.app)
        p = self._privacy
        if p is not None:
            allowed = p.window_allowed(info)
            if allowed != self._allowed:
                if self._allowed is not None or not allowed:
                    name = ev.REC_INPUT_RESUMED if allowed else ev.REC_INPUT_SUPPRESSED
                    self._sink(t, ev.SRC_RECORDER, {"event": name, "reason": "window filter"})
                self._allowed = allowed
        if info is None:
            self._last_key = None
            return  # nothing to publish; the next real window is a change
        if force or key != self._last_key or (t - self._last_emit) >= self.heartbeat_s * 1e9:
            data = p.window_event(info) if p is not None else info.to_event()
            self._sink(t, ev.SRC_WINDOW, data)
            self._last_key = key
            self._last_emit = t
            self.emitted += 1
