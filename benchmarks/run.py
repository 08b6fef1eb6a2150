"""One runner for every benchmark: ``python -m benchmarks.run NAME [options]``.

    python -m benchmarks.run                     # list the benchmarks
    python -m benchmarks.run train_llava         # optica vs transformers, LLaVA-shaped model
    python -m benchmarks.run train_vit --record  # ... and append the table to RESULTS.md
    python -m benchmarks.run gpu --tiny          # the GPU benchmark's code path on the CPU

Options after the name go to that benchmark (``--help`` lists them). Modules are imported only
when their benchmark runs, so a missing one (another engineer's, not written yet) costs one line.
"""

from __future__ import annotations

import importlib
import shlex
import sys
from collections.abc import Callable
from dataclasses import dataclass

from benchmarks.common import append_results


@dataclass(frozen=True)
class Benchmark:
    """A runnable benchmark.

    Args:
        module: Module with ``main()`` (reads ``sys.argv``) returning a result dict.
        summary: One line for the listing.
        args: Arguments put before the user's (a fixed choice of the module's options).
        records: Whether ``--record`` is handled here (the module has ``report(result)``);
            other benchmarks append to RESULTS.md themselves.
    """

    module: str
    summary: str
    args: tuple[str, ...] = ()
    records: bool = False


BENCHMARKS = {
    "train_llava": Benchmark(
        "benchmarks.train_step",
        "training step vs transformers, LLaVA-1.5-shaped (~110M), fp32 and bf16 autocast",
        ("--models", "llava"),
        records=True,
    ),
    "train_vit": Benchmark(
        "benchmarks.train_step",
        "training step vs transformers, ViT-B/16-shaped (4 layers), fp32 and bf16 autocast",
        ("--models", "vit"),
        records=True,
    ),
    "data": Benchmark("benchmarks.data_throughput", "data pipeline vs LLaVA-style preprocessing"),
    "generate": Benchmark("benchmarks.generate", "KV-cached generation vs transformers"),
    "gpu": Benchmark(
        "benchmarks.gpu", "LLaVA-1.5-7B LoRA/full and ViT-B/16 steps on one GPU, MFU", records=True
    ),
}
TITLES = {"train_llava": "Training step: LLaVA-shaped", "train_vit": "Training step: ViT-shaped",
          "gpu": "GPU: LLaVA-1.5-7B and ViT-B/16"}  # fmt: skip


def listing() -> str:
    width = max(len(name) for name in BENCHMARKS)
    lines = [f"  {name.ljust(width)}  {b.summary}" for name, b in BENCHMARKS.items()]
    return "usage: python -m benchmarks.run NAME [--record] [options]\n" + "\n".join(lines)


def load(name: str) -> Callable[[], object] | None:
    """The benchmark's ``main``, or None (after one line saying why) when its module is absent."""
    module = BENCHMARKS[name].module
    try:
        return importlib.import_module(module).main
    except ModuleNotFoundError as error:
        if error.name != module:  # the module exists but something it imports does not
            raise
        print(f"benchmarks.run: '{name}' is not available: {module} does not exist yet")
        return None


def unknown(name: str) -> str:
    from difflib import get_close_matches

    close = get_close_matches(name, BENCHMARKS, n=1)
    hint = f"; did you mean '{close[0]}'?" if close else f" (known: {', '.join(BENCHMARKS)})"
    return f"benchmarks.run: unknown benchmark '{name}'{hint}"


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help"):
        print(listing())
        return 0
    name, rest = argv[0], argv[1:]
    if name not in BENCHMARKS:
        print(unknown(name), file=sys.stderr)
        return 2
    benchmark = BENCHMARKS[name]
    record = benchmark.records and "--record" in rest
    rest = [a for a in rest if a != "--record"] if benchmark.records else rest
    entry = load(name)
    if entry is None:
        return 2
    command = "python -m benchmarks.run " + shlex.join(argv)
    sys.argv = [f"benchmarks.run {name}", *benchmark.args, *rest]
    result = entry()
    if record and isinstance(result, dict):
        report = importlib.import_module(benchmark.module).report
        append_results(TITLES[name], report(result), command=command)
    return 0


if __name__ == "__main__":
    sys.exit(main())
