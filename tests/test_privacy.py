"""PrivacyFilter rules (pure) and end to end on a real X server (Xvfb :77-:78):
real windows, real xdotool typing, WindowTracker + InputCapture + JsonlWriter.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import time

import pytest

from companion.capture.privacy import REDACTED, PrivacyFilter, compile_pattern
from companion.capture.window import WindowInfo
from companion.contract import events as ev
from companion.util.errors import BadInput, NMError
from tests.obs_harness import xdisplay_fixture


def win(title, app=None, wid=1):
    return WindowInfo(title, (0, 0, 10, 10), wid, 42, app)


def press(vk, name):
    return [ev.KEY_PRESS, vk, name]


def release(vk, name):
    return [ev.KEY_RELEASE, vk, name]


# ---------------------------------------------------------------- pure rules
@pytest.mark.parametrize("pattern,title,ok", [
    ("minecraft", "Minecraft 1.20.1", True),              # substring, any case
    ("minecraft", "Terraria", False),
    ("Minecraft*", "minecraft 1.20", True),               # glob: whole title
    ("Minecraft*", "Playing Minecraft", False),
    ("*- mozilla firefox", "Bank - Mozilla Firefox", True),
    ("re:^steam\\b", "Steam - Library", True),            # regex search
    ("re:^steam\\b", "Steamworks", False),
    ("re:pass(word)?", "KeePassXC", True),
    ("[ab]c", "AC", True),
])
def test_pattern_kinds(pattern, title, ok):
    assert compile_pattern(pattern).matches(title) is ok


def test_bad_patterns_are_bad_input():
    with pytest.raises(BadInput, match=r"^invalid regular expression in --only-window pattern 're:\(': "):
        PrivacyFilter(True, only_window=["re:("])
    with pytest.raises(BadInput, match="^--deny-window pattern must be a non-empty string"):
        PrivacyFilter(True, deny_window=[""])


def test_no_consent_allows_nothing_and_refuses_to_start():
    p = PrivacyFilter(consent=False)
    assert not p.allows(ev.SRC_CONTROL, [ev.MOUSE_MOVE, 1, 2], win("x"))
    assert not p.allows(ev.SRC_CONTROL, press(65, "a"), win("x"))
    assert not p.allows(ev.SRC_WINDOW, {}, win("x"))
    with pytest.raises(NMError, match="--consent") as e:
        p.require_consent()
    assert e.value.exit_code == 2 and "\n" not in str(e.value)
    PrivacyFilter(consent=True).require_consent()  # no error


def test_only_and_deny_match_title_or_app_and_unknown_window_fails_closed():
    p = PrivacyFilter(True, only_window=["minecraft", "re:^java$"], deny_window=["*chat*"])
    assert p.window_allowed(win("Minecraft 1.20"))
    assert p.window_allowed(win("Untitled", app="java"))
    assert not p.window_allowed(win("Minecraft - chat overlay"))     # deny wins
    assert not p.window_allowed(win("Firefox", app="firefox"))
    assert not p.window_allowed(None)
    d = PrivacyFilter(True, deny_window=["keepass"])
    assert d.window_allowed(None) and d.window_allowed(win("Game"))
    assert not d.window_allowed(win("Database", app="KeePassXC"))
    # a lone string is one pattern, not a list of characters
    assert PrivacyFilter(True, only_window="game").describe()["only_window"] == ["game"]


def test_keys_in_denied_window_dropped_but_held_key_release_kept():
    p = PrivacyFilter(True, only_window=["game"])
    game, chat = win("Game", wid=1), win("Chat", wid=2)
    assert p.allows(ev.SRC_CONTROL, press(164, "alt_l"), game)
    assert not p.allows(ev.SRC_CONTROL, press(9, "tab"), chat)        # alt-tab lands in chat
    assert not p.allows(ev.SRC_CONTROL, release(9, "tab"), chat)
    assert p.allows(ev.SRC_CONTROL, release(164, "alt_l"), chat)      # pressed in game
    assert not p.allows(ev.SRC_CONTROL, press(72, "h"), chat)
    assert not p.allows(ev.SRC_CONTROL, release(72, "h"), chat)
    assert not p.allows(ev.SRC_CONTROL, release(164, "alt_l"), chat)  # already released
    assert p.allows(ev.SRC_CONTROL, release(72, "h"), game)           # allowed window: kept
    # a key is its vk: pressed as "A" (Shift held), released as "a"
    assert p.allows(ev.SRC_CONTROL, press(65, "A"), game)
    assert p.allows(ev.SRC_CONTROL, release(65, "a"), chat)
    # mouse: moves/scrolls follow the window, a button release follows its press
    assert p.allows(ev.SRC_CONTROL, [ev.MOUSE_CLICK, 1, 1, "left", True], game)
    assert not p.allows(ev.SRC_CONTROL, [ev.MOUSE_MOVE, 5, 5], chat)
    assert not p.allows(ev.SRC_CONTROL, [ev.MOUSE_SCROLL, 5, 5, 0, 1], chat)
    assert p.allows(ev.SRC_CONTROL, [ev.MOUSE_CLICK, 5, 5, "left", False], chat)
    assert not p.allows(ev.SRC_CONTROL, [ev.MOUSE_CLICK, 5, 5, "right", True], chat)
    assert not p.allows(ev.SRC_CONTROL, [ev.MOUSE_CLICK, 5, 5, "right", False], chat)


def test_device_flags():
    p = PrivacyFilter(True, keyboard=False)
    assert not p.allows(ev.SRC_CONTROL, press(65, "a"), win("g"))
    assert p.allows(ev.SRC_CONTROL, [ev.MOUSE_MOVE, 1, 1], win("g"))
    p = PrivacyFilter(True, mouse=False)
    assert p.allows(ev.SRC_CONTROL, press(65, "a"), win("g"))
    assert not p.allows(ev.SRC_CONTROL, [ev.MOUSE_CLICK, 1, 1, "left", True], win("g"))
    assert p.allows(ev.SRC_RECORDER, {"event": ev.REC_CLOCK}, None)


def test_window_event_redaction():
    p = PrivacyFilter(True, deny_window=["bank"])
    assert p.window_event(win("Game", app="game"))["title"] == "Game"
    red = p.window_event(WindowInfo("My Bank", (1, 2, 3, 4), 7, 9, "firefox"))
    assert red == {"title": REDACTED, "rect": [1, 2, 3, 4], "hWnd": 7, "pid": 9, "app": REDACTED}
    p = PrivacyFilter(True, redact_titles=True)
    assert p.window_event(win("Game", app="game")) == {
        "title": REDACTED, "rect": [0, 0, 10, 10], "hWnd": 1, "pid": 42, "app": "game"}


def test_cache_follows_title_changes():
    p = PrivacyFilter(True, deny_window=["private"])
    assert p.window_allowed(win("Browser", wid=5))
    assert not p.window_allowed(win("Browser - Private Browsing", wid=5))
    assert p.window_allowed(win("Browser", wid=5))


def test_describe_is_json_and_complete():
    p = PrivacyFilter(True, only_window=["game"], deny_window=["re:bank"], mouse=False,
                      redact_titles=True)
    d = json.loads(json.dumps(p.describe()))
    assert d["consent"] is True and d["keyboard"] is True and d["mouse"] is False
    assert d["only_window"] == ["game"] and d["deny_window"] == ["re:bank"]
    assert d["redact_titles"] is True and "regex" in d["pattern_syntax"]


# ------------------------------------------------------ end to end on Xvfb
needs_x = pytest.mark.skipif(not (shutil.which("Xvfb") and shutil.which("xdotool")),
                             reason="needs Xvfb and xdotool")




xdisplay = xdisplay_fixture(range(77, 79))


@needs_x
@pytest.mark.x11
def test_end_to_end_keys_outside_allowed_window_are_not_logged(tmp_path, xdisplay, monkeypatch):
    from Xlib import Xatom, display

    from companion.capture.inputs import InputCapture
    from companion.capture.window import WindowTracker
    from companion.capture.writer import JsonlWriter

    monkeypatch.setenv("DISPLAY", xdisplay)
    d = display.Display(xdisplay)
    root = d.screen().root
    active = d.intern_atom("_NET_ACTIVE_WINDOW")

    def make(title):
        w = root.create_window(0, 0, 400, 300, 0, d.screen().root_depth, override_redirect=True)
        w.set_wm_name(title)
        w.map()
        d.sync()
        return w

    def activate(w):  # what an EWMH window manager does on focus change (no WM here)
        root.change_property(active, Xatom.WINDOW, 32, [w.id])
        d.sync()
        time.sleep(0.15)  # > tracker interval: the tracker has seen the change

    def xdo(*args):
        subprocess.run(["xdotool", *args], check=True, env={**os.environ, "DISPLAY": xdisplay})

    game, bank = make("SuperGame"), make("Online Banking")
    activate(game)
    path = tmp_path / "s.jsonl"
    writer = JsonlWriter(path).start()
    pf = PrivacyFilter(consent=True, only_window=["supergame"])
    tracker = WindowTracker(writer.put, interval_s=0.02, heartbeat_s=10, privacy=pf)
    tracker.start()
    cap = InputCapture(writer.put, privacy=pf, window=tracker.current)
    cap.start()
    try:
        xdo("type", "--delay", "20", "go")
        xdo("keydown", "alt")
        activate(bank)                         # Alt-Tab into the bank window
        xdo("keyup", "alt")
        xdo("type", "--delay", "20", "secret")
        xdo("mousemove", "33", "44")
        activate(game)
        xdo("type", "--delay", "20", "w")
        time.sleep(0.2)
    finally:
        cap.stop()
        tracker.stop()
        writer.close()
    recs = [json.loads(x) for x in path.read_text().splitlines()]
    seq = []
    for r in recs:
        data = json.loads(r["event_data"])
        if r["event_src"] == ev.SRC_CONTROL:
            seq.append(tuple(data[:3]))
        elif r["event_src"] == ev.SRC_WINDOW:
            seq.append(("window", data["title"]))
        else:
            seq.append(("recorder", data["event"]))
    VK_G, VK_O, VK_W, VK_LALT = 71, 79, 87, 164
    assert seq == [
        ("window", "SuperGame"),
        (ev.KEY_PRESS, VK_G, "g"), (ev.KEY_RELEASE, VK_G, "g"),
        (ev.KEY_PRESS, VK_O, "o"), (ev.KEY_RELEASE, VK_O, "o"),
        (ev.KEY_PRESS, VK_LALT, "alt"),
        ("recorder", ev.REC_INPUT_SUPPRESSED), ("window", REDACTED),
        (ev.KEY_RELEASE, VK_LALT, "alt"),     # its press was logged: not left stuck
        ("recorder", ev.REC_INPUT_RESUMED), ("window", "SuperGame"),
        (ev.KEY_PRESS, VK_W, "w"), (ev.KEY_RELEASE, VK_W, "w"),
    ]
    text = path.read_text()
    assert "Banking" not in text and '"mouse.move\\",33' not in text
    assert cap.filtered == 2 * len("secret") + 1


@needs_x
@pytest.mark.x11
def test_late_delivered_keys_judged_by_window_at_their_time(xdisplay, monkeypatch):
    """X11 hands input over late (RECORD buffering). Here nothing makes the server
    flush (no flusher, XTest without round trips, and the tracker reads a scripted
    window sequence instead of X so it sends no requests), so all keys arrive together
    at stop(), when the bank is active. Each key must still be judged by the window
    active when it was typed: only the one typed in the game is logged."""
    from Xlib import X, display
    from Xlib.ext import xtest

    from companion.capture.inputs import InputCapture
    from companion.capture.window import WindowTracker

    monkeypatch.setenv("DISPLAY", xdisplay)
    d = display.Display(xdisplay)
    keycode = {c: d.keysym_to_keycode(ord(c)) for c in "bgx"}

    def tap(c):
        xtest.fake_input(d, X.KeyPress, keycode[c])
        xtest.fake_input(d, X.KeyRelease, keycode[c])
        d.flush()

    game = WindowInfo("SuperGame", (0, 0, 10, 10), 1, None, "supergame")
    bank = WindowInfo("Online Banking", (0, 0, 10, 10), 2, None, "firefox")
    active = [bank]
    pf = PrivacyFilter(consent=True, only_window=["supergame"])
    tracker = WindowTracker(lambda *a: None, interval_s=0.005, heartbeat_s=10, privacy=pf,
                            source=lambda: active[0])
    tracker.start()
    got = []
    cap = InputCapture(lambda t, s, data: got.append(data), mouse=False, privacy=pf,
                       window=tracker.current, flush_interval_s=0)  # -> tracker.window_at
    cap.start()
    try:
        tap("b")              # typed in the bank
        time.sleep(0.05)
        active[0] = game
        time.sleep(0.05)
        tap("g")              # typed in the game
        time.sleep(0.05)
        active[0] = bank
        time.sleep(0.05)
        tap("x")              # typed in the bank again
        time.sleep(0.05)
        delivered_before_stop = len(got) + cap.filtered
    finally:
        cap.stop()
        tracker.stop()
    assert delivered_before_stop == 0 and cap.max_delivery_ns > 100e6  # really late
    assert [(g[0], g[2]) for g in got] == [(ev.KEY_PRESS, "g"), (ev.KEY_RELEASE, "g")]
    assert cap.filtered == 4


def test_window_current_of_a_tracker_selects_its_window_at():
    from companion.capture.inputs import InputCapture
    from companion.capture.window import WindowTracker

    tracker = WindowTracker(lambda *a: None, source=lambda: None)
    cap = InputCapture(lambda *a: None, window=tracker.current)
    assert cap._window_at == tracker.window_at
    assert InputCapture(lambda *a: None, window=lambda: None)._window_at is None
