"""The companion's event log: ``<session_id>.jsonl`` in the open-world-agents shape.

Every line is ``{"timestamp_ns": int, "event_src": str, "event_data": str}`` where
``event_data`` is itself a JSON document serialized to a string (seed 002).
``timestamp_ns`` is wall-clock epoch ns taken in the input callback.
Spec: docs/contracts/events-jsonl.md.
"""
from __future__ import annotations

# event_src values
SRC_CONTROL = "control_publisher"   # keyboard + mouse (open-world-agents name)
SRC_WINDOW = "window_publisher"     # active window changes (open-world-agents name)
SRC_RECORDER = "recorder"           # our markers: session/recording start/stop/pause/clock

# control_publisher event_data arrays (first element is the action)
KEY_PRESS = "keyboard.press"        # ["keyboard.press", vk, name]
KEY_RELEASE = "keyboard.release"    # ["keyboard.release", vk, name]
MOUSE_MOVE = "mouse.move"           # ["mouse.move", x, y]
MOUSE_CLICK = "mouse.click"         # ["mouse.click", x, y, button, pressed]
MOUSE_SCROLL = "mouse.scroll"       # ["mouse.scroll", x, y, dx, dy]

# window_publisher event_data object keys: title, rect [left, top, right, bottom], hWnd
# (the platform window id: X11 window id, Win32 HWND, macOS kCGWindowNumber), pid, app

# recorder event_data objects: {"event": <one of below>, ...}
REC_SESSION_START = "session.start"         # session_id, consent, filters, epoch_ns, mono_ns
REC_RECORDING_STARTED = "recording.started"  # output_path (OBS RecordStateChanged STARTED)
REC_RECORDING_PAUSED = "recording.paused"
REC_RECORDING_RESUMED = "recording.resumed"
REC_RECORDING_STOPPED = "recording.stopped"  # output_path
REC_INPUT_SUPPRESSED = "input.suppressed"    # reason: window filter; keys not logged from here
REC_INPUT_RESUMED = "input.resumed"
REC_CLOCK = "clock"                          # epoch_ns, mono_ns paired reading
REC_SESSION_END = "session.end"              # reason, counts (events written, dropped)

MOUSE_BUTTONS = ("left", "right", "middle", "x1", "x2")
# DOM MouseEvent.button numbering used by seed 000 (0 main, 1 auxiliary, 2 secondary)
DOM_BUTTON_INDEX = {"left": 0, "middle": 1, "right": 2, "x1": 3, "x2": 4}
