"""Memory per GPU: Korthikanti et al. 2022 by hand, state bytes, LoRA, invariants."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from optica.autoconfig import (
    LanguageShape,
    Layout,
    Lora,
    ModelShape,
    Training,
    estimate_memory,
    model_shape,
)
from optica.autoconfig.memory import layer_activation_bytes, layer_input_bytes
from optica.autoconfig.pipeline import in_flight_microbatches, lora_layer_params

GPT = model_shape("gpt3_1.3b").language  # the paper's layer: MHA, MLP 4h, GELU, dropout
LLAMA = model_shape("llama2_7b")
N_LLAMA = 6_738_415_616
# The 62M-parameter Llama of tests/integration/autoconfig/test_calibration.py.
CALIBRATION_LLAMA = ModelShape(name="calibration", language=LanguageShape(
    hidden_size=768, ffn_hidden_size=2048, num_layers=2, num_attention_heads=12,
    num_query_groups=4, vocab_size=32000, seq_length=256,
))  # fmt: skip


# The paper counts no norm statistics; optica's LayerNorm also keeps an fp32 mean and
# reciprocal std per token (8 bytes), two norms per layer: 16·T, split only by SP.


def test_korthikanti_per_layer_formula_without_parallelism():
    # Eq. (1): s·b·h·(34 + 5·a·s/h) bytes for the attention core stored (no flash).
    s, b, h, a = 2048, 2, 2048, 16
    got = layer_activation_bytes(GPT, tokens=s * b, span=s, tp=1, sp=False, flash=False)
    assert got == s * b * h * (34 + 5 * a * s / h) + 16 * s * b


@pytest.mark.parametrize("t", [2, 4, 8])
def test_korthikanti_tensor_and_sequence_parallel(t):
    s, b, h, a = 2048, 1, 2048, 16
    no_sp = layer_activation_bytes(GPT, tokens=s * b, span=s, tp=t, sp=False, flash=False)
    paper = s * b * h * (10 + 24 / t + 5 * a * s / (h * t))  # Eq. (2)
    assert no_sp == pytest.approx(paper + 16 * s * b)
    sp = layer_activation_bytes(GPT, tokens=s * b, span=s, tp=t, sp=True, flash=False)
    assert sp == pytest.approx((s * b * h * (34 + 5 * a * s / h) + 16 * s * b) / t)  # Eq. (4)


def test_flash_attention_keeps_only_the_log_sum_exp():
    # Selective recompute / flash: 34·s·b·h/t plus 4 bytes per head and token.
    s, h, a = 2048, 2048, 16
    got = layer_activation_bytes(GPT, tokens=s, span=s, tp=2, sp=True, flash=True)
    assert got == pytest.approx((34 * s * h + 16 * s) / 2 + 4 * a * s / 2)
    selective = layer_activation_bytes(
        GPT, tokens=s, span=s, tp=2, sp=True, flash=True, core_recomputed=True
    )
    assert got - selective == pytest.approx(4 * a * s / 2)
    assert layer_input_bytes(GPT, tokens=s, tp=2, sp=True) == 2 * s * h / 2  # full recompute


def llama2_7b_activations_by_hand(tp: int = 1) -> float:
    """Llama-2-7B's activations at T = 4096 tokens (MBS 1), bf16, flash attention, SP when
    tp > 1: h = 4096, f = 11008, a = g = 32, d = 128, V = 32000.

    Each RMSNorm: fp32 input copy 4·T·h, fp32 rsqrt 4·T, normalised bf16 2·T·h, output (the
    next linear's input) 2·T·h. Attention: QKV output 2·T·(a + 2g)·d, rotated q and k
    2·T·(a + g)·d, core output 2·T·a·d; LSE 4·a·T. SwiGLU: fc1 output 2·T·2f, silu output
    2·T·f, product 2·T·f. Once: RoPE cos and sin (2·T·d each), the final norm, the fp32
    log-softmax, its gradient and the logits' (the loss is not split: optica gathers the logits).
    """
    T, h, f, a, d, V = 4096, 4096, 11008, 32, 128, 32000
    norm = 4 * T * h + 4 * T + 2 * 2 * T * h
    attention = 2 * T * (a + 2 * a) * d + 2 * T * (a + a) * d + 2 * T * a * d
    split = attention + 2 * T * 4 * f + 4 * a * T
    layer = 2 * norm / tp + split / tp
    return 32 * layer + norm / tp + 2 * 2 * T * d + (4 + 4 + 4) * T * V


LLAMA_LAYER = 4 * 4096**2 + 3 * 4096 * 11008 + 2 * 4096  # attention, SwiGLU MLP, two norms
LLAMA_ROOT = 2 * 32000 * 4096 + 4096  # embedding, output layer, final norm


def test_llama2_7b_parameters_split_into_layers_and_root():
    assert 32 * LLAMA_LAYER + LLAMA_ROOT == N_LLAMA


def test_llama2_7b_memory_by_hand_at_tp1():
    # bf16-mixed, distributed optimizer = FSDP2 over DP = 8: fp32 parameter, gradient and Adam
    # shards 4N/8, 4N/8, 8N/8. Through the passes the root (embedding, output layer, final
    # norm) and two layers are gathered in bf16; at the end of the backward pass the root's
    # bf16 parameters and gradients and its fp32 reduce-scatter input are alive next to the
    # layers' gradient shards. One micro-batch: the last step's gradients sit next to the
    # forward pass's activations and the forward loss (bf16 logits, their fp32 copy, the fp32
    # log-softmax: 10·T·V), and are gone when the backward pass starts (12·T·V).
    T, V = 4096, 32000
    layout = Layout(data_parallel_size=8, global_batch_size=8)
    memory = estimate_memory(LLAMA, layout)
    assert (memory.weights, memory.gradients) == (4 * N_LLAMA / 8, 4 * N_LLAMA / 8)
    assert memory.optimizer == pytest.approx(8 * N_LLAMA / 8)
    assert memory.activations == pytest.approx(llama2_7b_activations_by_hand())
    gathered = 2 * (LLAMA_ROOT + 2 * LLAMA_LAYER)
    assert memory.gathered == gathered
    layers = llama2_7b_activations_by_hand() - 12 * T * V
    moments = dict(memory.moments)
    assert moments["end of forward"] == pytest.approx(
        4 * N_LLAMA / 8 + gathered + layers + 10 * T * V
    )
    assert moments["start of backward"] == pytest.approx(gathered + layers + 12 * T * V)
    end = 4 * (N_LLAMA - LLAMA_ROOT) / 8 + (2 + 2 + 4) * LLAMA_ROOT
    assert moments["end of backward"] == pytest.approx(end)
    assert memory.peak_at == "end of forward"
    states = (4 + 8) * N_LLAMA / 8
    assert memory.total == pytest.approx(states + moments["end of forward"])


def test_gradients_leave_before_the_backward_pass_unless_accumulated():
    # fp32, one rank (calibration-sized Llama, where the loss dominates): with one micro-batch
    # the gradients are set to None before the loss's backward; with four they are alive there.
    llama = CALIBRATION_LLAMA
    fp32 = Training(precision="32")
    one = dict(estimate_memory(llama, Layout(global_batch_size=1), training=fp32).moments)
    four = estimate_memory(llama, Layout(global_batch_size=4), training=fp32)
    grads = four.gradients
    assert dict(four.moments)["start of backward"] - one["start of backward"] == pytest.approx(
        grads + 32_768_000  # and the output layer's new gradient (accumulation_bytes)
    )
    assert dict(four.moments)["end of forward"] == pytest.approx(one["end of forward"])


def test_without_distributed_optimizer_adam_costs_12_bytes_everywhere():
    layout = Layout(data_parallel_size=8, global_batch_size=8, use_distributed_optimizer=False)
    assert estimate_memory(LLAMA, layout).optimizer == 12 * N_LLAMA
    fp32 = estimate_memory(LLAMA, layout, training=Training(precision="32"))
    assert (fp32.weights, fp32.gradients, fp32.optimizer) == (4 * N_LLAMA, 4 * N_LLAMA, 8 * N_LLAMA)


def test_ddp_reduces_the_roots_gradients_through_a_buffer():
    # DDP (FSDP2's replicate) over 8: whole states; at the end of the backward pass the root's
    # bf16 gradients and their fp32 all-reduce copy sit next to every gradient.
    layout = Layout(data_parallel_size=8, global_batch_size=8, use_distributed_optimizer=False)
    memory = estimate_memory(LLAMA, layout)
    assert memory.gathered == 0
    assert dict(memory.moments)["end of backward"] == 4 * N_LLAMA + (2 + 4) * LLAMA_ROOT
    alone = estimate_memory(LLAMA, Layout(global_batch_size=1))  # one rank: nothing wrapped
    assert dict(alone.moments)["end of backward"] == 4 * N_LLAMA


def test_lora_keeps_the_base_frozen():
    # dim 32 on linear_qkv (4096→12288), linear_proj (4096→4096), fc1 (4096→22016), fc2
    # (11008→4096): 32·(16384 + 8192 + 26112 + 15104) = 2,105,344 per layer.
    assert lora_layer_params(LLAMA.language, Lora(dim=32)) == 2_105_344
    memory = estimate_memory(LLAMA, Layout(global_batch_size=1), training=Training(lora=Lora()))
    adapters = 32 * 2_105_344
    assert memory.gradients == 4 * adapters
    assert memory.weights == 2 * (N_LLAMA + adapters)
    assert memory.optimizer == 12 * adapters


def test_llava_frozen_vision_holds_weights_only():
    llava = model_shape("llava15_7b")
    memory = estimate_memory(llava, Layout(global_batch_size=1))
    clip, projector = 303_507_456, 20_979_712
    assert memory.gradients == 4 * (N_LLAMA + projector)
    assert memory.weights == 2 * (N_LLAMA + projector + clip)


def test_in_flight_microbatches_follow_1f1b_and_the_interleaved_factor():
    plain = Layout(pipeline_model_parallel_size=4, global_batch_size=8)
    assert [in_flight_microbatches(i, plain) for i in range(4)] == [4, 3, 2, 1]
    assert (
        in_flight_microbatches(0, Layout(pipeline_model_parallel_size=4, global_batch_size=2)) == 2
    )
    # Korthikanti: the first stage holds p·(1 + (p − 1)/(p·v)) = 4·(1 + 3/8) = 5.5.
    interleaved = Layout(pipeline_model_parallel_size=4, virtual_pipeline_model_parallel_size=2,
                         global_batch_size=8)  # fmt: skip
    assert in_flight_microbatches(0, interleaved) == 4 * (1 + 3 / 8)


def test_h200_fits_what_an_a100_40gb_cannot():
    memory = estimate_memory(LLAMA, Layout(data_parallel_size=8, global_batch_size=8))
    assert 0.9 * 40 < memory.total_gib <= 0.9 * 141  # fits an H200, not an A100 40GB


# ---------------------------------------------------------------------------------------------
# Invariants (hypothesis): more sharding or recompute never costs memory; bigger work never saves.

MODELS = [model_shape(n) for n in ("llama2_7b", "llama3_8b", "gpt3_1.3b", "mixtral_8x7b")]
POW2 = st.sampled_from([1, 2, 4, 8])


def memory(model, **fields):
    base = dict(global_batch_size=64)
    return estimate_memory(model, Layout(**{**base, **fields})).total


@settings(max_examples=60, deadline=None)
@given(model=st.sampled_from(MODELS), tp=POW2, pp=POW2, dp=POW2, mbs=POW2, sp=st.booleans())
def test_memory_falls_with_tensor_parallelism(model, tp, pp, dp, mbs, sp):
    fields = dict(pipeline_model_parallel_size=pp, data_parallel_size=dp, micro_batch_size=mbs)
    assert memory(model, tensor_model_parallel_size=2 * tp, sequence_parallel=sp, **fields) <= (
        memory(model, tensor_model_parallel_size=tp, sequence_parallel=sp and tp > 1, **fields)
    )


@settings(max_examples=60, deadline=None)
@given(model=st.sampled_from(MODELS), tp=POW2, pp=POW2, dp=POW2, mbs=POW2)
def test_memory_falls_with_pipeline_parallelism(model, tp, pp, dp, mbs):
    fields = dict(tensor_model_parallel_size=tp, data_parallel_size=dp, micro_batch_size=mbs)
    deeper = memory(model, pipeline_model_parallel_size=2 * pp, **fields)
    assert deeper <= memory(model, pipeline_model_parallel_size=pp, **fields)


@settings(max_examples=60, deadline=None)
@given(model=st.sampled_from(MODELS), tp=POW2, dp=POW2, mbs=POW2, dist=st.booleans())
def test_memory_falls_with_data_parallelism(model, tp, dp, mbs, dist):
    fields = dict(tensor_model_parallel_size=tp, micro_batch_size=mbs,
                  use_distributed_optimizer=dist)  # fmt: skip
    assert memory(model, data_parallel_size=2 * dp, **fields) <= memory(
        model, data_parallel_size=dp, **fields
    )


def recompute(model, pp, layers, method="block"):
    if layers == 0:
        return memory(model, pipeline_model_parallel_size=pp)
    return memory(model, pipeline_model_parallel_size=pp, recompute_granularity="full",
                  recompute_method=method, recompute_num_layers=layers)  # fmt: skip


@settings(max_examples=60, deadline=None)
@given(model=st.sampled_from(MODELS), pp=POW2, quarter=st.integers(0, 3))
def test_memory_falls_with_recomputed_layers(model, pp, quarter):
    chunk = model.backbone.num_layers // pp
    fewer, more = quarter * chunk // 4, (quarter + 1) * chunk // 4
    assert recompute(model, pp, more) <= recompute(model, pp, fewer)


@settings(max_examples=30, deadline=None)
@given(model=st.sampled_from(MODELS), pp=POW2, group=st.integers(1, 4))
def test_uniform_recompute_never_costs_memory(model, pp, group):
    assert recompute(model, pp, group, "uniform") <= recompute(model, pp, 0)


@settings(max_examples=60, deadline=None)
@given(
    model=st.sampled_from(MODELS), tp=POW2, pp=POW2, mbs=POW2,
    seq=st.sampled_from([1024, 2048, 4096, 8192]),
)  # fmt: skip
def test_memory_rises_with_micro_batch_and_sequence_length(model, tp, pp, mbs, seq):
    fields = dict(tensor_model_parallel_size=tp, pipeline_model_parallel_size=pp)
    model_at = model.with_seq_length(seq)
    assert memory(model_at, micro_batch_size=2 * mbs, **fields) >= memory(
        model_at, micro_batch_size=mbs, **fields
    )
    assert memory(model.with_seq_length(2 * seq), micro_batch_size=mbs, **fields) >= memory(
        model_at, micro_batch_size=mbs, **fields
    )


def test_llama2_7b_on_8_h200_falls_strictly_with_tp():
    # One node of 8 GPUs, DP = 8 / TP, sequence parallel when TP > 1, MBS 1, seq 4096.
    totals = [
        estimate_memory(LLAMA, Layout.for_world_size(
            8, tensor_model_parallel_size=tp, sequence_parallel=tp > 1, global_batch_size=128
        )).total_gib
        for tp in (1, 2, 4, 8)
    ]  # fmt: skip
    assert totals == sorted(totals, reverse=True) and len(set(totals)) == 4
    # GBS 128: every rank accumulates, so the gradients sit next to the activations. TP = 1,
    # DP = 8: FSDP2's shards (4 + 4 + 8)/8 bytes per parameter, the root and two layers gathered
    # in bf16. TP = 8, DP = 1: 2 + 4 + 12 bytes per parameter over 8 ranks; the 65 replicated
    # norm weights per rank (65·4096·18 B ≈ 5 MB) are within rel.
    during = {
        1: llama2_7b_activations_by_hand(1) + 2 * (LLAMA_ROOT + 2 * LLAMA_LAYER),
        8: llama2_7b_activations_by_hand(8),
    }
    states = {1: (4 + 4 + 8) * N_LLAMA / 8, 8: 18 * N_LLAMA / 8}
    for tp, total in ((1, totals[0]), (8, totals[-1])):
        by_hand = (states[tp] + during[tp]) / 2**30
        assert total == pytest.approx(by_hand, rel=1e-3), tp


def test_loss_by_hand_is_not_split_by_tensor_parallelism():
    # T = 2 × 4096 tokens, V = 32000: fp32 log-softmax (4), its gradient (4), the logits'
    # gradient (4), in fp32 whatever the training precision.
    from optica.autoconfig.memory import loss_bytes
    from optica.autoconfig.pipeline import stages

    T, V = 2 * 4096, 32000
    for tp in (1, 8):
        layout = Layout(tensor_model_parallel_size=tp, micro_batch_size=2, global_batch_size=2)
        (last,) = stages(LLAMA, layout)
        assert loss_bytes(LLAMA, layout, last, Training()) == 12 * T * V
        assert loss_bytes(LLAMA, layout, last, Training(precision="32")) == 12 * T * V


def test_without_flash_attention_the_scores_are_stored():
    # A CPU (SDPA's math path) keeps the softmax: 2·a·s·T bytes per layer more than flash's LSE.
    from optica.autoconfig import Cluster, GpuSpec, SearchSpace, search

    layout = Layout(global_batch_size=1)
    flash = estimate_memory(LLAMA, layout).activations
    plain = estimate_memory(LLAMA, layout, flash_attention=False).activations
    a, s = 32, 4096
    assert plain - flash == pytest.approx(32 * (2 * a * s * s - 4 * a * s))
    cpu = GpuSpec("cpu", 1000, 1, 1, 1, 1, flash_attention=False)
    space = SearchSpace(global_batch_sizes=(1,), micro_batch_sizes=(1,), recompute_num_layers=(0,))
    found = search(LLAMA, Cluster(num_nodes=1, gpus_per_node=1, gpu=cpu), space=space)
    assert found.candidates[0].memory.activations == plain


def test_gradient_accumulation_adds_the_output_layers_new_gradient():
    # The calibration Llama, fp32, MBS 1: T = 256, V = 32000, h = 768. Alone the loss holds
    # 12·T·V = 98,304,000 bytes; on a later micro-batch the logits' gradient (4·T·V =
    # 32,768,000) and the output layer's new weight gradient (4·V·h = 98,304,000) are alive
    # together: 131,072,000, i.e. 32,768,000 more than without accumulation.
    llama = CALIBRATION_LLAMA
    fp32 = Training(precision="32")
    single = estimate_memory(llama, Layout(global_batch_size=1), training=fp32)
    accumulated = estimate_memory(llama, Layout(global_batch_size=4), training=fp32)
    assert accumulated.activations - single.activations == 32_768_000
    # Under TP = 2 at MBS 2 the new gradient is half as large and the loss twice: 4·T·V +
    # 4·V·h/2 = 114,688,000 < 12·T·V = 196,608,000, so nothing changes.
    tp2 = dict(tensor_model_parallel_size=2, micro_batch_size=2)
    single = estimate_memory(llama, Layout(global_batch_size=2, **tp2), training=fp32)
    accumulated = estimate_memory(llama, Layout(global_batch_size=4, **tp2), training=fp32)
    assert accumulated.activations == single.activations
    lora = estimate_memory(llama, Layout(global_batch_size=4), training=Training(lora=Lora()))
    lora_single = estimate_memory(
        llama, Layout(global_batch_size=1), training=Training(lora=Lora())
    )
    assert lora.activations == lora_single.activations  # no gradient for a frozen output layer


def test_a_vlm_takes_logits_at_its_text_tokens_only():
    # LLaVA-1.5-7B: the 576 image tokens come first and are never learned, so the loss holds
    # 12·(seq − 576)·V per sample, not 12·seq·V (the prompt's share depends on the data).
    from optica.autoconfig.memory import loss_bytes
    from optica.autoconfig.pipeline import stages

    llava = model_shape("llava15_7b")
    layout = Layout(global_batch_size=1)
    (last,) = stages(llava, layout)
    text = llava.seq_length - 576
    vocab = llava.language.vocab_size
    assert llava.image_tokens == 576
    assert loss_bytes(llava, layout, last, Training()) == 12 * text * vocab


def test_stepping_in_backward_holds_one_gradient_at_a_time():
    # fp32, one rank, one micro-batch. Plain: the last step's gradients sit next to the forward
    # pass's activations. Stepped in backward: none there; in the backward pass the largest
    # gradient (the [V, h] output layer's) is made next to the logits' fp32 gradient (4·T·V).
    llama, layout = CALIBRATION_LLAMA, Layout(global_batch_size=1)
    plain = estimate_memory(llama, layout, training=Training(precision="32"))
    stepped = estimate_memory(
        llama, layout, training=Training(precision="32", step_in_backward=True)
    )
    T, V, h = 256, 32000, 768
    assert stepped.gradients == 4 * V * h
    assert (stepped.weights, stepped.optimizer) == (plain.weights, plain.optimizer)
    before, after = dict(plain.moments), dict(stepped.moments)
    assert after["end of forward"] == pytest.approx(before["end of forward"] - plain.gradients)
    assert after["start of backward"] == pytest.approx(
        before["start of backward"] + max(0, 4 * T * V + 4 * V * h - 12 * T * V)
    )
    assert after["end of backward"] == 4 * V * h
    assert stepped.total < plain.total


def test_stepping_in_backward_counts_the_trained_parts_only():
    # LLaVA-1.5 with LoRA on the language model and the tower frozen: the projector's second
    # matrix (4096 x 4096) outweighs any rank-32 adapter (the largest: 32 x 2·11008, fc1).
    llava = model_shape("llava15_7b")
    training = Training(lora=Lora(dim=32), step_in_backward=True)
    memory = estimate_memory(llava, Layout(global_batch_size=1), training=training)
    assert memory.gradients == 4 * 4096 * 4096
    full = estimate_memory(
        llava, Layout(global_batch_size=1), training=Training(step_in_backward=True)
    )
    assert full.gradients == 4 * 32000 * 4096  # the embedding / output layer
