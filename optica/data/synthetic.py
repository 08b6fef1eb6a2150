"""DataModules that need no files: synthetic shapes (VLM and ViT) and mock data (recipes).

The shapes VLM data goes through the same :class:`~optica.data.sample.SampleEncoder` as LLaVA
files, so the demo exercises the real template, tokenization and image path.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import numpy as np
import torch
from torch.utils.data import Dataset

from optica.data.build import pad_id
from optica.data.collate import Collator, stack_batch
from optica.data.config import IGNORE_INDEX, IMAGE_TOKEN_ID, VisionGeometry
from optica.data.conversation import parse_conversation
from optica.data.errors import DataConfigError, check_policy
from optica.data.images import HALF, ImageProcessor
from optica.data.module import OpticaDataModule
from optica.data.sample import Sample, SampleEncoder
from optica.data.shapes import QA, SPLITS, ShapesConfig, shapes_sample, vocabulary
from optica.data.templates import get_template
from optica.data.word_tokenizer import word_tokenizer

SHAPES_TEMPLATES = ("v1", "vicuna_v1", "plain")


def shapes_tokenizer(config: ShapesConfig | None = None):
    """A word-level tokenizer covering the shapes questions, answers and the v1/plain prompts."""
    texts = [*vocabulary(config or ShapesConfig()), "USER: ASSISTANT:"]
    return word_tokenizer(texts)


def shapes_processor(image_size: int) -> ImageProcessor:
    return ImageProcessor((image_size, image_size), HALF, HALF)


class ShapesDataset(Dataset):
    """Shapes conversations as samples; ``qa(i)`` gives the questions and answers for eval."""

    def __init__(self, config: ShapesConfig, split: str, size: int, encoder: SampleEncoder):
        self.config, self.split, self.size, self.encoder = config, split, size, encoder

    def __len__(self) -> int:
        return self.size

    def qa(self, index: int) -> tuple[QA, ...]:
        return shapes_sample(self.config, self.split, index).qa

    def __getitem__(self, index: int) -> Sample:
        sample = shapes_sample(self.config, self.split, index)
        conversation = parse_conversation(
            sample.record(self.encoder.image_token.token_str),
            default_id="",
            where="shapes",
            image_tag=self.encoder.image_token.token_str,
            images_to_front=True,
        )
        return self.encoder.encode(conversation, lambda _: sample.image)


class ShapesDataModule(OpticaDataModule):
    """Synthetic shapes VQA for a tiny LLaVA (the demo's default data).

    Args:
        shapes: What to draw and ask (image size, objects, questions, seed).
        num_train_samples, num_val_samples: Split sizes.
        patch_size, class_token, drop_class_token: The vision encoder's geometry (plain
            numbers), which gives ``image_token_len``.
        tokenizer: ``None`` builds :func:`shapes_tokenizer`.
        conv_template: A built-in template (``v1`` or ``plain`` fit the shapes tokenizer).
        system_prompt: ``""`` (default) keeps sequences short.
        **shared: See :class:`~optica.data.module.OpticaDataModule`.
    """

    def __init__(
        self,
        *,
        shapes: ShapesConfig | None = None,
        num_train_samples: int = 20_000,
        num_val_samples: int = 512,
        patch_size: int = 4,
        class_token: bool = True,
        drop_class_token: bool = True,
        tokenizer=None,
        conv_template: str = "v1",
        system_prompt: str | None = "",
        seq_length: int = 128,
        micro_batch_size: int = 32,
        global_batch_size: int = 32,
        num_workers: int = 0,
        seed: int = 1234,
        data_parallel_rank: int | None = None,
        data_parallel_size: int | None = None,
    ):
        super().__init__(
            seq_length=seq_length,
            micro_batch_size=micro_batch_size,
            global_batch_size=global_batch_size,
            num_workers=num_workers,
            seed=seed,
            data_parallel_rank=data_parallel_rank,
            data_parallel_size=data_parallel_size,
        )
        self.shapes = shapes or ShapesConfig()
        self.sizes = {"train": num_train_samples, "val": num_val_samples}
        self.vision = VisionGeometry(
            self.shapes.image_size, patch_size, class_token, drop_class_token
        )
        if tokenizer is None and conv_template not in SHAPES_TEMPLATES:
            raise DataConfigError(
                f"conv_template={conv_template!r} needs a tokenizer: the built-in shapes "
                f"tokenizer only knows {', '.join(SHAPES_TEMPLATES)}"
            )
        self.tokenizer = tokenizer if tokenizer is not None else shapes_tokenizer(self.shapes)
        self.image_processor = shapes_processor(self.shapes.image_size)
        self.encoder = SampleEncoder(
            tokenizer=self.tokenizer,
            template=get_template(conv_template),
            seq_length=seq_length,
            image_token_len=self.vision.image_token_len,
            image_processor=self.image_processor,
            system_prompt=system_prompt,
        )

    def build_dataset(self, split: str) -> ShapesDataset | None:
        size = self.sizes[split]
        return ShapesDataset(self.shapes, split, size, self.encoder) if size else None

    def collator(self) -> Collator:
        return Collator(
            pad_id(self.tokenizer),
            self.image_processor.size,
            image_token_len=self.vision.image_token_len,
        )


class ShapesClassification(Dataset):
    """One shape per image, labelled by its kind (or colour): ViT classification."""

    def __init__(self, config: ShapesConfig, split: str, size: int, label: str = "shape"):
        self.config = replace(config, min_objects=1, max_objects=1)
        self.split, self.size, self.label = split, size, label
        self.classes = config.shapes if label == "shape" else config.colours
        self.processor = shapes_processor(config.image_size)

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, index: int) -> dict:
        sample = shapes_sample(self.config, self.split, index)
        (obj,) = sample.objects
        target = self.classes.index(obj.kind if self.label == "shape" else obj.colour)
        return {"images": self.processor(sample.image), "labels": torch.tensor(target)}


class ShapesClassificationDataModule(OpticaDataModule):
    """Shapes for a ViT classifier: batches ``{"images": [B, 3, H, W], "labels": [B]}``.

    Args:
        label: ``shape`` (3 classes by default) or ``colour``.
    """

    def __init__(
        self,
        *,
        shapes: ShapesConfig | None = None,
        label: str = "shape",
        num_train_samples: int = 20_000,
        num_val_samples: int = 512,
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
        check_policy(label, "label", ("shape", "colour"))
        self.shapes, self.label = shapes or ShapesConfig(), label
        self.sizes = {"train": num_train_samples, "val": num_val_samples}

    @property
    def num_classes(self) -> int:
        return len(self.shapes.shapes if self.label == "shape" else self.shapes.colours)

    def build_dataset(self, split: str) -> ShapesClassification | None:
        size = self.sizes[split]
        return ShapesClassification(self.shapes, split, size, self.label) if size else None

    def collator(self):
        return stack_batch


class MockDataset(Dataset):
    """Random tokens and images with fixed shapes; deterministic per (seed, split, index)."""

    def __init__(self, module: MockDataModule, split: str, size: int):
        self.module, self.split, self.size = module, split, size

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, index: int) -> Sample | dict:
        m = self.module
        seed = np.random.default_rng([m.seed, SPLITS[self.split], index]).integers(2**62)
        generator = torch.Generator().manual_seed(int(seed))
        if m.num_classes is not None:
            image = torch.randn(3, *m.image_size, generator=generator)
            label = torch.randint(m.num_classes, (), generator=generator)
            return {"images": image, "labels": label}
        text = m.seq_length - m.num_images * m.image_token_len
        ids = torch.randint(3, m.vocab_size, (text,), generator=generator)
        if not m.num_images:  # a language model pre-trains on every token
            return {"input_ids": ids, "labels": ids.clone()}
        ids = torch.cat([torch.full((m.num_images,), IMAGE_TOKEN_ID), ids])
        labels = ids.clone()
        labels[: m.num_images + text // 2] = IGNORE_INDEX  # the first half is the "prompt"
        images = torch.randn(m.num_images, 3, *m.image_size, generator=generator)
        return Sample((f"mock-{index}",), ids, labels, images, (len(ids),))


class MockDataModule(OpticaDataModule):
    """Random data shaped like a model's inputs, for recipes, benchmarks and the autoconfig runner.

    Three kinds of batch, one per kind of model, each holding only what that model and every
    parallel layout take:

    * a VLM (``num_images >= 1``, the default): LLaVA batches from the real
      :class:`~optica.data.collate.Collator` (image placeholders, positions, document ids);
      every row is exactly ``seq_length`` long once each image counts ``image_token_len``
      tokens, and the first half of its text is an unlearned "prompt";
    * a language model (``num_images=0``): ``{"input_ids", "labels"}`` [B, seq_length], every
      token learned, as in pre-training. NOTE: no image placeholders (a language model's
      embedding refuses id -200) and no padding or extra keys (pipeline and context
      parallelism take token batches only);
    * a ViT classifier (``num_classes`` set): ``{"images": [B, 3, H, W], "labels": [B]}``.

    Args:
        vocab_size: Token ids are drawn from [3, vocab_size).
        image_size: Side (or (H, W)) of the random images.
        image_token_len: Language-model tokens per image.
        num_images: Images per sample (0 for a language model).
        num_classes: Labels of a classifier's batches (None: token batches).
        num_train_samples, num_val_samples: Split sizes.
        **shared: See :class:`~optica.data.module.OpticaDataModule`.
    """

    def __init__(
        self,
        *,
        seq_length: int = 2048,
        vocab_size: int = 32_000,
        image_size: int | tuple[int, int] = 336,
        image_token_len: int = 576,
        num_images: int = 1,
        num_classes: int | None = None,
        num_train_samples: int = 10_000,
        num_val_samples: int = 64,
        micro_batch_size: int = 1,
        global_batch_size: int = 1,
        num_workers: int = 0,
        seed: int = 1234,
        data_parallel_rank: int | None = None,
        data_parallel_size: int | None = None,
    ):
        super().__init__(
            seq_length=seq_length,
            micro_batch_size=micro_batch_size,
            global_batch_size=global_batch_size,
            num_workers=num_workers,
            seed=seed,
            data_parallel_rank=data_parallel_rank,
            data_parallel_size=data_parallel_size,
        )
        self.vocab_size, self.num_images, self.num_classes = vocab_size, num_images, num_classes
        self.image_token_len = image_token_len
        self.image_size = (image_size, image_size) if isinstance(image_size, int) else image_size
        _check_mock(self)
        self.sizes = {"train": num_train_samples, "val": num_val_samples}

    def build_dataset(self, split: str) -> MockDataset | None:
        return MockDataset(self, split, self.sizes[split]) if self.sizes[split] else None

    def collator(self) -> Collator | Callable[[list[dict]], dict]:
        if self.num_classes is not None or not self.num_images:
            return stack_batch
        return Collator(0, self.image_size, image_token_len=self.image_token_len)


def _check_mock(m: MockDataModule) -> None:
    if m.num_classes is not None:
        if m.num_classes < 1:
            raise DataConfigError(f"MockDataModule: num_classes={m.num_classes} must be >= 1")
        return
    if m.num_images < 0:
        raise DataConfigError(f"MockDataModule: num_images={m.num_images} must be >= 0")
    if m.seq_length - m.num_images * m.image_token_len < 2:
        raise DataConfigError(
            f"seq_length={m.seq_length} leaves no room for text after {m.num_images} image(s) of "
            f"{m.image_token_len} tokens"
        )
