"""Active-window queries and WindowTracker on a real X server (Xvfb, displays :74-:76).

There is no window manager here, so "making a window active" is done the way an EWMH
window manager does it: setting ``_NET_ACTIVE_WINDOW`` on the root window (and for the
no-WM fallback, setting the X input focus). The windows are real X windows created
with python-xlib, with real titles/properties.
"""
from __future__ import annotations

import os
import shutil
import threading
import time

import pytest

from companion.capture import window as W
from companion.capture.privacy import PrivacyFilter
from companion.contract import events as ev
from companion.util.errors import EnvProblem
from tests.obs_harness import xdisplay_fixture

pytestmark = [pytest.mark.x11,
              pytest.mark.skipif(not shutil.which("Xvfb"), reason="needs Xvfb")]

DISPLAYS = range(74, 77)




class FakeWM:
    """Our own X client: creates real windows and plays the WM's part of EWMH."""

    def __init__(self, name: str):
        from Xlib import X, Xatom, display
        self.X, self.Xatom = X, Xatom
        self.d = display.Display(name)
        self.root = self.d.screen().root
        self.ACTIVE = self.d.intern_atom("_NET_ACTIVE_WINDOW")
        self.NAME = self.d.intern_atom("_NET_WM_NAME")
        self.PID = self.d.intern_atom("_NET_WM_PID")
        self.UTF8 = self.d.intern_atom("UTF8_STRING")

    def window(self, title: str, x: int, y: int, w: int, h: int, pid: int | None = None,
               wm_class=("testapp", "TestApp"), net_name: bool = True):
        win = self.root.create_window(x, y, w, h, 0, self.d.screen().root_depth,
                                      override_redirect=True)
        self.set_title(win, title, net_name)
        if pid is not None:
            win.change_property(self.PID, self.Xatom.CARDINAL, 32, [pid])
        if wm_class:
            win.set_wm_class(*wm_class)
        win.map()
        self.d.sync()
        return win

    def set_title(self, win, title: str, net_name: bool = True):
        if net_name:
            win.change_property(self.NAME, self.UTF8, 8, title.encode("utf-8"))
        win.set_wm_name(title.encode("latin-1", "replace"))
        self.d.sync()

    def activate(self, win):
        self.root.change_property(self.ACTIVE, self.Xatom.WINDOW, 32, [win.id if win else 0])
        self.d.sync()

    def no_wm(self):
        self.root.delete_property(self.ACTIVE)
        self.d.sync()

    def close(self):
        self.d.close()


xdisplay = xdisplay_fixture(DISPLAYS)


@pytest.fixture
def wm(xdisplay, monkeypatch):
    monkeypatch.setenv("DISPLAY", xdisplay)
    m = FakeWM(xdisplay)
    yield m
    m.no_wm()
    m.close()


def comm(pid: int) -> str:
    with open(f"/proc/{pid}/comm") as f:
        return f.read().strip()


def test_active_window_reads_title_rect_pid_app(wm):
    title = "Spiel – Level 3 ✓"  # non-Latin-1 characters come through _NET_WM_NAME
    win = wm.window(title, 100, 50, 640, 480, pid=os.getpid())
    wm.activate(win)
    info = W.active_window()
    assert info == W.WindowInfo(title, (100, 50, 740, 530), win.id, os.getpid(), "TestApp")
    assert info.to_event() == {"title": title, "rect": [100, 50, 740, 530], "hWnd": win.id,
                               "pid": os.getpid(), "app": "TestApp"}
    win.destroy()
    # no WM_CLASS: the process name of _NET_WM_PID
    win = wm.window("no class", 0, 0, 10, 10, pid=os.getpid(), wm_class=None)
    wm.activate(win)
    assert W.active_window().app == comm(os.getpid())
    win.destroy()


def test_wm_name_only_and_wm_class_app(wm):
    win = wm.window("Old Xterm", 10, 20, 300, 200, pid=None, wm_class=("xterm", "XTerm"),
                    net_name=False)
    wm.activate(win)
    info = W.active_window()
    assert (info.title, info.pid, info.app, info.rect) == ("Old Xterm", None, "XTerm", (10, 20, 310, 220))
    win.destroy()


def test_child_window_rect_is_in_root_coordinates(wm):
    parent = wm.window("frame", 200, 100, 500, 400, wm_class=None)
    child = parent.create_window(7, 30, 100, 80, 0, wm.d.screen().root_depth)
    wm.set_title(child, "client")
    child.map()
    wm.d.sync()
    wm.activate(child)
    assert W.active_window().rect == (207, 130, 307, 210)
    parent.destroy()


def test_no_active_window_and_destroyed_window(wm):
    wm.activate(None)
    assert W.active_window() is None
    win = wm.window("gone", 0, 0, 10, 10)
    wm.activate(win)
    win.destroy()
    wm.d.sync()
    assert W.active_window() is None  # stale _NET_ACTIVE_WINDOW: no crash, no window


def test_without_wm_falls_back_to_input_focus(wm):
    wm.no_wm()
    win = wm.window("focused", 5, 5, 50, 50)
    win.set_input_focus(wm.X.RevertToParent, wm.X.CurrentTime)
    wm.d.sync()
    info = W.active_window()
    assert info is not None and info.window_id == win.id and info.title == "focused"
    wm.root.set_input_focus(wm.X.RevertToParent, wm.X.CurrentTime)  # root focused = none
    wm.d.sync()
    assert W.active_window() is None
    win.destroy()


def test_screen_size(wm):
    assert W.screen_size() == (1280, 720)


def test_bad_display_is_env_problem(monkeypatch):
    result = {}

    def run():  # fresh thread: no cached connection
        try:
            W.active_window()
        except EnvProblem as e:
            result["e"] = str(e)

    monkeypatch.setenv("DISPLAY", ":69.0x")
    t = threading.Thread(target=run)
    t.start()
    t.join()
    assert "cannot connect to X display" in result["e"] and "\n" not in result["e"]
    monkeypatch.delenv("DISPLAY")
    t = threading.Thread(target=run)
    t.start()
    t.join()
    assert "DISPLAY is not set" in result["e"]


def _collect():
    got: list[tuple[int, str, object]] = []
    lock = threading.Lock()

    def sink(t, src, data):
        with lock:
            got.append((t, src, data))
    return got, sink


def test_tracker_emits_changes_and_heartbeats(wm):
    a = wm.window("Game A", 0, 0, 800, 600, pid=os.getpid())
    b = wm.window("Browser B", 100, 100, 400, 300)
    wm.activate(a)
    got, sink = _collect()
    tr = W.WindowTracker(sink, interval_s=0.02, heartbeat_s=0.25)
    t0 = time.time_ns()
    tr.start()
    assert tr.current().window_id == a.id  # valid right after start()
    time.sleep(0.6)
    wm.activate(b)
    time.sleep(0.1)
    wm.set_title(b, "Browser B - new tab")
    time.sleep(0.1)
    b.configure(x=150)
    wm.d.sync()
    time.sleep(0.1)
    tr.stop()
    t1 = time.time_ns()
    assert all(src == ev.SRC_WINDOW for _, src, _ in got)
    assert [t for t, _, _ in got] == sorted(t for t, _, _ in got)
    assert t0 <= got[0][0] and got[-1][0] <= t1
    titles = [d["title"] for _, _, d in got]
    first_b = titles.index("Browser B")
    # Game A: the first event plus heartbeats about every 0.25 s for ~0.6 s
    assert titles[:first_b] == ["Game A"] * first_b and 2 <= first_b <= 4
    gaps = [(got[i + 1][0] - got[i][0]) / 1e9 for i in range(first_b - 1)]
    assert all(0.24 <= g <= 0.60 for g in gaps), gaps  # upper bound: scheduling on a busy box
    # each change is emitted once, promptly (no heartbeat needed in 0.1 s)
    assert titles[first_b:] == ["Browser B", "Browser B - new tab", "Browser B - new tab"]
    assert got[-1][2]["rect"] == [150, 100, 550, 400] and got[-2][2]["rect"] == [100, 100, 500, 400]
    assert got[first_b][2]["hWnd"] == b.id
    assert tr.current().title == "Browser B - new tab" and tr.error is None
    a.destroy()
    b.destroy()


def test_tracker_privacy_redacts_and_marks_suppression(wm):
    game = wm.window("Minecraft 1.20", 0, 0, 800, 600)
    bank = wm.window("My Bank - Firefox", 0, 0, 800, 600, wm_class=("Navigator", "firefox"))
    wm.activate(game)
    got, sink = _collect()
    pf = PrivacyFilter(consent=True, only_window=["minecraft"])
    tr = W.WindowTracker(sink, interval_s=0.02, heartbeat_s=10, privacy=pf)
    tr.start()
    time.sleep(0.1)
    wm.activate(bank)
    time.sleep(0.1)
    wm.activate(game)
    time.sleep(0.1)
    tr.stop()
    seq = [(src, d.get("title") if src == ev.SRC_WINDOW else d["event"]) for _, src, d in got]
    assert seq == [(ev.SRC_WINDOW, "Minecraft 1.20"),
                   (ev.SRC_RECORDER, ev.REC_INPUT_SUPPRESSED), (ev.SRC_WINDOW, "<redacted>"),
                   (ev.SRC_RECORDER, ev.REC_INPUT_RESUMED), (ev.SRC_WINDOW, "Minecraft 1.20")]
    redacted = got[2][2]
    assert redacted["app"] == "<redacted>" and redacted["hWnd"] == bank.id
    assert "Bank" not in repr(got)
    game.destroy()
    bank.destroy()


def test_tracker_survives_source_errors():
    calls = []

    def flaky():
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("X went away\nsecond line")
        return W.WindowInfo("t", (0, 0, 1, 1), 1)

    got, sink = _collect()
    tr = W.WindowTracker(sink, interval_s=0.01, heartbeat_s=10, source=flaky)
    tr.start()
    time.sleep(0.1)
    tr.stop()
    assert len(calls) > 3 and tr.error == "RuntimeError: X went away"
    assert len(got) == 1  # same window before and after the error: one event


def test_tracker_sees_focus_changes_at_once_and_knows_their_time(wm):
    a = wm.window("Alpha", 0, 0, 200, 200)
    b = wm.window("Beta", 0, 0, 200, 200)
    wm.activate(a)
    got, sink = _collect()
    tr = W.WindowTracker(sink, interval_s=5.0, heartbeat_s=60)  # polls would be too slow
    tr.start()
    time.sleep(0.1)
    t_before = time.time_ns()
    wm.activate(b)  # PropertyNotify on the root wakes the tracker
    t_after = time.time_ns()
    deadline = time.monotonic() + 1.0
    while (tr.current() is None or tr.current().title != "Beta") and time.monotonic() < deadline:
        time.sleep(0.005)
    seen_s = (time.time_ns() - t_after) / 1e9
    wm.set_title(b, "Beta 2")
    time.sleep(0.1)
    tr.stop()
    assert seen_s < 0.5, seen_s
    assert [d["title"] for _, _, d in got] == ["Alpha", "Beta", "Beta 2"]
    # window_at: the change time is the X server's time of the property change
    assert tr.window_at(t_before - 1).title == "Alpha"
    assert tr.window_at(t_after + 2_000_000).title == "Beta"
    assert tr.window_at(0).title == "Alpha"  # before the first observation: oldest known
    a.destroy()
    b.destroy()


def test_tracker_logs_nothing_without_consent(wm):
    a = wm.window("Anything", 0, 0, 100, 100)
    wm.activate(a)
    got, sink = _collect()
    tr = W.WindowTracker(sink, interval_s=0.02, heartbeat_s=0.05, privacy=PrivacyFilter(consent=False))
    tr.start()
    time.sleep(0.2)
    tr.stop()
    assert got == [] and tr.current().title == "Anything"
    a.destroy()
