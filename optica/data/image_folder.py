"""Image classification from folders: one sub-folder per class (torchvision's ``ImageFolder``
layout, without torchvision), read with PIL and processed like the encoder expects.

    root/train/cat/001.jpg     root/val/cat/104.png
    root/train/dog/002.jpg     root/val/dog/107.jpg

Classes are the sorted sub-folder names of the training folder; the validation folder must not
name a class the training folder lacks (its labels would mean nothing).
"""

from __future__ import annotations

from pathlib import Path

import torch
from PIL import Image
from torch.utils.data import Dataset

from optica.data.collate import stack_batch
from optica.data.errors import DataConfigError
from optica.data.images import HALF, ImageProcessor
from optica.data.module import OpticaDataModule

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff")


def _subfolders(folder: Path) -> list[str]:
    if not folder.is_dir():
        raise DataConfigError(
            f"image folder {folder} does not exist (want one sub-folder per class)"
        )
    return sorted(p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def find_classes(folder: Path) -> list[str]:
    """Sorted names of the sub-folders of ``folder`` (one per class)."""
    classes = _subfolders(folder)
    if not classes:
        raise DataConfigError(f"image folder {folder} has no class sub-folders")
    return classes


def list_images(folder: Path, classes: list[str]) -> list[tuple[Path, int]]:
    """``(file, class index)`` for every image under the class folders, in a stable order."""
    unknown = [name for name in _subfolders(folder) if name not in classes]
    if unknown:
        raise DataConfigError(
            f"{folder}: class folder '{unknown[0]}' is not a training class ({', '.join(classes)})"
        )
    items = []
    for label, name in enumerate(classes):
        directory = folder / name
        if directory.is_dir():
            files = sorted(p for p in directory.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
            items += [(path, label) for path in files]
    if not items:
        raise DataConfigError(f"{folder}: no images ({', '.join(IMAGE_SUFFIXES)}) in class folders")
    return items


class ImageFolderDataset(Dataset):
    """``{"images": [3, H, W], "labels": []}`` per image file."""

    def __init__(self, items: list[tuple[Path, int]], processor: ImageProcessor):
        self.items, self.processor = items, processor

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict:
        path, label = self.items[index]
        with Image.open(path) as image:
            pixels = self.processor(image)
        return {"images": pixels, "labels": torch.tensor(label)}


class ImageFolderDataModule(OpticaDataModule):
    """Class-per-sub-folder images for a ViT classifier.

    Args:
        root: The training folder (one sub-folder per class).
        val_root: The validation folder; ``None`` validates on nothing.
        image_size: Side of the square model input (the encoder's ``img_h``/``img_w``).
        mean, std: The encoder's normalisation (ViT checkpoints: 0.5/0.5; ImageNet-trained
            convolutional stems use ``IMAGENET_MEAN``/``IMAGENET_STD``).
        aspect_ratio: ``square`` (stretch), ``crop`` (cover, centre crop) or ``pad``.
        **shared: See :class:`~optica.data.module.OpticaDataModule`.
    """

    def __init__(
        self,
        root: str,
        *,
        val_root: str | None = None,
        image_size: int = 224,
        mean: tuple[float, float, float] = HALF,
        std: tuple[float, float, float] = HALF,
        aspect_ratio: str = "crop",
        micro_batch_size: int = 32,
        global_batch_size: int = 32,
        num_workers: int = 0,
        seed: int = 1234,
        data_parallel_rank: int | None = None,
        data_parallel_size: int | None = None,
    ):
        super().__init__(
            seq_length=1,
            micro_batch_size=micro_batch_size,
            global_batch_size=global_batch_size,
            num_workers=num_workers,
            seed=seed,
            data_parallel_rank=data_parallel_rank,
            data_parallel_size=data_parallel_size,
        )
        self.root, self.val_root = Path(root).expanduser(), val_root
        self.processor = ImageProcessor(
            (image_size, image_size), tuple(mean), tuple(std), aspect_ratio=aspect_ratio
        )
        self._classes: list[str] | None = None

    @property
    def classes(self) -> list[str]:
        if self._classes is None:
            self._classes = find_classes(self.root)
        return self._classes

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def build_dataset(self, split: str) -> ImageFolderDataset | None:
        folder = self.root if split == "train" else self.val_root
        if folder is None:
            return None
        return ImageFolderDataset(
            list_images(Path(folder).expanduser(), self.classes), self.processor
        )

    def collator(self):
        return stack_batch
