"""Headless OBS Studio under Xvfb: used by the test suite and by ``nm-demo``.

Starts the real ``obs`` binary (29+) with a seeded config in a private HOME
(global.ini, a profile and a scene collection that loads our script), with
obs-websocket enabled. Only one such OBS runs at a time on the machine: it holds an
exclusive lock on /tmp/nm-obs-tests.lock while up. Linux only (Xvfb).

Scenes:
- ``color``: one full-frame colour source named "Marker" (and optionally a second,
  "Marker2", on the right half) - deterministic content for exactness tests.
- ``xshm``: screen capture (xshm_input, cursor shown) of a second Xvfb display
  ``capture_display``, so input sent there with xdotool is logged and visible.
"""
from __future__ import annotations

import fcntl
import json
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent.parent
SCRIPT = REPO / "obs_script" / "nm_timestamps.py"
if not SCRIPT.exists():  # installed (not editable): the script ships as package data
    import obs_script as _obs_script
    SCRIPT = Path(_obs_script.__file__).resolve().parent / "nm_timestamps.py"
LOCK = "/tmp/nm-obs-tests.lock"


def obs_available() -> bool:
    return shutil.which("obs") is not None and shutil.which("Xvfb") is not None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _display_free(n: int) -> bool:
    return not (Path(f"/tmp/.X{n}-lock").exists() or Path(f"/tmp/.X11-unix/X{n}").exists())


class Xvfb:
    """An Xvfb server on the first free display in ``displays``, ready when a client can
    connect. ``-noreset``: without it Xvfb briefly refuses connections after its last
    client leaves, which makes back-to-back tests flaky."""

    def __init__(self, displays=range(50, 65), size="1280x720x24"):
        self.proc = None
        for n in displays:
            if not _display_free(n):
                continue
            proc = subprocess.Popen(
                ["Xvfb", f":{n}", "-screen", "0", size, "-nolisten", "tcp", "-noreset",
                 "+extension", "GLX", "+extension", "RECORD", "-ac"],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            if self._wait_ready(proc, f":{n}"):
                self.proc, self.display = proc, f":{n}"
                return
            proc.kill()
            proc.wait()
        raise RuntimeError(f"no free X display for Xvfb in :{displays[0]}..:{displays[-1]}")

    @staticmethod
    def _wait_ready(proc, display, timeout=10.0) -> bool:
        try:
            from Xlib import display as xdisplay
        except ImportError:  # no python-xlib: the socket appearing is the best we can do
            xdisplay = None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and proc.poll() is None:
            if xdisplay is None:
                if Path(f"/tmp/.X11-unix/X{display[1:]}").exists():
                    return True
            else:
                try:
                    xdisplay.Display(display).close()
                    return True
                except Exception:
                    pass
            time.sleep(0.05)
        return False

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()


def _color_source(name, argb, w, h):
    return {"id": "color_source", "versioned_id": "color_source_v3", "name": name,
            "settings": {"color": argb, "width": w, "height": h}, "enabled": True,
            "flags": 0, "volume": 1.0, "mixers": 0, "sync": 0, "muted": False}


def _scene_item(name, item_id, x=0, y=0):
    return {"name": name, "source_uuid": "", "visible": True, "locked": False, "id": item_id,
            "pos": {"x": x, "y": y}, "rot": 0.0, "scale": {"x": 1.0, "y": 1.0}, "align": 5,
            "bounds_type": 0, "bounds_align": 0, "bounds": {"x": 0.0, "y": 0.0},
            "crop_left": 0, "crop_top": 0, "crop_right": 0, "crop_bottom": 0}


class ObsInstance:
    def __init__(self, workdir, *, fps_num=30, fps_den=1, width=320, height=240,
                 password="nm-test-pass", scene="color", script=True, script_settings=None,
                 rec_format="mkv", encoder="obs_x264", x264_opts="", keyint_sec=2,
                 markers=1, extra_scripts=(), start_websocket=True, capture_size="640x480x24"):
        self.workdir = Path(workdir)
        self.fps_num, self.fps_den = fps_num, fps_den
        self.width, self.height = width, height
        self.password = password
        self.scene = scene
        self.script = script
        self.script_settings = script_settings or {}
        self.rec_format = rec_format
        self.encoder = encoder
        self.x264_opts = x264_opts
        self.keyint_sec = keyint_sec
        self.markers = markers
        self.extra_scripts = list(extra_scripts)
        self.start_websocket = start_websocket
        self.capture_size = capture_size
        self.port = free_port()
        self.home = self.workdir / "home"
        self.record_dir = self.workdir / "recordings"
        self.proc = None
        self._lock_fd = None
        self._xvfb = None
        self._capture_xvfb = None
        self.display = None
        self.capture_display = None

    # -- config ---------------------------------------------------------------
    def _seed_config(self):
        cfg = self.home / ".config" / "obs-studio"
        (cfg / "basic" / "profiles" / "nm").mkdir(parents=True, exist_ok=True)
        (cfg / "basic" / "scenes").mkdir(parents=True, exist_ok=True)
        self.record_dir.mkdir(parents=True, exist_ok=True)
        ws = ""
        if self.start_websocket:
            ws = ("[OBSWebSocket]\nFirstLoad=false\nServerEnabled=true\n"
                  f"ServerPort={self.port}\nAlertsEnabled=false\n"
                  f"AuthRequired={'true' if self.password else 'false'}\n"
                  f"ServerPassword={self.password}\n")
        (cfg / "global.ini").write_text(
            "[General]\nPre19Defaults=false\nPre21Defaults=false\nPre23Defaults=false\n"
            "Pre24.1Defaults=false\nFirstRun=true\nLastVersion=486539266\n"
            "EnableAutoUpdates=false\nConfirmOnExit=false\n"
            "[BasicWindow]\nSysTrayEnabled=false\nSysTrayWhenStarted=false\n"
            "[Basic]\nProfile=nm\nProfileDir=nm\nSceneCollection=nm\nSceneCollectionFile=nm\n"
            + ws)
        (cfg / "basic" / "profiles" / "nm" / "basic.ini").write_text(
            "[General]\nName=nm\n"
            f"[Video]\nBaseCX={self.width}\nBaseCY={self.height}\nOutputCX={self.width}\n"
            f"OutputCY={self.height}\nFPSType=2\nFPSNum={self.fps_num}\nFPSDen={self.fps_den}\n"
            "ScaleType=bicubic\nColorFormat=NV12\nColorSpace=709\nColorRange=Partial\n"
            "[Audio]\nSampleRate=48000\nChannelSetup=Stereo\n"
            "[Output]\nMode=Advanced\nFilenameFormatting=%CCYY-%MM-%DD %hh-%mm-%ss\n"
            "[SimpleOutput]\n"
            f"FilePath={self.record_dir}\nRecFormat={self.rec_format}\nRecQuality=Stream\n"
            "[AdvOut]\n"
            f"RecType=Standard\nRecFilePath={self.record_dir}\nRecFormat={self.rec_format}\n"
            f"RecEncoder={self.encoder}\nRecTracks=1\nEncoder={self.encoder}\n"
            "TrackIndex=1\nRecRB=false\n")
        # Advanced-mode recording encoder settings live in recordEncoder.json
        (cfg / "basic" / "profiles" / "nm" / "recordEncoder.json").write_text(json.dumps({
            "rate_control": "CRF", "crf": 18, "preset": "veryfast", "keyint_sec": self.keyint_sec,
            "x264opts": self.x264_opts}))
        (cfg / "basic" / "profiles" / "nm" / "streamEncoder.json").write_text(json.dumps({
            "rate_control": "CBR", "bitrate": 2500, "keyint_sec": self.keyint_sec}))
        sources, items = [], []
        if self.scene == "color":
            mw = self.width // self.markers
            for i in range(self.markers):
                name = "Marker" if i == 0 else f"Marker{i + 1}"
                sources.append(_color_source(name, 0xFF000000, mw, self.height))
                items.append(_scene_item(name, i + 1, x=i * mw))
        elif self.scene == "xshm":
            sources.append({"id": "xshm_input", "versioned_id": "xshm_input", "name": "Screen",
                            "settings": {"advanced": True, "server": self.capture_display,
                                         "screen": 0, "show_cursor": True},
                            "enabled": True, "flags": 0, "volume": 1.0, "mixers": 0,
                            "sync": 0, "muted": False})
            item = _scene_item("Screen", 1)
            item.update({"bounds_type": 2, "bounds": {"x": float(self.width), "y": float(self.height)},
                         "bounds_align": 0})
            items.append(item)
        scene = {"id": "scene", "versioned_id": "scene", "name": "Scene",
                 "settings": {"items": items, "id_counter": len(items), "custom_size": False},
                 "enabled": True, "flags": 0, "volume": 1.0, "mixers": 0, "sync": 0, "muted": False}
        scripts = []
        if self.script:
            scripts.append({"path": str(SCRIPT), "settings": dict(self.script_settings)})
        for path, settings in self.extra_scripts:
            scripts.append({"path": str(path), "settings": dict(settings)})
        collection = {"name": "nm", "current_scene": "Scene", "current_program_scene": "Scene",
                      "scene_order": [{"name": "Scene"}], "sources": [scene] + sources,
                      "groups": [], "quick_transitions": [], "transitions": [],
                      "current_transition": "Fade", "transition_duration": 300,
                      "preview_locked": False, "scaling_enabled": False, "scaling_level": 0,
                      "scaling_off_x": 0.0, "scaling_off_y": 0.0,
                      "modules": {"scripts-tool": scripts, "output-timer": {},
                                  "auto-scene-switcher": {"active": False, "switches": []}}}
        (cfg / "basic" / "scenes" / "nm.json").write_text(json.dumps(collection, indent=1))

    # -- lifecycle ------------------------------------------------------------
    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.stop()
        self.close()

    def _env(self):
        env = dict(os.environ)
        env.update({"HOME": str(self.home), "XDG_CONFIG_HOME": str(self.home / ".config"),
                    "DISPLAY": self.display, "LIBGL_ALWAYS_SOFTWARE": "1",
                    "QT_QPA_PLATFORM": "xcb", "XDG_RUNTIME_DIR": str(self.workdir / "run")})
        env.pop("WAYLAND_DISPLAY", None)
        (self.workdir / "run").mkdir(mode=0o700, exist_ok=True)
        return env

    def start(self, timeout=60.0):
        if self._lock_fd is None:
            self._lock_fd = os.open(LOCK, os.O_RDWR | os.O_CREAT, 0o666)
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX)
        if self._xvfb is None:
            self._xvfb = Xvfb()
            self.display = self._xvfb.display
            if self.scene == "xshm":
                self._capture_xvfb = Xvfb(size=self.capture_size)
                self.capture_display = self._capture_xvfb.display
        self._seed_config()
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self._stdout = open(self.workdir / "obs-stdout.log", "ab")
        self.proc = subprocess.Popen(
            ["obs", "--multi", "--minimize-to-tray", "--verbose"], cwd=str(self.workdir),
            env=self._env(), stdout=self._stdout, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"OBS exited with {self.proc.returncode}: {self.log_tail()}")
            if self.start_websocket and self._port_open():
                if self._script_loaded() or not self.script:
                    return self
            elif not self.start_websocket and self._script_loaded():
                return self
            time.sleep(0.2)
        raise RuntimeError(f"OBS did not come up in {timeout}s: {self.log_tail()}")

    @property
    def log_dir(self) -> Path:
        return self.home / ".config" / "obs-studio" / "logs"

    def _port_open(self):
        with socket.socket() as s:
            s.settimeout(0.2)
            return s.connect_ex(("127.0.0.1", self.port)) == 0

    def _script_loaded(self):
        return "nm_timestamps" in self.log_text() and "loaded" in self.log_text()

    def log_text(self) -> str:
        logs = sorted(self.log_dir.glob("*.txt"), key=lambda p: p.stat().st_mtime)
        return logs[-1].read_text(errors="replace") if logs else ""

    def log_tail(self, n=30) -> str:
        text = self.log_text() or (self.workdir / "obs-stdout.log").read_text(errors="replace")
        return "\n".join(text.splitlines()[-n:])

    def client(self):
        import obsws_python as obsws
        return obsws.ReqClient(host="127.0.0.1", port=self.port, password=self.password, timeout=10)

    def stop(self, timeout=20.0):
        """Quit OBS the way a user closing it would (SIGTERM -> clean shutdown)."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        self.proc = None

    def kill(self):
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)
        self.proc = None

    def close(self):
        for x in (self._capture_xvfb, self._xvfb):
            if x:
                x.stop()
        self._xvfb = self._capture_xvfb = None
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    # -- recording helpers ----------------------------------------------------
    def record(self, seconds: float, pause_at=None, pause_for=1.5,
               wait_sidecar: bool = True) -> Path:
        """Record for ``seconds`` (optionally pausing once at ``pause_at`` s for
        ``pause_for`` s) through obs-websocket; return the recording path once OBS
        reports the stop (and, with ``wait_sidecar``, the script's stop record is in the
        sidecar, up to 10 s)."""
        c = self.client()
        try:
            c.start_record()
            self._wait_state(c, True)
            if pause_at is not None:
                time.sleep(pause_at)
                c.pause_record()
                time.sleep(pause_for)
                c.resume_record()
                time.sleep(max(0.0, seconds - pause_at))
            else:
                time.sleep(seconds)
            resp = c.stop_record()
            path = Path(resp.output_path)
            self._wait_state(c, False)
        finally:
            c.disconnect() if hasattr(c, "disconnect") else None
        sidecar = path.with_name(path.stem + ".anchors.jsonl")
        deadline = time.monotonic() + (10 if wait_sidecar else 0)
        while time.monotonic() < deadline:
            if sidecar.exists() and '"kind":"stop"' in sidecar.read_text():
                break
            time.sleep(0.1)
        return path

    @staticmethod
    def _wait_state(c, active, timeout=15.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if c.get_record_status().output_active == active:
                return
            time.sleep(0.05)
        raise RuntimeError("recording did not %s" % ("start" if active else "stop"))


def companion_session(workdir, *, duration=6.0, actions=None, fps_num=30, session_id="obs_demo",
                      size=(640, 480), extra_args=(), wait_start=20.0):
    """A complete real capture: headless OBS capturing a second X display, ``nm-companion
    start`` logging input on that display, and ``actions(env)`` driving real input there
    (xdotool) while it records. Returns the session folder."""
    import sys as _sys
    workdir = Path(workdir)
    out = workdir / "sessions"
    w, h = size
    with ObsInstance(workdir / "obs", scene="xshm", width=w, height=h, fps_num=fps_num,
                     capture_size=f"{w}x{h}x24") as o:
        env = dict(os.environ, DISPLAY=o.capture_display, NM_OBS_PASSWORD=o.password)
        cmd = [_sys.executable, "-m", "companion.cli.companion_cli", "start", "--port", str(o.port),
               "--out", str(out), "--session-id", session_id, "--duration", str(duration),
               "--consent", *extra_args]
        log = open(workdir / "companion.log", "w")
        proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=str(REPO))
        mkv = out / session_id / f"{session_id}.mkv"
        deadline = time.monotonic() + wait_start
        while not mkv.exists() and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.05)
        time.sleep(0.5)
        if actions is not None and proc.poll() is None:
            actions(env)
        proc.wait(duration + 60)
        log.close()
        if proc.returncode != 0:
            raise RuntimeError(f"nm-companion failed ({proc.returncode}): "
                               + (workdir / "companion.log").read_text()[-2000:])
    return out / session_id
