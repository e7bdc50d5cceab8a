"""Test-only OBS script: stalls OBS's graphics thread during the first recording only.

While the first recording of this OBS instance is active, every 20th script_tick
sleeps 0.25 s in the graphics thread, so OBS misses frames ("lagged frames due to
rendering lag/stalls") in that recording and not in later ones. Used to prove that the
nm_timestamps stop record counts each recording's own lagged frames.
"""
import time

import obspython as obs

_n = 0          # recordings started so far
_active = False
_ticks = 0


def _on_event(event):
    global _n, _active
    if event == obs.OBS_FRONTEND_EVENT_RECORDING_STARTED:
        _n += 1
        _active = True
    elif event == obs.OBS_FRONTEND_EVENT_RECORDING_STOPPING:
        _active = False


def script_tick(seconds):
    global _ticks
    if _active and _n == 1:
        _ticks += 1
        if _ticks % 20 == 0:
            time.sleep(0.25)


def script_load(settings):
    obs.obs_frontend_add_event_callback(_on_event)
    obs.script_log(obs.LOG_INFO, "stall_first_recording loaded")
