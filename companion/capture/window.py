"""The active (foreground) window, per OS, and a tracker thread that logs its changes.

- X11 (Linux/BSD): python-xlib, ``_NET_ACTIVE_WINDOW`` on the root window (set by the
  window manager; without one we fall back to the input focus), title from
  ``_NET_WM_NAME`` (UTF-8) or ``WM_NAME``, geometry translated to root coordinates,
  pid from ``_NET_WM_PID``, app from ``WM_CLASS`` (class) or else ``/proc/<pid>/comm``.
  Tested on Xvfb.
- Windows: ctypes user32 ``GetForegroundWindow``, ``GetWindowTextW``,
  ``GetWindowRect``, ``GetWindowThreadProcessId``; app = executable base name
  (``QueryFullProcessImageNameW``). The process is made per-monitor DPI aware so rects
  are physical pixels like pynput's mouse coordinates. Not run here (no Windows).
- macOS: Quartz ``CGWindowListCopyWindowInfo`` (pyobjc, imported lazily), the
  frontmost on-screen layer-0 window (of the frontmost app if AppKit is installed);
  the title needs the Screen Recording permission and is "" without it. Not run here.

Coordinates: screen pixels of the virtual desktop (X11 root window; Win32 virtual
screen, origin may be negative left of/above the primary monitor); on macOS global
display points, which is what pynput reports there too.
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
        self.WM_NAME = self.Xatom.WM_NAME
        # (wid, pid, app) of the last active window: pid/app never change for a
        # window, but X ids are reused, so only the last one is kept
        self._static: tuple = (None, None, None)
        self._root_watched = False
        self._watched = 0

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
                self._static = (None, None, None)
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
            if self._static[0] != wid or not self._watched:  # cache only while watching
                # (watch() selects DestroyNotify on the active window, which clears it)
                pidv = self._prop(win, self.NET_PID, self.Xatom.CARDINAL)
                pid = int(pidv[0]) if pidv is not None and len(pidv) else None
                self._static = (wid, pid, self._app(win, pid))
            return WindowInfo(title, rect, wid, self._static[1], self._static[2])
        except self.xerror.XError:
            self._static = (None, None, None)
            return None  # the window went away between the queries

    # -- change notification (used by WindowTracker on its own thread) --------
    def watch(self, wid: int | str | None) -> None:
        """Ask for PropertyNotify on the root (active window changes) and on ``wid``
        (title changes) plus its ConfigureNotify (moves/resizes)."""
        X = self.X
        if not self._root_watched:
            self.root.change_attributes(event_mask=X.PropertyChangeMask)
            self._root_watched = True
        wid = int(wid) if isinstance(wid, int) else 0
        if wid == self._watched:
            return
        catch = self.xerror.CatchError(self.xerror.BadWindow)  # window may be gone: ignore
        if self._watched:
            self.d.create_resource_object("window", self._watched).change_attributes(
                event_mask=X.NoEventMask, onerror=catch)
        if wid:
            self.d.create_resource_object("window", wid).change_attributes(
                event_mask=X.PropertyChangeMask | X.StructureNotifyMask, onerror=catch)
        self._watched = wid
        self.d.flush()

    def wait_change(self, timeout_s: float, wake_fd: int | None = None) -> int | None:
        """Wait up to ``timeout_s`` for the active window, its title or geometry to
        change, or for ``wake_fd`` to become readable. Returns the X server time (ms)
        of the first such change, -1 for a change without a time, else None."""
        import select
        X = self.X
        first = None
        deadline = time.monotonic() + timeout_s
        while True:
            while self.d.pending_events():
                e = self.d.next_event()
                if e.type == X.PropertyNotify:
                    if e.window.id == self.root.id:
                        relevant = e.atom == self.NET_ACTIVE
                    else:
                        relevant = e.atom in (self.NET_NAME, self.WM_NAME)
                    if relevant and first is None:
                        first = int(e.time)
                elif e.type in (X.ConfigureNotify, X.DestroyNotify, X.UnmapNotify):
                    if e.type == X.DestroyNotify:
                        self._static = (None, None, None)  # its id may be reused
                    if first is None:
                        first = -1  # no server time in these events
            if first is not None:
                return first
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            fds = [self.d.fileno()] if wake_fd is None else [self.d.fileno(), wake_fd]
            ready, _, _ = select.select(fds, [], [], left)
            if wake_fd is not None and wake_fd in ready:
                return None

    def _app(self, win, pid: int | None) -> str | None:
        """WM_CLASS class (e.g. "firefox", "Steam"; Wine/Proton games: "game.exe", like
        the Windows exe name), else the instance name, else /proc/<pid>/comm."""
        cls = win.get_wm_class()
        if cls:
            name = cls[1] or cls[0]
            if name:
                return name
        if pid:
            try:
                with open(f"/proc/{pid}/comm", encoding="utf-8", errors="replace") as f:
                    return f.read().strip() or None
            except OSError:
                pass
        return None


# -------------------------------------------------------------------------- Win32
_w32 = None  # (user32, kernel32) with prototypes, set up once


def _win32():  # pragma: no cover - Windows only
    """user32/kernel32 with argtypes/restypes (64-bit handles need them), and the process
    made per-monitor DPI aware so GetWindowRect and screen metrics are physical pixels,
    like pynput's low-level mouse hook coordinates and the captured video."""
    global _w32
    if _w32 is not None:
        return _w32
    import ctypes
    from ctypes import wintypes as wt

    user32 = ctypes.WinDLL("user32", use_last_error=True)
    kernel32 = ctypes.WinDLL("kernel32", use_last_error=True)
    user32.GetForegroundWindow.argtypes, user32.GetForegroundWindow.restype = [], wt.HWND
    user32.GetWindowTextLengthW.argtypes, user32.GetWindowTextLengthW.restype = [wt.HWND], ctypes.c_int
    user32.GetWindowTextW.argtypes = [wt.HWND, wt.LPWSTR, ctypes.c_int]
    user32.GetWindowTextW.restype = ctypes.c_int
    user32.GetWindowRect.argtypes, user32.GetWindowRect.restype = [wt.HWND, ctypes.POINTER(wt.RECT)], wt.BOOL
    user32.GetWindowThreadProcessId.argtypes = [wt.HWND, ctypes.POINTER(wt.DWORD)]
    user32.GetWindowThreadProcessId.restype = wt.DWORD
    user32.GetSystemMetrics.argtypes, user32.GetSystemMetrics.restype = [ctypes.c_int], ctypes.c_int
    kernel32.OpenProcess.argtypes, kernel32.OpenProcess.restype = [wt.DWORD, wt.BOOL, wt.DWORD], wt.HANDLE
    kernel32.QueryFullProcessImageNameW.argtypes = [wt.HANDLE, wt.DWORD, wt.LPWSTR, ctypes.POINTER(wt.DWORD)]
    kernel32.QueryFullProcessImageNameW.restype = wt.BOOL
    kernel32.CloseHandle.argtypes, kernel32.CloseHandle.restype = [wt.HANDLE], wt.BOOL
    try:  # Windows 10 1703+: per-monitor v2; else 8.1: per-monitor; else Vista: system
        user32.SetProcessDpiAwarenessContext.argtypes = [ctypes.c_void_p]
        if not user32.SetProcessDpiAwarenessContext(ctypes.c_void_p(-4)):
            raise OSError
    except (AttributeError, OSError):
        try:
            ctypes.WinDLL("shcore").SetProcessDpiAwareness(2)
        except (AttributeError, OSError):
            user32.SetProcessDPIAware()
    _w32 = (user32, kernel32)
    return _w32


def _win32_active_window() -> WindowInfo | None:  # pragma: no cover - Windows only
    import ctypes
    from ctypes import wintypes as wt

    user32, kernel32 = _win32()
    hwnd = user32.GetForegroundWindow()
    if not hwnd:
        return None
    n = max(0, user32.GetWindowTextLengthW(hwnd))
    buf = ctypes.create_unicode_buffer(n + 2)
    user32.GetWindowTextW(hwnd, buf, n + 2)
    r = wt.RECT()
    if not user32.GetWindowRect(hwnd, ctypes.byref(r)):
        return None  # the window went away
    pid = wt.DWORD()
    user32.GetWindowThreadProcessId(hwnd, ctypes.byref(pid))
    app = None
    h = kernel32.OpenProcess(0x1000, False, pid.value)  # PROCESS_QUERY_LIMITED_INFORMATION
    if h:
        try:
            size = wt.DWORD(32768)
            path = ctypes.create_unicode_buffer(size.value)
            if kernel32.QueryFullProcessImageNameW(h, 0, path, ctypes.byref(size)):
                app = path.value.rsplit("\\", 1)[-1]
        finally:
            kernel32.CloseHandle(h)
    return WindowInfo(buf.value, (r.left, r.top, r.right, r.bottom), int(hwnd),
                      int(pid.value) or None, app)


def _win32_screen_size() -> tuple[int, int]:  # pragma: no cover - Windows only
    user32, _ = _win32()
    SM_CXVIRTUALSCREEN, SM_CYVIRTUALSCREEN = 78, 79
    return int(user32.GetSystemMetrics(SM_CXVIRTUALSCREEN)), int(user32.GetSystemMetrics(SM_CYVIRTUALSCREEN))


# -------------------------------------------------------------------------- macOS
def _mac_frontmost_pid() -> int | None:  # pragma: no cover - macOS only
    try:
        from AppKit import NSWorkspace  # pyobjc-framework-Cocoa, optional
    except ImportError:
        return None
    app = NSWorkspace.sharedWorkspace().frontmostApplication()
    return int(app.processIdentifier()) if app is not None else None


def _mac_active_window() -> WindowInfo | None:  # pragma: no cover - macOS only
    """Frontmost layer-0 on-screen window, of the frontmost application if AppKit is
    available. Rect in global display points (origin top-left of the main display)."""
    try:
        import Quartz
    except ImportError as e:
        raise EnvProblem(f"pyobjc-framework-Quartz is needed for window tracking on macOS: {e}") from None
    front = _mac_frontmost_pid()
    opts = Quartz.kCGWindowListOptionOnScreenOnly | Quartz.kCGWindowListExcludeDesktopElements
    for w in Quartz.CGWindowListCopyWindowInfo(opts, Quartz.kCGNullWindowID) or ():
        if w.get("kCGWindowLayer", 1) != 0:
            continue  # menu bar, dock, overlays
        pid = w.get("kCGWindowOwnerPID")
        if front is not None and pid != front:
            continue
        b = w.get("kCGWindowBounds") or {}
        x, y = int(b.get("X", 0)), int(b.get("Y", 0))
        rect = (x, y, x + int(b.get("Width", 0)), y + int(b.get("Height", 0)))
        return WindowInfo(str(w.get("kCGWindowName") or ""), rect, int(w.get("kCGWindowNumber", 0)),
                          int(pid) if pid is not None else None,
                          str(w.get("kCGWindowOwnerName")) if w.get("kCGWindowOwnerName") else None)
    return None


def _mac_screen_size() -> tuple[int, int]:  # pragma: no cover - macOS only
    """Size of the union of active displays, in points (pynput's mouse unit there)."""
    import Quartz
    err, ids, count = Quartz.CGGetActiveDisplayList(32, None, None)
    if err or not count:
        d = Quartz.CGMainDisplayID()
        return int(Quartz.CGDisplayPixelsWide(d)), int(Quartz.CGDisplayPixelsHigh(d))
    rects = [Quartz.CGDisplayBounds(i) for i in ids[:count]]
    left = min(r.origin.x for r in rects)
    top = min(r.origin.y for r in rects)
    right = max(r.origin.x + r.size.width for r in rects)
    bottom = max(r.origin.y + r.size.height for r in rects)
    return int(right - left), int(bottom - top)


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
    """Tracks the active window on its own thread.

    Emits ``sink(timestamp_ns, "window_publisher", {"title","rect","hWnd","pid","app"})``
    when the window (id, title, rect) changes and, while nothing changes, again every
    ``heartbeat_s`` s (as open-world-agents does), so readers always know the window
    within one heartbeat. ``timestamp_ns`` = ``time.time_ns()`` right after the query.

    The window is re-read every ``interval_s`` s. On X11 (default source) the tracker
    instead wakes at once on X events (``_NET_ACTIVE_WINDOW`` on the root, the active
    window's title, its ConfigureNotify), so focus changes are seen within
    milliseconds and their X server time is known exactly; it then re-reads only every
    ``x11_rescan_s`` s (and for heartbeats) to catch what sends no event (e.g. a frame
    moved by a WM that sends no synthetic ConfigureNotify).

    With ``privacy`` the event is redacted (:meth:`PrivacyFilter.window_event`) and
    ``recorder`` markers ``input.suppressed`` / ``input.resumed`` are emitted when the
    active window stops/starts being allowed. :meth:`window_at` answers "which window
    was active at epoch time t" from a short history of changes, for InputCapture's
    privacy decision on events that the X server delivered late. Where a change time is
    only known to lie between two polls, it is taken as the *earlier* poll for a change
    to a not-allowed window and the *later* one for a change to an allowed window, so
    an uncertain moment always counts as not allowed.

    ``source`` (default :func:`active_window`) is called on the tracker thread.
    """

    HISTORY = 64  # window changes kept for window_at()

    def __init__(self, sink: Sink, interval_s: float = 0.1, heartbeat_s: float = 1.0,
                 privacy=None, source: Callable[[], WindowInfo | None] | None = None,
                 x11_rescan_s: float = 0.5):
        if interval_s <= 0 or heartbeat_s <= 0 or x11_rescan_s <= 0:
            raise ValueError("interval_s, heartbeat_s and x11_rescan_s must be > 0")
        self.x11_rescan_s = max(float(x11_rescan_s), float(interval_s))
        self._sink = sink
        self.interval_s = float(interval_s)
        self.heartbeat_s = float(heartbeat_s)
        self._privacy = privacy
        self._source = source or active_window
        self._x11_events = (source is None and sys.platform not in ("win32", "darwin"))
        self._current: WindowInfo | None = None
        self._allowed: bool | None = None
        # ((since_epoch_ns, WindowInfo | None), ...) oldest first; replaced, never mutated
        self._history: tuple = ()
        self._last_poll_ns = 0
        self._stop = threading.Event()
        self._wake_r, self._wake_w = (os.pipe() if self._x11_events else (None, None))
        self._thread: threading.Thread | None = None
        self.error: str | None = None  # last query error (one line), if any
        self.polls = 0
        self.emitted = 0

    def current(self) -> WindowInfo | None:
        """The last observed active window (cheap: no window-system query)."""
        return self._current

    def window_at(self, t_ns: int) -> WindowInfo | None:
        """The window active at epoch ``t_ns`` as far as the tracker knows (cheap, any
        thread): the newest change at or before ``t_ns``; the oldest known window for
        times before the first observation."""
        h = self._history
        for since, info in reversed(h):
            if since <= t_ns:
                return info
        return h[0][1] if h else self._current

    def start(self) -> None:
        """Take a first reading synchronously (so current() is valid), then start the thread.

        Raises EnvProblem if the window system cannot be reached at all.
        """
        if self._thread is not None:
            raise RuntimeError("WindowTracker already started")
        self._last_emit = -(1 << 62)
        self._last_key = None
        ready = threading.Event()
        err: list[BaseException] = []

        def body():
            # the first query happens on the thread that owns the X connection
            try:
                self._poll(force=True, change_ns=None)
                if self._x11_events:
                    _x11().watch(self._current.window_id if self._current else None)
            except BaseException as e:  # noqa: BLE001 - reported to start()
                err.append(e)
                ready.set()
                _close_thread_conn()
                return
            ready.set()
            self._run()

        self._thread = threading.Thread(target=body, name="nm-window-tracker", daemon=True)
        self._thread.start()
        ready.wait()
        if err:
            self._thread.join()
            self._thread = None
            raise err[0]

    def stop(self) -> None:
        """Stop the thread and wait for it (prompt on X11; at most one interval elsewhere)."""
        self._stop.set()
        if self._wake_w is not None:
            try:
                os.write(self._wake_w, b"x")
            except OSError:
                pass
        if self._thread is not None:
            self._thread.join()
        for fd in (self._wake_r, self._wake_w):
            if fd is not None:
                try:
                    os.close(fd)
                except OSError:
                    pass
        self._wake_r = self._wake_w = None

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                change_ns = None
                try:
                    if self._x11_events:
                        conn = _x11()
                        wait_s = self.x11_rescan_s
                        if self._last_key is not None:  # a window is shown: heartbeat due?
                            to_beat = (self._last_emit + self.heartbeat_s * 1e9 - time.time_ns()) / 1e9
                            wait_s = max(0.0, min(wait_s, to_beat))
                        x_ms = conn.wait_change(wait_s, self._wake_r)
                        if self._stop.is_set():
                            break
                        if x_ms is not None and x_ms >= 0:
                            from companion.capture.inputs import x11_event_epoch_ns
                            change_ns = x11_event_epoch_ns(x_ms, time.time_ns(), time.monotonic_ns())
                    elif self._stop.wait(self.interval_s):
                        break
                    self._poll(force=False, change_ns=change_ns)
                    if self._x11_events:
                        _x11().watch(self._current.window_id if self._current else None)
                except Exception as e:  # noqa: BLE001 - keep tracking; report the last error
                    self.error = f"{type(e).__name__}: {e}".splitlines()[0]
                    if self._x11_events:
                        _close_thread_conn()  # reconnect next time (X connection lost?)
                    if self._stop.wait(self.interval_s):
                        break
        finally:
            _close_thread_conn()

    def _poll(self, force: bool, change_ns: int | None) -> None:
        """Query the window; record history, markers and events. ``change_ns``: exact
        epoch time of the change if known (X11 PropertyNotify), else None."""
        prev_poll = self._last_poll_ns
        info = self._source()
        t = time.time_ns()
        self._last_poll_ns = t
        self.polls += 1
        p = self._privacy
        allowed = p.window_allowed(info) if p is not None else True
        prev = self._current
        marker_t = t
        if force or not self._history or _ident(info) != _ident(prev):
            if change_ns is not None:
                since = change_ns if not allowed else change_ns + 1_000_000  # +-ms rounding
            elif not self._history:
                since = t
            else:
                since = prev_poll if not allowed else t
            since = min(since, t) if not allowed else since
            self._history = (self._history + ((since, info),))[-self.HISTORY:]
            marker_t = min(since, t)  # suppression starts/ends when window_at() says
        self._current = info
        key = None if info is None else (info.window_id, info.title, info.rect, info.pid, info.app)
        if p is not None and not p.consent:
            return  # no consent: track (for current()/window_at()) but log nothing
        if p is not None and allowed != self._allowed:
            if self._allowed is not None or not allowed:
                name = ev.REC_INPUT_RESUMED if allowed else ev.REC_INPUT_SUPPRESSED
                self._sink(marker_t, ev.SRC_RECORDER, {"event": name, "reason": "window filter"})
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


def _ident(info: WindowInfo | None):
    """What makes a window 'another window' for privacy: id, title and app."""
    return None if info is None else (info.window_id, info.title, info.app)
