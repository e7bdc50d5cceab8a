"""Dataset root layout: paths, shard assignment, the root's ``dataset.json``, locks.

::

    ROOT/
      dataset.json                       format_version, num_shards, created_at (written once)
      index.parquet                      CHUNK_INDEX_SCHEMA, every chunk of every video
      index/<video_id>.parquet           the index rows of one video (source of index.parquet)
      index/<video_id>.xxh128            xxh128sum lines of every chunk file of that video
                                         (or .sha256: sha256sum lines; util.checksum)
      integrity.sha256                   sha256sum lines of dataset.json, index.parquet, index/*
      actions/SHARD_xxxx/<video_id>/<video_id>_chunk_xxxx/{actions_raw,actions_processed}.parquet
                                                                          + metadata.json
      video/SHARD_xxxx/<video_id>/<video_id>_chunk_xxxx.mp4
      audio/SHARD_xxxx/<video_id>/<video_id>_chunk_xxxx.wav   (when the video has audio)
      .staging/  .locks/                 work areas (hidden; readers ignore dot-entries)

A video's shard is ``crc32(video_id) % num_shards`` (zlib CRC-32 of the UTF-8 id), so it
never moves and concurrent writers need no coordination to agree on it. ``num_shards``
is fixed in ``dataset.json`` by whichever run creates the root first (created with an
exclusive hard link, so two runs cannot both create it). All paths stored in metadata
and the index are POSIX paths relative to ROOT. Pure path logic plus small file helpers.
"""
from __future__ import annotations

import contextlib
import datetime as _dt
import json
import os
import re
import tempfile
import zlib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Iterator

from companion.contract.version import FORMAT_VERSION
from companion.util.atomic import current_umask
from companion.util.errors import BadInput, EnvProblem

DATASET_META = "dataset.json"
INDEX_FILE = "index.parquet"
INDEX_PARTS = "index"
ROOT_CHECKSUMS = "integrity.sha256"
STAGING = ".staging"
LOCKS = ".locks"
TOP_DIRS = ("actions", "video", "audio")
DEFAULT_NUM_SHARDS = 16
MAX_NUM_SHARDS = 10_000           # SHARD_xxxx has four digits

_VIDEO_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


def validate_video_id(video_id: str) -> str:
    """Return ``video_id`` if it is safe as a file name in every layout position.

    Allowed: 1-128 characters of ``A-Z a-z 0-9 . _ -``, starting with a letter or digit
    (so no hidden names, no path separators, no ``..``)."""
    if not isinstance(video_id, str) or not _VIDEO_ID_RE.match(video_id):
        raise BadInput(f"invalid video id {video_id!r}: use 1-128 letters, digits, '.', '_' "
                       f"or '-', starting with a letter or digit")
    return video_id


def shard_of(video_id: str, num_shards: int) -> int:
    """Deterministic shard number of a video: ``crc32(utf8(video_id)) % num_shards``."""
    return zlib.crc32(video_id.encode("utf-8")) % num_shards


def shard_name(shard: int) -> str:
    return f"SHARD_{shard:04d}"


def chunk_name(video_id: str, chunk_id: int) -> str:
    return f"{video_id}_chunk_{chunk_id:04d}"


@dataclass(frozen=True)
class VideoLayout:
    """Where one video's files live, as POSIX paths relative to the dataset root."""

    video_id: str
    shard: str   # SHARD_xxxx

    @property
    def actions_dir(self) -> PurePosixPath:
        return PurePosixPath("actions", self.shard, self.video_id)

    @property
    def video_dir(self) -> PurePosixPath:
        return PurePosixPath("video", self.shard, self.video_id)

    @property
    def audio_dir(self) -> PurePosixPath:
        return PurePosixPath("audio", self.shard, self.video_id)

    @property
    def index_part(self) -> PurePosixPath:
        return PurePosixPath(INDEX_PARTS, f"{self.video_id}.parquet")

    def index_checksums(self, algo: str) -> PurePosixPath:
        """``index/<video_id>.<algo>``: ``xxh128sum`` / ``sha256sum`` lines of every chunk
        file of the video (``util.checksum``)."""
        return PurePosixPath(INDEX_PARTS, f"{self.video_id}.{algo}")

    @property
    def all_index_checksums(self) -> list[PurePosixPath]:
        """The video's checksum file under each algorithm (at most one exists)."""
        from companion.util.checksum import ALGORITHMS
        return [self.index_checksums(a) for a in ALGORITHMS]

    def chunk_actions(self, chunk_id: int) -> PurePosixPath:
        return self.actions_dir / chunk_name(self.video_id, chunk_id)

    def chunk_video(self, chunk_id: int) -> PurePosixPath:
        return self.video_dir / f"{chunk_name(self.video_id, chunk_id)}.mp4"

    def chunk_audio(self, chunk_id: int) -> PurePosixPath:
        return self.audio_dir / f"{chunk_name(self.video_id, chunk_id)}.wav"


def layout_for(video_id: str, num_shards: int) -> VideoLayout:
    validate_video_id(video_id)
    return VideoLayout(video_id, shard_name(shard_of(video_id, num_shards)))


def _now_iso() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


def read_dataset_meta(root: Path) -> dict:
    """Parse ``ROOT/dataset.json``; BadInput if unreadable, invalid or of another major."""
    from companion.contract.metadata import check_format_version, loads_json_strict
    path = Path(root) / DATASET_META
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise BadInput(f"{path}: unreadable dataset metadata ({e.strerror})") from None
    meta = loads_json_strict(raw, str(path))   # BadInput for bad UTF-8/JSON/deep nesting
    if not isinstance(meta, dict):
        raise BadInput(f"{path}: dataset metadata is not a JSON object")
    why = check_format_version(meta.get("format_version"))
    if why:
        raise BadInput(f"{path}: {why}")
    n = meta.get("num_shards")
    if not isinstance(n, int) or isinstance(n, bool) or not 1 <= n <= MAX_NUM_SHARDS:
        raise BadInput(f"{path}: num_shards must be an integer 1..{MAX_NUM_SHARDS}, got {n!r}")
    return meta


def check_dataset_root(root: Path, writable: bool = False) -> None:
    """Raise unless ``root`` is a dataset root or can become one: a folder holding
    ``dataset.json``, an empty or missing folder, or one holding only dataset parts or
    work files (another run may be creating it right now). ``writable``: also refuse
    (EnvProblem) a root, or the nearest existing folder above a missing one, that cannot
    be written (permissions, read-only file system). Reads nothing but names."""
    root = Path(root)
    if root.exists() and not root.is_dir():
        raise BadInput(f"dataset root {root} exists and is not a directory")
    if root.exists() and not (root / DATASET_META).exists():
        # dot-names are work files (another run may be creating this root right now,
        # and may have linked its dataset.json in since the check above)
        foreign = [p.name for p in root.iterdir() if not p.name.startswith(".")
                   and p.name not in (*TOP_DIRS, INDEX_PARTS, INDEX_FILE, ROOT_CHECKSUMS,
                                      DATASET_META)]
        if foreign:
            raise BadInput(f"{root} is not empty and has no {DATASET_META}: not a dataset "
                           f"root (found {sorted(foreign)[0]!r}); choose an empty or new folder")
    if writable:
        d = root.absolute()
        while not d.exists() and d != d.parent:
            d = d.parent
        if not d.is_dir():
            raise BadInput(f"cannot create dataset root {root}: {d} is not a directory")
        if not os.access(d, os.W_OK | os.X_OK):
            why = "read-only file system" if _read_only_fs(d) else "permission denied"
            raise EnvProblem(f"cannot write the dataset root {root}: {d} is not writable ({why})")


def _read_only_fs(d: Path) -> bool:
    try:
        return bool(os.statvfs(d).f_flag & getattr(os, "ST_RDONLY", 1))
    except (OSError, AttributeError):     # no statvfs (Windows)
        return False


def ensure_dataset(root: Path, num_shards: int | None = None,
                   chunk_seconds: float | None = None) -> dict:
    """Open or create the dataset root ``root`` and return its ``dataset.json`` content.

    Creating: ``dataset.json`` is written to a temp file and hard-linked into place, which
    fails if another run created it first (then theirs is used). Refuses a non-empty
    directory that is not a dataset root, and a ``num_shards`` that contradicts the root.
    """
    root = Path(root)
    if num_shards is not None and not 1 <= num_shards <= MAX_NUM_SHARDS:
        raise BadInput(f"num_shards must be 1..{MAX_NUM_SHARDS}, got {num_shards}")
    check_dataset_root(root)
    path = root / DATASET_META
    if not path.exists():
        try:
            root.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise EnvProblem(f"cannot create dataset root {root}: {e.strerror}") from None
        meta = {"format_version": FORMAT_VERSION, "num_shards": num_shards or DEFAULT_NUM_SHARDS,
                "created_at": _now_iso(), "layout": "seed-000 sharded chunks",
                "shard_rule": "crc32(utf8(video_id)) % num_shards"}
        if chunk_seconds is not None:
            meta["chunk_seconds"] = chunk_seconds
        fd, tmp = tempfile.mkstemp(prefix=f".{DATASET_META}.", dir=root)
        try:
            os.chmod(tmp, 0o666 & ~current_umask())   # mkstemp's 0600, as every other file gets
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump(meta, f, indent=2, allow_nan=False)
                f.write("\n")
                f.flush()
                os.fsync(f.fileno())
            try:
                os.link(tmp, path)
            except FileExistsError:
                pass          # another run created it first: use theirs
        except OSError as e:
            raise EnvProblem(f"cannot write {path}: {e.strerror}") from None
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
    meta = read_dataset_meta(root)
    if num_shards is not None and meta["num_shards"] != num_shards:
        raise BadInput(f"{path} fixes num_shards={meta['num_shards']}; cannot write with "
                       f"num_shards={num_shards}")
    return meta


def _lock_fd(fd: int) -> None:
    try:
        import fcntl
    except ImportError:               # Windows: lock the first byte, retrying while busy
        import msvcrt
        import time
        while True:
            try:
                msvcrt.locking(fd, msvcrt.LK_LOCK, 1)
                return
            except OSError:
                time.sleep(0.05)
    fcntl.flock(fd, fcntl.LOCK_EX)


def _unlock_fd(fd: int) -> None:
    try:
        import fcntl
    except ImportError:
        import msvcrt
        os.lseek(fd, 0, os.SEEK_SET)
        msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)
        return
    fcntl.flock(fd, fcntl.LOCK_UN)


@contextlib.contextmanager
def locked(root: Path, name: str) -> Iterator[None]:
    """Hold an exclusive lock on ``ROOT/.locks/<name>.lock`` (blocking; ``fcntl.flock``
    on POSIX, ``msvcrt.locking`` on Windows). Released when the process dies."""
    d = Path(root) / LOCKS
    d.mkdir(parents=True, exist_ok=True)
    fd = os.open(d / f"{name}.lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        _lock_fd(fd)
        try:
            yield
        finally:
            _unlock_fd(fd)
    finally:
        os.close(fd)
