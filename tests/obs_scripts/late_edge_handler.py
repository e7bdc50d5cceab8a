"""Test-only OBS script: nm_timestamps' "pause" handler runs one frame interval late
(or its "unpause" handler: setting ``signal``).

It connects a handler to the recording output's "pause" signal that sleeps one frame
interval, twice: when the recording is starting (before nm_timestamps connects its own,
in the first tick with the output active) and in its own first such tick (after it), so
whichever order libobs calls a signal's handlers in, one of them runs before
nm_timestamps'. OBS picks the pause edge before emitting the signal, so nm_timestamps
then reads the clock about a frame late and places the pause edge a frame late: the
case a loaded machine (the handler waiting for the GIL) produces now and then, made
certain. The other signals are left alone.
"""
import time

import obspython as obs

_out = None
_connected = 0
_active = False
_signal = "pause"


def _delay(cd):
    time.sleep(obs.obs_get_frame_interval_ns() / 1e9)


def _connect():
    global _connected
    if _out is not None:
        obs.signal_handler_connect(obs.obs_output_get_signal_handler(_out), _signal, _delay)
        _connected += 1


def _disconnect():
    global _out, _connected
    if _out is not None:
        handler = obs.obs_output_get_signal_handler(_out)
        for _ in range(_connected):
            obs.signal_handler_disconnect(handler, _signal, _delay)
        obs.obs_output_release(_out)
    _out, _connected = None, 0


def _on_event(event):
    global _out, _active
    if event == obs.OBS_FRONTEND_EVENT_RECORDING_STARTING:
        _disconnect()
        _out = obs.obs_frontend_get_recording_output()
        _active = False
        _connect()
    elif event == obs.OBS_FRONTEND_EVENT_RECORDING_STOPPED:
        _disconnect()


def script_tick(seconds):
    global _active
    if _out is not None and not _active and obs.obs_output_active(_out):
        _active = True
        _connect()


def script_load(settings):
    global _signal
    _signal = obs.obs_data_get_string(settings, "signal") or "pause"
    obs.obs_frontend_add_event_callback(_on_event)
    obs.script_log(obs.LOG_INFO, "late_edge_handler loaded")


def script_unload():
    _disconnect()
