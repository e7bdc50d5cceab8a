"""nm-companion against a real OBS 29 (tests/obs_harness.py) under Xvfb.

Real everything: the companion runs as a subprocess (``python -m
companion.cli.companion_cli``) with its pynput listeners on the display OBS captures
(``obs.capture_display``), input is sent there with real xdotool, OBS records real
MKVs with the real timestamp script. One OBS instance serves the whole module (OBS
starts cost seconds on 2 cores); the tests run in file order and the last one kills it.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from companion.contract import events as ev
from companion.contract.metadata import validate_json
from companion.contract.sidecar import read_sidecar
from companion.util.errors import OBSProblem

pytestmark = [pytest.mark.obs]

from tests import obs_harness as harness  # noqa: E402
if not (harness.obs_available() and shutil.which("xdotool")):
    pytest.skip("needs obs, Xvfb and xdotool", allow_module_level=True)

from tests.conftest import OBS_PASSWORD as PASSWORD  # noqa: E402



@pytest.fixture()
def env(obs, tmp_path):
    """Environment of a companion process: pynput on the captured display, its own
    state dir, no config file, password only via env when a test wants it."""
    e = dict(os.environ)
    e.update({"DISPLAY": obs.capture_display, "NM_COMPANION_STATE_DIR": str(tmp_path / "state"),
              "NM_COMPANION_CONFIG": str(tmp_path / "no-config.json"), "PYTHONUNBUFFERED": "1"})
    e.pop("NM_OBS_PASSWORD", None)
    return e


def companion(args, env, **kw) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "companion.cli.companion_cli", *args],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)


def run(args, env, timeout=60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "companion.cli.companion_cli", *args], env=env,
                          capture_output=True, text=True, timeout=timeout)


def xdo(display, *args) -> None:
    subprocess.run(["xdotool", *args], env={**os.environ, "DISPLAY": display}, check=True,
                   timeout=10)


def wait_phase(state_dir: Path, phase: str, proc: subprocess.Popen, timeout=40.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            out, err = proc.communicate()
            pytest.fail(f"companion exited early ({proc.returncode}): {err}")
        p = state_dir / f"{proc.pid}.json"
        try:
            d = json.loads(p.read_text())
        except (OSError, ValueError):
            d = {}
        if d.get("phase") == phase:
            return d
        time.sleep(0.1)
    pytest.fail(f"companion never reached phase {phase!r}")


def read_jsonl(path: Path) -> tuple[list[dict], bool]:
    """(records, torn_last_line)."""
    lines = path.read_bytes().split(b"\n")
    out, torn = [], False
    for i, ln in enumerate(lines):
        if not ln:
            continue
        try:
            out.append(json.loads(ln))
        except ValueError:
            assert i == len(lines) - 1, f"line {i + 1} of {path} is garbled (not the last)"
            torn = True
    return out, torn


def recorder_events(recs):
    return [json.loads(r["event_data"]) for r in recs if r["event_src"] == ev.SRC_RECORDER]


def quit_obs_like_a_user(obs, timeout=60.0) -> None:
    """Close OBS's main window the way a window manager does when the user clicks its
    close button (WM_DELETE_WINDOW): OBS runs its normal shutdown (ExitStarted, outputs
    stopped and finalized). SIGTERM is not that: OBS 29.0 has no SIGTERM handler and
    dies without finalizing anything. A close request that OBS's main loop drops (seen
    once in CI right after a recording stopped: no "Shutting down" line followed) is
    sent again every 10 s until OBS starts shutting down."""
    deadline = time.monotonic() + timeout
    while True:
        _send_wm_delete(obs)
        try:
            obs.proc.wait(min(10.0, max(0.1, deadline - time.monotonic())))
            break
        except subprocess.TimeoutExpired:
            if time.monotonic() >= deadline:
                pytest.fail(f"OBS did not quit within {timeout:g} s of WM_DELETE_WINDOW: "
                            f"{obs.log_tail(15)}")
            if "==== Shutting down" in obs.log_text():
                try:               # shutting down: let it finish
                    obs.proc.wait(max(0.1, deadline - time.monotonic()))
                    break
                except subprocess.TimeoutExpired:
                    pytest.fail(f"OBS did not finish shutting down within {timeout:g} s: "
                                f"{obs.log_tail(15)}")
    assert obs.proc.returncode == 0, obs.log_tail()


def _send_wm_delete(obs) -> None:
    from Xlib import X, protocol
    from Xlib import display as xdisplay
    d = xdisplay.Display(obs.display)
    try:
        wm_delete = d.intern_atom("WM_DELETE_WINDOW")
        wm_protocols = d.intern_atom("WM_PROTOCOLS")
        todo, main = [d.screen().root], None
        while todo and main is None:
            w = todo.pop()
            try:
                name = w.get_wm_name() or ""
                if (name.startswith("OBS ") and " - Profile: " in name
                        and wm_delete in (w.get_wm_protocols() or [])):
                    main = w
                    break
                todo.extend(w.query_tree().children)
            except Exception:
                continue
        assert main is not None, "OBS's main window not found"
        main.send_event(protocol.event.ClientMessage(
            window=main, client_type=wm_protocols,
            data=(32, [wm_delete, X.CurrentTime, 0, 0, 0])), event_mask=X.NoEventMask)
        d.flush()
    finally:
        d.close()


def user_records(obs, state_dir, p, xy, seconds: float, c=None) -> None:
    """The user starts a recording in OBS (through ``c`` or a new client), moves the
    pointer to ``xy`` on the captured display, and stops it ``seconds`` later; the
    watching companion ``p`` goes to "recording" and back to "watching"."""
    if c is None:
        with obs_client(obs) as own:
            return user_records(obs, state_dir, p, xy, seconds, own)
    c.start_record()
    wait_phase(state_dir, "recording", p)
    xdo(obs.capture_display, "mousemove", str(xy[0]), str(xy[1]))
    time.sleep(seconds)
    c.stop_record()
    wait_phase(state_dir, "watching", p)


def obs_client(obs):
    from companion.capture.obsws import connect
    return connect("127.0.0.1", obs.port, PASSWORD, 10)


def assert_no_password(*texts):
    for t in texts:
        assert PASSWORD not in t


# ----------------------------------------------------------------------------- tests

def test_session_with_duration_and_real_input(obs, env, tmp_path):
    out = tmp_path / "sessions"
    with obs_client(obs) as c:
        before = c.get_profile_parameter("AdvOut", "RecFilePath")
        before_fmt = c.get_profile_parameter("Output", "FilenameFormatting")
    env["NM_OBS_PASSWORD"] = PASSWORD
    p = companion(["start", "--consent", "--port", str(obs.port), "--host", "127.0.0.1",
                   "--out", str(out), "--session-id", "s1", "--duration", "4"], env)
    wait_phase(tmp_path / "state", "recording", p)
    st = run(["status", "--port", str(obs.port), "--host", "127.0.0.1"], env)
    assert st.returncode == 0, st.stderr
    assert "session s1" in st.stdout and "OBS: recording" in st.stdout
    xdo(obs.capture_display, "mousemove", "100", "120")
    xdo(obs.capture_display, "mousemove", "200", "150")
    xdo(obs.capture_display, "key", "a")
    xdo(obs.capture_display, "click", "1")
    stdout, stderr = p.communicate(timeout=60)
    assert p.returncode == 0, stderr
    assert_no_password(stdout, stderr)
    d = out / "s1"
    assert stdout.strip() == str(d)
    names = sorted(x.name for x in d.iterdir())
    assert names == ["integrity.sha256", "metadata.json", "s1.anchors.jsonl", "s1.jsonl",
                     "s1.mkv"], names
    # capture-time integrity covers every file of the finished session
    import hashlib
    lines = dict(reversed(ln.split("  ", 1)) for ln in (d / "integrity.sha256").read_text().splitlines())
    assert sorted(lines) == ["metadata.json", "s1.anchors.jsonl", "s1.jsonl", "s1.mkv"]
    assert all(hashlib.sha256((d / n).read_bytes()).hexdigest() == h for n, h in lines.items())
    assert (d / "s1.mkv").stat().st_size > 1000

    recs, torn = read_jsonl(d / "s1.jsonl")
    assert not torn
    assert all(set(r) == {"timestamp_ns", "event_src", "event_data"} for r in recs)
    ctrl = [json.loads(r["event_data"]) for r in recs if r["event_src"] == ev.SRC_CONTROL]
    assert ["mouse.move", 100, 120] in ctrl and ["mouse.move", 200, 150] in ctrl
    assert any(e[0] == ev.KEY_PRESS and e[2] == "a" for e in ctrl)
    assert any(e[0] == ev.KEY_RELEASE and e[2] == "a" for e in ctrl)
    assert ["mouse.click", 200, 150, "left", True] in ctrl
    rec = recorder_events(recs)
    kinds = [e["event"] for e in rec]
    assert kinds[0] == ev.REC_SESSION_START and kinds[-1] == ev.REC_SESSION_END
    assert kinds.count(ev.REC_RECORDING_STARTED) == 1 and kinds.count(ev.REC_RECORDING_STOPPED) == 1
    assert kinds.count(ev.REC_CLOCK) >= 3
    started = next(e for e in rec if e["event"] == ev.REC_RECORDING_STARTED)
    assert started["output_path"] == str(d / "s1.mkv")
    assert rec[0]["consent"]["record_input"] is True
    assert rec[-1]["counts"]["events_written"] == len(recs)
    ts = [r["timestamp_ns"] for r in recs]
    assert max(ts) - min(ts) > 3e9

    sc = read_sidecar(d / "s1.anchors.jsonl")
    assert sc.stop is not None and sc.segments

    md = json.loads((d / "metadata.json").read_text())
    assert validate_json(md, "session_metadata") == []
    assert md["session_id"] == "s1" and md["status"] == "complete"
    from companion.capture.metadata import iso_utc
    assert md["captured_at"] == iso_utc(sc.header["started_epoch_ns"])  # OBS's recording start
    assert md["resolution"] == [320, 240] and md["capture_fps"] == 30
    assert md["codec"] == "h264" and md["encoder"] == "obs_x264"
    assert md["bitrate_kbps"] and md["bitrate_kbps"] > 0
    assert md["dropped_frames"] is not None and md["lagged_frames"] is not None
    assert md["total_frames"] == sc.stop["total_frames"]
    assert md["clock_drift_ppm"] is None
    assert md["consent"]["record_input"] is True and md["consent"]["source"] == "--consent"
    assert md["input_device"] == "keyboard+mouse"
    assert md["env"]["obs_version"].startswith("29.") and md["env"]["obs_websocket_version"].startswith("5.")
    assert md["files"] == {"events": "s1.jsonl", "video": "s1.mkv", "anchors": "s1.anchors.jsonl"}
    assert_no_password((d / "metadata.json").read_text(), (d / "s1.jsonl").read_text())
    # the user's recording settings are back
    with obs_client(obs) as c:
        assert c.get_profile_parameter("AdvOut", "RecFilePath") == before
        assert c.get_profile_parameter("Output", "FilenameFormatting") == before_fmt
        assert c.get_record_status()["outputActive"] is False
    assert not list((tmp_path / "state").glob("*.json"))


def test_wrong_password_and_no_password(obs, env, tmp_path):
    r = run(["start", "--consent", "--port", str(obs.port), "--out", str(tmp_path / "o"),
             "--password", "not-the-" + PASSWORD], env)
    assert r.returncode == 3
    assert r.stderr.count("\n") == 1 and "rejected the password" in r.stderr
    assert "Traceback" not in r.stderr
    assert_no_password(r.stdout, r.stderr)
    assert not (tmp_path / "o").exists() or not any((tmp_path / "o").iterdir())
    r = run(["start", "--consent", "--port", str(obs.port), "--out", str(tmp_path / "o")], env)
    assert r.returncode == 3 and "requires a password" in r.stderr
    # config-file password, readable by others: used, warned about, never shown
    cfg = tmp_path / "cfg.json"
    cfg.write_text(json.dumps({"password": PASSWORD, "port": obs.port, "host": "127.0.0.1"}))
    os.chmod(cfg, 0o644)
    env["NM_COMPANION_CONFIG"] = str(cfg)
    r = run(["check-obs"], env)
    assert r.returncode == 0, r.stderr
    assert "readable by other users" in r.stderr and "Advanced output, format mkv" in r.stdout
    assert_no_password(r.stdout, r.stderr)


def test_unwritable_output_folder_fails_before_recording(obs, env, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    env["NM_OBS_PASSWORD"] = PASSWORD
    r = run(["start", "--consent", "--port", str(obs.port), "--out", str(blocker / "sessions")], env)
    assert r.returncode == 4
    assert r.stderr.startswith("nm-companion: error: cannot create output folder") and "Traceback" not in r.stderr
    with obs_client(obs) as c:
        assert c.get_record_status()["outputActive"] is False


def test_stop_command_pause_resume_and_filters(obs, env, tmp_path):
    out = tmp_path / "sessions"
    env["NM_OBS_PASSWORD"] = PASSWORD
    p = companion(["start", "--consent", "--port", str(obs.port), "--out", str(out),
                   "--session-id", "s2", "--no-keyboard", "--deny-window", "zz-no-such-window"], env)
    wait_phase(tmp_path / "state", "recording", p)
    with obs_client(obs) as c:  # the user pauses and resumes in OBS
        time.sleep(0.7)
        c.request("PauseRecord")
        c.wait_record_state(("OBS_WEBSOCKET_OUTPUT_PAUSED",), 10)
        time.sleep(0.7)
        c.request("ResumeRecord")
        c.wait_record_state(("OBS_WEBSOCKET_OUTPUT_RESUMED",), 10)
    xdo(obs.capture_display, "key", "b")  # not logged: --no-keyboard
    xdo(obs.capture_display, "mousemove", "10", "20")
    time.sleep(0.3)
    s = run(["stop"], env)
    assert s.returncode == 0, s.stderr
    assert f"stopped nm-companion pid {p.pid}" in s.stdout
    stdout, stderr = p.communicate(timeout=30)
    assert p.returncode == 0, stderr
    d = out / "s2"
    md = json.loads((d / "metadata.json").read_text())
    assert md["status"] == "complete" and "stop requested" in md["end_reason"]
    assert md["input_device"] == "mouse" and md["privacy"]["keyboard"] is False
    assert md["privacy"]["deny_window"] == ["zz-no-such-window"]
    recs, _ = read_jsonl(d / "s2.jsonl")
    ctrl = [json.loads(r["event_data"]) for r in recs if r["event_src"] == ev.SRC_CONTROL]
    assert ["mouse.move", 10, 20] in ctrl
    assert not any(e[0].startswith("keyboard") for e in ctrl)
    kinds = [e["event"] for e in recorder_events(recs)]
    i_start = kinds.index(ev.REC_RECORDING_STARTED)
    i_pause = kinds.index(ev.REC_RECORDING_PAUSED)
    i_resume = kinds.index(ev.REC_RECORDING_RESUMED)
    assert i_start < i_pause < i_resume < kinds.index(ev.REC_RECORDING_STOPPED)
    sc = read_sidecar(d / "s2.anchors.jsonl")
    assert len(sc.segments) == 2  # the OBS script anchored the resumed segment too
    assert (d / "s2.mkv").exists()
    assert run(["status"], env).returncode == 1
    assert not list((tmp_path / "state").iterdir())  # state and stop-request files removed


def test_sigkill_leaves_jsonl_intact(obs, env, tmp_path):
    out = tmp_path / "sessions"
    env["NM_OBS_PASSWORD"] = PASSWORD
    p = companion(["start", "--consent", "--port", str(obs.port), "--out", str(out),
                   "--session-id", "s3"], env)
    wait_phase(tmp_path / "state", "recording", p)
    for i in range(30):
        xdo(obs.capture_display, "mousemove", str(5 + i), str(7 + i))
    time.sleep(0.5)
    p.send_signal(signal.SIGKILL)
    p.communicate(timeout=10)
    recs, _torn = read_jsonl(out / "s3" / "s3.jsonl")
    ctrl = [json.loads(r["event_data"]) for r in recs if r["event_src"] == ev.SRC_CONTROL]
    assert ["mouse.move", 34, 36] in ctrl  # everything sent before the kill was written
    assert recorder_events(recs)[0]["event"] == ev.REC_SESSION_START
    # OBS keeps recording (the companion could not stop it); the path settings were
    # already restored right after the start
    with obs_client(obs) as c:
        assert c.get_record_status()["outputActive"] is True
        assert c.get_profile_parameter("AdvOut", "RecFilePath") == str(obs.record_dir)
    orphan = out / "s3" / "s3.mkv"
    deadline = time.monotonic() + 10  # OBS's muxer process creates the file (slow on a busy box)
    while not orphan.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert orphan.exists()

    # a new companion attaches to the running recording; Ctrl-C (SIGINT) ends it cleanly
    # and leaves the recording (which it did not start) running
    p = companion(["start", "--consent", "--port", str(obs.port), "--out", str(out),
                   "--session-id", "s3b"], env)
    wait_phase(tmp_path / "state", "recording", p)
    xdo(obs.capture_display, "mousemove", "77", "78")
    time.sleep(0.5)
    p.send_signal(signal.SIGINT)
    stdout, stderr = p.communicate(timeout=30)
    assert p.returncode == 0, stderr
    assert "already recording" in stderr and "Traceback" not in stderr
    md = json.loads((out / "s3b" / "metadata.json").read_text())
    assert md["status"] == "complete" and md["recording"]["attached_to_running_recording"] is True
    assert md["end_reason"] == "interrupted"
    # obs-websocket 5.1 tells the recording's path only at its start/stop events, which
    # this companion did not see: the metadata says where it was not moved from
    assert md["recording"]["obs_output_path"] in (None, str(orphan))
    assert "s3b.mkv" not in md["files"].values()
    recs, _ = read_jsonl(out / "s3b" / "s3b.jsonl")
    assert ["mouse.move", 77, 78] in [json.loads(r["event_data"]) for r in recs
                                      if r["event_src"] == ev.SRC_CONTROL]
    with obs_client(obs) as c:
        assert c.get_record_status()["outputActive"] is True
        c.stop_record()


def test_setup_check_and_configure_obs(obs, env, tmp_path):
    env["NM_OBS_PASSWORD"] = PASSWORD
    profile = obs.home / ".config" / "obs-studio" / "basic" / "profiles" / "nm"
    with obs_client(obs) as c:
        c.set_profile_parameter("AdvOut", "RecFormat", "mp4")
        c.set_profile_parameter("AdvOut", "RecType", "FFmpeg")
    try:
        r = run(["check-obs", "--port", str(obs.port)], env)
        assert r.returncode == 3
        assert "error: OBS records mp4, not MKV" in r.stdout
        assert "warning: Recording Type 'Custom Output (FFmpeg)'" in r.stdout
        line = [ln for ln in run(["start", "--consent", "--port", str(obs.port), "--out",
                                  str(tmp_path / "o")], env).stderr.splitlines()
                if "error:" in ln]
        assert len(line) == 1 and "not MKV" in line[0] and "--configure-obs" in line[0]
        with obs_client(obs) as c:
            assert c.get_record_status()["outputActive"] is False
        rec_enc = profile / "recordEncoder.json"
        json_before = json.loads(rec_enc.read_text())
        json_before["keyint_sec"] = 0
        rec_enc.write_text(json.dumps(json_before))
        # OBS runs on this machine: its config folder is found where OBS keeps it
        env["XDG_CONFIG_HOME"] = str(obs.home / ".config")
        r = run(["check-obs", "--port", str(obs.port), "--configure-obs"], env)
        assert r.returncode == 0, r.stdout + r.stderr
        assert "changed: AdvOut/RecFormat: mp4 -> mkv" in r.stdout
        assert "changed: AdvOut/RecType: FFmpeg -> Standard" in r.stdout
        assert "changed: recordEncoder.json: keyint_sec -> 2" in r.stdout
        assert "note: OBS applies encoder and output-type changes" in r.stdout
        assert json.loads(rec_enc.read_text())["keyint_sec"] == 2
        assert list(profile.glob("recordEncoder.json.*.bak"))
        with obs_client(obs) as c:
            assert c.get_profile_parameter("AdvOut", "RecFormat") == "mkv"
            assert c.get_profile_parameter("AdvOut", "RecType") == "Standard"
    finally:
        with obs_client(obs) as c:
            c.set_profile_parameter("AdvOut", "RecFormat", "mkv")
            c.set_profile_parameter("AdvOut", "RecType", "Standard")


def test_leftover_obs_settings_of_a_crashed_companion_are_restored(obs, env, tmp_path):
    """A companion killed between redirecting OBS's recording path and restoring it left
    a state file with the user's values; the next companion puts them back."""
    state = tmp_path / "state"
    state.mkdir()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    with obs_client(obs) as c:
        c.set_profile_parameter("AdvOut", "RecFilePath", str(tmp_path / "hijacked"))
        c.set_profile_parameter("Output", "FilenameFormatting", "crashed_session")
    (state / f"{dead.pid}.json").write_text(json.dumps({
        "pid": dead.pid, "phase": "starting", "obs": {"host": "127.0.0.1", "port": obs.port},
        "obs_restore": {"AdvOut/RecFilePath": str(obs.record_dir),
                        "Output/FilenameFormatting": "%CCYY-%MM-%DD %hh-%mm-%ss"}}))
    env["NM_OBS_PASSWORD"] = PASSWORD
    r = run(["start", "--consent", "--host", "127.0.0.1", "--port", str(obs.port),
             "--out", str(tmp_path / "o"), "--session-id", "after_crash", "--duration", "1"], env)
    assert r.returncode == 0, r.stderr
    assert "restored OBS recording path settings" in r.stderr
    assert (tmp_path / "o" / "after_crash" / "after_crash.mkv").exists()
    assert not (state / f"{dead.pid}.json").exists()
    with obs_client(obs) as c:
        assert c.get_profile_parameter("AdvOut", "RecFilePath") == str(obs.record_dir)
        assert c.get_profile_parameter("Output", "FilenameFormatting") == "%CCYY-%MM-%DD %hh-%mm-%ss"


def test_watch_mode_sessions_survive_obs_restart(obs, env, tmp_path):
    out = tmp_path / "sessions"
    env["NM_OBS_PASSWORD"] = PASSWORD
    p = companion(["start", "--watch", "--consent", "--port", str(obs.port), "--host", "127.0.0.1",
                   "--out", str(out)], env)
    try:
        wait_phase(tmp_path / "state", "watching", p)
        user_records(obs, tmp_path / "state", p, (42, 43), 1.5)  # the "user", in OBS
        quit_obs_like_a_user(obs)  # the user closes OBS (clean quit) ...
        obs.proc = None
        wait_phase(tmp_path / "state", "waiting for OBS", p)
        obs.start()  # ... and opens it again (same port)
        wait_phase(tmp_path / "state", "watching", p, timeout=60)
        user_records(obs, tmp_path / "state", p, (52, 53), 1.5)
    finally:
        p.send_signal(signal.SIGTERM)
        stdout, stderr = p.communicate(timeout=30)
    assert p.returncode == 0, stderr
    assert stderr.count("waiting for OBS") == 1
    assert_no_password(stdout, stderr)
    sessions = sorted(d for d in out.iterdir() if d.is_dir())
    assert len(sessions) == 2, stderr
    for d, xy in zip(sessions, ([42, 43], [52, 53])):
        sid = d.name
        md = json.loads((d / "metadata.json").read_text())
        assert md["status"] == "complete" and md["recording"]["attached_to_running_recording"]
        assert (d / f"{sid}.mkv").stat().st_size > 0 and (d / f"{sid}.anchors.jsonl").exists()
        recs, _ = read_jsonl(d / f"{sid}.jsonl")
        ctrl = [json.loads(r["event_data"]) for r in recs if r["event_src"] == ev.SRC_CONTROL]
        assert ["mouse.move", *xy] in ctrl
        started = next(e for e in recorder_events(recs) if e["event"] == ev.REC_RECORDING_STARTED)
        # the user's recording: OBS's start event time and path are kept, the gap is reported
        assert started["attached"] and started["output_path"].startswith(str(obs.record_dir))
        assert 0 < started["capture_ready_mono_ns"] - started["obs_event_mono_ns"] < 5e9
        assert any("input logging started" in w for w in md["warnings"])
    assert not list(obs.record_dir.glob("*.mkv"))  # moved into the sessions


def test_request_after_obs_went_away_is_a_clear_obs_problem(obs):
    """A request on a connection to an OBS that was killed fails with OBSProblem (the
    websocket's own errors were once listed in a nested tuple in the except clause,
    which Python rejects with a TypeError at the moment an error has to be matched)."""
    c = obs_client(obs)
    try:
        assert "obsVersion" in c.request("GetVersion")
        obs.kill()
        with pytest.raises(OBSProblem, match=r"lost the connection to OBS|OBS did not answer"):
            for _ in range(5):          # the first send may still land in the socket buffer
                c.request("GetVersion")
                time.sleep(0.2)
    finally:
        c.close()
        obs.start()


def test_obs_killed_mid_recording(obs, env, tmp_path):
    out = tmp_path / "sessions"
    env["NM_OBS_PASSWORD"] = PASSWORD
    p = companion(["start", "--consent", "--port", str(obs.port), "--out", str(out),
                   "--session-id", "s4"], env)
    wait_phase(tmp_path / "state", "recording", p)
    xdo(obs.capture_display, "mousemove", "61", "62")
    time.sleep(1.5)
    obs.kill()
    stdout, stderr = p.communicate(timeout=60)
    assert p.returncode == 3
    err_lines = [ln for ln in stderr.splitlines() if ln.startswith("nm-companion: error:")]
    assert len(err_lines) == 1 and "OBS went away" in err_lines[0]
    assert "Traceback" not in stderr
    d = out / "s4"
    md = json.loads((d / "metadata.json").read_text())
    assert md["status"] == "incomplete"
    recs, _ = read_jsonl(d / "s4.jsonl")
    ctrl = [json.loads(r["event_data"]) for r in recs if r["event_src"] == ev.SRC_CONTROL]
    assert ["mouse.move", 61, 62] in ctrl
    assert recorder_events(recs)[-1]["event"] == ev.REC_SESSION_END
    assert (d / "s4.mkv").exists()  # what OBS wrote is kept


def test_simple_output_mode_session(obs, tmp_path):
    """Simple output mode (OBS's default): the recording path is SimpleOutput/FilePath.
    Restarts the module's OBS (killed by the previous test) with its profile switched to
    Simple mode (one process may hold the harness lock only once: no second instance)."""
    seed = obs._seed_config

    def seed_simple():
        seed()
        ini = obs.home / ".config" / "obs-studio" / "basic" / "profiles" / "nm" / "basic.ini"
        ini.write_text(ini.read_text().replace("Mode=Advanced", "Mode=Simple"))

    obs._seed_config = seed_simple
    obs.stop()
    obs.start()
    e = dict(os.environ)
    e.update({"NM_COMPANION_STATE_DIR": str(tmp_path / "state"), "DISPLAY": obs.capture_display,
              "NM_COMPANION_CONFIG": str(tmp_path / "none.json"), "NM_OBS_PASSWORD": PASSWORD})
    r = run(["check-obs", "--port", str(obs.port)], e)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "Simple output" in r.stdout and "info: Simple output mode does not expose the keyframe" in r.stdout
    r = run(["start", "--consent", "--port", str(obs.port), "--out", str(tmp_path / "out"),
             "--session-id", "simple1", "--duration", "2"], e)
    assert r.returncode == 0, r.stderr
    d = tmp_path / "out" / "simple1"
    assert sorted(p.name for p in d.iterdir()) == [
        "integrity.sha256", "metadata.json", "simple1.anchors.jsonl", "simple1.jsonl", "simple1.mkv"]
    md = json.loads((d / "metadata.json").read_text())
    assert md["env"]["obs_output_mode"] == "Simple" and md["codec"] == "h264"
    assert md["bitrate_kbps"] == 2500  # Simple mode, recording quality "same as stream"
    with obs_client(obs) as c:
        assert c.get_profile_parameter("SimpleOutput", "FilePath") == str(obs.record_dir)


def test_obs_not_running(env, tmp_path):
    port = harness.free_port()
    r = run(["start", "--consent", "--port", str(port), "--out", str(tmp_path / "o"),
             "--password", PASSWORD], env)
    assert r.returncode == 3 and "connection refused" in r.stderr and "is OBS running" in r.stderr
    assert r.stderr.count("\n") == 1 and "Traceback" not in r.stderr
    assert_no_password(r.stdout, r.stderr)
    assert not any((tmp_path / "o").iterdir())


