"""``nm-companion start --watch``: the streamer workflow.

Stays connected to OBS and logs one session per recording the user starts and stops
in OBS (button, hotkey, another tool). Each session is ``<out>/<session_id>/`` with the
session id taken from the time the recording started (``session_YYYYMMDD_HHMMSS``,
``_2``, ``_3`` ... if taken). The recording is written wherever OBS is configured to
write it and moved into the session folder (with the OBS script's sidecar) when it
stops; the companion never changes OBS's settings in watch mode.

When OBS quits or crashes, an open session is finalized as "incomplete" and the
companion waits for OBS to come back (retrying with backoff up to ``max_backoff_s``,
saying so once), then carries on. When the event log of a session cannot be written
(disk full, file size limit, I/O error), that session is finalized as "incomplete" at once, the
user's recording is left running (the companion never stops a recording it did not
start) and watching carries on with the next recording the user starts (the streamer
may free space meanwhile; one failure should not end an evening of recordings).
Ends on Ctrl-C / SIGTERM / ``nm-companion stop``; :func:`watch_exit_code` gives the
exit code: 0 if every session is complete, else the first incomplete one's (3 or 4).
"""
from __future__ import annotations

import dataclasses
import signal
import threading
from pathlib import Path

from companion.capture.obsws import REC_STARTED, ObsClient, RecordEvent, connect
from companion.capture.session import (SessionOptions, SessionResult, StateFile, _run_connected,
                                       _stderr, default_session_id, prepare_session_dir,
                                       restore_leftover_obs_settings)
from companion.util.errors import BadInput, NMError, OBSProblem


def _free_session_id(out: Path, base: str) -> str:
    sid, n = base, 1
    while (out / sid).exists() and any((out / sid).iterdir()):
        n += 1
        sid = f"{base}_{n}"
    return sid


def run_watch(opts: SessionOptions, say=_stderr, stop: threading.Event | None = None,
              install_signals: bool = True, retry_initial_s: float = 0.5,
              max_backoff_s: float = 10.0, on_session=None) -> list[SessionResult]:
    """Watch OBS until stopped; return the sessions recorded (in order).

    ``on_session(result)`` is called after each session is finalized. Raises NMError
    only for problems that retrying cannot fix (no consent, wrong password, OBS too
    old, unwritable output folder)."""
    from companion.capture.privacy import PrivacyFilter
    if opts.session_id:
        raise BadInput("--session-id cannot be used with --watch (each recording gets its own id)")
    privacy = PrivacyFilter(consent=opts.consent, only_window=opts.only_window,
                            deny_window=opts.deny_window, keyboard=opts.keyboard,
                            mouse=opts.mouse, redact_titles=opts.redact_titles)
    privacy.require_consent()
    out = Path(opts.out).expanduser().resolve()
    # fail early on an unwritable output folder
    probe_id = f".nm-watch-probe-{id(out)}"
    d = prepare_session_dir(out, probe_id)
    d.rmdir()

    stop = stop or threading.Event()
    old = {}
    if install_signals and threading.current_thread() is threading.main_thread():
        def handler(signum, frame):
            if stop.is_set():
                say("still finishing, please wait")
            stop.set()
        for s in (signal.SIGINT, signal.SIGTERM):
            old[s] = signal.signal(s, handler)

    state = StateFile()
    results: list[SessionResult] = []
    waiting_said = False
    backoff = retry_initial_s
    try:
        while not stop.is_set():
            if state.stop_requested():
                break
            try:
                client = connect(opts.host, opts.port, opts.password, opts.timeout_s)
            except OBSProblem as e:
                text = str(e)
                if "password" in text or "too old" in text or "not obs-websocket" in text:
                    raise
                if not waiting_said:
                    say(f"waiting for OBS at {opts.host}:{opts.port} ({text})")
                    waiting_said = True
                    state.update(phase="waiting for OBS", session_id=None, events_written=None,
                                 obs={"host": opts.host, "port": opts.port})
                stop.wait(backoff)
                if state.stop_requested():
                    break
                backoff = min(max_backoff_s, backoff * 2)
                continue
            backoff = retry_initial_s
            waiting_said = False
            say(f"connected to OBS {client.version.obs_version} at {opts.host}:{opts.port}; "
                f"watching for recordings (Ctrl-C to quit)")
            restore_leftover_obs_settings(client, say)
            try:
                _watch_connected(opts, client, privacy, out, say, stop, state, results, on_session)
            finally:
                client.close()
            if not stop.is_set():
                say("lost OBS; will reconnect when it is back")
    finally:
        state.remove()
        for s, h in old.items():
            try:
                signal.signal(s, h)
            except (ValueError, OSError, TypeError):
                pass
    return results


def _watch_connected(opts: SessionOptions, client: ObsClient, privacy, out: Path, say,
                     stop: threading.Event, state: StateFile, results: list, on_session) -> None:
    started = threading.Event()
    last_start: list[RecordEvent] = []

    def on_record(e: RecordEvent) -> None:
        if e.state == REC_STARTED:
            last_start[:] = [e]
            started.set()

    client.on_record(on_record)
    try:
        while not stop.is_set() and client.alive():
            state.update(phase="watching", obs={"host": opts.host, "port": opts.port},
                         session_id=None, events_written=None)
            # last_start/started are cleared only when a session takes its start event
            # (below), never before asking OBS: a start that arrives between a clear and
            # GetRecordStatus would find the recording active but its event (time, path)
            # thrown away, and the recording could not be moved into its session
            try:
                active = bool(client.get_record_status().get("outputActive"))
            except OBSProblem:
                return
            if not active and started.is_set():
                # the start event of a recording that is already over (started and
                # stopped while a session was finalizing): forget it, ask again
                started.clear()
                last_start.clear()
                continue
            if not active:
                while not stop.is_set() and client.alive() and not started.wait(0.25):
                    if state.stop_requested():
                        stop.set()
                if stop.is_set() or not client.alive():
                    return
            attach_event = last_start[0] if last_start else None
            started.clear()
            last_start.clear()
            sid = _free_session_id(out, default_session_id())
            session_dir = prepare_session_dir(out, sid)
            sopts = dataclasses.replace(opts, session_id=sid, duration_s=None, configure_obs=False,
                                        attach_only=True)
            say(f"recording started in OBS: session {sid}")
            try:
                res = _run_connected(sopts, client, privacy, sid, session_dir, say, stop,
                                     install_signals=False,
                                     attach_event=attach_event)
            except NMError as e:
                say(f"session {sid} failed: {e}")
                try:
                    session_dir.rmdir()
                except OSError:
                    pass
                results.append(SessionResult(session_id=sid, session_dir=session_dir,
                                             status="failed", end_reason=str(e),
                                             exit_code=e.exit_code, message=str(e), metadata={}))
                _wait_recording_end(client, stop, state, say)
                continue
            results.append(res)
            say(res.message)
            if on_session is not None:
                on_session(res)
            if not stop.is_set() and not res.recording_stopped:
                _wait_recording_end(client, stop, state, say)
    finally:
        client.remove_listener(on_record)


def _wait_recording_end(client: ObsClient, stop: threading.Event, state: StateFile, say) -> None:
    """A session ended (or failed to start) while OBS still records (e.g. the event log
    could not be written): do not attach to the same recording again; wait until the
    user stops it, then watch for the next one."""
    said = False
    while not stop.is_set() and client.alive():
        try:
            active = bool(client.get_record_status().get("outputActive"))
        except OBSProblem:
            return
        if not active:
            return
        if not said:
            say("OBS is still recording; the next recording you start gets a new session")
            state.update(phase="waiting for the recording to stop", session_id=None,
                         events_written=None)
            said = True
        if state.stop_requested():
            stop.set()
            return
        stop.wait(0.5)


def watch_exit_code(results: list[SessionResult]) -> int:
    """0 if every session is complete, else the exit code of the first one that is not
    (3: OBS went away or quit during it, 4: its files could not be written)."""
    for r in results:
        if r.exit_code:
            return r.exit_code
    return 0
