"""The app's zip export (seed 000) imported as a session folder: real zips, real WebM."""
from __future__ import annotations

import io
import json
import stat
import zipfile
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from companion.contract import events as ev
from companion.contract.keys import dom_code_to_vk
from companion.contract.metadata import validate_json
from companion.interop.zip_export import ANCHOR_SOURCE, ZipLimits, convert_export, import_zip
from companion.util.errors import BadInput, NMError

START_MS = 1711111111111


def make_webm(path: Path, n_frames: int = 12, fps: int = 30, size=(64, 48), audio: bool = True,
              codec: str = "libvpx-vp9") -> Path:
    """Encode a real WebM (VP9/VP8 + Opus) whose frame i is filled with grey level 10*i."""
    w, h = size
    with av.open(str(path), "w", format="webm") as c:
        vs = c.add_stream(codec, rate=fps)
        vs.width, vs.height, vs.pix_fmt = w, h, "yuv420p"
        vs.options = {"deadline": "realtime", "cpu-used": "8"}
        a_s = None
        if audio:
            a_s = c.add_stream("libopus", rate=48000)
            a_s.layout = "stereo"
        for i in range(n_frames):
            img = np.full((h, w, 3), (10 * i) % 256, dtype=np.uint8)
            f = av.VideoFrame.from_ndarray(img, format="rgb24").reformat(format="yuv420p")
            f.pts = i
            f.time_base = Fraction(1, fps)
            for p in vs.encode(f):
                c.mux(p)
        for p in vs.encode(None):
            c.mux(p)
        if a_s is not None:
            n = int(48000 * n_frames / fps)
            pcm = np.zeros((2, 960), dtype=np.float32)
            for k in range(0, n, 960):
                af = av.AudioFrame.from_ndarray(pcm.reshape(1, -1), format="flt", layout="stereo")
                af.sample_rate = 48000
                af.pts = k
                af.time_base = Fraction(1, 48000)
                for p in a_s.encode(af):
                    c.mux(p)
            for p in a_s.encode(None):
                c.mux(p)
    return path


def sample_input(sid: str) -> dict:
    return {
        "sessionId": sid,
        "startTime": START_MS,
        "duration": 400,
        "inputEvents": [
            {"timestamp": START_MS + 20, "type": "mouse", "event": "mousemove",
             "data": {"x": 640, "y": 360, "screenX": 1280, "screenY": 720}},
            {"timestamp": START_MS + 10, "type": "keyboard", "event": "keydown",
             "data": {"key": "A", "code": "KeyA", "ctrlKey": False, "altKey": False, "shiftKey": True}},
            {"timestamp": START_MS + 30.5, "type": "mouse", "event": "mousedown",
             "data": {"x": 641, "y": 362, "button": 2}},
            {"timestamp": START_MS + 31, "type": "mouse", "event": "mouseup",
             "data": {"x": 641, "y": 362, "button": 2}},
            {"timestamp": START_MS + 40, "type": "keyboard", "event": "keyup",
             "data": {"key": "A", "code": "KeyA"}},
            {"timestamp": START_MS + 50, "type": "keyboard", "event": "keydown",
             "data": {"key": "Shift", "code": "ShiftLeft"}},
            {"timestamp": START_MS + 60, "type": "gamepad", "event": "stick", "data": {}},
            {"timestamp": "soon", "type": "keyboard", "event": "keydown", "data": {"code": "KeyB"}},
        ],
    }


def sample_metadata(sid: str) -> dict:
    return {
        "session": {"id": sid, "startTime": "2024-03-22T12:38:31.111Z",
                    "endTime": "2024-03-22T12:38:31.511Z", "duration": 400, "totalInputEvents": 8},
        "recording": {"videoFormat": "WebM (VP9)", "videoCodec": "VP9", "audioEnabled": True,
                      "audioSource": "system", "webcamEnabled": False,
                      "screenRecordingEnabled": True, "inputTrackingEnabled": True},
        "system": {"userAgent": "Mozilla/5.0 test", "platform": "Linux x86_64", "language": "en-US",
                   "timestamp": "2024-03-22T12:38:31.600Z"},
        "ai": {"trainingReady": True, "dataTypes": ["video", "audio", "keyboard", "mouse"],
               "synchronizationMethod": "timestamp-based", "frameRate": 30, "dataFormat": "WebM + JSON"},
    }


@pytest.fixture(scope="module")
def webm_bytes(tmp_path_factory) -> bytes:
    p = make_webm(tmp_path_factory.mktemp("webm") / "v.webm")
    return p.read_bytes()


def make_zip(path: Path, members: dict[str, bytes | str], compression=zipfile.ZIP_DEFLATED) -> Path:
    with zipfile.ZipFile(path, "w", compression=compression) as z:
        for name, data in members.items():
            z.writestr(name, data)
    return path


def good_members(sid: str, webm: bytes) -> dict:
    return {f"{sid}.webm": webm,
            f"{sid}_input.json": json.dumps(sample_input(sid)),
            f"{sid}_metadata.json": json.dumps(sample_metadata(sid))}


def read_jsonl(p: Path) -> list[dict]:
    return [json.loads(ln) for ln in p.read_text().splitlines()]


def test_import_builds_session_folder(tmp_path, webm_bytes):
    sid = "sess-01"
    z = make_zip(tmp_path / f"{sid}.zip", good_members(sid, webm_bytes))
    out = import_zip(z, tmp_path / "work")
    assert out == tmp_path / "work" / sid
    assert sorted(p.name for p in out.iterdir()) == sorted([f"{sid}.jsonl", f"{sid}.webm", "metadata.json"])
    assert (out / f"{sid}.webm").read_bytes() == webm_bytes

    rows = read_jsonl(out / f"{sid}.jsonl")
    ts = [r["timestamp_ns"] for r in rows]
    assert ts == sorted(ts)
    data = [(r["timestamp_ns"], r["event_src"], json.loads(r["event_data"])) for r in rows]
    s = START_MS * 1_000_000
    assert data[0] == (s, ev.SRC_RECORDER, {"event": ev.REC_RECORDING_STARTED,
                                            "anchor_source": ANCHOR_SOURCE})
    assert data[1] == (s + 10_000_000, ev.SRC_CONTROL, [ev.KEY_PRESS, dom_code_to_vk("KeyA"), "A"])
    assert dom_code_to_vk("KeyA") == 65
    # mousemove: screen coordinates
    assert data[2] == (s + 20_000_000, ev.SRC_CONTROL, [ev.MOUSE_MOVE, 1280, 720])
    # click: client x/y + the page's screen offset learnt from the last mousemove; fractional ms kept
    assert data[3] == (s + 30_500_000, ev.SRC_CONTROL, [ev.MOUSE_CLICK, 1281, 722, "right", True])
    assert data[4] == (s + 31_000_000, ev.SRC_CONTROL, [ev.MOUSE_CLICK, 1281, 722, "right", False])
    assert data[5] == (s + 40_000_000, ev.SRC_CONTROL, [ev.KEY_RELEASE, 65, "A"])
    assert data[6] == (s + 50_000_000, ev.SRC_CONTROL, [ev.KEY_PRESS, 160, "Shift"])
    assert data[7] == (s + 400_000_000, ev.SRC_RECORDER, {"event": ev.REC_RECORDING_STOPPED,
                                                          "anchor_source": ANCHOR_SOURCE})
    assert len(data) == 8

    meta = json.loads((out / "metadata.json").read_text())
    assert validate_json(meta, "session_metadata") == []
    assert meta["session_id"] == sid
    assert meta["captured_at"] == "2024-03-22T12:38:31.111Z"
    assert meta["resolution"] == [64, 48]
    assert meta["codec"] == "vp9"
    assert meta["capture_fps"] == 30
    assert meta["consent"] == {"record_screen": True, "record_audio": True, "record_input": True}
    assert meta["env"]["os"] == "Linux x86_64"
    assert meta["source_export"] == sample_metadata(sid)       # verbatim
    assert meta["import"]["events_imported"] == 6
    assert meta["import"]["skipped"] == {"unknown event type 'stick'": 1, "bad timestamp": 1}


def test_vp8_in_a_folder_inside_the_zip_and_rerun_replaces(tmp_path):
    sid = "abc"
    webm = make_webm(tmp_path / "v8.webm", codec="libvpx", audio=False).read_bytes()
    members = {f"export/{k}": v for k, v in good_members(sid, webm).items()}
    z = make_zip(tmp_path / "renamed.zip", members)
    out = import_zip(z, tmp_path / "w")
    (out / "stale.txt").write_text("old")
    out2 = import_zip(z, tmp_path / "w")
    assert out2 == out and not (out / "stale.txt").exists()
    meta = json.loads((out / "metadata.json").read_text())
    assert meta["codec"] == "vp8"
    assert meta["consent"]["record_audio"] is True        # from the export's recording.audioEnabled


def test_start_time_falls_back_to_metadata_and_bare_array(tmp_path, webm_bytes):
    sid = "s2"
    members = good_members(sid, webm_bytes)
    members[f"{sid}_input.json"] = json.dumps(sample_input(sid)["inputEvents"][:2])
    out = import_zip(make_zip(tmp_path / "s2.zip", members), tmp_path / "w")
    rows = read_jsonl(out / f"{sid}.jsonl")
    assert rows[0]["timestamp_ns"] == START_MS * 1_000_000      # 2024-03-22T12:38:31.111Z
    assert json.loads(rows[0]["event_data"])["event"] == ev.REC_RECORDING_STARTED


def _expect_bad(tmp_path, zpath, match):
    with pytest.raises(BadInput, match=match) as ei:
        import_zip(zpath, tmp_path / "w")
    assert "\n" not in str(ei.value)
    assert not (tmp_path / "w").exists() or not any((tmp_path / "w").iterdir())


@pytest.mark.parametrize("evil", ["../evil.txt", "/abs/evil.txt", "a/../../evil.txt", "C:/evil.txt",
                                  "..\\evil.txt"])
def test_rejects_escaping_entries(tmp_path, webm_bytes, evil):
    members = good_members("s", webm_bytes)
    members[evil] = b"x"
    z = make_zip(tmp_path / "s.zip", members)
    _expect_bad(tmp_path, z, "unsafe entry")
    assert not (tmp_path.parent / "evil.txt").exists()


def test_rejects_symlink_entry(tmp_path, webm_bytes):
    z = make_zip(tmp_path / "s.zip", good_members("s", webm_bytes))
    with zipfile.ZipFile(z, "a") as zf:
        info = zipfile.ZipInfo("link")
        info.create_system = 3
        info.external_attr = (stat.S_IFLNK | 0o777) << 16
        zf.writestr(info, "/etc/passwd")
    _expect_bad(tmp_path, z, "symbolic link")


def test_rejects_zip_bomb_ratio_total_size_and_entry_count(tmp_path, webm_bytes):
    members = good_members("s", webm_bytes)
    members["padding.bin"] = b"\0" * (20 * 1024 * 1024)          # ~1000:1 with deflate
    z = make_zip(tmp_path / "bomb.zip", members)
    _expect_bad(tmp_path, z, "compression ratio")
    z2 = make_zip(tmp_path / "big.zip", good_members("s", webm_bytes))
    with pytest.raises(BadInput, match="more than the limit"):
        import_zip(z2, tmp_path / "w", limits=ZipLimits(max_total_bytes=1000))
    many = good_members("s", webm_bytes)
    many.update({f"extra{i}.txt": b"" for i in range(20)})
    with pytest.raises(BadInput, match="entries"):
        import_zip(make_zip(tmp_path / "many.zip", many), tmp_path / "w", limits=ZipLimits(max_entries=10))


@pytest.mark.parametrize("drop,match", [("webm", "missing member s.webm"),
                                        ("metadata", "missing member s_metadata.json"),
                                        ("input", "no <session_id>_input.json")])
def test_requires_three_members(tmp_path, webm_bytes, drop, match):
    members = good_members("s", webm_bytes)
    key = {"webm": "s.webm", "metadata": "s_metadata.json", "input": "s_input.json"}[drop]
    del members[key]
    _expect_bad(tmp_path, make_zip(tmp_path / "s.zip", members), match)


def test_bad_json_truncated_zip_not_a_zip_not_a_video(tmp_path, webm_bytes):
    members = good_members("s", webm_bytes)
    members["s_input.json"] = '{"startTime": 1, "inputEvents": [ {"timestamp": 1,'
    _expect_bad(tmp_path, make_zip(tmp_path / "j.zip", members), r"s_input.json: invalid JSON at line 1")
    members = good_members("s", webm_bytes)
    members["s_metadata.json"] = '{"a": NaN}'
    _expect_bad(tmp_path, make_zip(tmp_path / "n.zip", members), "NaN is not allowed")

    good = make_zip(tmp_path / "g.zip", good_members("s", webm_bytes)).read_bytes()
    trunc = tmp_path / "t.zip"
    trunc.write_bytes(good[: len(good) // 2])
    _expect_bad(tmp_path, trunc, "not a valid zip")
    # central directory intact, member data corrupted -> CRC / stream error, still one line
    corrupt = bytearray(good)
    off = corrupt.find(b"s_input.json") + 40
    corrupt[off:off + 8] = b"\xff" * 8
    (tmp_path / "c.zip").write_bytes(bytes(corrupt))
    with pytest.raises(NMError) as ei:
        import_zip(tmp_path / "c.zip", tmp_path / "w")
    assert "\n" not in str(ei.value)

    (tmp_path / "text.zip").write_text("hello")
    _expect_bad(tmp_path, tmp_path / "text.zip", "not a valid zip")
    _expect_bad(tmp_path, tmp_path / "missing.zip", "no such file")
    members = good_members("s", b"this is not a webm")
    _expect_bad(tmp_path, make_zip(tmp_path / "v.zip", members), "not a readable video")


def test_mismatched_session_id_and_no_start_time(tmp_path, webm_bytes):
    members = good_members("s", webm_bytes)
    members["s_input.json"] = json.dumps(sample_input("other"))
    _expect_bad(tmp_path, make_zip(tmp_path / "m.zip", members), "is for session 'other'")
    with pytest.raises(BadInput, match="no usable startTime"):
        convert_export({"inputEvents": []}, {"session": {"startTime": "yesterday"}})
    with pytest.raises(BadInput, match="inputEvents must be an array"):
        convert_export({"startTime": 5, "inputEvents": {"a": 1}}, {})


def test_unwritable_workdir_is_one_line(tmp_path, webm_bytes):
    z = make_zip(tmp_path / "s.zip", good_members("s", webm_bytes))
    blocker = tmp_path / "file"
    blocker.write_text("a file where the work folder should be")
    with pytest.raises(NMError) as ei:
        import_zip(z, blocker / "w")
    assert ei.value.exit_code == 4 and "\n" not in str(ei.value)
    assert str(ei.value).startswith(f"cannot write to {blocker / 'w'}")


def test_lone_surrogates_and_deep_metadata(tmp_path, webm_bytes):
    members = good_members("s", webm_bytes)
    inp = sample_input("s")
    inp["inputEvents"][1]["data"]["key"] = "\ud800"
    members["s_input.json"] = json.dumps(inp)                 # "\ud800" escape: valid JSON text
    meta = sample_metadata("s")
    meta["system"]["platform"] = "Linux \udcff"
    members["s_metadata.json"] = json.dumps(meta)
    out = import_zip(make_zip(tmp_path / "u.zip", members), tmp_path / "w")
    rows = [json.loads(r["event_data"]) for r in read_jsonl(out / "s.jsonl")]
    assert [ev.KEY_PRESS, 65, "\ufffd"] in rows
    assert json.loads((out / "metadata.json").read_text())["env"]["os"] == "Linux \ufffd"
    for depth, match in ((32, "JSON nested deeper than 31 levels"),
                         (900, "JSON nested deeper than 31 levels"),   # parses, then refused
                         (5000, "JSON nested too deeply")):          # beyond the parser
        members["s_metadata.json"] = '{"a":' * depth + "1" + "}" * depth
        with pytest.raises(NMError, match=match) as ei:
            import_zip(make_zip(tmp_path / "deep.zip", members), tmp_path / "w2")
        assert "s_metadata.json" in str(ei.value) and "\n" not in str(ei.value)
        assert not (tmp_path / "w2").exists() or not any((tmp_path / "w2").iterdir())
    # 31 levels still import, and the session's metadata.json (one level deeper) aligns
    members["s_metadata.json"] = '{"a":' * 31 + "1" + "}" * 31
    out = import_zip(make_zip(tmp_path / "deep31.zip", members), tmp_path / "w3")
    assert json.loads((out / "metadata.json").read_text())["source_export"]["a"]["a"]


def test_macos_finder_zip_with_resource_forks(tmp_path, webm_bytes):
    members = good_members("s", webm_bytes)
    members.update({"__MACOSX/._s_input.json": b"\x00\x05\x16\x07junk",
                    "__MACOSX/._s.webm": b"\x00\x05\x16\x07junk", "._s_metadata.json": b"junk"})
    out = import_zip(make_zip(tmp_path / "mac.zip", members), tmp_path / "w")
    assert (out / "s.webm").read_bytes() == webm_bytes


def test_stored_zip_with_unicode_and_large_event_list(tmp_path, webm_bytes):
    sid = "big"
    inp = sample_input(sid)
    inp["inputEvents"] = [{"timestamp": START_MS + i, "type": "mouse", "event": "mousemove",
                           "data": {"x": i % 100, "y": 5, "screenX": i % 100 + 10, "screenY": 15}}
                          for i in range(20000)]
    inp["inputEvents"].append({"timestamp": START_MS + 3, "type": "keyboard", "event": "keydown",
                               "data": {"key": "é", "code": "Unidentified"}})
    members = good_members(sid, webm_bytes)
    members[f"{sid}_input.json"] = json.dumps(inp, ensure_ascii=False)
    out = import_zip(make_zip(tmp_path / "b.zip", members, compression=zipfile.ZIP_STORED),
                     tmp_path / "w")
    rows = read_jsonl(out / f"{sid}.jsonl")
    assert len(rows) == 20003
    key = [json.loads(r["event_data"]) for r in rows if '"keyboard.press"' in r["event_data"]]
    assert key == [[ev.KEY_PRESS, None, "é"]]          # unknown key kept, vk null, not guessed


def _lying_sizes(raw: bytes, name: str, size: int, compressed: int | None = None, crc: int | None = None) -> bytes:
    """``raw`` (a zip) with member ``name``'s declared sizes (and CRC) rewritten in both
    its local header and the central directory: what a hostile or broken zip says."""
    import struct
    b = bytearray(raw)
    for sig, fixed in ((b"PK\x03\x04", 14), (b"PK\x01\x02", 16)):    # offset of crc-32
        pos = 0
        while (pos := b.find(sig, pos)) >= 0:
            nlen_off = 26 if sig == b"PK\x03\x04" else 28
            nlen = struct.unpack_from("<H", b, pos + nlen_off)[0]
            hdr = 30 if sig == b"PK\x03\x04" else 46
            if bytes(b[pos + hdr:pos + hdr + nlen]) == name.encode():
                if crc is not None:
                    struct.pack_into("<I", b, pos + fixed, crc)
                if compressed is not None:
                    struct.pack_into("<I", b, pos + fixed + 4, compressed)
                struct.pack_into("<I", b, pos + fixed + 8, size)
            pos += 4
    return bytes(b)


def test_json_member_over_the_default_limit(tmp_path, webm_bytes):
    """The default bound (256 MiB per JSON member, ZipLimits' docstring says why) is
    checked from the declared size, before anything is read or extracted. The zip
    declares a 300 MiB input JSON (stored, so no ratio alarm) it does not contain."""
    assert ZipLimits().max_json_bytes == 256 * 1024**2
    raw = make_zip(tmp_path / "ok.zip", good_members("s", webm_bytes),
                   compression=zipfile.ZIP_STORED).read_bytes()
    big = 300 * 1024**2
    z = tmp_path / "s.zip"
    z.write_bytes(_lying_sizes(raw, "s_input.json", big, compressed=big))
    _expect_bad(tmp_path, z, f"s_input.json is {big} bytes, more than {256 * 1024**2}")
    # the metadata member has the same bound (a bound between the two members' sizes)
    members = good_members("s", webm_bytes)
    in_len, meta_len = (len(members[k].encode()) for k in ("s_input.json", "s_metadata.json"))
    assert meta_len < in_len
    z2 = make_zip(tmp_path / "m.zip", members)
    with pytest.raises(BadInput, match=f"s_input.json is {in_len} bytes, more than {in_len - 1}"):
        import_zip(z2, tmp_path / "w", limits=ZipLimits(max_json_bytes=in_len - 1))
    members["s_input.json"], members["s_metadata.json"] = (
        members["s_input.json"], members["s_metadata.json"] + " " * in_len)
    z3 = make_zip(tmp_path / "m3.zip", members)
    with pytest.raises(BadInput, match=f"s_metadata.json is {meta_len + in_len} bytes, more than {in_len}"):
        import_zip(z3, tmp_path / "w", limits=ZipLimits(max_json_bytes=in_len))


@pytest.mark.parametrize("method", [zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED])
def test_member_longer_than_declared_size(tmp_path, webm_bytes, method):
    """A video member holding more bytes than its header declares: never more than the
    declared size is written, and the import fails with one line, leaving nothing.
    (CPython's zipfile stops reading at the declared size and its CRC check fails, so
    the error comes from there; test_extract_refuses_more_than_declared covers the
    importer's own count.)"""
    raw = make_zip(tmp_path / "ok.zip", good_members("s", webm_bytes), compression=method).read_bytes()
    z = tmp_path / "s.zip"
    z.write_bytes(_lying_sizes(raw, "s.webm", 1000))
    _expect_bad(tmp_path, z, "cannot extract s.webm")
    if method == zipfile.ZIP_STORED:
        # the same lie with a CRC that fits the first 1000 bytes: those come out, no more
        import zlib as _z
        z.write_bytes(_lying_sizes(raw, "s.webm", 1000, crc=_z.crc32(webm_bytes[:1000])))
        out = import_zip(z, tmp_path / "w")
        assert (out / "s.webm").read_bytes() == webm_bytes[:1000]


def test_extract_refuses_more_than_declared(tmp_path, webm_bytes):
    """The importer's own bound in _extract_member, for a zip reader that does not stop
    at the declared size. Not the real zipfile: CPython's never returns more (see the
    test above), so its member stream is replaced by one that keeps going."""
    from companion.interop import zip_export as zx
    z = make_zip(tmp_path / "s.zip", good_members("s", webm_bytes), compression=zipfile.ZIP_STORED)
    with zipfile.ZipFile(z) as zf:
        info = zf.getinfo("s.webm")

        class Overlong(io.BytesIO):
            def __enter__(self):
                return self

        orig_open = zf.open
        zf.open = lambda i, *a, **k: Overlong(webm_bytes + b"more") if i is info else orig_open(i, *a, **k)
        dest = tmp_path / "out.webm"
        with pytest.raises(BadInput, match="s.zip: s.webm is longer than its declared size"):
            zx._extract_member(zf, info, dest, "s.zip")


# --- zip export -> nm-align: what the alignment says and keeps ----------------------------

def _check_aligned_export(session: Path, ds: Path, sid: str, webm: bytes, n_frames: int) -> None:
    """The session and dataset nm-align made from ``<sid>.zip`` (built by good_members)."""
    import pyarrow.parquet as pq
    from companion.contract.metadata import check_format_version
    meta = json.loads((session / "metadata.json").read_text())
    al = meta["alignment"]
    assert al["anchor_source"] == ANCHOR_SOURCE == "export_start_time"
    assert al["confidence"] == "low"
    assert any("pinned to the export start time" in w for w in al["warnings"])
    # the export's own metadata and the import record survive the alignment
    assert meta["source_export"] == sample_metadata(sid)
    assert meta["import"]["anchor_source"] == ANCHOR_SOURCE and meta["import"]["events_imported"] == 6
    assert meta["captured_at"] == "2024-03-22T12:38:31.111Z"
    assert validate_json(meta, "session_metadata") == [] and check_format_version(meta["format_version"]) is None
    # frame times: startTime (ms -> ns) + the WebM's own presentation times, frame by frame
    frames = pq.read_table(session / "frames.parquet")
    with av.open(str(session / f"{sid}.webm")) as c:
        vs = c.streams.video[0]
        pts_ns = sorted(int(Fraction(p.pts) * vs.time_base * 1_000_000_000)
                        for p in c.demux(vs) if p.size and p.pts is not None)
    assert len(pts_ns) == frames.num_rows == n_frames
    assert frames.column("t_ns").to_pylist() == [START_MS * 1_000_000 + p for p in pts_ns]
    assert frames.column("pts_ns").to_pylist() == pts_ns
    assert (session / f"{sid}.webm").read_bytes() == webm
    # every mapped input event is in events.parquet at its exported time
    evs = pq.read_table(session / "events.parquet").to_pylist()
    assert sorted(e["t_ns"] for e in evs if e["source"] in ("keyboard", "mouse")) == \
        [START_MS * 1_000_000 + d for d in (10_000_000, 20_000_000, 30_500_000, 31_000_000,
                                              40_000_000, 50_000_000)]
    # the dataset chunks say how the sync was made
    chunk_metas = [json.loads(p.read_text()) for p in sorted((ds / "actions").rglob("metadata.json"))]
    assert len(chunk_metas) == pq.read_table(ds / "index.parquet").num_rows >= 2
    for cm in chunk_metas:
        assert cm["sync"]["anchor_source"] == "export_start_time"
        assert cm["sync"]["alignment_confidence"] == "low"
        assert cm["original_video"]["session_id"] == sid
    starts = sorted(cm["t_ns"]["start"] for cm in chunk_metas)
    assert starts[0] == START_MS * 1_000_000 + pts_ns[0]


def test_zip_export_aligns_with_low_confidence_and_keeps_its_metadata(tmp_path):
    from companion.align.session import align_session
    sid = "exp2"
    webm = make_webm(tmp_path / "v.webm", n_frames=45).read_bytes()
    z = make_zip(tmp_path / f"{sid}.zip", good_members(sid, webm))
    summary = align_session(z, dataset=tmp_path / "ds", chunk_seconds=1.0, progress=False)
    assert summary["anchor_source"] == "export_start_time" and summary["confidence"] == "low"
    assert summary["out"] == str(tmp_path / sid) and summary["frames"] == 45
    _check_aligned_export(tmp_path / sid, tmp_path / "ds", sid, webm, 45)


def test_nm_align_cli_on_a_zip_export(tmp_path, webm_bytes):
    """The real command: ``nm-align X.zip --dataset ROOT`` as a subprocess, then nm-validate."""
    import os
    import subprocess
    import sys
    repo = Path(__file__).resolve().parents[1]
    env = dict(os.environ, PYTHONPATH=str(repo))
    sid = "cli1"
    z = make_zip(tmp_path / f"{sid}.zip", good_members(sid, webm_bytes))
    r = subprocess.run([sys.executable, "-m", "companion.cli.align_cli", str(z), "--dataset",
                        str(tmp_path / "ds"), "--chunk-seconds", "0.2", "--quiet"],
                       capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "anchors from export_start_time (low)" in r.stdout
    assert "pinned to the export start time" in r.stderr          # the warning is printed
    _check_aligned_export(tmp_path / sid, tmp_path / "ds", sid, webm_bytes, 12)
    for target in (tmp_path / sid, tmp_path / "ds"):
        v = subprocess.run([sys.executable, "-m", "companion.cli.validate_cli", str(target)],
                           capture_output=True, text=True, env=env, timeout=300)
        assert v.returncode == 0, v.stdout + v.stderr
    # a broken zip through the same command: one line, exit 2
    (tmp_path / "bad.zip").write_bytes(b"PK\x03\x04 not really")
    r = subprocess.run([sys.executable, "-m", "companion.cli.align_cli", str(tmp_path / "bad.zip")],
                       capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr
