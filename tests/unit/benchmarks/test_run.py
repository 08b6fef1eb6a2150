"""The runner: listing, one-line errors, lazy imports of other engineers' benchmarks."""

import functools
import importlib

from benchmarks import run
from benchmarks.common import append_results


def test_no_name_lists_every_benchmark(capsys):
    assert run.main([]) == 0
    out = capsys.readouterr().out
    assert all(name in out for name in ("train_llava", "train_vit", "data", "generate", "gpu"))


def test_a_misspelt_name_is_one_line_with_a_hint(capsys):
    assert run.main(["train_lava"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "benchmarks.run: unknown benchmark 'train_lava'; did you mean 'train_llava'?"


def test_a_missing_module_is_one_line(monkeypatch, capsys):
    absent = run.Benchmark("benchmarks.not_written_yet", "nothing")
    monkeypatch.setitem(run.BENCHMARKS, "later", absent)
    assert run.main(["later"]) == 2
    line = capsys.readouterr().out.strip()
    assert (
        line
        == "benchmarks.run: 'later' is not available: benchmarks.not_written_yet does not exist yet"
    )


def test_every_benchmark_module_that_exists_has_main():
    for benchmark in run.BENCHMARKS.values():
        try:
            module = importlib.import_module(benchmark.module)
        except ModuleNotFoundError:
            continue  # written by another issue; the runner says so in one line
        assert callable(module.main)


def test_record_appends_the_table(monkeypatch, tmp_path):
    results = tmp_path / "RESULTS.md"
    monkeypatch.setattr(run, "append_results", functools.partial(append_results, path=results))
    argv = ["gpu", "--tiny", "--cases", "vit", "--steps", "1", "--warmup", "0", "--record"]
    assert run.main(argv) == 0
    text = results.read_text()
    assert "## GPU: LLaVA-1.5-7B and ViT-B/16" in text and "| vit tiny" in text
    assert "- Command: `python -m benchmarks.run " + " ".join(argv) + "`" in text
