"""Step-time roofline: compute bound by hand, bubble, communication, optimizer."""

import dataclasses

import pytest

from optica.autoconfig import (
    Cluster,
    Efficiency,
    Layout,
    gpu_preset,
    model_shape,
    predict_step_time,
    step_work_flops,
)
from optica.autoconfig.hardware import gpu_for_memory
from optica.run.errors import ConfigError

LLAMA = model_shape("llama2_7b")
H100 = gpu_preset("h100")
NO_OVERHEAD = Efficiency(layer_overhead_s=0.0, collective_latency_s=0.0)


def test_one_gpu_is_compute_bound_at_the_stated_efficiency():
    # 1 GPU, no parallelism: time = hardware FLOPs / (989e12 · 0.5) + Adam's memory traffic
    # (30 bytes per parameter / (3350e9 · 0.8)).
    layout = Layout(global_batch_size=8)
    step = predict_step_time(LLAMA, layout, Cluster(1, 1, H100), efficiency=NO_OVERHEAD)
    compute = step_work_flops(LLAMA, layout) / (989e12 * 0.5)
    assert step.pipeline == pytest.approx(compute, rel=1e-9)
    assert step.optimizer == pytest.approx(6_738_415_616 * 30 / (3350e9 * 0.8), rel=1e-9)
    assert step.data_parallel == 0 and step.bubble == 0


def test_bubble_is_p_minus_1_over_v_microbatches():
    # m = 8 micro-batches, p = 4: bubble / pipeline = 3 / (8 + 3); interleaved v = 2: 1.5/9.5.
    cluster = Cluster(1, 4, H100)
    plain = Layout(pipeline_model_parallel_size=4, global_batch_size=8)
    step = predict_step_time(LLAMA, plain, cluster)
    assert step.bubble / step.pipeline == pytest.approx(3 / 11)
    interleaved = dataclasses.replace(plain, virtual_pipeline_model_parallel_size=2)
    step = predict_step_time(LLAMA, interleaved, cluster)
    assert step.bubble / step.pipeline == pytest.approx(1.5 / 9.5)


def test_tensor_parallel_communication_costs_time():
    # Same per-GPU work (GBS scales with nothing else): TP=8 adds 4 all-reduces per layer.
    cluster = Cluster(1, 8, H100)
    tp1 = Layout(data_parallel_size=8, global_batch_size=64)
    tp8 = Layout(tensor_model_parallel_size=8, sequence_parallel=True, global_batch_size=64)
    assert (
        predict_step_time(LLAMA, tp8, cluster).total > predict_step_time(LLAMA, tp1, cluster).total
    )


def test_tp_across_nodes_uses_infiniband():
    cluster = Cluster(2, 8, H100)
    assert cluster.bandwidth(8) == 450e9 and cluster.bandwidth(16) == 50e9
    within = Layout(tensor_model_parallel_size=8, data_parallel_size=2, sequence_parallel=True,
                    global_batch_size=16)  # fmt: skip
    across = Layout(tensor_model_parallel_size=16, sequence_parallel=True, global_batch_size=16)
    assert (
        predict_step_time(LLAMA, across, cluster).total
        > predict_step_time(LLAMA, within, cluster).total
    )


def test_gradient_reduction_is_exposed_when_compute_is_short():
    # One micro-batch of 128 tokens: far too little backward to hide 7B gradients over IB.
    short = LLAMA.with_seq_length(128)
    layout = Layout(data_parallel_size=16, global_batch_size=16)
    step = predict_step_time(short, layout, Cluster(2, 8, H100))
    assert step.data_parallel > step.pipeline


def test_fsdp_traffic_by_hand_without_overlap():
    # Llama-2-7B, DP = 8 (FSDP2), bf16, 2 micro-batches, nothing hidden (overlap 0): each
    # micro-batch all-gathers every layer's bf16 parameters twice (forward, backward) and the
    # root's once, and reduce-scatters the fp32 gradients: 7/8 of 2·(2·32·L + R) + 4·N bytes
    # over NVLink at 450 GB/s · 0.7.
    layer = 4 * 4096**2 + 3 * 4096 * 11008 + 2 * 4096
    root = 6_738_415_616 - 32 * layer
    volume = 7 / 8 * (2 * (2 * 32 * layer + root) + 4 * 6_738_415_616)
    efficiency = dataclasses.replace(NO_OVERHEAD, overlap=0.0)
    layout = Layout(data_parallel_size=8, global_batch_size=16)
    step = predict_step_time(LLAMA, layout, Cluster(1, 8, H100), efficiency=efficiency)
    assert step.data_parallel == pytest.approx(2 * volume / (450e9 * 0.7))
    # DDP: one all-reduce of the fp32 gradients a step (none on the first micro-batch),
    # 2 · 7/8 · 4·N bytes.
    ddp = dataclasses.replace(layout, use_distributed_optimizer=False)
    step = predict_step_time(LLAMA, ddp, Cluster(1, 8, H100), efficiency=efficiency)
    assert step.data_parallel == pytest.approx(2 * 7 / 8 * 4 * 6_738_415_616 / (450e9 * 0.7))


def test_gpu_presets_and_custom_values():
    assert gpu_preset("h200").memory_gb == 141
    assert gpu_preset("H100-80GB", memory_gb=96).memory_gb == 96
    assert gpu_for_memory(40).name == "A100 40GB"
    assert gpu_for_memory(192).memory_gb == 192
    with pytest.raises(ConfigError, match="unknown or ambiguous GPU 'a100'"):
        gpu_preset("a100")
    with pytest.raises(ConfigError, match="num_nodes must be a positive integer"):
        Cluster(0, 8, H100)
