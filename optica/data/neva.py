"""``NevaLazyDataModule``: LLaVA conversation files for NeVA / LLaVA training (seed 001)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from optica.data.build import load_tokenizer, make_encoder, pad_id, resolve_image_processor
from optica.data.collate import Collator
from optica.data.config import (
    ImageDataConfig,
    MultiModalSampleConfig,
    VisionGeometry,
    resolve_image_token_len,
)
from optica.data.images import check_image_size
from optica.data.llava import LlavaDataset
from optica.data.module import OpticaDataModule
from optica.data.packing import PackedDataset

Paths = str | Path | Sequence[str | Path]


class NevaLazyDataModule(OpticaDataModule):
    """LLaVA JSON / JSONL conversations with their images, read lazily.

    Args:
        paths: Training data: files and folders of ``*.json`` / ``*.jsonl``.
        data_config: Image folder, template, aspect ratio, policies (seed 000 ``data`` block).
        tokenizer: A Hugging Face fast tokenizer or a path to one.
        image_processor: An :class:`~optica.data.images.ImageProcessor`, a checkpoint path with
            ``preprocessor_config.json``, an HF image processor, or ``None`` (CLIP-336).
        val_paths: Validation data; ``None`` validates on ``paths`` (as NeMo does), ``()`` on
            nothing.
        sample_config: Image token, ignore index, Jinja template (seed 001).
        vision: The encoder's geometry; checks ``image_token_len`` and the image size.
        packed_sequence: Pack several samples per row (first-fit-decreasing); batch sizes and
            ``consumed_samples`` then count rows.
        pad_to_multiple_of: Round padded lengths up to a multiple of this.
        **shared: ``seq_length``, ``micro_batch_size``, ``global_batch_size``, ``num_workers``,
            ``seed``, ... (see :class:`~optica.data.module.OpticaDataModule`).
    """

    def __init__(
        self,
        paths: Paths,
        *,
        data_config: ImageDataConfig | None = None,
        tokenizer=None,
        image_processor=None,
        val_paths: Paths | None = None,
        sample_config: MultiModalSampleConfig | None = None,
        vision: VisionGeometry | None = None,
        packed_sequence: bool = False,
        pad_to_multiple_of: int = 1,
        seq_length: int = 2048,
        micro_batch_size: int = 1,
        global_batch_size: int = 1,
        num_workers: int = 0,
        seed: int = 1234,
        data_parallel_rank: int | None = None,
        data_parallel_size: int | None = None,
        pin_memory: bool = False,
        persistent_workers: bool = False,
    ):
        super().__init__(
            seq_length=seq_length,
            micro_batch_size=micro_batch_size,
            global_batch_size=global_batch_size,
            num_workers=num_workers,
            seed=seed,
            data_parallel_rank=data_parallel_rank,
            data_parallel_size=data_parallel_size,
            pin_memory=pin_memory,
            persistent_workers=persistent_workers,
        )
        self.paths, self.val_paths = paths, val_paths
        self.data_config = data_config or ImageDataConfig()
        self.sample_config = sample_config or MultiModalSampleConfig()
        self.tokenizer = load_tokenizer(tokenizer)
        aspect = self.data_config.image_aspect_ratio
        self.image_processor = resolve_image_processor(image_processor, aspect)
        check_image_size(self.image_processor, vision.image_size if vision else None)
        self.image_token_len = resolve_image_token_len(self.data_config.image_token_len, vision)
        self.packed_sequence, self.pad_to_multiple_of = packed_sequence, pad_to_multiple_of
        self.encoder = make_encoder(
            tokenizer=self.tokenizer,
            data_config=self.data_config,
            sample_config=self.sample_config,
            seq_length=seq_length,
            image_token_len=self.image_token_len,
            image_processor=self.image_processor,
        )

    def build_dataset(self, split: str):
        if split == "val" and self.val_paths is None:
            return self.datasets["train"]  # NeMo's default; one index, not two
        paths = self.paths if split == "train" else self.val_paths
        if isinstance(paths, (list, tuple)) and not paths:
            return None
        dataset = LlavaDataset(
            paths,
            encoder=self.encoder,
            image_folder=self.data_config.image_folder,
            on_bad_input=self.data_config.on_bad_input,
            images_to_front=not self.sample_config.image_following_text,
        )
        if not self.packed_sequence:
            return dataset
        packed = PackedDataset(dataset, self.seq_length)
        self.report.add(packed.problems)
        return packed

    def collator(self) -> Collator:
        return Collator(
            pad_id(self.tokenizer),
            self.image_processor.size,
            self.pad_to_multiple_of,
            self.image_token_len or 1,
        )
