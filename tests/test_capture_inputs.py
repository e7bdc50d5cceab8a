"""InputCapture -> JsonlWriter on a real X server (Xvfb), input driven by real xdotool.

Displays used: :70-:73 (first free one).
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from companion.capture.inputs import InputCapture
from companion.capture.privacy import PrivacyFilter
from companion.capture.writer import JsonlWriter
from companion.contract import events as ev
from companion.util.errors import EnvProblem
from tests.obs_harness import xdisplay_fixture

pytestmark = [pytest.mark.x11,
              pytest.mark.skipif(not (shutil.which("Xvfb") and shutil.which("xdotool")),
                                 reason="needs Xvfb and xdotool")]

DISPLAYS = range(70, 74)




xdisplay = xdisplay_fixture(DISPLAYS)


@pytest.fixture
def display_env(xdisplay, monkeypatch):
    monkeypatch.setenv("DISPLAY", xdisplay)
    return xdisplay


def xdo(display: str, *args: str) -> None:
    subprocess.run(["xdotool", *args], check=True, env={**os.environ, "DISPLAY": display},
                   timeout=20)


def read_lines(path: Path) -> list[dict]:
    out = []
    for line in path.read_text().splitlines():
        rec = json.loads(line)
        assert list(rec) == ["timestamp_ns", "event_src", "event_data"]
        assert isinstance(rec["event_data"], str)
        rec["data"] = json.loads(rec["event_data"])
        out.append(rec)
    return out


def run_capture(tmp_path, display, actions, **kw) -> tuple[list[dict], int, int, InputCapture]:
    path = tmp_path / "s.jsonl"
    w = JsonlWriter(path).start()
    cap = InputCapture(w.put, **kw)
    t0 = time.time_ns()
    cap.start()
    try:
        actions()
        time.sleep(0.3)  # let the RECORD stream deliver the last events
    finally:
        cap.stop()
    t1 = time.time_ns()
    counts = w.close()
    assert counts["dropped"] == 0 and counts["error"] is None
    assert cap.errors == 0, cap.error
    recs = read_lines(path)
    assert counts["written"] == len(recs)
    return recs, t0, t1, cap


def control(recs, prefix=""):
    return [r for r in recs if r["event_src"] == ev.SRC_CONTROL and r["data"][0].startswith(prefix)]


def test_keys_with_modifiers_and_typing(tmp_path, display_env):
    def act():
        # explicit down/up: `xdotool key ctrl+shift+a` releases the modifiers before the key
        xdo(display_env, "keydown", "ctrl", "keydown", "shift", "keydown", "a",
            "keyup", "a", "keyup", "shift", "keyup", "ctrl")
        xdo(display_env, "type", "--delay", "30", "hi")
        xdo(display_env, "key", "Return", "F5", "Escape")

    recs, t0, t1, _ = run_capture(tmp_path, display_env, act, mouse=False)
    keys = control(recs, "keyboard.")
    assert keys == control(recs), "mouse=False must not log mouse events"
    seq = [(r["data"][0].split(".")[1], r["data"][1]) for r in keys]
    VK_LCTRL, VK_LSHIFT, VK_A, VK_H, VK_I, VK_RETURN, VK_F5, VK_ESC = 162, 160, 65, 72, 73, 13, 116, 27
    assert seq == [
        ("press", VK_LCTRL), ("press", VK_LSHIFT), ("press", VK_A),
        ("release", VK_A), ("release", VK_LSHIFT), ("release", VK_LCTRL),
        ("press", VK_H), ("release", VK_H), ("press", VK_I), ("release", VK_I),
        ("press", VK_RETURN), ("release", VK_RETURN), ("press", VK_F5), ("release", VK_F5),
        ("press", VK_ESC), ("release", VK_ESC),
    ]
    names = [r["data"][2] for r in keys]
    assert names[0] == names[5] == "ctrl" and names[1] == names[4] == "shift"
    assert names[2] == names[3] == "A"  # pynput names the character typed (shift held)
    assert names[6] == "h" and names[8] == "i" and names[10] == "enter" and names[12] == "f5"
    for r in keys:
        assert len(r["data"]) == 3
    ts = [r["timestamp_ns"] for r in recs]
    assert ts == sorted(ts)
    assert t0 <= ts[0] and ts[-1] <= t1


def test_mouse_move_click_scroll(tmp_path, display_env):
    def act():
        xdo(display_env, "mousemove", "100", "200")
        xdo(display_env, "mousemove", "640", "360")
        xdo(display_env, "click", "1")
        xdo(display_env, "click", "3")
        xdo(display_env, "click", "2")
        xdo(display_env, "mousedown", "1")
        xdo(display_env, "mousemove", "700", "400")
        xdo(display_env, "mouseup", "1")
        xdo(display_env, "click", "4")  # wheel up
        xdo(display_env, "click", "5")  # wheel down
        xdo(display_env, "click", "6")  # wheel left
        xdo(display_env, "click", "7")  # wheel right

    recs, t0, t1, cap = run_capture(tmp_path, display_env, act, keyboard=False)
    assert control(recs) == control(recs, "mouse.")
    moves = [r["data"] for r in control(recs, "mouse.move")]
    assert [ev.MOUSE_MOVE, 100, 200] in moves and [ev.MOUSE_MOVE, 640, 360] in moves
    assert moves[-1] == [ev.MOUSE_MOVE, 700, 400]
    clicks = [r["data"] for r in control(recs, "mouse.click")]
    assert clicks == [
        [ev.MOUSE_CLICK, 640, 360, "left", True], [ev.MOUSE_CLICK, 640, 360, "left", False],
        [ev.MOUSE_CLICK, 640, 360, "right", True], [ev.MOUSE_CLICK, 640, 360, "right", False],
        [ev.MOUSE_CLICK, 640, 360, "middle", True], [ev.MOUSE_CLICK, 640, 360, "middle", False],
        [ev.MOUSE_CLICK, 640, 360, "left", True], [ev.MOUSE_CLICK, 700, 400, "left", False],
    ]
    scrolls = [r["data"] for r in control(recs, "mouse.scroll")]
    assert scrolls == [[ev.MOUSE_SCROLL, 700, 400, 0, 1], [ev.MOUSE_SCROLL, 700, 400, 0, -1],
                       [ev.MOUSE_SCROLL, 700, 400, -1, 0], [ev.MOUSE_SCROLL, 700, 400, 1, 0]]
    ts = [r["timestamp_ns"] for r in recs]
    assert ts == sorted(ts) and t0 <= ts[0] and ts[-1] <= t1
    assert cap.seen == cap.passed == len(recs)
    # the exact seed 002 line shape, byte for byte
    line = (tmp_path / "s.jsonl").read_text().splitlines()[0]
    d = recs[0]
    assert line == ('{"timestamp_ns":%d,"event_src":"control_publisher","event_data":"%s"}'
                    % (d["timestamp_ns"], json.dumps(d["data"], separators=(",", ":")).replace('"', '\\"')))


def test_no_consent_logs_nothing(tmp_path, display_env):
    def act():
        xdo(display_env, "mousemove", "10", "10")
        xdo(display_env, "key", "a")

    recs, _, _, cap = run_capture(tmp_path, display_env, act,
                                  privacy=PrivacyFilter(consent=False))
    assert recs == []
    assert cap.seen >= 3 and cap.filtered == cap.seen  # events arrived and were held back


def test_privacy_flags_no_keyboard(tmp_path, display_env):
    def act():
        xdo(display_env, "mousemove", "20", "30")
        xdo(display_env, "key", "b")

    recs, _, _, _ = run_capture(tmp_path, display_env, act,
                                privacy=PrivacyFilter(consent=True, keyboard=False))
    assert control(recs, "keyboard.") == []
    assert [ev.MOUSE_MOVE, 20, 30] in [r["data"] for r in control(recs, "mouse.move")]


def test_start_without_display_is_a_clear_error(monkeypatch):
    monkeypatch.delenv("DISPLAY", raising=False)
    with pytest.raises(EnvProblem, match="DISPLAY"):
        InputCapture(lambda *a: None).start()


def test_unreachable_display_is_a_clear_error(monkeypatch, display_env):
    monkeypatch.setenv("DISPLAY", ":69")  # nothing listens there
    with pytest.raises(EnvProblem) as e:
        InputCapture(lambda *a: None).start()
    # pynput already imported (earlier tests): the clock probe fails to connect; fresh
    # process: pynput's import probe fails. Both give one line naming the display.
    assert str(e.value) == ("cannot connect to X display ':69' for keyboard/mouse capture: "
                            "Connection refused")


def test_stop_means_no_more_events(tmp_path, display_env):
    got = []
    cap = InputCapture(lambda *a: got.append(a), keyboard=False)
    cap.start()
    xdo(display_env, "mousemove", "5", "6")
    time.sleep(0.2)
    cap.stop()
    n = len(got)
    assert n >= 1 and not cap.running()
    xdo(display_env, "mousemove", "50", "60")
    time.sleep(0.2)
    assert len(got) == n


# ------------------------------------------------- X server event time stamps
from companion.capture.inputs import MAX_EVENT_AGE_MS, x11_event_epoch_ns  # noqa: E402


def test_x11_event_time_conversion_pure():
    mono, epoch = 5_000_123_456_789, 1_795_000_000_000_000_000
    # event 40 ms before "now": middle of its millisecond, on the epoch scale
    x_ms = mono // 1_000_000 - 40
    assert x_ms == 5_000_083
    assert x11_event_epoch_ns(x_ms, epoch, mono) == epoch - (mono - (x_ms * 1_000_000 + 500_000))
    # CARD32 wrap-around: server ms modulo 2**32
    assert x11_event_epoch_ns(x_ms % (1 << 32), epoch, mono) == x11_event_epoch_ns(x_ms, epoch, mono)
    # server a hair ahead -> "now"; never later than the callback's epoch time
    assert x11_event_epoch_ns(mono // 1_000_000 + 1, epoch, mono) <= epoch
    # implausibly old -> None (caller falls back to the callback time)
    assert x11_event_epoch_ns(mono // 1_000_000 - MAX_EVENT_AGE_MS - 1, epoch, mono) is None


def test_x_stamps_of_one_device_never_go_back(monkeypatch):
    """A click's press and release in one X millisecond get the same instant, in order.
    Simulated clocks (the real X server shows the swap only now and then, in
    test_mouse_move_click_scroll): the release's callback is preempted for 3 ms between
    its wall-clock read and the stamping, as a thread switch does; the offset between
    the clocks must not come from reads that far apart."""
    import types

    from companion.capture import inputs
    true = [5_000_000_600_000]                       # ns; 0.6 ms into a millisecond
    mono0, epoch0 = 7_000_000_000, 1_795_000_000_000_000_000
    monkeypatch.setattr(inputs.time, "monotonic_ns", lambda: true[0] + mono0)
    monkeypatch.setattr(inputs.time, "time_ns", lambda: true[0] + epoch0)
    cap = inputs.InputCapture(lambda *a: None)
    lst = types.SimpleNamespace(_nm_xtime=(true[0] + mono0) // 1_000_000)
    stamps = []
    for preempted in (0, 3_000_000):                 # press, then release
        t = inputs.time.time_ns()                    # the callback's own read
        true[0] += 20_000 + preempted
        stamps.append(cap._xstamp(lst, t))
    mid = (lst._nm_xtime * 1_000_000 + 500_000) - mono0 + epoch0
    assert stamps == [mid, mid]
    lst._nm_xtime += 2                               # a later event: a later stamp
    true[0] += 2_000_000
    assert cap._xstamp(lst, inputs.time.time_ns()) == mid + 2_000_000
    lst._nm_xtime -= 1                               # out of order from the server: held
    assert cap._xstamp(lst, inputs.time.time_ns()) == mid + 2_000_000
    assert cap.clock_fallbacks == 0


def test_timestamps_are_event_times_even_when_delivery_is_late(tmp_path, display_env):
    """No other X traffic and no flusher: the server keeps the events in its RECORD
    buffer; they arrive only at stop(). Their timestamps must still be when they happened."""
    from Xlib import X, display
    from Xlib.ext import xtest

    got = []
    cap = InputCapture(lambda *a: got.append(a), keyboard=False, flush_interval_s=0)
    cap.start()
    assert cap.clock == "x11-server"
    d = display.Display(display_env)
    sent = []
    for i in range(5):
        sent.append(time.time_ns())
        xtest.fake_input(d, X.MotionNotify, x=300 + i, y=300)
        d.flush()  # no reply requested: nothing makes the server flush
        time.sleep(0.1)
    delivered_before_stop = len(got)
    cap.stop()
    d.close()
    moves = [(t, data) for t, _, data in got]
    assert [data for _, data in moves] == [[ev.MOUSE_MOVE, 300 + i, 300] for i in range(5)]
    err_ms = [(t - s) / 1e6 for (t, _), s in zip(moves, sent)]
    # the X server dates input when it processes it: on a busy machine that can lag the
    # injection by some ms; the delivery (asserted below) lags by > 100 ms
    assert all(-1.0 <= e <= 40.0 for e in err_ms), err_ms
    assert delivered_before_stop < 5 and cap.max_delivery_ns > 50e6  # it really was late
    assert cap.clock_fallbacks == 0


def test_flusher_bounds_delivery_delay(display_env):
    from Xlib import X, display
    from Xlib.ext import xtest

    got = []
    cap = InputCapture(lambda *a: got.append(a), keyboard=False, flush_interval_s=0.02)
    cap.start()
    d = display.Display(display_env)
    for i in range(20):
        xtest.fake_input(d, X.MotionNotify, x=400 + i, y=300)
        d.flush()
        time.sleep(0.03)
    time.sleep(0.1)
    n = len(got)
    cap.stop()
    d.close()
    assert n == 20 and cap.max_delivery_ns < 500e6  # without the flusher: n < 20 until stop()


def test_x_server_dying_mid_session_is_reported_without_traceback(display_env):
    free = [n for n in DISPLAYS if not os.path.exists(f"/tmp/.X{n}-lock")]
    if not free:
        pytest.skip("no free display number in :70-:73")
    code = f"""
import os, subprocess, sys, time
from Xlib import display
xv = subprocess.Popen(["Xvfb", ":{free[0]}", "-nolisten", "tcp", "-noreset"],
                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
for _ in range(200):
    try:
        display.Display(":{free[0]}").close(); break
    except Exception:
        time.sleep(0.05)
os.environ["DISPLAY"] = ":{free[0]}"
from companion.capture.inputs import InputCapture
cap = InputCapture(lambda *a: None)
cap.start()
assert cap.running()
xv.terminate(); xv.wait()  # SIGTERM: Xvfb removes its lock file
time.sleep(1.0)
alive = cap.running()
cap.stop()
print(alive, cap.stats()["error"])
"""
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    alive, _, err = r.stdout.strip().partition(" ")
    assert alive == "False" and err.startswith("input listener ended: ")
    assert "Traceback" not in r.stderr, r.stderr


def test_fast_motion_path_gives_pynputs_callbacks(display_env):
    """The mouse listener reads pointer motion straight from the RECORD reply's bytes;
    the same reply through pynput's own parser must give the same callbacks (position,
    injected flag, X time), also for the button and wheel events mixed in and for an
    event type the fast path does not know. Real X connection (python-xlib's parser
    needs one), RECORD replies built from the X protocol layout."""
    import struct
    from Xlib import display as xdisplay
    from pynput import mouse as pm
    from companion.capture.inputs import _RecordData, _timed_listener

    def ev32(code, detail, t, x, y, sent=False):
        # root position (what is logged) differs from the window-relative one
        return struct.pack("=BBHIIIIhhhhHBx", code | (0x80 if sent else 0), detail, 7, t,
                           0x1E5, 0x2A1, 0, x, y, x - 7, y - 9, 0x10, 1)

    reply = b"".join([ev32(6, 0, 1000, 10, 20), ev32(6, 0, 1001, -3, 4000),
                      ev32(4, 1, 1002, 11, 21), ev32(5, 1, 1003, 11, 21),
                      ev32(4, 4, 1004, 12, 22), ev32(5, 4, 1005, 12, 22),
                      ev32(6, 0, 1006, 13, 23, sent=True), ev32(6, 0, 1007, 14, 24)])
    conn = xdisplay.Display(display_env)
    try:
        got = {}
        for fast in (True, False):
            calls = []
            cls = _timed_listener(pm.Listener, fast_motion=fast)
            lst = cls(on_move=lambda x, y, inj=False: calls.append(("move", x, y, inj, lst._nm_xtime)),
                      on_click=lambda x, y, b, p, inj=False: calls.append(("click", x, y, b.name, p, inj, lst._nm_xtime)),
                      on_scroll=lambda x, y, dx, dy, inj=False: calls.append(("scroll", x, y, dx, dy, inj, lst._nm_xtime)))
            lst._running = True
            lst._display_record = lst._display_stop = conn
            lst._handler(_RecordData(reply))
            # an unknown event first: everything goes to pynput's parser
            lst._handler(_RecordData(ev32(2, 38, 1010, 0, 0) + ev32(6, 0, 1011, 5, 6)))
            got[fast] = calls
        assert got[True] == got[False]
        assert got[True][0] == ("move", 10, 20, False, 1000)
        assert got[True][1] == ("move", -3, 4000, False, 1001)
        assert ("click", 11, 21, "left", True, False, 1002) in got[True]
        assert ("scroll", 12, 22, 0, 1, False, 1004) in got[True]
        assert ("move", 13, 23, True, 1006) in got[True]
        assert got[True][-1] == ("move", 5, 6, False, 1011)
    finally:
        conn.close()
