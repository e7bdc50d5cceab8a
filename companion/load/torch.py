"""PyTorch adapters for a dataset (optional extra: ``pip install 'nm-obs-dataset[torch]'``).

Nothing else in ``companion`` imports this module, so torch is only loaded when you use
it; without torch, importing it raises ``EnvProblem`` with the install command.

- :class:`FrameDataset` -- map-style over every ``(video_id, frame)``: random access,
  shuffle with a sampler. Each item decodes one frame (seek to the keyframe, decode
  forward; consecutive indices continue the open decoder).
- :class:`ChunkIterableDataset` -- iterates chunks, each decoded once front to back;
  chunks are split across DataLoader workers (and DDP ranks), optionally shuffled per
  epoch. The fast way through a whole dataset.

Use ``DataLoader(..., multiprocessing_context="spawn")`` (or ``"forkserver"``) with
workers: forking a process that already runs FFmpeg or pyarrow threads can deadlock.

Items are dicts of tensors (collated by the default ``collate_fn``):

====================  ==========================  =====================================
key                   dtype / shape               meaning
====================  ==========================  =====================================
``image``             uint8 (C, H, W)             C = 3 (rgb24) or 1 (gray)
``keys``              uint8 (256,)                held keys, multi-hot over Windows VK
``keys_pressed``      uint8 (256,)                key-downs since the previous frame
``buttons``           uint8 (5,)                  held mouse buttons (DOM numbering)
``buttons_pressed``   uint8 (5,)                  button presses since previous frame
``mouse_px``          float32 (2,)                cursor x, y in pixels (NaN unknown)
``mouse_norm``        float32 (2,)                cursor x, y as 0-1 of the frame
``mouse_delta_px``    float32 (2,)                cursor movement since previous frame
``wheel``             float32 ()                  vertical wheel steps since previous frame
``wheel_dx``          float32 ()                  horizontal wheel steps (+ = right)
``frame``             int64 ()                    video frame index
``t_ns``              int64 ()                    capture time, epoch ns
``video_id``          str                         (collates to a list of str)
``focus_title``       str                         focused window title ("" unknown)
====================  ==========================  =====================================
"""
from __future__ import annotations

import random

import numpy as np

from companion.util.errors import EnvProblem

try:
    import torch
    from torch.utils.data import Dataset as _TorchDataset
    from torch.utils.data import IterableDataset as _TorchIterable
    from torch.utils.data import get_worker_info
except ImportError:  # pragma: no cover - exercised only without torch
    raise EnvProblem("companion.load.torch needs PyTorch: pip install 'nm-obs-dataset[torch]' "
                     "(or any torch build)") from None

from .dataset import Dataset, Sample, open_dataset


def sample_to_tensors(s: Sample) -> dict:
    """A :class:`~companion.load.dataset.Sample` as the dict of tensors described above."""
    img = s.image
    img = img[None] if img.ndim == 2 else np.ascontiguousarray(img.transpose(2, 0, 1))
    a = s.action.as_arrays()
    out = {"image": torch.from_numpy(np.ascontiguousarray(img))}
    for k, v in a.items():
        out[k] = torch.from_numpy(np.array(v))
    out["frame"] = torch.tensor(s.frame, dtype=torch.int64)
    out["t_ns"] = torch.tensor(s.t_ns, dtype=torch.int64)
    out["video_id"] = s.video_id
    out["focus_title"] = s.action.focus_title or ""
    return out


def _as_dataset(root_or_ds, threads: int, cache_size: int) -> Dataset:
    if isinstance(root_or_ds, Dataset):
        return root_or_ds
    return open_dataset(root_or_ds, cache_size=cache_size, threads=threads)


class FrameDataset(_TorchDataset):
    """Map-style dataset over every frame, in index order.

    ``root``: dataset path/URL or an opened :class:`Dataset`. ``size``: optional
    (width, height) resize; ``format``: "rgb24" or "gray". ``transform``: called on each
    item dict. ``threads``: decoder threads per open chunk (1 suits DataLoader workers).
    """

    def __init__(self, root, size: tuple[int, int] | None = None, format: str = "rgb24",
                 transform=None, threads: int = 1, cache_size: int = 4):
        self.ds = _as_dataset(root, threads, cache_size)
        self.size, self.format, self.transform = size, format, transform
        vids = self.ds.videos()
        pairs = self.ds.frame_list()
        # numpy arrays, not a list of tuples: no copy-on-read page faults in forked workers
        self._vid_names = vids
        vidx = {v: i for i, v in enumerate(vids)}
        self._vid = np.fromiter((vidx[v] for v, _ in pairs), np.int32, len(pairs))
        self._frame = np.fromiter((f for _, f in pairs), np.int64, len(pairs))

    def __len__(self) -> int:
        return len(self._frame)

    def key(self, i: int) -> tuple[str, int]:
        """``(video_id, frame)`` of item ``i``."""
        return self._vid_names[int(self._vid[i])], int(self._frame[i])

    def __getitem__(self, i: int) -> dict:
        if i < 0:
            i += len(self)
        if not 0 <= i < len(self):
            raise IndexError(i)
        vid, f = self.key(i)
        item = sample_to_tensors(self.ds.get(vid, f, self.size, self.format))
        return self.transform(item) if self.transform else item


class ChunkIterableDataset(_TorchIterable):
    """Every frame of every chunk, chunk by chunk; chunks split over workers and ranks.

    Worker ``w`` of ``W`` (times DDP rank ``r`` of ``R``) takes chunks ``k`` with
    ``k % (W*R) == r*W + w`` of the (optionally shuffled) chunk list, so every frame is
    yielded exactly once per epoch across all workers. ``shuffle`` reorders chunks with
    ``seed + epoch`` (call :meth:`set_epoch`); frames inside a chunk stay in order, which
    is what makes this fast (each chunk decoded once).
    """

    def __init__(self, root, size: tuple[int, int] | None = None, format: str = "rgb24",
                 transform=None, shuffle: bool = False, seed: int = 0,
                 rank: int | None = None, world_size: int | None = None, threads: int = 1,
                 cache_size: int = 2):
        self.ds = _as_dataset(root, threads, cache_size)
        self.size, self.format, self.transform = size, format, transform
        self.shuffle, self.seed, self.epoch = shuffle, seed, 0
        self.rank, self.world_size = rank, world_size

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.ds)

    def _my_chunks(self):
        chunks = self.ds.chunks()
        if self.shuffle:
            random.Random(self.seed + self.epoch).shuffle(chunks)
        rank, world = self.rank, self.world_size
        if rank is None or world is None:
            dist = torch.distributed
            if dist.is_available() and dist.is_initialized():
                rank, world = dist.get_rank(), dist.get_world_size()
            else:
                rank, world = 0, 1
        wi = get_worker_info()
        wid, nw = (wi.id, wi.num_workers) if wi is not None else (0, 1)
        part, parts = rank * nw + wid, world * nw
        return chunks[part::parts]

    def __iter__(self):
        for ci in self._my_chunks():
            ch = self.ds.chunk(ci.video_id, ci.chunk_id)
            for s in ch.frames(self.size, self.format):
                item = sample_to_tensors(s)
                yield self.transform(item) if self.transform else item

