"""scan_video's Matroska walker against its PyAV reader: the same VideoScan, field by
field, and the same decoded audio in the sink, on the committed OBS recordings and on
recordings made here; and the files the walker must leave to PyAV."""
from __future__ import annotations

import dataclasses
import glob
import hashlib
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from companion.align import mkv
from companion.align.demux import VideoScan, scan_video, walker_decline_reason
from companion.dataset.audio import AudioSpool
from companion.util.errors import BadInput
from tests.test_demux import _corrupt_middle, _cut, _srt, anchor, encode

FIXTURES = sorted(glob.glob(str(Path(__file__).parent / "fixtures" / "*.mkv")))
HAVE_FFMPEG = shutil.which("ffmpeg") is not None


class FrameSink:
    """An audio sink recording every decoded frame (what AudioSpool consumes)."""

    def __init__(self, rate, channels):
        self.rate, self.channels = rate, channels
        self.frames = []
        self.packets = 0
        self.eos = 0
        self.finished = 0

    def put(self, pkt):
        if pkt.size:
            self.packets += 1
        else:
            self.eos += 1
        for f in pkt.decode():
            planes = b"".join(bytes(p)[:f.samples * (f.format.bytes if f.format.is_planar
                                                      else f.format.bytes * f.layout.nb_channels)]
                              for p in f.planes)
            self.frames.append((f.pts, f.time_base, f.samples, f.sample_rate, f.format.name,
                                f.layout.name, hashlib.sha256(planes).hexdigest()))

    def finish(self):
        self.finished += 1


def scan_both(path, sink_cls=FrameSink, **kw):
    sinks = {}

    def make(tag):
        def audio_sink(rate, channels):
            sinks[tag] = sink_cls(rate, channels)
            return sinks[tag]
        return audio_sink

    fast = scan_video(path, audio_sink=make("fast"), **kw)
    slow = scan_video(path, audio_sink=make("slow"), mkv_walker=False, **kw)
    return fast, slow, sinks.get("fast"), sinks.get("slow")


def assert_same(fast: VideoScan, slow: VideoScan):
    assert slow.demuxer == "pyav"
    for f in dataclasses.fields(VideoScan):
        if f.name == "demuxer":
            continue
        a, b = getattr(fast, f.name), getattr(slow, f.name)
        if isinstance(b, np.ndarray):
            assert a.dtype == b.dtype and np.array_equal(a, b), f.name
        else:
            assert type(a) is type(b) and a == b, f.name


def assert_same_audio(fs: FrameSink | None, ss: FrameSink | None):
    assert (fs is None) == (ss is None)
    if ss is None:
        return
    assert (fs.rate, fs.channels) == (ss.rate, ss.channels)
    assert fs.packets == ss.packets and fs.eos == ss.eos == 1
    assert fs.finished == ss.finished == 1
    assert fs.frames == ss.frames and ss.frames


@pytest.mark.parametrize("path", FIXTURES, ids=[Path(p).name for p in FIXTURES])
def test_obs_fixtures_walker_equals_pyav(path):
    fast, slow, fs, ss = scan_both(path)
    assert fast.demuxer == "matroska-walker"
    assert_same(fast, slow)
    assert_same_audio(fs, ss)
    assert fast.captions and fast.has_bframes


@pytest.mark.parametrize("path", FIXTURES, ids=[Path(p).name for p in FIXTURES])
def test_walker_without_os_pread_reads_the_same(path, monkeypatch):
    """Where the OS has no pread (Windows) the walker seeks and reads its own binary
    descriptor: same scan, same audio (run here by swapping in that reader)."""
    import companion.align.demux as demux
    monkeypatch.setattr(demux, "_pread", demux._pread_seek)
    fast, slow, fs, ss = scan_both(path)
    assert fast.demuxer == "matroska-walker"
    assert_same(fast, slow)
    assert_same_audio(fs, ss)


@pytest.mark.parametrize("path", FIXTURES, ids=[Path(p).name for p in FIXTURES])
def test_obs_fixtures_spool_is_byte_identical(tmp_path, path):
    """The real sink of nm-align --dataset: same s16 spool file and placement log."""
    spools = {}

    def make(tag):
        def audio_sink(rate, channels):
            spools[tag] = AudioSpool(tmp_path / f"{tag}.s16", rate, channels)
            return spools[tag]
        return audio_sink

    scan_video(path, audio_sink=make("fast"))
    scan_video(path, audio_sink=make("slow"), mkv_walker=False)
    a, b = spools["fast"], spools["slow"]
    assert a.finished and b.finished and a.error is None and b.error is None
    assert list(a._log) == list(b._log) and len(b._log)
    assert (tmp_path / "fast.s16").read_bytes() == (tmp_path / "slow.s16").read_bytes()


CASES = {
    "h264_30_b0_audio": dict(n=90, fps=30, bframes=0, audio=True),
    "h264_30_b2_audio": dict(n=90, fps=30, bframes=2, audio=True),
    "h264_60_b0": dict(n=120, fps=60, bframes=0),
    "h264_60_b3_audio": dict(n=120, fps=60, bframes=3, audio=True),
    "h264_sei_before": dict(n=60, fps=30, bframes=2, where="before"),
    "h264_gap": dict(n=60, fps=30, bframes=0, drop_pts={10, 11, 20, 59}),
    "h264_gap_b2_audio": dict(n=60, fps=60, bframes=2, drop_pts={33, 34, 35}, audio=True),
    "hevc_b2_audio": dict(n=60, fps=30, codec="hevc", bframes=2, audio=True),
    "hevc_prefix_sei": dict(n=40, fps=60, codec="hevc", bframes=0, where="before"),
    "av1": dict(n=30, fps=30, codec="av1"),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_generated_recordings_walker_equals_pyav(tmp_path, name):
    kw = dict(CASES[name])
    n = kw["n"]
    kw["captions"] = {0: anchor(0, 0), 7: "NM1 C R=Tst9 E=1", n // 2: anchor(1, n // 2)}
    f = tmp_path / f"{name}.mkv"
    try:
        encode(f, **kw)
    except Exception as e:  # noqa: BLE001 - encoder missing from this PyAV build
        if kw.get("codec") in ("hevc", "av1"):
            pytest.skip(f"cannot encode {kw['codec']}: {e}")
        raise
    fast, slow, fs, ss = scan_both(f)
    assert fast.demuxer == "matroska-walker"
    assert_same(fast, slow)
    assert_same_audio(fs, ss)
    assert len(fast.captions) == 3


def _ffmpeg(*args):
    subprocess.run(["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-y", *map(str, args)],
                   check=True)


@pytest.mark.skipif(not HAVE_FFMPEG, reason="no ffmpeg CLI")
@pytest.mark.parametrize("x264", ["open-gop=1:keyint=30:bframes=2", "intra-refresh=1:keyint=30",
                                  "keyint=120:bframes=2"])
def test_ffmpeg_cli_recordings_walker_equals_pyav(tmp_path, x264):
    """Muxed by the ffmpeg CLI (another libavformat than PyAV's), 44.1 kHz mono AAC; open
    GOPs and intra refresh make keyframe flags a real question."""
    f = tmp_path / "cli.mkv"
    _ffmpeg("-f", "lavfi", "-i", "testsrc2=size=160x120:rate=60", "-f", "lavfi", "-i",
            "sine=sample_rate=44100:frequency=300", "-t", "3", "-c:v", "libx264", "-preset",
            "veryfast", "-x264-params", x264, "-c:a", "aac", "-ac", "1", f)
    fast, slow, fs, ss = scan_both(f)
    assert fast.demuxer == "matroska-walker"
    assert_same(fast, slow)
    assert_same_audio(fs, ss)


@pytest.mark.skipif(not HAVE_FFMPEG, reason="no ffmpeg CLI")
@pytest.mark.parametrize("subcodec", ["srt", "ass"])
def test_open_world_agents_subtitle_track_walker_equals_pyav(tmp_path, subcodec):
    v = tmp_path / "v.mkv"
    encode(v, n=60, audio=True)
    srt = tmp_path / "c.srt"
    srt.write_text(_srt([(0, 1000, "1740119250371185500"), (1000, 1950, "1740119251372073500"),
                         (1967, 2000, "1740119252372885600")]))
    out = tmp_path / f"owa_{subcodec}.mkv"
    _ffmpeg("-i", v, "-i", srt, "-map", "0", "-map", "1", "-c:v", "copy", "-c:a", "copy",
            "-c:s", subcodec, out)
    fast, slow, fs, ss = scan_both(out)
    assert fast.demuxer == "matroska-walker"
    assert_same(fast, slow)
    assert_same_audio(fs, ss)
    assert len(fast.subtitle_cues) == 3


def test_no_audio_sink_and_progress(tmp_path):
    from companion.util.progress import Progress
    import io
    f = tmp_path / "p.mkv"
    encode(f, n=150, audio=True, captions={3: "x"})
    pa, pb = Progress("a", stream=io.StringIO()), Progress("b", stream=io.StringIO())
    fast = scan_video(f, progress=pa)
    slow = scan_video(f, progress=pb, mkv_walker=False)
    assert fast.demuxer == "matroska-walker"
    assert_same(fast, slow)
    assert pa.done == pb.done == 150 and pa.total == pb.total


# -- what the walker must leave to PyAV -----------------------------------------------

def _fallback_equal(path, reason_has: str):
    reason = walker_decline_reason(path)
    assert reason is not None and reason_has in reason, reason
    fast, slow, fs, ss = scan_both(path)
    assert fast.demuxer == "pyav"
    assert_same(fast, slow)
    assert_same_audio(fs, ss)
    return fast


def test_truncated_file_falls_back_and_is_detected(tmp_path):
    f = tmp_path / "full.mkv"
    encode(f, n=120, audio=True, captions={0: anchor(0, 0)})
    for frac in (0.5, 0.97):
        cut = _cut(f, tmp_path / f"cut{frac}.mkv", frac)
        s = _fallback_equal(cut, "cut")
        assert s.truncated and s.truncated_reason


def test_bytes_after_the_segment_fall_back(tmp_path):
    f = tmp_path / "t.mkv"
    encode(f, n=30, audio=True)
    g = tmp_path / "trail.mkv"
    g.write_bytes(f.read_bytes() + b"\x00" * 100)
    _fallback_equal(g, "after the segment")


def _segment_size_pos(data: bytes) -> int:
    i = data.index(mkv.encode_id(mkv.SEGMENT))
    return i + 4


def test_unknown_size_segment_is_walked(tmp_path):
    """A recording whose muxer never came back to write the segment size (crash)."""
    f = tmp_path / "t.mkv"
    encode(f, n=60, audio=True, captions={0: anchor(0, 0)})
    data = bytearray(f.read_bytes())
    p = _segment_size_pos(data)
    n = mkv.vint_length(data[p])
    data[p:p + n] = mkv.encode_size(mkv.UNKNOWN, n)
    g = tmp_path / "unknown.mkv"
    g.write_bytes(bytes(data))
    assert walker_decline_reason(g) is None
    fast, slow, fs, ss = scan_both(g)
    assert fast.demuxer == "matroska-walker"
    assert_same(fast, slow)
    assert_same_audio(fs, ss)


def _first_simple_block(data: bytes, track: int = 1) -> int:
    lay = mkv.parse_layout(data)
    for tr, _, _, pay, _, _, _ in mkv.iter_blocks(data, lay):
        if tr == track:
            return pay - 4   # track vint (1 byte), timestamp (2), flags (1)
    raise AssertionError("no block")


def test_lacing_flag_falls_back(tmp_path):
    f = tmp_path / "t.mkv"
    encode(f, n=30)
    data = bytearray(f.read_bytes())
    head = _first_simple_block(bytes(data))
    assert data[head] == 0x81
    data[head + 3] |= 0x02    # Xiph lacing on the first video block
    g = tmp_path / "laced.mkv"
    g.write_bytes(bytes(data))
    assert "laced" in walker_decline_reason(g)
    assert scan_video(g).demuxer == "pyav"


def test_unknown_element_in_cluster_falls_back(tmp_path):
    f = tmp_path / "t.mkv"
    encode(f, n=60, captions={k: f"CAP {k}" for k in range(0, 60, 5)})
    data = bytearray(f.read_bytes())
    head = _first_simple_block(bytes(data))
    # the SimpleBlock's ID byte sits before its size vint; make it an unknown ID
    lay = mkv.parse_layout(bytes(data))
    c = lay.first_cluster
    _, _, cdata = mkv.read_header(data, c, len(data))
    p = cdata
    while True:
        eid, size, d = mkv.read_header(data, p, len(data))
        if eid == mkv.SIMPLE_BLOCK:
            break
        p = d + size
    assert d == head
    data[p] = 0xC5                 # a 1-byte ID Matroska does not define in a cluster
    g = tmp_path / "odd.mkv"
    g.write_bytes(bytes(data))
    assert "in a cluster" in walker_decline_reason(g)
    s = scan_video(g)           # PyAV's demuxer resyncs; no exception either way
    assert s.demuxer == "pyav" and s.n_frames > 0


def test_corrupted_middle_falls_back_without_raising(tmp_path):
    f = tmp_path / "c.mkv"
    encode(f, n=120, audio=True, captions={k: f"CAP {k}" for k in range(0, 120, 5)})
    g = tmp_path / "corrupt.mkv"
    _corrupt_middle(f, g)
    assert walker_decline_reason(g) is not None
    fast, slow, fs, ss = scan_both(g)
    assert fast.demuxer == "pyav"
    assert_same(fast, slow)


@pytest.mark.skipif(not HAVE_FFMPEG, reason="no ffmpeg CLI")
def test_webvtt_subtitles_and_opus_audio_fall_back(tmp_path):
    v = tmp_path / "v.mkv"
    encode(v, n=60)
    srt = tmp_path / "c.srt"
    srt.write_text(_srt([(0, 1000, "1740119250371185500"), (1000, 1950, "x")]))
    out = tmp_path / "vtt.mkv"
    _ffmpeg("-i", v, "-i", srt, "-map", "0", "-map", "1", "-c:v", "copy", "-c:s", "webvtt", out)
    _fallback_equal(out, "subtitle codec")
    opus = tmp_path / "opus.mkv"
    _ffmpeg("-i", v, "-f", "lavfi", "-i", "sine=sample_rate=48000", "-t", "2", "-map", "0:v",
            "-map", "1:a", "-c:v", "copy", "-c:a", "libopus", opus)
    _fallback_equal(opus, "audio")
    # without an audio sink the Opus track is not read, so the walker takes the file
    assert walker_decline_reason(opus, audio=False) is None
    fast = scan_video(opus)
    assert fast.demuxer == "matroska-walker"
    assert_same(fast, scan_video(opus, mkv_walker=False))


def test_mp4_is_left_to_pyav(tmp_path):
    f = tmp_path / "t.mp4"
    encode(f, n=30, captions={0: anchor(0, 0)})
    fast, slow, _, _ = scan_both(f)
    assert fast.demuxer == slow.demuxer == "pyav"
    assert_same(fast, slow)


@pytest.mark.parametrize("content", [b"\x1a\x45\xdf\xa3\x84\x42\x82\x81m",   # cut EBML header
                                     b"\x1a\x45\xdf\xa3" + b"\xff" * 40,
                                     b"not a video at all" * 10])
def test_bad_input_is_one_line_bad_input(tmp_path, content):
    g = tmp_path / "bad.mkv"
    g.write_bytes(content)
    with pytest.raises(BadInput) as ei:
        scan_video(g)
    assert "\n" not in str(ei.value) and str(g) in str(ei.value)


def test_video_block_groups_with_block_durations(tmp_path):
    """Packets whose duration is not the track's DefaultDuration are muxed as BlockGroups
    with a BlockDuration; the last frame's end comes from it."""
    import av
    src = tmp_path / "src.mkv"
    encode(src, n=60, fps=30, bframes=2, captions={0: anchor(0, 0)})
    dst = tmp_path / "dur.mkv"
    with av.open(str(src)) as i, av.open(str(dst), "w") as o:
        vin = i.streams.video[0]
        vo = o.add_stream_from_template(vin)
        pkts = [p for p in i.demux(vin) if p.size]
        for k, p in enumerate(pkts):
            p.stream = vo
            p.duration = 50 if k == len(pkts) - 1 else (1 if k % 7 == 0 else 33)
            o.mux(p)
    data = dst.read_bytes()
    durs = [d for t, _, _, _, _, d, _ in mkv.iter_blocks(data, mkv.parse_layout(data)) if d]
    assert 50 in durs and 1 in durs
    fast, slow = scan_video(dst), scan_video(dst, mkv_walker=False)
    assert fast.demuxer == "matroska-walker"
    assert_same(fast, slow)
