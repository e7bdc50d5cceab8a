"""The in-band caption protocol (version 1) and the timing records it carries.

Pure logic, no I/O. obs_script/nm_timestamps.py carries its own copy of the encoder
(OBS's embedded Python has only the standard library); tests prove both agree.
Spec: docs/contracts/captions-and-sidecar.md.

Two record kinds, each one caption text of at most 128 ASCII characters drawn from
the CEA-608-safe set (letters, digits, space, ``= .``)::

    NM1 A R=<rec> S=<seg> B=<pts_base> F=<frame_ns> I=<interval_ns> P=<pause_ns> K=<crc>
    NM1 C R=<rec> E=<epoch_ns> M=<mono_ns> K=<crc>

``K`` is the CRC-32 (upper-case hex, 8 digits) of everything before `` K=``.
"""
from __future__ import annotations

import re
import zlib
from dataclasses import dataclass

MAGIC = "NM1"


@dataclass(frozen=True)
class SegmentAnchor:
    """Pins recorded frames to OBS's frame clock for one recording segment.

    Frame ``p`` (0-based index in presentation order) with
    ``pts_base <= p < next segment's pts_base`` was captured at OBS monotonic time
    ``frame_ns + (p - pts_base) * interval_ns``. A recording has segment 0 at start
    and one more per unpause. ``pause_offset_ns`` is OBS's cumulative paused time
    (``obs_output_get_pause_offset``) and is a redundant cross-check:
    ``frame_ns == F0 + pts_base * interval_ns + pause_offset_ns``.
    """

    recording_id: str
    segment: int
    pts_base: int
    frame_ns: int
    interval_ns: int
    pause_offset_ns: int = 0

    def mono_of(self, frame_index: int) -> int:
        return self.frame_ns + (frame_index - self.pts_base) * self.interval_ns


@dataclass(frozen=True)
class ClockPair:
    """Back-to-back readings of the wall clock and OBS's monotonic clock."""

    recording_id: str
    epoch_ns: int
    mono_ns: int


def crc_of(body: str) -> str:
    return "%08X" % (zlib.crc32(body.encode("ascii")) & 0xFFFFFFFF)


def _seal(body: str) -> str:
    return f"{body} K={crc_of(body)}"


def encode_anchor(a: SegmentAnchor) -> str:
    return _seal(f"{MAGIC} A R={a.recording_id} S={a.segment} B={a.pts_base} F={a.frame_ns} "
                 f"I={a.interval_ns} P={a.pause_offset_ns}")


def encode_clock(c: ClockPair) -> str:
    return _seal(f"{MAGIC} C R={c.recording_id} E={c.epoch_ns} M={c.mono_ns}")


_REC_RE = re.compile(r"^[0-9A-Za-z]{1,16}$")
_INT_RE = re.compile(r"^-?[0-9]+$")
_A_KEYS = ("R", "S", "B", "F", "I", "P")
_C_KEYS = ("R", "E", "M")


class CaptionError(ValueError):
    pass


def _candidates(rows: str):
    """Caption rows may come back wrapped (libcaption wraps at 32 columns): try the
    row breaks as spaces first, then as nothing (a hard break inside a token)."""
    lines = [ln.strip() for ln in rows.replace("\r", "\n").split("\n") if ln.strip()]
    yield " ".join(lines)
    if len(lines) > 1:
        yield "".join(lines)


def decode_caption(text: str) -> SegmentAnchor | ClockPair | None:
    """Decode one caption text. Returns None for text that is not ours (e.g. a real
    subtitle); raises CaptionError for our magic with a bad checksum or bad fields."""
    last_err = None
    for cand in _candidates(text):
        cand = " ".join(cand.split())
        if not cand.startswith(MAGIC + " "):
            continue
        try:
            return _decode_line(cand)
        except CaptionError as e:
            last_err = e
    if last_err is not None:
        raise last_err
    return None


def _decode_line(line: str) -> SegmentAnchor | ClockPair:
    body, sep, crc = line.rpartition(" K=")
    if not sep:
        raise CaptionError(f"caption without checksum: {line!r}")
    if crc_of(body) != crc.upper():
        raise CaptionError(f"caption checksum mismatch: {line!r}")
    parts = body.split(" ")
    kind = parts[1] if len(parts) > 1 else ""
    fields = {}
    for tok in parts[2:]:
        k, eq, v = tok.partition("=")
        if not eq:
            raise CaptionError(f"malformed caption field {tok!r}")
        fields[k] = v
    keys = _A_KEYS if kind == "A" else _C_KEYS if kind == "C" else None
    if keys is None:
        raise CaptionError(f"unknown caption kind {kind!r}")
    missing = [k for k in keys if k not in fields]
    if missing:
        raise CaptionError(f"caption lacks fields {missing}: {line!r}")
    if not _REC_RE.match(fields["R"]):
        raise CaptionError(f"bad recording id in caption: {line!r}")
    for k in keys[1:]:
        if not _INT_RE.match(fields[k]):
            raise CaptionError(f"non-integer {k} in caption: {line!r}")
    if kind == "A":
        return SegmentAnchor(fields["R"], int(fields["S"]), int(fields["B"]), int(fields["F"]),
                             int(fields["I"]), int(fields["P"]))
    return ClockPair(fields["R"], int(fields["E"]), int(fields["M"]))
