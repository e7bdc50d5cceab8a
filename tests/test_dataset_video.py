"""chunking.py + video.py + audio.py on real generated H.264 files (PyAV/libx264).

Every check decodes the written chunk MP4s with FFmpeg (PyAV) and reads the frame
number burned into each frame's pixels, so "the chunk holds exactly frames [s, e)"
is checked on content, not on counts.
"""
from __future__ import annotations

import wave
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from companion.dataset.chunking import ChunkPlan, frames_per_chunk, plan_chunks
from companion.dataset.video import chunk_time_ranges, split_video
from companion.util.errors import BadInput
from tests.test_dataset_media import decode_numbers, encode_numbered, make_video, scan


# ---- chunking (pure) ----------------------------------------------------------------

def test_frames_per_chunk_rounds_and_rejects_nonsense():
    assert frames_per_chunk(Fraction(60), 20.0) == 1200
    assert frames_per_chunk(Fraction(30000, 1001), 20.0) == 599   # 599.4 -> 599
    assert frames_per_chunk(Fraction(60000, 1001), 20.0) == 1199  # 1198.8 -> 1199
    for bad in (0, -1, float("nan"), float("inf")):
        with pytest.raises(BadInput):
            frames_per_chunk(30, bad)
    with pytest.raises(BadInput):
        frames_per_chunk(0, 20)


def test_plan_covers_every_frame_once_and_marks_copy_by_keyframes():
    kf = np.zeros(95, bool)
    kf[[0, 30, 45, 90]] = True
    plans = plan_chunks(95, 30, kf, 1.0)
    assert [(p.start_frame, p.end_frame, p.copy) for p in plans] == [
        (0, 30, True),      # starts on kf 0, ends on kf 30
        (30, 60, False),    # 60 is not a keyframe
        (60, 90, False),    # 60 is not a keyframe
        (90, 95, True)]     # ends at the end of the stream
    assert [p.chunk_id for p in plans] == [0, 1, 2, 3]
    assert plan_chunks(0, 30, np.zeros(0, bool)) == []
    with pytest.raises(BadInput):
        plan_chunks(10, 30, np.zeros(9, bool))


# ---- video cutting --------------------------------------------------------------------

def _cut(tmp_path, n=95, fps=30, gop=10, bframes=0, chunk_s=1.0, audio=None,
         audio_process=None):
    src = tmp_path / "src.mkv"
    make_video(src, n, fps=fps, gop=gop, bframes=bframes, audio=audio)
    sc = scan(src)
    plans = plan_chunks(len(sc.pts), sc.fps, sc.keyframe, chunk_s)
    vp = [tmp_path / f"c{p.chunk_id}.mp4" for p in plans]
    ap = [tmp_path / f"c{p.chunk_id}.wav" for p in plans] if audio else None
    done = []
    res = split_video(src, sc, plans, vp, ap, on_chunk=lambda c, m: done.append((c, m)),
                      audio_process=audio_process)
    return sc, plans, vp, ap, res, done


def _assert_exact(plans, vp):
    for p, path in zip(plans, vp):
        nums, pts = decode_numbers(path)
        assert nums == list(range(p.start_frame, p.end_frame)), p
        assert pts[0] == 0 and pts == sorted(pts)


@pytest.mark.parametrize("bframes", [0, 3])
def test_stream_copy_yields_exactly_the_chunk_frames(tmp_path, bframes):
    sc, plans, vp, _, res, done = _cut(tmp_path, bframes=bframes)
    assert sc.has_bframes == (bframes > 0)
    assert res.modes == ["copy"] * 4 and res.demoted == {}
    assert sorted(done) == [(i, "copy") for i in range(4)]
    _assert_exact(plans, vp)
    with av.open(str(vp[1])) as c:
        s = c.streams.video[0]
        assert s.average_rate == 30 and s.codec_context.name == "h264"
        assert (s.codec_context.width, s.codec_context.height) == (128, 64)


def test_copy_packets_are_the_source_packets(tmp_path):
    """Stream copy means the chunk's compressed frames are byte-identical to the source's."""
    sc, plans, vp, _, res, _ = _cut(tmp_path, bframes=3)
    with av.open(sc.path) as c:
        src = sorted((p.pts, bytes(p)) for p in c.demux(video=0) if p.pts is not None)
    for p, path in zip(plans, vp):
        with av.open(str(path)) as c:
            got = [bytes(pk) for pk in sorted((pk for pk in c.demux(video=0) if pk.size),
                                              key=lambda pk: pk.pts)]
        want = [b for _, b in src[p.start_frame:p.end_frame]]
        assert got == want


@pytest.mark.parametrize("bframes", [0, 3])
def test_reencode_when_keyframes_do_not_line_up(tmp_path, bframes):
    # keyframes at 0, 45, 90: chunks [0,30) [30,60) [60,90) need re-encoding, [90,95) copies
    sc, plans, vp, _, res, done = _cut(tmp_path, gop=45, bframes=bframes)
    assert [p.copy for p in plans] == [False, False, False, True]
    assert res.modes == ["reencode", "reencode", "reencode", "copy"]
    assert sorted(done) == [(0, "reencode"), (1, "reencode"), (2, "reencode"), (3, "copy")]
    _assert_exact(plans, vp)
    with av.open(str(vp[1])) as c:
        assert c.streams.video[0].codec_context.name == "h264"
        first = next(c.decode(video=0))
        assert first.key_frame


@pytest.mark.parametrize("bframes,gop", [(0, 12), (3, 7), (2, 12)])
def test_smart_cut_reencodes_only_the_ends(tmp_path, bframes, gop):
    """Chunks of 30 frames over keyframes every 7/12 frames: no chunk can be copied whole,
    so each re-encodes its head (to the first keyframe) and tail (from the last keyframe)
    and copies the packets in between byte for byte."""
    sc, plans, vp, _, res, done = _cut(tmp_path, n=100, gop=gop, bframes=bframes)
    assert not any(p.copy for p in plans)
    assert res.modes == ["smart"] * 4 and res.smart_fallback == {}
    assert sorted(done) == [(i, "smart") for i in range(4)]
    _assert_exact(plans, vp)
    with av.open(sc.path) as c:
        src = {p.pts: bytes(p) for p in c.demux(video=0) if p.pts is not None}
    kf = np.flatnonzero(sc.keyframe)
    for p, path in zip(plans, vp):
        k1 = kf[kf >= p.start_frame][0]
        k2 = kf[kf <= p.end_frame][-1] if p.end_frame < 100 else 100
        with av.open(str(path)) as c:
            got = sorted((pk.pts, bytes(pk)) for pk in c.demux(video=0) if pk.size)
        tb = sc.time_base
        copied = [b for _, b in got[k1 - p.start_frame + 1:k2 - p.start_frame]]
        want = [src[int(x)] for x in sc.pts[k1 + 1:k2]]
        assert copied == want                       # the middle is the source, untouched
        # the first copied packet is the source's keyframe with its SPS/PPS put in front
        assert got[k1 - p.start_frame][1].endswith(src[int(sc.pts[k1])])
        assert tb == sc.time_base


def test_smart_cut_can_be_turned_off(tmp_path):
    src = tmp_path / "src.mkv"
    make_video(src, 60, gop=12)
    sc = scan(src)
    plans = plan_chunks(60, sc.fps, sc.keyframe, 1.0)
    vp = [tmp_path / f"c{i}.mp4" for i in range(len(plans))]
    res = split_video(src, sc, plans, vp, smart=False)
    assert res.modes == ["reencode", "reencode"]
    _assert_exact(plans, vp)


def test_real_obs_recording_with_a_pause(tmp_path):
    """The committed OBS 29 fixture (x264 with B-frames; a pause moved the keyframes to
    frames 0, 37, 84). 2 s chunks: [0,60) copies 0-36 and re-encodes 37-59, [60,91)
    re-encodes 60-83 and copies 84-90. Every chunk frame must be the source frame at the
    same index: bit-exact where copied, and closer to it than to its neighbours where
    re-encoded."""
    from pathlib import Path
    fixture = Path(__file__).parent / "fixtures" / "obs29_h264_30fps_pause.mkv"
    sc = scan(fixture)
    assert np.flatnonzero(sc.keyframe).tolist() == [0, 37, 84] and sc.has_bframes
    plans = plan_chunks(len(sc.pts), sc.fps, sc.keyframe, 2.0)
    vp = [tmp_path / f"c{p.chunk_id}.mp4" for p in plans]
    res = split_video(fixture, sc, plans, vp)
    assert res.modes == ["smart", "smart"]
    with av.open(str(fixture)) as c:
        cc = c.streams.video[0].codec_context
        colour = (cc.color_range, cc.colorspace, cc.color_primaries, cc.color_trc)
    assert colour == (1, 1, 1, 1)           # OBS: limited range BT.709
    for path in vp:                          # re-encoded heads/tails say the same
        with av.open(str(path)) as c:
            for f in c.decode(video=0):
                assert (f.color_range, f.colorspace) == (1, 1)
    whole = [tmp_path / f"w{p.chunk_id}.mp4" for p in plans]
    split_video(fixture, sc, plans, whole, smart=False)   # whole-chunk re-encodes too
    for path in whole:
        with av.open(str(path)) as c:
            f = next(c.decode(video=0))
            assert (f.color_range, f.colorspace, f.color_primaries) == (1, 1, 1)
    with av.open(str(fixture)) as c:
        src = [f.to_ndarray(format="rgb24").astype(np.int16) for f in c.decode(video=0)]
    assert len(src) == 91
    for p, path in zip(plans, vp):
        with av.open(str(path)) as c:
            got = [f.to_ndarray(format="rgb24").astype(np.int16) for f in c.decode(video=0)]
        assert len(got) == p.n_frames
        for j, g in enumerate(got):
            i = p.start_frame + j
            d = {k: np.abs(g - src[k]).mean() for k in range(max(0, i - 2), min(91, i + 3))}
            assert min(d, key=d.get) == i, (i, d)
            copied = (p.chunk_id == 0 and i < 37) or (p.chunk_id == 1 and i >= 84)
            assert d[i] == 0 if copied else d[i] < 3.0, (i, d[i])


def test_open_gop_copy_is_demoted_or_exact(tmp_path):
    """x264 open GOPs put leading B-frames after a non-IDR keyframe in decode order. The
    cutter must notice (or the copy is still exact): every chunk decodes to its frames."""
    src = tmp_path / "open.mkv"
    encode_numbered(src, "libx264", {"g": "10", "keyint_min": "10", "sc_threshold": "0", "bf": "3",
                                     "x264-params": "open-gop=1", "crf": "10"})
    sc = scan(src)
    plans = plan_chunks(len(sc.pts), sc.fps, sc.keyframe, 1 / 3)   # one GOP per chunk
    assert all(p.copy for p in plans)
    vp = [tmp_path / f"o{p.chunk_id}.mp4" for p in plans]
    res = split_video(src, sc, plans, vp)
    # x264 puts leading B-frames after some keyframes (a demux listing showed them after
    # the keyframe at 10): those chunks' tails depend on the next chunk, so re-encode
    assert res.demoted and all("open GOP" in r for r in res.demoted.values())
    assert res.modes.count("copy") >= 1
    _assert_exact(plans, vp)


def test_single_chunk_and_tiny_chunks(tmp_path):
    sc, plans, vp, _, res, _ = _cut(tmp_path, n=12, gop=1, chunk_s=1 / 30)
    assert len(plans) == 12 and res.modes == ["copy"] * 12
    _assert_exact(plans, vp)


# ---- audio ----------------------------------------------------------------------------

def _wav(path):
    with wave.open(str(path)) as w:
        assert w.getsampwidth() == 2
        data = np.frombuffer(w.readframes(w.getnframes()), "<i2").reshape(-1, w.getnchannels())
        return w.getframerate(), data


@pytest.mark.parametrize("audio_process", [False, True])
def test_wav_holds_exactly_the_chunk_time_range(tmp_path, audio_process):
    """Both ways of splitting audio (a thread fed by the video pass; a separate process
    reading the file itself, used for long recordings) give the exact samples."""
    sc, plans, _, ap, res, _ = _cut(tmp_path, bframes=3, audio="pcm",
                                    audio_process=audio_process)
    ranges = chunk_time_ranges(sc, plans)
    total = 0
    for p, (t0, t1), path in zip(plans, ranges, ap):
        rate, data = _wav(path)
        assert rate == 48000 and data.shape[1] == 2
        s0, s1 = round(t0 * rate), round(t1 * rate)
        assert data.shape[0] == s1 - s0
        # the generator wrote sample s as s % 30000 (ch0) and its negation (ch1)
        want = (np.arange(s0, s1) % 30000).astype(np.int16)
        n_src = round(Fraction(95, 30) * rate)       # samples the source has
        have = max(0, min(s1, n_src) - s0)
        assert np.array_equal(data[:have, 0], want[:have])
        assert np.array_equal(data[:have, 1], -want[:have])
        assert not data[have:].any()                  # past the source's end: silence
        total += data.shape[0]
    assert res.audio[0] == {"samples": 48000, "filled": 48000}
    # chunks tile the timeline: consecutive WAVs meet exactly
    assert total == round(ranges[-1][1] * 48000) - round(ranges[0][0] * 48000)


def test_aac_audio_is_cut_to_the_same_lengths(tmp_path):
    sc, plans, _, ap, res, _ = _cut(tmp_path, audio="aac")
    other = tmp_path / "p"
    other.mkdir()
    _, _, _, ap2, _, _ = _cut(other, audio="aac", audio_process=True)
    assert [p.read_bytes() for p in ap] == [p.read_bytes() for p in ap2]
    for (t0, t1), path in zip(chunk_time_ranges(sc, plans), ap):
        rate, data = _wav(path)
        assert data.shape[0] == round(t1 * rate) - round(t0 * rate)
    _, mid = _wav(ap[1])
    assert np.abs(mid.astype(np.int32)).max() > 5000      # the sine is there, not silence


# ---- bad input ------------------------------------------------------------------------

def test_truncated_source_is_a_clear_error(tmp_path):
    src = tmp_path / "src.mkv"
    make_video(src, 95, gop=45)
    sc = scan(src)
    cut = tmp_path / "cut.mkv"
    cut.write_bytes(src.read_bytes()[: src.stat().st_size // 2])
    plans = plan_chunks(len(sc.pts), sc.fps, sc.keyframe, 1.0)
    with pytest.raises(BadInput, match="could be decoded|cannot decode"):
        split_video(cut, sc, plans, [tmp_path / f"x{i}.mp4" for i in range(len(plans))])


def test_not_a_video_and_bad_pts(tmp_path):
    junk = tmp_path / "junk.mkv"
    junk.write_bytes(b"not a video at all" * 100)
    src = tmp_path / "src.mkv"
    make_video(src, 20, gop=10)
    sc = scan(src)
    plans = plan_chunks(20, sc.fps, sc.keyframe, 1.0)
    with pytest.raises(BadInput, match="cannot read video"):
        split_video(junk, sc, plans, [tmp_path / "a.mp4"])
    sc.pts = sc.pts[::-1].copy()
    with pytest.raises(BadInput, match="strictly increasing"):
        split_video(src, sc, plans, [tmp_path / "a.mp4"])
    assert ChunkPlan(0, 0, 20, True).n_frames == 20


def test_audio_process_failure_is_a_one_line_error(tmp_path):
    from companion.dataset.audio import AudioProcess
    proc = AudioProcess(tmp_path / "nope.mkv", [(Fraction(0), Fraction(1))],
                        [tmp_path / "a.wav"], 48000, 2)
    with pytest.raises(BadInput, match="cannot read audio") as ei:
        proc.result()
    assert "\n" not in str(ei.value)
    proc.stop()
    assert not (tmp_path / "a.wav").exists()


@pytest.mark.parametrize("codec,opts", [
    ("libx265", {"x265-params": "keyint=10:min-keyint=10:scenecut=0:bframes=3:log-level=error",
                 "crf": "10"}),
    ("libsvtav1", {"g": "10", "crf": "20", "preset": "12"}),
])
def test_hevc_and_av1_sources_copy_exactly(tmp_path, codec, opts):
    """OBS 30.2+ can record HEVC and AV1. Copy works for both; x265's default open GOPs
    (CRA pictures) are detected and that chunk is re-encoded (to H.264)."""
    if codec not in av.codecs_available:
        pytest.skip(f"{codec} not in this FFmpeg build")
    src = tmp_path / "src.mkv"
    encode_numbered(src, codec, opts)
    sc = scan(src)
    plans = plan_chunks(len(sc.pts), sc.fps, sc.keyframe, 1.0)
    assert all(p.copy for p in plans)
    vp = [tmp_path / f"c{p.chunk_id}.mp4" for p in plans]
    res = split_video(src, sc, plans, vp)
    _assert_exact(plans, vp)
    assert res.modes[-1] == "copy"
    if res.modes[0] != "copy":
        assert "open GOP" in res.demoted[0]


def test_decoder_rate_differing_from_the_stream_rate_is_resampled(tmp_path):
    """Audio frames at 24 kHz fed to a 48 kHz splitter (what HE-AAC does when the
    container declares the core rate): the WAV has the declared rate and full length."""
    from companion.dataset.audio import AudioSplitter
    out = tmp_path / "a.wav"
    sp = AudioSplitter([(Fraction(0), Fraction(1))], [out], 48000, 1)
    for k in range(0, 24000, 1000):
        idx = np.arange(k, k + 1000)
        data = (8000 * np.sin(2 * np.pi * 200 * idx / 24000)).astype(np.int16)[None, :]
        f = av.AudioFrame.from_ndarray(data, format="s16", layout="mono")
        f.sample_rate = 24000
        f.pts = k
        f.time_base = Fraction(1, 24000)
        sp.add_frame(f)
    stats = sp.finish()
    rate, data = _wav(out)
    assert rate == 48000 and data.shape == (48000, 1)
    assert stats[0]["filled"] > 47000                 # resampler latency: a few samples
    # still a 200 Hz sine at 48 kHz: 240 samples per period
    x = data[1000:1480, 0].astype(float)
    assert np.argmax(np.abs(np.fft.rfft(x))) == 2     # 480 samples = 2 periods


@pytest.mark.parametrize("fmt,layout", [("fltp", "stereo"), ("fltp", "mono"), ("s16p", "stereo"),
                                        ("fltp", "5.1")])
def test_planar_frames_convert_like_swresample(fmt, layout):
    """Planar decoder output of odd lengths (each plane's buffer padded past its samples)
    becomes interleaved s16 exactly as FFmpeg's swresample makes it: clip(lrint(x * 32768))
    for float, the samples themselves for s16p; out-of-range and half-way values included."""
    from companion.dataset.audio import AudioSplitter
    rng = np.random.default_rng(7)
    ch = av.AudioLayout(layout).nb_channels
    frames, want = [], []
    for n in (1001, 7, 1024, 333):
        if fmt == "fltp":
            x = rng.uniform(-1.2, 1.2, (ch, n)).astype(np.float32)
            x[:, :4] = np.array([0.5 / 32768, 1.5 / 32768, -2.5 / 32768, 1.0], np.float32)
            w = np.clip(np.rint(x.astype(np.float64) * 32768), -32768, 32767).astype(np.int16)
        else:
            x = rng.integers(-32768, 32767, (ch, n), dtype=np.int16)
            w = x
        f = av.AudioFrame.from_ndarray(x, format=fmt, layout=layout)
        f.sample_rate = 48000
        frames.append(f)
        want.append(w.T)
    got = AudioSplitter([], [], 48000, ch)._to_s16(frames)
    assert got.dtype == np.int16 and np.array_equal(got, np.concatenate(want))


def test_decoded_aac_frames_convert_like_swresample():
    """Frames from FFmpeg's AAC decoder (a real OBS recording): their planes are padded
    past the samples (8192 bytes for 1024 float samples); only the samples are used."""
    from pathlib import Path

    from companion.dataset.audio import AudioSplitter
    src = Path(__file__).parent / "fixtures" / "obs29_h264_30fps_pause.mkv"
    with av.open(str(src)) as c:
        a = c.streams.audio[0]
        frames = [f for p in c.demux(a) for f in p.decode()][:40]
    assert frames[0].format.name == "fltp" and frames[0].planes[0].buffer_size > 4 * frames[0].samples
    want = np.concatenate([np.clip(np.rint(f.to_ndarray().astype(np.float64) * 32768), -32768, 32767)
                           .astype(np.int16).T for f in frames])
    got = AudioSplitter([], [], frames[0].sample_rate, frames[0].layout.nb_channels)._to_s16(frames)
    assert np.array_equal(got, want)


def test_frames_with_another_channel_count_are_remixed():
    """A decoder that outputs fewer channels than the stream declares (mono frames for a
    stereo stream, as parametric-stereo AAC can): the WAV still has the declared channel
    count (FFmpeg's default layout for it) and full length; it once failed with a
    TypeError from PyAV (a channel count where a layout name is needed)."""
    from companion.dataset.audio import AudioSplitter
    sp = AudioSplitter([(Fraction(0), Fraction(1, 2))], [Path("/dev/null")], 48000, 2)
    t = np.arange(24000)
    x = (0.25 * np.sin(2 * np.pi * 440 * t / 48000)).astype(np.float32)[None, :]
    out = []
    for k in range(0, 24000, 1000):
        f = av.AudioFrame.from_ndarray(x[:, k:k + 1000].copy(), format="fltp", layout="mono")
        f.sample_rate = 48000
        out.append(sp._to_s16([f]))
    got = np.concatenate(out)
    assert got.shape[1] == 2 and 23000 <= got.shape[0] <= 24000
    assert np.array_equal(got[:, 0], got[:, 1]) and np.abs(got).max() > 3000
