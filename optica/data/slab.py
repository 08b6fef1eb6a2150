"""One buffer for a batch's images, so collating them needs no copy.

A batch fetched at once (``LlavaDataset.__getitems__``, which torch's DataLoader calls) normalises
its images into consecutive slots of an :class:`ImageSlab`; each sample's ``images`` is a view of
its slots, and :func:`joined_view` turns the batch's images back into one view of the slab. The
slab is only a placement: anything that does not fit it (more images than slots, another size)
gets its own memory, and :func:`joined_view` answers ``None`` unless the tensors really lie back
to back, so the collator then copies as before. A sample kept alone keeps its slab alive.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch


class ImageSlab:
    """``count`` float32 [3, H, W] slots handed out in order.

    Args:
        count: Slots (the batch's expected number of images).
        size: (H, W) of each image.
    """

    def __init__(self, count: int, size: tuple[int, int]):
        # NOTE: numpy's malloc reuses the memory a freed batch gave back; torch.empty maps fresh
        # pages for a buffer this large, whose page faults cost more than the copy saved.
        self.tensor = torch.from_numpy(np.empty((count, 3, *size), dtype=np.float32))
        self.used = 0

    def next(self, size: tuple[int, int]) -> torch.Tensor | None:
        """The next free [3, H, W] slot, or ``None`` when full or ``size`` is not the slab's."""
        if self.used == len(self.tensor) or tuple(self.tensor.shape[2:]) != tuple(size):
            return None
        self.used += 1
        return self.tensor[self.used - 1]


def joined_view(tensors: Sequence[torch.Tensor]) -> torch.Tensor | None:
    """``torch.cat(tensors)`` as a view without copying, when the contiguous [n_i, ...] tensors
    lie back to back in one storage (as an :class:`ImageSlab`'s slots do); else ``None``."""
    first = tensors[0]
    storage, shape = first.untyped_storage().data_ptr(), first.shape[1:]
    position = first.data_ptr()
    for tensor in tensors:
        if tensor.dtype != first.dtype or tensor.shape[1:] != shape or not len(tensor):
            return None
        if not tensor.is_contiguous():
            return None
        if tensor.untyped_storage().data_ptr() != storage or tensor.data_ptr() != position:
            return None
        position += tensor.numel() * tensor.element_size()
    count = sum(len(tensor) for tensor in tensors)
    return first.as_strided((count, *shape), first.stride(), first.storage_offset())
