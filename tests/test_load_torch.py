"""The PyTorch adapter with real DataLoader worker processes (skipped without torch)."""
from __future__ import annotations

import numpy as np
import pytest

try:
    import torch
    from torch.utils.data import DataLoader
except ImportError:
    pytest.skip("torch is not installed (optional extra: pip install 'nm-obs-dataset[torch]')",
                allow_module_level=True)

from companion.load import open_dataset
from companion.load.torch import ChunkIterableDataset, FrameDataset
from tests.test_load_support import H, W, frame_number, make_dataset

# Workers are started with "spawn": forking a process that already runs decoder and
# pyarrow threads (as a long test session does) can deadlock or crash the child; the
# same advice is in docs/loader.md.
MP = "spawn"


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    return make_dataset(tmp_path_factory.mktemp("tds") / "root", extra_video=True)


def _check_batch_against_loader(ds, batch):
    for i in range(len(batch["frame"])):
        vid, f = batch["video_id"][i], int(batch["frame"][i])
        img = batch["image"][i].permute(1, 2, 0).numpy()
        assert frame_number(img) == f
        st = ds.action_state(vid, f)
        assert np.array_equal(batch["keys"][i].numpy(), st.keys_multi_hot)
        assert np.array_equal(batch["buttons"][i].numpy(), st.buttons_multi_hot)
        assert np.allclose(batch["mouse_delta_px"][i].numpy(), st.mouse_delta_px)
        assert float(batch["wheel"][i]) == st.wheel and float(batch["wheel_dx"][i]) == st.wheel_dx
        assert batch["focus_title"][i] == (st.focus_title or "")


def test_map_style_dataloader_two_workers(built):
    fd = FrameDataset(built.root)
    assert len(fd) == 66
    dl = DataLoader(fd, batch_size=5, num_workers=2, shuffle=True, multiprocessing_context=MP,
                    generator=torch.Generator().manual_seed(0))
    seen = []
    ds = open_dataset(built.root)
    for batch in dl:
        assert batch["image"].dtype == torch.uint8 and batch["image"].shape[1:] == (3, H, W)
        _check_batch_against_loader(ds, batch)
        seen += list(zip(batch["video_id"], batch["frame"].tolist()))
    assert sorted(seen) == sorted(ds.frame_list())


def test_iterable_dataloader_two_workers_covers_each_frame_once(built):
    it = ChunkIterableDataset(built.root, size=(W, H), shuffle=True, seed=1)
    dl = DataLoader(it, batch_size=None, num_workers=2, multiprocessing_context=MP)
    seen = []
    ds = open_dataset(built.root)
    per_chunk: dict = {}
    for item in dl:
        vid, f = item["video_id"], int(item["frame"])
        assert frame_number(item["image"].permute(1, 2, 0).numpy()) == f
        assert np.array_equal(item["keys"].numpy(), ds.action_state(vid, f).keys_multi_hot)
        ci = ds.chunk_of(vid, f)
        per_chunk.setdefault((vid, ci.chunk_id), []).append(f)
        seen.append((vid, f))
    assert sorted(seen) == sorted(ds.frame_list())
    # frames of a chunk come in order (each chunk decoded once, front to back)
    assert all(v == sorted(v) for v in per_chunk.values())


def test_gray_and_resize_batches(built):
    fd = FrameDataset(built.root, size=(64, 32), format="gray")
    batch = next(iter(DataLoader(fd, batch_size=4, num_workers=0)))
    assert batch["image"].shape == (4, 1, 32, 64)


def test_spawned_workers(built):
    """macOS and Windows start workers with spawn: the dataset pickles and reopens."""
    fd = FrameDataset(built.root, size=(96, 48))
    dl = DataLoader(torch.utils.data.Subset(fd, [0, 21, 40, 65]), batch_size=2, num_workers=2,
                    multiprocessing_context="spawn")
    frames = torch.cat([b["frame"] for b in dl]).tolist()
    assert frames == [fd.key(i)[1] for i in (0, 21, 40, 65)]


def _chunk_order(ds, items):
    """(video_id, chunk_id) in the order their first frame arrived."""
    order = []
    for vid, f in items:
        key = (vid, ds.chunk_of(vid, f).chunk_id)
        if key not in order:
            order.append(key)
    return order


def test_set_epoch_changes_the_chunk_order(built):
    """shuffle=True reorders chunks per epoch (seed + epoch), reproducibly; every epoch
    still yields every frame once; unshuffled, set_epoch changes nothing. With 2 workers
    (spawned after set_epoch: each gets the dataset with the new epoch) worker w takes
    chunks w, w+2, ... of that epoch's order."""
    ds = open_dataset(built.root)
    it = ChunkIterableDataset(built.root, size=(W // 2, H // 2), shuffle=True, seed=1)
    orders = []
    for epoch in range(4):
        it.set_epoch(epoch)
        items = [(x["video_id"], int(x["frame"])) for x in it]
        assert sorted(items) == sorted(ds.frame_list())
        orders.append(_chunk_order(ds, items))
    assert len(set(map(tuple, orders))) >= 2, orders     # the order changes with the epoch
    it.set_epoch(2)
    assert _chunk_order(ds, [(x["video_id"], int(x["frame"])) for x in it]) == orders[2]
    plain = ChunkIterableDataset(built.root, size=(W // 2, H // 2))
    plain.set_epoch(3)
    assert _chunk_order(ds, [(x["video_id"], int(x["frame"])) for x in plain]) == \
        [(c.video_id, c.chunk_id) for c in ds.chunks()]
    # 2 workers at epoch 3: each worker's chunks in that epoch's order, interleaved
    it.set_epoch(3)
    dl = DataLoader(it, batch_size=None, num_workers=2, multiprocessing_context=MP)
    got = [(x["video_id"], int(x["frame"])) for x in dl]
    assert sorted(got) == sorted(ds.frame_list())
    per_worker = {0: [], 1: []}
    for k, key in enumerate(orders[3]):
        per_worker[k % 2].append(key)
    seen = _chunk_order(ds, got)
    for w in (0, 1):
        assert [c for c in seen if c in per_worker[w]] == per_worker[w]
