"""``optica autoconfig`` through its own ``add_parser`` on a fresh parser."""

import argparse
import csv

import pytest

from optica.cli import autoconfig
from optica.run.errors import ConfigError, OpticaError


def invoke(*argv):
    parser = argparse.ArgumentParser(prog="optica")
    autoconfig.add_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["autoconfig", *argv])
    return args.func(args)


def test_model_search_prints_the_best_and_writes_files(tmp_path, capsys):
    out = tmp_path / "out"
    code = invoke("--model", "llama2_7b", "--num-nodes", "1", "--gpus-per-node", "8",
                  "--gpu-memory-gb", "141", "--seq-length", "4096", "--global-batch-size", "128",
                  "--output", str(out), "--top-k", "2", "--tensor-parallel-sizes", "1,2",
                  "--pipeline-parallel-sizes", "1,2")  # fmt: skip
    printed = capsys.readouterr().out
    assert code == 0
    assert "llama2_7b (6.74B) on 1×8 H200 141GB: best layouts" in printed
    assert str(out / "candidates.csv") in printed and str(out / "top_k" / "rank_02.yaml") in printed
    rows = list(csv.DictReader((out / "candidates.csv").open()))
    assert {r["tp"] for r in rows} == {"1", "2"} and {r["gbs"] for r in rows} == {"128"}
    assert (out / "base_config.yaml").exists()


def test_recommend_sizes_the_seed_example(tmp_path, capsys):
    code = invoke("--recommend", "--max-training-days", "5", "--num-nodes", "20",
                  "--gpu-memory-gb", "80", "--output", str(tmp_path), "--top-k", "1",
                  "--tensor-parallel-sizes", "1,2", "--pipeline-parallel-sizes", "1",
                  "--virtual-pipeline-sizes", "1", "--micro-batch-sizes", "1,2")  # fmt: skip
    printed = capsys.readouterr().out
    assert code == 0
    assert "recommended size: 4.03B parameters → gpt3_5b (5.05B)" in printed
    assert "on 160 GPUs for 300B tokens" in printed
    assert "gpt3_5b (5.05B) on 20×8 H100 80GB" in printed


def test_recommend_needs_a_time_budget(tmp_path):
    with pytest.raises(ConfigError, match="--recommend needs --max-training-days"):
        invoke("--recommend", "--output", str(tmp_path))


def test_run_where_no_candidate_can_run_still_writes_every_file(tmp_path, capsys):
    """GPT-3 (learned positions, biases) is searched but not launched: every top-k candidate
    fails before any process starts, and the run says so in one line and in failed.csv."""
    with pytest.raises(OpticaError) as err:
        invoke("--model", "gpt3_125m", "--gpus-per-node", "1", "--output", str(tmp_path),
               "--run", "--top-k", "2", "--max-steps-per-run", "3", "--max-minutes-per-run",
               "1", "--micro-batch-sizes", "1,2", "--recompute-num-layers", "0")  # fmt: skip
    assert str(err.value) == f"no candidate ran successfully; see {tmp_path / 'failed.csv'}"
    printed = capsys.readouterr().out
    assert (
        "rank 1 failed (config): cannot launch gpt3_125m: its language model has a non-gated"
        in (printed.replace("\n", ""))
    )
    assert list(csv.DictReader((tmp_path / "results.csv").open())) == []
    assert (tmp_path / "results.csv").read_text().startswith("Model Name,Model Size,Seq Length")
    failed = list(csv.DictReader((tmp_path / "failed.csv").open()))
    assert [r["Predicted Rank"] for r in failed] == ["1", "2"]
    assert {r["Error Type"] for r in failed} == {"config"}
    assert "learned positions" in failed[0]["Error"]
    assert (tmp_path / "predicted_vs_measured.png").read_bytes()[:4] == b"\x89PNG"


def test_unknown_model_has_a_hint(tmp_path):
    with pytest.raises(ConfigError, match="did you mean 'llama2_7b'"):
        invoke("--model", "llama2-7b", "--output", str(tmp_path))


def test_nothing_fits_is_one_clear_line(tmp_path):
    with pytest.raises(OpticaError) as err:
        invoke("--model", "llama3_70b", "--gpus-per-node", "2", "--gpu", "a100-40gb",
               "--output", str(tmp_path))  # fmt: skip
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith(
        "no layout of llama3_70b fits on 2 GPUs of 40 GiB: the smallest needs"
    )
    assert (tmp_path / "candidates.csv").exists()


def test_custom_gpu_values(tmp_path, capsys):
    invoke("--model", "vit_b16", "--gpu", "h100", "--gpu-memory-gb", "96", "--peak-tflops",
           "500", "--output", str(tmp_path), "--top-k", "1")  # fmt: skip
    text = (tmp_path / "top_k" / "rank_01.yaml").read_text()
    assert "memory_gb: 96" in text and "peak_tflops: 500" in text


@pytest.mark.parametrize(
    "argv",
    [
        ("--model", "llama2_7b", "--recommend", "--output", "x"),  # mutually exclusive
        ("--output", "x"),  # neither
        ("--model", "llama2_7b", "--output", "x", "--tensor-parallel-sizes", "one"),
    ],
)
def test_argument_errors_exit(argv, capsys):
    with pytest.raises(SystemExit):
        invoke(*argv)


def test_step_in_backward_searches_one_gpu(tmp_path, capsys):
    out = tmp_path / "out"
    code = invoke("--model", "tinyllama_1.1b", "--num-nodes", "1", "--gpus-per-node", "1",
                  "--gpu", "h100", "--global-batch-size", "1", "--micro-batch-sizes", "1",
                  "--output", str(out), "--top-k", "1", "--step-in-backward")  # fmt: skip
    assert code == 0
    (row,) = [r for r in csv.DictReader((out / "candidates.csv").open()) if r["rank"] == "1"]
    assert row["peak_at"] != "end of forward"  # no gradients left from the last step there
    with pytest.raises(ConfigError, match="step_in_backward runs on one GPU; the cluster has 8"):
        invoke("--model", "tinyllama_1.1b", "--gpus-per-node", "8", "--output", str(out),
               "--step-in-backward")  # fmt: skip
