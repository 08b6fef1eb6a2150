"""A small LLaVA data set and the JSON-path twin that every energon test compares with."""

from __future__ import annotations

from pathlib import Path

import torch

from optica.data import ImageDataConfig, NevaLazyDataModule, clip_processor
from tests.unit.data.helpers import llama_like_tokenizer, record, solid_image, write_json

TOKENIZER = llama_like_tokenizer()
CONFIG = {"system_prompt": "", "image_token_len": 4}
SHARED = {"seq_length": 64, "micro_batch_size": 3, "global_batch_size": 3}

TWO = ["red.png", "wide.jpg"]
RECORDS = [
    *[
        record(f"s{i}", "<image>\nwhat is it?", "a cat" if i % 2 else "a dog", image=image)
        for i, image in enumerate(["red.png", "blue.png", "wide.jpg", "red.png", "blue.png"])
    ],
    record("two", "<image> what <image>", "a cat", "and color?", "black", image=TWO),
    record("text", "hello there", "a dog"),
    {"conversations": [{"from": "human", "value": "<image>"}, {"from": "gpt", "value": "red"}],
     "image": "red.png"},
    record("last", "describe the picture <image>", "two red", image=["blue.png"]),
]  # fmt: skip


def make_images(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    solid_image(folder / "red.png", (255, 0, 0))
    solid_image(folder / "blue.png", (0, 0, 255), size=(16, 8))
    solid_image(folder / "wide.jpg", (0, 200, 30), size=(12, 6))
    return folder


def make_data(root: Path, records=RECORDS) -> tuple[Path, Path]:
    """(data file, image folder)."""
    images = make_images(root / "images")
    return write_json(root / "data.json", records), images


def data_config(images: Path | None = None, **overrides) -> ImageDataConfig:
    return ImageDataConfig(image_folder=images, **{**CONFIG, **overrides})


def json_twin(data: Path, images: Path, **overrides) -> NevaLazyDataModule:
    """The JSON path over the same file, set up (its training data set, in file order)."""
    module = NevaLazyDataModule(
        data,
        data_config=data_config(images, **overrides),
        tokenizer=TOKENIZER,
        image_processor=clip_processor(8),
        val_paths=(),
        **SHARED,
    )
    module.setup()
    return module


def energon_module(path: Path, *, config: dict | None = None, **settings):
    """The energon DataModule with the JSON twin's tokenizer, processor and sizes."""
    from optica.data.energon import EnergonMultiModalDataModule

    return EnergonMultiModalDataModule(
        path,
        data_config=data_config(None, **(config or {})),
        tokenizer=TOKENIZER,
        image_processor=clip_processor(8),
        **{**SHARED, **settings},
    )


def assert_same_batch(expected: dict, actual: dict) -> None:
    assert set(expected) - {"__restore_key__"} == set(actual) - {"__restore_key__"}
    for key, value in expected.items():
        if key == "__restore_key__":
            continue
        if isinstance(value, torch.Tensor):
            assert torch.equal(value, actual[key]), key
        elif key != "packed_seq_params":
            assert value == actual[key], key
