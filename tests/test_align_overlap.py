"""nm-align --dataset overlapping work with the scan: the chunk copy started from the
container header (``early.EarlyStart``: for an H.264 MKV ``mux_copy.MuxCopy`` fed by the
Matroska walk, else ``ffmpeg_copy.EarlyCopy``) and the audio decoded during the scan
(``audio.AudioSpool``). Both must give the outputs of the path without them (the same
bytes; for MP4s written by another muxer the same packets, timestamps and decoded
frames), and anything unexpected must fall back to it."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

import companion.dataset.writer as writer_mod
from companion.align.demux import scan_video
from companion.align.session import align_session
from companion.dataset import ffmpeg_copy, mux_copy
from companion.dataset.audio import AudioSpool, split_audio_file
from companion.dataset.chunking import plan_chunks
from companion.dataset.video import chunk_time_ranges
from companion.util.errors import BadInput
from tests.test_dataset_media import decode_numbers, make_video

FFMPEG = shutil.which("ffmpeg")
needs_ffmpeg = pytest.mark.skipif(FFMPEG is None, reason="ffmpeg CLI not installed")
T0 = 1_700_000_000_000_000_000


def _line(t, src, data):
    return json.dumps({"timestamp_ns": int(t), "event_src": src,
                       "event_data": json.dumps(data, separators=(",", ":"))})


def _session(tmp_path: Path, name="s1", n=95, fps=30, gop=30, bframes=2, audio="aac",
             channels=2) -> Path:
    d = tmp_path / name
    d.mkdir()
    make_video(d / f"{name}.mkv", n, fps=fps, gop=gop, bframes=bframes, audio=audio,
               channels=channels)
    iv = 1_000_000_000 // fps
    lines = [_line(T0 - 2_000_000, "recorder", {"event": "recording.started"})]
    for i in range(0, n, 3):
        lines.append(_line(T0 + i * iv + 7, "control_publisher", ["mouse.move", i, 2 * i]))
    lines.append(_line(T0 + 40 * iv, "control_publisher", ["keyboard.press", 87, "w"]))
    lines.append(_line(T0 + 70 * iv, "control_publisher", ["keyboard.release", 87, "w"]))
    (d / f"{name}.jsonl").write_text("\n".join(lines) + "\n")
    return d


def _tree(root: Path) -> dict[str, bytes]:
    """Every chunk file of a dataset (MP4, WAV, actions) by relative path."""
    out = {}
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root).as_posix()
        if p.is_file() and rel.split("/")[0] in ("video", "audio", "actions"):
            out[rel] = p.read_bytes()
    return out


class _Spy:
    """Records what split_video_fast returned / was given inside write_dataset."""

    def __init__(self, monkeypatch):
        self.results, self.early, self.spool = [], [], []
        orig = writer_mod.split_video_fast

        def wrapped(*a, **k):
            self.early.append(k.get("early"))
            self.spool.append(k.get("audio_spool"))
            r = orig(*a, **k)
            self.results.append(r)
            return r
        monkeypatch.setattr(writer_mod, "split_video_fast", wrapped)


@pytest.fixture
def ffmpeg_early(monkeypatch):
    """The early copy by ffmpeg even for H.264 MKVs (as for other codecs and containers)."""
    monkeypatch.setattr(mux_copy.MuxCopy, "supports", staticmethod(lambda codec: False))


def _packets(path):
    import av
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        return [(p.pts * s.time_base, p.is_keyframe, bytes(p)) for p in c.demux(s) if p.size]


def _same_dataset(root: Path, got: dict, ref_root: Path, ref: dict) -> None:
    """Byte-identical except MP4s, which must hold the same packets at the same times
    and decode to the same frames."""
    assert got.keys() == ref.keys()
    assert {k: v for k, v in got.items() if not k.endswith(".mp4")} == \
        {k: v for k, v in ref.items() if not k.endswith(".mp4")}
    for k in got:
        if k.endswith(".mp4"):
            assert _packets(root / k) == _packets(ref_root / k), k
            assert decode_numbers(root / k) == decode_numbers(ref_root / k), k


def _reference(tmp_path, d, monkeypatch, name="ref"):
    """The dataset as written without any early work."""
    with monkeypatch.context() as m:
        m.setattr(writer_mod.EarlyStart, "begin", classmethod(lambda cls, *a, **k: None))
        ref = tmp_path / name
        align_session(d, dataset=ref, chunk_seconds=1.0, progress=False)
    return _tree(ref)


# ---- the audio spool ---------------------------------------------------------------------

@pytest.mark.parametrize("audio,channels", [("aac", 2), ("aac", 1), ("pcm", 2)])
def test_spooled_wavs_are_byte_identical_to_split_audio_file(tmp_path, audio, channels):
    src = tmp_path / "a.mkv"
    make_video(src, 95, gop=10, bframes=2, audio=audio, channels=channels)
    spools = []

    def sink(rate, ch):
        spools.append(AudioSpool(tmp_path / "spool.s16", rate, ch))
        return spools[-1]
    sc = scan_video(src, audio_sink=sink)
    assert len(spools) == 1 and spools[0].usable(sc.audio_rate, sc.audio_channels)
    for chunk_s in (1.0, 0.7, 2.5):
        plans = plan_chunks(len(sc.pts), sc.fps, sc.keyframe, chunk_s)
        ranges = chunk_time_ranges(sc, plans)
        pa_ = [tmp_path / f"spool{chunk_s}" / f"{i}.wav" for i in range(len(plans))]
        pb = [tmp_path / f"file{chunk_s}" / f"{i}.wav" for i in range(len(plans))]
        got = spools[0].split(ranges, pa_)
        want = split_audio_file(str(src), ranges, pb, sc.audio_rate, sc.audio_channels)
        assert got == want
        assert [p.read_bytes() for p in pa_] == [p.read_bytes() for p in pb]
    spools[0].remove()
    assert not (tmp_path / "spool.s16").exists()


def test_scan_with_sink_and_header_callback_is_the_same_scan(tmp_path):
    src = tmp_path / "a.mkv"
    make_video(src, 95, gop=10, bframes=3, audio="aac")
    plain = scan_video(src)
    seen = []
    withsink = scan_video(src, on_header=seen.append,
                          audio_sink=lambda r, c: AudioSpool(tmp_path / "x.s16", r, c))
    for f in ("codec", "width", "height", "fps", "time_base", "captions", "subtitle_cues",
              "has_audio", "audio_rate", "audio_channels", "duration_ns", "truncated",
              "has_bframes", "warnings"):
        assert getattr(plain, f) == getattr(withsink, f), f
    assert np.array_equal(plain.pts, withsink.pts)
    assert np.array_equal(plain.keyframe, withsink.keyframe)
    (h,) = seen
    assert h.codec == "h264" and h.time_base == plain.time_base
    assert h.first_pts == int(plain.pts[0]) and h.declared_end_s


def test_scan_sink_is_finished_even_when_the_scan_fails(tmp_path):
    """The header callback raising stops the scan; the sink still gets finish()."""
    src = tmp_path / "a.mkv"
    make_video(src, 30, gop=10, audio="aac")
    calls = []

    class Sink:
        def put(self, pkt):
            calls.append("put")

        def finish(self):
            calls.append("finish")

    def boom(info):
        raise RuntimeError("stop")
    with pytest.raises(RuntimeError):
        scan_video(src, on_header=boom, audio_sink=lambda r, c: Sink())
    assert calls == []                # the sink is made after the header callback
    # a sink that is made: finish() once, after the last put (the end-of-stream packet)
    scan_video(src, audio_sink=lambda r, c: Sink())
    assert calls[-1] == "finish" and calls.count("finish") == 1 and "put" in calls


# ---- nm-align --dataset with the early start -----------------------------------------------

@needs_ffmpeg
@pytest.mark.parametrize("tool", ["mp4mux", "ffmpeg"])
@pytest.mark.parametrize("audio", ["aac", None])
def test_early_start_is_used_and_outputs_are_identical(tmp_path, monkeypatch, audio, tool):
    """H.264 MKV: the chunk MP4s come from the walk (mp4mux; or, as for other inputs, an
    early ffmpeg), everything else is byte-identical to the path without early work
    (ffmpeg's MP4s too). PCM audio, which the walker does not read, keeps the early
    ffmpeg: test_early_ffmpeg_for_audio_the_walker_skips."""
    d = _session(tmp_path, audio=audio)
    ref = _reference(tmp_path, d, monkeypatch)
    if tool == "ffmpeg":
        monkeypatch.setattr(mux_copy.MuxCopy, "supports", staticmethod(lambda codec: False))
    spy = _Spy(monkeypatch)
    root = tmp_path / "ds"
    s = align_session(d, dataset=root, chunk_seconds=1.0, progress=False)
    (res,) = spy.results
    kind = mux_copy.MuxCopy if tool == "mp4mux" else ffmpeg_copy.EarlyCopy
    assert isinstance(spy.early[0], kind), "the early copy was not started"
    assert res.early_rejected is None and res.copy_tool == tool and res.fast_fallback is None
    assert (spy.spool[0] is not None) == (audio is not None)
    assert s["dataset"]["copied"] == 4 and s["dataset"]["audio"] == (audio is not None)
    got = _tree(root)
    _same_dataset(root, got, tmp_path / "ref", ref)
    assert (got == ref) == (tool == "ffmpeg")         # the walk's MP4s: another muxer
    assert any(k.endswith(".wav") for k in got) == (audio is not None)
    assert not list((root / ".staging").iterdir())          # nothing left behind
    assert not list(root.rglob("*.s16")) and not list(root.rglob(".nm-mux*"))
    assert not list(root.rglob(".nm-ffmpeg*"))


@needs_ffmpeg
def test_early_ffmpeg_for_audio_the_walker_skips(tmp_path, monkeypatch):
    d = _session(tmp_path, audio="pcm")
    ref = _reference(tmp_path, d, monkeypatch)
    spy = _Spy(monkeypatch)
    root = tmp_path / "ds"
    align_session(d, dataset=root, chunk_seconds=1.0, progress=False)
    (res,) = spy.results
    assert isinstance(spy.early[0], ffmpeg_copy.EarlyCopy)
    assert res.early_rejected is None and res.copy_tool == "ffmpeg"
    assert _tree(root) == ref


def test_walk_copy_needs_no_ffmpeg(tmp_path, monkeypatch):
    """No ffmpeg CLI on PATH (common on Windows and macOS): the chunk MP4s still come
    from the walk, not from the 2x slower PyAV remux."""
    d = _session(tmp_path, audio="aac")
    monkeypatch.setattr(ffmpeg_copy, "find_ffmpeg", lambda: None)
    spy = _Spy(monkeypatch)
    root = tmp_path / "ds"
    align_session(d, dataset=root, chunk_seconds=1.0, progress=False)
    (res,) = spy.results
    assert res.copy_tool == "mp4mux" and res.fast_skipped is None
    for i, k in enumerate(sorted(k for k in _tree(root) if k.endswith(".mp4"))):
        assert decode_numbers(root / k)[0] == list(range(30 * i, min(30 * i + 30, 95)))


def test_ffmpeg_only_limits_do_not_stop_the_walk_copy(tmp_path, monkeypatch):
    """What only an ffmpeg command cannot express (a cut list too long for one command
    line, a start offset in fractions of a microsecond) does not stop the walk copy."""
    d = _session(tmp_path, audio="aac")
    monkeypatch.setattr(ffmpeg_copy, "ffmpeg_blocker",
                        lambda scan, plans: "too many chunks for one ffmpeg command line")
    spy = _Spy(monkeypatch)
    root = tmp_path / "ds"
    align_session(d, dataset=root, chunk_seconds=1.0, progress=False)
    (res,) = spy.results
    assert res.copy_tool == "mp4mux" and res.fast_skipped is None


@needs_ffmpeg
@pytest.mark.parametrize("tool,why", [
    ("mp4mux", "chunk MP4s from the walk: MuxError: chunk 1 would not start on a keyframe"),
    ("ffmpeg", "the chunk plan differs from the one guessed before the scan")])
def test_wrong_frame_rate_guess_falls_back_to_the_normal_run(tmp_path, monkeypatch, tool, why):
    """A sidecar header claiming 25 fps for a 30 fps video: the early copy follows the
    wrong plan (the walk's chunks meet no keyframe; ffmpeg's cut list is not the plan),
    is discarded, and ffmpeg cuts the chunks after the scan as before."""
    d = _session(tmp_path, audio="aac")
    ref = _reference(tmp_path, d, monkeypatch)
    if tool == "ffmpeg":
        monkeypatch.setattr(mux_copy.MuxCopy, "supports", staticmethod(lambda codec: False))
    monkeypatch.setattr("companion.align.session._sidecar_fps", lambda p: Fraction(25))
    spy = _Spy(monkeypatch)
    root = tmp_path / "ds"
    align_session(d, dataset=root, chunk_seconds=1.0, progress=False)
    (res,) = spy.results
    assert res.early_rejected.startswith(why)
    assert res.copy_tool == "ffmpeg" and res.fast_fallback is None
    assert _tree(root) == ref
    assert not list((root / ".staging").iterdir()) and not list(root.rglob(".nm-mux*"))


@needs_ffmpeg
def test_early_ffmpeg_output_that_fails_the_check_is_not_used(tmp_path, monkeypatch,
                                                              ffmpeg_early):
    """An ffmpeg that cuts elsewhere (a wrapper dropping the first cut): the segment
    check rejects the early output and the normal run's, PyAV cuts the chunks."""
    d = _session(tmp_path, audio="aac")
    ref = _reference(tmp_path, d, monkeypatch)
    fake = tmp_path / "bin" / "ffmpeg"
    fake.parent.mkdir()
    fake.write_text(f"#!{sys.executable}\nimport os, sys\na = sys.argv[1:]\n"
                    "i = a.index('-segment_frames')\n"
                    "a[i + 1] = ','.join(a[i + 1].split(',')[1:]) or '1000000'\n"
                    f"os.execv({FFMPEG!r}, [{FFMPEG!r}] + a)\n")
    fake.chmod(0o755)
    monkeypatch.setattr(ffmpeg_copy, "find_ffmpeg", lambda: str(fake))
    spy = _Spy(monkeypatch)
    root = tmp_path / "ds"
    align_session(d, dataset=root, chunk_seconds=1.0, progress=False)
    (res,) = spy.results
    assert res.early_rejected == "ffmpeg wrote 3 segments for 4 chunks"
    assert res.fast_fallback == "ffmpeg wrote 3 segments for 4 chunks"
    assert res.copy_tool == "pyav"
    got = _tree(root)
    assert got.keys() == ref.keys()
    assert {k: v for k, v in got.items() if k.endswith(".parquet")} == \
        {k: v for k, v in ref.items() if k.endswith(".parquet")}
    assert {k: v for k, v in got.items() if k.endswith(".wav")} == \
        {k: v for k, v in ref.items() if k.endswith(".wav")}
    for k in got:
        if k.endswith(".mp4"):
            assert decode_numbers(root / k) == decode_numbers(tmp_path / "ref" / k)
    assert not list(root.rglob(".nm-ffmpeg*"))


@needs_ffmpeg
def test_early_ffmpeg_failing_is_a_fallback_not_an_error(tmp_path, monkeypatch,
                                                         ffmpeg_early):
    d = _session(tmp_path, audio="aac")
    ref = _reference(tmp_path, d, monkeypatch)

    def bad_popen(*a, **k):
        return subprocess.Popen(["sh", "-c", "echo 'boom: bad' >&2; exit 1"], **{
            x: k[x] for x in ("cwd", "stdin", "stdout", "stderr") if x in k})
    orig_init = ffmpeg_copy.EarlyCopy.__init__

    def init(self, *a, **k):
        orig_init(self, *a, **k)
        self.proc.wait()
        self.proc = bad_popen(cwd=self.work, stdin=subprocess.DEVNULL,
                              stdout=subprocess.DEVNULL, stderr=self._err)
    monkeypatch.setattr(ffmpeg_copy.EarlyCopy, "__init__", init)
    spy = _Spy(monkeypatch)
    root = tmp_path / "ds"
    align_session(d, dataset=root, chunk_seconds=1.0, progress=False)
    (res,) = spy.results
    assert res.early_rejected == "ffmpeg exited with 1: boom: bad"
    assert res.copy_tool == "ffmpeg" and _tree(root) == ref


def test_failed_spool_falls_back_to_decoding_the_file(tmp_path, monkeypatch):
    """The in-process spool fails (disk full): the WAVs are decoded from the file. The
    audio child is kept off, as on a 2-CPU machine hashing SHA-256 (its own failures:
    tests/test_audio_child.py)."""
    d = _session(tmp_path, audio="aac")
    ref = _reference(tmp_path, d, monkeypatch)
    from companion.dataset import audio as audio_mod
    from companion.dataset import audio_child
    monkeypatch.setattr(audio_child, "wanted", lambda checksums: False)

    def broken(self, pos, data):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(audio_mod._LogSplitter, "add_samples", broken)
    spy = _Spy(monkeypatch)
    root = tmp_path / "ds"
    s = align_session(d, dataset=root, chunk_seconds=1.0, progress=False)
    assert spy.spool[0] is not None and not spy.spool[0].finished
    assert s["dataset"]["audio"] is True
    _same_dataset(root, _tree(root), tmp_path / "ref", ref)
    assert not list(root.rglob("*.s16"))


@needs_ffmpeg
def test_alignment_failure_leaves_no_dataset_and_no_ffmpeg(tmp_path, monkeypatch,
                                                           ffmpeg_early):
    """Anchors missing (no recording.started marker): BadInput after the scan; the early
    ffmpeg is stopped and the dataset root it created is removed again."""
    d = _session(tmp_path, audio="aac")
    (d / "s1.jsonl").write_text(_line(T0, "control_publisher", ["mouse.move", 1, 2]) + "\n")
    started = []
    orig_init = ffmpeg_copy.EarlyCopy.__init__

    def init(self, *a, **k):
        orig_init(self, *a, **k)
        started.append(self)
    monkeypatch.setattr(ffmpeg_copy.EarlyCopy, "__init__", init)
    root = tmp_path / "new" / "ds"
    with pytest.raises(BadInput, match="no timing anchors"):
        align_session(d, dataset=root, chunk_seconds=1.0, progress=False)
    assert len(started) == 1 and started[0].proc.poll() is not None
    assert not (tmp_path / "new").exists()         # nor the parent it had to create
    # an existing dataset root keeps only what it had
    root2 = tmp_path / "ds2"
    align_session(_session(tmp_path, name="s2", audio=None), dataset=root2, chunk_seconds=1.0,
                  progress=False)
    before = sorted(p.relative_to(root2).as_posix() for p in root2.rglob("*"))
    with pytest.raises(BadInput):
        align_session(d, dataset=root2, chunk_seconds=1.0, progress=False)
    assert sorted(p.relative_to(root2).as_posix() for p in root2.rglob("*")) == before


def test_alignment_failure_stops_the_walk_copy_and_leaves_no_dataset(tmp_path, monkeypatch):
    d = _session(tmp_path, audio="aac")
    (d / "s1.jsonl").write_text(_line(T0, "control_publisher", ["mouse.move", 1, 2]) + "\n")
    started = []
    orig = mux_copy.MuxCopy.start.__func__

    def start(cls, *a, **k):
        m = orig(cls, *a, **k)
        started.append(m)
        return m
    monkeypatch.setattr(mux_copy.MuxCopy, "start", classmethod(start))
    root = tmp_path / "new" / "ds"
    with pytest.raises(BadInput, match="no timing anchors"):
        align_session(d, dataset=root, chunk_seconds=1.0, progress=False)
    assert len(started) == 1 and started[0].proc.poll() is not None
    assert not (tmp_path / "new").exists()

def test_no_early_start_in_a_folder_that_is_not_a_dataset(tmp_path, monkeypatch):
    d = _session(tmp_path, audio=None)
    root = tmp_path / "busy"
    root.mkdir()
    (root / "notes.txt").write_text("mine")
    with pytest.raises(BadInput, match="not a dataset root"):
        align_session(d, dataset=root, chunk_seconds=1.0, progress=False)
    assert sorted(p.name for p in root.iterdir()) == ["notes.txt"]


def test_reencoded_chunks_discard_the_early_copy(tmp_path, monkeypatch):
    """Keyframes every 45 frames, 30-frame chunks: PyAV cuts; the early ffmpeg output
    and the work folder are gone; the audio comes from PyAV's own pass."""
    d = _session(tmp_path, gop=45, bframes=0, audio="aac")
    ref = _reference(tmp_path, d, monkeypatch)
    spy = _Spy(monkeypatch)
    root = tmp_path / "ds"
    s = align_session(d, dataset=root, chunk_seconds=1.0, progress=False)
    (res,) = spy.results
    assert res.copy_tool == "pyav" and "keyframes" in res.fast_skipped
    assert s["dataset"]["reencoded"] >= 1
    assert _tree(root).keys() == ref.keys()
    assert {k: v for k, v in _tree(root).items() if k.endswith(".wav")} == \
        {k: v for k, v in ref.items() if k.endswith(".wav")}
    assert not list(root.rglob(".nm-ffmpeg*")) and not list(root.rglob("*.s16"))


# ---- the CLI's head start (ffmpeg begun before the heavy imports) -------------------------

@needs_ffmpeg
def test_cli_starts_ffmpeg_before_the_scan_and_outputs_are_identical(tmp_path, monkeypatch,
                                                                     ffmpeg_early):
    from companion.cli import align_cli
    from companion.dataset import early as early_mod
    d = _session(tmp_path, audio="aac")
    ref = _reference(tmp_path, d, monkeypatch)
    begun = []
    orig = early_mod.begin_early

    def spy_begin(*a, **k):
        e = orig(*a, **k)
        begun.append(e)
        return e
    monkeypatch.setattr(early_mod, "begin_early", spy_begin)
    spy = _Spy(monkeypatch)
    root = tmp_path / "ds"
    rc = align_cli.main([str(d / "s1.mkv"), "--dataset", str(root), "--chunk-seconds", "1",
                         "--quiet"])
    assert rc == 0
    assert len(begun) == 1 and begun[0] is not None and begun[0].adopted
    (res,) = spy.results
    assert spy.early[0] is not None and res.early_rejected is None and res.copy_tool == "ffmpeg"
    assert _tree(root) == ref
    assert not list((root / ".staging").iterdir())


def test_cli_head_start_uses_the_walk_copy(tmp_path, monkeypatch):
    from companion.cli import align_cli
    d = _session(tmp_path, audio="aac")
    ref = _reference(tmp_path, d, monkeypatch)
    spy = _Spy(monkeypatch)
    root = tmp_path / "ds"
    rc = align_cli.main([str(d / "s1.mkv"), "--dataset", str(root), "--chunk-seconds", "1",
                         "--quiet"])
    assert rc == 0
    (res,) = spy.results
    assert isinstance(spy.early[0], mux_copy.MuxCopy) and res.copy_tool == "mp4mux"
    _same_dataset(root, _tree(root), tmp_path / "ref", ref)
    assert not list((root / ".staging").iterdir())


@needs_ffmpeg
def test_cli_head_start_leaves_nothing_when_the_input_is_bad(tmp_path, capsys):
    """ffmpeg already runs when nm-align finds the events file missing: it is stopped
    and the dataset root it created is removed again."""
    from companion.cli import align_cli
    d = _session(tmp_path, audio="aac")
    (d / "s1.jsonl").unlink()
    root = tmp_path / "new" / "ds"
    rc = align_cli.main([str(d / "s1.mkv"), "--dataset", str(root), "--quiet"])
    assert rc == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "events file not found" in err[0]
    assert not (tmp_path / "new").exists()
