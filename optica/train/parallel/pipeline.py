"""Pipeline parallelism's own step, on ``torch.distributed.pipelining`` (Huang et al., 2019,
"GPipe"; Narayanan et al., 2021, "Efficient Large-Scale Language Model Training on GPU Clusters
Using Megatron-LM" for 1F1B and the interleaved schedule).

Each Lightning micro-batch is cut into ``microbatches`` pipeline micro-batches that flow through
the stages; the schedule runs the forward and (in training) the backward itself, so the strategy
skips Lightning's backward. The loss on the last stage is the ``TrainingModule``'s
(``output_loss``), the only definition; the step returns it on every pipeline rank.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.distributed.device_mesh import DeviceMesh
from torch.distributed.pipelining import (
    PipelineStage,
    Schedule1F1B,
    ScheduleGPipe,
    ScheduleInterleaved1F1B,
)

from optica.run.errors import ConfigError

SCHEDULES = ("1f1b", "gpipe", "interleaved_1f1b")
_TOKEN_KEYS = ("input_ids", "labels", "attention_mask")


def stage_ids(pp_rank: int, pp_size: int, virtual_size: int) -> list[int]:
    """The stages rank ``pp_rank`` runs: ``pp_rank``, ``pp_rank + PP``, ... (looped placement,
    which the interleaved schedule expects)."""
    return [pp_rank + chunk * pp_size for chunk in range(virtual_size)]


class PipelineRunner:
    """Runs a pipelined training or validation step.

    Args:
        modules: This rank's stage modules, in ``ids`` order.
        ids: Their stage indices.
        num_stages: Stages over all ranks (PP × VP).
        mesh: The 1-D pipeline mesh.
        device: This rank's device.
        schedule: ``1f1b``, ``gpipe`` or ``interleaved_1f1b`` (needs several stages per rank).
        microbatches: Pipeline micro-batches per step.
        input_key: The batch key the first stage reads (``input_ids``, or ``images``).
        prepare: ``batch -> (first stage's inputs, last stage's target)`` for richer batches
            (LLaVA's: ids and images in, labels padded like the spliced sequence); default: the
            ``input_key`` tensor in, ``labels`` as the target, nothing else in the batch.
    """

    def __init__(
        self,
        modules: Sequence[nn.Module],
        ids: Sequence[int],
        num_stages: int,
        mesh: DeviceMesh,
        device: torch.device,
        schedule: str,
        microbatches: int,
        *,
        input_key: str = "input_ids",
        prepare: Callable[[dict[str, Any]], tuple[tuple, torch.Tensor]] | None = None,
    ) -> None:
        group = mesh.get_group()
        self.prepare = prepare or functools.partial(plain_inputs, input_key=input_key)
        stages = [
            PipelineStage(module, index, num_stages, device, group=group)
            for module, index in zip(modules, ids)
        ]
        self.modules = list(modules)
        self.first, self.last = 0 in ids, num_stages - 1 in ids
        self._window_start = True
        self.mesh, self.device = mesh, device
        self.schedule = _schedule(schedule, stages, microbatches, self._loss)
        self._output_loss: Callable[..., torch.Tensor] | None = None
        self._scale = 1.0

    def __call__(
        self,
        batch: dict[str, Any],
        output_loss: Callable[[torch.Tensor, dict[str, Any]], torch.Tensor],
        *,
        training: bool,
        scale: float = 1.0,
    ) -> torch.Tensor:
        """The mean loss over the batch's micro-batches, on every pipeline rank.

        Args:
            batch: ``input_ids`` and ``labels`` [B, T] (unpadded, unpacked), or the plan's
                ``input_key`` (``images``) and its ``labels``, or what ``prepare`` takes.
            output_loss: ``(logits, {"labels": ...}) -> loss``, the module's loss.
            training: Run the backward too (gradients accumulate in the stages' parameters).
            scale: Divide each micro-batch's loss by this (Lightning's gradient accumulation).
        """
        inputs, labels = self.prepare(batch)  # NOTE: on every rank, so all refuse alike
        self._output_loss, self._scale = output_loss, scale
        args = inputs if self.first else ()
        target = labels if self.last else None
        losses: list[torch.Tensor] = []
        if training:
            self._zero_grad_at_window_start()
            self.schedule.step(*args, target=target, losses=losses, return_outputs=False)
        else:
            with torch.no_grad():
                self.schedule.eval(*args, target=target, losses=losses)
        return self._reduce(losses)

    def optimizer_stepped(self) -> None:
        """The optimizer consumed the gradients: the next step starts a new accumulation."""
        self._window_start = True

    def _zero_grad_at_window_start(self) -> None:
        if self._window_start:
            for module in self.modules:
                module.zero_grad(set_to_none=True)
            self._window_start = False

    def _loss(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return self._output_loss(output, {"labels": target}) / self._scale

    def _reduce(self, losses: list[torch.Tensor]) -> torch.Tensor:
        """Only the last stage has losses: sum over the pipeline ranks to give everyone theirs."""
        total = torch.zeros((), device=self.device)
        if self.last:
            total = torch.stack([loss.detach().float() for loss in losses]).mean() * self._scale
        dist.all_reduce(total, group=self.mesh.get_group())
        return total


def _schedule(name: str, stages: list[PipelineStage], microbatches: int, loss_fn: Callable):
    if name == "interleaved_1f1b":
        return ScheduleInterleaved1F1B(stages, microbatches, loss_fn=loss_fn)
    single = {"1f1b": Schedule1F1B, "gpipe": ScheduleGPipe}[name]
    return single(stages[0], microbatches, loss_fn=loss_fn)


def plain_inputs(batch: dict[str, Any], input_key: str) -> tuple[tuple, torch.Tensor]:
    """``((batch[input_key],), batch["labels"])`` for an unpadded batch of nothing else."""
    _check(batch, input_key)
    return (batch[input_key],), batch["labels"]


def _check(batch: dict[str, Any], input_key: str) -> None:
    extra = sorted(key for key in batch if key not in (*_TOKEN_KEYS, input_key))
    mask = batch.get("attention_mask")
    if extra or (mask is not None and not bool(mask.bool().all())):
        what = f"inputs {extra}" if extra else "padded batches"
        raise ConfigError(f"pipeline parallelism: {what} are not supported yet ({input_key} only)")
