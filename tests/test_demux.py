"""scan_video on real files encoded here with PyAV (libx264/libx265/libsvtav1) and muxed by
FFmpeg's own Matroska/MP4 muxers.

Captions are put into the bitstream the way OBS 29 does it (obs-output.c add_caption):
after encoding, a start code plus an SEI NAL carrying libcaption-style CEA-608 pop-on
cc_data is appended to the packet, before muxing; FFmpeg's muxer then converts the
packet to length-prefixed NALs. So the files are real, only the caption producer is ours
(OBS itself is exercised by the obs29 fixture test at the end).
"""
from __future__ import annotations

import glob
import io
import os
import subprocess
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from companion.align import sei
from companion.align.cea608 import encode_pop_on, split_messages, wrap_rows
from companion.align.demux import scan_video
from companion.contract.captions import ClockPair, SegmentAnchor, decode_caption, encode_anchor
from companion.contract.sidecar import read_sidecar, sidecar_path_for
from companion.util.errors import BadInput
from companion.util.progress import Progress

W = H = 64


def _frames(n: int, seed: int = 0):
    """Frames with moving noise, so encoders really use P/B prediction."""
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 255, (H, W * 2, 3), dtype=np.uint8)
    for i in range(n):
        img = np.ascontiguousarray(base[:, i % W:i % W + W])
        img[: (i * 3) % H] = 255 - img[: (i * 3) % H]
        yield av.VideoFrame.from_ndarray(img, format="rgb24")


def _caption_payload(codec: str, text: str, where: str = "after") -> tuple[bytes, bytes]:
    """(prefix, suffix) bytes to add around an encoded Annex-B / OBU packet."""
    msgs = split_messages(encode_pop_on(text))
    t35s = [sei.build_ga94_t35(m) for m in msgs]
    if codec == "av1":
        return b"", b"".join(sei.build_av1_t35_obu(t) for t in t35s)
    if codec == "hevc":
        nal = sei.build_hevc_sei_nal([(4, t) for t in t35s], suffix=(where == "after"))
    else:
        nal = sei.build_h264_sei_nal([(4, t) for t in t35s])
    blob = b"\x00\x00\x00\x01" + nal
    return (b"", blob) if where == "after" else (blob, b"")


def encode(path: Path, n: int = 40, fps=30, codec: str = "h264", bframes: int = 0,
           gop: int = 10, captions: dict[int, str] | None = None, where: str = "after",
           drop_pts: set[int] = frozenset(), audio: bool = False) -> dict:
    """Encode ``n`` frames (frame i has pts i in a 1/fps time base) into ``path``.

    ``captions`` maps frame index -> caption text, attached to the packet carrying that
    frame. Packets whose pts is in ``drop_pts`` are left out (a gap in the pts grid).
    Returns what was written, in decode order: ``pts``, ``key`` and ``captions``
    ([(frame_pts, text)]).
    """
    captions = captions or {}
    enc = {"h264": "libx264", "hevc": "libx265", "av1": "libsvtav1"}[codec]
    out = av.open(str(path), "w")
    st = out.add_stream(enc, rate=Fraction(fps))
    st.width, st.height, st.pix_fmt = W, H, "yuv420p"
    if codec == "h264":
        st.codec_context.options = {
            "preset": "veryfast",
            "x264-params": f"bframes={bframes}:keyint={gop}:min-keyint={gop}:scenecut=0"}
    elif codec == "hevc":
        st.codec_context.options = {
            "preset": "ultrafast",
            "x265-params": f"bframes={bframes}:keyint={gop}:min-keyint={gop}:scenecut=0:"
                           "log-level=error"}
    else:
        st.codec_context.options = {"preset": "12", "svtav1-params": f"keyint={gop}"}
    ast = None
    if audio:
        ast = out.add_stream("aac", rate=48000)
        ast.layout = "stereo"
    wrote = {"pts": [], "key": [], "captions": []}

    def mux(pkts):
        for p in pkts:
            if p.pts in drop_pts:
                continue
            data = bytes(p)
            if p.pts in captions:
                pre, suf = _caption_payload(codec, captions[p.pts], where)
                data = pre + data + suf
                wrote["captions"].append((p.pts, captions[p.pts]))
            q = av.Packet(data)
            q.pts, q.dts, q.time_base, q.is_keyframe = p.pts, p.dts, p.time_base, p.is_keyframe
            q.stream = st
            out.mux(q)
            wrote["pts"].append(p.pts)
            wrote["key"].append(p.is_keyframe)

    for i, fr in enumerate(_frames(n)):
        fr.pts = i
        fr.time_base = Fraction(1, 1) / Fraction(fps)
        mux(st.encode(fr))
    mux(st.encode(None))
    if ast is not None:
        samples = int(48000 * n / fps)
        pts = 0
        while pts < samples:
            af = av.AudioFrame.from_ndarray(np.zeros((1, 2 * 1024), np.float32), format="flt",
                                            layout="stereo")
            af.sample_rate, af.pts = 48000, pts
            for p in ast.encode(af):
                out.mux(p)
            pts += 1024
        for p in ast.encode(None):
            out.mux(p)
    out.close()
    return wrote


def anchor(seg: int, base: int) -> str:
    return encode_anchor(SegmentAnchor("Tst9", seg, base, 1_700_000_000_000_000_000 + base,
                                       33_333_333, 0))


def check_against(scan, wrote, n_expected=None):
    order = np.argsort(np.array(wrote["pts"]), kind="stable")
    # frame i has encoder pts i, so the presentation rank of encoder pts p is its index
    enc_sorted = np.array(wrote["pts"])[order]
    assert scan.n_frames == len(wrote["pts"]) == (n_expected or len(wrote["pts"]))
    assert list(scan.keyframe) == list(np.array(wrote["key"])[order])
    # pts are ticks of the container time base; the rescale must be monotone and exact
    assert np.all(np.diff(scan.pts) > 0)
    secs = [float(p * scan.time_base) for p in scan.pts]
    first = secs[0]
    assert np.allclose(np.array(secs) - first,
                       (enc_sorted - enc_sorted[0]) / float(scan.fps), atol=1e-3)
    rank = {int(p): i for i, p in enumerate(enc_sorted)}
    assert flat(scan.captions) == [(rank[p], t) for p, t in wrote["captions"]]


def flat(captions):
    """Caption rows wrap at 32 columns on word boundaries; join them back with spaces."""
    return [(i, t.replace("\n", " ")) for i, t in captions]


@pytest.mark.parametrize("fps,bframes", [(30, 0), (30, 2), (60, 0), (60, 3)])
def test_h264_mkv_pts_keyframes_fps_bframes_captions(tmp_path, fps, bframes):
    caps = {0: anchor(0, 0), 7: "NM1 C R=Tst9 E=1 M=2 K=00000000", 13: anchor(1, 13),
            22: "plain caption"}
    f = tmp_path / f"h264_{fps}_{bframes}.mkv"
    wrote = encode(f, n=40, fps=fps, bframes=bframes, captions=caps)
    s = scan_video(f)
    assert (s.codec, s.width, s.height) == ("h264", W, H)
    assert s.fps == fps
    assert s.has_bframes == (bframes > 0)
    assert not s.truncated and s.warnings == []
    assert s.keyframe.sum() == 4 and list(np.nonzero(s.keyframe)[0]) == [0, 10, 20, 30]
    check_against(s, wrote, 40)
    assert flat(s.captions)[0] == (0, anchor(0, 0))
    assert isinstance(decode_caption(s.captions[0][1]), SegmentAnchor)
    assert s.duration_ns == pytest.approx(40 * 1e9 / fps, abs=1e6)
    assert not s.has_audio and s.audio_rate is None
    assert s.duplicate_pts == 0 and s.missing_frames == 0


def test_many_consecutive_captions_each_found_once(tmp_path):
    # one caption on every other packet, lengths 1..120 characters: every position of
    # EOC relative to the 31-pair cc_data() boundaries occurs
    f = tmp_path / "many.mkv"
    words = "NM1 C R=abc E=1763712000123456789 M=98765432109876 K=DEADBEEF x y z " * 3
    caps = {2 * k: words[: 1 + (k * 7) % 120].strip() or "X" for k in range(60)}
    wrote = encode(f, n=120, bframes=0, gop=30, captions=caps)
    s = scan_video(f)
    assert [i for i, _ in s.captions] == [2 * k for k in range(60)]
    assert [t for _, t in s.captions] == ["\n".join(wrap_rows(caps[2 * k])) for k in range(60)]
    check_against(s, wrote, 120)


def test_caption_on_b_frame_is_attributed_by_presentation_rank(tmp_path):
    f = tmp_path / "bcap.mkv"
    # with bframes=2 and gop 10, frames 1, 2 are B-frames decoded after frame 3
    caps = {1: "ON B ONE", 2: "ON B TWO", 3: "ON P THREE", 5: "FIVE"}
    wrote = encode(f, n=20, bframes=2, captions=caps)
    s = scan_video(f)
    assert s.has_bframes
    dec_order = [p for p, _ in wrote["captions"]]
    assert dec_order != sorted(dec_order)  # really reordered in the file
    check_against(s, wrote)
    assert sorted(s.captions) == [(1, "ON B ONE"), (2, "ON B TWO"), (3, "ON P THREE"),
                                  (5, "FIVE")]


def test_mp4_and_sei_before_slice_and_ntsc_rate(tmp_path):
    f = tmp_path / "ntsc.mp4"
    caps = {0: anchor(0, 0), 9: "NINE"}
    wrote = encode(f, n=30, fps=Fraction(30000, 1001), bframes=2, captions=caps, where="before")
    s = scan_video(f)
    assert s.fps == Fraction(30000, 1001)
    assert s.has_bframes and not s.truncated
    check_against(s, wrote, 30)


def test_hevc_prefix_and_suffix_sei(tmp_path):
    for where in ("before", "after"):
        f = tmp_path / f"hevc_{where}.mkv"
        wrote = encode(f, n=24, codec="hevc", bframes=0, captions={0: anchor(0, 0), 11: "ELEVEN"},
                       where=where)
        s = scan_video(f)
        assert s.codec == "hevc" and s.fps == 30 and not s.has_bframes
        check_against(s, wrote, 24)
        assert len(s.captions) == 2


def test_av1_metadata_obu_captions(tmp_path):
    f = tmp_path / "av1.mkv"
    wrote = encode(f, n=12, codec="av1", captions={0: anchor(0, 0), 5: "FIVE AV1"})
    s = scan_video(f)
    assert s.codec == "av1"
    check_against(s, wrote, 12)
    assert [t for _, t in flat(s.captions)] == [anchor(0, 0), "FIVE AV1"]


def test_audio_stream_is_reported(tmp_path):
    f = tmp_path / "av.mkv"
    encode(f, n=30, audio=True)
    s = scan_video(f)
    assert s.has_audio and s.audio_rate == 48000 and s.audio_channels == 2
    assert s.n_frames == 30 and not s.truncated


def test_missing_pts_are_reported(tmp_path):
    f = tmp_path / "gap.mkv"
    wrote = encode(f, n=30, bframes=0, drop_pts={10, 11, 20})
    s = scan_video(f)
    assert s.n_frames == 27 and s.fps == 30
    assert s.missing_frames == 3 and s.pts_gaps == [(10, 2), (18, 1)]
    assert any("missing" in w for w in s.warnings)
    check_against(s, wrote, 27)


def _srt(cues):
    def ts(ms):
        return f"{ms // 3600000:02d}:{ms // 60000 % 60:02d}:{ms // 1000 % 60:02d},{ms % 1000:03d}"
    return "".join(f"{i + 1}\n{ts(a)} --> {ts(b)}\n{t}\n\n" for i, (a, b, t) in enumerate(cues))


@pytest.mark.parametrize("subcodec", ["srt", "ass"])
def test_subtitle_track_cues_like_open_world_agents(tmp_path, subcodec):
    v = tmp_path / "v.mkv"
    encode(v, n=60)
    cues = [(0, 1000, "1740119250371185500"), (1000, 1950, "1740119251372073500"),
            (1967, 2000, "1740119252372885600")]
    srt = tmp_path / "c.srt"
    srt.write_text(_srt(cues))
    out = tmp_path / f"owa_{subcodec}.mkv"
    subprocess.run(["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-y", "-i", str(v),
                    "-i", str(srt), "-map", "0", "-map", "1", "-c:v", "copy", "-c:s", subcodec,
                    str(out)], check=True)
    s = scan_video(out)
    assert s.subtitle_cues == [(a * 1_000_000, b * 1_000_000, t) for a, b, t in cues]
    assert s.n_frames == 60 and s.captions == []


def _cut(src: Path, dst: Path, frac: float) -> Path:
    data = src.read_bytes()
    dst.write_bytes(data[: int(len(data) * frac)])
    return dst


def test_truncated_mkv_is_detected(tmp_path):
    f = tmp_path / "full.mkv"
    encode(f, n=120, audio=True, captions={0: anchor(0, 0)})
    full = scan_video(f)
    assert not full.truncated
    half = scan_video(_cut(f, tmp_path / "half.mkv", 0.5))
    assert half.truncated and half.n_frames < full.n_frames
    assert half.warnings and "end at" in half.truncated_reason and full.truncated_reason is None
    assert flat(half.captions) == [(0, anchor(0, 0))]  # what survived is still usable
    # losing the last few frames (a small fraction of the file) is caught too
    near = scan_video(_cut(f, tmp_path / "near.mkv", 0.97))
    assert near.truncated and full.n_frames - 10 < near.n_frames < full.n_frames


def test_truncated_faststart_mp4_is_detected(tmp_path):
    src = tmp_path / "src.mkv"
    encode(src, n=120)
    mp4 = tmp_path / "fs.mp4"
    subprocess.run(["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-y", "-i", str(src),
                    "-c", "copy", "-movflags", "+faststart", str(mp4)], check=True)
    assert not scan_video(mp4).truncated
    cut = scan_video(_cut(mp4, tmp_path / "cut.mp4", 0.5))
    assert cut.truncated


def test_mp4_without_index_is_bad_input(tmp_path):
    src = tmp_path / "src.mp4"
    encode(src, n=60)  # moov written at the end: the first half has no index
    with pytest.raises(BadInput) as ei:
        scan_video(_cut(src, tmp_path / "cut.mp4", 0.5))
    assert "cut.mp4" in str(ei.value) and "\n" not in str(ei.value)


@pytest.mark.parametrize("kind", ["text", "empty", "missing", "dir", "audio_only", "garbage",
                                  "png", "jpeg"])
def test_not_a_video_is_one_line_bad_input(tmp_path, kind):
    p = tmp_path / f"in_{kind}.mkv"
    if kind == "text":
        p.write_text("hello, I am not a video\n")
    elif kind == "empty":
        p.write_bytes(b"")
    elif kind == "dir":
        p.mkdir()
    elif kind == "garbage":
        p.write_bytes(os.urandom(4096))
    elif kind == "audio_only":
        p = tmp_path / "tone.wav"
        subprocess.run(["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi",
                        "-i", "sine=d=0.5", str(p)], check=True)
    elif kind in ("png", "jpeg"):
        p = tmp_path / f"still.{'png' if kind == 'png' else 'jpg'}"
        subprocess.run(["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi",
                        "-i", "testsrc2=size=64x64", "-frames:v", "1", str(p)], check=True)
    with pytest.raises(BadInput) as ei:
        scan_video(p)
    msg = str(ei.value)
    assert str(p) in msg and "\n" not in msg and ei.value.exit_code == 2
    if kind == "audio_only":
        assert "no video stream" in msg


def test_progress_counts_every_video_packet(tmp_path):
    f = tmp_path / "p.mkv"
    encode(f, n=150, audio=True)
    buf = io.StringIO()
    prog = Progress("scan", stream=buf)
    s = scan_video(f, progress=prog)
    assert prog.done == s.n_frames == 150
    assert prog.total is not None and abs(prog.total - 150) <= 2


OBS_FIXTURES = sorted(glob.glob(str(Path(__file__).parent / "fixtures" / "obs29_*.mkv")))


@pytest.mark.skipif(not OBS_FIXTURES, reason="no OBS 29 recording in tests/fixtures yet")
@pytest.mark.parametrize("path", OBS_FIXTURES)
def test_real_obs29_recording_has_decodable_nm1_captions(path):
    s = scan_video(path)
    assert s.codec == "h264" and s.n_frames > 0 and not s.truncated
    decoded = [(i, decode_caption(t)) for i, t in s.captions]
    ours = [(i, d) for i, d in decoded if d is not None]
    assert ours, f"no NM1 captions found in {path}: {s.captions[:3]}"
    anchors0 = [i for i, d in ours if isinstance(d, SegmentAnchor) and d.segment == 0]
    assert anchors0 and anchors0[0] == 0
    # captions land on distinct frames, in increasing order (OBS attaches one per packet
    # and never on a packet with pts below the last captioned one)
    frames = [i for i, _ in s.captions]
    assert frames == sorted(frames) and len(set(frames)) == len(frames)
    # every caption OBS carried is ours and intact (no CaptionError above), and the
    # segment anchors equal what the script wrote to its sidecar beside the recording
    assert all(d is not None for _, d in decoded)
    sc = read_sidecar(sidecar_path_for(path))
    assert [d for _, d in ours if isinstance(d, SegmentAnchor)] == sc.segments
    clocks = [d for _, d in ours if isinstance(d, ClockPair)]
    assert clocks and all(c in sc.clocks for c in clocks)


def test_obs29_pause_fixture_facts():
    """Facts about the fixture stated in tests/fixtures/README.md (measured by ffprobe
    when it was recorded): 91 frames, last packet at 3033 ms, no frame at 3000 ms."""
    path = Path(__file__).parent / "fixtures" / "obs29_h264_30fps_pause.mkv"
    if not path.exists():
        pytest.skip("fixture not recorded yet")
    s = scan_video(path)
    assert (s.width, s.height, s.fps, s.time_base) == (320, 240, 30, Fraction(1, 1000))
    assert s.n_frames == 91 and int(s.pts[-1]) == 3033
    assert s.has_bframes and s.has_audio and s.keyframe[0]
    assert s.missing_frames == 1 and s.pts_gaps == [(90, 1)]


def _corrupt_middle(src: Path, dst: Path) -> None:
    """``dst``: ``src`` with a tenth of its bytes, from the middle on, replaced by noise."""
    data = bytearray(src.read_bytes())
    mid = len(data) // 2
    data[mid:mid + len(data) // 10] = np.random.default_rng(3).integers(
        0, 256, len(data) // 10, dtype=np.uint8).tobytes()
    dst.write_bytes(bytes(data))


def test_corrupted_middle_does_not_raise(tmp_path):
    f = tmp_path / "c.mkv"
    encode(f, n=120, captions={k: f"CAP {k}" for k in range(0, 120, 5)})
    g = tmp_path / "corrupt.mkv"
    _corrupt_middle(f, g)
    s = scan_video(g)
    assert 0 < s.n_frames <= 120
    good = [(i, t) for i, t in s.captions if t.startswith("CAP ")]
    assert good and good[0] == (0, "CAP 0")
