"""``optica demo``, short: it trains, scores before and after, plots, saves a checkpoint that
``optica.load`` and ``optica.generate`` use, and says where everything is."""

import re

import pytest
import torch

import optica
from optica.cli.main import main


@pytest.mark.slow
def test_short_demo_learns_and_leaves_its_files(tmp_path, capsys):
    threads = torch.get_num_threads()
    try:
        code = main(
            ["demo", "--dir", str(tmp_path), "--steps", "40", "--examples", "3", "--target", "0.0"]
        )
    finally:
        torch.set_num_threads(threads)
    out = capsys.readouterr().out
    assert code == 0
    before, after = map(float, re.search(r"([\d.]+)% before -> ([\d.]+)% after", out).groups())
    assert after > before + 10  # 40 steps already beat the untrained model clearly
    (run_dir,) = (tmp_path / "demo").iterdir()
    for name in ("loss.png", "metrics.csv", "config.yaml", "example.png"):
        assert (run_dir / name).is_file(), name
    assert f"tensorboard --logdir {run_dir}" in out and str(run_dir / "loss.png") in out
    assert len(re.findall(r"\[(ok |BAD)\]", out)) == 3  # answers from the saved checkpoint
    model = optica.load(run_dir / "model")
    assert not model.training and model.config.language_transformer_config.vocab_size > 0
    (answer,) = optica.generate(
        str(run_dir / "model"),
        ["What shape is the red object?"],
        images=[[str(run_dir / "example.png")]],
        max_new_tokens=3,
    )
    assert isinstance(answer, str)
