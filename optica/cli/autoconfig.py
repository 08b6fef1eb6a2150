"""``optica autoconfig``: size a model and find its fastest parallel layout, before any run.

    optica autoconfig --model llama2_7b --num-nodes 1 --gpus-per-node 8 --gpu-memory-gb 141 \\
        --seq-length 4096 --global-batch-size 128 --output autoconfig_out
    optica autoconfig --recommend --max-training-days 5 --num-nodes 20 --output out

Prints the best candidates as a table and writes ``candidates.csv``, ``base_config.yaml`` and
``top_k/rank_NN.yaml`` (see :mod:`optica.autoconfig.outputs`). With ``--run`` it then trains the
top-k candidates (``--max-steps-per-run``, ``--max-minutes-per-run``, ``--executor``), prints
what they measured next to what was predicted, and writes ``results.csv``, ``failed.csv`` and
``predicted_vs_measured.png`` (see :mod:`optica.autoconfig.runner`).
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from rich.console import Console
from rich.table import Table

from optica import autoconfig as ac
from optica.autoconfig.hardware import gpu_for_memory
from optica.autoconfig.results import results_rows
from optica.autoconfig.runner import Launch, RunLimits
from optica.run.errors import ConfigError, OpticaError


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    description = "recommend a model size and find the fastest parallel layout (seed 004)"
    parser = subparsers.add_parser("autoconfig", help=description, description=description)
    _add_model_arguments(parser)
    _add_cluster_arguments(parser)
    _add_search_arguments(parser)
    _add_runner_arguments(parser)
    parser.set_defaults(func=autoconfig_command)


def autoconfig_command(args: argparse.Namespace) -> int:
    console = Console(width=max(Console().width, 140), highlight=False)
    cluster = _cluster(args)
    model = _model(args, cluster, console)
    configurator = ac.AutoConfigurator(
        model=model, cluster=cluster, space=_space(args), training=_training(args), top_k=args.top_k
    )
    result = configurator.search()
    outputs = configurator.write(args.output, result)
    if not result.fitting:
        raise OpticaError(_nothing_fits(result, outputs.candidates_csv))
    console.print(_table(result, args.top_k))
    console.print(
        f"{len(result.fitting)} of {len(result.candidates)} valid layouts fit "
        f"({result.rejected} invalid skipped); wrote:"
    )
    for path in (outputs.candidates_csv, outputs.base_config, *outputs.top_k):
        console.print(f"  {path}")
    if args.run:
        return _run(args, configurator, result, console)
    return 0


def _run(
    args: argparse.Namespace,
    configurator: ac.AutoConfigurator,
    result: ac.SearchResult,
    console: Console,
) -> int:
    """Trains the top-k candidates; 0 when at least one was measured."""
    limits = RunLimits(
        max_steps_per_run=args.max_steps_per_run, max_minutes_per_run=args.max_minutes_per_run
    )
    launch = Launch(
        executor=args.executor, accelerator=args.accelerator, partition=args.partition,
        account=args.account,
    )  # fmt: skip
    console.print(
        f"running the top {min(args.top_k, len(result.fitting))} candidates "
        f"({limits.max_steps_per_run} steps / {limits.max_minutes_per_run:g} min each, "
        f"{args.executor} executor)..."
    )
    measurements = configurator.run(args.output, limits=limits, launch=launch, result=result)
    console.print(_measured_table(result, measurements))
    for outcome in measurements.outcomes:
        if outcome.measured is None:
            console.print(f"  rank {outcome.candidate.rank} failed ({outcome.error_type}): "
                          f"{outcome.error}")  # fmt: skip
    for path in (measurements.results_csv, measurements.failed_csv, measurements.plot):
        console.print(f"  {path}")
    if not measurements.succeeded:
        raise OpticaError(f"no candidate ran successfully; see {measurements.failed_csv}")
    return 0


def _add_model_arguments(parser: argparse.ArgumentParser) -> None:
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--model", help="a published size: " + ", ".join(ac.preset_names()))
    which.add_argument("--recommend", action="store_true", help="size the model from a budget")
    group = parser.add_argument_group("model size recommendation (C = 8·N·T)")
    group.add_argument("--family", default="gpt3", help="family to size (default: gpt3)")
    group.add_argument("--gpu-count", type=int, help="GPUs to budget (default: all)")
    group.add_argument("--tflops-per-gpu", type=float, default=140.0, help="default: 140")
    group.add_argument("--max-training-days", type=float, help="required with --recommend")
    group.add_argument("--num-tokens-in-b", type=float, default=300.0, help="default: 300")


def _add_cluster_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("cluster")
    group.add_argument("--num-nodes", type=int, default=1)
    group.add_argument("--gpus-per-node", type=int, default=8)
    group.add_argument("--gpu", help="preset: " + ", ".join(ac.GPUS) + " (default: by memory)")
    group.add_argument("--gpu-memory-gb", type=float, help="memory per GPU (GiB)")
    for flag, what in (
        ("--peak-tflops", "dense bf16 peak"),
        ("--hbm-gbs", "HBM GB/s"),
        ("--nvlink-gbs", "NVLink GB/s per direction"),
        ("--ib-gbs", "InfiniBand GB/s per GPU"),
    ):
        group.add_argument(flag, type=float, help=f"override the preset's {what}")


def _add_search_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("search")
    group.add_argument("--seq-length", type=int, help="default: the model's")
    group.add_argument("--global-batch-size", type=_sizes, help="one or more, e.g. 256,512")
    for flag in (
        "--tensor-parallel-sizes", "--pipeline-parallel-sizes", "--virtual-pipeline-sizes",
        "--context-parallel-sizes", "--expert-parallel-sizes", "--micro-batch-sizes",
    ):  # fmt: skip
        group.add_argument(flag, type=_sizes, help="comma-separated, e.g. 1,2,4")
    group.add_argument("--recompute-num-layers", type=_sizes, help="activation-ckpt layers")
    group.add_argument("--min-model-parallel-size", type=int, default=1)
    group.add_argument("--max-model-parallel-size", type=int)
    group.add_argument("--peft", choices=("none", "lora"), default="none")
    group.add_argument("--lora-dim", type=int, default=32)
    group.add_argument("--precision", choices=("bf16-mixed", "32"), default="bf16-mixed")
    group.add_argument(
        "--step-in-backward",
        action="store_true",
        help="optim.step_in_backward: one gradient alive at a time (one GPU, no accumulation)",
    )
    group.add_argument("--output", type=Path, required=True, help="directory for the files")
    group.add_argument("--top-k", type=int, default=5, help="configs to write (default: 5)")


def _add_runner_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("runner: train the top-k candidates and measure them")
    group.add_argument("--run", action="store_true", help="launch the top-k candidates")
    group.add_argument("--max-steps-per-run", type=int, default=50)
    group.add_argument("--max-minutes-per-run", type=float, default=10.0)
    group.add_argument("--executor", choices=("local", "slurm"), default="local")
    group.add_argument("--accelerator", choices=("auto", "cpu", "gpu"), default="auto")
    group.add_argument("--partition", help="Slurm partition")
    group.add_argument("--account", help="Slurm account")


def _sizes(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected integers like 1,2,4, got {text!r}") from None
    if not values or min(values) < 0:
        raise argparse.ArgumentTypeError(f"expected non-negative integers, got {text!r}")
    return values


def _cluster(args: argparse.Namespace) -> ac.Cluster:
    overrides = {
        "memory_gb": args.gpu_memory_gb, "peak_tflops": args.peak_tflops,
        "hbm_gbs": args.hbm_gbs, "nvlink_gbs": args.nvlink_gbs, "ib_gbs": args.ib_gbs,
    }  # fmt: skip
    base = ac.gpu_preset(args.gpu) if args.gpu else gpu_for_memory(args.gpu_memory_gb or 80)
    given = {name: value for name, value in overrides.items() if value is not None}
    gpu = dataclasses.replace(base, **given)
    return ac.Cluster(num_nodes=args.num_nodes, gpus_per_node=args.gpus_per_node, gpu=gpu)


def _model(args: argparse.Namespace, cluster: ac.Cluster, console: Console) -> ac.ModelShape:
    if args.recommend:
        model = _recommended(args, cluster, console)
    else:
        model = ac.model_shape(args.model)
    return model.with_seq_length(args.seq_length) if args.seq_length else model


def _recommended(args: argparse.Namespace, cluster: ac.Cluster, console: Console) -> ac.ModelShape:
    if args.max_training_days is None:
        raise ConfigError("--recommend needs --max-training-days")
    budget = dict(
        gpu_count=args.gpu_count or cluster.world_size,
        tflops_per_gpu=args.tflops_per_gpu,
        num_tokens_in_b=args.num_tokens_in_b,
    )
    size = ac.recommend_model_size(max_training_days=args.max_training_days, **budget)
    model = ac.generate_base_config(args.family, model_size_in_b=size)
    actual = ac.count_parameters(model) / 1e9
    days = ac.estimate_training_days(model_size_in_b=actual, **budget)
    console.print(
        f"recommended size: {size:.2f}B parameters → {model.name} ({actual:.2f}B), "
        f"about {days:.1f} days on {budget['gpu_count']} GPUs for {args.num_tokens_in_b:g}B tokens"
    )
    return model


def _space(args: argparse.Namespace) -> ac.SearchSpace:
    return ac.SearchSpace(
        tensor_parallel_sizes=args.tensor_parallel_sizes,
        pipeline_parallel_sizes=args.pipeline_parallel_sizes,
        virtual_pipeline_sizes=args.virtual_pipeline_sizes,
        context_parallel_sizes=args.context_parallel_sizes,
        expert_parallel_sizes=args.expert_parallel_sizes,
        micro_batch_sizes=args.micro_batch_sizes,
        recompute_num_layers=args.recompute_num_layers,
        global_batch_sizes=args.global_batch_size,
        min_model_parallel_size=args.min_model_parallel_size,
        max_model_parallel_size=args.max_model_parallel_size,
    )


def _training(args: argparse.Namespace) -> ac.Training:
    lora = ac.Lora(dim=args.lora_dim) if args.peft == "lora" else None
    return ac.Training(precision=args.precision, lora=lora, step_in_backward=args.step_in_backward)


def _table(result: ac.SearchResult, k: int) -> Table:
    gpu = result.cluster.gpu
    title = (
        f"{result.model.name} ({ac.count_parameters(result.model) / 1e9:.2f}B) on "
        f"{result.cluster.num_nodes}×{result.cluster.gpus_per_node} {gpu.name}: best layouts"
    )
    columns = ("rank", "tp", "pp", "vp", "cp", "ep", "dp", "mbs", "gbs", "act_ckpt_layers")
    columns += ("memory_per_gpu_gib", "step_time_s", "samples_per_s", "tflops_per_gpu")
    table = Table(*columns, title=title)
    for candidate in result.top(k):
        row = candidate.row()
        table.add_row(*(str(row[c]) for c in columns))
    return table


def _measured_table(result: ac.SearchResult, measurements: ac.Measurements) -> Table:
    title = f"{result.model.name}: measured (best first) vs predicted"
    columns = ("Measured Rank", "Predicted Rank", "TP", "PP", "CP", "DP", "MBS", "VP")
    columns += ("Act Ckpt Layers", "Time per Step", "Predicted Time per Step", "Time Error %")
    columns += ("Measured Memory per GPU (GiB)", "Predicted Memory per GPU (GiB)")
    columns += ("Memory Error %", "Samples per Second", "Model TFLOPS / GPU")
    table = Table(*columns, title=title)
    for row in results_rows(result, list(measurements.outcomes)):
        table.add_row(*(str(row[c]) for c in columns))
    return table


def _nothing_fits(result: ac.SearchResult, csv_path: Path) -> str:
    where = f"{result.cluster.world_size} GPUs of {result.cluster.gpu.memory_gb:g} GiB"
    if not result.candidates:
        example = f" (e.g. {result.rejected_examples[0]})" if result.rejected_examples else ""
        return f"no valid layout of {result.model.name} on {where}{example}; widen the search"
    least = min(result.candidates, key=lambda c: c.memory.total)
    layout = least.layout
    return (
        f"no layout of {result.model.name} fits on {where}: the smallest needs "
        f"{least.memory.total_gib:.1f} GiB per GPU (TP={layout.tp}, PP={layout.pp}, "
        f"CP={layout.cp}, MBS={layout.micro_batch_size}); add GPUs or shorten the sequence "
        f"(all candidates: {csv_path})"
    )
