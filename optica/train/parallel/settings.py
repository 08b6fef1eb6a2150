"""The strategy's settings and their validation, free of Lightning.

Whether a layout fits a model is decided by ``optica.autoconfig.layout`` (the one definition the
auto-configurator searches with too); this module only maps the settings onto a ``Layout``, adds
what the family's plan says it cannot do, and joins every problem into one line.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from optica.autoconfig.layout import Layout, LayoutError, layout_problems
from optica.models.modules.parallel import AC_MODES, DP_SHARDINGS, ParallelConfig
from optica.models.registry import family_for_model
from optica.run.errors import did_you_mean
from optica.train.parallel.fp8 import FP8_RECIPES, fp8_problems
from optica.train.parallel.pipeline import SCHEDULES

# ``optica.autoconfig.layout``'s wording for a sequence that CP chunks do not divide.
_CP_LENGTH_PROBLEM = "sequence length "


@dataclass(frozen=True)
class ParallelSettings:
    """See :class:`optica.train.strategy.ParallelStrategy` for each field."""

    tensor_model_parallel_size: int = 1
    pipeline_model_parallel_size: int = 1
    virtual_pipeline_model_parallel_size: int | None = None
    context_parallel_size: int = 1
    sequence_parallel: bool = False
    data_parallel_sharding: str = "fsdp"
    activation_checkpointing: str = "none"
    activation_checkpointing_layers: int | None = None
    compile: bool = False
    pipeline_schedule: str = "1f1b"
    pipeline_microbatches: int | None = None
    fp8: str | None = None

    tp = property(lambda self: self.tensor_model_parallel_size)
    pp = property(lambda self: self.pipeline_model_parallel_size)
    vp = property(lambda self: self.virtual_pipeline_model_parallel_size)
    cp = property(lambda self: self.context_parallel_size)

    @property
    def model_parallel_size(self) -> int:
        """Ranks one model replica spans: TP × PP × CP."""
        return self.tp * self.pp * self.cp

    def microbatches(self, micro_batch_size: int) -> int:
        """Pipeline micro-batches per micro-batch (default: one sample each)."""
        return self.pipeline_microbatches or micro_batch_size

    def parallel_config(self, precision: str) -> ParallelConfig:
        """What a family's plan receives, for Lightning's ``precision``."""
        bf16 = precision in ("bf16-mixed", "bf16-true")
        return ParallelConfig(
            sequence_parallel=self.sequence_parallel,
            activation_checkpointing=self.activation_checkpointing,
            activation_checkpointing_layers=self.activation_checkpointing_layers,
            compile=self.compile,
            data_parallel_sharding=self.data_parallel_sharding,
            param_dtype=torch.bfloat16 if bf16 else None,
            reduce_dtype=torch.float32 if bf16 else None,
        )

    def layout(
        self, world_size: int, micro_batch_size: int = 1, global_batch_size: int | None = None
    ) -> Layout:
        """The ``optica.autoconfig`` layout on ``world_size`` ranks. Under PP its micro-batch is a
        pipeline micro-batch, so the schedule's micro-batch count is what gets checked."""
        dp = max(world_size // self.model_parallel_size, 1)
        micro = micro_batch_size
        if self.pp > 1:
            micro = max(micro_batch_size // self.microbatches(micro_batch_size), 1)
            global_batch_size = micro * self.microbatches(micro_batch_size) * dp
        return Layout(
            tensor_model_parallel_size=self.tp,
            pipeline_model_parallel_size=self.pp,
            virtual_pipeline_model_parallel_size=self.vp,
            context_parallel_size=self.cp,
            data_parallel_size=dp,
            micro_batch_size=micro,
            global_batch_size=global_batch_size or micro * dp,
            sequence_parallel=self.sequence_parallel,
            use_distributed_optimizer=self.data_parallel_sharding == "fsdp",
            **self._recompute(),
        )

    def _recompute(self) -> dict[str, Any]:
        mode, layers = self.activation_checkpointing, self.activation_checkpointing_layers
        if mode != "full":
            return {"recompute_granularity": None if mode == "none" else mode}
        if layers is None:  # every layer: Megatron's "uniform" method with 1 layer per group
            return {"recompute_granularity": "full", "recompute_method": "uniform",
                    "recompute_num_layers": 1}  # fmt: skip
        return {"recompute_granularity": "full", "recompute_num_layers": layers}

    def validate(
        self,
        model: torch.nn.Module,
        world_size: int,
        micro_batch_size: int = 1,
        global_batch_size: int | None = None,
    ) -> None:
        """Raises ``LayoutError`` (one line, every problem) if ``model`` cannot run like this."""
        family = family_for_model(model)
        plan = family.parallel_plan
        if plan is None:
            found = self._planless_problems(family.name, world_size)
        else:
            layout = self.layout(world_size, micro_batch_size, global_batch_size)
            found = layout_problems(layout, plan.shape(model.config), world_size)
            if plan.pads_for_context_parallel:  # its sequences need not divide by CP
                found = [p for p in found if not p.startswith(_CP_LENGTH_PROBLEM)]
            found += self._plan_problems(plan, model.config, family.name, layout.dp)
        found += fp8_problems(self.fp8, self.tp)
        if self.pp > 1 and micro_batch_size % self.microbatches(micro_batch_size):
            found.append(
                f"micro_batch_size={micro_batch_size} is not divisible by "
                f"pipeline_microbatches={self.pipeline_microbatches}"
            )
        if found:
            name = type(model.config).__name__
            raise LayoutError(f"invalid parallel layout for {name}: " + "; ".join(found))

    def _plan_problems(self, plan: Any, config: Any, name: str, dp: int) -> list[str]:
        found = []
        if self.cp > 1 and not plan.context_parallel:
            found.append(f"family {name!r} has no context-parallel plan")
        if self.pp > 1 and plan.pipeline_stages is None:
            found.append(f"family {name!r} cannot be pipelined")
        if plan.problems is not None:
            sizes = {"tp": self.tp, "pp": self.pp, "cp": self.cp, "dp": dp}
            found += plan.problems(config, {**sizes, "sp": int(self.sequence_parallel)})
        return found

    def _planless_problems(self, name: str, world_size: int) -> list[str]:
        found = []
        if self.model_parallel_size > 1:
            found.append(f"family {name!r} has no parallel plan yet (data parallel only)")
        if world_size % self.model_parallel_size:
            mp = self.model_parallel_size
            found.append(f"world size {world_size} is not divisible by TP×PP×CP = {mp}")
        return found

    def option_problems(self) -> list[str]:
        """Settings that are wrong whatever the model (checked at construction)."""
        found = [
            f"{name} must be a positive integer, got {value!r}"
            for name, value, optional in (
                ("tensor_model_parallel_size", self.tp, False),
                ("pipeline_model_parallel_size", self.pp, False),
                ("context_parallel_size", self.cp, False),
                ("virtual_pipeline_model_parallel_size", self.vp, True),
                ("pipeline_microbatches", self.pipeline_microbatches, True),
            )
            if not (optional and value is None) and not _positive_int(value)
        ]
        for name, value, allowed in (
            ("data_parallel_sharding", self.data_parallel_sharding, DP_SHARDINGS),
            ("activation_checkpointing", self.activation_checkpointing, AC_MODES),
            ("pipeline_schedule", self.pipeline_schedule, SCHEDULES),
            ("fp8", self.fp8 or FP8_RECIPES[0], FP8_RECIPES),
        ):
            if value not in allowed:
                hint = did_you_mean(str(value), allowed)
                found.append(f"{name}={value!r} is not one of {allowed}{hint}")
        full = self.activation_checkpointing == "full"
        if self.activation_checkpointing_layers is not None and not full:
            found.append("activation_checkpointing_layers needs activation_checkpointing='full'")
        if self.pp > 1 and self.cp > 1:
            found.append("context parallelism with pipeline parallelism is not supported yet")
        if (self.pipeline_schedule == "interleaved_1f1b") != (self.vp is not None):
            found.append("interleaved_1f1b goes with virtual_pipeline_model_parallel_size")
        return found


def _positive_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1
