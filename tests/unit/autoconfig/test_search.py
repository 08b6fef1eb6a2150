"""The search: constraints, pruning, ranking, candidates.csv and the top-k configs."""

import csv

import pytest

from optica import autoconfig as ac
from optica import run
from optica.autoconfig import (
    AutoConfigurator,
    Cluster,
    Layout,
    SearchSpace,
    Training,
    gpu_preset,
    model_shape,
    search,
)
from optica.autoconfig.memory import GIB
from optica.autoconfig.search import default_global_batch_size
from optica.run.errors import ConfigError

LLAMA = model_shape("llama2_7b")
NODE_H200 = Cluster(1, 8, gpu_preset("h200"))
COLUMNS = [
    "rank", "tp", "pp", "cp", "ep", "vp", "dp", "mbs", "gbs", "act_ckpt_layers",
    "sequence_parallel", "distributed_optimizer", "memory_per_gpu_gib", "weights_gib",
    "gradients_gib", "optimizer_gib", "activations_gib", "gathered_gib", "peak_at", "fits",
    "step_time_s", "bubble_s", "samples_per_s", "tflops_per_gpu",
]  # fmt: skip


def test_every_candidate_is_valid_and_ranked_by_throughput():
    result = search(LLAMA, NODE_H200, space=SearchSpace(global_batch_sizes=(128,)))
    assert len(result.candidates) > 100
    for candidate in result.candidates:
        candidate.layout.validate(LLAMA, 8)  # the trainer's own check
        budget = 141 * GIB * 0.9
        assert candidate.fits == (candidate.memory.total <= budget)
    fitting = result.fitting
    assert [c.rank for c in fitting] == list(range(1, len(fitting) + 1))
    speeds = [float(f"{c.samples_per_second:.3g}") for c in fitting]
    assert speeds == sorted(speeds, reverse=True)


def test_memory_prunes_on_a_smaller_gpu():
    # On A100 40GB Llama-2-7B at TP=1 (63.7 GiB) cannot fit; the best layout shards it.
    result = search(LLAMA, Cluster(1, 8, gpu_preset("a100-40gb")),
                    space=SearchSpace(global_batch_sizes=(128,)))  # fmt: skip
    unfit = [c for c in result.candidates if not c.fits]
    assert unfit and all(c.rank is None for c in unfit)
    assert any(c.layout.tp == 1 and c.layout.pp == 1 and not c.layout.recompute_num_layers
               for c in unfit)  # fmt: skip
    assert result.top(1)[0].memory.total_gib <= 36


def test_cp_and_ep_are_never_both_above_one():
    mixtral = model_shape("mixtral_8x7b").with_seq_length(4096)
    space = SearchSpace(tensor_parallel_sizes=(1, 2), pipeline_parallel_sizes=(4,),
                        context_parallel_sizes=(1, 2), expert_parallel_sizes=(1, 2, 4),
                        virtual_pipeline_sizes=(1,), recompute_num_layers=(0,),
                        global_batch_sizes=(256,))  # fmt: skip
    result = search(mixtral, Cluster(4, 8, gpu_preset("h100")), space=space)
    layouts = [c.layout for c in result.candidates]
    assert any(lay.ep > 1 for lay in layouts) and any(lay.cp > 1 for lay in layouts)
    assert not any(lay.cp > 1 and lay.ep > 1 for lay in layouts)
    assert result.rejected > 0


def test_model_parallel_bounds_limit_the_grid():
    space = SearchSpace(min_model_parallel_size=2, max_model_parallel_size=4,
                        global_batch_sizes=(128,))  # fmt: skip
    result = search(LLAMA, NODE_H200, space=space)
    assert {c.layout.model_parallel_size for c in result.candidates} <= {2, 3, 4}
    assert result.candidates


def test_several_global_batch_sizes_are_ranked_together():
    space = SearchSpace(tensor_parallel_sizes=(1,), pipeline_parallel_sizes=(1,),
                        global_batch_sizes=(64, 256))  # fmt: skip
    result = search(LLAMA, NODE_H200, space=space)
    assert {c.layout.global_batch_size for c in result.candidates} == {64, 256}
    # GBS 256 pays the optimizer step once per 256 samples: faster per sample, if only by the
    # optimizer's share (which the ranking rounds away at 3 significant digits here).
    fastest = {
        gbs: max(c.samples_per_second for c in result.candidates
                 if c.fits and c.layout.global_batch_size == gbs)
        for gbs in (64, 256)
    }  # fmt: skip
    assert fastest[256] > fastest[64]
    assert result.top(1)[0].samples_per_second == pytest.approx(fastest[256], rel=5e-3)


def test_default_global_batch_is_a_multiple_of_the_world():
    # ~4M tokens: 1024 × 4096 on 8 GPUs; 160 GPUs at 2048 tokens: 160 · 16 = 2560 (not 2048,
    # which no DP with a factor 5 divides).
    assert default_global_batch_size(LLAMA, 8) == 1024
    assert default_global_batch_size(model_shape("gpt3_5b"), 160) == 2560
    assert default_global_batch_size(model_shape("vit_b16"), 8) == 4096
    assert default_global_batch_size(model_shape("llava15_7b"), 8) == 128


def test_vlm_and_vit_searches_find_layouts():
    for name in ("llava15_7b", "vit_b16"):
        model = model_shape(name)
        best = search(model, NODE_H200).top(1)[0]
        best.layout.validate(model, 8)


def test_files_written(tmp_path):
    space = SearchSpace(tensor_parallel_sizes=(1, 2), pipeline_parallel_sizes=(1, 2),
                        global_batch_sizes=(128,))  # fmt: skip
    configurator = AutoConfigurator(LLAMA, NODE_H200, space=space, top_k=3)
    outputs = configurator.write(tmp_path / "out")
    rows = list(csv.DictReader(outputs.candidates_csv.open()))
    result = configurator.search()
    assert list(rows[0]) == COLUMNS and len(rows) == len(result.candidates)
    assert rows[0]["rank"] == "1" and rows[0]["fits"] == "True"
    assert [p.name for p in outputs.top_k] == ["rank_01.yaml", "rank_02.yaml", "rank_03.yaml"]
    loaded = run.from_yaml(outputs.top_k[0].read_text())
    assert run.build(loaded["layout"]) == result.top(1)[0].layout
    assert run.build(loaded["model"]) == LLAMA
    assert loaded["predicted"]["memory_per_gpu_gib"] == float(rows[0]["memory_per_gpu_gib"])
    assert run.build(run.from_yaml(outputs.base_config.read_text())) == LLAMA
    # A second, smaller write leaves no stale ranks behind.
    AutoConfigurator(LLAMA, NODE_H200, space=space, top_k=1).write(tmp_path / "out")
    assert sorted(p.name for p in (tmp_path / "out" / "top_k").iterdir()) == ["rank_01.yaml"]


def test_sizes_that_do_not_divide_the_world_are_never_proposed():
    result = search(LLAMA, NODE_H200, space=SearchSpace(tensor_parallel_sizes=(3, 1),
                                                        global_batch_sizes=(128,)))  # fmt: skip
    assert all(c.layout.tp == 1 for c in result.candidates)
    assert isinstance(result.candidates[0].layout, Layout)


def test_no_sequence_parallelism_for_a_vlm():
    """optica's LLaVA refuses it (features are spliced into the whole sequence): TP alone."""
    cluster = ac.Cluster(num_nodes=1, gpus_per_node=2, gpu=ac.gpu_preset("h100"))
    vlm = ac.search(ac.model_shape("llava_tiny"), cluster, space=ac.SearchSpace(
        global_batch_sizes=(8,), pipeline_parallel_sizes=(1,)))  # fmt: skip
    tp2 = [c.layout for c in vlm.candidates if c.layout.tp == 2]
    assert tp2 and not any(layout.sequence_parallel for layout in tp2)
    llama = ac.search(ac.model_shape("llama_tiny"), cluster, space=ac.SearchSpace(
        global_batch_sizes=(8,), pipeline_parallel_sizes=(1,)))  # fmt: skip
    assert all(c.layout.sequence_parallel for c in llama.candidates if c.layout.tp == 2)


def test_stepping_in_backward_searches_one_gpu_without_accumulation():
    model = model_shape("tinyllama_1.1b")
    one = Cluster(num_nodes=1, gpus_per_node=1, gpu=gpu_preset("h100"))
    space = SearchSpace(
        micro_batch_sizes=(1, 2), global_batch_sizes=(2,), recompute_num_layers=(0,)
    )
    training = Training(step_in_backward=True)
    result = search(model, one, space=space, training=training)
    assert [c.layout.micro_batch_size for c in result.candidates] == [2]
    assert result.rejected == 1 and "accumulates 2" in result.rejected_examples[0]
    eight = Cluster(num_nodes=1, gpus_per_node=8, gpu=gpu_preset("h100"))
    with pytest.raises(ConfigError, match="step_in_backward runs on one GPU; the cluster has 8"):
        search(model, eight, space=space, training=training)
