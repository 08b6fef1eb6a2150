"""The one LightningModule for every optica model: VLM, ViT classifier and language model.

A batch is a dict. Whatever the model's ``forward`` accepts (``input_ids``, ``images``,
``attention_mask``, ``position_ids``, ``packed_seq_params``, ...) is passed to it; ``labels`` is
the target:

* token models return logits ``[B, T', V]`` and ``labels`` is ``[B, T]`` aligned with
  ``input_ids`` (-100 where nothing is learned). A VLM whose sequence grows when images are
  spliced in exposes ``expand_labels(input_ids, labels)``; the loss is next-token cross entropy
  over learned tokens only;
* classifiers return ``[B, C]`` and ``labels`` is ``[B]``.

``reduced_train_loss`` (mean over data-parallel ranks) and ``consumed_samples`` are logged every
step, so checkpoint filenames like seed 000's can use them.
"""

from __future__ import annotations

import inspect
import random
from typing import Any

import lightning.pytorch as pl
import numpy as np
import torch
from torch import nn

from optica.run.errors import ConfigError
from optica.train.backward_step import step_in_backward, step_in_backward_problem
from optica.train.optim import OptimizerConfig, build_optimizer
from optica.train.schedules import build_scheduler

IGNORE_INDEX = -100


def shift_labels(labels: torch.Tensor) -> torch.Tensor:
    """Each position's target [B, T]: the label of the token after it (-100 after the last)."""
    return nn.functional.pad(labels[:, 1:], (0, 1), value=IGNORE_INDEX)


def token_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean next-token cross entropy over positions whose label is not -100.

    The labels are shifted, not the logits: slicing logits [B, T, V] would copy them, and the
    slice's backward would write a zero-filled gradient as large (transformers' loss shifts the
    labels too).
    """
    flat_logits = logits.reshape(-1, logits.shape[-1]).float()
    targets = shift_labels(labels).reshape(-1)
    return nn.functional.cross_entropy(flat_logits, targets, ignore_index=IGNORE_INDEX)


def next_token_loss(
    logits: torch.Tensor, next_labels: torch.Tensor, denominator: torch.Tensor
) -> torch.Tensor:
    """Cross entropy of each position's logits [B, T, V] against the label of the token after it
    (``next_labels`` [B, T], -100 where nothing is learned), summed and divided by
    ``denominator``: a context-parallel rank's share of its sequences' mean (see
    ``optica.train.parallel.context``)."""
    flat_logits = logits.reshape(-1, logits.shape[-1]).float()
    total = nn.functional.cross_entropy(
        flat_logits, next_labels.reshape(-1), ignore_index=IGNORE_INDEX, reduction="sum"
    )
    return total / denominator


def classification_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    return nn.functional.cross_entropy(logits.float(), labels)


def top_k_correct(
    logits: torch.Tensor, labels: torch.Tensor, ks: tuple[int, ...] = (1, 5)
) -> dict[int, torch.Tensor]:
    """Share of rows of ``logits`` [B, C] whose label [B] is among the top ``k`` classes."""
    best = logits.topk(min(max(ks), logits.shape[-1]), dim=-1).indices
    hits = best == labels.unsqueeze(-1)
    return {k: hits[:, :k].any(-1).float().mean() for k in ks}


class TrainingModule(pl.LightningModule):
    """Wraps an optica model for Lightning.

    Args:
        model: The (possibly lazy, meta-device) model.
        optim: Optimizer and schedule.
        peft: Something with ``apply(model)`` (e.g. :class:`optica.train.peft.LoRA`), applied
            once the weights are real.
        init_seed: Seed for random init of a lazy model that no checkpoint fills.
        weights_loader: ``fn(model) -> None`` that fills a lazy model from a checkpoint (used for
            ``resume.restore_config``), instead of random init.
    """

    def __init__(
        self,
        model: nn.Module,
        *,
        optim: OptimizerConfig | None = None,
        peft: Any = None,
        init_seed: int = 0,
        weights_loader: Any = None,
    ) -> None:
        super().__init__()
        self.model = model
        self.optim = optim or OptimizerConfig()
        self.peft = peft
        self.init_seed = init_seed
        self.weights_loader = weights_loader
        self.consumed_samples = 0
        self._accepted = set(inspect.signature(model.forward).parameters)
        # Set by a pipeline-parallel strategy: ``fn(batch, output_loss, training=, scale=)`` runs
        # the forward (and in training the backward) through the pipeline schedule.
        self.loss_runner: Any = None
        self._backward_steps: list[Any] = []  # hooks of ``optim.step_in_backward``

    def configure_model(self) -> None:
        """Materialises a lazy model (checkpoint or seeded init), then applies PEFT; idempotent."""
        if any(p.is_meta for p in self.model.parameters()):
            if self.weights_loader is not None:
                self.weights_loader(self.model)
            else:
                _load_pretrained_parts(self.model)
                self.model.init_weights(self.init_seed, device=self.device)
        _freeze_unused(self.model)
        if self.peft is not None and not getattr(self, "_peft_applied", False):
            self.peft.apply(self.model)
            self._peft_applied = True

    def forward(self, batch: dict[str, Any]) -> torch.Tensor:
        return self.model(**self._model_inputs(batch))

    def _model_inputs(self, batch: dict[str, Any]) -> dict[str, Any]:
        """The batch entries the model's forward takes; images it cannot take are a mistake in
        the data set-up (their placeholder ids would end in an embedding IndexError)."""
        images = batch.get("images")
        if images is not None and images.numel() and "images" not in self._accepted:
            raise ConfigError(
                f"the batches carry images but {type(self.model).__name__} takes none: train a "
                "vision-language model, or use text-only data (MockDataModule(num_images=0))"
            )
        return {k: v for k, v in batch.items() if k in self._accepted and k != "labels"}

    def loss(self, batch: dict[str, Any]) -> torch.Tensor:
        if self.loss_runner is not None:
            scale = self.trainer.accumulate_grad_batches if self.training else 1
            return self.loss_runner(batch, self.output_loss, training=self.training, scale=scale)
        if self._logits_at_learned_only(batch):
            return self._learned_token_loss(batch)
        return self.output_loss(self(batch), batch)

    def _logits_at_learned_only(self, batch: dict[str, Any]) -> bool:
        """Whether the model can compute logits where a label is learned only: a token model
        taking ``logits_at``, whole sequences (not a context-parallel slice), and no model
        parallelism (a parallel output layer expects whole sequences)."""
        if "logits_at" not in self._accepted or "next_labels" in batch:
            return False
        if batch["labels"].dim() != 2:
            return False
        trainer = self._trainer
        return trainer is None or data_parallel_size(trainer) == trainer.world_size

    def _learned_token_loss(self, batch: dict[str, Any]) -> torch.Tensor:
        """:func:`token_loss`'s value, with logits only where a label is learned: the output layer
        and the softmax over the vocabulary skip prompts, image tokens and padding (for a LLaVA
        batch, most of the sequence)."""
        labels = batch["labels"]
        expand = getattr(self.model, "expand_labels", None)
        if expand is not None:
            labels = expand(batch["input_ids"], labels)
        targets = shift_labels(labels)
        learned = targets != IGNORE_INDEX
        logits = self.model(**self._model_inputs(batch), logits_at=learned)
        return nn.functional.cross_entropy(logits.float(), targets[learned])

    def output_loss(self, logits: torch.Tensor, batch: dict[str, Any]) -> torch.Tensor:
        """The loss of the model's output for ``batch``: the one definition, whatever runs the
        model (one process, a parallel layout, a pipeline schedule)."""
        labels = batch["labels"]
        if logits.dim() == 2:
            return classification_loss(logits, labels)
        if "next_labels" in batch:  # a context-parallel slice of each sequence
            return next_token_loss(logits, batch["next_labels"], batch["loss_denominator"])
        expand = getattr(self.model, "expand_labels", None)
        if expand is not None and logits.shape[1] != labels.shape[1]:
            labels = expand(batch["input_ids"], labels)
        return token_loss(logits, labels)

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        loss = self.loss(batch)
        self.consumed_samples += _batch_size(batch) * data_parallel_size(self.trainer)
        self.log("reduced_train_loss", loss, prog_bar=True, sync_dist=True, batch_size=1)
        self.log("consumed_samples", float(self.consumed_samples), batch_size=1)
        self.log("lr", self.optimizers().param_groups[0]["lr"], batch_size=1)
        return loss

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        if self.loss_runner is not None:
            loss = self.loss(batch)
        else:
            logits = self(batch)
            loss = self.output_loss(logits, batch)
            if logits.dim() == 2:
                self._log_top_k(logits, batch["labels"])
        self.log("val_loss", loss, prog_bar=True, sync_dist=True, batch_size=_batch_size(batch))
        return loss

    def _log_top_k(self, logits: torch.Tensor, labels: torch.Tensor) -> None:
        """Classifiers: ``val_top1`` / ``val_top5``, the share of images whose label is the best
        guess / among the five best (all of them when there are fewer than five classes)."""
        for k, correct in top_k_correct(logits, labels, ks=(1, 5)).items():
            self.log(f"val_top{k}", correct, sync_dist=True, batch_size=labels.shape[0])

    def optimizer_zero_grad(self, epoch: int, batch_idx: int, optimizer: Any) -> None:
        # NOTE: Lightning zeroes gradients between training_step and the backward; a pipeline
        # schedule has run the backward inside training_step by then, so the runner zeroes them
        # itself at the start of each accumulation window.
        if self.loss_runner is None:
            optimizer.zero_grad()

    def configure_optimizers(self) -> dict[str, Any]:
        optimizer = build_optimizer(self.optim, self.model)
        if self.optim.step_in_backward:
            self._step_in_backward(optimizer)
        max_steps = self.trainer.max_steps if self.trainer.max_steps > 0 else None
        scheduler = build_scheduler(
            self.optim.sched, optimizer, max_steps=max_steps, lr=self.optim.lr
        )
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "interval": "step"},
        }

    def _step_in_backward(self, optimizer: torch.optim.Optimizer) -> None:
        trainer = self.trainer
        problem = step_in_backward_problem(
            world_size=trainer.world_size,
            accumulate_grad_batches=trainer.accumulate_grad_batches,
            gradient_clip_val=trainer.gradient_clip_val,
            fp16_scaler=str(trainer.precision) in ("16", "16-mixed"),
        )
        if problem is not None:
            raise ConfigError(f"optim.step_in_backward=True: {problem}")
        self._remove_backward_steps()
        self._backward_steps = step_in_backward(optimizer)

    def _remove_backward_steps(self) -> None:
        for handle in self._backward_steps:
            handle.remove()
        self._backward_steps = []

    def teardown(self, stage: str) -> None:
        # NOTE: the hooks live on the model's parameters, which outlive this run: left in place,
        # a later run on the same model would be stepped by this run's optimizer too.
        self._remove_backward_steps()

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["consumed_samples"] = self.consumed_samples
        checkpoint["rng_states"] = rng_states()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Also puts back this rank's random streams (dropout, LoRA dropout, ...), so a resumed
        run draws what the uninterrupted one would have. NOTE: Lightning calls this after
        ``configure_model`` (whose init may draw numbers) and before the first step."""
        self.consumed_samples = checkpoint.get("consumed_samples", 0)
        if "rng_states" in checkpoint:
            set_rng_states(checkpoint["rng_states"])


def rng_states() -> dict[str, Any]:
    """This process's random streams, in types ``torch.load(weights_only=True)`` accepts."""
    kind, keys, position, has_gauss, cached = np.random.get_state()
    cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []
    return {
        "torch": torch.get_rng_state(),
        "cuda": cuda,
        "numpy": [kind, keys.tolist(), position, has_gauss, cached],
        "python": random.getstate(),
    }


def set_rng_states(states: dict[str, Any]) -> None:
    torch.set_rng_state(states["torch"])
    if states["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])
    kind, keys, position, has_gauss, cached = states["numpy"]
    np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), position, has_gauss, cached))
    version, internal, gauss = states["python"]
    random.setstate((version, tuple(internal), gauss))


def _load_pretrained_parts(model: nn.Module) -> None:
    """LLaVA's stage 1 starts from separately imported towers (``*_from_pretrained``); the parts
    loaded here are left alone by ``init_weights``, which fills only what is still on meta."""
    load_parts = getattr(model, "load_pretrained_parts", None)
    if load_parts is None:
        return
    from optica.checkpoint import load

    load_parts(lambda path: load(path).state_dict())


def _freeze_unused(model: nn.Module) -> None:
    """Parameters that never get a gradient (vision layers past the feature layer) are frozen,
    so optimizers skip them and data parallelism does not wait for their gradients."""
    names = set(getattr(model, "unused_parameter_names", list)())
    for name, param in model.named_parameters():
        if name in names:
            param.requires_grad_(False)


def data_parallel_size(trainer: pl.Trainer) -> int:
    """Ranks that see different data: the world, unless the strategy says (model parallelism)."""
    return int(getattr(trainer.strategy, "data_parallel_size", trainer.world_size))


def _batch_size(batch: dict[str, Any]) -> int:
    labels = batch["labels"]
    return int(labels.shape[0])
