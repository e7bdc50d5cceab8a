"""nm-companion without OBS: argument handling, one-line errors, config/password
resolution, status/stop bookkeeping, the metadata builder and version checks.

The CLI runs as a real subprocess. Network failures use real sockets (a closed port,
a TCP server that never speaks obs-websocket). The real-OBS paths are in
test_companion_obs.py.
"""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time

import pytest

from companion.capture import obsws
from companion.capture.metadata import build_session_metadata, input_device_name, iso_utc
from companion.capture.obsws import ObsVersion, check_versions, load_config, resolve_password
from companion.capture.session import (StateFile, check_session_id, default_session_id,
                                       list_running, prepare_session_dir)
from companion.contract.metadata import validate_json
from companion.contract.version import FORMAT_VERSION
from tests.conftest import companion_env
from companion.util.errors import BadInput, EnvProblem, OBSProblem


@pytest.fixture()
def env(tmp_path):
    return companion_env(tmp_path, keep_display=False)


def cli(args, env, timeout=60):
    return subprocess.run([sys.executable, "-m", "companion.cli.companion_cli", *args],
                          capture_output=True, text=True, timeout=timeout, env=env)


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def one_error_line(r, code):
    assert r.returncode == code, (r.returncode, r.stderr)
    assert "Traceback" not in r.stderr
    lines = [ln for ln in r.stderr.splitlines() if ln.startswith("nm-companion: error:")]
    assert len(lines) == 1, r.stderr
    return lines[0]


# ----------------------------------------------------------------------------- CLI

def test_help_texts(env):
    r = cli(["--help"], env)
    assert r.returncode == 0
    for cmd in ("start", "status", "stop", "check-obs", "setup-obs"):
        assert cmd in r.stdout
    assert "NM_OBS_PASSWORD" in r.stdout
    r = cli(["start", "--help"], env)
    assert r.returncode == 0
    for flag in ("--consent", "--only-window", "--deny-window", "--no-keyboard", "--no-mouse",
                 "--duration", "--watch", "--configure-obs", "--session-id", "--out"):
        assert flag in r.stdout
    assert "never records audio" in r.stdout
    # the documented exit codes and flag combinations
    text = " ".join(r.stdout.split())
    assert "exit codes of start: 0 session complete" in text
    assert "4 environment: output folder not writable, or the event log could not be written" in text
    assert "With --watch: 0 if every session was complete, else the code of the first incomplete one" in text
    assert "session_YYYYMMDD_HHMMSS); not with --watch" in text
    assert "stop after this many seconds; not with --watch" in text
    # one metavar style: a duration is SECONDS everywhere
    for sub in (["start"], ["status"], ["stop"], ["check-obs"]):
        h = cli([*sub, "--help"], env).stdout
        assert " S " not in h and " S\n" not in h and "=S" not in h, sub
    assert "--wait SECONDS" in cli(["stop", "--help"], env).stdout
    assert "--timeout SECONDS" in cli(["status", "--help"], env).stdout
    assert cli([], env).returncode == 2


def test_usage_errors_are_one_line(env, tmp_path):
    line = one_error_line(cli(["start", "--port", "70000"], env), 2)
    assert "port must be 1-65535" in line
    line = one_error_line(cli(["start", "--duration", "-3"], env), 2)
    assert "must be > 0" in line
    line = one_error_line(cli(["start", "--watch", "--duration", "3", "--consent",
                               "--out", str(tmp_path)], env), 2)
    assert "--duration cannot be used with --watch" in line
    line = one_error_line(cli(["start", "--watch", "--session-id", "s1", "--consent",
                               "--out", str(tmp_path / "w")], env), 2)
    assert line == ("nm-companion: error: --session-id cannot be used with --watch (each "
                    "recording gets its own id)")
    assert not (tmp_path / "w").exists()  # refused before anything was created


def test_no_consent_refused_before_anything(env, tmp_path):
    out = tmp_path / "out"
    line = one_error_line(cli(["start", "--out", str(out), "--port", str(closed_port())], env), 2)
    assert "consent" in line
    assert not out.exists()


def test_consent_from_config_file(env, tmp_path):
    cfg = tmp_path / "cfg.json"
    cfg.write_text(json.dumps({"consent": True, "port": closed_port(), "out": str(tmp_path / "o")}))
    os.chmod(cfg, 0o600)
    env["NM_COMPANION_CONFIG"] = str(cfg)
    line = one_error_line(cli(["start"], env), 3)  # got past consent, to the connection
    assert "connection refused" in line
    assert not any((tmp_path / "o").iterdir())  # the empty session folder was removed


def test_obs_not_running_message(env, tmp_path):
    port = closed_port()
    line = one_error_line(cli(["start", "--consent", "--out", str(tmp_path / "o"),
                               "--port", str(port), "--password", "Pw-never-shown-1"], env), 3)
    assert f"localhost:{port}" in line and "is OBS running" in line
    r = cli(["check-obs", "--port", str(port), "--password", "Pw-never-shown-1"], env)
    assert "Pw-never-shown-1" not in r.stdout + r.stderr
    assert one_error_line(r, 3)


def test_server_that_is_not_obs_websocket(env, tmp_path):
    """A real TCP server that accepts and never answers (like a firewall'd or foreign
    service): the companion gives up after --timeout with a one-line error."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(4)
    conns = []

    def accept():
        try:
            while True:
                c, _ = srv.accept()
                conns.append(c)
        except OSError:
            pass
    threading.Thread(target=accept, daemon=True).start()
    try:
        t0 = time.monotonic()
        line = one_error_line(cli(["start", "--consent", "--out", str(tmp_path / "o"), "--timeout", "1",
                                   "--port", str(srv.getsockname()[1])], env), 3)
        assert time.monotonic() - t0 < 20
        assert "no answer within 1 s" in line and "not obs-websocket 5" in line
    finally:
        srv.close()
        for c in conns:
            c.close()


def test_bad_session_id_and_existing_session(env, tmp_path):
    line = one_error_line(cli(["start", "--consent", "--out", str(tmp_path), "--session-id", "../x"], env), 2)
    assert "invalid session id" in line
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "taken.jsonl").write_text("{}\n")
    line = one_error_line(cli(["start", "--consent", "--out", str(tmp_path), "--session-id", "taken",
                               "--port", str(closed_port())], env), 2)
    assert "already exists and is not empty" in line
    assert (tmp_path / "taken" / "taken.jsonl").read_text() == "{}\n"


def test_bad_config_file(env, tmp_path):
    cfg = tmp_path / "cfg.json"
    cfg.write_text("{not json")
    env["NM_COMPANION_CONFIG"] = str(cfg)
    line = one_error_line(cli(["start", "--consent", "--out", str(tmp_path)], env), 2)
    assert "is not valid JSON" in line


def test_status_and_stop_with_nothing_running(env, tmp_path):
    r = cli(["status"], env)
    assert r.returncode == 1 and r.stdout.strip() == "no nm-companion is running"
    r = cli(["status", "--json"], env)
    assert r.returncode == 1 and json.loads(r.stdout)["running"] == []
    r = cli(["stop"], env)
    assert r.returncode == 1 and "no nm-companion is running" in r.stdout


def test_state_files_of_dead_processes_are_cleaned(tmp_path, monkeypatch):
    monkeypatch.setenv("NM_COMPANION_STATE_DIR", str(tmp_path))
    # a real process that has exited: its pid is dead
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    (tmp_path / f"{p.pid}.json").write_text(json.dumps({"pid": p.pid, "phase": "recording"}))
    me = StateFile(tmp_path)
    me.update(phase="recording", session_id="s", events_written=3)
    running = list_running(tmp_path)
    assert [r["pid"] for r in running] == [os.getpid()]
    assert not (tmp_path / f"{p.pid}.json").exists()
    # a dead companion that left OBS settings to restore is reported as stale, not deleted
    (tmp_path / f"{p.pid}.json").write_text(json.dumps({"pid": p.pid, "obs_restore": {"Output/FilenameFormatting": "x"}}))
    stale = [r for r in list_running(tmp_path) if r.get("stale")]
    assert stale and stale[0]["pid"] == p.pid
    me.remove()


# ----------------------------------------------------------------------------- units

def test_password_sources(monkeypatch, tmp_path):
    monkeypatch.delenv("NM_OBS_PASSWORD", raising=False)
    assert resolve_password("cli", {"password": "cfg"}) == ("cli", "--password")
    assert resolve_password(None, {"password": "cfg"}) == ("cfg", "config file")
    monkeypatch.setenv("NM_OBS_PASSWORD", "envpw")
    assert resolve_password(None, {"password": "cfg"}) == ("envpw", "NM_OBS_PASSWORD")
    assert resolve_password("", {}) == ("", "--password")
    monkeypatch.delenv("NM_OBS_PASSWORD")
    assert resolve_password(None, {}) == (None, "none")
    with pytest.raises(BadInput):
        resolve_password(None, {"password": 5})
    cfg = tmp_path / "c.json"
    cfg.write_text(json.dumps({"password": "zz-secret"}))
    os.chmod(cfg, 0o644)
    warned = []
    assert load_config(cfg, warn=warned.append)["password"] == "zz-secret"
    assert len(warned) == 1 and "chmod 600" in warned[0] and "zz-secret" not in warned[0]
    os.chmod(cfg, 0o600)
    warned.clear()
    load_config(cfg, warn=warned.append)
    assert warned == []
    assert load_config(tmp_path / "missing.json") == {}


def test_version_checks():
    check_versions(ObsVersion("29.0.2", "5.1.0", 1))
    check_versions(ObsVersion("31.0.0", "5.5.4", 1))
    with pytest.raises(OBSProblem, match="OBS 28.1.2 is too old"):
        check_versions(ObsVersion("28.1.2", "5.0.1", 1))
    with pytest.raises(OBSProblem, match="obs-websocket 4.9.1 is too old"):
        check_versions(ObsVersion("27.2.4", "4.9.1", 1))


def test_obsws_logger_is_silenced():
    """obsws-python logs the password at INFO; its logger must emit nothing."""
    import logging
    lg = logging.getLogger("obsws_python.baseclient.ObsClient")
    assert not lg.isEnabledFor(logging.CRITICAL)
    assert obsws._OBSWS_LOGGER.propagate is False


def test_session_ids_and_folder(tmp_path):
    assert default_session_id().startswith("session_") and len(default_session_id()) == len("session_20240101_120000")
    assert check_session_id("run-1.a_b") == "run-1.a_b"
    for bad in ("", "../x", "a/b", "-x", "a b", "x" * 201, "a%b"):
        with pytest.raises(BadInput):
            check_session_id(bad)
    d = prepare_session_dir(tmp_path / "new" / "deeper", "s")
    assert d.is_dir() and not any(d.iterdir())
    assert prepare_session_dir(tmp_path / "new" / "deeper", "s") == d  # empty: reusable
    f = tmp_path / "f"
    f.write_text("")
    with pytest.raises(EnvProblem, match="cannot create output folder"):
        prepare_session_dir(f / "x", "s")


def test_metadata_builder_seed001_fields():
    md = build_session_metadata(
        session_id="s1", started_epoch_ns=1_700_000_000_123_456_789, status="complete",
        end_reason="duration", obs_version="29.0.2", obs_websocket_version="5.1.0",
        video={"fpsNumerator": 60000, "fpsDenominator": 1001, "baseWidth": 1920, "baseHeight": 1080,
               "outputWidth": 1280, "outputHeight": 720},
        encoder={"codec": "h264", "encoder": "obs_x264", "bitrate_kbps": 6000},
        sidecar_stop={"total_frames": 600, "lagged_frames": 2, "skipped_frames": 1},
        obs_stats={"outputSkippedFrames": 99, "renderSkippedFrames": 98},
        consent=True, consent_source="--consent", record_audio=True,
        privacy={"only_window": ["game"]}, keyboard=True, mouse=False, window_id=0x1a00004,
        stopped_epoch_ns=1_700_000_010_123_456_789)
    assert validate_json(md, "session_metadata") == []
    for key in ("format_version", "session_id", "captured_at", "resolution", "refresh_hz",
                "capture_fps", "codec", "bitrate_kbps", "input_device", "window_id",
                "dropped_frames", "clock_drift_ppm", "consent", "privacy", "env"):
        assert key in md
    assert md["format_version"] == FORMAT_VERSION
    assert md["captured_at"] == "2023-11-14T22:13:20.123456Z"
    assert md["resolution"] == [1280, 720] and md["base_resolution"] == [1920, 1080]
    assert abs(md["capture_fps"] - 59.94005994) < 1e-6
    assert md["dropped_frames"] == 1 and md["lagged_frames"] == 2  # the sidecar wins over stats
    assert md["input_device"] == "keyboard" and md["window_id"] == str(0x1a00004)
    assert md["consent"] == {"record_screen": True, "record_audio": True, "record_input": True,
                             "source": "--consent"}
    assert md["privacy"]["only_window"] == ["game"] and md["privacy"]["pii_regions"] == []
    assert md["env"]["obs_version"] == "29.0.2" and md["env"]["python"]
    assert md["recording"]["session_duration_s"] == 10.0
    assert "never records audio" in md["audio"]
    # without a sidecar: stats fill dropped/lagged; no consent means no input device
    md2 = build_session_metadata(
        session_id="s2", started_epoch_ns=1, status="incomplete", end_reason="OBS quit",
        obs_version=None, obs_websocket_version=None, obs_stats={"outputSkippedFrames": 4,
                                                                  "renderSkippedFrames": 5},
        consent=False, consent_source=None, record_audio=None, privacy={}, keyboard=True, mouse=True)
    assert md2["dropped_frames"] == 4 and md2["lagged_frames"] == 5
    assert md2["input_device"] == "none" and md2["resolution"] is None
    assert validate_json(md2, "session_metadata") == []
    assert input_device_name(True, True) == "keyboard+mouse"
    assert iso_utc(0) == "1970-01-01T00:00:00.000000Z"
