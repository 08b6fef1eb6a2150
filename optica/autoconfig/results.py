"""What the runner leaves on disk: results.csv, failed.csv and predicted_vs_measured.png.

``results.csv`` has NeMo auto-configurator's final-summary columns (Model Name ... Model TFLOPS
Aggregate, from the *measured* step time) followed by optica's predicted-vs-measured columns;
rows are ordered by measured samples/s. ``failed.csv`` has one row per candidate that did not
yield a measurement, with the error its log shows (an OOM is called one). Both files are always
written, with their header, even when every candidate failed; the plot then says so.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

from optica.autoconfig.memory import GIB
from optica.autoconfig.outputs import write_atomic
from optica.autoconfig.params import count_parameters
from optica.autoconfig.runner import Outcome, layout_label
from optica.autoconfig.search import SearchResult

NEMO_COLUMNS = (
    "Model Name", "Model Size", "Seq Length", "TP", "PP", "CP", "EP", "MBS", "VP", "Num Layers",
    "Hidden Size", "FFN Hidden Size", "GBS", "Nodes", "GPUs per Node", "Time per Step",
    "Samples per Second", "Model TFLOPS / GPU", "Model TFLOPS Aggregate",
)  # fmt: skip
COMPARISON_COLUMNS = (
    "Act Ckpt Layers", "DP", "Predicted Rank", "Measured Rank", "Predicted Time per Step",
    "Time Error %", "Predicted Memory per GPU (GiB)", "Measured Memory per GPU (GiB)",
    "Memory Error %", "Measured Process Memory per GPU (GiB)", "Steps Measured",
    "Stopped by Time Limit", "Run Dir",
)  # fmt: skip
FAILED_COLUMNS = (
    "Predicted Rank", "TP", "PP", "CP", "EP", "MBS", "VP", "GBS", "Act Ckpt Layers",
    "Predicted Memory per GPU (GiB)", "Error Type", "Error", "Log",
)  # fmt: skip


def error_percent(predicted: float, measured: float) -> float:
    """Signed error of the prediction relative to the measurement, in percent (NaN when
    nothing was measured)."""
    return 100.0 * (predicted - measured) / measured if measured else float("nan")


def results_rows(result: SearchResult, outcomes: list[Outcome]) -> list[dict[str, object]]:
    """One row per measured candidate, fastest (samples/s) first."""
    measured = [o for o in outcomes if o.measured is not None]
    measured.sort(key=lambda o: o.measured.step_time_s / o.candidate.layout.global_batch_size)  # type: ignore[union-attr]
    return [_row(result, o, i + 1) for i, o in enumerate(measured)]


def failed_rows(outcomes: list[Outcome]) -> list[dict[str, object]]:
    rows = []
    for outcome in (o for o in outcomes if o.measured is None):
        layout = outcome.candidate.layout
        rows.append(dict(zip(FAILED_COLUMNS, (
            outcome.candidate.rank, layout.tp, layout.pp, layout.cp, layout.ep,
            layout.micro_batch_size, layout.vp, layout.global_batch_size,
            layout.recompute_num_layers, round(outcome.candidate.memory.total_gib, 3),
            outcome.error_type, outcome.error, outcome.log or "",
        ))))  # fmt: skip
    return rows


def write_results(result: SearchResult, outcomes: list[Outcome], directory: Path) -> list[Path]:
    """``results.csv``, ``failed.csv`` and the plot under ``directory``; returns their paths."""
    rows = results_rows(result, outcomes)
    return [
        _write_csv(directory / "results.csv", NEMO_COLUMNS + COMPARISON_COLUMNS, rows),
        _write_csv(directory / "failed.csv", FAILED_COLUMNS, failed_rows(outcomes)),
        plot_predicted_vs_measured(result, outcomes, directory / "predicted_vs_measured.png"),
    ]


def plot_predicted_vs_measured(result: SearchResult, outcomes: list[Outcome], path: Path) -> Path:
    """Step time and memory per GPU, predicted against measured, one point per candidate."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    measured = [o for o in outcomes if o.measured is not None]
    figure, axes = plt.subplots(1, 2, figsize=(11, 4.8))
    for axis, (what, unit, pick) in zip(axes, _PANELS):
        points = [(pick(o, True), pick(o, False), o) for o in measured]
        axis.set_title(f"{what} per GPU" if "memory" in what else what)
        axis.set_xlabel(f"measured ({unit})")
        axis.set_ylabel(f"predicted ({unit})")
        if not points:
            axis.text(0.5, 0.5, "no candidate succeeded", ha="center", transform=axis.transAxes)
            continue
        high = max(max(p, m) for p, m, _ in points) * 1.1
        axis.plot([0, high], [0, high], color="grey", linestyle="--", linewidth=1, label="y = x")
        for predicted, actual, outcome in points:
            axis.scatter(actual, predicted)
            label = f"#{outcome.candidate.rank} {layout_label(outcome.candidate.layout)}"
            axis.annotate(label, (actual, predicted), fontsize=7, xytext=(3, 3),
                          textcoords="offset points")  # fmt: skip
        axis.set_xlim(0, high)
        axis.set_ylim(0, high)
        axis.legend(loc="upper left")
    figure.suptitle(f"{result.model.name}: predicted vs measured ({len(measured)} runs)")
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def _row(result: SearchResult, outcome: Outcome, measured_rank: int) -> dict[str, object]:
    model, cluster, candidate = result.model, result.cluster, outcome.candidate
    layout, measured = candidate.layout, outcome.measured
    assert measured is not None
    backbone, time = model.backbone, measured.step_time_s
    tflops = candidate.model_flops / time / 1e12
    predicted_memory = candidate.memory.total
    values = (
        model.name, round(count_parameters(model) / 1e9, 4), model.seq_length, layout.tp,
        layout.pp, layout.cp, layout.ep, layout.micro_batch_size, layout.vp, backbone.num_layers,
        backbone.hidden_size, backbone.ffn_hidden_size, layout.global_batch_size,
        cluster.num_nodes, cluster.gpus_per_node, round(time, 4),
        round(layout.global_batch_size / time, 3), round(tflops / layout.world_size, 4),
        round(tflops, 4),
        layout.recompute_num_layers, layout.dp, candidate.rank, measured_rank,
        round(candidate.step_time.total, 4),
        round(error_percent(candidate.step_time.total, time), 1),
        round(predicted_memory / GIB, 4), round(measured.peak_memory_bytes / GIB, 4),
        round(error_percent(predicted_memory, measured.peak_memory_bytes), 1),
        round(measured.process_peak_memory_bytes / GIB, 4), measured.steps,
        measured.stopped_by_time_limit, str(outcome.run_dir),
    )  # fmt: skip
    return dict(zip(NEMO_COLUMNS + COMPARISON_COLUMNS, values))


def _write_csv(path: Path, columns: tuple[str, ...], rows: list[dict[str, object]]) -> Path:
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=list(columns))
    writer.writeheader()
    writer.writerows(rows)
    return write_atomic(path, text.getvalue())


def _step_time(outcome: Outcome, predicted: bool) -> float:
    if predicted:
        return outcome.candidate.step_time.total
    return outcome.measured.step_time_s  # type: ignore[union-attr]


def _memory_gib(outcome: Outcome, predicted: bool) -> float:
    if predicted:
        return outcome.candidate.memory.total_gib
    return outcome.measured.peak_memory_bytes / GIB  # type: ignore[union-attr]


_PANELS = (("step time", "s", _step_time), ("peak memory", "GiB", _memory_gib))
