"""A small obs-websocket v5 client for the companion, built on obsws-python.

What it adds over obsws-python:

- one-line :class:`~companion.util.errors.OBSProblem` errors for the usual failures
  (OBS not running / port closed, wrong or missing password, obs-websocket 4.x,
  OBS older than 29);
- the password never leaves this module: obsws-python logs it at INFO level and puts
  it in ``repr()``; its logger is silenced here and :class:`ObsClient` keeps the password
  only inside the obsws-python objects it owns (its own ``repr`` shows ``password=***``);
- request/response on one socket guarded by a lock (obsws-python's ``ReqClient`` does
  not match replies to requests, so two threads sharing it could swap replies);
- record control that waits for ``RecordStateChanged`` (``StartRecord``/``StopRecord``
  return before the output changes state);
- the recording path/filename redirect (:class:`RecordingTarget`) that OBS 29's
  obs-websocket 5.1 needs (no ``SetRecordDirectory`` before 5.3).

Units: every timeout is in seconds.
"""
from __future__ import annotations

import json
import logging
import os
import queue
import socket
import stat
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from companion.util.errors import BadInput, OBSProblem

# obsws-python logs "Connecting with parameters: ... password='<the password>'" at INFO and
# logs tracebacks with logger.exception(); Python's last-resort handler would print those
# to stderr. Nothing from that logger may ever be emitted.
_OBSWS_LOGGER = logging.getLogger("obsws_python")
_OBSWS_LOGGER.addHandler(logging.NullHandler())
_OBSWS_LOGGER.propagate = False
_OBSWS_LOGGER.setLevel(logging.CRITICAL + 10)

import obsws_python as _obsws  # noqa: E402  (after silencing its logger)
from obsws_python.error import OBSSDKError, OBSSDKRequestError  # noqa: E402
from websocket import (WebSocketBadStatusException, WebSocketProtocolException,  # noqa: E402
                       WebSocketTimeoutException)

log = logging.getLogger(__name__)

DEFAULT_HOST = "localhost"
DEFAULT_PORT = 4455
MIN_OBS_MAJOR = 29
MIN_WS_MAJOR = 5

# obs-websocket EventSubscription bits (protocol.md): General (ExitStarted) and Outputs
# (RecordStateChanged).
_SUB_GENERAL = 1 << 0
_SUB_CONFIG = 1 << 1
_SUB_OUTPUTS = 1 << 6

# RecordStateChanged outputState values
REC_STARTING = "OBS_WEBSOCKET_OUTPUT_STARTING"
REC_STARTED = "OBS_WEBSOCKET_OUTPUT_STARTED"
REC_STOPPING = "OBS_WEBSOCKET_OUTPUT_STOPPING"
REC_STOPPED = "OBS_WEBSOCKET_OUTPUT_STOPPED"
REC_PAUSED = "OBS_WEBSOCKET_OUTPUT_PAUSED"
REC_RESUMED = "OBS_WEBSOCKET_OUTPUT_RESUMED"

CONFIG_ENV = "NM_COMPANION_CONFIG"
PASSWORD_ENV = "NM_OBS_PASSWORD"


# --------------------------------------------------------------------------- config

def default_config_path() -> Path:
    """The companion's config file: ``$NM_COMPANION_CONFIG``, else
    ``$XDG_CONFIG_HOME/nm-companion/config.json`` (``~/.config/...``; on Windows
    ``%APPDATA%\\nm-companion\\config.json``).

    JSON object, every key optional::

        {"host": "localhost", "port": 4455, "password": "...", "consent": true,
         "out": "~/nm-sessions"}
    """
    env = os.environ.get(CONFIG_ENV)
    if env:
        return Path(env).expanduser()
    if sys.platform == "win32" and os.environ.get("APPDATA"):
        return Path(os.environ["APPDATA"]) / "nm-companion" / "config.json"
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "nm-companion" / "config.json"


def load_config(path: Path | None = None, warn: Callable[[str], None] | None = None) -> dict:
    """Read the config file (missing file -> ``{}``). A config holding a password that
    group/others can read triggers one warning through ``warn`` (never the password)."""
    path = path or default_config_path()
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    except OSError as e:
        raise BadInput(f"cannot read config file {path}: {e.strerror}")
    try:
        cfg = json.loads(text)
    except ValueError as e:
        raise BadInput(f"config file {path} is not valid JSON (line {getattr(e, 'lineno', '?')})")
    if not isinstance(cfg, dict):
        raise BadInput(f"config file {path} must hold a JSON object")
    if cfg.get("password") and warn is not None and os.name == "posix":
        try:
            mode = path.stat().st_mode
        except OSError:
            mode = 0
        if mode & (stat.S_IRGRP | stat.S_IROTH):
            warn(f"config file {path} holds the OBS password and is readable by other "
                 f"users; run: chmod 600 {path}")
    return cfg


def resolve_password(cli_password: str | None, config: dict) -> tuple[str | None, str]:
    """Pick the obs-websocket password. Order: ``--password``, env ``NM_OBS_PASSWORD``,
    config file ``password``. Returns (password or None, where it came from)."""
    if cli_password is not None:
        return cli_password, "--password"
    env = os.environ.get(PASSWORD_ENV)
    if env:
        return env, PASSWORD_ENV
    pw = config.get("password")
    if pw is not None:
        if not isinstance(pw, str):
            raise BadInput("config file: 'password' must be a string")
        return pw, "config file"
    return None, "none"


# --------------------------------------------------------------------------- versions

def _version_tuple(v: str) -> tuple[int, ...]:
    out = []
    for part in str(v).split("."):
        digits = "".join(ch for ch in part if ch.isdigit())
        if not digits:
            break
        out.append(int(digits))
    return tuple(out) or (0,)


@dataclass(frozen=True)
class ObsVersion:
    """What GetVersion reports: OBS and obs-websocket versions (strings like "29.0.2")."""

    obs_version: str
    obs_websocket_version: str
    rpc_version: int
    platform: str = ""
    platform_description: str = ""

    @property
    def obs_major(self) -> int:
        return _version_tuple(self.obs_version)[0]

    @property
    def obs_tuple(self) -> tuple[int, ...]:
        return _version_tuple(self.obs_version)


def check_versions(v: ObsVersion) -> None:
    """Raise OBSProblem if OBS or obs-websocket is too old for the companion."""
    if _version_tuple(v.obs_websocket_version)[0] < MIN_WS_MAJOR:
        raise OBSProblem(f"obs-websocket {v.obs_websocket_version} is too old: the companion "
                         f"needs obs-websocket 5 (bundled with OBS 28 and newer)")
    if v.obs_major < MIN_OBS_MAJOR:
        raise OBSProblem(f"OBS {v.obs_version} is too old: the companion needs OBS "
                         f"{MIN_OBS_MAJOR} or newer (the timestamp script relies on it)")


# --------------------------------------------------------------------------- client

@dataclass
class RecordEvent:
    """One RecordStateChanged event as received. ``t_mono_ns`` / ``t_epoch_ns``: companion
    monotonic / wall-clock time of arrival [ns]; ``output_path``: file OBS writes/wrote
    (may be None)."""

    state: str
    active: bool
    output_path: str | None
    t_mono_ns: int = field(default_factory=time.monotonic_ns)
    t_epoch_ns: int = field(default_factory=time.time_ns)


class ObsClient:
    """A connection to obs-websocket: one request socket (lock-protected) plus one event
    socket (obsws-python ``EventClient`` with its own reader thread).

    Use :func:`connect` to build one. Callbacks registered with :meth:`on_record` and
    :meth:`on_exit` run on the event thread; they must be quick and must not raise
    (exceptions are caught and logged).
    """

    def __init__(self, host: str, port: int, req: Any, events: Any, version: ObsVersion,
                 timeout: float):
        self.host = host
        self.port = port
        self.version = version
        self.timeout = timeout
        self._req = req
        self._events = events
        self._lock = threading.Lock()
        self._record_listeners: list[Callable[[RecordEvent], None]] = []
        self._exit_listeners: list[Callable[[], None]] = []
        self._record_q: "queue.Queue[RecordEvent]" = queue.Queue()
        self.exit_started = threading.Event()
        self._closed = False
        if events is not None:
            self._install_callbacks()

    def __repr__(self) -> str:
        return f"ObsClient(host={self.host!r}, port={self.port}, password=***)"

    # -- events ---------------------------------------------------------------
    def _install_callbacks(self) -> None:
        client = self

        def on_record_state_changed(data):
            try:
                ev = RecordEvent(state=getattr(data, "output_state", ""),
                                 active=bool(getattr(data, "output_active", False)),
                                 output_path=getattr(data, "output_path", None) or None)
                client._record_q.put(ev)
                for fn in list(client._record_listeners):
                    try:
                        fn(ev)
                    except Exception:  # a listener bug must not kill the event thread
                        log.exception("record listener failed")
            except Exception:
                log.exception("bad RecordStateChanged event")

        def on_exit_started(data):
            client.exit_started.set()
            for fn in list(client._exit_listeners):
                try:
                    fn()
                except Exception:
                    log.exception("exit listener failed")

        self._events.callback.register([on_record_state_changed, on_exit_started])

    def on_record(self, fn: Callable[[RecordEvent], None]) -> None:
        """Call ``fn(RecordEvent)`` for every RecordStateChanged (event thread)."""
        self._record_listeners.append(fn)

    def on_exit(self, fn: Callable[[], None]) -> None:
        """Call ``fn()`` when OBS announces it is quitting (ExitStarted)."""
        self._exit_listeners.append(fn)

    def remove_listener(self, fn: Callable) -> None:
        """Unregister a callback added with :meth:`on_record` or :meth:`on_exit`."""
        for lst in (self._record_listeners, self._exit_listeners):
            while fn in lst:
                lst.remove(fn)

    @property
    def events_alive(self) -> bool:
        """False once the event socket is closed (OBS quit, crashed or was killed)."""
        w = getattr(self._events, "worker", None)
        return w is not None and w.is_alive()

    def alive(self) -> bool:
        """True if OBS still answers (event socket open and not quitting)."""
        return self.events_alive and not self.exit_started.is_set()

    def drain_record_events(self) -> None:
        """Forget record events received so far (before waiting for a new one)."""
        while True:
            try:
                self._record_q.get_nowait()
            except queue.Empty:
                return

    def wait_record_state(self, states: tuple[str, ...], timeout: float) -> RecordEvent:
        """Block until a RecordStateChanged with a state in ``states`` arrives.
        Raises OBSProblem on timeout or when OBS goes away."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise OBSProblem(f"OBS did not report {'/'.join(s.rsplit('_', 1)[-1].lower() for s in states)} "
                                 f"within {timeout:g} s")
            try:
                ev = self._record_q.get(timeout=min(left, 0.2))
            except queue.Empty:
                if not self.events_alive:
                    raise OBSProblem("lost the connection to OBS (did OBS quit?)")
                continue
            if ev.state in states:
                return ev

    # -- requests -------------------------------------------------------------
    def request(self, request_type: str, data: dict | None = None) -> dict:
        """Send one request; return its responseData as a plain dict ({} if none).
        Raises OBSProblem with OBS's comment when the request fails."""
        if self._closed:
            raise OBSProblem("the OBS connection is closed")
        with self._lock:
            try:
                resp = self._req.send(request_type, data, raw=True)
            except OBSSDKRequestError as e:
                raise OBSProblem(f"OBS refused {request_type}: {_comment(e)}") from None
            except OBSSDKError:
                raise OBSProblem(f"OBS did not answer {request_type} within {self.timeout:g} s") from None
            except (OSError, ValueError, *_ws_closed_errors()) as e:
                raise OBSProblem(f"lost the connection to OBS during {request_type} "
                                 f"({type(e).__name__})") from None
        return resp or {}

    def get_record_status(self) -> dict:
        """``{"outputActive": bool, "outputPaused": bool, "outputDuration": ms, ...}``."""
        return self.request("GetRecordStatus")

    def start_record(self, timeout: float = 15.0) -> RecordEvent:
        """StartRecord and wait for RecordStateChanged STARTED; returns that event
        (``output_path`` is the file OBS writes)."""
        self.drain_record_events()
        self.request("StartRecord")
        ev = self.wait_record_state((REC_STARTED, REC_STOPPED), timeout)
        if ev.state != REC_STARTED:
            raise OBSProblem("OBS could not start the recording (check the recording path and "
                             "encoder in OBS's Settings > Output; OBS's log says why)")
        return ev

    def stop_record(self, timeout: float = 30.0) -> RecordEvent:
        """StopRecord and wait for RecordStateChanged STOPPED (file finalized)."""
        self.drain_record_events()
        resp = self.request("StopRecord")
        ev = self.wait_record_state((REC_STOPPED,), timeout)
        if not ev.output_path and resp.get("outputPath"):
            ev.output_path = resp["outputPath"]
        return ev

    def get_profile_parameter(self, category: str, name: str) -> str | None:
        """The current profile's value (None if unset and without default)."""
        r = self.request("GetProfileParameter", {"parameterCategory": category,
                                                 "parameterName": name})
        v = r.get("parameterValue")
        if v is None:
            v = r.get("defaultParameterValue")
        return v

    def get_profile_parameter_raw(self, category: str, name: str) -> tuple[str | None, str | None]:
        """(user value or None, default value or None)."""
        r = self.request("GetProfileParameter", {"parameterCategory": category,
                                                 "parameterName": name})
        return r.get("parameterValue"), r.get("defaultParameterValue")

    def set_profile_parameter(self, category: str, name: str, value: str | None) -> None:
        """Set (or with None delete) a value in the current profile's basic.ini."""
        self.request("SetProfileParameter", {"parameterCategory": category,
                                             "parameterName": name, "parameterValue": value})

    def get_video_settings(self) -> dict:
        """fpsNumerator, fpsDenominator, baseWidth/Height, outputWidth/Height."""
        return self.request("GetVideoSettings")

    def get_stats(self) -> dict:
        """cpuUsage, activeFps, renderSkippedFrames, outputSkippedFrames, ..."""
        return self.request("GetStats")

    def close(self) -> None:
        """Close both sockets (idempotent)."""
        if self._closed:
            return
        self._closed = True
        for c in (self._events, self._req):
            if c is None:
                continue
            try:
                c.base_client.ws.close()
            except Exception:
                pass
        w = getattr(self._events, "worker", None)
        if w is not None:
            w.join(timeout=2.0)

    def __enter__(self) -> "ObsClient":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _ws_closed_errors() -> tuple:
    try:
        from websocket import WebSocketConnectionClosedException, WebSocketException
        return (WebSocketConnectionClosedException, WebSocketException)
    except Exception:  # pragma: no cover
        return (OSError,)


def _comment(e: OBSSDKRequestError) -> str:
    msg = str(e)
    if "With message:" in msg:
        return msg.split("With message:", 1)[1].strip()
    return f"code {getattr(e, 'code', '?')}"


def _open(kind: str, host: str, port: int, password: str | None, timeout: float, subs: int = 0):
    """Open one obsws-python client; translate every failure into OBSProblem.

    The password goes only into the obsws-python object. No message built here
    contains it."""
    where = f"{host}:{port}"
    kwargs = dict(host=host, port=port, password=password or "", timeout=timeout)
    try:
        if kind == "req":
            return _obsws.ReqClient(**kwargs)
        return _obsws.EventClient(subs=subs, **kwargs)
    except ConnectionRefusedError:
        raise OBSProblem(f"cannot connect to OBS at {where}: connection refused (is OBS running, "
                         f"with Tools > WebSocket Server Settings > Enable WebSocket server on, "
                         f"and is the port right?)") from None
    except socket.gaierror:
        raise OBSProblem(f"cannot connect to OBS at {where}: unknown host {host!r}") from None
    except (TimeoutError, socket.timeout, WebSocketTimeoutException):
        raise OBSProblem(f"cannot connect to OBS at {where}: no answer within {timeout:g} s "
                         f"(a firewall, or a server that is not obs-websocket 5)") from None
    except OBSSDKError as e:
        text = str(e)
        if "no password provided" in text:
            raise OBSProblem(f"OBS at {where} requires a password: pass --password, set "
                             f"{PASSWORD_ENV}, or put \"password\" in {default_config_path()}") from None
        if "identify" in text:
            raise OBSProblem(f"OBS at {where} rejected the password (authentication failed)") from None
        raise OBSProblem(f"cannot talk to OBS at {where}: obs-websocket protocol error") from None
    except (ValueError, KeyError, WebSocketBadStatusException, WebSocketProtocolException):
        # no JSON Hello / no websocket upgrade: not obs-websocket 5 (obs-websocket 4.x sends nothing first)
        raise OBSProblem(f"the server at {where} is not obs-websocket 5 (obs-websocket 4.x and "
                         f"OBS older than 28 are not supported)") from None
    except _ws_closed_errors() as e:
        if password:
            raise OBSProblem(f"OBS at {where} closed the connection during login: wrong password "
                             f"(authentication failed)") from None
        raise OBSProblem(f"OBS at {where} closed the connection ({type(e).__name__})") from None
    except OSError as e:
        raise OBSProblem(f"cannot connect to OBS at {where}: {e.strerror or type(e).__name__}") from None


def connect(host: str = DEFAULT_HOST, port: int = DEFAULT_PORT, password: str | None = None,
            timeout: float = 5.0, events: bool = True) -> ObsClient:
    """Connect to obs-websocket, check versions, optionally open the event socket.

    Raises OBSProblem (one line, never containing the password) when OBS is not
    reachable, the password is wrong or missing, or OBS/obs-websocket is too old."""
    if not (0 < int(port) < 65536):
        raise BadInput(f"invalid port {port}")
    req = _open("req", host, port, password, timeout)
    try:
        try:
            raw = req.send("GetVersion", raw=True) or {}
        except Exception:
            raise OBSProblem(f"OBS at {host}:{port} did not answer GetVersion") from None
        version = ObsVersion(obs_version=str(raw.get("obsVersion", "0")),
                             obs_websocket_version=str(raw.get("obsWebSocketVersion", "0")),
                             rpc_version=int(raw.get("rpcVersion", 0) or 0),
                             platform=str(raw.get("platform", "")),
                             platform_description=str(raw.get("platformDescription", "")))
        check_versions(version)
        ev = _open("event", host, port, password, timeout, subs=_SUB_GENERAL | _SUB_OUTPUTS) if events else None
    except BaseException:
        try:
            req.base_client.ws.close()
        except Exception:
            pass
        raise
    return ObsClient(host, port, req, ev, version, timeout)


# --------------------------------------------------------------------------- recording path

@dataclass
class RecordingTarget:
    """Redirects OBS's next recording to ``directory/<stem>.<ext>`` and restores the
    user's settings afterwards.

    obs-websocket 5.1 (OBS 29) has no SetRecordDirectory, so this edits the current
    profile: ``SimpleOutput/FilePath`` (Simple output mode) or ``AdvOut/RecFilePath``
    (Advanced), plus ``Output/FilenameFormatting`` (the file name without extension;
    a name without ``%`` codes is used verbatim) and ``FileNameWithoutSpace``.
    OBS reads these when a recording starts, so they take effect immediately.

    ``saved`` holds the previous user values ((category, name) -> value or None for
    "was unset"); it is JSON-able so a crashed companion's successor can restore them.
    """

    saved: dict[str, str | None] = field(default_factory=dict)

    @staticmethod
    def path_keys(mode: str) -> list[tuple[str, str]]:
        if (mode or "").lower() == "advanced":
            return [("AdvOut", "RecFilePath"), ("Output", "FilenameFormatting")]
        return [("SimpleOutput", "FilePath"), ("Output", "FilenameFormatting")]

    def apply(self, client: ObsClient, directory: str | Path, stem: str) -> None:
        """Point OBS's recording at ``directory/stem.<format>``. Saves old values first."""
        if "%" in stem or "/" in stem or "\\" in stem:
            raise BadInput(f"session id {stem!r} must not contain % / or \\")
        mode = client.get_profile_parameter("Output", "Mode") or "Simple"
        keys = self.path_keys(mode)
        for cat, name in keys:
            key = f"{cat}/{name}"
            if key not in self.saved:
                user, _default = client.get_profile_parameter_raw(cat, name)
                self.saved[key] = user
        client.set_profile_parameter(keys[0][0], keys[0][1], str(Path(directory)))
        client.set_profile_parameter("Output", "FilenameFormatting", stem)

    def restore(self, client: ObsClient) -> None:
        """Put back the values saved by :meth:`apply` (best effort per key)."""
        errors = []
        for key, value in list(self.saved.items()):
            cat, name = key.split("/", 1)
            try:
                client.set_profile_parameter(cat, name, value)
            except OBSProblem as e:
                if value is not None:  # deleting a value that is already gone is fine
                    errors.append(str(e))
                    continue
            del self.saved[key]
        if errors:
            raise OBSProblem("could not restore OBS recording settings: " + errors[0])
