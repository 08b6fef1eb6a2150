"""ParallelStrategy without processes: layout validation (one line, every problem), options,
the data-parallel size the trainer derives, and refusals that must come before any launch."""

import dataclasses

import pytest
import torch
import torch.distributed as dist

import optica.train.parallel.settings as settings_module
from optica.autoconfig.layout import LayoutError
from optica.models import LlamaConfigTiny, LlamaModel
from optica.models.registry import family_for_model
from optica.run.errors import ConfigError
from optica.train.api import finetune
from optica.train.exp_manager import ExpManager
from optica.train.strategy import ParallelStrategy
from optica.train.trainer import TrainerConfig, data_parallel_size
from tests.integration.test_train_loop import CopyData


def tiny(**overrides):
    return LlamaModel(LlamaConfigTiny(**overrides))


def problems(world_size, model=None, **settings):
    with pytest.raises(LayoutError) as error:
        ParallelStrategy(**settings).validate(model or tiny(), world_size)
    message = str(error.value)
    assert "\n" not in message and message.startswith("invalid parallel layout for ")
    return message


def test_every_problem_is_named_in_one_line():
    message = problems(12, tensor_model_parallel_size=3, pipeline_model_parallel_size=4)
    assert "num_attention_heads=4 is not divisible by TP=3" in message
    assert "num_query_groups (KV heads)=2 is not divisible by TP=3" in message
    assert "num_layers=2 is not divisible by PP=4" in message
    assert "padded vocabulary 256 is not divisible by TP=3" in message  # the family's own check


def test_world_size_must_be_the_product_of_the_degrees():
    message = problems(3, tensor_model_parallel_size=2)
    assert "DP×TP×PP×CP = 1×2×1×1 = 2 but the world size is 3" in message


@pytest.mark.parametrize(
    ("settings", "expected"),
    [
        ({"sequence_parallel": True}, "sequence_parallel needs TP > 1"),
        ({"context_parallel_size": 3}, "sequence length 256 is not divisible by 6 (CP=3)"),
        (
            {"pipeline_model_parallel_size": 2, "virtual_pipeline_model_parallel_size": 2},
            "num_layers=2 is not divisible by PP×VP = 2×2",
        ),
        (
            {
                "pipeline_model_parallel_size": 2,
                "virtual_pipeline_model_parallel_size": 1,
                "pipeline_microbatches": 1,
            },
            "the interleaved schedule needs micro-batches (1) divisible by PP=2",
        ),
    ],
)
def test_layout_checks_come_from_autoconfig(settings, expected):
    world = settings.get("context_parallel_size", 1) * settings.get(
        "pipeline_model_parallel_size", 1
    )
    assert expected in problems(world, **settings)


def test_valid_layouts_pass():
    model = tiny(num_layers=4)
    ParallelStrategy(tensor_model_parallel_size=2, sequence_parallel=True).validate(model, 4)
    ParallelStrategy(pipeline_model_parallel_size=2, data_parallel_sharding="ddp").validate(
        model, 8
    )
    interleaved = ParallelStrategy(
        pipeline_model_parallel_size=2, virtual_pipeline_model_parallel_size=2
    )
    interleaved.validate(model, 2, micro_batch_size=8, global_batch_size=8)


def test_family_limits_are_checked():
    message = problems(
        2, tiny(share_embeddings_and_output_weights=True), tensor_model_parallel_size=2
    )
    assert "share_embeddings_and_output_weights needs TP = PP = 1" in message


def test_a_family_without_a_plan_gets_data_parallelism_only(monkeypatch):
    model = tiny()
    planless = dataclasses.replace(family_for_model(model), parallel_plan=None)
    monkeypatch.setattr(settings_module, "family_for_model", lambda m: planless)
    ParallelStrategy().validate(model, 4)  # DP=4 is fine
    assert "family 'llama' has no parallel plan yet" in problems(
        2, model, tensor_model_parallel_size=2
    )


def test_pipeline_microbatches_must_divide_the_micro_batch():
    strategy = ParallelStrategy(pipeline_model_parallel_size=2, pipeline_microbatches=3)
    with pytest.raises(
        LayoutError, match="micro_batch_size=8 is not divisible by pipeline_microbatches=3"
    ):
        strategy.validate(tiny(), 2, micro_batch_size=8)


@pytest.mark.parametrize(
    ("settings", "expected"),
    [
        ({"data_parallel_sharding": "zero3"}, "data_parallel_sharding='zero3' is not one of"),
        ({"activation_checkpointing": "ful"}, "did you mean 'full'"),
        ({"activation_checkpointing_layers": 2}, "activation_checkpointing_layers needs"),
        (
            {"pipeline_schedule": "interleaved_1f1b"},
            "goes with virtual_pipeline_model_parallel_size",
        ),
        (
            {"pipeline_model_parallel_size": 2, "context_parallel_size": 2},
            "context parallelism with pipeline parallelism is not supported yet",
        ),
        ({"tensor_model_parallel_size": 0}, "tensor_model_parallel_size must be a positive"),
        ({"context_parallel_size": -1}, "context_parallel_size must be a positive integer"),
        (
            {"pipeline_model_parallel_size": 2, "virtual_pipeline_model_parallel_size": 0},
            "virtual_pipeline_model_parallel_size must be a positive integer, got 0",
        ),
        ({"pipeline_microbatches": -2}, "pipeline_microbatches must be a positive integer"),
    ],
)
def test_bad_options_fail_at_construction_in_one_line(settings, expected):
    with pytest.raises(ConfigError) as error:
        ParallelStrategy(**settings)
    assert expected in str(error.value) and "\n" not in str(error.value)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on machines without GPU")
def test_fp8_is_refused_without_a_capable_gpu():
    message = problems(1, fp8="hybrid")
    assert (
        "fp8 needs an NVIDIA GPU with compute capability >= 8.9 and none is visible here" in message
    )


def test_the_trainer_derives_data_parallelism_from_the_strategy():
    strategy = ParallelStrategy(tensor_model_parallel_size=2, pipeline_model_parallel_size=2)
    assert data_parallel_size(TrainerConfig(devices=8, max_steps=1, strategy=strategy)) == 2
    assert data_parallel_size(TrainerConfig(devices=8, max_steps=1)) == 8


def test_layout_maps_the_settings_onto_autoconfig():
    strategy = ParallelStrategy(
        tensor_model_parallel_size=2,
        activation_checkpointing="full",
        activation_checkpointing_layers=1,
        data_parallel_sharding="ddp",
    )
    layout = strategy.settings.layout(8, micro_batch_size=2, global_batch_size=32)
    assert (layout.tp, layout.dp, layout.num_microbatches) == (2, 4, 4)
    assert (layout.recompute_granularity, layout.recompute_num_layers) == ("full", 1)
    assert not layout.use_distributed_optimizer


def test_a_bad_layout_stops_finetune_before_any_process_group(tmp_path):
    trainer = TrainerConfig(
        devices=1,
        accelerator="cpu",
        max_steps=1,
        enable_progress_bar=False,
        strategy=ParallelStrategy(tensor_model_parallel_size=2),
    )
    log = ExpManager(exp_dir=str(tmp_path), name="bad", ckpt=None)
    with pytest.raises(LayoutError, match="= 2 but the world size is 1"):
        finetune(tiny(), CopyData(8, 8), trainer, log=log)
    assert not dist.is_initialized()
