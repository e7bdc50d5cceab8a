"""Pure chunk planning: which frame ranges become which dataset chunks, and how.

A chunk is an exact half-open range of presentation-order frame indices
``[start_frame, end_frame)``. Every chunk but the last holds exactly
``frames_per_chunk(fps, chunk_seconds)`` frames; the last one holds the rest.

Whether a chunk can be cut by stream copy depends only on keyframes: if its first
frame is a keyframe and its end is a keyframe (the next chunk's first frame) or the
end of the stream, the packets whose pts fall inside the range decode on their own
to exactly those frames (closed GOPs; ``video.py`` detects open GOPs while copying
and falls back to re-encoding). Otherwise the range is decoded and re-encoded.
No I/O here.
"""
from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from typing import Sequence

import numpy as np

from companion.util.errors import BadInput


@dataclass(frozen=True)
class ChunkPlan:
    """One chunk: frames ``[start_frame, end_frame)`` of the video (presentation order).

    ``copy`` is True when the range can be cut by stream copy (starts on a keyframe,
    ends on a keyframe or at the end of the stream); False means decode + re-encode.
    """

    chunk_id: int
    start_frame: int
    end_frame: int
    copy: bool

    @property
    def n_frames(self) -> int:
        return self.end_frame - self.start_frame


def frames_per_chunk(fps: Fraction | float, chunk_seconds: float) -> int:
    """Frames in a full chunk: ``round(chunk_seconds * fps)`` (at least 1).

    ``fps`` is frames per second (a Fraction such as 60000/1001 is used exactly).
    Raises BadInput for a non-positive fps or chunk length.
    """
    try:
        fps_f = Fraction(fps)
    except (TypeError, ValueError):
        raise BadInput(f"invalid frame rate {fps!r}") from None
    if fps_f <= 0:
        raise BadInput(f"frame rate must be positive, got {fps}")
    if not (chunk_seconds > 0) or chunk_seconds != chunk_seconds or chunk_seconds == float("inf"):
        raise BadInput(f"--chunk-seconds must be a positive number, got {chunk_seconds}")
    n = round(Fraction(chunk_seconds) * fps_f)
    return max(1, int(n))


def plan_chunks(n_frames: int, fps: Fraction | float, keyframe: Sequence[bool] | np.ndarray,
                chunk_seconds: float = 20.0) -> list[ChunkPlan]:
    """Plan the chunks of a video of ``n_frames`` frames.

    ``keyframe[i]`` says whether presentation-order frame ``i`` is a keyframe (length
    ``n_frames``). Returns chunks in order, covering every frame exactly once.
    """
    if n_frames < 0:
        raise BadInput(f"negative frame count {n_frames}")
    kf = np.asarray(keyframe, dtype=bool)
    if kf.shape != (n_frames,):
        raise BadInput(f"keyframe flags cover {kf.shape[0] if kf.ndim else 0} frames, "
                       f"expected {n_frames}")
    size = frames_per_chunk(fps, chunk_seconds)
    plans: list[ChunkPlan] = []
    for cid, start in enumerate(range(0, n_frames, size)):
        end = min(start + size, n_frames)
        copy = bool(kf[start]) and (end == n_frames or bool(kf[end]))
        plans.append(ChunkPlan(cid, start, end, copy))
    return plans
