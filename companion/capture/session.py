"""One recording session: ``nm-companion start``.

:func:`run_session` connects to OBS, creates ``<out>/<session_id>/``, logs input and
window events to ``<session_id>.jsonl`` while OBS records ``<session_id>.mkv`` into the
same folder (the OBS script writes ``<session_id>.anchors.jsonl`` beside it), and
finally writes ``metadata.json``. See docs/design.md for the folder layout.

Order of work (each step can fail with a one-line NMError before anything is
recorded): consent -> session id and output folder (writable?) -> OBS connection and
version -> recording setup check -> JSONL writer, window tracker, input listeners ->
recording started (or attached to a running one) -> loop (clock pairs once a second)
-> stop -> recording stopped -> JSONL closed -> sidecar complete -> files moved into
the folder if OBS wrote them elsewhere -> metadata.json (atomic).

Ends on: Ctrl-C / SIGTERM / ``nm-companion stop`` (a stop event), ``--duration``,
the recording stopped in OBS (all "complete", exit code 0), OBS quitting / crashing
(status "incomplete", exit code 3), or the event log failing to write (disk full,
file size limit, I/O error: status "incomplete", exit code 4; the recording it
started is stopped, every line written before the failure is kept). The companion
only stops a recording it started.

Audio is OBS's business: the companion never records audio; the recording's audio
tracks are whatever OBS's audio sources capture.
"""
from __future__ import annotations

import datetime as _dt
import json
import os
import re
import shutil
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from companion.capture import obs_config
from companion.capture.metadata import build_session_metadata
from companion.capture.obsws import (REC_PAUSED, REC_RESUMED, REC_STARTED, REC_STOPPED,
                                     ObsClient, RecordEvent, RecordingTarget, connect)
from companion.contract import events as ev
from companion.contract.sidecar import SIDECAR_SUFFIX, read_sidecar, sidecar_path_for
from companion.util.atomic import write_json_atomic
from companion.util.procs import pid_alive
from companion.util.errors import BadInput, EnvProblem, NMError, OBSProblem

SESSION_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$")
CLOCK_PERIOD_S = 1.0
STATE_PERIOD_S = 1.0

Say = Callable[[str], None]


def _stderr(msg: str) -> None:
    print(f"nm-companion: {msg}", file=sys.stderr, flush=True)


def default_session_id(now: _dt.datetime | None = None) -> str:
    """``session_YYYYMMDD_HHMMSS`` in local time."""
    now = now or _dt.datetime.now()
    return now.strftime("session_%Y%m%d_%H%M%S")


def check_session_id(sid: str) -> str:
    if not SESSION_ID_RE.match(sid or ""):
        raise BadInput(f"invalid session id {sid!r}: use letters, digits, '.', '_' and '-' "
                       f"(starting with a letter or digit, at most 200 characters)")
    return sid


# ============================================================ state files (status/stop)

def state_dir() -> Path:
    """Where running companions register: ``$XDG_RUNTIME_DIR/nm-companion`` or
    ``~/.cache/nm-companion`` (``%LOCALAPPDATA%\\nm-companion`` on Windows)."""
    env = os.environ.get("NM_COMPANION_STATE_DIR")
    if env:
        return Path(env)
    if os.environ.get("XDG_RUNTIME_DIR"):
        return Path(os.environ["XDG_RUNTIME_DIR"]) / "nm-companion"
    if sys.platform == "win32" and os.environ.get("LOCALAPPDATA"):
        return Path(os.environ["LOCALAPPDATA"]) / "nm-companion"
    return Path.home() / ".cache" / "nm-companion"


class StateFile:
    """``<state_dir>/<pid>.json``: what ``status`` shows and what ``stop`` signals.
    Holds no password. Rewritten atomically about once a second."""

    def __init__(self, directory: Path | None = None):
        self.dir = directory or state_dir()
        self.path = self.dir / f"{os.getpid()}.json"
        self.data: dict = {"pid": os.getpid(), "started_epoch_ns": time.time_ns()}

    def update(self, **kw) -> None:
        self.data.update(kw)
        self.data["updated_epoch_ns"] = time.time_ns()
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
            write_json_atomic(self.path, self.data)
        except OSError:
            pass  # status is a convenience; never fail a recording over it

    @property
    def stop_path(self) -> Path:
        """``nm-companion stop`` creates this file (works on every OS; SIGTERM too on POSIX)."""
        return self.dir / f"{os.getpid()}.stop"

    def stop_requested(self) -> bool:
        return self.stop_path.exists()

    def remove(self) -> None:
        for p in (self.path, self.stop_path):
            try:
                p.unlink()
            except OSError:
                pass


def list_running(directory: Path | None = None) -> list[dict]:
    """State of every running companion (stale files of dead processes are removed)."""
    d = directory or state_dir()
    out = []
    if not d.is_dir():
        return out
    for p in sorted(d.glob("*.json")):
        try:
            data = json.loads(p.read_text(encoding="utf-8"))
            pid = int(data["pid"])
        except (OSError, ValueError, KeyError, TypeError):
            continue
        if pid_alive(pid):
            out.append(data)
        else:
            leftover = data.get("obs_restore")
            if leftover:
                data["stale"] = True
                out.append(data)  # caller may restore OBS settings, then remove
            else:
                try:
                    p.unlink()
                except OSError:
                    pass
    return out


# ============================================================ options / result

@dataclass
class SessionOptions:
    """Everything ``nm-companion start`` needs. ``password`` is never printed."""

    out: Path
    session_id: str | None = None
    host: str = "localhost"
    port: int = 4455
    password: str | None = field(default=None, repr=False)
    timeout_s: float = 5.0
    duration_s: float | None = None
    consent: bool = False
    consent_source: str | None = None
    keyboard: bool = True
    mouse: bool = True
    only_window: list[str] = field(default_factory=list)
    deny_window: list[str] = field(default_factory=list)
    redact_titles: bool = False
    configure_obs: bool = False
    allow_setup_problems: bool = False
    obs_config_dir: Path | None = None
    sidecar_wait_s: float = 10.0
    record_start_timeout_s: float = 20.0
    record_stop_timeout_s: float = 60.0
    attach_only: bool = False  # watch mode: never start a recording, only attach to one


@dataclass
class SessionResult:
    """What happened. ``exit_code`` 0 = complete; ``message`` one line for the user."""

    session_id: str
    session_dir: Path
    status: str
    end_reason: str
    exit_code: int
    message: str
    metadata: dict
    recording_path: Path | None = None
    events_written: int = 0
    recording_stopped: bool = True  # False: the session ended while OBS kept recording


# ============================================================ the session

class _Stop:
    """Why the loop should end (first reason wins)."""

    def __init__(self) -> None:
        self.event = threading.Event()
        self.reason: str | None = None
        self.lock = threading.Lock()

    def set(self, reason: str) -> None:
        with self.lock:
            if self.reason is None:
                self.reason = reason
        self.event.set()


def prepare_session_dir(out: Path, sid: str) -> Path:
    """Check ``out`` is writable and ``out/sid`` is new or empty; create it.
    Raises EnvProblem / BadInput (one line) before anything touches OBS."""
    out = Path(out).expanduser()
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise EnvProblem(f"cannot create output folder {out}: {e.strerror}") from None
    if not out.is_dir():
        raise EnvProblem(f"output path {out} is not a folder")
    if not os.access(out, os.W_OK | os.X_OK):
        raise EnvProblem(f"output folder {out} is not writable")
    d = out / sid
    if d.exists():
        if not d.is_dir():
            raise BadInput(f"{d} exists and is not a folder")
        if any(d.iterdir()):
            raise BadInput(f"session folder {d} already exists and is not empty: choose another "
                           f"--session-id or remove it")
    try:
        d.mkdir(exist_ok=True)
        probe = d / f".nm-write-test.{os.getpid()}"
        probe.write_bytes(b"x")
        probe.unlink()
    except OSError as e:
        raise EnvProblem(f"cannot write into {d}: {e.strerror}") from None
    return d


def _wait_sidecar(path: Path, timeout_s: float, obs_alive: Callable[[], bool]) -> dict | None:
    """Wait until the OBS script's sidecar has its ``stop`` record; return it (or None)."""
    t0 = time.monotonic()
    deadline = t0 + timeout_s
    while True:
        if not path.exists() and time.monotonic() - t0 > min(3.0, timeout_s):
            return None  # no sidecar at all: the OBS script is not loaded (or sidecar off)
        if path.exists():
            try:
                sc = read_sidecar(path)
                if sc.stop is not None:
                    return sc.stop
            except NMError:
                pass
        if time.monotonic() > deadline or not obs_alive():
            return None
        time.sleep(0.1)


def _move_into(src: Path, dst: Path) -> Path:
    if src.resolve() == dst.resolve():
        return dst
    if dst.exists():
        raise EnvProblem(f"cannot move {src} into the session: {dst} already exists")
    shutil.move(str(src), str(dst))
    return dst


def _encoder_info(client: ObsClient) -> dict:
    try:
        s = obs_config.read_recording_setup(client)
    except NMError:
        return {}
    return {"codec": s.codec, "encoder": s.encoder, "bitrate_kbps": s.bitrate_kbps,
            "format": s.rec_format, "output_mode": s.mode}


def display_refresh_hz() -> float | None:
    """The main display's refresh rate in Hz, best effort (None if unknown, e.g. Xvfb).
    X11: RandR; Windows: EnumDisplaySettingsW; macOS: Quartz."""
    try:
        if sys.platform == "win32":  # pragma: no cover - Windows only
            import ctypes
            from ctypes import wintypes

            class DEVMODEW(ctypes.Structure):
                _fields_ = [("dmDeviceName", wintypes.WCHAR * 32), ("dmSpecVersion", wintypes.WORD),
                            ("dmDriverVersion", wintypes.WORD), ("dmSize", wintypes.WORD),
                            ("dmDriverExtra", wintypes.WORD), ("dmFields", wintypes.DWORD),
                            ("dmPosition", ctypes.c_long * 2), ("dmDisplayOrientation", wintypes.DWORD),
                            ("dmDisplayFixedOutput", wintypes.DWORD), ("dmColor", ctypes.c_short),
                            ("dmDuplex", ctypes.c_short), ("dmYResolution", ctypes.c_short),
                            ("dmTTOption", ctypes.c_short), ("dmCollate", ctypes.c_short),
                            ("dmFormName", wintypes.WCHAR * 32), ("dmLogPixels", wintypes.WORD),
                            ("dmBitsPerPel", wintypes.DWORD), ("dmPelsWidth", wintypes.DWORD),
                            ("dmPelsHeight", wintypes.DWORD), ("dmDisplayFlags", wintypes.DWORD),
                            ("dmDisplayFrequency", wintypes.DWORD)]
            dm = DEVMODEW()
            dm.dmSize = ctypes.sizeof(DEVMODEW)
            if ctypes.windll.user32.EnumDisplaySettingsW(None, -1, ctypes.byref(dm)):
                return float(dm.dmDisplayFrequency) if dm.dmDisplayFrequency > 1 else None
            return None
        if sys.platform == "darwin":  # pragma: no cover - macOS only
            import Quartz
            mode = Quartz.CGDisplayCopyDisplayMode(Quartz.CGMainDisplayID())
            hz = Quartz.CGDisplayModeGetRefreshRate(mode)
            return float(hz) if hz and hz > 0 else None
        if not os.environ.get("DISPLAY"):
            return None
        from Xlib import display as xdisplay
        d = xdisplay.Display()
        try:
            if not d.has_extension("RANDR"):
                return None
            root = d.screen().root
            res = root.xrandr_get_screen_resources()
            for crtc in res.crtcs:
                info = d.xrandr_get_crtc_info(crtc, res.config_timestamp)
                if not info.mode:
                    continue
                for m in res.modes:
                    if m.id == info.mode and m.h_total and m.v_total and m.dot_clock:
                        return round(m.dot_clock / (m.h_total * m.v_total), 3)
            rate = root.xrandr_get_screen_info().rate
            return float(rate) if rate and rate > 0 else None
        finally:
            d.close()
    except Exception:
        return None


def _record_audio(client: ObsClient) -> bool | None:
    """True if OBS has an unmuted desktop/mic audio input (the recording has sound)."""
    try:
        special = client.request("GetSpecialInputs")
    except NMError:
        return None
    any_audio = False
    for k in ("desktop1", "desktop2", "mic1", "mic2", "mic3", "mic4"):
        name = special.get(k)
        if not name:
            continue
        try:
            if not client.request("GetInputMute", {"inputName": name}).get("inputMuted", False):
                any_audio = True
        except NMError:
            continue
    return any_audio


def run_session(opts: SessionOptions, say: Say = _stderr,
                stop: "threading.Event | None" = None,
                install_signals: bool = True,
                progress: Callable[[str], None] | None = None) -> SessionResult:
    """Run one session to the end (see module docstring). Raises NMError for problems
    found before recording; problems after the recording started end the session with
    status "incomplete" and a non-zero ``exit_code`` instead, so nothing is lost."""
    # --- imports of the capture parts (they need X11 etc. only when used)
    from companion.capture.privacy import PrivacyFilter
    privacy = PrivacyFilter(consent=opts.consent, only_window=opts.only_window,
                            deny_window=opts.deny_window, keyboard=opts.keyboard,
                            mouse=opts.mouse, redact_titles=opts.redact_titles)
    privacy.require_consent()
    sid = check_session_id(opts.session_id or default_session_id())
    out = Path(opts.out).expanduser().resolve()
    session_dir = prepare_session_dir(out, sid)
    created_dir = True
    try:
        client = connect(opts.host, opts.port, opts.password, opts.timeout_s)
    except BaseException:
        _rmdir_if_empty(session_dir)
        raise
    try:
        return _run_connected(opts, client, privacy, sid, session_dir, say, stop, install_signals,
                              progress=progress)
    except BaseException:
        if created_dir:
            _rmdir_if_empty(session_dir)
        raise
    finally:
        client.close()


def _rmdir_if_empty(d: Path) -> None:
    try:
        d.rmdir()
    except OSError:
        pass


def _run_connected(opts: SessionOptions, client: ObsClient, privacy, sid: str,
                   session_dir: Path, say: Say, ext_stop: "threading.Event | None",
                   install_signals: bool, attach_event: RecordEvent | None = None,
                   progress: Callable[[str], None] | None = None) -> SessionResult:
    """The session once connected. ``attach_event``: the RecordStateChanged STARTED event
    of a recording started by the user (watch mode): its time and output path are
    recorded and the file is moved into the session folder when it stops.
    ``progress``: called about once a second with a one-line status (for a TTY)."""
    from companion.capture.inputs import InputCapture
    from companion.capture.window import WindowTracker
    from companion.capture.writer import JsonlWriter

    warnings: list[str] = []
    # ---- recording setup
    status = client.get_record_status()
    attached = bool(status.get("outputActive"))
    if opts.attach_only and not attached:
        raise OBSProblem("the recording stopped in OBS before its session could begin")
    if not attached:
        restore_leftover_obs_settings(client, say)
    if opts.configure_obs and not attached:
        profile_dir = obs_config.current_profile_dir(client, opts.obs_config_dir)
        changes = obs_config.configure_recording(client, profile_dir)
        for c in changes:
            say(f"configured OBS: {c}")
        if obs_config.needs_restart(changes):
            say(f"warning: {obs_config.RESTART_NOTE}; this recording still uses the old encoder/output")
            warnings.append(obs_config.RESTART_NOTE)
    setup, findings = obs_config.check_recording_setup(client)
    errors = [f for f in findings if f.level == "error"]
    for f in findings:
        if f.level == "warning":
            say(f"warning: {f.message}")
            warnings.append(f.message)
    if errors and not attached and not opts.allow_setup_problems:
        raise OBSProblem(errors[0].message + " (or run with --configure-obs)")
    for f in errors:
        warnings.append(f.message)

    video = {}
    try:
        video = client.get_video_settings()
    except NMError:
        pass
    enc = _encoder_info(client)
    record_audio = _record_audio(client)
    refresh_hz = display_refresh_hz()

    # ---- state + stop plumbing
    stopper = _Stop()
    state = StateFile()
    jsonl = session_dir / f"{sid}.jsonl"
    writer = JsonlWriter(jsonl)
    writer.start()
    t0, m0 = time.time_ns(), time.monotonic_ns()
    writer.put(t0, ev.SRC_RECORDER, {
        "event": ev.REC_SESSION_START, "session_id": sid, "epoch_ns": t0, "mono_ns": m0,
        "consent": {"record_input": privacy.consent, "source": opts.consent_source},
        "filters": privacy.describe(), "attached": attached,
        "obs_version": client.version.obs_version,
        "obs_websocket_version": client.version.obs_websocket_version})

    rec_state = {"started": None, "stopped": None, "paused": False}
    rec_lock = threading.Lock()
    we_started = False

    def on_record(e: RecordEvent) -> None:
        t = time.time_ns()
        name = {REC_STARTED: ev.REC_RECORDING_STARTED, REC_STOPPED: ev.REC_RECORDING_STOPPED,
                REC_PAUSED: ev.REC_RECORDING_PAUSED, REC_RESUMED: ev.REC_RECORDING_RESUMED}.get(e.state)
        if name is None:
            return
        data = {"event": name, "mono_ns": time.monotonic_ns()}
        if e.output_path:
            data["output_path"] = e.output_path
        writer.put(t, ev.SRC_RECORDER, data)
        with rec_lock:
            if e.state == REC_STARTED:
                rec_state["started"] = e
            elif e.state == REC_STOPPED:
                rec_state["stopped"] = e
                if rec_state["started"] is not None or attached:
                    stopper.set("recording stopped in OBS")
            elif e.state == REC_PAUSED:
                rec_state["paused"] = True
            elif e.state == REC_RESUMED:
                rec_state["paused"] = False

    def on_exit() -> None:
        stopper.set("OBS is quitting")

    client.on_record(on_record)
    client.on_exit(on_exit)

    old_handlers = {}
    if install_signals and threading.current_thread() is threading.main_thread():
        def handler(signum, frame):
            if stopper.event.is_set():
                say("still finishing the session, please wait")
                return
            stopper.set("interrupted" if signum == signal.SIGINT else "stop requested (SIGTERM)")
        for s in (signal.SIGINT, signal.SIGTERM):
            old_handlers[s] = signal.signal(s, handler)

    tracker = InputCapture_ = None
    target = RecordingTarget()
    recording_path: Path | None = None
    end_status, end_reason = "complete", ""
    exit_code, message = 0, ""
    stop_ev: RecordEvent | None = None
    write_failed: str | None = None  # the event log could not be written (disk full...)
    try:
        # ---- capture
        tracker = WindowTracker(writer.put, privacy=privacy)
        tracker.start()
        InputCapture_ = InputCapture(writer.put, keyboard=opts.keyboard, mouse=opts.mouse,
                                     privacy=privacy, window=tracker.current)
        InputCapture_.start()

        # ---- recording
        if attached:
            out_path = status.get("outputPath") or (attach_event.output_path if attach_event else None)
            if attach_event is None:
                say(f"OBS is already recording ({out_path or 'path unknown'}); attaching: input "
                    f"is logged until the recording stops, the companion will not stop it")
            marker = {"event": ev.REC_RECORDING_STARTED, "attached": True,
                      "output_path": out_path, "mono_ns": time.monotonic_ns()}
            if attach_event is not None:
                # when OBS announced the start; input before capture_ready_mono_ns is not logged
                marker["obs_event_mono_ns"] = attach_event.t_mono_ns
                marker["capture_ready_mono_ns"] = marker["mono_ns"]
                gap = (marker["mono_ns"] - attach_event.t_mono_ns) / 1e9
                warnings.append(f"input logging started {gap:.3f} s after OBS reported the "
                                f"recording start (attached to a user-started recording)")
            writer.put(time.time_ns(), ev.SRC_RECORDER, marker)
            if out_path:
                recording_path = Path(out_path)
        else:
            target.apply(client, session_dir, sid)
            state.update(session_id=sid, session_dir=str(session_dir), events_path=str(jsonl),
                         obs={"host": opts.host, "port": opts.port}, phase="starting",
                         obs_restore=dict(target.saved))
            try:
                started = client.start_record(opts.record_start_timeout_s)
                we_started = True
            finally:
                try:
                    target.restore(client)  # OBS read the path at start: give the user theirs back
                except NMError as e:
                    warnings.append(str(e))
                    say(f"warning: {e}")
            recording_path = Path(started.output_path) if started.output_path else None
            say(f"recording {sid} to {recording_path or session_dir} "
                f"({'until ' + format(opts.duration_s, 'g') + ' s' if opts.duration_s else 'Ctrl-C or nm-companion stop to end'})")
        state.update(session_id=sid, session_dir=str(session_dir), events_path=str(jsonl),
                     obs={"host": opts.host, "port": opts.port}, phase="recording",
                     recording_path=str(recording_path) if recording_path else None,
                     obs_restore=None, events_written=0)

        # ---- loop
        deadline = time.monotonic() + opts.duration_s if opts.duration_s else None
        next_clock = time.monotonic()
        next_state = time.monotonic() + STATE_PERIOD_S
        while not stopper.event.is_set():
            now = time.monotonic()
            if now >= next_clock:
                e_ns, m_ns = time.time_ns(), time.monotonic_ns()
                writer.put(e_ns, ev.SRC_RECORDER, {"event": ev.REC_CLOCK, "epoch_ns": e_ns, "mono_ns": m_ns})
                next_clock += CLOCK_PERIOD_S
                if next_clock < now:
                    next_clock = now + CLOCK_PERIOD_S
            if now >= next_state:
                st = writer.stats()
                state.update(events_written=st["written"], recording_paused=rec_state["paused"])
                if progress is not None:
                    el = int(time.time_ns() - t0) // 1_000_000_000
                    progress(f"{sid}: {'paused' if rec_state['paused'] else 'recording'} "
                             f"{el // 3600:d}:{el // 60 % 60:02d}:{el % 60:02d}, "
                             f"{st['written']} events")
                next_state = now + STATE_PERIOD_S
                if st.get("failed"):
                    write_failed = st["failed"]
                    stopper.set(f"cannot write the event log: {write_failed}")
                    break
            if ext_stop is not None and ext_stop.is_set():
                stopper.set("stop requested")
                break
            if state.stop_requested():
                stopper.set("stop requested (nm-companion stop)")
                if ext_stop is not None:
                    ext_stop.set()  # in watch mode: end watching too
                break
            if deadline is not None and now >= deadline:
                stopper.set(f"duration {opts.duration_s:g} s reached")
                break
            if not client.events_alive:
                stopper.set("OBS closed the connection")
                break
            wait = min(next_clock, next_state) - time.monotonic()
            if deadline is not None:
                wait = min(wait, deadline - time.monotonic())
            stopper.event.wait(max(0.01, min(wait, 0.25)))
        end_reason = stopper.reason or "stopped"
        say(f"stopping: {end_reason}")

        # ---- stop the recording we started
        obs_gone = not client.events_alive or client.exit_started.is_set()
        with rec_lock:
            stop_ev = rec_state["stopped"]
        if we_started and stop_ev is None and not obs_gone:
            try:
                stop_ev = client.stop_record(opts.record_stop_timeout_s)
            except OBSProblem as e:
                end_status = "incomplete"
                end_reason = f"{end_reason}; stopping the recording failed: {e}"
                exit_code, message = 3, f"could not stop the OBS recording: {e}"
        if stop_ev is None and client.exit_started.is_set() and client.events_alive:
            # OBS is quitting: it stops (and finalizes) the recording itself first
            try:
                stop_ev = client.wait_record_state((REC_STOPPED,), 15.0)
            except OBSProblem:
                stop_ev = None
        if stop_ev is not None and stop_ev.output_path:
            recording_path = Path(stop_ev.output_path)
        if stop_ev is None and (obs_gone or not client.events_alive) and (we_started or attached):
            # the recording never stopped properly: OBS crashed, was killed or hung up
            end_status = "incomplete"
            exit_code = 3
            if client.exit_started.is_set():
                message = _quit_message(session_dir)
            else:
                message = (f"OBS went away during the recording ({end_reason}); the session "
                           f"was finalized as incomplete in {session_dir}")
        elif end_reason == "OBS is quitting" and (we_started or attached) and exit_code == 0:
            # OBS quit (cleanly) during the recording and reported the stop: the file is
            # finalized, but the session ended before it was asked to
            end_status = "incomplete"
            exit_code = 3
            message = _quit_message(session_dir)
    except BaseException as e:
        end_status = "incomplete"
        end_reason = end_reason or (str(e).splitlines()[0] if str(e) else type(e).__name__)
        if isinstance(e, NMError):
            exit_code, message = e.exit_code, str(e)
        elif isinstance(e, KeyboardInterrupt):
            exit_code, message = 130, "interrupted"
        else:
            exit_code, message = 1, f"internal error: {type(e).__name__}: {e}".splitlines()[0]
        # try to leave OBS as we found it
        if target.saved:
            try:
                target.restore(client)
            except NMError:
                pass
        if we_started and client.events_alive:
            try:
                stop_ev = client.stop_record(opts.record_stop_timeout_s)
                if stop_ev.output_path:
                    recording_path = Path(stop_ev.output_path)
            except NMError:
                pass
        if not we_started and not attached:
            # nothing was recorded: this is a start-up failure, report it as such
            _finish_capture(InputCapture_, tracker)
            writer.close()
            state.remove()
            _restore_signals(old_handlers)
            for p in session_dir.iterdir():
                if p.name == jsonl.name:
                    p.unlink()
            raise
    finally:
        _finish_capture(InputCapture_, tracker)
        client.remove_listener(on_record)
        client.remove_listener(on_exit)

    # ---- finalize
    in_stats = InputCapture_.stats() if InputCapture_ is not None else {}
    t_end, m_end = time.time_ns(), time.monotonic_ns()
    wstats_before = writer.stats()
    write_failed = write_failed or wstats_before.get("failed")
    if write_failed:
        end_status = "incomplete"
        if end_reason and not end_reason.startswith("cannot write the event log"):
            end_reason = f"{end_reason}; cannot write the event log: {write_failed}"
        elif not end_reason:
            end_reason = f"cannot write the event log: {write_failed}"
    writer.put(t_end, ev.SRC_RECORDER, {
        "event": ev.REC_SESSION_END, "reason": end_reason, "status": end_status,
        "epoch_ns": t_end, "mono_ns": m_end,
        "counts": {"events_written": wstats_before["written"] + 1,
                   "events_dropped": wstats_before["dropped"],
                   "input_seen": in_stats.get("seen"), "input_filtered": in_stats.get("filtered")}})
    wstats = writer.close()
    if wstats.get("error"):
        warnings.append(f"event log: {wstats['error']}")
    if wstats.get("failed") and not write_failed:  # e.g. the session.end line itself
        write_failed = wstats["failed"]
        end_status = "incomplete"
        end_reason = f"{end_reason}; cannot write the event log: {write_failed}"
    if write_failed and exit_code in (0, 130):
        # disk full / file size limit / I/O error: exit code 4 (environment), one line
        exit_code = 4
        what = "the recording was stopped and " if we_started else ""
        message = (f"cannot write the event log {jsonl}: {_reason_of(write_failed)}; {what}"
                   f"the session was finalized as incomplete in {session_dir} (the "
                   f"{wstats.get('written')} events written before the failure are kept)")

    sidecar_stop = None
    files: dict = {"events": jsonl.name}
    final_rec = None
    if recording_path is not None:
        sc_src = sidecar_path_for(recording_path)
        alive = lambda: client.events_alive  # noqa: E731 - OBS gone: no point waiting
        if recording_path.exists() and stop_ev is not None:
            sidecar_stop = _wait_sidecar(sc_src, opts.sidecar_wait_s, alive)
        elif recording_path.exists() and client.exit_started.is_set():
            # OBS quit cleanly: obs-websocket closes before the outputs stop (OBS 29 sends
            # no stop event then), but OBS finalizes the file and the script its sidecar
            sidecar_stop = _wait_sidecar(sc_src, min(5.0, opts.sidecar_wait_s), lambda: True)
        if recording_path.exists() and sidecar_stop is None \
                and (stop_ev is not None or client.exit_started.is_set()):
            warnings.append(f"the OBS script's sidecar {sc_src.name} has no stop record "
                            f"(is nm_timestamps.py loaded in OBS?)")
        # move into the session folder if OBS wrote elsewhere (attached recordings)
        if recording_path.exists() and (stop_ev is not None or not client.alive()):
            # stopped, or OBS is gone (crashed / quit): the file is no longer written
            dst = session_dir / f"{sid}{recording_path.suffix}"
            try:
                final_rec = _move_into(recording_path, dst)
                if sc_src.exists():
                    _move_into(sc_src, session_dir / f"{sid}{SIDECAR_SUFFIX}")
            except (OSError, NMError) as e:
                warnings.append(f"could not move the recording into the session folder: {e}")
                final_rec = recording_path
        elif recording_path.exists() or (stop_ev is None and client.alive()):
            # attached and still recording: leave it with OBS (its muxer may not have
            # created the file yet when the session ends within a second of the start)
            final_rec = recording_path
            warnings.append(f"the recording {recording_path} is still running in OBS; it was "
                            f"not moved into the session folder")
        else:
            warnings.append(f"OBS reported recording to {recording_path} but the file is missing")
    for p in sorted(session_dir.iterdir()):
        if p.suffix in (".mkv", ".mp4", ".mov", ".flv", ".ts", ".m3u8", ".fragmented"):
            files["video"] = p.name
        elif p.name.endswith(SIDECAR_SUFFIX):
            files["anchors"] = p.name
    if final_rec is not None and final_rec.parent != session_dir:
        files["video_outside_session"] = str(final_rec)

    obs_stats = None
    if client.events_alive:
        try:
            obs_stats = client.get_stats()
        except NMError:
            obs_stats = None
    rec_start_epoch = None
    sc_final = session_dir / f"{sid}{SIDECAR_SUFFIX}"
    if sc_final.exists():
        try:
            rec_start_epoch = int(read_sidecar(sc_final).header.get("started_epoch_ns") or 0) or None
        except (NMError, ValueError, TypeError):
            rec_start_epoch = None
    if rec_start_epoch is None:
        with rec_lock:
            ev_start = rec_state["started"]
        ev_start = ev_start or attach_event
        rec_start_epoch = ev_start.t_epoch_ns if ev_start is not None else None
    if enc.get("bitrate_kbps") is None and final_rec is not None and final_rec.exists():
        dur = None
        if sidecar_stop and sidecar_stop.get("total_frames") and video.get("fpsNumerator"):
            dur = sidecar_stop["total_frames"] * video["fpsDenominator"] / video["fpsNumerator"]
        if dur:
            enc = dict(enc)
            enc["bitrate_kbps"] = round(final_rec.stat().st_size * 8 / dur / 1000, 1)
            enc["bitrate_source"] = "file average"
    last_window = tracker.current() if tracker is not None else None
    md = build_session_metadata(
        session_id=sid, started_epoch_ns=t0, status=end_status, end_reason=end_reason,
        obs_version=client.version.obs_version,
        obs_websocket_version=client.version.obs_websocket_version,
        obs_platform=client.version.platform_description or client.version.platform,
        video=video, encoder=enc, sidecar_stop=sidecar_stop, obs_stats=obs_stats,
        consent=privacy.consent, consent_source=opts.consent_source,
        record_audio=record_audio, privacy=privacy.describe(), keyboard=opts.keyboard,
        mouse=opts.mouse, window_id=getattr(last_window, "window_id", None),
        refresh_hz=refresh_hz,
        events={"written": wstats.get("written"), "dropped": wstats.get("dropped"),
                "input_seen": in_stats.get("seen"), "input_filtered": in_stats.get("filtered"),
                "input_errors": in_stats.get("errors")},
        files=files, recording_path=str(recording_path) if recording_path else None,
        stopped_epoch_ns=t_end, attached=attached, warnings=warnings,
        recording_started_epoch_ns=rec_start_epoch,
        env={"recording_format": enc.get("format"), "obs_output_mode": enc.get("output_mode")})
    try:
        write_json_atomic(session_dir / "metadata.json", md)
        if final_rec is not None and final_rec.exists() and final_rec.parent == session_dir \
                and stop_ev is not None:
            # capture-time integrity: hashes of the finished files (nm-align reuses the
            # recording's hash and adds its own outputs; nm-validate checks them)
            from companion.util.integrity import write_integrity
            write_integrity(session_dir, [q.name for q in session_dir.iterdir()
                                          if q.is_file() and not q.name.startswith(".")
                                          and q.name != "integrity.sha256"])
    except OSError as e:
        exit_code = exit_code or 4
        message = message or f"cannot write {session_dir / 'metadata.json'}: {e.strerror}"
    state.remove()
    _restore_signals(old_handlers)
    if exit_code == 0:
        message = f"session {sid} complete: {session_dir} ({wstats.get('written')} events)"
    return SessionResult(session_id=sid, session_dir=session_dir, status=end_status,
                         end_reason=end_reason, exit_code=exit_code, message=message,
                         metadata=md, recording_path=final_rec,
                         events_written=int(wstats.get("written") or 0),
                         recording_stopped=stop_ev is not None or not client.alive())


def _quit_message(session_dir: Path) -> str:
    return (f"OBS quit during the recording; the session was finalized as incomplete in "
            f"{session_dir} (what OBS recorded is kept)")


def _reason_of(failed: str) -> str:
    """"writing X failed: File too large" -> "File too large"."""
    return failed.rsplit(" failed: ", 1)[-1]


def _finish_capture(inputs, tracker) -> None:
    if inputs is not None:
        try:
            inputs.stop()
        except Exception:
            pass
    if tracker is not None:
        try:
            tracker.stop()
        except Exception:
            pass


def _restore_signals(old: dict) -> None:
    for s, h in old.items():
        try:
            signal.signal(s, h)
        except (ValueError, OSError, TypeError):
            pass


def restore_leftover_obs_settings(client: ObsClient, say: Say = _stderr) -> None:
    """If a companion died between redirecting OBS's recording path and restoring it,
    put the user's values back (from its stale state file)."""
    for data in list_running():
        if not data.get("stale") or not data.get("obs_restore"):
            continue
        where = data.get("obs") or {}
        if (where.get("host"), where.get("port")) != (client.host, client.port):
            continue  # left by a companion of another OBS
        t = RecordingTarget(saved=dict(data["obs_restore"]))
        try:
            t.restore(client)
            say("restored OBS recording path settings left by an interrupted companion")
        except NMError:
            continue
        try:
            (state_dir() / f"{int(data['pid'])}.json").unlink()
        except OSError:
            pass
