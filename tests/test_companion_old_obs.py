"""``nm-companion`` against an OBS that is too old, end to end over a real websocket.

The OBS side here is a FAKE, for tests only: Debian's OBS on this machine is 29, which
is new enough, and an OBS 27 with the obs-websocket 5 plugin cannot be installed here.
So the test runs a small real obs-websocket v5 server (real TCP, real RFC 6455
handshake and frames, the real Hello / Identify / Identified / GetVersion exchange of
the obs-websocket 5 protocol) that reports an old OBS, and runs the real
``nm-companion`` CLI as a subprocess against it. What it proves: the version check in
companion/capture/obsws.py is reached over the wire and ends the CLI with exit code 3
and one clear line, before any session folder content is written. The unit test of
``check_versions`` is in tests/test_companion_cli.py; every other companion test uses
the real OBS 29 (tests/test_companion_obs.py).
"""
from __future__ import annotations

import base64
import hashlib
import json
import socket
import struct
import subprocess
import sys
import threading

import pytest

from tests.conftest import companion_env

GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


class FakeObsWebsocket:
    """A minimal obs-websocket 5 server: one thread per connection. ``hello=False``
    behaves like obs-websocket 4.x (accepts the websocket, never sends Hello)."""

    def __init__(self, obs_version: str, ws_version: str, rpc_version: int = 1,
                 hello: bool = True):
        self.obs_version, self.ws_version = obs_version, ws_version
        self.rpc_version, self.hello = rpc_version, hello
        self.srv = socket.socket()
        self.srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.srv.bind(("127.0.0.1", 0))
        self.srv.listen(8)
        self.port = self.srv.getsockname()[1]
        self.requests: list[str] = []
        self.conns: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def close(self) -> None:
        self.srv.close()
        for c in self.conns:
            try:
                c.close()
            except OSError:
                pass

    def _accept(self) -> None:
        while True:
            try:
                c, _ = self.srv.accept()
            except OSError:
                return
            self.conns.append(c)
            threading.Thread(target=self._serve, args=(c,), daemon=True).start()

    # -- RFC 6455 -------------------------------------------------------------
    @staticmethod
    def _recv_exact(c: socket.socket, n: int) -> bytes:
        buf = b""
        while len(buf) < n:
            chunk = c.recv(n - len(buf))
            if not chunk:
                raise ConnectionError("client closed")
            buf += chunk
        return buf

    def _recv_frame(self, c: socket.socket) -> tuple[int, bytes]:
        b0, b1 = self._recv_exact(c, 2)
        n = b1 & 0x7F
        if n == 126:
            n = struct.unpack(">H", self._recv_exact(c, 2))[0]
        elif n == 127:
            n = struct.unpack(">Q", self._recv_exact(c, 8))[0]
        mask = self._recv_exact(c, 4) if b1 & 0x80 else b"\0\0\0\0"
        data = bytes(x ^ mask[i % 4] for i, x in enumerate(self._recv_exact(c, n)))
        return b0 & 0x0F, data

    @staticmethod
    def _send_text(c: socket.socket, obj: dict) -> None:
        data = json.dumps(obj).encode()
        n = len(data)
        head = bytes([0x81, n]) if n < 126 else bytes([0x81, 126]) + struct.pack(">H", n)
        c.sendall(head + data)

    def _serve(self, c: socket.socket) -> None:
        try:
            req = b""
            while b"\r\n\r\n" not in req:
                chunk = c.recv(4096)
                if not chunk:
                    return
                req += chunk
            headers = {}
            for line in req.decode("latin-1").split("\r\n")[1:]:
                if ":" in line:
                    k, v = line.split(":", 1)
                    headers[k.strip().lower()] = v.strip()
            accept = base64.b64encode(hashlib.sha1(
                (headers["sec-websocket-key"] + GUID).encode()).digest()).decode()
            c.sendall(("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                       "Connection: Upgrade\r\nSec-WebSocket-Accept: " + accept + "\r\n\r\n")
                      .encode())
            if not self.hello:
                while True:  # obs-websocket 4.x: waits for the client to speak first
                    self._recv_frame(c)
            self._send_text(c, {"op": 0, "d": {"obsWebSocketVersion": self.ws_version,
                                               "rpcVersion": self.rpc_version}})
            while True:
                opcode, data = self._recv_frame(c)
                if opcode == 8:  # close
                    return
                if opcode != 1:
                    continue
                msg = json.loads(data)
                if msg["op"] == 1:  # Identify
                    self._send_text(c, {"op": 2, "d": {"negotiatedRpcVersion": self.rpc_version}})
                elif msg["op"] == 6:  # Request
                    d = msg["d"]
                    self.requests.append(d["requestType"])
                    resp = {"requestType": d["requestType"], "requestId": d["requestId"],
                            "requestStatus": {"result": True, "code": 100}}
                    if d["requestType"] == "GetVersion":
                        resp["responseData"] = {
                            "obsVersion": self.obs_version,
                            "obsWebSocketVersion": self.ws_version,
                            "rpcVersion": self.rpc_version,
                            "availableRequests": ["GetVersion"],
                            "supportedImageFormats": ["png"], "platform": "ubuntu",
                            "platformDescription": "Ubuntu 20.04 (fake, test only)"}
                    else:
                        resp["requestStatus"] = {"result": False, "code": 204,
                                                 "comment": "unknown request (fake server)"}
                    self._send_text(c, {"op": 7, "d": resp})
        except (OSError, ConnectionError, ValueError, KeyError):
            return
        finally:
            c.close()


@pytest.fixture()
def env(tmp_path):
    return companion_env(tmp_path)


def cli(args, env, timeout=60):
    return subprocess.run([sys.executable, "-m", "companion.cli.companion_cli", *args], env=env,
                          capture_output=True, text=True, timeout=timeout)


@pytest.mark.parametrize("watch", [False, True])
def test_obs_27_is_too_old(env, tmp_path, watch):
    srv = FakeObsWebsocket(obs_version="27.2.4", ws_version="5.0.1", rpc_version=1)
    try:
        out = tmp_path / "o"
        r = cli(["start", "--consent", "--host", "127.0.0.1", "--port", str(srv.port),
                 "--out", str(out), *(["--watch"] if watch else ["--session-id", "s"])], env)
    finally:
        srv.close()
    assert r.returncode == 3, r.stderr
    assert r.stderr == ("nm-companion: error: OBS 27.2.4 is too old: the companion needs OBS 29 "
                        "or newer (the timestamp script relies on it)\n")
    assert "GetVersion" in srv.requests  # the answer came over the wire
    assert not out.exists() or not any(p for p in out.rglob("*") if p.is_file())


def test_check_obs_reports_old_obs_too(env):
    srv = FakeObsWebsocket(obs_version="28.1.2", ws_version="5.1.0")
    try:
        r = cli(["check-obs", "--host", "127.0.0.1", "--port", str(srv.port)], env)
    finally:
        srv.close()
    assert r.returncode == 3 and r.stdout == ""
    assert r.stderr.splitlines() == ["nm-companion: error: OBS 28.1.2 is too old: the companion "
                                     "needs OBS 29 or newer (the timestamp script relies on it)"]


def test_obs_websocket_4_server(env, tmp_path):
    """obs-websocket 4.x (OBS 27 and older with the old plugin) accepts the websocket
    but never sends the v5 Hello: the companion says it is not obs-websocket 5."""
    srv = FakeObsWebsocket(obs_version="27.0.1", ws_version="4.9.1", hello=False)
    try:
        r = cli(["start", "--consent", "--host", "127.0.0.1", "--port", str(srv.port),
                 "--timeout", "1", "--out", str(tmp_path / "o")], env)
    finally:
        srv.close()
    assert r.returncode == 3
    lines = r.stderr.splitlines()
    assert len(lines) == 1 and "Traceback" not in r.stderr
    assert "not obs-websocket 5" in lines[0]
