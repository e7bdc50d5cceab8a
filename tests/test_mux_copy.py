"""Chunk MP4s written from the Matroska walk (mp4mux + util.rangecopy + mux_copy).

Real files throughout: x264-encoded MKVs with the frame number burned into the pixels
(tests/test_dataset_media.py), scanned by the real walker; the MP4s are read back by
PyAV (FFmpeg's MP4 demuxer and H.264 decoder) and by ffprobe, and compared with the
PyAV remux path (``video.split_video``): same frames, same pts, same packets.
"""
from __future__ import annotations

import json
import os
import shutil
import struct
import subprocess
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
import xxhash

from companion.align.demux import scan_video
from companion.dataset.chunking import frames_per_chunk, plan_chunks
from companion.dataset.ffmpeg_copy import _boxes, check_segment, read_mp4_video_track
from companion.dataset.mp4mux import MuxError, chunk_header, media_timescale
from companion.dataset.mux_copy import MuxCopy
from companion.dataset.video import split_video
from companion.util import rangecopy
from tests.test_dataset_ffmpeg import HEVC_AV1, hevc_av1_source
from tests.test_dataset_media import decode_numbers, make_video



def _packets(path):
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        return [(pk.pts * s.time_base, pk.dts * s.time_base, pk.is_keyframe, bytes(pk))
                for pk in c.demux(s) if pk.size]


def _pyav_ref(tmp_path, src: Path, sc, plans) -> list[Path]:
    """The chunks as the PyAV remux path (video.split_video) writes them."""
    ref = [tmp_path / "ref" / f"c{p.chunk_id}.mp4" for p in plans]
    ref[0].parent.mkdir()
    split_video(src, sc, plans, ref, None)
    return ref


def _mux(tmp_path, src: Path, chunk_s: float, name="mux"):
    """Scan ``src`` with a MuxCopy fed by the walk; returns (scan, plans, paths, why)."""
    probe = scan_video(src)
    size = frames_per_chunk(probe.fps, chunk_s)
    mc = MuxCopy.start(tmp_path / name / "work", size)
    assert mc is not None
    sc = scan_video(src, walk_sink=mc)
    plans = plan_chunks(len(sc.pts), sc.fps, sc.keyframe, chunk_s)
    paths = [tmp_path / name / f"c{p.chunk_id}.mp4" for p in plans]
    why = mc.adopt(sc, plans, paths)
    assert not (tmp_path / name / "work").exists()
    return sc, plans, paths, why


@pytest.mark.parametrize("bframes,audio", [(0, None), (3, "aac"), (2, "pcm")])
def test_walk_mux_equals_the_pyav_path(tmp_path, bframes, audio):
    src = tmp_path / "src.mkv"
    make_video(src, 95, gop=10, bframes=bframes, audio=audio)
    sc, plans, paths, why = _mux(tmp_path, src, 1.0)
    assert why is None
    for a, b, p in zip(paths, _pyav_ref(tmp_path, src, sc, plans), plans):
        got, want = _packets(a), _packets(b)
        assert [x[3] for x in got] == [x[3] for x in want]           # same coded frames
        assert [x[0] for x in got] == [x[0] for x in want]           # same pts (seconds)
        assert [x[2] for x in got] == [x[2] for x in want]
        nums, _ = decode_numbers(a)
        assert nums == list(range(p.start_frame, p.end_frame))
        assert decode_numbers(a) == decode_numbers(b)
        assert check_segment(a, sc, np.asarray(sc.pts), p) is None
        # ffprobe (FFmpeg's own reader) agrees on the frame count
        if shutil.which("ffprobe"):
            out = subprocess.run(["ffprobe", "-v", "error", "-count_packets", "-select_streams",
                                  "v:0", "-show_entries", "stream=nb_read_packets,codec_name",
                                  "-of", "json", str(a)], capture_output=True, text=True,
                                 check=True).stdout
            st = json.loads(out)["streams"][0]
            assert st["codec_name"] == "h264" and int(st["nb_read_packets"]) == p.n_frames


@pytest.mark.parametrize("codec,name,opts", HEVC_AV1)
def test_walk_mux_hevc_and_av1(tmp_path, codec, name, opts):
    """OBS 30.2+ records HEVC and AV1 into MKV: same packets and frames as PyAV's remux."""
    src = hevc_av1_source(tmp_path, codec, opts)
    sc, plans, paths, why = _mux(tmp_path, src, 1.0)
    assert why is None
    for a, b, p in zip(paths, _pyav_ref(tmp_path, src, sc, plans), plans):
        assert _packets(a) == _packets(b)
        assert decode_numbers(a)[0] == list(range(p.start_frame, p.end_frame))
        with av.open(str(a)) as c:
            assert c.streams.video[0].codec_context.codec.canonical_name == name


def test_chunks_streamed_during_the_walk(tmp_path, monkeypatch):
    """Every chunk but the last is sent while the walk still runs (its jobs go out
    before put_walk); the files are the same as when everything is sent at the end."""
    src = tmp_path / "src.mkv"
    make_video(src, 95, gop=10, bframes=2)
    sent_before_end = []
    orig = MuxCopy.put_walk

    def put_walk(self, walk):
        sent_before_end.append(self._next)
        return orig(self, walk)
    monkeypatch.setattr(MuxCopy, "put_walk", put_walk)
    sc, plans, paths, why = _mux(tmp_path, src, 1.0)
    assert why is None and len(plans) == 4 and sent_before_end == [3]


def test_open_gop_or_off_plan_is_rejected_and_leaves_nothing(tmp_path):
    src = tmp_path / "src.mkv"
    make_video(src, 95, gop=45, bframes=0)            # 30-frame chunks: no keyframe at 30
    sc, plans, paths, why = _mux(tmp_path, src, 1.0)
    assert why is not None and "keyframe" in why
    assert not any(p.exists() for p in paths)
    # a plan other than the guessed one (another chunk length) is rejected too
    src2 = tmp_path / "src2.mkv"
    make_video(src2, 95, gop=10)
    probe = scan_video(src2)
    mc = MuxCopy.start(tmp_path / "w2", frames_per_chunk(probe.fps, 1.0))
    sc = scan_video(src2, walk_sink=mc)
    plans = plan_chunks(len(sc.pts), sc.fps, sc.keyframe, 2.0)
    paths = [tmp_path / "o2" / f"c{p.chunk_id}.mp4" for p in plans]
    assert mc.adopt(sc, plans, paths) == "the chunk plan differs from the one guessed before the scan"
    assert not (tmp_path / "w2").exists() and not (tmp_path / "o2").exists()


def test_a_failed_copy_is_rejected_not_raised(tmp_path, monkeypatch):
    """The child cannot write (its work folder is gone): adopt names the failure."""
    src = tmp_path / "src.mkv"
    make_video(src, 40, gop=10)
    probe = scan_video(src)
    mc = MuxCopy.start(tmp_path / "w", frames_per_chunk(probe.fps, 1.0))
    shutil.rmtree(tmp_path / "w")
    sc = scan_video(src, walk_sink=mc)
    plans = plan_chunks(len(sc.pts), sc.fps, sc.keyframe, 1.0)
    why = mc.adopt(sc, plans, [tmp_path / f"c{i}.mp4" for i in range(len(plans))])
    assert why.startswith("chunk copy failed: FileNotFoundError")
    assert not list(tmp_path.glob("c*.mp4"))


def test_walker_giving_up_after_chunks_were_sent(tmp_path, monkeypatch):
    """The walk streamed chunks, then declined (a block it does not understand): the
    PyAV reader scans, adopt rejects the output and the child is stopped."""
    from companion.align import demux
    src = tmp_path / "src.mkv"
    make_video(src, 95, gop=10)
    probe = scan_video(src)
    mc = MuxCopy.start(tmp_path / "w", frames_per_chunk(probe.fps, 1.0))
    orig = mc.walk_blocks

    def walk_blocks(*a):
        orig(*a)
        raise demux.WalkerDeclined("test: gave up mid-walk")
    mc.walk_blocks = walk_blocks
    sc = scan_video(src, walk_sink=mc)
    assert sc.demuxer == "pyav" and mc._next >= 1
    plans = plan_chunks(len(sc.pts), sc.fps, sc.keyframe, 1.0)
    why = mc.adopt(sc, plans, [tmp_path / f"c{i}.mp4" for i in range(len(plans))])
    assert why == "the walk's block table never came (not read by the Matroska walker)"
    assert mc.proc.poll() is not None and not (tmp_path / "w").exists()


# ---- mp4mux, pure ------------------------------------------------------------------------

def test_header_layout_and_times(tmp_path):
    """B-frame order: ctts shifted to non-negative, an edit list starting presentation
    at the first frame; times in the doubled timescale (1/1000 -> 16000)."""
    pts = np.array([0, 50, 17, 33, 100, 67, 83])      # ms, decode order
    key = np.array([1, 0, 0, 0, 0, 0, 0], bool)
    sizes = np.array([900, 40, 30, 31, 50, 20, 21])
    h = chunk_header("h264", b"\x01\x64\x00\x1f\xff\xe1\x00\x00", 320, 240, Fraction(1, 1000),
                     pts, key, sizes, 117)
    assert media_timescale(Fraction(1, 1000)) == (16000, 16)
    # the header is the whole file except the samples: write it with dummy payloads
    path_bytes = h + b"".join(bytes([i]) * int(s) for i, s in enumerate(sizes))
    boxes = list(_boxes(path_bytes))
    assert [k for k, _, _ in boxes] == [b"ftyp", b"moov", b"mdat"]
    mdat = boxes[-1]
    assert mdat[2] == len(path_bytes) and mdat[2] - mdat[1] == int(sizes.sum())
    p = tmp_path / "x.mp4"
    p.write_bytes(path_bytes)
    t = read_mp4_video_track(p)
    assert t.n == 7 and t.timescale == 16000 and t.first_is_sync
    assert list(t.pts) == [int(x) * 16 for x in pts]          # presentation from 0


def test_header_uses_co64_and_largesize_past_4gib():
    n = 3
    sizes = np.array([2_000_000_000] * n)
    h = chunk_header("h264", b"\x01", 64, 64, Fraction(1, 1000), np.arange(n) * 10,
                     np.ones(n, bool), sizes, n * 10)
    moov = next(b for b in _boxes(h) if b[0] == b"moov")   # before the (absent) samples
    assert b"co64" in h[moov[1]:moov[2]] and b"stco" not in h[moov[1]:moov[2]]
    size = struct.unpack_from(">I4sQ", h, moov[2])           # the mdat header follows
    assert size[0] == 1 and size[1] == b"mdat" and size[2] == 16 + int(sizes.sum())
    assert len(h) == moov[2] + 16


@pytest.mark.parametrize("kw,match", [
    (dict(codec="vp9"), "no MP4 sample entry"),
    (dict(pts=np.array([0, 10, 10])), "share a pts"),
    (dict(end_pts=20), "ends before its last frame"),
    (dict(codec_private=b""), "CodecPrivate"),
    (dict(time_base=Fraction(2, 1001)), "not 1/n"),
])
def test_header_refuses_what_it_cannot_describe(kw, match):
    args = dict(codec="h264", codec_private=b"\x01", width=64, height=64,
                time_base=Fraction(1, 1000), pts=np.array([0, 10, 20]),
                key=np.ones(3, bool), sizes=np.array([5, 5, 5]), end_pts=30)
    args.update(kw)
    with pytest.raises(MuxError, match=match):
        chunk_header(**args)


# ---- util.rangecopy, the child ---------------------------------------------------------

def _run_child(jobs: list[tuple[dict, bytes, list[int], list[int]]]):
    blob = b""
    for job, header, offs, sizes in jobs:
        blob += json.dumps(dict(job, header=len(header), n=len(offs))).encode() + b"\n" + header
        blob += struct.pack(f"<{len(offs)}q", *offs) + struct.pack(f"<{len(sizes)}q", *sizes)
    out = subprocess.run(rangecopy.child_command(), input=blob, capture_output=True, timeout=60)
    return out.returncode, [json.loads(x) for x in out.stdout.splitlines()]


def test_rangecopy_child_writes_header_plus_ranges(tmp_path):
    src = tmp_path / "src.bin"
    data = os.urandom(300_000)
    src.write_bytes(data)
    a, b = tmp_path / "a.out", tmp_path / "b.out"
    code, res = _run_child([
        ({"src": str(src), "out": str(a)}, b"HEAD", [10, 200_000, 5], [100, 99_999, 3]),
        ({"src": str(src), "out": str(tmp_path / "bad.out")}, b"H", [299_990], [20]),  # past the end
        ({"src": str(src), "out": str(b)}, b"", [0], [300_000]),
    ])
    assert code == 0
    assert res[0] == {"done": str(a)} and res[2] == {"done": str(b)}
    assert "short" in res[1]["error"] and not (tmp_path / "bad.out").exists()
    assert a.read_bytes() == b"HEAD" + data[10:110] + data[200_000:299_999] + data[5:8]
    assert b.read_bytes() == data


@pytest.mark.parametrize("hashed", [None, "xxh128", "sha256"])
@pytest.mark.parametrize("no_writev", [False, True])
def test_rangecopy_ranges_windows_and_large_ranges(tmp_path, monkeypatch, hashed, no_writev):
    """Ranges that share a 1 MiB window (written with one writev), ranges out of file
    order, empty ranges and ranges larger than the buffer (streamed) give the header plus
    exactly those bytes, and the digest is that of the file; also where the OS has no
    writev (Windows: one write per range)."""
    import hashlib
    src = tmp_path / "src.bin"
    data = os.urandom(5 << 20)
    src.write_bytes(data)
    if no_writev:
        monkeypatch.setattr(rangecopy, "_writev", None)
    big = (1 << 20) + 12_345
    offs = [7, 100, 100, 5000, 3 << 20, 50, (2 << 20) + 3] + [(4 << 20) + 9 * k for k in range(2000)]
    sizes = [90, 0, 4000, 20, big, 40, 5000] + [5] * 2000
    fd = os.open(src, os.O_RDONLY)
    try:
        digest = rangecopy.write_job(fd, str(tmp_path / "o"), b"xy", offs, sizes, hashed)
    finally:
        os.close(fd)
    want = b"xy" + b"".join(data[o:o + n] for o, n in zip(offs, sizes))
    assert (tmp_path / "o").read_bytes() == want
    assert digest == ({"sha256": hashlib.sha256, "xxh128": xxhash.xxh3_128}[hashed](want)
                      .hexdigest() if hashed else None)


def test_rangecopy_short_writev_resumes_mid_range(tmp_path, monkeypatch):
    """A writev that writes less than asked (a signal, a pipe, a full quota grant) is
    resumed where it stopped, mid-range included. The short writes are made up here
    (a regular file on Linux does not do them); the bytes are still written for real."""
    src = tmp_path / "src.bin"
    data = os.urandom(200_000)
    src.write_bytes(data)
    real = os.writev
    calls = []

    def short_writev(fd, views):
        calls.append(len(views))
        want = sum(len(v) for v in views)
        first = bytes(b"".join(bytes(v) for v in views)[:max(1, want // 3)])
        return os.write(fd, first)

    monkeypatch.setattr(rangecopy, "_writev", short_writev)
    offs, sizes = [10, 1000, 3000, 50_000], [500, 1500, 20_000, 100_000]
    fd = os.open(src, os.O_RDONLY)
    try:
        rangecopy.write_job(fd, str(tmp_path / "o"), b"H", offs, sizes)
    finally:
        os.close(fd)
    assert calls and real is os.writev
    assert (tmp_path / "o").read_bytes() == b"H" + b"".join(data[o:o + n] for o, n in zip(offs, sizes))


def test_rangecopy_torn_job_stream_exits_non_zero(tmp_path):
    head = json.dumps({"src": "x", "out": str(tmp_path / "o"), "header": 10, "n": 1}).encode()
    out = subprocess.run(rangecopy.child_command(), input=head + b"\nabc", capture_output=True,
                         timeout=60)
    assert out.returncode == 1 and "bad job stream" in out.stdout.decode()
    assert not (tmp_path / "o").exists()


def test_a_killed_copy_child_is_rejected_not_raised(tmp_path):
    """The copy child dies (killed, out of memory): adopt says so, leaves nothing."""
    src = tmp_path / "src.mkv"
    make_video(src, 95, gop=10)
    probe = scan_video(src)
    mc = MuxCopy.start(tmp_path / "w", frames_per_chunk(probe.fps, 1.0))
    mc.proc.kill()
    sc = scan_video(src, walk_sink=mc)
    plans = plan_chunks(len(sc.pts), sc.fps, sc.keyframe, 1.0)
    why = mc.adopt(sc, plans, [tmp_path / f"c{i}.mp4" for i in range(len(plans))])
    assert why is not None and ("child" in why), why
    assert not list(tmp_path.glob("c*.mp4")) and not (tmp_path / "w").exists()


@pytest.mark.parametrize("name", ["obs29_h264_30fps_pause", "obs29_h264_60fps_startrace"])
def test_walk_mux_of_real_obs_recordings(tmp_path, name):
    """The fixtures recorded by a real OBS 29 (x264 with B-frames, GA94 caption SEIs,
    AAC, a pause, irregular keyframes), each muxed as one chunk: the recording's own
    packets at its own presentation times, decoding to the recording's own frames.
    (PyAV's remux re-encodes the 60 fps one: its B-frame reorder around the pause is
    deeper than that path's copy window.)"""
    import hashlib
    src = Path(__file__).parent / "fixtures" / f"{name}.mkv"
    probe = scan_video(src)
    mc = MuxCopy.start(tmp_path / "w", len(probe.pts))
    sc = scan_video(src, walk_sink=mc)
    plans = plan_chunks(len(sc.pts), sc.fps, sc.keyframe, len(sc.pts) / float(sc.fps) + 1)
    assert len(plans) == 1 and sc.has_bframes
    out = tmp_path / "c0.mp4"
    assert mc.adopt(sc, plans, [out]) is None
    with av.open(str(src)) as c:
        s = c.streams.video[0]
        first = int(sc.pts[0])
        want = [((p.pts - first) * s.time_base, p.is_keyframe, bytes(p))
                for p in c.demux(s) if p.size]
    got = _packets(out)
    assert [(x[0], x[2], x[3]) for x in got] == want
    dts = [x[1] for x in got]
    assert dts == sorted(dts) and all(d <= x[0] for d, x in zip(dts, got))

    def frames(path):
        with av.open(str(path)) as c:
            return [hashlib.sha1(f.to_ndarray(format="rgb24").tobytes()).hexdigest()
                    for f in c.decode(video=0)]
    assert frames(out) == frames(src) and len(frames(out)) == len(sc.pts)


# ---- checksums: the child hashes what it writes (format 1.2.0) ------------------------------

def test_rangecopy_child_hashes_what_it_writes(tmp_path):
    """A job with "hash": "xxh128" or "sha256" reports that digest of every byte it wrote
    (header and ranges), through the gathering copy: ranges in and out of order,
    adjacent, with gaps, empty, larger than the 1 MiB buffer, and one past the end (an
    error, file removed); an unknown algorithm is a job error, nothing written."""
    import hashlib
    import random
    src = tmp_path / "src.bin"
    data = os.urandom(5 << 20)
    src.write_bytes(data)
    rnd = random.Random(7)
    jobs, want = [], []
    for k in range(12):
        offs, sizes = [], []
        o = rnd.randrange(1000)
        for _ in range(rnd.randrange(1, 60)):
            size = rnd.choice([0, 1, 17, 4096, 40_000, 300_000, (1 << 20) + 5])
            if o + size > len(data):
                break
            offs.append(o)
            sizes.append(size)
            o += size + rnd.choice([0, 0, 3, 900])
            if rnd.random() < 0.1:
                o = rnd.randrange(len(data) // 2)        # back in the file
        header = os.urandom(rnd.randrange(0, 200))
        out = tmp_path / f"o{k}.mp4"
        algo = ("xxh128", "sha256")[k % 2]
        jobs.append(({"src": str(src), "out": str(out), "hash": algo}, header, offs, sizes))
        want.append((out, algo, header + b"".join(data[a:a + b] for a, b in zip(offs, sizes))))
    jobs.append(({"src": str(src), "out": str(tmp_path / "bad"), "hash": "xxh128"}, b"h",
                 [len(data) - 5], [10]))
    jobs.append(({"src": str(src), "out": str(tmp_path / "md5"), "hash": "md5"}, b"h",
                 [0], [10]))
    jobs.append(({"src": str(src), "out": str(tmp_path / "plain")}, b"h", [0], [10]))
    code, res = _run_child(jobs)
    assert code == 0
    new = {"sha256": hashlib.sha256, "xxh128": xxhash.xxh3_128}
    for (out, algo, body), r in zip(want, res):
        assert out.read_bytes() == body
        assert r == {"done": str(out), "hash": algo, "digest": new[algo](body).hexdigest()}
    assert "short read" in res[-3]["error"] and not (tmp_path / "bad").exists()
    assert "unknown hash 'md5'" in res[-2]["error"] and not (tmp_path / "md5").exists()
    assert res[-1] == {"done": str(tmp_path / "plain")}        # not asked: no hashing


@pytest.mark.parametrize("checksums", [True, "sha256", False])
def test_walk_mux_digests(tmp_path, checksums):
    """MuxCopy(checksums=True: XXH3-128, or "sha256") keeps each adopted MP4's digest
    (final path -> hex), as computed by the child while copying; off: no digests."""
    import hashlib
    src = tmp_path / "src.mkv"
    make_video(src, 95, gop=10, audio="aac")
    probe = scan_video(src)
    mc = MuxCopy.start(tmp_path / "w", frames_per_chunk(probe.fps, 1.0), checksums=checksums)
    sc = scan_video(src, walk_sink=mc)
    plans = plan_chunks(len(sc.pts), sc.fps, sc.keyframe, 1.0)
    paths = [tmp_path / f"c{p.chunk_id}.mp4" for p in plans]
    assert mc.adopt(sc, plans, paths) is None
    if checksums:
        new = hashlib.sha256 if checksums == "sha256" else xxhash.xxh3_128
        assert mc.digests == {str(p): new(p.read_bytes()).hexdigest() for p in paths}
    else:
        assert mc.digests == {}
