"""open-world-agents MKV out (and in): real H.264/AAC media, real MKV, real SRT."""
from __future__ import annotations

import hashlib
import subprocess
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pyarrow as pa
import pysubs2
import pytest

from companion.align.demux import scan_video
from companion.contract.schemas import FRAMES_SCHEMA
from companion.interop.owa import (export_owa, frames_from_epoch_cues, parse_epoch_cue,
                                   plan_cues)
from companion.util.errors import BadInput

T0 = 1_740_119_250_371_185_500


def make_h264(path: Path, seconds: float = 2.5, fps: int = 30, bframes: bool = True,
              audio: bool = True) -> Path:
    """A real H.264 (+AAC) file made by ffmpeg from test sources."""
    cmd = ["ffmpeg", "-loglevel", "error", "-y", "-f", "lavfi", "-i",
           f"testsrc=size=64x48:rate={fps}"]
    if audio:
        cmd += ["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000"]
    cmd += ["-t", str(seconds), "-c:v", "libx264", "-g", "15", "-bf", "2" if bframes else "0",
            "-pix_fmt", "yuv420p"]
    if audio:
        cmd += ["-c:a", "aac"]
    subprocess.run(cmd + [str(path)], check=True)
    return path


def frames_table_for(video: Path, drift_ppm: float = 150.0) -> pa.Table:
    """A FRAMES_SCHEMA table for ``video`` with non-uniform epoch times (drift + jitter)."""
    s = scan_video(video)
    n = s.n_frames
    pts_ns = np.array([int(Fraction(int(p)) * s.time_base * 1_000_000_000) for p in s.pts],
                      dtype=np.int64)
    rel = pts_ns - pts_ns[0]
    rng = np.random.default_rng(7)
    t_ns = T0 + (rel * (1 + drift_ppm * 1e-6)).astype(np.int64) + rng.integers(0, 999, n)
    t_ns = np.maximum.accumulate(t_ns)
    cols = {
        "frame_idx": np.arange(n, dtype=np.int64), "slot": np.arange(n, dtype=np.int64),
        "pts": s.pts.astype(np.int64),
        "pts_ns": rel.astype(np.int64), "mono_ns": (10**12 + rel).astype(np.int64),
        "t_ns": t_ns.astype(np.int64), "segment": np.zeros(n, dtype=np.int32),
        "keyframe": s.keyframe.astype(bool)}
    return pa.table({f.name: cols[f.name] for f in FRAMES_SCHEMA}, schema=FRAMES_SCHEMA)


def packet_digests(path: Path, kind: str) -> list[str]:
    with av.open(str(path)) as c:
        st = c.streams.video[0] if kind == "video" else c.streams.audio[0]
        return [hashlib.sha256(bytes(p)).hexdigest() for p in c.demux(st) if p.size]


@pytest.fixture(scope="module")
def media(tmp_path_factory):
    d = tmp_path_factory.mktemp("owa")
    v = make_h264(d / "rec.mp4")
    return v, frames_table_for(v)


def test_round_trip_per_frame(tmp_path, media):
    video, frames = media
    out = tmp_path / "owa" / "rec.mkv"
    res = export_owa(video, frames, out)
    assert res["n_cues"] == frames.num_rows == res["n_frames"]
    assert sorted(p.name for p in out.parent.iterdir()) == ["rec.mkv"]    # no temp left behind

    # stream copy: identical packet payloads, video and audio
    assert packet_digests(out, "video") == packet_digests(video, "video")
    assert packet_digests(out, "audio") == packet_digests(video, "audio")

    # read back with plain PyAV: each cue starts exactly at its frame's pts (ms)
    with av.open(str(out)) as c:
        vs, ss = c.streams.video[0], c.streams.subtitles[0]
        assert ss.codec_context.name in ("subrip", "srt") and ss.metadata.get("title") == "epoch_ns"
        vpts, cues = [], {}
        for p in c.demux(vs, ss):
            if not p.size:
                continue
            if p.stream_index == vs.index:
                vpts.append(int(p.pts))
            else:
                cues[int(p.pts * p.time_base * 1000)] = bytes(p).decode().strip()
    vpts.sort()
    assert len(cues) == len(vpts)
    got = np.array([int(cues[p]) for p in vpts], dtype=np.int64)     # KeyError = misplaced cue
    assert np.array_equal(got, frames.column("t_ns").to_numpy())

    # read back the way the aligner does: scan_video + frames_from_epoch_cues
    s = scan_video(out)
    fpts_ns = np.array([int(Fraction(int(p)) * s.time_base * 10**9) for p in s.pts], dtype=np.int64)
    idx, epoch, ignored = frames_from_epoch_cues(fpts_ns, s.subtitle_cues)
    assert ignored == 0
    assert np.array_equal(idx, np.arange(frames.num_rows))
    assert np.array_equal(epoch, frames.column("t_ns").to_numpy())

    # and the subtitle track as an SRT file, read by pysubs2 (what OWA tooling does)
    srt = tmp_path / "x.srt"
    subprocess.run(["ffmpeg", "-loglevel", "error", "-i", str(out), "-map", "0:s:0", str(srt)], check=True)
    subs = pysubs2.load(str(srt))
    assert [int(e.text) for e in subs] == frames.column("t_ns").to_pylist()


def test_per_second(tmp_path, media):
    video, frames = media
    out = tmp_path / "sec.mkv"
    res = export_owa(video, frames, out, per="second")
    s = scan_video(out)
    assert res["n_cues"] == 3 == len(s.subtitle_cues)       # 2.5 s of video: seconds 0, 1, 2
    fpts_ns = np.array([int(Fraction(int(p)) * s.time_base * 10**9) for p in s.pts], dtype=np.int64)
    idx, epoch, ignored = frames_from_epoch_cues(fpts_ns, s.subtitle_cues)
    assert ignored == 0 and idx.tolist() == [0, 30, 60]
    assert epoch.tolist() == [frames.column("t_ns")[i].as_py() for i in (0, 30, 60)]
    # a cue lasts until the next one
    assert [c[1] for c in s.subtitle_cues[:-1]] == [c[0] for c in s.subtitle_cues[1:]]


def test_video_without_audio_and_without_bframes(tmp_path):
    v = make_h264(tmp_path / "na.mkv", seconds=1, fps=60, bframes=False, audio=False)
    frames = frames_table_for(v)
    out = tmp_path / "out.mkv"
    export_owa(v, frames, out)
    s = scan_video(out)
    assert not s.has_audio and s.n_frames == 60
    fpts_ns = np.array([int(Fraction(int(p)) * s.time_base * 10**9) for p in s.pts], dtype=np.int64)
    idx, epoch, _ = frames_from_epoch_cues(fpts_ns, s.subtitle_cues)
    assert np.array_equal(epoch, frames.column("t_ns").to_numpy()) and len(idx) == 60


def test_ffmpeg_made_owa_mkv_is_read(tmp_path):
    """An MKV muxed by ffmpeg from a hand-written SRT (as OWA's recorder produces: one
    epoch-ns cue per second, plus one junk cue) maps to the right frames."""
    v = make_h264(tmp_path / "v.mp4", seconds=3, fps=30, bframes=False, audio=False)
    srt = tmp_path / "c.srt"
    lines = []
    epochs = [T0, T0 + 1_000_012_345, T0 + 2_000_020_000]
    for k, e in enumerate(epochs):
        lines += [str(k + 1), f"00:00:0{k},000 --> 00:00:0{k + 1},000", str(e), ""]
    lines += ["4", "00:00:02,500 --> 00:00:02,600", "hello world", ""]
    srt.write_text("\n".join(lines))
    out = tmp_path / "owa.mkv"
    subprocess.run(["ffmpeg", "-loglevel", "error", "-i", str(v), "-i", str(srt), "-map", "0",
                    "-map", "1", "-c:v", "copy", "-c:s", "srt", str(out)], check=True)
    s = scan_video(out)
    fpts_ns = np.array([int(Fraction(int(p)) * s.time_base * 10**9) for p in s.pts], dtype=np.int64)
    idx, epoch, ignored = frames_from_epoch_cues(fpts_ns, s.subtitle_cues)
    assert idx.tolist() == [0, 30, 60]
    assert epoch.tolist() == epochs
    assert ignored == 1


def test_plan_cues_rounding_matches_ffmpeg():
    # 90 kHz time base at 30000/1001 fps: 3003 ticks per frame = 33.3667 ms
    pts = np.arange(0, 10) * 3003
    cues = plan_cues(pts, T0 + np.arange(10), Fraction(1, 90000))
    assert [c.start_ms for c in cues] == [0, 33, 67, 100, 133, 167, 200, 234, 267, 300]
    assert [c.end_ms for c in cues[:-1]] == [c.start_ms for c in cues[1:]]
    assert cues[-1].end_ms > cues[-1].start_ms
    with pytest.raises(BadInput, match="less than 1 ms apart"):
        plan_cues([0, 1], [1, 2], Fraction(1, 90000))
    with pytest.raises(BadInput, match="strictly increasing"):
        plan_cues([0, 3003, 3003], [1, 2, 3], Fraction(1, 90000))


def test_parse_epoch_cue():
    assert parse_epoch_cue(" 1740119250371185500\n") == 1740119250371185500
    for bad in ["", "-5", "1.5", "١٢٣", "99999999999999999999", "12 34"]:
        assert parse_epoch_cue(bad) is None


def test_bad_inputs_leave_nothing(tmp_path, media):
    video, frames = media
    out = tmp_path / "o" / "x.mkv"
    with pytest.raises(BadInput, match="not in the frames table"):
        export_owa(video, frames.slice(0, frames.num_rows - 1), out)
    assert not out.exists() and not any(out.parent.iterdir())
    # a table with every frame and one extra: the counts disagree
    last = frames.slice(0, 1)
    for col, val in (("pts", 10**9), ("frame_idx", frames.num_rows)):
        last = last.set_column(frames.schema.get_field_index(col), frames.schema.field(col),
                               pa.array([val], pa.int64()))
    extra = pa.concat_tables([frames, last])
    with pytest.raises(BadInput, match=r"has \d+ video frames, frames table has"):
        export_owa(video, extra, out)
    with pytest.raises(BadInput, match="lacks column"):
        export_owa(video, frames.drop_columns(["t_ns"]), out)
    with pytest.raises(BadInput, match="per must be"):
        export_owa(video, frames, out, per="minute")
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"not a video at all" * 10)
    with pytest.raises(BadInput, match="not a readable video"):
        export_owa(junk, frames, out)
    with pytest.raises(BadInput, match="no such file"):
        export_owa(tmp_path / "nope.mp4", frames, out)
    shifted = frames.set_column(frames.schema.get_field_index("pts"), "pts", pa.array(frames.column("pts").to_numpy() + 1))
    with pytest.raises(BadInput, match="not in the frames table"):
        export_owa(video, shifted, out)
    assert not out.exists()


# --- our OBS session out as an OWA MKV and back in: the same frame times -------------------

import json
import shutil
import sys

import pyarrow.parquet as pq

from companion.align.anchors import choose_anchors
from companion.interop.owa import epoch_track_tags

FIX = Path(__file__).parent / "fixtures"
REPO = Path(__file__).resolve().parents[1]
OBS_FIXTURES = ("obs29_h264_30fps_pause", "obs29_h264_60fps_startrace")


def nm_align(*args, cwd=None) -> subprocess.CompletedProcess:
    """The real CLI, as a user runs it (``python -m companion.cli.align_cli``)."""
    import os
    env = dict(os.environ, PYTHONPATH=str(REPO))
    return subprocess.run([sys.executable, "-m", "companion.cli.align_cli", *map(str, args)],
                          capture_output=True, text=True, env=env, cwd=cwd, timeout=300)


def _session(tmp: Path, stem: str) -> Path:
    """A copy of a committed OBS recording and its sidecar, with a small event log."""
    d = tmp / "rec"
    d.mkdir()
    shutil.copy(FIX / f"{stem}.mkv", d)
    shutil.copy(FIX / f"{stem}.anchors.jsonl", d)
    sc = [json.loads(line) for line in (FIX / f"{stem}.anchors.jsonl").read_text().splitlines()
          if line.strip()]
    t0 = next(r["epoch_ns"] for r in sc if r.get("kind") == "clock")
    lines = [json.dumps({"timestamp_ns": t0 + k * 250_000_000, "event_src": "control_publisher",
                         "event_data": json.dumps(["mouse.move", 10 * k, 20])}) for k in range(8)]
    (d / f"{stem}.jsonl").write_text("\n".join(lines) + "\n")
    return d / f"{stem}.mkv"


@pytest.fixture(scope="module", params=OBS_FIXTURES)
def obs_owa(request, tmp_path_factory):
    """One OBS fixture aligned with ``nm-align --owa-out`` (per frame) through the CLI."""
    stem = request.param
    tmp = tmp_path_factory.mktemp(stem)
    mkv = _session(tmp, stem)
    owa = tmp / "owa" / f"{stem}.mkv"
    r = nm_align(mkv, "--owa-out", owa, "--json")
    assert r.returncode == 0, r.stderr
    summary = json.loads(r.stdout)
    assert summary["anchor_source"] == "captions+sidecar" and summary["owa_out"] == str(owa)
    return stem, mkv, owa, pq.read_table(mkv.parent / "frames.parquet")


def test_owa_out_marks_its_track_and_copies_the_pair(obs_owa):
    stem, mkv, owa, frames = obs_owa
    assert sorted(p.name for p in owa.parent.iterdir()) == sorted(
        [f"{stem}.mkv", f"{stem}.jsonl", f"{stem}.anchors.jsonl"])
    assert (owa.parent / f"{stem}.anchors.jsonl").read_bytes() == (FIX / f"{stem}.anchors.jsonl").read_bytes()
    assert (owa.parent / f"{stem}.jsonl").read_bytes() == mkv.with_suffix(".jsonl").read_bytes()
    tags = epoch_track_tags(owa)
    meta = json.loads((mkv.parent / "metadata.json").read_text())
    assert tags["TITLE"] == "epoch_ns" and tags["NM_EPOCH_TRACK"] == "frame"
    assert tags["NM_FRAMES"] == str(frames.num_rows)
    assert tags["NM_RECORDING_ID"] == meta["alignment"]["recording_id"]
    assert tags["NM_CONFIDENCE"] == "exact"
    assert epoch_track_tags(mkv) == {}                 # the OBS original has no such track
    # the stream copy keeps our NM1 caption SEIs in the video packets
    assert packet_digests(owa, "video") == packet_digests(mkv, "video")


@pytest.mark.parametrize("with_sidecar", [True, False], ids=["with-sidecar", "mkv+jsonl-only"])
def test_owa_round_trip_same_frame_times(obs_owa, tmp_path, with_sidecar):
    """Read the OWA MKV back with ``nm-align`` (CLI): every frame's t_ns is unchanged --
    on the start-race fixture too, whose correction comes from the sidecar's stop record
    that captions cannot carry. With the copied sidecar the anchors are recomputed; with
    only the OWA pair (MKV + JSONL) our tagged per-frame track wins over the captions."""
    stem, _mkv, owa, frames = obs_owa
    d = tmp_path / "back"
    d.mkdir()
    shutil.copy(owa, d)
    shutil.copy(owa.with_suffix(".jsonl"), d)
    if with_sidecar:
        shutil.copy(owa.parent / f"{stem}.anchors.jsonl", d)
    r = nm_align(d / owa.name, "--json")
    assert r.returncode == 0, r.stderr
    summary = json.loads(r.stdout)
    assert summary["anchor_source"] == ("captions+sidecar" if with_sidecar else "nm_epoch_track")
    assert summary["confidence"] == "exact"
    back = pq.read_table(d / "frames.parquet")
    assert back.num_rows == frames.num_rows
    assert back.column("pts").to_pylist() == frames.column("pts").to_pylist()
    assert back.column("t_ns").to_pylist() == frames.column("t_ns").to_pylist()
    ev0 = pq.read_table(_mkv.parent / "events.parquet")
    ev1 = pq.read_table(d / "events.parquet")
    assert ev1.column("frame_ref").to_pylist() == ev0.column("frame_ref").to_pylist()
    v = subprocess.run([sys.executable, "-m", "companion.cli.validate_cli", str(d)],
                       capture_output=True, text=True, env={**__import__("os").environ,
                                                             "PYTHONPATH": str(REPO)})
    assert v.returncode == 0, v.stdout + v.stderr


def test_start_race_fixture_captions_alone_would_shift(obs_owa):
    """Why the track must win over the captions: on the start-race recording the
    captions alone give other times (the bug this guards against); a track naming
    another recording, or one cut short, is not trusted."""
    stem, _mkv, owa, frames = obs_owa
    s = scan_video(owa)
    fpts = np.array([int(Fraction(int(p)) * s.time_base * 10**9) for p in s.pts], dtype=np.int64)
    tags = epoch_track_tags(owa)
    a = choose_anchors(s.captions, None, s.subtitle_cues, None, tags, fpts)
    assert a.source == "nm_epoch_track"
    caps = choose_anchors(s.captions, None, s.subtitle_cues, None)     # tags unknown
    assert caps.source == "captions"
    from companion.align.session import build_frames
    t_caps = build_frames(s, caps)[0].column("t_ns").to_numpy()
    shifted = int(np.count_nonzero(t_caps != frames.column("t_ns").to_numpy()))
    if stem.endswith("startrace"):
        assert shifted == frames.num_rows
    other = choose_anchors(s.captions, None, s.subtitle_cues, None,
                           {**tags, "NM_RECORDING_ID": "DEADBEEF"}, fpts)
    assert other.source == "captions" and any("DEADBEEF" in w for w in other.warnings)
    cut = choose_anchors(s.captions, None, s.subtitle_cues[:-1], None, tags, fpts)
    assert cut.source == "captions" and any("cut or re-muxed" in w for w in cut.warnings)


# --- an OWA recording made by third-party tools, end to end -------------------------------

# seed 002's example.jsonl, verbatim (the shape OWA's recorder writes: 2-element key
# arrays, window events without pid/app, a scroll)
SEED002_JSONL = r'''{"timestamp_ns":1740119250371185500,"event_src":"window_publisher","event_data":"{\"title\":\"index.md - open-world-agents - Visual Studio Code\",\"rect\":[1720,0,3440,1392],\"hWnd\":133820}"}
{"timestamp_ns":1740119251372073500,"event_src":"window_publisher","event_data":"{\"title\":\"index.md - open-world-agents - Visual Studio Code\",\"rect\":[1720,0,3440,1392],\"hWnd\":133820}"}
{"timestamp_ns":1740119252372885600,"event_src":"window_publisher","event_data":"{\"title\":\"index.md - open-world-agents - Visual Studio Code\",\"rect\":[1720,0,3440,1392],\"hWnd\":133820}"}
{"timestamp_ns":1740119253373626300,"event_src":"window_publisher","event_data":"{\"title\":\"index.md - open-world-agents - Visual Studio Code\",\"rect\":[1720,0,3440,1392],\"hWnd\":133820}"}
{"timestamp_ns":1740119254374614300,"event_src":"window_publisher","event_data":"{\"title\":\"index.md - open-world-agents - Visual Studio Code\",\"rect\":[1720,0,3440,1392],\"hWnd\":133820}"}
{"timestamp_ns":1740119255179855200,"event_src":"control_publisher","event_data":"[\"keyboard.press\",162]"}
{"timestamp_ns":1740119255231630800,"event_src":"control_publisher","event_data":"[\"keyboard.press\",67]"}
{"timestamp_ns":1740119329381736500,"event_src":"window_publisher","event_data":"{\"title\":\"recorder.py (Working Tree) (recorder.py) - open-world-agents - Visual Studio Code\",\"rect\":[1720,0,3440,1392],\"hWnd\":133820}"}
{"timestamp_ns":1740119329446280600,"event_src":"control_publisher","event_data":"[\"mouse.move\",2592,1309]"}
{"timestamp_ns":1740119329447390300,"event_src":"control_publisher","event_data":"[\"mouse.move\",2591,1309]"}
{"timestamp_ns":1740119329454390800,"event_src":"control_publisher","event_data":"[\"mouse.move\",2587,1309]"}
{"timestamp_ns":1740119329461473500,"event_src":"control_publisher","event_data":"[\"mouse.move\",2583,1309]"}
{"timestamp_ns":1740119329469521800,"event_src":"control_publisher","event_data":"[\"mouse.move\",2580,1309]"}
{"timestamp_ns":1740119329476521000,"event_src":"control_publisher","event_data":"[\"mouse.move\",2577,1310]"}
{"timestamp_ns":1740119329483605100,"event_src":"control_publisher","event_data":"[\"mouse.move\",2575,1310]"}
{"timestamp_ns":1740119329491665600,"event_src":"control_publisher","event_data":"[\"mouse.move\",2575,1310]"}
{"timestamp_ns":1740119329619434700,"event_src":"control_publisher","event_data":"[\"mouse.scroll\",2575,1310,0,1]"}
'''
OWA_T0 = 1_740_119_250_300_000_000     # capture time of frame 0 (before the first event)
OWA_SECONDS, OWA_FPS = 82, 5


def _srt_time(ms: int) -> str:
    return f"{ms // 3_600_000:02d}:{ms // 60_000 % 60:02d}:{ms // 1000 % 60:02d},{ms % 1000:03d}"


@pytest.fixture(scope="module")
def third_party_owa(tmp_path_factory):
    """``example.mkv`` + ``example.jsonl`` as OWA's tools make them: an H.264 video muxed
    by ffmpeg with an SRT of one epoch-ns cue per second (the recorder's clock drifting
    by 40 us a second and one cue 3 ms late), and seed 002's example JSONL verbatim."""
    d = tmp_path_factory.mktemp("owa3p")
    v = make_h264(d / "v.mp4", seconds=OWA_SECONDS, fps=OWA_FPS, bframes=False, audio=False)
    epochs = [OWA_T0 + k * 1_000_040_000 + (3_000_000 if k == 40 else 0) for k in range(OWA_SECONDS)]
    srt = d / "c.srt"
    srt.write_text("".join(f"{k + 1}\n{_srt_time(k * 1000)} --> {_srt_time(k * 1000 + 1000)}\n{e}\n\n"
                           for k, e in enumerate(epochs)))
    mkv = d / "example.mkv"
    subprocess.run(["ffmpeg", "-loglevel", "error", "-i", str(v), "-i", str(srt), "-map", "0",
                    "-map", "1", "-c:v", "copy", "-c:s", "srt", str(mkv)], check=True)
    seed = sorted(Path("/work/shared/seeds").glob("002_*"))
    if seed:                                 # the copy above is the seed's text, line for line
        assert all(ln in seed[0].read_text() for ln in SEED002_JSONL.splitlines())
    (d / "example.jsonl").write_text(SEED002_JSONL)
    v.unlink()
    srt.unlink()
    return d, mkv, epochs


def test_third_party_owa_recording_aligns_and_validates(third_party_owa, tmp_path):
    from companion.align.session import align_session
    from companion.validate import validate_path
    src, _mkv, epochs = third_party_owa
    d = tmp_path / "s"
    shutil.copytree(src, d)
    res = align_session(d / "example.mkv", progress=False)
    assert res["anchor_source"] == "owa_subtitles" and res["confidence"] == "approximate"
    frames = pq.read_table(d / "frames.parquet")
    n = OWA_SECONDS * OWA_FPS
    assert frames.num_rows == n
    pts_ns = np.asarray(frames.column("pts_ns").to_numpy())
    assert pts_ns.tolist() == [i * 200_000_000 for i in range(n)]
    # a frame with a cue takes the cue's time; the others keep the last cue's offset
    want = [epochs[i // OWA_FPS] + (i % OWA_FPS) * 200_000_000 for i in range(n)]
    assert frames.column("t_ns").to_pylist() == want
    meta = json.loads((d / "metadata.json").read_text())
    assert meta["alignment"]["cue_frames"] == OWA_SECONDS and meta["alignment"]["cues_ignored"] == 0
    # every control line is an event row, and the first window line (a focus row; the
    # heartbeats and the title change keep hWnd 133820: no focus change), each on the
    # frame on screen at its time
    evs = pq.read_table(d / "events.parquet").to_pylist()
    lines = [json.loads(x) for x in SEED002_JSONL.splitlines()]
    rows = [x for i, x in enumerate(lines) if x["event_src"] == "control_publisher" or i == 0]
    assert [e["t_ns"] for e in evs] == [x["timestamp_ns"] for x in rows]
    ft = np.asarray(want, dtype=np.int64)
    for e in evs:
        assert e["frame_ref"] == int(np.searchsorted(ft, e["t_ns"], "right")) - 1
    keys = [(e["event_type"], e["key_code"]) for e in evs if e["source"] == "keyboard"]
    assert keys == [("key_down", 162), ("key_down", 67)]
    assert sum(e["event_type"] == "mouse_move" for e in evs) == 8
    wheel = [e for e in evs if e["event_type"] == "wheel"]
    assert len(wheel) == 1 and wheel[0]["wheel_dy"] == 1 and wheel[0]["mouse_x_px"] == 2575
    focus = [e for e in evs if e["event_type"] == "focus"]
    assert len(focus) == 1 and focus[0]["window_id"] == "133820"
    assert dict(focus[0]["metadata"])["title"] == "index.md - open-world-agents - Visual Studio Code"
    assert [str(p) for p in validate_path(d)] == []


@pytest.mark.parametrize("per", ["frame", "second"])
def test_cli_owa_out_and_owa_per_on_a_third_party_recording(third_party_owa, tmp_path, per):
    """``nm-align example.mkv --owa-out OUT.mkv --owa-per PER`` (the real CLI): the output
    has the planned cues and tags and the JSONL beside it, and aligning OUT.mkv gives
    the same frame times."""
    src, _mkv, _epochs = third_party_owa
    d = tmp_path / "s"
    shutil.copytree(src, d)
    out = tmp_path / "o" / "rec.mkv"
    r = nm_align(d / "example.mkv", "--owa-out", out, "--owa-per", per, "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["owa_out"] == str(out)
    assert sorted(p.name for p in out.parent.iterdir()) == ["rec.jsonl", "rec.mkv"]  # no sidecar to copy
    assert (out.parent / "rec.jsonl").read_text() == SEED002_JSONL
    tags = epoch_track_tags(out)
    assert tags["NM_EPOCH_TRACK"] == per and tags["NM_CONFIDENCE"] == "approximate"
    n = OWA_SECONDS * OWA_FPS
    assert tags["NM_FRAMES"] == str(n) and "NM_RECORDING_ID" not in tags
    assert len(scan_video(out).subtitle_cues) == (n if per == "frame" else OWA_SECONDS)
    r = nm_align(out, "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["anchor_source"] == "owa_subtitles"
    assert pq.read_table(out.parent / "frames.parquet").column("t_ns").to_pylist() == \
        pq.read_table(d / "frames.parquet").column("t_ns").to_pylist()
    bad = nm_align(d / "example.mkv", "--owa-out", tmp_path / "x.mkv", "--owa-per", "minute")
    assert bad.returncode == 2 and "invalid choice" in bad.stderr
