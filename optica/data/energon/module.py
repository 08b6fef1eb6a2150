"""``EnergonMultiModalDataModule``: energon shards as a Lightning DataModule (seed 001).

Built like :class:`~optica.data.neva.NevaLazyDataModule` (same tokenizer, template, image
processor and collate, so the same batches for the same content), but the order is energon's:
shards are shuffled in slices (``max_samples_per_sequence``) through a shuffle buffer, per data
parallel rank and worker, repeated without end (set ``max_steps``).

Resuming: energon's loader saves and restores its own position (``save_state_rank`` /
``restore_state_rank``). Lightning fetches one batch ahead of the model, so the loader's position
is past batches the model has not trained on yet; :class:`ResumableEnergonLoader` therefore also
keeps the restore keys of batches handed out but not yet consumed, and a resumed loader rebuilds
those first (energon's ``restore_sample``). The state travels in the checkpoint through the
DataModule's ``state_dict`` / ``load_state_dict``, and a resumed run sees exactly the next batch.
"""

from __future__ import annotations

import pickle
from collections import deque
from collections.abc import Iterator
from pathlib import Path

import torch
import yaml

from optica.data.build import load_tokenizer, make_encoder, pad_id, resolve_image_processor
from optica.data.collate import Collator
from optica.data.config import (
    ImageDataConfig,
    MultiModalSampleConfig,
    VisionGeometry,
    resolve_image_token_len,
)
from optica.data.energon import require_energon
from optica.data.energon.prepare import META, check_prepared
from optica.data.energon.samples import default_encoders
from optica.data.images import check_image_size
from optica.data.module import OpticaDataModule


def _savable_loader(dataset):
    """energon's loader; it always pins memory, which only helps (and, without one, warns) with
    an accelerator."""
    from megatron.energon import get_savable_loader

    loader = get_savable_loader(dataset)
    if not torch.cuda.is_available():
        loader.pin_memory = False
    return loader


class ResumableEnergonLoader:
    """Iterates an energon ``SavableDataLoader`` and remembers what the model has not seen yet.

    Args:
        loader: The energon loader (batches are optica batch dicts with ``__restore_key__``).
        state: A :meth:`state` to resume from, or ``None``.
    """

    def __init__(self, loader, state: dict | None = None):
        self.loader = loader
        self.handed: deque = deque()  # restore keys of batches handed out, not yet consumed
        self.replay: deque = deque()  # restore keys to rebuild before reading on
        if state:
            loader.restore_state_rank(pickle.loads(state["loader"]))
            self.replay.extend(tuple(key) for key in state["pending"])

    def __iter__(self) -> Iterator[dict]:
        while self.replay:
            yield self._hand(self.loader.restore_sample(self.replay.popleft()))
        for batch in self.loader:
            yield self._hand(batch)

    def _hand(self, batch: dict) -> dict:
        self.handed.append(batch.pop("__restore_key__", None))
        return batch

    def consumed(self) -> None:
        """The oldest handed-out batch reached the model."""
        if self.handed:
            self.handed.popleft()

    def state(self) -> dict:
        """The loader's position plus the batches to rebuild first (picklable, plain types)."""
        return {
            "loader": pickle.dumps(self.loader.save_state_rank()),
            "pending": [*self.handed, *self.replay],
        }


class EnergonMultiModalDataModule(OpticaDataModule):
    """Energon / WebDataset shards (``optica data convert`` or ``energon prepare``) for NeVA.

    Args:
        path: The prepared dataset folder (or an energon metadataset ``.yaml``).
        tokenizer: A Hugging Face fast tokenizer or a path to one.
        image_processor: As for :class:`~optica.data.neva.NevaLazyDataModule` (``None``:
            CLIP-336).
        data_config: Template, aspect ratio, system prompt, ``on_bad_input``, ``overlong``
            (``image_folder`` is not used: images are in the shards).
        multimodal_sample_config: Image token, ignore index, Jinja template (seed 001).
        vision: The encoder's geometry; checks ``image_token_len`` and the image size.
        task_encoder: A custom energon task encoder; default :class:`MultiModalTaskEncoder`
            over :func:`~optica.data.energon.samples.default_encoders`.
        caption_prompt: The question that goes with captioning samples (default: the image alone).
        val_split: energon split used for validation (``None`` or an empty split: none).
        shuffle_buffer_size, max_samples_per_sequence: energon's shuffling (see its docs).
        pad_to_multiple_of: Round padded lengths up to a multiple of this.
        **shared: ``seq_length``, ``micro_batch_size``, ``global_batch_size``, ``num_workers``,
            ``seed``, ... (see :class:`~optica.data.module.OpticaDataModule`).
    """

    def __init__(
        self,
        path: str | Path,
        *,
        tokenizer=None,
        image_processor=None,
        data_config: ImageDataConfig | None = None,
        multimodal_sample_config: MultiModalSampleConfig | None = None,
        vision: VisionGeometry | None = None,
        task_encoder=None,
        caption_prompt: str = "",
        val_split: str | None = "val",
        shuffle_buffer_size: int | None = 100,
        max_samples_per_sequence: int | None = 100,
        pad_to_multiple_of: int = 1,
        seq_length: int = 2048,
        micro_batch_size: int = 1,
        global_batch_size: int = 1,
        num_workers: int = 0,
        seed: int = 1234,
        data_parallel_rank: int | None = None,
        data_parallel_size: int | None = None,
        pin_memory: bool = False,
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
        )
        require_energon()
        self.path = check_prepared(path)
        self.data_config = data_config or ImageDataConfig()
        self.sample_config = multimodal_sample_config or MultiModalSampleConfig()
        self.tokenizer = load_tokenizer(tokenizer)
        aspect = self.data_config.image_aspect_ratio
        self.image_processor = resolve_image_processor(image_processor, aspect)
        check_image_size(self.image_processor, vision.image_size if vision else None)
        self.image_token_len = resolve_image_token_len(self.data_config.image_token_len, vision)
        self.val_split, self.pad_to_multiple_of = val_split, pad_to_multiple_of
        self.shuffle_buffer_size = shuffle_buffer_size
        self.max_samples_per_sequence = max_samples_per_sequence
        self.task_encoder = task_encoder or self._default_task_encoder(caption_prompt)
        self._train: ResumableEnergonLoader | None = None
        self._restored: dict | None = None

    def _default_task_encoder(self, caption_prompt: str):
        from optica.data.energon.task_encoder import MultiModalTaskEncoder

        encoder = make_encoder(
            tokenizer=self.tokenizer,
            data_config=self.data_config,
            sample_config=self.sample_config,
            seq_length=self.seq_length,
            image_token_len=self.image_token_len,
            image_processor=self.image_processor,
        )
        encoders = default_encoders(
            encoder,
            self.tokenizer,
            images_to_front=not self.sample_config.image_following_text,
            caption_prompt=caption_prompt,
        )
        return MultiModalTaskEncoder(
            encoders=encoders, collator=self.collator(), on_bad_input=self.data_config.on_bad_input
        )

    def collator(self) -> Collator:
        return Collator(
            pad_id(self.tokenizer),
            self.image_processor.size,
            self.pad_to_multiple_of,
            self.image_token_len or 1,
        )

    # -- Lightning hooks ----------------------------------------------------------------------
    def setup(self, stage: str | None = None) -> None:
        """Nothing to build ahead: energon opens the shards when a loader is made."""

    def worker_config(self):
        from megatron.energon import WorkerConfig
        from megatron.energon.errors import reraise_exception

        rank, size = self.data_parallel()
        return WorkerConfig(
            rank=rank,
            world_size=size,
            num_workers=self.num_workers,
            seed_offset=self.seed,
            global_error_handler=reraise_exception,  # optica's policy decides; energon re-raises
        )

    def train_dataloader(self) -> ResumableEnergonLoader:
        from megatron.energon import get_train_dataset

        dataset = get_train_dataset(
            self.path,
            split_part="train",
            worker_config=self.worker_config(),
            batch_size=self.micro_batch_size,
            batch_drop_last=True,
            shuffle_buffer_size=self.shuffle_buffer_size,
            max_samples_per_sequence=self.max_samples_per_sequence,
            task_encoder=self.task_encoder,
        )
        self._train = ResumableEnergonLoader(_savable_loader(dataset), self._restored)
        self._restored = None
        return self._train

    def val_dataloader(self) -> ResumableEnergonLoader | list:
        if not self._has_split(self.val_split):
            return []
        return self.sequential_loader(self.val_split)

    def sequential_loader(self, split: str) -> ResumableEnergonLoader:
        """``split`` once, in shard order, unshuffled (validation; comparing with the JSON path)."""
        from megatron.energon import get_val_dataset

        dataset = get_val_dataset(
            self.path,
            split_part=split,
            worker_config=self.worker_config(),
            batch_size=self.micro_batch_size,
            task_encoder=self.task_encoder,
        )
        return ResumableEnergonLoader(_savable_loader(dataset))

    def _has_split(self, split: str | None) -> bool:
        splits = self.path / META / "split.yaml"
        if split is None or not splits.is_file():
            return split is not None  # a metadataset names its own splits
        parts = (yaml.safe_load(splits.read_text()) or {}).get("split_parts", {})
        return bool(parts.get(split))

    # -- resuming -----------------------------------------------------------------------------
    def consume(self, batch, *, training: bool = True):
        if training and self._train is not None:
            self._train.consumed()
        return super().consume(batch, training=training)

    def state_dict(self) -> dict:
        state = super().state_dict()
        if self._train is not None:
            state["energon"] = self._train.state()
        elif self._restored is not None:
            state["energon"] = self._restored  # restored, not iterated yet: keep it
        return state

    def load_state_dict(self, state_dict: dict) -> None:
        super().load_state_dict(state_dict)
        self._restored = state_dict.get("energon")


EnergonDataModule = EnergonMultiModalDataModule
