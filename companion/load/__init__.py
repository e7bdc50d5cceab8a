"""Ready for training: read a dataset (frames + per-frame action state), a PyTorch
adapter (``companion.load.torch``), and previews (``companion.load.preview``).

Quick start::

    from companion.load import open_dataset
    ds = open_dataset("/data/my_dataset")          # or "s3://bucket/ds" with fsspec
    s = ds.get(ds.videos()[0], 120, size=(224, 224))
    s.image            # uint8 (224, 224, 3)
    s.action.keys_vk   # frozenset of Windows VK codes held at frame 120

See docs/loader.md.
"""
from .actions import BUTTON_VOCAB_SIZE, KEY_VOCAB_SIZE, ActionState, ActionTrack
from .dataset import Chunk, ChunkInfo, Dataset, Sample, open_dataset

__all__ = ["open_dataset", "Dataset", "Chunk", "ChunkInfo", "Sample", "ActionState",
           "ActionTrack", "KEY_VOCAB_SIZE", "BUTTON_VOCAB_SIZE"]
