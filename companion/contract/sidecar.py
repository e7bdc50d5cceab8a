"""The anchor sidecar: ``<recording stem>.anchors.jsonl`` written by the OBS script.

One JSON object per line, ``kind`` first. Kinds (see docs/contracts/captions-and-sidecar.md):

- ``header``: caption_version, recording_id, script_version, obs_version,
  fps_num, fps_den, interval_ns, base/output width and height, recording_path,
  started_epoch_ns, started_mono_ns.
- ``segment``: the SegmentAnchor fields (segment, pts_base, frame_ns, interval_ns,
  pause_offset_ns) plus epoch_ns/mono_ns read in the same tick, and (script 1.2.0+)
  obs_pause_offset_ns, OBS's own paused total (``align.anchors.obs_pause_offsets``).
- ``clock``: epoch_ns, mono_ns (about one per second while recording).
- ``pause`` / ``unpause``: the pause edge on the frame grid (``edge_ns``), the signal
  time and margin, frames before the pause / cumulative paused time.
- ``stopping``: ``signal_mono_ns`` from the output's ``stopping`` signal (pins the start
  from the end, see ``align.timeline.start_from_stop``).
- ``stop``: total_frames, lagged_frames (OBS's lifetime total), the recording's own
  counts (script 1.1.0: recording_lagged_frames, recording_rendered_frames,
  recording_output_dropped_frames, counters_end_at, counters_at_end), tick_cost_ns (mean
  and max per frame), epoch_ns, mono_ns. The ``header`` carries counters_at_start.
  Fields and meanings: docs/contracts/captions-and-sidecar.md.

A reader must ignore kinds it does not know and a torn last line.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from ..util.errors import BadInput
from .captions import ClockPair, SegmentAnchor

SIDECAR_SUFFIX = ".anchors.jsonl"


def sidecar_path_for(recording: str | Path) -> Path:
    p = Path(recording)
    return p.with_name(p.stem + SIDECAR_SUFFIX)


@dataclass
class Sidecar:
    header: dict = field(default_factory=dict)
    segments: list[SegmentAnchor] = field(default_factory=list)
    clocks: list[ClockPair] = field(default_factory=list)
    stop: dict | None = None
    records: list[dict] = field(default_factory=list)
    torn_tail: bool = False

    @property
    def recording_id(self) -> str | None:
        return self.header.get("recording_id")


def parse_sidecar_lines(lines: list[str], source: str = "sidecar") -> Sidecar:
    sc = Sidecar()
    n = len(lines)
    for i, raw in enumerate(lines):
        if not raw.strip():
            continue
        try:
            rec = json.loads(raw)
            if not isinstance(rec, dict):
                raise ValueError("not an object")
        except ValueError:
            if i == n - 1:
                sc.torn_tail = True
                break
            raise BadInput(f"{source}: line {i + 1} is not valid JSON")
        sc.records.append(rec)
        kind = rec.get("kind")
        try:
            if kind == "header":
                sc.header = rec
            elif kind == "segment":
                sc.segments.append(SegmentAnchor(
                    str(rec.get("recording_id") or sc.header.get("recording_id", "")),
                    int(rec["segment"]), int(rec["pts_base"]), int(rec["frame_ns"]),
                    int(rec["interval_ns"]), int(rec.get("pause_offset_ns", 0))))
            elif kind == "clock":
                sc.clocks.append(ClockPair(str(sc.header.get("recording_id", "")),
                                           int(rec["epoch_ns"]), int(rec["mono_ns"])))
            elif kind == "stop":
                sc.stop = rec
        except (KeyError, TypeError, ValueError, OverflowError):
            raise BadInput(f"{source}: line {i + 1} is a malformed {kind!r} record")
    return sc


def read_sidecar(path: str | Path) -> Sidecar:
    path = Path(path)
    try:
        text = path.read_bytes().decode("utf-8", errors="replace")
    except OSError as e:
        raise BadInput(f"cannot read sidecar {path}: {e.strerror}")
    return parse_sidecar_lines(text.split("\n"), source=str(path))
