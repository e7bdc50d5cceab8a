"""Generated media for the dataset tests (helpers, plus tests of the helpers themselves).

Videos are real H.264 files encoded with PyAV/libx264 into Matroska (as OBS writes):
every frame has its frame number burned into the pixels as 16 black/white blocks, so a
decoded frame says which source frame it is even after lossy re-encoding. The scan
here is a minimal stand-in for ``companion.align.demux.VideoScan`` (same field names),
built by an independent demux pass, because demux.py is written by someone else.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pyarrow as pa

from companion.contract.schemas import EVENTS_SCHEMA, FRAMES_SCHEMA

BITS = 16
BLOCK = 8  # px per bit block


@dataclass
class Scan:
    """Duck-typed VideoScan (fields used by companion.dataset)."""

    path: str
    codec: str
    width: int
    height: int
    fps: Fraction
    time_base: Fraction
    pts: np.ndarray
    keyframe: np.ndarray
    has_audio: bool
    audio_rate: int | None
    audio_channels: int | None
    has_bframes: bool
    captions: list = field(default_factory=list)
    subtitle_cues: list = field(default_factory=list)
    duration_ns: int = 0
    truncated: bool = False


def draw_frame(i: int, w: int, h: int) -> np.ndarray:
    """RGB frame with ``i`` burned in (top rows) over a moving gradient (below)."""
    img = np.zeros((h, w, 3), np.uint8)
    yy, xx = np.mgrid[0:h, 0:w]
    img[..., 0] = (xx * 2 + i * 3) % 256
    img[..., 1] = (yy * 3 + i) % 256
    img[..., 2] = 96
    img[:BLOCK * 2] = 0
    for b in range(BITS):
        if (i >> b) & 1:
            img[:BLOCK * 2, b * BLOCK:(b + 1) * BLOCK] = 255
    return img


def read_frame_number(rgb: np.ndarray) -> int:
    """Inverse of ``draw_frame`` on a decoded (lossy) RGB frame."""
    v = 0
    for b in range(BITS):
        blk = rgb[2:BLOCK * 2 - 2, b * BLOCK + 2:(b + 1) * BLOCK - 2]
        if blk.mean() > 128:
            v |= 1 << b
    return v


def make_video(path: Path, n_frames: int, fps: int = 30, gop: int = 10, bframes: int = 0,
               w: int = 128, h: int = 64, audio: str | None = None, audio_rate: int = 48000,
               channels: int = 2) -> None:
    """Encode ``n_frames`` frames (keyframe exactly every ``gop`` frames, no scene-cut
    keyframes, ``bframes`` B-frames) into Matroska. ``audio``: None, "pcm" (pcm_s16le
    whose sample s of channel 0 is ``s % 30000`` and channel 1 is ``-(s % 30000)``, so a
    cut can be checked sample-exactly) or "aac" (a sine)."""
    c = av.open(str(path), "w", format="matroska")
    vs = c.add_stream("libx264", rate=fps)
    vs.width, vs.height, vs.pix_fmt = w, h, "yuv420p"
    vs.options = {"g": str(gop), "keyint_min": str(gop), "sc_threshold": "0",
                  "bf": str(bframes), "crf": "10", "preset": "ultrafast" if bframes == 0 else "fast"}
    if bframes == 0:
        vs.options["tune"] = "zerolatency"
    a = None
    if audio:
        a = c.add_stream("pcm_s16le" if audio == "pcm" else "aac", rate=audio_rate,
                         layout="stereo" if channels == 2 else "mono")
    total_samples = int(round(n_frames / fps * audio_rate))
    s = 0
    for i in range(n_frames):
        f = av.VideoFrame.from_ndarray(draw_frame(i, w, h), format="rgb24")
        f.pts = i
        for p in vs.encode(f):
            c.mux(p)
        # interleave ~one frame's worth of audio
        target = min(total_samples, int(round((i + 1) / fps * audio_rate)))
        while a is not None and s < target:
            k = min(1024, target - s)
            idx = np.arange(s, s + k)
            if audio == "pcm":
                ch0 = (idx % 30000).astype(np.int16)
                data = np.stack([ch0, -ch0], axis=1) if channels == 2 else ch0[:, None]
                af = av.AudioFrame.from_ndarray(data.reshape(1, -1), format="s16",
                                                layout="stereo" if channels == 2 else "mono")
            else:
                sig = (0.3 * np.sin(2 * np.pi * 440 * idx / audio_rate)).astype(np.float32)
                data = np.stack([sig] * channels)
                af = av.AudioFrame.from_ndarray(data, format="fltp",
                                                layout="stereo" if channels == 2 else "mono")
            af.sample_rate = audio_rate
            af.pts = s
            af.time_base = Fraction(1, audio_rate)
            for p in a.encode(af):
                c.mux(p)
            s += k
    for p in vs.encode(None):
        c.mux(p)
    if a is not None:
        for p in a.encode(None):
            c.mux(p)
    c.close()


def encode_numbered(path: Path, codec: str, options: dict, n: int = 60, w: int = 128,
                    h: int = 64, fps: int = 30) -> Path:
    """An MKV of ``n`` frames with the frame number burned in, encoded with ``codec``."""
    c = av.open(str(path), "w", format="matroska")
    vs = c.add_stream(codec, rate=fps)
    vs.width, vs.height, vs.pix_fmt = w, h, "yuv420p"
    vs.options = options
    for i in range(n):
        f = av.VideoFrame.from_ndarray(draw_frame(i, w, h), format="rgb24")
        f.pts = i
        for p in vs.encode(f):
            c.mux(p)
    for p in vs.encode(None):
        c.mux(p)
    c.close()
    return path


def scan(path: Path) -> Scan:
    """Minimal VideoScan: one demux pass, pts/keyframes sorted into presentation order."""
    c = av.open(str(path))
    vs = c.streams.video[0]
    pts, kf = [], []
    bf = False
    last = None
    for p in c.demux(vs):
        if p.pts is None:
            continue
        if last is not None and p.pts < last:
            bf = True
        last = p.pts
        pts.append(p.pts)
        kf.append(p.is_keyframe)
    order = np.argsort(pts, kind="stable")
    a = c.streams.audio[0] if c.streams.audio else None
    res = Scan(path=str(path), codec=vs.codec_context.name, width=vs.codec_context.width,
               height=vs.codec_context.height, fps=Fraction(vs.average_rate),
               time_base=Fraction(vs.time_base), pts=np.asarray(pts, np.int64)[order],
               keyframe=np.asarray(kf, bool)[order], has_audio=a is not None,
               audio_rate=a.codec_context.sample_rate if a else None,
               audio_channels=a.codec_context.channels if a else None, has_bframes=bf)
    c.close()
    return res


def frames_table(sc: Scan, t0_ns: int = 1_700_000_000_000_000_000) -> pa.Table:
    """FRAMES_SCHEMA rows for a constant-rate capture starting at epoch ``t0_ns``."""
    n = len(sc.pts)
    interval = int(round(1e9 / float(sc.fps)))
    idx = np.arange(n, dtype=np.int64)
    pts_ns = (sc.pts * sc.time_base.numerator * 1_000_000_000) // sc.time_base.denominator
    mono = 5_000_000_000 + idx * interval
    cols = {"frame_idx": idx, "slot": idx, "pts": sc.pts, "pts_ns": pts_ns, "mono_ns": mono,
            "t_ns": t0_ns + idx * interval, "segment": np.zeros(n, np.int32),
            "keyframe": sc.keyframe}
    return pa.table({f.name: pa.array(cols[f.name], f.type) for f in FRAMES_SCHEMA},
                    schema=FRAMES_SCHEMA)


def events_table(rows: list[dict], frame_t_ns: np.ndarray, session_id: str = "s1") -> pa.Table:
    """EVENTS_SCHEMA table from dicts (missing columns null); frame_ref computed as the
    design says: searchsorted(frame_t_ns, t, 'right') - 1, null before frame 0."""
    cols = {f.name: [] for f in EVENTS_SCHEMA}
    for i, r in enumerate(rows):
        for name in cols:
            cols[name].append(r.get(name))
        fr = int(np.searchsorted(frame_t_ns, r["t_ns"], side="right")) - 1
        cols["frame_ref"][-1] = r.get("frame_ref", fr if fr >= 0 else None)
        cols["session_id"][-1] = session_id
        cols["hash"][-1] = r.get("hash", f"h{i}")
    return pa.Table.from_pydict(cols, schema=EVENTS_SCHEMA)


def decode_numbers(path: Path) -> tuple[list[int], list[int]]:
    """Frame numbers burned into each decoded frame of ``path`` and the frames' pts."""
    c = av.open(str(path))
    nums, pts = [], []
    for f in c.decode(video=0):
        nums.append(read_frame_number(f.to_ndarray(format="rgb24")))
        pts.append(f.pts)
    c.close()
    return nums, pts


def test_burned_numbers_survive_encoding(tmp_path):
    p = tmp_path / "v.mkv"
    make_video(p, 40, gop=10, bframes=3)
    nums, _ = decode_numbers(p)
    assert nums == list(range(40))
    sc = scan(p)
    assert sc.has_bframes and len(sc.pts) == 40
    assert np.flatnonzero(sc.keyframe).tolist() == [0, 10, 20, 30]
