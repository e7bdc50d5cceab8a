"""What a recording's container header says, before any packet is read (import-light).

``nm-align --dataset`` starts the ffmpeg stream copy from this while the rest of the
program still imports (``dataset/early.py``); ``demux.scan_video`` builds the same
:class:`HeaderInfo` and its own results are the truth. Needs only PyAV.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from fractions import Fraction

# Common capture rates; a measured rate within 0.05 % of one of these snaps to it.
STANDARD_RATES = (Fraction(24000, 1001), Fraction(24), Fraction(25), Fraction(30000, 1001),
                  Fraction(30), Fraction(48), Fraction(50), Fraction(60000, 1001), Fraction(60),
                  Fraction(72), Fraction(90), Fraction(100), Fraction(120000, 1001),
                  Fraction(120), Fraction(144), Fraction(165), Fraction(240))


def snap_standard_rate(rate, tol) -> Fraction | None:
    """The standard rate nearest ``rate`` if within ``tol`` of it (relative), else None."""
    best = min(STANDARD_RATES, key=lambda r: abs(r - rate))
    return best if abs(best - rate) <= best * tol else None


@dataclass(frozen=True)
class HeaderInfo:
    """``first_pts``: the video stream's start time (ticks of ``time_base``) or None;
    ``rates``: declared frame rates (guessed, average, base; may be empty);
    ``declared_end_s``: declared end of the video in seconds or None; ``audio_*``: the
    first audio stream's rate and channel count (None without one)."""

    codec: str
    time_base: Fraction
    first_pts: int | None
    rates: tuple[Fraction, ...]
    declared_end_s: float | None
    audio_rate: int | None
    audio_channels: int | None
    container: str = ""
    """FFmpeg's name of the container format (``matroska,webm`` for MKV)."""
    audio_codec: str | None = None


def video_streams(container) -> list:
    """The container's video streams, cover art (attached pictures) left out."""
    import av
    return [s for s in container.streams.video
            if not (s.disposition & av.stream.Disposition.attached_pic)]


def declared_video_end_s(container, stream) -> tuple[float | None, str]:
    """Declared end of the video in seconds and where it came from."""
    md = dict(stream.metadata or {})
    tag = md.get("DURATION") or md.get("duration")
    if tag:
        try:
            h, m, s = tag.split(":")
            return int(h) * 3600 + int(m) * 60 + float(s), "video track DURATION tag"
        except ValueError:
            pass
    if stream.duration and stream.time_base:
        start = stream.start_time or 0
        return float((stream.duration + start) * stream.time_base), "video stream duration"
    if container.duration:
        start = container.start_time or 0
        return (container.duration + max(start, 0)) / 1e6, "container duration"
    return None, ""


def header_info(container, vs, audio) -> tuple[HeaderInfo, str]:
    """HeaderInfo of video stream ``vs`` (and audio stream ``audio`` or None) and where
    the declared end came from."""
    cc = vs.codec_context
    try:  # the codec, not the decoder PyAV picked (libdav1d for AV1)
        codec = cc.codec.canonical_name or cc.name or "unknown"
    except Exception:  # pragma: no cover
        codec = cc.name or "unknown"
    tb = Fraction(vs.time_base) if vs.time_base else Fraction(1, 1000)
    audio_rate = audio_channels = audio_codec = None
    if audio is not None:
        acc = audio.codec_context
        audio_codec = acc.name
        audio_rate = int(acc.sample_rate or audio.sample_rate or 0) or None
        try:
            audio_channels = int(acc.layout.nb_channels) or None
        except Exception:  # pragma: no cover - layouts PyAV cannot describe
            audio_channels = getattr(acc, "channels", None)
    rates = []
    for attr in ("guessed_rate", "average_rate", "base_rate"):
        r = getattr(vs, attr, None)
        if r and 0 < r < 2000:
            rates.append(Fraction(r))
    end_s, src = declared_video_end_s(container, vs)
    return HeaderInfo(codec=codec, time_base=tb,
                      first_pts=int(vs.start_time) if vs.start_time is not None else None,
                      rates=tuple(rates), declared_end_s=end_s, audio_rate=audio_rate,
                      audio_channels=audio_channels,
                      container=(container.format.name or "") if container.format else "",
                      audio_codec=audio_codec), src


def read_header(path: str | os.PathLike) -> HeaderInfo | None:
    """HeaderInfo of the file at ``path``, or None when it cannot be read as a video
    (the scan then reports why)."""
    import av
    try:
        with av.open(str(path), mode="r") as container:
            videos = video_streams(container)
            if not videos:
                return None
            audio = container.streams.audio[0] if container.streams.audio else None
            return header_info(container, videos[0], audio)[0]
    except Exception:  # noqa: BLE001 - best effort; the scan gives the real error
        return None
