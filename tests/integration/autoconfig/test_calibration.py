"""Calibration on this machine: the runner really trains the top candidates of a small Llama on
CPU (gloo, torchrun for two processes), and their measured peak memory and step time are set
against the predictions.

The "GPU" is a CPU described honestly: torch's CPU SDPA is a flash kernel
(``_scaled_dot_product_flash_attention_for_cpu``, dropout off) that saves only the log-sum-exp,
fp32 training, a stated sustained compute rate and gloo link, and no overlap of data-parallel
traffic with compute (gloo shares the cores); those numbers are assumptions, not fitted.

Measured memory is what the model predicts: the peak of live tensors above what was alive before
the model existed (:mod:`optica.autoconfig.measure`: on a GPU ``max_memory_allocated``, here the
CPU allocator's events recorded by torch's profiler over the first two steps). The process's own
peak RSS, which adds the runtime's buffers (gloo, oneDNN) and the freed pages glibc keeps, is in
``results.csv`` next to it and is not predicted. What made the model match (traced with the
same profiler events, every live block at the peak named by the op that made it):

* Lightning sets the gradients to None between the forward and the backward pass, so the last
  step's gradients sit next to the forward pass's activations and the logits and log-softmax,
  and are gone when the loss's backward starts (12·T·V): the peak is one of three moments
  (``optica.autoconfig.memory``); before, gradients were counted next to everything (+19% at
  MBS 4);
* the distributed optimizer is FSDP2 here (ZeRO-3, every state sharded): at the end of the
  backward pass the root module's gathered parameters, their unsharded gradients and the flat
  reduce-scatter input are alive (``optica.autoconfig.data_parallel``);
* the RSS had hidden 75-210 MB of runtime per process above the tensors;
* the profiler misses the frees a gloo worker thread makes when it drops the last reference to
  a collective's buffer (a race): TP2's all-gathered logits in some steps, FSDP's flat
  buffers. A block still held at the end of the window that no live tensor owns is taken as
  freed when its scope ended (``measure.unrecorded_frees``); before, the small Llama's TP2
  measured 17.5-19.6 MB from run to run and once failed the 0.8 bound in CI (19.4 MB).

Recorded 2026-11-24, torch 2.13 CPU, on a shared 2-core machine (another job running), each
table as ``pytest -s`` prints it; step times of one process swing 2-10x with the machine's load:

* small Llama (h 128, 2 layers, vocab 2048, seq 128, GBS 8): 1 process MBS 2 / 8 predicted
  25.5 / 57.5 MB, measured 25.4 / 57.3 MB (+0.2%, +0.3%); 2 processes MBS 2, DP2 (FSDP) / TP2
  predicted 22.0 / 15.8 MB, measured 20.6-21.3 / 16.2-17.2 MB in nine runs (+3.5 to +7%,
  -2.4 to -8.4%: DTensor's and gloo's buffers weigh at this size); step time predicted 0.120 /
  0.141 s, measured 0.10-0.16 / 0.24-0.38 s, the predicted order;
* the small Llama on 1 process, MBS 2 without accumulation, the optimizer stepped in the
  backward pass against the plain one: predicted 22.0 / 23.4 MB, measured 22.0 / 23.4 MB
  (+0.2%, +0.1%), the 1.4 MB saved predicted and measured alike (the plain peak is the end of
  the forward pass, next to the last step's 3.5 MB of gradients; stepped in backward, the
  loss's moment);
* tiny LLaVA (``llava_tiny`` at 128 tokens: 64 image tokens + 64 of text): 1 process with the
  tower frozen, MBS 8 / 2 predicted 23.2 / 9.3 MB, measured 18.3 / 8.0 MB (+27%, +17%);
  2 processes, all trained, DP2 / TP2 predicted 9.9 / 7.1 MB, measured 9.4 / 8.1 MB (+5%,
  -13%), the predicted order of step times. The model takes the logits at the text tokens
  only (image tokens are never learned: ``memory.logit_tokens``); the over-prediction on one
  process is what else optica's LLaVA skips for positions before the first learned one
  (``LlamaModel._positions_read``: the last layer's queries, projection and MLP) and the
  unlearned prompt — half the text in ``MockDataModule``'s samples, a data-dependent share the
  model counts (an upper bound);
* a Llama of 62M parameters (h 768, FFN 2048, 12 heads, 4 KV groups, 2 layers, vocab 32000,
  seq 256, GBS 4), states ~1 GB and a loss of 100-400 MB per process: 1 process MBS 4 / MBS 1
  (4 accumulated) predicted 1325.7 / 1100.5 MB, measured 1324.7 / 1101.1 MB (+0.1%, -0.1%);
  2 processes MBS 2, TP2 / DP2 (FSDP) predicted 692.1 / 939.8 MB, measured 702.6-704.8 /
  939.8-963.8 MB in three runs (-0.5 to -1.8%, 0 to -2.5%), TP2 695.8-711.2 MB in eight more
  runs of it alone. Some runs had measured TP2 at 790-892 MB: on rank 0 the whole [V, h] tensors
  the embedding and output shards were scattered from were sometimes freed by a gloo worker
  thread, whose frees the profiler does not record; the probe now follows only the tensors made
  once training starts (the model's own counted from its parameters). Step times: TP2
  1.90 / 1.86 / 1.78 / 2.94 / 1.97 s against DP2 2.60 / 2.62 / 3.12 / 3.72 / 2.62 s in five
  runs, 2.93 against 2.25 s in a sixth: the two layouts are within ~30-40% and can swap places
  with the machine's load; the model ranks TP2 first (4.78 against 5.13 s predicted: DP2's
  FSDP2 all-gathers every parameter twice and reduce-scatters the gradients, 270 MB a step
  through a 1 GB/s gloo link with no overlap).

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
CPU_EFFICIENCY = ac.Efficiency(
    compute=0.5, layer_overhead_s=2e-3, collective_latency_s=2e-4, overlap=0.0
)
MODEL = ac.ModelShape(
    name="calibration_llama",
    language=ac.LanguageShape(
        hidden_size=128, ffn_hidden_size=352, num_layers=2, num_attention_heads=4,
        num_query_groups=2, vocab_size=2048, seq_length=128,
    ),
)  # fmt: skip
STEPS = 5  # the first two are profiled for memory; the step time is the median of the rest
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
    assert measured.outcomes and [o.error for o in measured.outcomes if o.error] == []
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
        assert 0.85 < predicted[mbs] / actual[mbs] < 1.15, (mbs, predicted, actual)
    # The activations' share: what four times the micro-batch adds, predicted vs measured.
    growth = (predicted[8] - predicted[2]) / (actual[8] - actual[2])
    assert 0.85 < growth < 1.15, growth


def test_one_process_with_the_optimizer_stepped_in_backward(tmp_path):
    """``optim.step_in_backward``: no gradient is left at the end of the forward pass and one at
    a time is alive in the backward pass. At MBS 2 without accumulation the plain run's peak is
    the end of the forward pass, next to the last step's gradients; stepped in backward, it
    is the loss's moment. Memory and the saving measured against predicted; a layout that
    accumulates (MBS 1) is refused."""
    space = ac.SearchSpace(micro_batch_sizes=(1, 2), recompute_num_layers=(0,),
                           global_batch_sizes=(2,))  # fmt: skip
    in_backward = ac.Training(precision="32", step_in_backward=True)
    (stepped,) = calibrate(tmp_path / "stepped", 1, space, training=in_backward)
    plain = next(r for r in calibrate(tmp_path / "plain", 1, space) if r["MBS"] == "2")
    for row in (stepped, plain):
        assert 0.9 < _memory(row, "Predicted") / _memory(row, "Measured") < 1.1, row
    saved = {w: _memory(plain, w) - _memory(stepped, w) for w in ("Predicted", "Measured")}
    assert saved["Measured"] > 0 and 0.7 < saved["Predicted"] / saved["Measured"] < 1.3, saved


def test_two_processes_sharding_and_ranking(tmp_path):
    space = ac.SearchSpace(
        tensor_parallel_sizes=(1, 2), pipeline_parallel_sizes=(1,), context_parallel_sizes=(1,),
        micro_batch_sizes=(2,), recompute_num_layers=(0,), global_batch_sizes=(8,),
    )  # fmt: skip
    rows = calibrate(tmp_path, 2, space)
    by_tp = {int(r["TP"]): r for r in rows}
    predicted = {t: float(r["Predicted Memory per GPU (GiB)"]) for t, r in by_tp.items()}
    actual = {t: float(r["Measured Memory per GPU (GiB)"]) for t, r in by_tp.items()}
    for tp in (1, 2):  # TP2's few MB of DTensor and gloo buffers weigh at this size
        assert 0.8 < predicted[tp] / actual[tp] < 1.15, (tp, predicted, actual)
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
        assert 0.75 < ratio < 1.4, row  # over: the prompt, the last layer (module docstring)
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
    and a loss of 100-400 MB per process. Memory within 10% on one and on two processes."""
    one_space = ac.SearchSpace(micro_batch_sizes=(1, 4), recompute_num_layers=(0,),
                               global_batch_sizes=(4,))  # fmt: skip
    one = calibrate(tmp_path / "one", 1, one_space, LARGE)
    two_space = ac.SearchSpace(
        tensor_parallel_sizes=(1, 2), pipeline_parallel_sizes=(1,), context_parallel_sizes=(1,),
        micro_batch_sizes=(2,), recompute_num_layers=(0,), global_batch_sizes=(4,),
    )  # fmt: skip
    two = calibrate(tmp_path / "two", 2, two_space, LARGE)
    for row in one + two:
        assert 0.9 < _memory(row, "Predicted") / _memory(row, "Measured") < 1.1, row
    # The two layouts measure within ~30% of each other and swap places from run to run on
    # this shared machine (module docstring): only a wrong pick by far would fail.
    chosen = next(r for r in two if r["Predicted Rank"] == "1")
    best = min(float(r["Time per Step"]) for r in two)
    assert float(chosen["Time per Step"]) <= 2 * best, two
