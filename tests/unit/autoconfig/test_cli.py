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


def test_run_is_accepted_but_not_faked(tmp_path):
    with pytest.raises(OpticaError, match="--run: launching candidates .* training engine"):
        invoke("--model", "llama2_7b", "--output", str(tmp_path), "--run", "--executor", "slurm",
               "--max-steps-per-run", "10", "--max-minutes-per-run", "5")  # fmt: skip
    assert not any(tmp_path.iterdir())


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
