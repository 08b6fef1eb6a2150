"""The runner's pieces that need no process: shape → optica model/data/strategy configs, the
failure messages read from logs, limits, and the candidate's task as it will be launched."""

import csv
import dataclasses
from pathlib import Path

import pytest
import torch

from optica import autoconfig as ac
from optica import run
from optica.autoconfig.runnable import data_config, model_config, strategy_config
from optica.autoconfig.runner import (
    Launch,
    RunLimits,
    candidate_task,
    executor_for,
    failure_message,
)
from optica.models import LlamaConfigTiny, LlavaConfigTiny
from optica.models.language.llama.parallelize import llama_shape
from optica.run.errors import ConfigError
from optica.run.job import State

TINY = llama_shape(LlamaConfigTiny())


def test_a_llama_shape_builds_the_same_llama():
    model = run.build(model_config(TINY))
    assert llama_shape(model.config).language == TINY.language
    # The model pads its vocabulary (250 → 256) in the embedding and the output layer.
    padding = 2 * (model.config.padded_vocab_size - 250) * 64
    total = sum(p.numel() for p in model.parameters())
    assert total == ac.count_parameters(TINY) + padding == 119_104


def test_a_llava_shape_builds_llava_with_a_clip_tower():
    tiny = LlavaConfigTiny()
    vision = tiny.vision_transformer_config
    shape = ac.ModelShape(
        name="tiny_llava",
        language=llama_shape(tiny.language_transformer_config).language,
        vision=ac.VisionShape(
            hidden_size=vision.hidden_size, ffn_hidden_size=vision.ffn_hidden_size,
            num_layers=vision.num_layers, num_attention_heads=vision.num_attention_heads,
            image_size=32, patch_size=4, patch_bias=False, pre_norm=True,
        ),
        projector=ac.ProjectorShape(input_size=64, output_size=96),
    )  # fmt: skip
    config = run.build(model_config(shape)).config
    assert config.vision_transformer_config.patch_dim == 4
    assert config.language_transformer_config.hidden_size == 96
    data = data_config(shape, ac.Layout(micro_batch_size=2, global_batch_size=4),
                       num_train_samples=8)  # fmt: skip
    assert (data.image_token_len, data.num_images, data.image_size) == (64, 1, 32)


@pytest.mark.parametrize(
    ("name", "why"),
    [("gpt3_125m", "learned positions"), ("mixtral_8x7b", "mixture-of-experts"),
     ("nemotron3_8b", "a non-gated MLP"), ("gemma_2b", "a gelu_tanh MLP, not SiLU")],
)  # fmt: skip
def test_families_the_runner_cannot_launch_say_why(name, why):
    with pytest.raises(ConfigError, match=f"cannot launch {name}: .*{why}"):
        model_config(ac.model_shape(name))


def test_a_vit_shape_builds_the_same_vit_with_labelled_images():
    shape = ac.model_shape("vit_b16")
    config = run.build(model_config(shape)).config
    assert (config.hidden_size, config.num_layers, config.patch_dim) == (768, 12, 16)
    assert (config.num_classes, config.img_h, config.hidden_dropout) == (1000, 224, 0.1)
    tiny = run.build(model_config(ac.model_shape("vit_tiny")))
    assert sum(p.numel() for p in tiny.parameters()) == ac.count_parameters(
        ac.model_shape("vit_tiny")
    )
    layout = ac.Layout(micro_batch_size=2, global_batch_size=4)
    data = run.build(data_config(ac.model_shape("vit_tiny"), layout, num_train_samples=8))
    batch = next(iter(data.train_dataloader()))
    assert set(batch) == {"images", "labels"} and batch["images"].shape == (2, 3, 32, 32)
    assert batch["labels"].shape == (2,) and int(batch["labels"].max()) < 10
    tiny.init_weights(0)
    assert tiny(batch["images"]).shape == (2, 10)


def test_a_language_model_gets_token_batches_only():
    layout = ac.Layout(micro_batch_size=2, global_batch_size=4)
    data = run.build(data_config(TINY, layout, num_train_samples=8))
    batch = next(iter(data.train_dataloader()))
    assert set(batch) == {"input_ids", "labels"} and batch["input_ids"].shape == (2, 256)
    assert torch.equal(batch["input_ids"], batch["labels"])  # pre-training: every token


def test_strategy_and_data_follow_the_layout():
    layout = ac.Layout(
        tensor_model_parallel_size=2, pipeline_model_parallel_size=2, data_parallel_size=2,
        micro_batch_size=2, global_batch_size=16, recompute_granularity="full",
        recompute_num_layers=1, sequence_parallel=True, use_distributed_optimizer=False,
    )  # fmt: skip
    strategy = strategy_config(layout)
    assert (strategy.tensor_model_parallel_size, strategy.pipeline_model_parallel_size) == (2, 2)
    assert strategy.data_parallel_sharding == "ddp" and strategy.sequence_parallel
    assert strategy.activation_checkpointing == "full"
    assert strategy.activation_checkpointing_layers == 1
    # 16 / (2 × 2) = 4 pipeline micro-batches of 2 samples in one data micro-batch of 8.
    assert strategy.pipeline_microbatches == 4
    data = data_config(TINY, layout, num_train_samples=64)
    assert (data.micro_batch_size, data.global_batch_size) == (8, 16)
    settings = run.build(strategy).settings
    assert settings.layout(8, 8, 16).micro_batch_size == 2  # the trainer reads the same layout


def test_the_task_is_a_pretrain_with_the_probe_and_limits(tmp_path):
    cluster = ac.Cluster(num_nodes=1, gpus_per_node=2, gpu=ac.gpu_preset("h100"))
    result = ac.search(TINY, cluster, space=ac.SearchSpace(micro_batch_sizes=(2,),
                       global_batch_sizes=(8,), recompute_num_layers=(0,)))  # fmt: skip
    limits, launch = RunLimits(max_steps_per_run=7, max_minutes_per_run=3), Launch()
    task = candidate_task(result, result.top(1)[0], tmp_path / "rank_01", limits, launch)
    assert task.__fn_or_cls__.__name__ == "pretrain"
    assert task.trainer.max_steps == 7 and task.trainer.devices == 2
    (probe,) = task.trainer.callbacks
    assert probe.max_minutes == 3 and probe.output_dir == str(tmp_path / "rank_01/run/autoconfig")
    run.from_yaml(run.to_yaml(task))  # it survives the trip to the launched process
    local = executor_for(result, launch, limits)
    assert (local.ntasks_per_node, local.launcher) == (2, "torchrun")
    slurm = executor_for(result, Launch(executor="slurm", partition="p"), limits)
    assert (slurm.time, slurm.partition, slurm.gpus_per_node) == ("00:08:00", "p", 2)


def test_lora_and_a_frozen_vision_tower_become_finetune(tmp_path):
    cluster = ac.Cluster(num_nodes=1, gpus_per_node=1, gpu=ac.gpu_preset("h100"))
    training = ac.Training(lora=ac.Lora(dim=8, target_modules=("linear_qkv",)))
    result = ac.search(TINY, cluster, training=training,
                       space=ac.SearchSpace(global_batch_sizes=(8,)))  # fmt: skip
    task = candidate_task(result, result.top(1)[0], tmp_path / "r", RunLimits(), Launch())
    assert task.__fn_or_cls__.__name__ == "finetune"
    assert task.peft.dim == 8 and task.peft.target_modules == ["linear_qkv"]


@pytest.mark.parametrize(
    ("log", "code", "expected"),
    [
        ("step 1\ntorch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2 GiB\n", 1,
         ("torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2 GiB", "oom")),
        ("loading\n", -9, ("killed by SIGKILL (exit -9): likely the kernel's OOM killer", "oom")),
        ("Traceback:\noptica.run.errors.ConfigError: pipeline parallelism: inputs x\n"
         "torch.distributed.elastic.multiprocessing.errors.ChildFailedError: \n", 1,
         ("optica.run.errors.ConfigError: pipeline parallelism: inputs x", "error")),
        ("", 2, ("FAILED (exit code 2): no output", "error")),
    ],
)  # fmt: skip
def test_failure_messages_name_the_real_error(log, code, expected):
    assert failure_message(log, code, State.FAILED) == expected


def test_limits_and_launch_are_checked():
    with pytest.raises(ConfigError, match="max_steps_per_run must be >= 1"):
        RunLimits(max_steps_per_run=0)
    with pytest.raises(ConfigError, match="max_minutes_per_run must be positive"):
        RunLimits(max_minutes_per_run=0)
    with pytest.raises(ConfigError, match="executor must be one of"):
        Launch(executor="k8s")
    assert RunLimits(max_minutes_per_run=2, startup_grace_minutes=1).wall_limit_s == 180


def test_local_executor_refuses_several_nodes(tmp_path):
    cluster = ac.Cluster(num_nodes=2, gpus_per_node=1, gpu=ac.gpu_preset("h100"))
    result = ac.search(TINY, cluster, space=ac.SearchSpace(global_batch_sizes=(8,)))
    with pytest.raises(ConfigError, match="use slurm for num_nodes > 1"):
        ac.AutoConfigurator(TINY, cluster, top_k=1).run(
            Path(tmp_path), result=result, launch=Launch(executor="local")
        )


def test_tied_embeddings_launch_at_tp_pp_1_only(tmp_path):
    """The search predicts a tied model under TP (NeMo runs it); optica's Llama ties the
    embedding and output layer on one rank only, so such a candidate is refused before any
    launch and recorded in failed.csv with the reason."""
    tied = dataclasses.replace(
        TINY, name="tiny_tied", language=dataclasses.replace(TINY.language, tied_embeddings=True)
    )
    cluster = ac.Cluster(num_nodes=1, gpus_per_node=2, gpu=ac.gpu_preset("h100"))
    space = ac.SearchSpace(tensor_parallel_sizes=(1, 2), pipeline_parallel_sizes=(1,),
                           micro_batch_sizes=(2,), global_batch_sizes=(8,),
                           recompute_num_layers=(0,))  # fmt: skip
    result = ac.search(tied, cluster, space=space)
    by_tp = {c.layout.tp: c for c in result.candidates if c.layout.cp == 1}
    task = candidate_task(result, by_tp[1], tmp_path / "tp1", RunLimits(), Launch())
    assert run.build(task.model).config.share_embeddings_and_output_weights
    with pytest.raises(ConfigError, match=r"cannot launch tiny_tied as TP2 PP1 .*TP = PP = 1 only"):
        candidate_task(result, by_tp[2], tmp_path / "tp2", RunLimits(), Launch())
    only_tp2 = dataclasses.replace(space, tensor_parallel_sizes=(2,))
    measured = ac.AutoConfigurator(tied, cluster, space=only_tp2, top_k=1).run(tmp_path / "run")
    (outcome,) = measured.outcomes
    assert outcome.error_type == "config" and outcome.log is None  # never launched
    (failed,) = csv.DictReader(measured.failed_csv.open())
    assert "TP = PP = 1 only" in failed["Error"]


def test_stepping_in_backward_reaches_the_candidates_optimizer(tmp_path):
    cluster = ac.Cluster(num_nodes=1, gpus_per_node=1, gpu=ac.gpu_preset("h100"))
    training = ac.Training(step_in_backward=True)
    space = ac.SearchSpace(global_batch_sizes=(2,), micro_batch_sizes=(2,))
    result = ac.search(TINY, cluster, training=training, space=space)
    task = candidate_task(result, result.top(1)[0], tmp_path / "r", RunLimits(), Launch())
    assert task.optim.step_in_backward and task.trainer.gradient_clip_val is None
    plain = ac.search(TINY, cluster, space=ac.SearchSpace(global_batch_sizes=(2,)))
    assert "optim" not in candidate_task(plain, plain.top(1)[0], tmp_path / "p", RunLimits(),
                                         Launch()).__arguments__  # fmt: skip
