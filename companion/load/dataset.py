"""Read a seed-000 dataset: chunk index, frame-accurate frames, per-frame action state.

Layout (``docs/contracts``; ``companion/contract/schemas.py``)::

    <root>/dataset.json
    <root>/index.parquet                                  CHUNK_INDEX_SCHEMA, a row per chunk
    <root>/video/SHARD_xxxx/<vid>/<vid>_chunk_xxxx.mp4     exactly the chunk's frames
    <root>/actions/SHARD_xxxx/<vid>/<vid>_chunk_xxxx/{actions_raw,actions_processed}.parquet

Frame numbers in this API are **video** frame indices (``start_frame <= frame <
end_frame`` of the chunk that holds them), the same numbering as ``frame_ref``.
"""
from __future__ import annotations

import json
import os
import posixpath
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from companion.contract.schemas import CHUNK_INDEX_SCHEMA
from companion.contract.version import FORMAT_VERSION
from companion.util.errors import BadInput

from .actions import ActionState, ActionTrack, EventColumns, build_track, events_from_actions
from .decode import DecoderPool, FrameIndex, to_array


# the actions columns the per-frame state needs (the rest is not read for it)
_ACTION_COLUMNS = ["t_ns", "frame_ref", "event_type", "state", "key", "code", "meta", "mouse_x",
                   "mouse_y", "mouse_x_norm", "mouse_y_norm", "mouse_button", "mouse_wheel",
                   "is_valid"]


@dataclass(frozen=True)
class ChunkInfo:
    """One row of ``index.parquet`` (see ``CHUNK_INDEX_SCHEMA``).

    ``start_frame``/``end_frame``: video frame range [start, end). ``fps``: nominal frame
    rate. ``start_t_ns``/``end_t_ns``: epoch ns capture time of start_frame / end_frame.
    Paths are relative to the dataset root.
    """

    video_id: str
    chunk_id: int
    shard: str
    start_frame: int
    end_frame: int
    fps: float
    start_t_ns: int
    end_t_ns: int
    n_events: int
    video_path: str
    actions_dir: str
    audio_path: str | None

    @property
    def n_frames(self) -> int:
        return self.end_frame - self.start_frame


@dataclass
class Sample:
    """One frame and the action state at it.

    ``frame``: video frame index; ``chunk_frame``: index within the chunk file.
    ``pts_s``: presentation time in seconds since the chunk's first frame.
    ``t_ns``: capture time, epoch ns, interpolated on the chunk's capture grid:
    ``start_t_ns + (end_t_ns - start_t_ns) * chunk_frame / n_frames`` (OBS captures on a
    fixed grid, so this is exact up to rounding; clock drift is in start/end). ``image``: uint8 (H, W, 3) for rgb24 or (H, W)
    for gray. ``action``: :class:`~companion.load.actions.ActionState` at this frame.
    """

    video_id: str
    frame: int
    chunk_id: int
    chunk_frame: int
    pts_s: float
    t_ns: int
    image: np.ndarray
    action: ActionState


class _FsOpener:
    """Picklable ``path -> binary file`` for an fsspec filesystem."""

    def __init__(self, fs):
        self.fs = fs

    def __call__(self, path):
        try:
            return self.fs.open(path, "rb")
        except FileNotFoundError:
            raise BadInput(f"missing file: {path}") from None


class Chunk:
    """A handle on one chunk: its frames (decoded once, in order) and its actions."""

    def __init__(self, dataset: "Dataset", info: ChunkInfo):
        self.dataset = dataset
        self.info = info

    def __repr__(self) -> str:
        i = self.info
        return f"Chunk({i.video_id!r}, {i.chunk_id}, frames {i.start_frame}..{i.end_frame})"

    def frame_index(self) -> FrameIndex:
        """pts/keyframes of the chunk file (checked against the index's frame count)."""
        return self.dataset._frame_index(self.info)

    def frames(self, size: tuple[int, int] | None = None, format: str = "rgb24",
               start: int = 0, stop: int | None = None) -> Iterator[Sample]:
        """Samples of chunk frames ``start..stop`` (chunk-relative), decoding each once.
        The chunk's decoder is closed when the iteration reaches the end of the chunk
        (a pass over the data keeps one decoder open, not ``cache_size``)."""
        stop = self.info.n_frames if stop is None else min(stop, self.info.n_frames)
        for j in range(max(0, start), stop):
            yield self.dataset._sample(self.info, j, size, format)
        if stop == self.info.n_frames:
            self.dataset._pool.release(self.dataset._join(self.info.video_path))

    def actions(self, processed: bool = True) -> pa.Table:
        """``actions_processed.parquet`` (or ``actions_raw.parquet``) of this chunk."""
        return self.dataset._read_actions(self.info, processed)

    def metadata(self) -> dict:
        """The chunk's ``metadata.json``."""
        return self.dataset._read_json(self.dataset._join(self.info.actions_dir, "metadata.json"))


class Dataset:
    """An opened dataset. Cheap to pickle: decoders are reopened in each process.

    ``cache_size``: open chunk containers kept per process. ``threads``: decoder threads
    per container: 1 (default) is the most CPU- and memory-efficient and right for
    DataLoader workers; 0 lets FFmpeg use frame threads (faster wall-clock in a single
    process on an idle multi-core machine, ~80 MB more per open 720p decoder).
    """

    def __init__(self, root: str | os.PathLike, fs=None, cache_size: int = 8, threads: int = 1):
        self.fs = fs
        self.root = str(root) if fs is not None else str(Path(root).resolve())
        self._pool = DecoderPool(cache_size, threads, _FsOpener(fs) if fs is not None else None)
        self._tracks: dict[str, ActionTrack] = {}
        self.info = self._load_info()
        self.index = self._load_index()
        self._build_lookup()

    # ---- paths and files -------------------------------------------------------------
    def _join(self, *parts: str) -> str:
        if self.fs is not None:
            return posixpath.join(self.root, *parts)
        return str(Path(self.root, *parts))

    def _exists(self, path: str) -> bool:
        return self.fs.exists(path) if self.fs is not None else os.path.exists(path)

    def _read_json(self, path: str) -> dict:
        try:
            if self.fs is not None:
                with self.fs.open(path, "rb") as f:
                    data = f.read()
            else:
                data = Path(path).read_bytes()
            return json.loads(data)
        except FileNotFoundError:
            raise BadInput(f"missing file: {path}") from None
        except ValueError as e:
            raise BadInput(f"{path}: not valid JSON ({e})") from None

    def _read_parquet(self, path: str, columns=None) -> pa.Table:
        try:
            if self.fs is not None:
                with self.fs.open(path, "rb") as f:
                    pf = pq.ParquetFile(f)
                    cols = None if columns is None else \
                        [c for c in columns if c in pf.schema_arrow.names]
                    return pf.read(columns=cols, use_threads=False)
            pf = pq.ParquetFile(path)
            cols = None if columns is None else [c for c in columns if c in pf.schema_arrow.names]
            # small files: a reader thread pool costs more CPU and memory than it saves
            return pf.read(columns=cols, use_threads=False)
        except FileNotFoundError:
            raise BadInput(f"missing file: {path}") from None
        except (pa.ArrowInvalid, OSError) as e:
            raise BadInput(f"{path}: not a readable Parquet file ({e})") from None

    # ---- index -----------------------------------------------------------------------
    def _load_info(self) -> dict:
        if not self._exists(self._join("index.parquet")):
            what = "does not exist" if not self._exists(self.root) else "has no index.parquet"
            raise BadInput(f"not a dataset: {self.root} {what}")
        path = self._join("dataset.json")
        if not self._exists(path):
            return {}
        info = self._read_json(path)
        if not isinstance(info, dict):
            raise BadInput(f"{path}: not a JSON object")
        ver = str(info.get("format_version", FORMAT_VERSION))
        if ver.split(".")[0] != FORMAT_VERSION.split(".")[0]:
            raise BadInput(f"{path}: format_version {ver} is not readable by this loader "
                           f"(reads {FORMAT_VERSION.split('.')[0]}.x)")
        return info

    def _load_index(self) -> pa.Table:
        t = self._read_parquet(self._join("index.parquet"))
        missing = [n for n in CHUNK_INDEX_SCHEMA.names if n not in t.column_names]
        if missing:
            raise BadInput(f"{self._join('index.parquet')}: not a chunk index "
                           f"(missing columns: {', '.join(missing)})")
        t = t.select(CHUNK_INDEX_SCHEMA.names)
        if t.num_rows == 0:
            raise BadInput(f"{self._join('index.parquet')}: the dataset has no chunks")
        return t

    def _build_lookup(self) -> None:
        rows = self.index.to_pylist()
        infos = [ChunkInfo(**r) for r in rows]
        self._videos: list[str] = []
        self._by_video: dict[str, list[ChunkInfo]] = {}
        for ci in infos:
            if ci.video_id not in self._by_video:
                self._videos.append(ci.video_id)
                self._by_video[ci.video_id] = []
            self._by_video[ci.video_id].append(ci)
        self._starts: dict[str, np.ndarray] = {}
        for vid, lst in self._by_video.items():
            lst.sort(key=lambda c: c.start_frame)
            for a, b in zip(lst, lst[1:]):
                if b.start_frame < a.end_frame:
                    raise BadInput(f"index.parquet: chunks {a.chunk_id} and {b.chunk_id} of "
                                   f"{vid} overlap (frames {b.start_frame} < {a.end_frame})")
            for c in lst:
                if c.end_frame <= c.start_frame:
                    raise BadInput(f"index.parquet: chunk {c.chunk_id} of {vid} is empty")
            self._starts[vid] = np.asarray([c.start_frame for c in lst], np.int64)

    # ---- public listing --------------------------------------------------------------
    def videos(self) -> list[str]:
        """Video ids in index order."""
        return list(self._videos)

    def chunks(self, video_id: str | None = None) -> list[ChunkInfo]:
        """Index rows (all, or of one video), ordered by video then start frame."""
        if video_id is None:
            return [c for v in self._videos for c in self._by_video[v]]
        return list(self._video_chunks(video_id))

    def _video_chunks(self, video_id: str) -> list[ChunkInfo]:
        try:
            return self._by_video[video_id]
        except KeyError:
            raise BadInput(f"no video {video_id!r} in the dataset "
                           f"(has: {', '.join(self._videos[:5])}"
                           f"{', ...' if len(self._videos) > 5 else ''})") from None

    def n_frames(self, video_id: str | None = None) -> int:
        """Frames in the dataset, or in one video."""
        return sum(c.n_frames for c in self.chunks(video_id))

    def __len__(self) -> int:
        return self.n_frames()

    def frame_list(self) -> list[tuple[str, int]]:
        """Every ``(video_id, frame)`` in index order (the map-style dataset's items)."""
        return [(c.video_id, f) for c in self.chunks()
                for f in range(c.start_frame, c.end_frame)]

    def chunk(self, video_id: str, chunk_id: int) -> Chunk:
        for c in self._video_chunks(video_id):
            if c.chunk_id == chunk_id:
                return Chunk(self, c)
        raise BadInput(f"video {video_id!r} has no chunk {chunk_id}")

    def chunk_of(self, video_id: str, frame: int) -> ChunkInfo:
        """The chunk holding video frame ``frame``."""
        lst = self._video_chunks(video_id)
        k = int(np.searchsorted(self._starts[video_id], frame, side="right")) - 1
        if k < 0 or frame >= lst[k].end_frame:
            raise BadInput(f"frame {frame} of {video_id!r} is in no chunk "
                           f"(frames {lst[0].start_frame}..{lst[-1].end_frame - 1})")
        return lst[k]

    def iter_chunks(self, shuffle: bool = False, seed: int | None = None,
                    video_id: str | None = None) -> Iterator[Chunk]:
        """Chunks in index order, or shuffled (reproducibly with ``seed``)."""
        infos = self.chunks(video_id)
        if shuffle:
            random.Random(seed).shuffle(infos)
        for ci in infos:
            yield Chunk(self, ci)

    def iter_frames(self, shuffle: bool = False, seed: int | None = None,
                    size: tuple[int, int] | None = None, format: str = "rgb24",
                    video_id: str | None = None) -> Iterator[Sample]:
        """Every frame, chunk by chunk (chunk order shuffled if asked; each decoded once)."""
        for ch in self.iter_chunks(shuffle, seed, video_id):
            yield from ch.frames(size, format)

    # ---- frames and actions ----------------------------------------------------------
    def get(self, video_id: str, frame: int, size: tuple[int, int] | None = None,
            format: str = "rgb24") -> Sample:
        """Frame ``frame`` of ``video_id``: decoded image and action state.

        ``size``: optional (width, height) to resize to; ``format``: "rgb24" or "gray".
        """
        frame = int(frame)
        ci = self.chunk_of(video_id, frame)
        return self._sample(ci, frame - ci.start_frame, size, format)

    def actions(self, video_id: str) -> ActionTrack:
        """Per-frame action arrays of a whole video (built once per process, cached)."""
        tr = self._tracks.get(video_id)
        if tr is None:
            lst = self._video_chunks(video_id)
            parts: list[EventColumns] = [
                events_from_actions(self._read_actions(c, True, columns=_ACTION_COLUMNS))
                for c in lst]
            tr = build_track(EventColumns.concat(parts), lst[-1].end_frame)
            if len(self._tracks) >= 16:
                self._tracks.pop(next(iter(self._tracks)))
            self._tracks[video_id] = tr
        return tr

    def action_state(self, video_id: str, frame: int) -> ActionState:
        """The action state at a frame, without decoding the image."""
        self.chunk_of(video_id, frame)
        return self.actions(video_id).state(int(frame))

    def _read_actions(self, ci: ChunkInfo, processed: bool, columns=None) -> pa.Table:
        d = self._join(ci.actions_dir)
        name = "actions_processed.parquet" if processed else "actions_raw.parquet"
        path = posixpath.join(d, name) if self.fs is not None else os.path.join(d, name)
        if processed and not self._exists(path):
            # seed 000: actions_processed is optional; fall back to the raw rows
            raw = posixpath.join(d, "actions_raw.parquet") if self.fs is not None \
                else os.path.join(d, "actions_raw.parquet")
            if self._exists(raw):
                path = raw
        if not self._exists(path):
            raise BadInput(f"missing actions file for chunk {ci.chunk_id} of "
                           f"{ci.video_id!r}: {path}")
        return self._read_parquet(path, columns)

    def _video_source(self, ci: ChunkInfo) -> str:
        path = self._join(ci.video_path)
        if self.fs is None and not os.path.exists(path):
            raise BadInput(f"missing chunk video for chunk {ci.chunk_id} of "
                           f"{ci.video_id!r}: {path}")
        return path

    def _frame_index(self, ci: ChunkInfo) -> FrameIndex:
        fi = self._pool.index(self._video_source(ci))
        if len(fi) != ci.n_frames:
            raise BadInput(f"{self._join(ci.video_path)}: has {len(fi)} frames but "
                           f"index.parquet says chunk {ci.chunk_id} has {ci.n_frames}")
        return fi

    def _sample(self, ci: ChunkInfo, j: int, size, format: str) -> Sample:
        fi = self._frame_index(ci)
        fr = self._pool.frame(self._video_source(ci), j)
        img = to_array(fr, format, size)
        off = (int(fi.pts[j]) - int(fi.pts[0])) * fi.time_base
        f = ci.start_frame + j
        t_ns = ci.start_t_ns + (ci.end_t_ns - ci.start_t_ns) * j // ci.n_frames
        return Sample(ci.video_id, f, ci.chunk_id, j, float(off), t_ns, img,
                      self.actions(ci.video_id).state(f))

    def close(self) -> None:
        """Close open decoders (they reopen on next use)."""
        self._pool.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __getstate__(self):
        st = self.__dict__.copy()
        st["_tracks"] = {}
        return st


def open_dataset(root_or_url: str | os.PathLike, cache_size: int = 8, threads: int = 1
                 ) -> Dataset:
    """Open a dataset at a local path or an fsspec URL (``s3://``, ``gs://``, ``file://``...;
    needs the ``fsspec`` extra). Raises ``BadInput`` when it is not a dataset.

    ``cache_size``: open chunk files kept per process; ``threads``: decoder threads per
    file (see :class:`Dataset`)."""
    s = os.fspath(root_or_url)
    if isinstance(s, str) and "://" in s:
        try:
            import fsspec
        except ImportError:
            raise BadInput(f"{s}: opening URLs needs fsspec (pip install "
                           f"'nm-obs-dataset[fsspec]')") from None
        try:
            fs, path = fsspec.core.url_to_fs(s)
        except (ValueError, ImportError) as e:
            raise BadInput(f"{s}: cannot open this URL ({e})") from None
        return Dataset(path.rstrip("/") or "/", fs=fs, cache_size=cache_size, threads=threads)
    return Dataset(s, cache_size=cache_size, threads=threads)
