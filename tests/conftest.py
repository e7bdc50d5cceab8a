"""Shared fixtures. The ``obs_*`` fixtures make one real capture per test run: a
headless OBS 29 records a second X display while ``nm-companion start`` logs real
xdotool input on it; ``nm-align`` then builds the session outputs and a dataset."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.obs_harness import companion_session, obs_available

# Cursor jump targets (screen px on the captured 640x480 display): far apart so each
# jump is unambiguous in the video.
CURSOR_TARGETS = [(80, 80), (560, 400), (560, 80), (80, 400), (320, 240), (160, 320),
                  (480, 160), (100, 240)]


def companion_env(tmp_path: Path, keep_display: bool = True) -> dict:
    """The environment for running ``nm-companion``: its own state folder, no config
    file and no password from the environment (``keep_display``: False also drops
    DISPLAY, for tests that must not reach an X server)."""
    e = dict(os.environ)
    e.update({"NM_COMPANION_STATE_DIR": str(tmp_path / "state"),
              "NM_COMPANION_CONFIG": str(tmp_path / "no-config.json")})
    e.pop("NM_OBS_PASSWORD", None)
    if not keep_display:
        e.pop("DISPLAY", None)
    return e


# The websocket password of the per-module OBS of the companion tests (`obs` below).
OBS_PASSWORD = "c2-Secret-pw-4711"


@pytest.fixture(scope="module")
def obs(tmp_path_factory):
    """One real headless OBS per test module (starts cost seconds on 2 cores): screen
    capture (xshm) of its own X display, 320x240, websocket password OBS_PASSWORD."""
    from tests import obs_harness as harness
    inst = harness.ObsInstance(tmp_path_factory.mktemp("obs"), scene="xshm",
                               password=OBS_PASSWORD, width=320, height=240)
    inst.start()
    try:
        yield inst
    finally:
        inst.stop()
        inst.close()


# Titles of the two windows tests/obs_scripts/x_activity.py maps on the captured display;
# the X input focus goes A -> B -> A during the capture.
FOCUS_TITLES = ("nm-test A", "nm-test B")
X_ACTIVITY = Path(__file__).resolve().parent / "obs_scripts" / "x_activity.py"
_helpers: list = []


def start_x_activity(env) -> dict:
    """Start x_activity.py on the captured display (two windows + a strip repainted every
    ~4 ms so every frame differs) and return {title: window id} once it is drawing."""
    p = subprocess.Popen([sys.executable, str(X_ACTIVITY), "--seconds", "30"], env=env,
                         stdout=subprocess.PIPE, text=True)
    _helpers.append(p)
    ids = {}
    for line in p.stdout:
        if line.strip() == "ready":
            break
        title, wid = line.rstrip("\n").split("\t")
        ids[title] = wid
    if set(ids) != set(FOCUS_TITLES):
        raise RuntimeError(f"x_activity.py did not start (got {ids})")
    return ids


def drive_input(env) -> None:
    """Real input on the captured display: cursor jumps, clicks, typing, scrolling
    (vertical and horizontal), and X focus changes between two windows; meanwhile a
    strip of the screen changes every few ms (tests/obs_scripts/x_activity.py)."""
    def xd(*a):
        subprocess.run(["xdotool", *a], env=env, check=True)
    wins = start_x_activity(env)
    xd("windowfocus", wins[FOCUS_TITLES[0]])
    for i in range(2):
        if i == 1:
            xd("windowfocus", wins[FOCUS_TITLES[1]])
        for x, y in CURSOR_TARGETS:
            xd("mousemove", str(x), str(y))
            time.sleep(0.27)
    xd("windowfocus", wins[FOCUS_TITLES[0]])
    xd("click", "1")
    time.sleep(0.1)
    xd("click", "3")
    xd("type", "--delay", "60", "gg wp")
    xd("key", "ctrl+a", "shift+Tab")
    xd("keydown", "w")
    time.sleep(0.6)
    xd("keyup", "w")
    xd("click", "4")
    xd("click", "5")
    xd("click", "6")        # horizontal wheel: left
    time.sleep(0.1)
    xd("click", "7")        # right
    for i in range(30):
        xd("mousemove", str(200 + 5 * i), str(200 + 3 * i))
        time.sleep(0.01)


@pytest.fixture(scope="session")
def obs_capture(tmp_path_factory):
    """A session folder recorded for real (mkv, jsonl, sidecar, metadata.json)."""
    if not obs_available():
        pytest.skip("needs obs-studio and Xvfb")
    wd = tmp_path_factory.mktemp("obs_capture")
    try:
        # 10.5 s: drive_input's last moves (about 8.5 s after the recording starts on a
        # loaded machine) must land inside the recording
        return companion_session(wd, duration=10.5, actions=drive_input, session_id="obs_demo")
    finally:
        while _helpers:                     # x_activity.py ends with its X server
            p = _helpers.pop()
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


@pytest.fixture(scope="session")
def obs_aligned(obs_capture, tmp_path_factory):
    """The real capture after ``nm-align`` with a dataset of 2-second chunks."""
    from companion.align.session import align_session
    root = tmp_path_factory.mktemp("obs_dataset") / "dataset"
    summary = align_session(obs_capture / "obs_demo.mkv", dataset=root, chunk_seconds=2.0,
                            progress=False)
    return {"session": obs_capture, "dataset": root, "summary": summary}


@pytest.fixture(scope="session")
def obs_dataset(obs_aligned):
    """Path of a dataset root built from a real OBS recording with real input."""
    return obs_aligned["dataset"]
