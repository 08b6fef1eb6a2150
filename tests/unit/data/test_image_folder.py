"""Class-per-sub-folder images: labels follow the sorted folder names; mistakes are one line."""

import pytest
import torch
from PIL import Image

from optica.data.errors import DataConfigError
from optica.data.image_folder import ImageFolderDataModule


def make_tree(root, classes=("cat", "dog"), per_class=2, colour=(200, 10, 10)):
    for name in classes:
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            Image.new("RGB", (20, 12), colour).save(root / name / f"{i}.png")


def test_batches_and_labels(tmp_path):
    make_tree(tmp_path / "train")
    make_tree(tmp_path / "val", classes=("dog",), per_class=1)
    dm = ImageFolderDataModule(
        str(tmp_path / "train"),
        val_root=str(tmp_path / "val"),
        image_size=8,
        micro_batch_size=4,
        global_batch_size=4,
    )
    assert dm.classes == ["cat", "dog"] and dm.num_classes == 2
    batch = next(iter(dm.train_dataloader()))
    assert batch["images"].shape == (4, 3, 8, 8)
    assert sorted(batch["labels"].tolist()) == [0, 0, 1, 1]
    (val,) = list(dm.val_dataloader())
    assert val["labels"].tolist() == [1]  # "dog" keeps the training folder's index


def test_no_val_root_means_no_validation(tmp_path):
    make_tree(tmp_path / "train")
    dm = ImageFolderDataModule(str(tmp_path / "train"), micro_batch_size=2, global_batch_size=2)
    assert dm.val_dataloader() == []


@pytest.mark.parametrize(
    "val, message",
    [
        ("missing", "does not exist"),
        ("bird", "not a training class"),
    ],
)
def test_bad_val_folder_is_one_line(tmp_path, val, message):
    make_tree(tmp_path / "train")
    if val == "bird":
        make_tree(tmp_path / "val", classes=("bird",), per_class=1)
    dm = ImageFolderDataModule(
        str(tmp_path / "train"), val_root=str(tmp_path / "val"), micro_batch_size=1
    )
    with pytest.raises(DataConfigError, match=message):
        dm.setup()


def test_missing_or_empty_training_folder(tmp_path):
    with pytest.raises(DataConfigError, match="does not exist"):
        ImageFolderDataModule(str(tmp_path / "nope")).setup()
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataConfigError, match="no class sub-folders"):
        ImageFolderDataModule(str(tmp_path / "empty")).setup()
    (tmp_path / "noimg" / "cat").mkdir(parents=True)
    with pytest.raises(DataConfigError, match="no images"):
        ImageFolderDataModule(str(tmp_path / "noimg")).setup()


def test_stacked_labels_are_long():
    from optica.data.collate import stack_batch

    batch = stack_batch([{"labels": torch.tensor(1)}, {"labels": torch.tensor(0)}])
    assert batch["labels"].dtype == torch.long and batch["labels"].tolist() == [1, 0]
