"""nm-align on a real OBS recording (tests/fixtures, recorded by OBS 29 with the script)
plus generated edge cases. The input events are generated here (JSONL in the
companion's exact shape) at times chosen relative to the recording's frames."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from companion.align.session import align_session
from companion.contract.sidecar import read_sidecar
from companion.util.errors import BadInput

FIX = Path(__file__).parent / "fixtures"
MKV = FIX / "obs29_h264_30fps_pause.mkv"
SIDECAR = FIX / "obs29_h264_30fps_pause.anchors.jsonl"


def line(t, src, data):
    return json.dumps({"timestamp_ns": int(t), "event_src": src,
                       "event_data": json.dumps(data, separators=(",", ":"))}, separators=(",", ":"))


def session_dir(tmp_path, name="s1", sidecar=True, mkv=MKV):
    d = tmp_path / name
    d.mkdir()
    shutil.copy(mkv, d / f"{name}.mkv")
    if sidecar:
        shutil.copy(SIDECAR, d / f"{name}.anchors.jsonl")
    return d


def expected_frame_times():
    """Frame epoch times computed independently from the sidecar: slot = pts/33.33 ms,
    segments and clock offset (3 s recording: offset only, no drift fit)."""
    import av
    sc = read_sidecar(SIDECAR)
    with av.open(str(MKV)) as c:
        pts = sorted(p.pts for p in c.demux(c.streams.video[0]) if p.pts is not None)
    I = sc.header["interval_ns"]
    offs = np.array([c.epoch_ns - c.mono_ns for c in sc.clocks], dtype=np.int64)
    med = int(np.median(offs))
    a = round(float(np.mean(offs - med)))    # small: float is exact enough
    out = []
    for p in pts:
        slot = round(p * 1_000_000 / I)
        seg = [s for s in sc.segments if s.pts_base <= slot][-1]
        mono = seg.frame_ns + (slot - seg.pts_base) * I
        out.append(mono + med + a)
    return out


def write_events(d, name, frame_t, extra_lines=(), marker=False):
    t0 = frame_t[0]
    lines = [line(t0 - 5_000_000, "recorder", {"event": "session.start", "session_id": name})]
    if marker:
        lines.append(line(t0 - 2_000_000, "recorder", {"event": "recording.started"}))
    lines.append(line(t0 + 1, "window_publisher", {"title": "Game", "rect": [0, 0, 320, 240], "hWnd": 7}))
    lines.append(line(frame_t[10], "control_publisher", ["mouse.move", 160, 120]))
    lines.append(line(frame_t[10] - 1, "control_publisher", ["mouse.move", 80, 60]))
    lines.append(line(frame_t[40], "control_publisher", ["keyboard.press", 87, "w"]))
    lines.append(line(frame_t[50] + 5, "control_publisher", ["keyboard.release", 87, "w"]))
    lines.append(line(frame_t[60], "control_publisher", ["mouse.click", 160, 120, "left", True]))
    lines.append(line(frame_t[61], "control_publisher", ["mouse.click", 160, 120, "left", False]))
    lines.append(line(frame_t[-1] + 10**10, "control_publisher", ["mouse.scroll", 1, 1, 0, -1]))
    lines.extend(extra_lines)
    (d / f"{name}.jsonl").write_text("\n".join(lines) + "\n")


def test_real_recording_aligns_to_the_frame(tmp_path):
    d = session_dir(tmp_path)
    ft = expected_frame_times()
    write_events(d, "s1", ft)
    summary = align_session(d / "s1.mkv", progress=False)
    assert summary["anchor_source"] == "captions+sidecar" and summary["confidence"] == "exact"
    frames = pq.read_table(d / "frames.parquet")
    assert frames.num_rows == 91
    assert frames.column("t_ns").to_pylist() == ft
    seg = frames.column("segment").to_pylist()
    assert seg.index(1) == 32                      # the pause boundary
    assert frames.column("slot").to_pylist()[-1] == 91   # OBS left slot 90 out
    ev = pq.read_table(d / "events.parquet").to_pylist()
    by = {(e["event_type"], e["mouse_x_px"], e["key_code"], e["state"]): e for e in ev}
    assert by[("mouse_move", 160.0, None, None)]["frame_ref"] == 10     # exactly at frame 10
    assert by[("mouse_move", 80.0, None, None)]["frame_ref"] == 9       # 1 ns earlier
    assert by[("key_down", None, 87, "pressed")]["frame_ref"] == 40
    assert by[("key_up", None, 87, "released")]["frame_ref"] == 50
    wheel = [e for e in ev if e["event_type"] == "wheel"][0]
    assert wheel["frame_ref"] is None                                   # after the video
    meta = json.loads((d / "metadata.json").read_text())
    al = meta["alignment"]
    assert al["crosscheck"]["agree"] and al["frame_count"] == 91 and al["event_count"] == len(ev)
    assert al["frame_slots_missing"] == 1 and meta["dropped_frames"] >= 1
    names = [ln.split()[1] for ln in (d / "integrity.sha256").read_text().splitlines()]
    assert set(names) == {"s1.mkv", "s1.jsonl", "s1.anchors.jsonl", "frames.parquet",
                          "events.parquet", "metadata.json"}


def test_captions_only_and_sidecar_only_give_the_same_times(tmp_path):
    ft = expected_frame_times()
    d1 = session_dir(tmp_path, "caps", sidecar=False)
    write_events(d1, "caps", ft)
    assert align_session(d1 / "caps.mkv", progress=False)["anchor_source"] == "captions"
    # strip every SEI NAL (the captions) from the H.264 stream with FFmpeg, keep the sidecar
    d2 = tmp_path / "side"
    d2.mkdir()
    subprocess.run(["ffmpeg", "-v", "error", "-i", str(MKV), "-map", "0", "-c", "copy",
                    "-bsf:v", "filter_units=remove_types=6", str(d2 / "side.mkv")], check=True)
    shutil.copy(SIDECAR, d2 / "side.anchors.jsonl")
    write_events(d2, "side", ft)
    s2 = align_session(d2 / "side.mkv", progress=False)
    assert s2["anchor_source"] == "sidecar"
    t1 = pq.read_table(d1 / "frames.parquet").column("t_ns").to_pylist()
    t2 = pq.read_table(d2 / "frames.parquet").column("t_ns").to_pylist()
    assert t1 == t2 == ft
    # no captions, no sidecar: the recording.started marker pins frame 0, low confidence
    d3 = tmp_path / "none"
    d3.mkdir()
    shutil.copy(d2 / "side.mkv", d3 / "none.mkv")
    write_events(d3, "none", ft, marker=True)
    s3 = align_session(d3 / "none.mkv", progress=False)
    assert s3["confidence"] == "low" and s3["warnings"]
    assert json.loads((d3 / "metadata.json").read_text())["alignment"]["anchor_source"] == "recording_start_marker"
    # and without the marker: a clear error, nothing written
    d4 = tmp_path / "bare"
    d4.mkdir()
    shutil.copy(d2 / "side.mkv", d4 / "bare.mkv")
    write_events(d4, "bare", ft)
    with pytest.raises(BadInput, match="no timing anchors"):
        align_session(d4 / "bare.mkv", progress=False)
    assert sorted(p.name for p in d4.iterdir()) == ["bare.jsonl", "bare.mkv"]


def test_sidecar_disagreeing_with_captions_is_reported(tmp_path):
    d = session_dir(tmp_path)
    ft = expected_frame_times()
    write_events(d, "s1", ft)
    recs = [json.loads(x) for x in (d / "s1.anchors.jsonl").read_text().splitlines()]
    for r in recs:
        if r["kind"] == "segment" and r["segment"] == 1:
            r["frame_ns"] += 33_333_333
    (d / "s1.anchors.jsonl").write_text("\n".join(json.dumps(r) for r in recs) + "\n")
    s = align_session(d / "s1.mkv", progress=False)
    assert s["anchor_source"] == "captions"
    assert any("disagree" in w for w in s["warnings"])
    assert pq.read_table(d / "frames.parquet").column("t_ns").to_pylist() == ft


def test_torn_last_line_is_tolerated_and_rerun_replaces_outputs(tmp_path):
    d = session_dir(tmp_path)
    ft = expected_frame_times()
    write_events(d, "s1", ft)
    with open(d / "s1.jsonl", "a") as f:
        f.write('{"timestamp_ns": 17952492805')       # killed mid-write
    align_session(d / "s1.mkv", progress=False)
    meta = json.loads((d / "metadata.json").read_text())
    assert meta["alignment"]["events_torn_tail"] is True
    first = {n: pq.read_table(d / n) for n in ("events.parquet", "frames.parquet")}
    assert first["events.parquet"].num_rows > 0
    # a rerun on the same inputs replaces every output with the same content, leaves no
    # temp files, and integrity.sha256 matches the new files
    (d / "events.parquet").write_bytes(b"stale")
    align_session(d / "s1.mkv", progress=False)
    for n, t in first.items():
        assert pq.read_table(d / n).equals(t), n
    assert not [p.name for p in d.iterdir() if p.name.startswith(".")]
    import hashlib
    lines = dict(reversed(ln.split("  ", 1)) for ln in (d / "integrity.sha256").read_text().splitlines())
    assert lines["events.parquet"] == hashlib.sha256((d / "events.parquet").read_bytes()).hexdigest()


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "companion.cli.align_cli", *map(str, args)],
                          capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("case", ["not_video", "truncated", "garbled", "missing_events",
                                  "mismatched", "empty"])
def test_bad_input_one_line_error_no_output(tmp_path, case):
    d = session_dir(tmp_path)
    ft = expected_frame_times()
    write_events(d, "s1", ft)
    if case == "not_video":
        (d / "s1.mkv").write_bytes(b"this is not a video\n" * 100)
    elif case == "truncated":
        data = MKV.read_bytes()
        (d / "s1.mkv").write_bytes(data[: len(data) // 2])
    elif case == "garbled":
        text = (d / "s1.jsonl").read_text().splitlines()
        text[3] = '{"timestamp_ns": 12, "event_src": oops'
        (d / "s1.jsonl").write_text("\n".join(text) + "\n")
    elif case == "missing_events":
        (d / "s1.jsonl").unlink()
    elif case == "mismatched":
        write_events(d, "s1", [t - 86400 * 10**9 for t in ft])
    elif case == "empty":
        (d / "s1.mkv").write_bytes(b"")
    before = sorted(p.name for p in d.iterdir())
    r = _cli(d / "s1.mkv")
    assert r.returncode == 2, r.stderr
    errs = [ln for ln in r.stderr.splitlines() if "error" in ln]
    assert len(errs) == 1 and r.stderr.splitlines()[-1].startswith("nm-align: error: "), r.stderr
    assert "Traceback" not in r.stderr
    assert sorted(p.name for p in d.iterdir()) == before


def test_cli_json_summary(tmp_path):
    d = session_dir(tmp_path)
    write_events(d, "s1", expected_frame_times())
    r = _cli(d / "s1.mkv", "--json")
    assert r.returncode == 0, r.stderr
    s = json.loads(r.stdout)
    assert s["frames"] == 91 and s["anchor_source"] == "captions+sidecar"


def test_console_script_exits_promptly_with_everything_written(tmp_path):
    """The installed ``nm-align`` script ends with ``os._exit`` once main returns
    (cli.common.exit_now): its JSON summary still arrives whole through a pipe, the
    session and dataset it wrote pass nm-validate, and a failure keeps its exit code
    and one-line error."""
    exe = Path(sys.executable).parent / ("nm-align.exe" if os.name == "nt" else "nm-align")
    assert exe.exists(), "package not installed with its console scripts"
    d = session_dir(tmp_path)
    write_events(d, "s1", expected_frame_times())
    r = subprocess.run([str(exe), str(d / "s1.mkv"), "--json", "--dataset", str(tmp_path / "ds")],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    s = json.loads(r.stdout)                       # flushed before the exit: whole
    assert s["frames"] == 91 and s["dataset"]["chunks"] >= 1
    for path in (d, tmp_path / "ds"):
        v = subprocess.run([str(exe.parent / exe.name.replace("nm-align", "nm-validate")),
                            str(path)], capture_output=True, text=True, timeout=120)
        assert v.returncode == 0, v.stdout + v.stderr
    bad = subprocess.run([str(exe), str(tmp_path / "nope.mkv")], capture_output=True, text=True,
                         timeout=60)
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1
    assert bad.stderr.startswith("nm-align: error: ")


def test_video_hash_is_reused_only_when_integrity_is_newer(tmp_path):
    import hashlib
    import os
    d = session_dir(tmp_path)
    write_events(d, "s1", expected_frame_times())
    align_session(d / "s1.mkv", progress=False)
    real = hashlib.sha256((d / "s1.mkv").read_bytes()).hexdigest()
    lines = (d / "integrity.sha256").read_text()
    assert f"{real}  s1.mkv" in lines
    # a recorded hash newer than the file is reused (the companion hashes at finalize) ...
    fake = "0" * 64
    (d / "integrity.sha256").write_text(lines.replace(real, fake))
    align_session(d / "s1.mkv", progress=False)
    assert f"{fake}  s1.mkv" in (d / "integrity.sha256").read_text()
    # ... but a file modified after it is hashed again
    st = (d / "integrity.sha256").stat()
    os.utime(d / "s1.mkv", ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    align_session(d / "s1.mkv", progress=False)
    assert f"{real}  s1.mkv" in (d / "integrity.sha256").read_text()


# --- the session's metadata.json: strict reader, version check, schema of what is kept ----

DEEP = '{"env": ' + '{"a": ' * 5000 + '1' + '}' * 5000 + '}'


@pytest.mark.parametrize("body,message", [
    ('{"dropped_frames": NaN}', "NaN is not allowed"),
    ('{"capture_fps": Infinity}', "Infinity is not allowed"),
    (DEEP, "nested too deeply"),
    ('{"env": ' + '[' * 40 + ']' * 40 + '}', "nested deeper than 32 levels"),
    ('{"format_version": "2.0.0", "session_id": "s1"}',
     "format_version 2.0.0 has major version 2; this reader supports major 1"),
    ('{"format_version": "one"}', "not a semantic version"),
    ('{"game": "\\ud800"}', "lone UTF-16 surrogate"),
    ('{"dropped_frames": "3"}', "dropped_frames: expected integer or null, got string"),
    ('{"env": [1, 2]}', "env: expected object, got array"),
    ('[1, 2]', "not a JSON object"),
    ('{"a": 1,}', "invalid JSON at line 1 column"),
    (b'{"game": "\xff"}', "not UTF-8 text"),
])
def test_bad_metadata_json_is_one_line_error_and_kept(tmp_path, body, message):
    """Each used to be a traceback (RecursionError), accepted and written back (NaN: then
    nm-validate failed) or silently processed (2.0.0, which versioning.md says to refuse)."""
    d = session_dir(tmp_path, sidecar=True)
    write_events(d, "s1", expected_frame_times())
    raw = body if isinstance(body, bytes) else body.encode()
    (d / "metadata.json").write_bytes(raw)
    with pytest.raises(BadInput) as ei:
        align_session(d / "s1.mkv", progress=False)
    assert message in str(ei.value) and "\n" not in str(ei.value)
    assert str(d / "metadata.json") in str(ei.value)
    assert (d / "metadata.json").read_bytes() == raw                  # nothing lost
    assert not (d / "frames.parquet").exists() and not (d / "events.parquet").exists()
    r = _cli(str(d / "s1.mkv"))
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and message in r.stderr


def test_same_major_metadata_is_kept_and_valid(tmp_path):
    d = session_dir(tmp_path, sidecar=True)
    write_events(d, "s1", expected_frame_times())
    (d / "metadata.json").write_text(json.dumps({
        "format_version": "1.0.0", "session_id": "s1", "game": "Quake", "dropped_frames": 2,
        "env": {"os": "Linux", "gpu": None}, "future_field": {"x": [1, 2]}}))
    align_session(d / "s1.mkv", progress=False)
    meta = json.loads((d / "metadata.json").read_text())
    assert meta["game"] == "Quake" and meta["future_field"] == {"x": [1, 2]}
    assert meta["dropped_frames"] == 2 and meta["alignment"]["anchor_source"] == "captions+sidecar"
    r = subprocess.run([sys.executable, "-m", "companion.cli.validate_cli", str(d)],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
