"""Every Parquet schema of the project, defined once. Documented in docs/contracts/.

Naming rule where seeds disagree (docs/contracts/README.md, "Seed conflicts"):
events.parquet keeps seed 001's names with seed 001's meanings and adds seed 000's
fields under names that cannot be confused (``mouse_x_px``, ``mouse_x_norm``,
``button_index``, ``wheel_dx``/``wheel_dy``); actions_*.parquet keep seed 000's names
with seed 000's meanings.
"""
from __future__ import annotations

import pyarrow as pa

from .version import FORMAT_VERSION

_META = {b"format_version": FORMAT_VERSION.encode()}

# frames.parquet: one row per video frame, in presentation order.
FRAMES_SCHEMA = pa.schema([
    pa.field("frame_idx", pa.int64(), nullable=False),   # 0-based presentation index (rank in the file)
    pa.field("slot", pa.int64(), nullable=False),        # OBS frame-grid slot: round(pts_ns / interval); gaps = frames OBS left out
    pa.field("pts", pa.int64(), nullable=False),         # container pts (stream time_base)
    pa.field("pts_ns", pa.int64(), nullable=False),      # pts converted to ns from stream start
    pa.field("mono_ns", pa.int64()),                     # OBS monotonic capture time (null: no OBS anchors)
    pa.field("t_ns", pa.int64(), nullable=False),        # epoch ns capture time (clock fit)
    pa.field("segment", pa.int32(), nullable=False),     # recording segment (pauses split)
    pa.field("keyframe", pa.bool_(), nullable=False),
], metadata=_META)

# events.parquet: seed 001 columns first, then seed 000 fields under distinct names.
EVENTS_SCHEMA = pa.schema([
    pa.field("t_ns", pa.int64(), nullable=False),        # epoch ns (companion wall clock)
    pa.field("event_type", pa.string(), nullable=False), # key_down key_up mouse_move mouse_click wheel focus
    pa.field("key_code", pa.int32()),                    # Windows virtual-key code (all OSes)
    pa.field("mouse_x", pa.float32()),                   # 0-1 relative to the active window
    pa.field("mouse_y", pa.float32()),
    pa.field("mouse_button", pa.string()),               # left right middle x1 x2
    pa.field("delta", pa.float32()),                     # wheel: vertical scroll steps
    pa.field("frame_ref", pa.int64()),                   # frame on screen at t_ns
    pa.field("window_id", pa.string()),
    pa.field("session_id", pa.string(), nullable=False),
    pa.field("hash", pa.string(), nullable=False),       # sha256 hex of the source JSONL line
    pa.field("metadata", pa.map_(pa.string(), pa.string())),
    # seed 000 fields
    pa.field("mono_ns", pa.int64()),                     # t_ns on OBS's monotonic clock
    pa.field("source", pa.string(), nullable=False),     # keyboard mouse window
    pa.field("state", pa.string()),                      # pressed released (keys, buttons)
    pa.field("key", pa.string()),                        # DOM KeyboardEvent.key style
    pa.field("code", pa.string()),                       # DOM KeyboardEvent.code style
    pa.field("mouse_x_px", pa.float32()),                # absolute screen pixels
    pa.field("mouse_y_px", pa.float32()),
    pa.field("mouse_x_norm", pa.float32()),              # 0-1 relative to the video frame
    pa.field("mouse_y_norm", pa.float32()),
    pa.field("button_index", pa.int32()),                # DOM numbering 0 left 1 middle 2 right
    pa.field("wheel_dx", pa.float32()),
    pa.field("wheel_dy", pa.float32()),
], metadata=_META)

# actions_raw.parquet (seed 000), one row per event of the chunk.
ACTIONS_RAW_SCHEMA = pa.schema([
    pa.field("timestamp_ms", pa.int64(), nullable=False),  # ms since the chunk's first frame
    pa.field("frame_idx", pa.int64()),                     # frame index within the chunk
    pa.field("source", pa.string(), nullable=False),       # keyboard mouse (window: focus rows)
    pa.field("event_type", pa.string(), nullable=False),   # keydown keyup mousemove mousedown mouseup wheel focus
    pa.field("state", pa.string()),                        # pressed released held
    pa.field("key", pa.string()),
    pa.field("code", pa.string()),
    pa.field("mouse_x", pa.float32()),                     # absolute pixels (seed 000 meaning)
    pa.field("mouse_y", pa.float32()),
    pa.field("mouse_x_norm", pa.float32()),                # 0-1 of the video resolution
    pa.field("mouse_y_norm", pa.float32()),
    pa.field("mouse_wheel", pa.float32()),
    pa.field("mouse_button", pa.int32()),                  # 0/1/2 (seed 000 meaning)
    pa.field("meta", pa.string()),                         # JSON: modifiers, window, vk
    pa.field("t_ns", pa.int64(), nullable=False),          # absolute epoch ns (exact)
    pa.field("frame_ref", pa.int64()),                     # frame index in the whole video
], metadata=_META)

ACTIONS_PROCESSED_SCHEMA = pa.schema(list(ACTIONS_RAW_SCHEMA) + [
    pa.field("is_valid", pa.bool_(), nullable=False),
    pa.field("confidence", pa.float32(), nullable=False),
    pa.field("notes", pa.string()),
], metadata=_META)

# index.parquet at the dataset root: one row per chunk of every video.
CHUNK_INDEX_SCHEMA = pa.schema([
    pa.field("video_id", pa.string(), nullable=False),
    pa.field("chunk_id", pa.int32(), nullable=False),
    pa.field("shard", pa.string(), nullable=False),         # SHARD_xxxx
    pa.field("start_frame", pa.int64(), nullable=False),    # inclusive, video frame index
    pa.field("end_frame", pa.int64(), nullable=False),      # exclusive
    pa.field("fps", pa.float64(), nullable=False),
    pa.field("start_t_ns", pa.int64(), nullable=False),
    pa.field("end_t_ns", pa.int64(), nullable=False),       # capture time of end_frame (exclusive)
    pa.field("n_events", pa.int64(), nullable=False),
    pa.field("video_path", pa.string(), nullable=False),    # relative to the dataset root
    pa.field("actions_dir", pa.string(), nullable=False),
    pa.field("audio_path", pa.string()),
], metadata=_META)

# Columns whose values are (nearly) all distinct: dictionary encoding and min/max
# statistics cost time and buy nothing there.
_UNIQUE_COLUMNS = {"hash"}
# Timestamps and frame numbers: a few rows per value at most, so a dictionary outgrows
# its page and the writer falls back to plain encoding after paying for it (writing 1M
# events took 0.05-0.15 s longer). Their statistics stay: readers skip row groups by time.
_NO_DICTIONARY = _UNIQUE_COLUMNS | {"t_ns", "mono_ns", "frame_ref"}


def parquet_write_options(schema: pa.Schema) -> dict:
    """Keyword arguments for ``pyarrow.parquet.write_table`` used for every table we
    write: ZSTD level 1 (seed 001 allows Snappy or ZSTD; level 1 is as small as the
    default level here and twice as fast), no dictionary/statistics on unique columns,
    no dictionary on timestamps and frame numbers."""
    return {"compression": "zstd", "compression_level": 1,
            "use_dictionary": [n for n in schema.names if n not in _NO_DICTIONARY],
            "write_statistics": [n for n in schema.names if n not in _UNIQUE_COLUMNS]}
