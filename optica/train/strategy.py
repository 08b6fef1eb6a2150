"""``ParallelStrategy``: the seed's ``MegatronStrategy`` settings on PyTorch's own distributed
engine (DeviceMesh, DTensor, FSDP2, ``torch.distributed.pipelining``, DCP), as a Lightning
strategy.

    trainer = TrainerConfig(devices=8, strategy=ParallelStrategy(
        tensor_model_parallel_size=2, pipeline_model_parallel_size=2, sequence_parallel=True))

What it does, in order:

1. validates the degrees against the model with ``optica.autoconfig.layout`` (the one definition
   of a valid layout) and the family's own limits, before any process group exists; every
   problem is reported in one line;
2. builds the ``pp × dp × cp × tp`` mesh (``optica.train.parallel.mesh``);
3. once the model is materialised, hands it to its family's plan (``Family.parallel_plan``),
   which applies TP/SP → CP → activation checkpointing → compile → FSDP/DDP from outside the
   model (after FP8 conversion, and after cutting it into pipeline stages);
4. runs each step: context-parallel batches are split along the sequence, pipelined steps go
   through the schedule (which also runs the backward);
5. saves and loads distributed checkpoints that any other layout can resume
   (``optica.train.parallel.checkpoint``).

Families without a plan (yet) get data parallelism only. Process groups are not destroyed here:
every optica entry point ends with ``optica.run.teardown.shutdown_distributed`` (the gloo exit
crash).
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import torch
from lightning.fabric.plugins.collectives.torch_collective import default_pg_timeout
from lightning.pytorch.core.optimizer import LightningOptimizer
from lightning.pytorch.strategies import ModelParallelStrategy
from torch.distributed.checkpoint.state_dict import (
    get_model_state_dict,
    get_optimizer_state_dict,
    set_model_state_dict,
    set_optimizer_state_dict,
)

from optica.models.modules.parallel import apply_data_parallel
from optica.models.registry import family_for_model
from optica.run.cli.registry import factory
from optica.run.config import Config
from optica.run.errors import ConfigError
from optica.train.parallel.checkpoint import (
    DistributedCheckpointer,
    optimizer_groups_by_name,
    optimizer_state_from_groups,
)
from optica.train.parallel.clip import clip_grad_norm_
from optica.train.parallel.context import split_for_context_parallel
from optica.train.parallel.export import MODEL_CONFIG_FILE, model_config_text
from optica.train.parallel.fp8 import apply_fp8
from optica.train.parallel.mesh import build_mesh
from optica.train.parallel.pipeline import PipelineRunner, stage_ids
from optica.train.parallel.settings import ParallelSettings


class ParallelStrategy(ModelParallelStrategy):
    """Tensor, sequence, context, pipeline and data parallelism, configured like NeMo's
    ``MegatronStrategy``; the data-parallel size is what the world leaves over.

    Args:
        tensor_model_parallel_size: TP: each layer's matrices split over this many ranks.
        pipeline_model_parallel_size: PP: the layers split into this many stages.
        virtual_pipeline_model_parallel_size: Stages per PP rank (interleaved 1F1B), or None.
        context_parallel_size: CP: each sequence split over this many ranks.
        sequence_parallel: Also shard norms and the residual stream over the TP ranks.
        data_parallel_sharding: ``fsdp`` (FSDP2: parameters, gradients and optimizer states
            sharded — Megatron's distributed optimizer and more) or ``ddp`` (replicated).
        ckpt_async_save: Write checkpoints in the background.
        activation_checkpointing: ``none``, ``selective`` (attention core) or ``full``.
        activation_checkpointing_layers: With ``full``: the first N layers of each stage only.
        compile: ``torch.compile`` each layer.
        pipeline_schedule: ``1f1b`` or ``gpipe``; ``interleaved_1f1b`` (the default) with a
            virtual size.
        pipeline_microbatches: Pipeline micro-batches per micro-batch (default: one sample each).
        fp8: torchao float8 recipe (``tensorwise``, ``rowwise``, ``hybrid``) or None; GPUs with
            compute capability >= 8.9 only.
        process_group_backend: Default: ``nccl`` on GPUs, ``gloo`` on CPUs.
        timeout: Collective timeout.
    """

    def __init__(
        self,
        *,
        tensor_model_parallel_size: int = 1,
        pipeline_model_parallel_size: int = 1,
        virtual_pipeline_model_parallel_size: int | None = None,
        context_parallel_size: int = 1,
        sequence_parallel: bool = False,
        data_parallel_sharding: str = "fsdp",
        ckpt_async_save: bool = False,
        activation_checkpointing: str = "none",
        activation_checkpointing_layers: int | None = None,
        compile: bool = False,
        pipeline_schedule: str | None = None,
        pipeline_microbatches: int | None = None,
        fp8: str | None = None,
        process_group_backend: str | None = None,
        timeout: timedelta | None = default_pg_timeout,
    ) -> None:
        super().__init__(process_group_backend=process_group_backend, timeout=timeout)
        interleaved = virtual_pipeline_model_parallel_size is not None
        self.settings = ParallelSettings(
            tensor_model_parallel_size=tensor_model_parallel_size,
            pipeline_model_parallel_size=pipeline_model_parallel_size,
            virtual_pipeline_model_parallel_size=virtual_pipeline_model_parallel_size,
            context_parallel_size=context_parallel_size,
            sequence_parallel=sequence_parallel,
            data_parallel_sharding=data_parallel_sharding,
            activation_checkpointing=activation_checkpointing,
            activation_checkpointing_layers=activation_checkpointing_layers,
            compile=compile,
            pipeline_schedule=pipeline_schedule or ("interleaved_1f1b" if interleaved else "1f1b"),
            pipeline_microbatches=pipeline_microbatches,
            fp8=fp8,
        )
        self._checkpoints = DistributedCheckpointer(async_save=ckpt_async_save)
        found = self.settings.option_problems()
        if found:
            raise ConfigError("ParallelStrategy: " + "; ".join(found))

    @property
    def model_parallel_size(self) -> int:
        """Ranks one model replica spans: TP × PP × CP."""
        return self.settings.model_parallel_size

    @property
    def data_parallel_size(self) -> int:
        """Model replicas: the world over TP × PP × CP."""
        return max(self.world_size // self.model_parallel_size, 1)

    @property
    def distributed_sampler_kwargs(self) -> dict[str, Any]:
        """Data-parallel ranks get different samples; TP/CP/PP peers get the same ones."""
        dp = self.device_mesh["dp"]
        return {"num_replicas": dp.size(), "rank": dp.get_local_rank()}

    def validate(self, model: torch.nn.Module, world_size: int, micro_batch_size: int = 1,
                 global_batch_size: int | None = None) -> None:  # fmt: skip
        """Raises ``LayoutError`` (one line, every problem) if ``model`` cannot run like this on
        ``world_size`` ranks (see :meth:`ParallelSettings.validate`)."""
        self.settings.validate(model, world_size, micro_batch_size, global_batch_size)

    # -- setup ----------------------------------------------------------------------------------

    def setup_environment(self) -> None:
        module = self.lightning_module
        micro, global_ = _batch_sizes(module)
        self.validate(module.model, self.num_nodes * self.num_processes, micro, global_)
        if _adds_adapters(getattr(module, "peft", None)) and self.model_parallel_size > 1:
            raise ConfigError(
                "ParallelStrategy: PEFT (LoRA) with TP, PP or CP > 1 is not supported yet (the "
                "adapters are not sharded); LoRA runs data-parallel: data_parallel_sharding=ddp "
                "or fsdp with TP = PP = CP = 1"
            )
        self._setup_distributed()
        if self._device_mesh is None:  # fit, then validate: the same mesh and parallel model
            settings, device = self.settings, self.root_device.type
            self._device_mesh = build_mesh(
                dp=self.data_parallel_size, pp=settings.pp, cp=settings.cp, tp=settings.tp,
                device_type=device,
            )  # fmt: skip
        module._device_mesh = self._device_mesh

    def setup(self, trainer: Any) -> None:
        self._parallelize(self.lightning_module)
        super().setup(trainer)
        # NOTE: Lightning clips through the precision plugin, with a norm that must be global.
        self.precision_plugin.clip_grad_by_norm = self._clip_grad_by_norm

    @contextlib.contextmanager
    def block_backward_sync(self) -> Iterator[None]:
        """Lightning runs every micro-batch of an accumulation window but the last inside this.
        Under DDP (FSDP2's ``replicate``) their gradients then add up locally and the last
        micro-batch all-reduces the sum once: the same mean (the reduction is linear) for one
        collective instead of one per micro-batch. FSDP keeps reduce-scattering each
        micro-batch: skipping it would hold whole unsharded gradients until the last one."""
        modules = self._replicated_modules()
        for module in modules:
            module.set_requires_gradient_sync(False, recurse=False)
        try:
            yield
        finally:
            for module in modules:
                module.set_requires_gradient_sync(True, recurse=False)

    def _replicated_modules(self) -> list[Any]:
        if self.settings.data_parallel_sharding != "ddp" or self.settings.pp > 1:
            return []
        from torch.distributed.fsdp import FSDPModule

        return [m for m in self.lightning_module.modules() if isinstance(m, FSDPModule)]

    def _clip_grad_by_norm(self, optimizer: Any, clip_val: float) -> None:
        parameters = [p for group in optimizer.param_groups for p in group["params"]]
        pp = self.device_mesh["pp"]
        clip_grad_norm_(parameters, clip_val, pp.get_group() if pp.size() > 1 else None)

    def _parallelize(self, module: Any) -> None:
        """FP8 → pipeline stages → the family's plan on each part; once per module."""
        done = getattr(module, "_parallel_mesh", None)
        if done is self.device_mesh:
            return
        if done is not None:
            raise ConfigError("ParallelStrategy: this model was parallelised by another trainer")
        model, mesh = module.model, self.device_mesh
        config = self.settings.parallel_config(self.precision_plugin.precision)
        plan = family_for_model(model).parallel_plan
        if self.settings.fp8:
            apply_fp8(model, self.settings.fp8)
        parts = [model]
        if self.settings.pp > 1:
            parts = self._pipeline(module, plan)
        for part in parts:
            if plan is None:
                apply_data_parallel(part, [], mesh["dp_cp"], config)
            else:
                plan.parallelize(part, mesh, config)
        module._parallel_mesh = mesh

    def _pipeline(self, module: Any, plan: Any) -> list[torch.nn.Module]:
        settings, pp = self.settings, self.device_mesh["pp"]
        ids = stage_ids(pp.get_local_rank(), settings.pp, settings.vp or 1)
        num_stages = settings.pp * (settings.vp or 1)
        stages = plan.pipeline_stages(module.model, ids, num_stages)
        microbatches = settings.microbatches(_batch_sizes(module)[0])
        prepare = None
        if plan.pipeline_batch is not None:
            prepare = functools.partial(plan.pipeline_batch, model=module.model)
        module.loss_runner = PipelineRunner(
            stages,
            ids,
            num_stages,
            pp,
            self.root_device,
            settings.pipeline_schedule,
            microbatches,
            input_key=plan.pipeline_input,
            prepare=prepare,
        )
        return stages

    # -- steps ----------------------------------------------------------------------------------

    def batch_to_device(
        self, batch: Any, device: torch.device | None = None, dataloader_idx: int = 0
    ) -> Any:
        batch = super().batch_to_device(batch, device, dataloader_idx)
        if self.settings.cp > 1:
            cp, model = self.device_mesh["cp"], self.lightning_module.model
            split = family_for_model(model).parallel_plan.split_batch
            if split is None:
                return split_for_context_parallel(batch, cp.get_local_rank(), cp.size())
            return split(batch, model, cp.get_local_rank(), cp.size())
        return batch

    def backward(
        self, closure_loss: torch.Tensor, optimizer: Any, *args: Any, **kwargs: Any
    ) -> torch.Tensor:
        if getattr(self.lightning_module, "loss_runner", None) is None:
            return super().backward(closure_loss, optimizer, *args, **kwargs)
        # NOTE: the pipeline schedule already ran the backward; only the hooks remain.
        module = self.lightning_module
        closure_loss = self.precision_plugin.pre_backward(closure_loss, module)
        return self.precision_plugin.post_backward(closure_loss, module)

    def optimizer_step(self, optimizer: Any, closure: Any, model: Any = None, **kwargs: Any) -> Any:
        result = super().optimizer_step(optimizer, closure, model, **kwargs)
        runner = getattr(self.lightning_module, "loss_runner", None)
        if runner is not None:
            runner.optimizer_stepped()
        return result

    # -- checkpoints ----------------------------------------------------------------------------

    def lightning_module_state_dict(self) -> dict[str, Any]:
        return get_model_state_dict(self.model)

    def optimizer_state(self, optimizer: Any) -> dict[str, Any]:
        if isinstance(optimizer, LightningOptimizer):
            optimizer = optimizer._optimizer
        return optimizer_groups_by_name(get_optimizer_state_dict(self.model, optimizer))

    def save_checkpoint(
        self, checkpoint: dict[str, Any], filepath: Any, storage_options: Any = None
    ) -> None:
        """Writes ``filepath`` as a checkpoint directory (atomically; in the background with
        ``ckpt_async_save``), with the model's config, so it exports without the run's config
        (``optica.train.parallel.export``)."""
        path = Path(self.broadcast(str(filepath)))
        tensors = {"state_dict": checkpoint.pop("state_dict")}
        for index, state in enumerate(checkpoint.pop("optimizer_states", [])):
            tensors[f"optimizer_{index}"] = state
        files = {MODEL_CONFIG_FILE: model_config_text(self.lightning_module.model)}
        self._checkpoints.save(tensors, checkpoint, path, files)

    def load_checkpoint(
        self, checkpoint_path: Any, weights_only: bool | None = None
    ) -> dict[str, Any]:
        """Fills the (already parallelised) model and optimizers from a checkpoint directory
        written under any layout; returns the rest of the checkpoint for Lightning."""
        path = Path(self.broadcast(str(checkpoint_path)))
        module = self.lightning_module
        model_state = get_model_state_dict(module)
        current = [get_optimizer_state_dict(module, o) for o in self.optimizers]
        tensors = {"state_dict": model_state}
        tensors.update(
            {f"optimizer_{i}": optimizer_groups_by_name(s) for i, s in enumerate(current)}
        )
        metadata = self._checkpoints.load(tensors, path)
        set_model_state_dict(module, model_state)
        for index, optimizer in enumerate(self.optimizers):
            state = optimizer_state_from_groups(tensors[f"optimizer_{index}"], current[index])
            set_optimizer_state_dict(module, optimizer, optim_state_dict=state)
        return metadata

    def remove_checkpoint(self, filepath: Any) -> None:
        if self._checkpoints.pending_path() == Path(filepath):
            self._checkpoints.finish()
        super().remove_checkpoint(filepath)

    def teardown(self) -> None:
        self._checkpoints.finish()
        super().teardown()


@factory(name="parallel")
def parallel_strategy(
    tensor_model_parallel_size: int = 1,
    pipeline_model_parallel_size: int = 1,
    context_parallel_size: int = 1,
    data_parallel_sharding: str = "fsdp",
) -> Config[ParallelStrategy]:
    """``trainer.strategy=parallel`` (then ``trainer.strategy.<key>=``), or e.g.
    ``trainer.strategy="parallel(tensor_model_parallel_size=2)"`` on the command line."""
    return Config(
        ParallelStrategy,
        tensor_model_parallel_size=tensor_model_parallel_size,
        pipeline_model_parallel_size=pipeline_model_parallel_size,
        context_parallel_size=context_parallel_size,
        data_parallel_sharding=data_parallel_sharding,
    )


def _batch_sizes(module: Any) -> tuple[int, int | None]:
    """(micro, global) batch sizes from the data module, when it declares them."""
    data = getattr(getattr(module, "_trainer", None), "datamodule", None)
    micro = getattr(data, "micro_batch_size", None)
    global_ = getattr(data, "global_batch_size", None)
    return (micro if isinstance(micro, int) else 1), (global_ if isinstance(global_, int) else None)


def _adds_adapters(peft: Any) -> bool:
    """LoRA adds (unsharded) adapter layers; plain freezing (``peft=freeze``) adds nothing and
    runs under any layout."""
    from optica.train.peft import Freeze

    return peft is not None and not isinstance(peft, Freeze)
