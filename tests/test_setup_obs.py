"""``nm-companion setup-obs`` and the scene collections in scenes/.

File-level tests write into temporary OBS config folders; the last test lets a real
OBS 29 (tests/obs_harness.py) start with a config that setup-obs changed, and checks
that OBS loaded the script from the installed collection, serves obs-websocket with
the saved password, and that a recording gets its sidecar.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from companion.capture import obs_config
from companion.capture.obs_config import ini_get, ini_set, setup_obs
from companion.util.errors import BadInput
from obs_script.nm_timestamps import SCRIPT_VERSION

REPO = Path(__file__).resolve().parent.parent
SCRIPT = REPO / "obs_script" / "nm_timestamps.py"

USER_GLOBAL_INI = ("\ufeff[General]\nFirstRun=true\nLastVersion=486539266\n\n"
                   "[Basic]\nProfile=Mine\nProfileDir=Mine\nSceneCollection=My Scenes\n"
                   "SceneCollectionFile=My_Scenes\n\n[OBSWebSocket]\nServerEnabled=false\n"
                   "ServerPort=4455\nServerPassword=oldpass123\n")


def cli(args, env=None, timeout=60):
    return subprocess.run([sys.executable, "-m", "companion.cli.companion_cli", *args],
                          capture_output=True, text=True, timeout=timeout, env=env)


@pytest.fixture()
def cfgdir(tmp_path):
    d = tmp_path / "obs-studio"
    (d / "basic" / "scenes").mkdir(parents=True)
    (d / "global.ini").write_text(USER_GLOBAL_INI, encoding="utf-8")
    (d / "basic" / "scenes" / "My_Scenes.json").write_text('{"name": "My Scenes"}')
    return d


def _env(tmp_path):
    e = dict(os.environ)
    e["NM_COMPANION_CONFIG"] = str(tmp_path / "companion.json")
    return e


def test_setup_obs_writes_backs_up_and_keeps_user_settings(cfgdir, tmp_path):
    env = _env(tmp_path)
    r = cli(["setup-obs", "--obs-config", str(cfgdir), "--scene", "linux",
             "--websocket-password", "Zz-setup-secret", "--websocket-port", "4466"], env)
    assert r.returncode == 0, r.stderr
    assert "Zz-setup-secret" not in r.stdout + r.stderr
    # script copied verbatim
    assert (cfgdir / "scripts" / "nm_timestamps.py").read_bytes() == SCRIPT.read_bytes()
    # collection installed, loading that script by absolute path, made current
    coll = json.loads((cfgdir / "basic" / "scenes" / "NM_Linux_Screen.json").read_text())
    assert coll["name"] == "NM Linux Screen"
    assert coll["modules"]["scripts-tool"][0]["path"] == str((cfgdir / "scripts" / "nm_timestamps.py").resolve())
    g = (cfgdir / "global.ini").read_text(encoding="utf-8-sig")
    assert ini_get(g, "Basic", "SceneCollection") == "NM Linux Screen"
    assert ini_get(g, "Basic", "SceneCollectionFile") == "NM_Linux_Screen"
    assert ini_get(g, "Basic", "Profile") == "Mine"          # untouched
    assert ini_get(g, "General", "LastVersion") == "486539266"
    assert ini_get(g, "OBSWebSocket", "ServerEnabled") == "true"
    assert ini_get(g, "OBSWebSocket", "ServerPort") == "4466"
    assert ini_get(g, "OBSWebSocket", "AuthRequired") == "true"
    assert ini_get(g, "OBSWebSocket", "ServerPassword") == "Zz-setup-secret"
    ws = json.loads((cfgdir / "plugin_config" / "obs-websocket" / "config.json").read_text())
    assert ws == {"first_load": False, "server_enabled": True, "server_port": 4466,
                  "alerts_enabled": False, "auth_required": True,
                  "server_password": "Zz-setup-secret"}
    assert (os.stat(cfgdir / "global.ini").st_mode & 0o077) == 0
    # backup of the changed global.ini holds the user's original bytes
    baks = list(cfgdir.glob("global.ini.*.bak"))
    assert len(baks) == 1 and baks[0].read_text(encoding="utf-8") == USER_GLOBAL_INI
    assert f"backup: {baks[0]}" in r.stdout
    # the user's own collection is untouched
    assert (cfgdir / "basic" / "scenes" / "My_Scenes.json").read_text() == '{"name": "My Scenes"}'
    # password saved for nm-companion start, mode 600
    comp = json.loads((tmp_path / "companion.json").read_text())
    assert comp["password"] == "Zz-setup-secret" and comp["port"] == 4466
    assert (os.stat(tmp_path / "companion.json").st_mode & 0o077) == 0

    # a second run changes nothing and makes no new backups
    r2 = cli(["setup-obs", "--obs-config", str(cfgdir), "--scene", "linux",
              "--websocket-port", "4466"], env)
    assert r2.returncode == 0, r2.stderr
    assert "nothing to change" in r2.stdout and "password kept existing" in r2.stdout
    assert len(list(cfgdir.glob("*.bak"))) == 1
    assert len(list(tmp_path.glob("companion.json.*.bak"))) == 0


def test_setup_obs_keeps_existing_password_or_generates_one(cfgdir, tmp_path):
    res = setup_obs(cfgdir, scene="windows")
    assert res.password_source == "kept existing"
    g = (cfgdir / "global.ini").read_text(encoding="utf-8-sig")
    assert ini_get(g, "OBSWebSocket", "ServerPassword") == "oldpass123"
    coll = json.loads((cfgdir / "basic" / "scenes" / "NM_Windows_Game.json").read_text())
    kinds = {s["id"] for s in coll["sources"]} | {coll[k]["id"] for k in ("DesktopAudioDevice1", "AuxAudioDevice1")}
    assert {"game_capture", "dshow_input", "wasapi_output_capture", "wasapi_input_capture"} <= kinds

    fresh = tmp_path / "fresh"
    res = setup_obs(fresh, scene="macos")
    assert res.password_source == "generated" and res.backups == []
    pw = ini_get((fresh / "global.ini").read_text(), "OBSWebSocket", "ServerPassword")
    assert pw and len(pw) >= 20
    assert json.loads((fresh / "plugin_config" / "obs-websocket" / "config.json").read_text())["server_password"] == pw


def test_setup_obs_bad_input(tmp_path):
    f = tmp_path / "file"
    f.write_text("x")
    r = cli(["setup-obs", "--obs-config", str(f)], _env(tmp_path))
    assert r.returncode == 2 and r.stderr.strip() == f"nm-companion: error: {f} is not a folder"
    r = cli(["setup-obs", "--obs-config", str(tmp_path / "x"), "--scene", "bsd"], _env(tmp_path))
    assert r.returncode == 2 and "invalid choice" in r.stderr and "Traceback" not in r.stderr
    with pytest.raises(BadInput):
        setup_obs(tmp_path / "y", websocket_password="two\nlines")


@pytest.mark.parametrize("name,video,audio", [
    ("linux_screen.json", {"xshm_input"}, {"pulse_output_capture", "pulse_input_capture"}),
    ("windows_game.json", {"game_capture", "dshow_input"}, {"wasapi_output_capture", "wasapi_input_capture"}),
    ("macos_screen.json", {"screen_capture"}, {"sck_audio_capture", "coreaudio_input_capture"}),
])
def test_scene_collections_are_complete(name, video, audio):
    coll = json.loads((REPO / "scenes" / name).read_text())
    ids = {s["id"] for s in coll["sources"]}
    ids |= {v["id"] for k, v in coll.items() if k.endswith("AudioDevice1")}
    assert video <= ids and audio <= ids
    scene = next(s for s in coll["sources"] if s["id"] == "scene")
    assert coll["current_scene"] == scene["name"] and coll["scene_order"] == [{"name": scene["name"]}]
    item_names = {i["name"] for i in scene["settings"]["items"]}
    assert item_names <= {s["name"] for s in coll["sources"]}
    assert coll["modules"]["scripts-tool"] == [{"path": obs_config.SCRIPT_PLACEHOLDER, "settings": {
        "enabled": True, "captions": True, "sidecar": True, "clock_interval_s": 1.0}}]


def test_ini_set_preserves_other_lines():
    text = "[A]\nx=1\n; comment\n\n[B]\ny=2\n"
    out = ini_set(text, "A", {"x": "9", "z": "3"})
    assert out == "[A]\nx=9\n; comment\nz=3\n\n[B]\ny=2\n"
    assert ini_set("", "C", {"k": "v"}) == "[C]\nk=v\n"


def test_default_config_dirs(monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("XDG_CONFIG_HOME", raising=False)
    monkeypatch.setenv("APPDATA", "C:/Users/u/AppData/Roaming")
    assert obs_config.default_obs_config_dirs("linux") == [
        tmp_path / ".config" / "obs-studio",
        tmp_path / ".var" / "app" / "com.obsproject.Studio" / "config" / "obs-studio"]
    assert obs_config.default_obs_config_dirs("win32") == [Path("C:/Users/u/AppData/Roaming") / "obs-studio"]
    assert obs_config.default_obs_config_dirs("darwin") == [
        tmp_path / "Library" / "Application Support" / "obs-studio"]


# ----------------------------------------------------------------------------- real OBS

@pytest.mark.obs
def test_obs_starts_with_setup_obs_config_and_loads_the_script(tmp_path):
    from tests.obs_harness import ObsInstance, obs_available
    if not obs_available():
        pytest.skip("needs obs and Xvfb")
    comp_cfg = tmp_path / "companion.json"

    class SetupObsInstance(ObsInstance):
        """The harness's seeded config plays the user's existing OBS config; setup-obs
        then changes it the way a user would run it, before OBS starts."""

        def _seed_config(self):
            super()._seed_config()
            r = cli(["setup-obs", "--obs-config", str(self.home / ".config" / "obs-studio"),
                     "--scene", "linux", "--websocket-port", str(self.port), "--config", str(comp_cfg)])
            assert r.returncode == 0, r.stderr
            self.password = json.loads(comp_cfg.read_text())["password"]  # kept from the seeded config

    inst = SetupObsInstance(tmp_path / "obs", script=False, password="seeded-pass-1")
    with inst as obs:
        deadline = time.monotonic() + 30
        loaded = f"nm_timestamps {SCRIPT_VERSION} loaded"   # the installed copy's version
        while loaded not in obs.log_text() and time.monotonic() < deadline:
            time.sleep(0.2)
        log = obs.log_text()
        assert loaded in log
        assert "Loaded python script: nm_timestamps.py" in log  # (the log names no folder)
        # the harness added no script (script=False): the one loaded is the collection's
        coll = json.loads((obs.home / ".config/obs-studio/basic/scenes/NM_Linux_Screen.json").read_text())
        assert coll["modules"]["scripts-tool"][0]["path"] == str(
            (obs.home / ".config/obs-studio/scripts/nm_timestamps.py").resolve())
        # obs-websocket answers with the password setup-obs kept and saved for the companion
        env = dict(os.environ, NM_COMPANION_CONFIG=str(comp_cfg))
        r = cli(["check-obs", "--host", "127.0.0.1"], env)
        assert r.returncode == 0, r.stderr
        assert "seeded-pass-1" not in r.stdout + r.stderr
        from companion.capture.obsws import connect
        with connect("127.0.0.1", obs.port, "seeded-pass-1") as c:
            assert c.request("GetSceneCollectionList")["currentSceneCollectionName"] == "NM Linux Screen"
        # the installed script anchors a recording (sidecar with a stop record)
        path = obs.record(1.0)
        sc = path.with_name(path.stem + ".anchors.jsonl")
        assert sc.exists() and '"kind":"stop"' in sc.read_text()
    assert list((obs.home / ".config" / "obs-studio").glob("global.ini.*.bak"))
