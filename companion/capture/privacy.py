"""Consent and window allow/deny rules for input logging (issue 2 item 6).

Pure logic: no I/O, no X queries. The input callbacks call :meth:`PrivacyFilter.allows`
with the window tracker's *cached* current window; the window tracker calls
:meth:`PrivacyFilter.window_allowed` / :meth:`PrivacyFilter.window_event` to redact titles.

Pattern syntax (``only_window`` / ``deny_window``), always case-insensitive, matched
against the window title AND the application name (a window matches if either does):

- ``re:<regex>``   Python regular expression, ``re.search`` (matches anywhere unless
  anchored with ``^``/``$``).
- a pattern containing ``*``, ``?`` or ``[``: shell glob (``fnmatch``) that must match
  the *whole* title/app, e.g. ``"Minecraft*"`` or ``"*- Mozilla Firefox"``.
- anything else: plain substring, e.g. ``"minecraft"`` matches ``"Minecraft 1.20.1"``.

Rules, in order:

1. no consent -> nothing is allowed (and :func:`require_consent` refuses to start);
2. ``keyboard=False`` / ``mouse=False`` -> that device is never logged;
3. a window matching any ``deny_window`` pattern is not allowed;
4. if ``only_window`` is non-empty, only a window matching one of its patterns is
   allowed; an unknown window (``None``) is then not allowed (fail closed);
5. otherwise allowed.

While the active window is not allowed, no keyboard or mouse event is logged, except the
release of a key/button whose press *was* logged (so a held key never looks stuck, e.g.
Alt pressed in the game and released after Alt-Tab); such a release reveals nothing new.
Window events of a not-allowed window keep their rect/id/pid but have ``title`` and
``app`` replaced by ``"<redacted>"``; ``redact_titles=True`` redacts every title.
"""
from __future__ import annotations

import fnmatch
import re
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Iterable, Sequence

from companion.contract import events as ev
from companion.util.errors import BadInput, NMError

if TYPE_CHECKING:  # pragma: no cover - typing only
    from companion.capture.window import WindowInfo

REDACTED = "<redacted>"

CONSENT_HELP = ("no consent recorded: input logging needs the consent of everyone whose "
                "keyboard/mouse/window activity is recorded; pass --consent (or set "
                "consent = true in the config file) to confirm it")


@dataclass(frozen=True)
class WindowPattern:
    """One compiled allow/deny pattern. ``text`` is what the user wrote."""

    text: str
    kind: str  # "regex" | "glob" | "substring"
    _rx: "re.Pattern[str]"

    def matches(self, s: str | None) -> bool:
        """True if ``s`` (a title or app name; None never matches) matches."""
        if not s:
            return False
        return self._rx.search(s) is not None


def compile_pattern(text: str, what: str = "window pattern") -> WindowPattern:
    """Compile one user pattern (see module docstring). Raises BadInput if invalid;
    ``what`` names the option in the message (e.g. "--only-window")."""
    if not isinstance(text, str) or not text.strip():
        raise BadInput(f"{what} must be a non-empty string, got {text!r}")
    if text.startswith("re:"):
        body = text[3:]
        try:
            rx = re.compile(body, re.IGNORECASE)
        except re.error as e:
            raise BadInput(f"invalid regular expression in {what} {text!r}: {e}") from None
        return WindowPattern(text, "regex", rx)
    if any(c in text for c in "*?["):
        # fnmatch.translate anchors only the end (\Z); \A makes search() a whole match
        return WindowPattern(text, "glob", re.compile(r"\A" + fnmatch.translate(text), re.IGNORECASE))
    return WindowPattern(text, "substring", re.compile(re.escape(text), re.IGNORECASE))


def _compile_all(patterns: Iterable[str] | None, what: str) -> tuple[WindowPattern, ...]:
    if patterns is None:
        return ()
    if isinstance(patterns, str):  # a lone string would otherwise be split into chars
        patterns = [patterns]
    return tuple(compile_pattern(p, what) for p in patterns)


class PrivacyFilter:
    """Decides which input/window events may be logged.

    Thread-safe: the keyboard and mouse listener threads call :meth:`allows`
    concurrently; the per-window verdict is cached by (window_id, title, app).
    """

    def __init__(self, consent: bool, only_window: Sequence[str] = (),
                 deny_window: Sequence[str] = (), keyboard: bool = True,
                 mouse: bool = True, redact_titles: bool = False):
        self.consent = bool(consent)
        self.only_window = _compile_all(only_window, "--only-window pattern")
        self.deny_window = _compile_all(deny_window, "--deny-window pattern")
        self.keyboard = bool(keyboard)
        self.mouse = bool(mouse)
        self.redact_titles = bool(redact_titles)
        self._cache: tuple = (object(), False)  # (window key, verdict), swapped atomically
        self._held_keys: set = set()      # vk (or name if no vk) of logged key presses
        self._held_buttons: set = set()   # mouse buttons whose press was logged
        self._lock = threading.Lock()

    @property
    def uses_window(self) -> bool:
        """False if no window pattern is set: decisions then never depend on the window
        (callers may pass None and skip looking it up)."""
        return bool(self.only_window or self.deny_window)

    # -- consent ---------------------------------------------------------------
    def require_consent(self) -> None:
        """Raise NMError (exit code 2) unless consent was given."""
        if not self.consent:
            raise NMError(CONSENT_HELP, exit_code=2)

    # -- windows ---------------------------------------------------------------
    def window_allowed(self, window: "WindowInfo | None") -> bool:
        """True if input may be logged while ``window`` is the active window."""
        if not self.consent:
            return False
        if window is None:
            return not self.only_window
        key = (window.window_id, window.title, window.app)
        cached = self._cache  # one read: key and verdict always belong together
        if cached[0] == key:
            return cached[1]
        title, app = window.title, window.app
        ok = True
        for p in self.deny_window:
            if p.matches(title) or p.matches(app):
                ok = False
                break
        if ok and self.only_window:
            ok = any(p.matches(title) or p.matches(app) for p in self.only_window)
        self._cache = (key, ok)
        return ok

    def window_event(self, window: "WindowInfo") -> dict:
        """The ``window_publisher`` event_data for ``window``, redacted per the rules."""
        data = window.to_event()
        if self.redact_titles or not self.window_allowed(window):
            data["title"] = REDACTED
            if not self.window_allowed(window):
                data["app"] = REDACTED
        return data

    # -- input events ----------------------------------------------------------
    def allows(self, event_src: str, event_data, window: "WindowInfo | None") -> bool:
        """True if this event may be logged.

        ``event_src``/``event_data`` as in companion/contract/events.py; ``window`` is
        the cached active window at the time of the event (None if unknown).
        Control events update the held-key/button bookkeeping, so call this exactly
        once per event.
        """
        if not self.consent:
            return False
        if event_src != ev.SRC_CONTROL:
            if event_src == ev.SRC_WINDOW:
                return True  # window events are redacted (window_event), not dropped
            return True      # recorder markers carry no user input
        action = event_data[0]
        if action == ev.KEY_PRESS or action == ev.KEY_RELEASE:
            if not self.keyboard:
                return False
            # a key is its vk (press "A" with Shift, release "a" without: same key)
            k = event_data[1] if event_data[1] is not None else event_data[2]
            if action == ev.KEY_PRESS:
                if self.window_allowed(window):
                    with self._lock:
                        self._held_keys.add(k)
                    return True
                return False
            with self._lock:
                was_held = k in self._held_keys
                self._held_keys.discard(k)
            return was_held or self.window_allowed(window)
        if not self.mouse:
            return False
        if action == ev.MOUSE_CLICK:
            b = event_data[3]
            if event_data[4]:
                if self.window_allowed(window):
                    with self._lock:
                        self._held_buttons.add(b)
                    return True
                return False
            with self._lock:
                was_held = b in self._held_buttons
                self._held_buttons.discard(b)
            return was_held or self.window_allowed(window)
        return self.window_allowed(window)

    # -- metadata --------------------------------------------------------------
    def describe(self) -> dict:
        """JSON-able summary for metadata.json ``privacy`` (patterns and flags only)."""
        return {
            "consent": self.consent,
            "keyboard": self.keyboard,
            "mouse": self.mouse,
            "only_window": [p.text for p in self.only_window],
            "deny_window": [p.text for p in self.deny_window],
            "redact_titles": self.redact_titles,
            "pattern_syntax": "case-insensitive; 're:' prefix = regex search, "
                              "glob chars (*?[) = whole-string glob, else substring; "
                              "matched against window title and app name",
            "suppressed_windows": "keyboard and mouse events not logged; title/app "
                                  "redacted in window events",
        }
