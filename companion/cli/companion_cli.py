"""``nm-companion``: record input alongside OBS recordings.

Subcommands: ``start`` (one session, or ``--watch`` for one per recording), ``status``,
``stop``, ``check-obs`` (recording setup check, ``--configure-obs`` to fix) and
``setup-obs`` (install the timestamp script + a scene collection, enable
obs-websocket). Thin: parse, call one function, turn NMError into one line
``nm-companion: error: ...`` on stderr and its exit code.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from pathlib import Path

from companion.util.errors import BadInput, NMError

PROG = "nm-companion"

EPILOG = """\
password: --password, else env NM_OBS_PASSWORD, else "password" in the config file
({config}); it is never printed or logged. Prefer the env var or the config file
(chmod 600): a --password is visible to other users in the process list.

config file (JSON, every key optional): {{"host": "localhost", "port": 4455,
"password": "...", "consent": true, "out": "~/nm-sessions"}}
"""

START_EXIT_CODES = """
exit codes of start: 0 session complete (ended by Ctrl-C, SIGTERM, nm-companion stop,
--duration or the recording stopped in OBS); 1 internal error; 2 bad usage or input
(no consent, bad --session-id, --session-id/--duration with --watch); 3 OBS problem:
not running, wrong password, OBS or obs-websocket too old, recording setup error, or
OBS quit/crashed during the recording (session finalized as incomplete); 4
environment: output folder not writable, or the event log could not be written
during the session (disk full, file size limit, I/O error: the recording the
companion started is stopped, lines already written are kept, the session is
finalized as incomplete); 130 interrupted before recording. With --watch: 0 if every
session was complete, else the code of the first incomplete one (3 or 4); watching
goes on after an incomplete session.
"""


def _say(msg: str) -> None:
    print(f"{PROG}: {msg}", file=sys.stderr, flush=True)


def _positive_float(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}")
    if not v > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return v


def _port(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}")
    if not 0 < v < 65536:
        raise argparse.ArgumentTypeError(f"port must be 1-65535, got {v}")
    return v


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, exit code 2, as for every NMError
        self.print_usage(sys.stderr)
        print(f"{PROG}: error: {message}", file=sys.stderr)
        raise SystemExit(2)


def _add_connection(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("OBS connection")
    g.add_argument("--host", metavar="HOST",
                   help="obs-websocket host (default: config file, else localhost)")
    g.add_argument("--port", type=_port, metavar="PORT",
                   help="obs-websocket port (default: config file, else 4455)")
    g.add_argument("--password", metavar="PASSWORD",
                   help="obs-websocket password (see 'password' below)")
    g.add_argument("--timeout", type=_positive_float, default=5.0, metavar="SECONDS",
                   help="seconds to wait for OBS to answer (default 5)")
    g.add_argument("--config", type=Path, metavar="FILE",
                   help="companion config file (default: $NM_COMPANION_CONFIG or "
                        "~/.config/nm-companion/config.json)")


def build_parser() -> argparse.ArgumentParser:
    from companion.capture.obsws import default_config_path
    epilog = EPILOG.format(config=default_config_path())
    p = _Parser(prog=PROG, description="Log keyboard, mouse and window events next to OBS "
                "recordings, one session folder per recording.",
                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=epilog)
    sub = p.add_subparsers(dest="cmd", metavar="COMMAND", parser_class=_Parser)

    s = sub.add_parser("start", help="record a session (or --watch for every recording)",
                       description="Start an OBS recording into <out>/<session_id>/ and log "
                       "input until Ctrl-C, SIGTERM, 'nm-companion stop', --duration, or the "
                       "recording being stopped in OBS. If OBS is already recording, attach "
                       "to that recording instead (and leave it running). Audio, if any, is "
                       "recorded by OBS; the companion never records audio.",
                       formatter_class=argparse.RawDescriptionHelpFormatter,
                       epilog=epilog + START_EXIT_CODES)
    _add_connection(s)
    s.add_argument("--out", type=Path, metavar="DIR",
                   help="folder for session folders (default: config 'out', else ~/nm-sessions)")
    s.add_argument("--session-id", metavar="ID",
                   help="session folder/file name (default session_YYYYMMDD_HHMMSS); "
                        "not with --watch")
    s.add_argument("--duration", type=_positive_float, metavar="SECONDS",
                   help="stop after this many seconds; not with --watch")
    s.add_argument("--watch", action="store_true",
                   help="stay connected; one session per recording started/stopped in OBS "
                        "(ids session_YYYYMMDD_HHMMSS); survives OBS restarts and a failed "
                        "session; the companion never starts or stops a recording then")
    pr = s.add_argument_group("privacy")
    pr.add_argument("--consent", action="store_true",
                    help="confirm that everyone whose input is recorded agreed to it "
                         "(required, or \"consent\": true in the config file)")
    pr.add_argument("--no-keyboard", action="store_true", help="do not log the keyboard")
    pr.add_argument("--no-mouse", action="store_true", help="do not log the mouse")
    pr.add_argument("--only-window", action="append", default=[], metavar="PATTERN",
                    help="log input only while the active window title/app matches "
                         "(repeatable; substring, glob with * ? [, or re:REGEX; case-insensitive)")
    pr.add_argument("--deny-window", action="append", default=[], metavar="PATTERN",
                    help="never log input while the active window matches (repeatable)")
    pr.add_argument("--redact-titles", action="store_true",
                    help="replace every window title with <redacted> in the log")
    ob = s.add_argument_group("OBS setup")
    ob.add_argument("--configure-obs", action="store_true",
                    help="apply recommended recording settings first: MKV; an H.264 x264 "
                         "encoder where the current one cannot carry captions; a keyframe "
                         "interval of 2 s when OBS's config folder is found: in Advanced output "
                         "mode (with the standard output), and in Simple mode when the recording "
                         "quality is 'Same as stream' with x264 (as keyint= in its custom x264 "
                         "options; other Simple qualities have no such setting)")
    ob.add_argument("--allow-setup-problems", action="store_true",
                    help="record even if the setup check finds an error (e.g. not MKV)")
    ob.add_argument("--obs-config", type=Path, metavar="DIR",
                    help="OBS config folder, for the keyframe interval of --configure-obs "
                         "(default: the usual folder of this OS when OBS runs on this machine)")

    st = sub.add_parser("status", help="is a companion running? which session, how many events",
                        description="Show running companions (session, events written so far) "
                        "and OBS's recording state. Exit code 0 if one is running, 1 if not.")
    st.add_argument("--json", action="store_true", help="print the status as JSON")
    _add_connection(st)

    sp = sub.add_parser("stop", help="stop the running companion(s) cleanly",
                        description="Ask running companions to finish their session (stop the "
                        "recording they started, write metadata) and wait for them.")
    sp.add_argument("--pid", type=int, metavar="PID", help="only this companion process")
    sp.add_argument("--wait", type=_positive_float, default=60.0, metavar="SECONDS",
                    help="seconds to wait for it to finish (default 60)")

    ck = sub.add_parser("check-obs", help="check OBS's recording setup over obs-websocket",
                        description="Explain what in OBS's recording setup keeps timestamps "
                        "from landing in the recording; --configure-obs fixes it.")
    _add_connection(ck)
    ck.add_argument("--configure-obs", action="store_true", help="apply the recommended settings")
    ck.add_argument("--obs-config", type=Path, metavar="DIR",
                    help="OBS config folder (default: this OS's usual folder for a local OBS)")

    so = sub.add_parser("setup-obs", help="install the timestamp script and a scene "
                        "collection, enable obs-websocket (OBS must be closed)",
                        description="Install obs_script/nm_timestamps.py into DIR/scripts/, a "
                        "scene collection into DIR/basic/scenes/ (loading the script, made "
                        "current), and enable obs-websocket with a password. Every changed "
                        "file is backed up as <file>.<timestamp>.bak first. The password is "
                        "saved to the companion config file (mode 600), never printed.")
    so.add_argument("--obs-config", type=Path, metavar="DIR",
                    help="OBS config folder (default: the OS's usual location: "
                         "~/.config/obs-studio, flatpak ~/.var/app/com.obsproject.Studio/"
                         "config/obs-studio, %%APPDATA%%\\obs-studio, ~/Library/Application "
                         "Support/obs-studio)")
    so.add_argument("--scene", choices=["linux", "windows", "macos"],
                    default={"win32": "windows", "darwin": "macos"}.get(sys.platform, "linux"),
                    help="scene collection: linux (screen capture + PulseAudio), windows "
                         "(game capture + desktop audio + mic + webcam, hidden), macos "
                         "(screen capture + audio). Default: this OS")
    so.add_argument("--websocket-password", metavar="PASSWORD",
                    help="obs-websocket password (default: keep OBS's, else generate one)")
    so.add_argument("--websocket-port", type=_port, default=4455, metavar="PORT",
                    help="default 4455")
    so.add_argument("--no-activate", action="store_true",
                    help="install the collection without making it OBS's current one")
    so.add_argument("--no-save-password", action="store_true",
                    help="do not store the password in the companion config file")
    so.add_argument("--config", type=Path, metavar="FILE", help="companion config file")
    so.add_argument("--force", action="store_true", help="even if OBS seems to be running")
    return p


# ============================================================ commands

def _connection(args) -> tuple[dict, str, int, str | None]:
    from companion.capture.obsws import DEFAULT_HOST, DEFAULT_PORT, load_config, resolve_password
    cfg = load_config(args.config, warn=lambda m: _say(f"warning: {m}"))
    host = args.host or cfg.get("host") or DEFAULT_HOST
    port = args.port or cfg.get("port") or DEFAULT_PORT
    try:
        port = int(port)
    except (TypeError, ValueError):
        raise BadInput("config file: 'port' must be a number")
    password, _src = resolve_password(args.password, cfg)
    return cfg, host, port, password


def cmd_start(args) -> int:
    from companion.capture.session import SessionOptions, run_session
    cfg, host, port, password = _connection(args)
    consent = bool(args.consent)
    consent_source = "--consent" if args.consent else None
    if not consent and cfg.get("consent") is True:
        consent, consent_source = True, "config file"
    out = args.out or (Path(cfg["out"]).expanduser() if cfg.get("out") else Path.home() / "nm-sessions")
    opts = SessionOptions(
        out=out, session_id=args.session_id, host=host, port=port, password=password,
        timeout_s=args.timeout, duration_s=args.duration, consent=consent,
        consent_source=consent_source, keyboard=not args.no_keyboard, mouse=not args.no_mouse,
        only_window=list(args.only_window), deny_window=list(args.deny_window),
        redact_titles=args.redact_titles, configure_obs=args.configure_obs,
        allow_setup_problems=args.allow_setup_problems, obs_config_dir=args.obs_config)
    if args.watch:
        from companion.capture.watch import run_watch
        if args.duration:
            raise BadInput("--duration cannot be used with --watch")
        if args.session_id:
            raise BadInput("--session-id cannot be used with --watch (each recording gets "
                           "its own id)")
        from companion.capture.watch import watch_exit_code
        results = run_watch(opts, say=_say)
        bad = [r for r in results if r.exit_code]
        _say(f"watch ended: {len(results)} session(s), {len(bad)} incomplete"
             + (": " + ", ".join(r.session_id for r in bad) if bad else ""))
        return watch_exit_code(results)
    progress = None
    if sys.stderr.isatty():
        def progress(line: str) -> None:
            sys.stderr.write("\r" + line + "\033[K")
            sys.stderr.flush()

        def say_tty(msg: str) -> None:
            sys.stderr.write("\r\033[K")
            _say(msg)
        res = run_session(opts, say=say_tty, progress=progress)
        sys.stderr.write("\r\033[K")
    else:
        res = run_session(opts, say=_say)
    if res.exit_code:
        print(f"{PROG}: error: {res.message}", file=sys.stderr)
    else:
        _say(res.message)
    print(res.session_dir)
    return res.exit_code


def cmd_status(args) -> int:
    from companion.capture.session import list_running
    running = [r for r in list_running() if not r.get("stale")]
    rec_state = None
    if running or args.host or args.port:
        try:
            from companion.capture.obsws import connect
            _cfg, host, port, password = _connection(args)
            if running and running[0].get("obs"):
                host = args.host or running[0]["obs"].get("host", host)
                port = args.port or running[0]["obs"].get("port", port)
            c = connect(host, port, password, args.timeout, events=False)
            try:
                st = c.get_record_status()
                rec_state = ("paused" if st.get("outputPaused") else "recording") \
                    if st.get("outputActive") else "not recording"
            finally:
                c.close()
        except NMError as e:
            rec_state = f"unknown ({e})"
    if args.json:
        print(json.dumps({"running": running, "obs_recording": rec_state}, indent=2))
        return 0 if running else 1
    if not running:
        print("no nm-companion is running" + (f"; OBS: {rec_state}" if rec_state else ""))
        return 1
    for r in running:
        age = (time.time_ns() - int(r.get("started_epoch_ns", time.time_ns()))) / 1e9
        sess = r.get("session_id") or "-"
        print(f"nm-companion pid {r['pid']}: {r.get('phase', '?')}, session {sess}, "
              f"{r.get('events_written') if r.get('events_written') is not None else '-'} events, "
              f"running {age:.0f} s" + (f", folder {r['session_dir']}" if r.get("session_dir") else ""))
    if rec_state:
        print(f"OBS: {rec_state}")
    return 0


def cmd_stop(args) -> int:
    from companion.capture.session import list_running
    from companion.util.procs import pid_alive
    running = [r for r in list_running() if not r.get("stale")]
    if args.pid is not None:
        running = [r for r in running if int(r["pid"]) == args.pid]
    if not running:
        print("no nm-companion is running")
        return 1
    from companion.capture.session import state_dir
    pids = [int(r["pid"]) for r in running]
    for pid in pids:
        try:  # a stop-request file (every OS) ...
            (state_dir() / f"{pid}.stop").write_text("stop\n")
        except OSError:
            pass
        if sys.platform == "win32":
            continue  # os.kill(SIGTERM) would terminate without finalizing on Windows
        try:  # ... and SIGTERM for a prompt stop
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            continue
        except PermissionError:
            raise NMError(f"not allowed to signal nm-companion pid {pid}", exit_code=4)
    deadline = time.monotonic() + args.wait
    while time.monotonic() < deadline and any(pid_alive(p) for p in pids):
        time.sleep(0.1)
    left = [p for p in pids if pid_alive(p)]
    if left:
        raise NMError(f"nm-companion pid {left[0]} is still finishing after {args.wait:g} s", exit_code=1)
    print(f"stopped nm-companion pid {', '.join(map(str, pids))}")
    return 0


def cmd_check(args) -> int:
    from companion.capture import obs_config
    from companion.capture.obsws import connect
    _cfg, host, port, password = _connection(args)
    c = connect(host, port, password, args.timeout, events=False)
    try:
        if args.configure_obs:
            profile_dir = obs_config.current_profile_dir(c, args.obs_config)
            changes = obs_config.configure_recording(c, profile_dir)
            for ch in changes:
                print(f"changed: {ch}")
            if obs_config.needs_restart(changes):
                print(f"note: {obs_config.RESTART_NOTE}")
        setup, findings = obs_config.check_recording_setup(c)
    finally:
        c.close()
    print(f"OBS {c.version.obs_version}, obs-websocket {c.version.obs_websocket_version}: "
          f"{setup.mode} output, format {setup.rec_format}, encoder {setup.encoder} ({setup.codec})")
    for f in findings:
        print(f"{f.level}: {f.message}")
    if not findings:
        print("ok: recordings will carry the anchors in captions and in the sidecar")
    return 3 if any(f.level == "error" for f in findings) else 0


def cmd_setup_obs(args) -> int:
    from companion.capture import obs_config
    from companion.capture.obsws import default_config_path
    d = args.obs_config or obs_config.find_obs_config_dir()
    if d is None:
        cands = ", ".join(str(p) for p in obs_config.default_obs_config_dirs())
        raise BadInput(f"no OBS config folder found (looked at {cands}); start OBS once or pass "
                       f"--obs-config DIR")
    res = obs_config.setup_obs(d, scene=args.scene, websocket_password=args.websocket_password,
                               websocket_port=args.websocket_port, activate=not args.no_activate,
                               force=args.force)
    if not args.no_save_password:
        obs_config.save_password(res, args.config or default_config_path())
    print(f"OBS config: {res.config_dir}")
    print(f"script: {res.script_path}")
    print(f"scene collection: {res.collection_name!r} -> {res.collection_path}"
          + ("" if args.no_activate else " (current)"))
    print(f"obs-websocket: enabled on port {res.websocket_port}, password {res.password_source}"
          + (f", saved to {res.password_saved_to}" if res.password_saved_to else ""))
    for b in res.backups:
        print(f"backup: {b}")
    if not res.written:
        print("nothing to change: already set up")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.cmd:
        parser.print_help(sys.stderr)
        return 2
    handlers = {"start": cmd_start, "status": cmd_status, "stop": cmd_stop,
                "check-obs": cmd_check, "setup-obs": cmd_setup_obs}
    from .common import run_cli
    return run_cli(PROG, lambda: handlers[args.cmd](args))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
