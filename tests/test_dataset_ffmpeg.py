"""ffmpeg_copy.py: the ffmpeg CLI fast path for stream-copied chunks.

Every check decodes the chunk MP4s and reads the frame number burned into the pixels
(tests/test_dataset_media.py), and compares with the PyAV path (``split_video``):
same frames, same pts, same compressed packets, byte-identical WAVs.
"""
from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import av
import pyarrow.parquet as pq
import pytest

from companion.dataset.chunking import plan_chunks
from companion.dataset.ffmpeg_copy import (fast_path_blocker, read_mp4_video_track,
                                           split_video_fast)
from companion.dataset.video import split_video
from companion.dataset.writer import write_dataset
from tests.test_dataset_media import (decode_numbers, encode_numbered, events_table,
                                      frames_table,
                                      make_video, scan)

REPO = Path(__file__).resolve().parents[1]
FFMPEG = shutil.which("ffmpeg")
needs_ffmpeg = pytest.mark.skipif(FFMPEG is None, reason="ffmpeg CLI not installed")


def _source(tmp_path, n=95, gop=10, bframes=3, audio=None, name="src"):
    src = tmp_path / f"{name}.mkv"
    make_video(src, n, gop=gop, bframes=bframes, audio=audio)
    return src, scan(src)


def _paths(d: Path, plans, prefix, audio):
    d.mkdir(parents=True, exist_ok=True)
    vp = [d / f"{prefix}{p.chunk_id}.mp4" for p in plans]
    ap = [d / f"{prefix}{p.chunk_id}.wav" for p in plans] if audio else None
    return vp, ap


def _packets(path):
    with av.open(str(path)) as c:
        return sorted((pk.pts, bytes(pk)) for pk in c.demux(video=0) if pk.size)


def _fake_ffmpeg(tmp_path: Path, body: str) -> Path:
    """An executable named ffmpeg running ``body`` (Python) with the real arguments."""
    d = tmp_path / "fakebin"
    d.mkdir(exist_ok=True)
    exe = d / "ffmpeg"
    exe.write_text(f"#!{sys.executable}\nimport os, sys\nREAL = {FFMPEG!r}\n{body}\n")
    exe.chmod(exe.stat().st_mode | stat.S_IEXEC)
    return exe


def _no_stray_files(d: Path, allowed: list[Path]) -> None:
    left = sorted(p for p in d.rglob("*") if p.is_file() and p not in allowed
                  and p.suffix in (".mp4", ".csv"))
    assert left == [], left
    assert not list(d.rglob(".nm-ffmpeg-*"))


@needs_ffmpeg
@pytest.mark.parametrize("bframes,audio", [(0, None), (3, "aac"), (2, "pcm")])
def test_fast_path_equals_the_pyav_path(tmp_path, bframes, audio):
    """Same frames (burned-in numbers), same pts, same source packets byte for byte, and
    the same WAV bytes as the PyAV path; B-frame sources included."""
    src, sc = _source(tmp_path, bframes=bframes, audio=audio)
    plans = plan_chunks(len(sc.pts), sc.fps, sc.keyframe, 1.0)
    assert fast_path_blocker(sc, plans) is None
    vf, af = _paths(tmp_path / "ff", plans, "c", audio)
    done = []
    res = split_video_fast(src, sc, plans, vf, af, on_chunk=lambda c, m: done.append((c, m)))
    assert res.copy_tool == "ffmpeg" and res.fast_fallback is None and res.fast_skipped is None
    assert res.modes == ["copy"] * 4 and sorted(done) == [(i, "copy") for i in range(4)]
    vp, ap = _paths(tmp_path / "py", plans, "c", audio)
    ref = split_video(src, sc, plans, vp, ap)
    assert ref.modes == res.modes
    with av.open(str(src)) as c:
        src_pk = sorted((p.pts, bytes(p)) for p in c.demux(video=0) if p.pts is not None)
    for p, f, v in zip(plans, vf, vp):
        nums, pts = decode_numbers(f)
        assert nums == list(range(p.start_frame, p.end_frame))      # exactly the plan
        assert (nums, pts) == decode_numbers(v)                     # = PyAV, frame for frame
        assert pts[0] == 0
        got = _packets(f)
        assert [b for _, b in got] == [b for _, b in src_pk[p.start_frame:p.end_frame]]
        assert [t for t, _ in got] == [t for t, _ in _packets(v)]
        with av.open(str(f)) as c:
            s = c.streams.video[0]
            assert s.time_base == av.open(str(v)).streams.video[0].time_base
            assert not c.streams.audio                              # video only, as before
    if audio:
        assert res.audio == ref.audio
        assert [p.read_bytes() for p in af] == [p.read_bytes() for p in ap]
    _no_stray_files(tmp_path / "ff", vf)


@needs_ffmpeg
def test_mp4_sample_table_reader_matches_the_demuxer(tmp_path):
    src, sc = _source(tmp_path, bframes=3)
    plans = plan_chunks(len(sc.pts), sc.fps, sc.keyframe, 1.0)
    vp, _ = _paths(tmp_path / "py", plans, "c", None)
    split_video(src, sc, plans, vp)
    for p, v in zip(plans, vp):
        t = read_mp4_video_track(v)
        with av.open(str(v)) as c:
            s = c.streams.video[0]
            pk = [q.pts for q in c.demux(s) if q.size]
            scale = int(s.time_base.denominator / t.timescale) if s.time_base.denominator \
                >= t.timescale else 1
        assert t.n == p.n_frames and t.first_is_sync
        assert sorted(t.pts.tolist()) == sorted(x * scale for x in pk)


def test_plan_with_a_non_keyframe_boundary_uses_pyav(tmp_path):
    """Keyframes every 45 frames, 30-frame chunks: not every chunk is a copy, so the
    fast path is not tried and the PyAV path (smart cut / re-encode) does it."""
    src, sc = _source(tmp_path, gop=45, bframes=0)
    plans = plan_chunks(len(sc.pts), sc.fps, sc.keyframe, 1.0)
    assert "keyframes" in fast_path_blocker(sc, plans)
    vf, _ = _paths(tmp_path / "ff", plans, "c", None)
    res = split_video_fast(src, sc, plans, vf)
    assert res.copy_tool == "pyav" and "keyframes" in res.fast_skipped
    assert res.modes == ["reencode", "reencode", "reencode", "copy"]
    for p, f in zip(plans, vf):
        assert decode_numbers(f)[0] == list(range(p.start_frame, p.end_frame))


def test_ffmpeg_missing_from_path_falls_back(tmp_path, monkeypatch):
    empty = tmp_path / "emptybin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    src, sc = _source(tmp_path, bframes=3, audio="pcm")
    plans = plan_chunks(len(sc.pts), sc.fps, sc.keyframe, 1.0)
    vf, af = _paths(tmp_path / "ff", plans, "c", True)
    res = split_video_fast(src, sc, plans, vf, af)
    assert res.copy_tool == "pyav" and res.fast_skipped == "ffmpeg not found"
    assert res.modes == ["copy"] * 4 and res.audio[0]["samples"] == 48000
    for p, f in zip(plans, vf):
        assert decode_numbers(f)[0] == list(range(p.start_frame, p.end_frame))
    # the same through write_dataset
    frames = frames_table(sc)
    s = write_dataset(tmp_path / "ds", "v", sc, frames, None, {}, chunk_seconds=1.0)
    assert s["copy_tool"] == "pyav" and "ffmpeg_fallback" not in s and s["copied"] == 4


@needs_ffmpeg
def test_ffmpeg_failure_falls_back_and_leaves_no_partial_chunk(tmp_path):
    """A failing ffmpeg that leaves a partial segment behind: one-line reason, nothing of
    its output survives, the PyAV path writes the chunks."""
    exe = _fake_ffmpeg(tmp_path, "open('seg00000.mp4', 'wb').write(b'partial')\n"
                                 "sys.stderr.write('seg00001.mp4: No space left on device\\n"
                                 "Conversion failed!\\n')\nsys.exit(1)")
    src, sc = _source(tmp_path, bframes=3)
    plans = plan_chunks(len(sc.pts), sc.fps, sc.keyframe, 1.0)
    vf, _ = _paths(tmp_path / "ff", plans, "c", None)
    res = split_video_fast(src, sc, plans, vf, ffmpeg=str(exe))
    assert res.copy_tool == "pyav"
    assert res.fast_fallback == "ffmpeg exited with 1: Conversion failed!"
    for p, f in zip(plans, vf):
        assert decode_numbers(f)[0] == list(range(p.start_frame, p.end_frame))
    _no_stray_files(tmp_path / "ff", vf)


@needs_ffmpeg
def test_segments_off_the_plan_are_rejected(tmp_path):
    """ffmpeg cutting elsewhere than planned (here: told to make the first cut one GOP
    later) is caught by the sample-table check; its output is deleted and PyAV cuts the
    chunks."""
    exe = _fake_ffmpeg(tmp_path, "a = sys.argv[1:]\ni = a.index('-segment_frames')\n"
                                 "f = a[i + 1].split(',')\n"
                                 "a[i + 1] = ','.join([str(int(f[0]) + 10)] + f[1:])\n"
                                 "os.execv(REAL, [REAL] + a)")
    src, sc = _source(tmp_path, bframes=3)
    plans = plan_chunks(len(sc.pts), sc.fps, sc.keyframe, 1.0)
    vf, _ = _paths(tmp_path / "ff", plans, "c", None)
    res = split_video_fast(src, sc, plans, vf, ffmpeg=str(exe))
    assert res.copy_tool == "pyav"
    assert res.fast_fallback == "segment 0: 40 packets for 30 frames"
    for p, f in zip(plans, vf):
        assert decode_numbers(f)[0] == list(range(p.start_frame, p.end_frame))
    _no_stray_files(tmp_path / "ff", vf)
    # a segment missing altogether
    exe = _fake_ffmpeg(tmp_path, "a = sys.argv[1:]\ni = a.index('-segment_frames')\n"
                                 "a[i + 1] = ','.join(a[i + 1].split(',')[:-1])\n"
                                 "os.execv(REAL, [REAL] + a)")
    res = split_video_fast(src, sc, plans, vf, ffmpeg=str(exe))
    assert res.fast_fallback == "ffmpeg wrote 3 segments for 4 chunks"
    _no_stray_files(tmp_path / "ff", vf)


@needs_ffmpeg
def test_open_gop_source_is_caught(tmp_path):
    """x264 open GOPs: leading B-frames after a keyframe in decode order belong to the
    previous chunk. ffmpeg's decode-order cut puts them in the wrong segment; the check
    sees it and the PyAV path (which demotes those chunks) does the work."""
    src = tmp_path / "open.mkv"
    encode_numbered(src, "libx264", {"g": "10", "keyint_min": "10", "sc_threshold": "0", "bf": "3",
                                     "x264-params": "open-gop=1", "crf": "10"})
    sc = scan(src)
    plans = plan_chunks(len(sc.pts), sc.fps, sc.keyframe, 1 / 3)
    assert all(p.copy for p in plans)
    vf, _ = _paths(tmp_path / "ff", plans, "o", None)
    res = split_video_fast(src, sc, plans, vf)
    assert res.copy_tool == "pyav" and res.fast_fallback   # segment count or content
    assert res.demoted and all("open GOP" in r for r in res.demoted.values())
    for p, f in zip(plans, vf):
        assert decode_numbers(f)[0] == list(range(p.start_frame, p.end_frame))
    _no_stray_files(tmp_path / "ff", vf)


# closed-GOP HEVC and AV1 encodes with a keyframe every 10 frames: (encoder, codec, options)
HEVC_AV1 = [
    ("libx265", "hevc", {"x265-params": "keyint=10:min-keyint=10:scenecut=0:bframes=3:"
                                        "open-gop=0:log-level=error", "crf": "10"}),
    ("libsvtav1", "av1", {"g": "10", "crf": "20", "preset": "12"}),
]


def hevc_av1_source(tmp_path: Path, codec: str, opts: dict) -> Path:
    """An MKV of frame-numbered frames encoded with ``codec`` (skips without it)."""
    if codec not in av.codecs_available:
        pytest.skip(f"no {codec} in this FFmpeg build")
    return encode_numbered(tmp_path / "h.mkv", codec, opts)


@needs_ffmpeg
@pytest.mark.parametrize("codec,name,opts", HEVC_AV1)
def test_hevc_and_av1_closed_gop_sources(tmp_path, codec, name, opts):
    """OBS 30.2+ records HEVC/AV1 too: with closed GOPs the fast path copies them."""
    src = hevc_av1_source(tmp_path, codec, opts)
    sc = scan(src)
    plans = plan_chunks(len(sc.pts), sc.fps, sc.keyframe, 1.0)
    vf, _ = _paths(tmp_path / "ff", plans, "h", None)
    res = split_video_fast(src, sc, plans, vf)
    assert res.copy_tool == "ffmpeg", (res.fast_fallback, res.fast_skipped)
    for p, f in zip(plans, vf):
        assert decode_numbers(f)[0] == list(range(p.start_frame, p.end_frame))
        with av.open(str(f)) as cc:
            assert cc.streams.video[0].codec_context.codec.canonical_name == name


@needs_ffmpeg
def test_write_dataset_uses_ffmpeg_and_logs_a_fallback(tmp_path, monkeypatch):
    src, sc = _source(tmp_path, bframes=3, audio="aac")
    frames = frames_table(sc)
    ft = frames.column("t_ns").to_numpy()
    events = events_table([dict(t_ns=int(ft[40]), event_type="mouse_move", source="mouse",
                                mouse_x_px=1.0, mouse_y_px=2.0)], ft)
    s = write_dataset(tmp_path / "a", "v", sc, frames, events, {}, chunk_seconds=1.0)
    assert s["copy_tool"] == "ffmpeg" and s["copied"] == 4 and "ffmpeg_fallback" not in s
    s2 = write_dataset(tmp_path / "b", "v", sc, frames, events, {}, chunk_seconds=1.0,
                       use_ffmpeg=False)
    assert s2["copy_tool"] == "pyav"

    def files(root, ext):
        return {p.relative_to(root).as_posix(): p.read_bytes()
                for p in sorted(root.rglob(f"*{ext}"))}
    for ext in (".wav", ".parquet", "metadata.json"):   # all but the MP4 muxing is equal
        assert files(tmp_path / "a", ext).keys() == files(tmp_path / "b", ext).keys()
        if ext != ".parquet":                           # index.parquet/dataset.json carry times
            assert files(tmp_path / "a", ext) == files(tmp_path / "b", ext)
    for rel in files(tmp_path / "a", ".mp4"):
        assert decode_numbers(tmp_path / "a" / rel) == decode_numbers(tmp_path / "b" / rel)
    # same input, same bytes (idempotent rerun) with ffmpeg too
    before = files(tmp_path / "a", ".mp4")
    write_dataset(tmp_path / "a", "v", sc, frames, events, {}, chunk_seconds=1.0)
    assert files(tmp_path / "a", ".mp4") == before

    # a failing ffmpeg on PATH: fallback, logged in the summary and chunk metadata
    exe = _fake_ffmpeg(tmp_path, "sys.stderr.write('boom\\n')\nsys.exit(3)")
    monkeypatch.setenv("PATH", f"{exe.parent}{os.pathsep}{os.environ['PATH']}")
    s3 = write_dataset(tmp_path / "c", "v", sc, frames, events, {}, chunk_seconds=1.0)
    assert s3["copy_tool"] == "pyav" and s3["ffmpeg_fallback"] == "ffmpeg exited with 3: boom"
    root = tmp_path / "c"
    for r in pq.read_table(root / "index.parquet").to_pylist():
        m = json.loads((root / r["actions_dir"] / "metadata.json").read_text())
        assert m["video"]["cut"] == "copy"
        assert m["video"]["ffmpeg_fallback"] == "ffmpeg exited with 3: boom"
        assert decode_numbers(root / r["video_path"])[0] == list(range(r["start_frame"],
                                                                       r["end_frame"]))
    assert list((root / ".staging").iterdir()) == []


@needs_ffmpeg
def test_unwritable_target_is_a_one_line_error_with_no_partial_chunk(tmp_path):
    """ffmpeg cannot write its segments (file size limit, as a full disk does) and neither
    can the PyAV fallback: one-line error, exit code 4, the dataset as it was."""
    src, sc = _source(tmp_path, bframes=3)
    frames = frames_table(sc)
    root = tmp_path / "ds"
    write_dataset(root, "v", sc, frames, None, {}, chunk_seconds=1.0)
    before = {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*")
              if p.is_file() and ".locks" not in p.parts}
    pq.write_table(frames, tmp_path / "frames.parquet")
    code = f"""
import resource, signal, sys, pyarrow.parquet as pq
sys.path.insert(0, {str(REPO)!r})
from tests.test_dataset_media import scan
from companion.dataset.writer import write_dataset
from companion.util.errors import NMError
sc = scan({str(src)!r})
fr = pq.read_table({str(tmp_path / 'frames.parquet')!r})
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, (3000, 3000))   # chunk MP4s are ~8 kB
try:
    s = write_dataset({str(root)!r}, "v", sc, fr, None, {{}}, chunk_seconds=1.0)
    print("wrote", s)
except NMError as e:
    print("error:", e)
    sys.exit(e.exit_code)
"""
    r = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 4, (r.stdout, r.stderr)
    assert r.stdout.count("\n") == 1 and r.stdout.startswith("error: ") and not r.stderr
    after = {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*")
             if p.is_file() and ".locks" not in p.parts}
    assert after == before
    assert list((root / ".staging").iterdir()) == []


@needs_ffmpeg
def test_failure_while_audio_is_running_stops_the_audio_thread(tmp_path, monkeypatch):
    """If the video side fails, the audio thread is stopped before the error propagates,
    so nothing writes into a folder the caller is about to delete."""
    from companion.dataset import ffmpeg_copy
    src, sc = _source(tmp_path, n=300, bframes=3, audio="aac")
    plans = plan_chunks(len(sc.pts), sc.fps, sc.keyframe, 1.0)
    vf, af = _paths(tmp_path / "ff", plans, "c", True)

    def boom(*a, **k):
        raise KeyboardInterrupt
    monkeypatch.setattr(ffmpeg_copy, "run_ffmpeg_copy", boom)
    import threading
    with pytest.raises(KeyboardInterrupt):
        split_video_fast(src, sc, plans, vf, af)
    assert not [t for t in threading.enumerate() if t.name == "nm-audio"]
    assert len(plans) == 10
