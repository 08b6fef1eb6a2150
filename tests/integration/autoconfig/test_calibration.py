"""Calibration on this machine: the runner really trains the top candidates of a small Llama on
CPU (gloo, torchrun for two processes), and their measured peak memory and step time are set
against the predictions.

The "GPU" is a CPU described honestly: torch's CPU SDPA is a flash kernel
(``_scaled_dot_product_flash_attention_for_cpu``, dropout off) that saves only the log-sum-exp,
fp32 training, and a stated sustained compute rate and gloo link; those numbers are assumptions,
not fitted. Measured memory is the process's peak above what it held before the model existed
(:mod:`optica.autoconfig.measure`). The per-layer activations are exact (the unit test
``tests/unit/autoconfig/test_saved_activations.py`` sums what autograd saves); what the model
still does not count on a CPU — the runtime's own allocations after set-up (autograd, gloo and
oneDNN buffers), backward-pass transients beyond the loss's, and glibc keeping freed pages in
the RSS high-water mark — makes the measurement exceed the prediction; the bounds below allow
for that and still fail if a part of the model (states, activations, the loss) went missing or
were counted twice. Recorded 2026-11, torch 2.13 CPU, on a shared 2-core machine (h=128,
2 layers, vocab 2048, seq 128, GBS 8):

* 1 process, MBS 2 / 8: predicted 25.5 / 60.9 MB, measured 40.8 / 86.8 MB (errors -38%, -30%;
  before the activation terms were matched to the saved tensors: -38%, -37%); what MBS 8 adds
  over MBS 2: predicted 35 MB, measured 46 MB
* 2 processes, MBS 2, DP2 (FSDP) / TP2: predicted 22.0 / 15.8 MB, measured 45.5 / 41.5 MB
  (-52%, -62%: the fixed runtime share is larger at this size); step time predicted 0.107 /
  0.141 s, measured 0.120 / 0.260 s — the predicted order is the measured order
* step times of one process swing 2-10x with the other jobs on the machine: only the order is
  checked

The tiny LLaVA (``llava_tiny`` at 128 tokens: 64 image tokens + 64 of text, GBS 8; recorded
2026-11 the same way):

* 1 process, vision tower frozen, MBS 2 / 8: predicted 9.6 / 25.3 MB, measured 17.2 / 42.7 MB
  (-44%, -41%)
* 2 processes, all trained, MBS 2, DP2 (FSDP) / TP2: predicted 10.6 / 7.5 MB, measured
  23.2 / 19.4 MB (-54%, -62%); step time predicted 0.064 / 0.097 s, measured 0.14 / 0.30 s —
  the predicted order is the measured order

Where the model's own terms dominate — a Llama of 62M parameters (h 768, FFN 2048, 12 heads,
4 KV groups, 2 layers, vocab 32000, seq 256, GBS 4; recorded 2026-11-24, torch 2.13 CPU, the
same shared machine), states ~1 GB and a loss of 100-400 MB per process:

* 1 process, MBS 4 / MBS 1 (4 accumulated): predicted 1450.7 / 1100.5 MB, measured 1371.8 /
  1214.6 and, on a second run, 1362.3 / 1176.4 MB (+6 to +7%, -9 to -6%)
* 2 processes, MBS 2, DP2 (FSDP) / TP2 (2 accumulated): predicted 960.8 / 692.1 MB, measured
  1148.2 / 819.0, 1146.0 / 832.0 and 1166.6 / 824.2 MB (-16 to -18%, -16 to -17%); after the
  tensor-parallel embedding moved to local-row lookups (``vocab_parallel_embedding``, no whole
  [V, h] gradient per rank, see below) TP2 measured 789.4 MB (-12.3%), DP2 1150.1 MB (-16.5%)

What each term is worth was traced, not fitted: every storage the ops create, alive until it
dies (FSDP2's resized buffers followed), at the peak of live tensors, in the same model and
step outside Lightning. Live-tensor peaks: 1215 MB at MBS 4 (states less the gradients, which
``zero_grad`` sets to None, plus the activations and 12·T·V of loss at the start of the
backward pass), 1101 MB at MBS 1 (on a later micro-batch, the output layer's new [V, h] weight
gradient next to the logits' gradient: the one allocation the model lacked, now
:func:`~optica.autoconfig.memory.accumulation_bytes`), 940 MB for DP2 (at the end of the
backward pass: the root module's unsharded embedding and output layer, their unsharded gradients
and FSDP2's flat reduce-scatter copy, activations all freed) and 753 MB for TP2 (the
vocab-parallel embedding's gradient keeps a whole [V, h] storage per rank, 47 MB above its
shard; fixed since by ``vocab_parallel_embedding``). So the model's sum of states and
activations is an upper bound on the tensors at one
micro-batch per step (+19% at MBS 4) and exact at MBS 1 (1100.5 vs 1101); the measurement's
remaining 110-210 MB above the live tensors is the runtime's (the allocator's high-water mark,
gloo, oneDNN), larger with two processes.

Each test prints its table (``pytest -s``).
"""

from __future__ import annotations

import csv
import dataclasses

import pytest

from optica import autoconfig as ac
from optica.autoconfig.runner import Launch, RunLimits

pytestmark = [pytest.mark.slow, pytest.mark.distributed]

CPU = ac.GpuSpec(
    "CPU core (gloo)", memory_gb=4, peak_tflops=0.05, hbm_gbs=10, nvlink_gbs=1, ib_gbs=1,
    flash_attention=True,
)  # fmt: skip
CPU_EFFICIENCY = ac.Efficiency(compute=0.5, layer_overhead_s=2e-3, collective_latency_s=2e-4)
MODEL = ac.ModelShape(
    name="calibration_llama",
    language=ac.LanguageShape(
        hidden_size=128, ffn_hidden_size=352, num_layers=2, num_attention_heads=4,
        num_query_groups=2, vocab_size=2048, seq_length=128,
    ),
)  # fmt: skip
STEPS = 3
FP32 = ac.Training(precision="32")
MB = 2**20


LLAVA = ac.model_shape("llava_tiny").with_seq_length(128)  # 64 image tokens + 64 of text


LARGE = ac.ModelShape(
    name="calibration_llama_768",
    language=ac.LanguageShape(
        hidden_size=768, ffn_hidden_size=2048, num_layers=2, num_attention_heads=12,
        num_query_groups=4, vocab_size=32000, seq_length=256,
    ),
)  # fmt: skip


def calibrate(
    tmp_path, world: int, space: ac.SearchSpace, model=MODEL, training=FP32
) -> list[dict[str, str]]:
    cluster = ac.Cluster(num_nodes=1, gpus_per_node=world, gpu=CPU)
    configurator = ac.AutoConfigurator(
        model, cluster, space=space, training=training,
        efficiency=CPU_EFFICIENCY, top_k=2,
    )  # fmt: skip
    limits = RunLimits(max_steps_per_run=STEPS, max_minutes_per_run=2)
    measured = configurator.run(tmp_path, limits=limits, launch=Launch(accelerator="cpu"))
    assert [o.error for o in measured.outcomes] == [None, None]
    rows = list(csv.DictReader(measured.results_csv.open()))
    _print_table(model.name, world, rows)
    assert list(csv.DictReader(measured.failed_csv.open())) == []
    assert measured.plot.stat().st_size > 10_000
    for row in rows:
        assert row["Steps Measured"] == str(STEPS) and row["Stopped by Time Limit"] == "False"
        assert row["Model Name"] == model.name and row["GPUs per Node"] == str(world)
    return rows


def test_one_process_memory_grows_with_the_micro_batch_as_predicted(tmp_path):
    space = ac.SearchSpace(micro_batch_sizes=(2, 8), recompute_num_layers=(0,),
                           global_batch_sizes=(8,))  # fmt: skip
    rows = calibrate(tmp_path, 1, space)
    by_mbs = {int(r["MBS"]): r for r in rows}
    predicted = {m: float(r["Predicted Memory per GPU (GiB)"]) * 1024 for m, r in by_mbs.items()}
    actual = {m: float(r["Measured Memory per GPU (GiB)"]) * 1024 for m, r in by_mbs.items()}
    assert actual[8] > actual[2] and predicted[8] > predicted[2]
    for mbs in (2, 8):
        assert 0.5 < predicted[mbs] / actual[mbs] < 1.2, (mbs, predicted, actual)
    # The activations' share: what four times the micro-batch adds, predicted vs measured.
    growth = (predicted[8] - predicted[2]) / (actual[8] - actual[2])
    assert 0.6 < growth < 1.2, growth


def test_two_processes_sharding_and_ranking(tmp_path):
    space = ac.SearchSpace(
        tensor_parallel_sizes=(1, 2), pipeline_parallel_sizes=(1,), context_parallel_sizes=(1,),
        micro_batch_sizes=(2,), recompute_num_layers=(0,), global_batch_sizes=(8,),
    )  # fmt: skip
    rows = calibrate(tmp_path, 2, space)
    by_tp = {int(r["TP"]): r for r in rows}
    predicted = {t: float(r["Predicted Memory per GPU (GiB)"]) for t, r in by_tp.items()}
    actual = {t: float(r["Measured Memory per GPU (GiB)"]) for t, r in by_tp.items()}
    for tp in (1, 2):
        assert 0.3 < predicted[tp] / actual[tp] < 1.2, (tp, predicted, actual)
    # TP=2 holds half the layers' weights and activations of DP=2 (FSDP shards only states).
    assert predicted[2] < predicted[1] and actual[2] < actual[1]
    # The layout the model ranks first is within 2x of the fastest one measured.
    chosen = next(r for r in rows if r["Predicted Rank"] == "1")
    best = min(float(r["Time per Step"]) for r in rows)
    assert float(chosen["Time per Step"]) <= 2 * best


def test_llava_one_and_two_processes(tmp_path):
    """The tiny LLaVA (CLIP tower, MLP projector, Llama): MBS 2 vs 8 on one process with the
    tower frozen (LLaVA-1.5's default), DP2 vs TP2 on two with everything trained
    (``ParallelStrategy`` refuses any ``peft``, plain freezing included, with TP > 1); memory
    within the bounds above, the predicted order of the 2-process layouts."""
    space = ac.SearchSpace(
        pipeline_parallel_sizes=(1,), context_parallel_sizes=(1,), micro_batch_sizes=(2, 8),
        recompute_num_layers=(0,), global_batch_sizes=(8,),
    )  # fmt: skip
    one = {int(r["MBS"]): r for r in calibrate(tmp_path / "one", 1, space, LLAVA)}
    two_space = dataclasses.replace(space, micro_batch_sizes=(2,))
    trained = ac.Training(precision="32", freeze_vision=False)
    two = {int(r["TP"]): r for r in calibrate(tmp_path / "two", 2, two_space, LLAVA, trained)}
    for row in (*one.values(), *two.values()):
        ratio = float(row["Predicted Memory per GPU (GiB)"]) / float(
            row["Measured Memory per GPU (GiB)"]
        )
        assert 0.3 < ratio < 1.2, row
    assert _memory(one[8], "Measured") > _memory(one[2], "Measured")
    assert _memory(two[2], "Predicted") < _memory(two[1], "Predicted")
    chosen = next(r for r in two.values() if r["Predicted Rank"] == "1")
    best = min(float(r["Time per Step"]) for r in two.values())
    assert float(chosen["Time per Step"]) <= 2 * best


def _memory(row: dict[str, str], which: str) -> float:
    return float(row[f"{which} Memory per GPU (GiB)"])


def test_time_limit_stops_training_and_the_backstop_cancels(tmp_path):
    """One candidate stopped by its probe after 3 s of training; one cancelled by the runner
    because start-up alone outlasts its whole budget (limit + grace = 1.2 s)."""
    cluster = ac.Cluster(num_nodes=1, gpus_per_node=1, gpu=CPU)
    space = ac.SearchSpace(micro_batch_sizes=(2,), recompute_num_layers=(0,),
                           global_batch_sizes=(8,))  # fmt: skip
    configurator = ac.AutoConfigurator(MODEL, cluster, space=space,
                                       training=ac.Training(precision="32"), top_k=1)  # fmt: skip
    stopped = configurator.run(
        tmp_path / "stopped", launch=Launch(accelerator="cpu"),
        limits=RunLimits(max_steps_per_run=100_000, max_minutes_per_run=0.05),
    )  # fmt: skip
    (row,) = csv.DictReader(stopped.results_csv.open())
    assert row["Stopped by Time Limit"] == "True" and 1 <= int(row["Steps Measured"]) < 100_000
    cancelled = configurator.run(
        tmp_path / "cancelled", launch=Launch(accelerator="cpu"),
        limits=RunLimits(max_minutes_per_run=0.01, startup_grace_minutes=0.01),
    )  # fmt: skip
    (failed,) = csv.DictReader(cancelled.failed_csv.open())
    assert failed["Error Type"] == "timeout" and "cancelled" in failed["Error"]
    assert list(csv.DictReader(cancelled.results_csv.open())) == []


def _print_table(name: str, world: int, rows: list[dict[str, str]]) -> None:
    print(f"\ncalibration of {name}, {world} process(es): layout | memory MB predicted/measured "
          "(error) | step s predicted/measured (error) | rank predicted/measured")  # fmt: skip
    for r in rows:
        layout = f"TP{r['TP']} DP{r['DP']} MBS{r['MBS']}"
        memory = (float(r["Predicted Memory per GPU (GiB)"]) * 1024,
                  float(r["Measured Memory per GPU (GiB)"]) * 1024)  # fmt: skip
        print(f"  {layout:16} | {memory[0]:6.1f} / {memory[1]:6.1f} ({r['Memory Error %']}%) | "
              f"{r['Predicted Time per Step']} / {r['Time per Step']} ({r['Time Error %']}%) | "
              f"{r['Predicted Rank']} / {r['Measured Rank']}")  # fmt: skip


def test_model_terms_dominate_at_hundreds_of_megabytes(tmp_path):
    """A Llama of 62M parameters (h 768, 2 layers, V 32000, seq 256, GBS 4): states of ~1 GB
    and a loss of 100-400 MB per process, so the model's own terms dominate (module docstring).
    Within 10% on one process; on two the runtime's share (gloo, the allocator's high-water)
    still leaves the prediction 16-18% low, hence 0.8 as the lower bound."""
    one_space = ac.SearchSpace(micro_batch_sizes=(1, 4), recompute_num_layers=(0,),
                               global_batch_sizes=(4,))  # fmt: skip
    one = calibrate(tmp_path / "one", 1, one_space, LARGE)
    two_space = ac.SearchSpace(
        tensor_parallel_sizes=(1, 2), pipeline_parallel_sizes=(1,), context_parallel_sizes=(1,),
        micro_batch_sizes=(2,), recompute_num_layers=(0,), global_batch_sizes=(4,),
    )  # fmt: skip
    two = calibrate(tmp_path / "two", 2, two_space, LARGE)
    for row in one:
        assert 0.9 < _memory(row, "Predicted") / _memory(row, "Measured") < 1.1, row
    for row in two:
        assert 0.8 < _memory(row, "Predicted") / _memory(row, "Measured") < 1.1, row
