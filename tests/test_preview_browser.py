"""The HTML viewer in real headless Chromium, driven over the DevTools protocol.

It must load without script errors, decode and play the embedded H.264 video, keep the
timeline playhead at ``currentTime / duration`` while playing, seek when the timeline is
clicked, show the loader's action state for the frame on screen (and that frame's
pixels), and render a non-blank page (screenshot).
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from companion.load import open_dataset
from companion.load import preview as pv
from tests.test_load_support import BH, BITS, BW, make_dataset
from tests.test_preview import preview_events

websocket = pytest.importorskip("websocket", reason="needs websocket-client")


def _find_chromium():
    """A chromium that runs. Ubuntu's ``chromium-browser`` deb is a stub asking for the
    snap (scripts/setup.sh tries chromium, then chromium-browser): only a binary that
    answers ``--version`` counts."""
    for name in ("chromium", "chromium-browser"):
        exe = shutil.which(name)
        if exe is None:
            continue
        try:
            r = subprocess.run([exe, "--headless", "--no-sandbox", "--version"],
                               capture_output=True, text=True, timeout=30)
        except (OSError, subprocess.TimeoutExpired):
            continue
        if r.returncode == 0 and "chrom" in r.stdout.lower():
            return exe
    return None


CHROMIUM = _find_chromium()
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="needs a working Chromium: Debian's "
                                "chromium package (Ubuntu's chromium-browser is a snap stub); "
                                "scripts/setup.sh installs it where the distribution has one")


class Browser:
    """Headless Chromium plus a minimal DevTools-protocol client on one page."""

    def __init__(self, tmp: Path):
        self.profile = tmp / "profile"
        self.proc = subprocess.Popen(
            [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
             "--no-first-run", "--disable-background-networking", "--disable-component-update",
             "--disable-sync", f"--user-data-dir={self.profile}", "--remote-debugging-port=0",
             "--remote-allow-origins=*", "--autoplay-policy=no-user-gesture-required",
             "--window-size=1100,900", "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        port_file = self.profile / "DevToolsActivePort"
        deadline = time.monotonic() + 60
        while not (port_file.is_file() and port_file.read_text().strip()):
            if time.monotonic() > deadline or self.proc.poll() is not None:
                self.close()
                raise RuntimeError("chromium did not start its DevTools endpoint")
            time.sleep(0.1)
        port = int(port_file.read_text().split()[0])
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10) as r:
            page = next(t for t in json.load(r) if t["type"] == "page")
        self.ws = websocket.create_connection(page["webSocketDebuggerUrl"], timeout=60,
                                              suppress_origin=True)
        self.n = 0
        self.events: list[dict] = []

    def call(self, method: str, **params):
        self.n += 1
        self.ws.send(json.dumps({"id": self.n, "method": method, "params": params}))
        while True:
            msg = json.loads(self.ws.recv())
            if msg.get("id") == self.n:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg["result"]
            self.events.append(msg)

    def js(self, expr: str, await_promise: bool = False):
        r = self.call("Runtime.evaluate", expression=expr, returnByValue=True,
                      awaitPromise=await_promise)
        if "exceptionDetails" in r:
            raise AssertionError(f"JS error in {expr!r}: {r['exceptionDetails']}")
        return r["result"].get("value")

    def wait(self, expr: str, timeout: float = 20.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            v = self.js(expr)
            if v:
                return v
            time.sleep(0.05)
        raise AssertionError(f"timed out waiting for {expr}")

    def close(self):
        try:
            self.ws.close()
        except Exception:
            pass
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)   # our own process group only
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()


@pytest.fixture
def browser(tmp_path):
    b = Browser(tmp_path)
    yield b
    b.close()


# JS: the frame number burned into the video pixels currently on screen (draws the video
# element onto a canvas; the data: URI video is same-origin, so the canvas is readable).
READ_NUMBER = f"""(() => {{
  const v = document.getElementById('video'), c = document.createElement('canvas');
  c.width = v.videoWidth; c.height = v.videoHeight;
  const g = c.getContext('2d'); g.drawImage(v, 0, 0);
  let n = 0;
  for (let b = 0; b < {BITS}; b++) {{
    const d = g.getImageData(b * {BW} + 3, 3, {BW} - 6, {BH} - 6).data;
    let s = 0; for (let i = 0; i < d.length; i += 4) s += d[i] + d[i + 1] + d[i + 2];
    if (s / (d.length / 4) / 3 > 128) n |= 1 << b;
  }}
  return n;
}})()"""


def seek(b: Browser, t: float):
    b.js(f"""new Promise(r => {{ const v = document.getElementById('video');
        v.addEventListener('seeked', () => requestAnimationFrame(() => r(true)), {{once: true}});
        v.currentTime = {t}; }})""", await_promise=True)


def check_viewer(b: Browser, html: Path, ds, video_id: str, frames_to_check, chunk_start: int,
                 burned_numbers: bool = True):
    b.call("Page.enable")
    b.call("Runtime.enable")
    b.call("Page.navigate", url=html.as_uri())
    b.wait("window.nmViewer && window.nmViewer.ready && "
           "document.getElementById('video').readyState >= 2")
    assert b.js("window.nmViewer.errors.length") == 0
    assert b.js("document.getElementById('video').videoWidth") > 0     # H.264 decodes
    D = b.js("D")
    dur = D["duration"]

    # --- play: currentTime advances and the playhead follows it ---
    b.js("document.getElementById('video').play().then(() => true)", await_promise=True)
    samples = []
    t_end = time.monotonic() + 8
    while time.monotonic() < t_end and len(samples) < 12:
        time.sleep(0.1)
        s = b.js("({t: document.getElementById('video').currentTime, x: window.nmViewer.playhead_x,"
                 " w: window.nmViewer.timeline_width, vt: window.nmViewer.time})")
        if s["t"] > 0:
            samples.append(s)
    b.js("document.getElementById('video').pause()")
    assert len(samples) >= 3, "video did not play"
    ts = [s["t"] for s in samples]
    assert ts[-1] > ts[0], f"currentTime did not advance while playing: {ts}"
    xs = [s["x"] for s in samples]
    assert xs[-1] > xs[0], "timeline playhead did not move"
    for s in samples:     # the playhead is where the video time is (up to one animation frame)
        assert abs(s["x"] - s["vt"] / dur * s["w"]) < 1.0
        assert abs(s["vt"] - s["t"]) < 0.25

    # --- scrub: clicking the timeline at 60% seeks the video there ---
    # the timeline must be on screen without scrolling (the viewer sizes the video for it)
    r = b.js("(() => { const r = document.getElementById('timeline').getBoundingClientRect();"
             " return {x: r.left, y: r.top, w: r.width, h: r.height}; })()")
    assert r["y"] + r["h"] <= b.js("window.innerHeight"), r
    x, y = r["x"] + 0.6 * r["w"], r["y"] + r["h"] / 2
    for typ in ("mousePressed", "mouseReleased"):
        b.call("Input.dispatchMouseEvent", type=typ, x=x, y=y, button="left", clickCount=1)
    b.wait("!document.getElementById('video').seeking")
    t = b.js("document.getElementById('video').currentTime")
    assert abs(t - 0.6 * dur) < 0.02, (t, dur)

    # --- the frame on screen, its pixels, and the state shown, match the loader ---
    T = D["frame_times"]
    for k in frames_to_check:
        mid = T[k] + 0.5 / D["fps"]
        seek(b, mid)
        st = b.js("window.nmViewer")
        assert st["local_frame"] == k
        f = chunk_start + k
        assert st["frame"] == f
        if burned_numbers:
            assert b.js(READ_NUMBER) == f, f"pixels on screen are not frame {f}"
        ref = ds.action_state(video_id, f)
        assert set(st["state"]["keys_vk"]) == set(ref.keys_vk), k
        assert set(st["state"]["pressed_vk"]) == set(np.flatnonzero(ref.keys_pressed_multi_hot)), k
        assert set(st["state"]["buttons"]) == set(ref.buttons), k
        if np.isnan(ref.mouse_norm[0]):
            assert st["state"]["mouse"] is None
        else:
            assert st["state"]["mouse"] == pytest.approx(list(ref.mouse_norm), abs=1e-3)
        assert st["state"]["wheel"] == pytest.approx(ref.wheel)
        assert st["state"]["focus"] == ref.focus_title


def screenshot_ok(b: Browser) -> np.ndarray:
    shot = b.call("Page.captureScreenshot", format="png")["data"]
    import base64
    img = pv.decode_png(base64.b64decode(shot))
    assert img.shape[0] > 300 and img.shape[1] > 300
    colors = np.unique(img.reshape(-1, 3)[::7], axis=0)
    assert img.std() > 15 and len(colors) > 50, "screenshot looks blank"
    # the playhead (red) and the video (the test gradient) are both on screen
    red = (img[..., 0] > 200) & (img[..., 1] < 90) & (img[..., 2] < 90)
    assert red.sum() > 50
    return img


def test_viewer_plays_and_timeline_follows(tmp_path, browser):
    built = make_dataset(tmp_path / "ds", bounds=((0, 20), (20, 30)), events=preview_events())
    ds = open_dataset(built.root)
    src = pv.load_chunk(built.root, "vid0", 0)
    html = pv.write_viewer(src, tmp_path / "view.html")
    check_viewer(browser, html, ds, "vid0", [0, 2, 3, 6, 9, 10, 13, 15, 19], chunk_start=0)
    img = screenshot_ok(browser)
    (tmp_path / "shot.png").write_bytes(pv.encode_png(img))


def test_viewer_with_linked_video(tmp_path, browser):
    built = make_dataset(tmp_path / "ds", bounds=((0, 20), (20, 30)), events=preview_events())
    src = pv.load_chunk(built.root, "vid0", 1)
    html = pv.write_viewer(src, tmp_path / "out" / "view.html", embed=False)
    assert (tmp_path / "out" / "view.mp4").is_file()
    browser.call("Page.enable")
    browser.call("Page.navigate", url=html.as_uri())
    browser.wait("window.nmViewer && window.nmViewer.ready && "
                 "document.getElementById('video').readyState >= 2")
    seek(browser, 0.2)
    assert browser.js("window.nmViewer.frame") == 20 + 6
