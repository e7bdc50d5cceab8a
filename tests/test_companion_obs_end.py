"""How an ``nm-companion`` session ends, against a real OBS 29 under Xvfb.

Same setup as tests/test_companion_obs.py (real OBS with the timestamp script, real
companion subprocess, real xdotool input on the display OBS captures): the user
stopping in OBS a recording the companion started, OBS quitting cleanly mid-recording,
OBS killed mid-recording in watch mode (watching goes on when OBS is back), and the
event log failing to write mid-session (the companion's file size limited with
RLIMIT_FSIZE, which makes the kernel refuse writes past the limit with EFBIG exactly as
on a full disk; the tests run as root, so an unwritable folder cannot be simulated).
Tests run in file order and share one OBS.
"""
from __future__ import annotations

import json
import os
import resource
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

pytestmark = [pytest.mark.obs]

from tests import obs_harness as harness  # noqa: E402
if not (harness.obs_available() and shutil.which("xdotool")):
    pytest.skip("needs obs, Xvfb and xdotool", allow_module_level=True)

from tests.test_companion_obs import (PASSWORD, quit_obs_like_a_user,  # noqa: E402
                                      read_jsonl, recorder_events, user_records, wait_phase,
                                      xdo)


@pytest.fixture()
def env(obs, tmp_path):
    e = dict(os.environ)
    e.update({"DISPLAY": obs.capture_display, "NM_COMPANION_STATE_DIR": str(tmp_path / "state"),
              "NM_COMPANION_CONFIG": str(tmp_path / "no-config.json"), "PYTHONUNBUFFERED": "1",
              "NM_OBS_PASSWORD": PASSWORD})
    return e


def companion(args, env, fsize_limit: int | None = None) -> subprocess.Popen:
    def limit():  # runs in the child before exec: a real kernel limit on file size
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # EFBIG instead of being killed
        resource.setrlimit(resource.RLIMIT_FSIZE, (fsize_limit, fsize_limit))
    return subprocess.Popen([sys.executable, "-m", "companion.cli.companion_cli", *args],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=limit if fsize_limit else None)


def obs_client(obs):
    from companion.capture.obsws import connect
    return connect("127.0.0.1", obs.port, PASSWORD, 10)


def error_lines(stderr: str) -> list[str]:
    assert "Traceback" not in stderr
    return [ln for ln in stderr.splitlines() if ln.startswith("nm-companion: error:")]


def ctrl_events(recs):
    return [json.loads(r["event_data"]) for r in recs if r["event_src"] == ev.SRC_CONTROL]


def start_args(obs, out, *extra):
    return ["start", "--consent", "--host", "127.0.0.1", "--port", str(obs.port),
            "--out", str(out), *extra]


# ----------------------------------------------------------------------------- tests

def test_user_stops_in_obs_the_recording_the_companion_started(obs, env, tmp_path):
    out = tmp_path / "sessions"
    p = companion(start_args(obs, out, "--session-id", "u1"), env)
    wait_phase(tmp_path / "state", "recording", p)
    xdo(obs.capture_display, "mousemove", "31", "32")
    time.sleep(1.2)
    with obs_client(obs) as c:  # the user presses "Stop Recording" in OBS
        c.stop_record()
    stdout, stderr = p.communicate(timeout=60)
    assert p.returncode == 0, stderr
    assert error_lines(stderr) == []
    d = out / "u1"
    assert stdout.strip() == str(d)
    assert sorted(x.name for x in d.iterdir()) == [
        "integrity.sha256", "metadata.json", "u1.anchors.jsonl", "u1.jsonl", "u1.mkv"]
    md = json.loads((d / "metadata.json").read_text())
    assert validate_json(md, "session_metadata") == []
    assert md["status"] == "complete" and md["end_reason"] == "recording stopped in OBS"
    assert read_sidecar(d / "u1.anchors.jsonl").stop is not None
    assert not any("no stop record" in w for w in md.get("warnings", []))
    recs, torn = read_jsonl(d / "u1.jsonl")
    assert not torn and ["mouse.move", 31, 32] in ctrl_events(recs)
    kinds = [e["event"] for e in recorder_events(recs)]
    assert kinds.count(ev.REC_RECORDING_STOPPED) == 1 and kinds[-1] == ev.REC_SESSION_END
    assert recorder_events(recs)[-1]["status"] == "complete"
    with obs_client(obs) as c:
        assert c.get_record_status()["outputActive"] is False
    assert not list((tmp_path / "state").glob("*.json"))


def test_event_log_write_failure_stops_the_recording_exit_4(obs, env, tmp_path):
    """The JSONL can no longer be written mid-session (RLIMIT_FSIZE: EFBIG, as on a full
    disk): the companion stops the recording it started, keeps every complete line
    already written, finalizes the session as incomplete and exits 4 with one line."""
    out = tmp_path / "sessions"
    limit = 24_000  # bytes: room for the start and a few events, not for 600 moves
    p = companion(start_args(obs, out, "--session-id", "w1"), env, fsize_limit=limit)
    wait_phase(tmp_path / "state", "recording", p)
    xdo(obs.capture_display, "mousemove", "11", "12")
    time.sleep(1.0)
    moves = []
    for i in range(600):  # one xdotool run, 600 distinct positions: ~60 kB of JSONL
        moves += ["mousemove", str(20 + i % 300), str(20 + i // 300)]
    xdo(obs.capture_display, *moves)
    stdout, stderr = p.communicate(timeout=90)
    assert p.returncode == 4, stderr
    errs = error_lines(stderr)
    assert len(errs) == 1, stderr
    d = out / "w1"
    assert errs[0].startswith(f"nm-companion: error: cannot write the event log {d / 'w1.jsonl'}: "
                              f"File too large; the recording was stopped and the session was "
                              f"finalized as incomplete in {d}")
    # everything written before the failure is intact, up to the last complete line
    data = (d / "w1.jsonl").read_bytes()
    assert 0 < len(data) <= limit and data.endswith(b"\n")
    recs, torn = read_jsonl(d / "w1.jsonl")
    assert not torn
    assert recorder_events(recs)[0]["event"] == ev.REC_SESSION_START
    ctrl = ctrl_events(recs)
    assert ["mouse.move", 11, 12] in ctrl and ["mouse.move", 20, 20] in ctrl
    assert len(recs) < 600
    md = json.loads((d / "metadata.json").read_text())
    assert validate_json(md, "session_metadata") == []
    assert md["status"] == "incomplete"
    assert md["end_reason"].startswith("cannot write the event log: writing ") \
        and "File too large" in md["end_reason"]
    assert md["events"]["written"] == len(recs)
    # the recording the companion started was stopped and finalized by OBS, kept
    assert (d / "w1.mkv").stat().st_size > 1000
    assert read_sidecar(d / "w1.anchors.jsonl").stop is not None
    with obs_client(obs) as c:
        assert c.get_record_status()["outputActive"] is False
    assert not list((tmp_path / "state").glob("*.json"))


def test_watch_write_failure_finalizes_that_session_and_keeps_watching(obs, env, tmp_path):
    """Watch mode, same failure: that session ends incomplete at once, the user's
    recording is left running (the companion did not start it) and is not attached to
    again; the next recording gets a new session; the watch exits 4 at the end."""
    out = tmp_path / "sessions"
    limit = 24_000
    p = companion(start_args(obs, out, "--watch"), env, fsize_limit=limit)
    try:
        wait_phase(tmp_path / "state", "watching", p)
        with obs_client(obs) as c:
            c.start_record()
            wait_phase(tmp_path / "state", "recording", p)
            moves = []
            for i in range(600):
                moves += ["mousemove", str(20 + i % 300), str(30 + i // 300)]
            xdo(obs.capture_display, *moves)
            wait_phase(tmp_path / "state", "waiting for the recording to stop", p)
            assert c.get_record_status()["outputActive"] is True  # the user's: left running
            time.sleep(1.5)
            assert len([x for x in out.iterdir() if x.is_dir()]) == 1  # not attached again
            c.stop_record()
            wait_phase(tmp_path / "state", "watching", p)
            # the next recording: a new, complete session
            user_records(obs, tmp_path / "state", p, (70, 71), 1.2, c)
    finally:
        p.send_signal(signal.SIGTERM)
        stdout, stderr = p.communicate(timeout=60)
    assert p.returncode == 4, stderr
    assert "Traceback" not in stderr
    assert "watch ended: 2 session(s), 1 incomplete" in stderr
    first, second = sorted(x for x in out.iterdir() if x.is_dir())
    md1 = json.loads((first / "metadata.json").read_text())
    assert md1["status"] == "incomplete" and "File too large" in md1["end_reason"]
    data = (first / f"{first.name}.jsonl").read_bytes()
    assert len(data) <= limit and data.endswith(b"\n")
    assert ["mouse.move", 20, 30] in ctrl_events(read_jsonl(first / f"{first.name}.jsonl")[0])
    md2 = json.loads((second / "metadata.json").read_text())
    assert md2["status"] == "complete"
    assert ["mouse.move", 70, 71] in ctrl_events(read_jsonl(second / f"{second.name}.jsonl")[0])
    assert (second / f"{second.name}.mkv").exists()
    # the first recording kept running after its session ended: it stays where OBS wrote it
    left = Path(md1["files"]["video_outside_session"])
    assert left.parent == obs.record_dir and left.stat().st_size > 1000
    left.unlink()
    for sc in obs.record_dir.glob("*.anchors.jsonl"):
        sc.unlink()


def test_obs_quits_cleanly_mid_recording(obs, env, tmp_path):
    """The user closes OBS while the companion's recording runs (non-watch): OBS stops
    and finalizes the recording itself; the companion finalizes the session as
    incomplete (it ended before it was asked to) and exits 3 with one line."""
    out = tmp_path / "sessions"
    p = companion(start_args(obs, out, "--session-id", "q1"), env)
    try:
        wait_phase(tmp_path / "state", "recording", p)
        xdo(obs.capture_display, "mousemove", "41", "42")
        time.sleep(2.5)
        quit_obs_like_a_user(obs)
        stdout, stderr = p.communicate(timeout=60)
    finally:
        if p.poll() is None:
            p.kill()
        obs.stop()
        obs.start()
    assert p.returncode == 3, stderr
    errs = error_lines(stderr)
    d = out / "q1"
    assert errs == [f"nm-companion: error: OBS quit during the recording; the session was "
                    f"finalized as incomplete in {d} (what OBS recorded is kept)"]
    md = json.loads((d / "metadata.json").read_text())
    assert validate_json(md, "session_metadata") == []
    assert md["status"] == "incomplete" and md["end_reason"] == "OBS is quitting"
    recs, torn = read_jsonl(d / "q1.jsonl")
    assert not torn and ["mouse.move", 41, 42] in ctrl_events(recs)
    # OBS's shutdown let the script finish its sidecar; it was moved in and read
    sc = read_sidecar(d / "q1.anchors.jsonl")
    assert sc.stop is not None and md["total_frames"] == sc.stop["total_frames"]
    assert not any("no stop record" in w for w in md.get("warnings", []))
    assert recorder_events(recs)[-1]["event"] == ev.REC_SESSION_END
    assert recorder_events(recs)[-1]["status"] == "incomplete"
    # OBS finalized the file: ffprobe reads a duration from it
    mkv = d / "q1.mkv"
    assert mkv.stat().st_size > 1000
    if shutil.which("ffprobe"):
        r = subprocess.run(["ffprobe", "-v", "error", "-show_entries", "format=duration",
                            "-of", "csv=p=0", str(mkv)], capture_output=True, text=True)
        # a finalized MKV has its duration in the header (N/A when cut off by a crash)
        assert r.returncode == 0 and float(r.stdout.strip()) > 0, (r.stdout, r.stderr)


def test_watch_obs_killed_mid_recording_then_back(obs, env, tmp_path):
    """Watch mode, OBS crashes (SIGKILL) during a user's recording: that session is
    finalized as incomplete (with what OBS wrote), the companion waits for OBS, and
    logs the next recording after OBS is back; the watch's exit code says 3."""
    out = tmp_path / "sessions"
    p = companion(start_args(obs, out, "--watch"), env)
    try:
        wait_phase(tmp_path / "state", "watching", p)
        c = obs_client(obs)
        try:
            c.start_record()
            wait_phase(tmp_path / "state", "recording", p)
            xdo(obs.capture_display, "mousemove", "81", "82")
            time.sleep(1.5)
        finally:
            c.close()
        obs.kill()
        wait_phase(tmp_path / "state", "waiting for OBS", p)
        obs.start()
        wait_phase(tmp_path / "state", "watching", p, timeout=60)
        user_records(obs, tmp_path / "state", p, (91, 92), 1.2)
    finally:
        p.send_signal(signal.SIGTERM)
        stdout, stderr = p.communicate(timeout=60)
    assert p.returncode == 3, stderr
    assert "Traceback" not in stderr and "watch ended: 2 session(s), 1 incomplete" in stderr
    assert stderr.count("waiting for OBS") == 1
    first, second = sorted(x for x in out.iterdir() if x.is_dir())
    md1 = json.loads((first / "metadata.json").read_text())
    assert validate_json(md1, "session_metadata") == []
    assert md1["status"] == "incomplete"
    recs, _torn = read_jsonl(first / f"{first.name}.jsonl")
    assert ["mouse.move", 81, 82] in ctrl_events(recs)
    assert recorder_events(recs)[-1]["event"] == ev.REC_SESSION_END
    # what OBS wrote is moved in and kept (a muxer killed 1.5 s in may not have
    # flushed a byte yet: the file's existence is what can be asserted)
    assert (first / f"{first.name}.mkv").exists()
    assert md1["files"]["video"] == f"{first.name}.mkv"
    md2 = json.loads((second / "metadata.json").read_text())
    assert md2["status"] == "complete"
    assert ["mouse.move", 91, 92] in ctrl_events(read_jsonl(second / f"{second.name}.jsonl")[0])
    assert not list(obs.record_dir.glob("*.mkv"))
