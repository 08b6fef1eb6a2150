"""Recipes and configs through the command line, really training the tiny LLaVA a few steps:
the seed-000 YAML as is, its unknown keys as one line, LoRA training adapters only."""

from pathlib import Path

import pytest
import torch

from optica import run
from optica.cli.main import main
from optica.recipes import llava_tiny

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "shapes_tiny_llava.yaml"
SMALL = [
    "data.num_train_samples=64",
    "data.num_val_samples=0",
    "trainer.val_check_interval=none",
    "trainer.enable_progress_bar=false",
]


@pytest.fixture(autouse=True)
def one_thread():
    """Two threads on a busy 2-core machine spin against each other."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_seed_000_yaml_runs_as_is(tmp_path):
    argv = ["finetune", "--config", str(EXAMPLE), "--yes", f"log.exp_dir={tmp_path}"]
    assert main([*argv, "trainer.max_steps=10", *SMALL]) == 0
    (run_dir,) = (tmp_path / "shapes_tiny_llava").iterdir()
    names = sorted(p.name for p in (run_dir / "checkpoints").glob("shapes_tiny_llava--*.ckpt"))
    assert names == ["shapes_tiny_llava--reduced_train_loss=" + n.split("=", 1)[1] for n in names]
    assert names[-1].endswith("-step=10-consumed_samples=160.0.ckpt")  # every_n_train_steps: 10
    checkpoint = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)
    assert checkpoint["optimizer_states"][0]["param_groups"][0]["lr"] == 0.003  # warm-up of 5
    assert (run_dir / "metrics.csv").is_file() and any(run_dir.glob("events.out.tfevents.*"))


@pytest.mark.parametrize(
    ("block", "wrong", "hint"),
    [
        ("trainer", "max_stepz: 3", "did you mean 'max_steps'"),
        (
            "exp_manager",
            "create_tensorbord_logger: true",
            "did you mean 'create_tensorboard_logger'",
        ),
        ("optim", "weight_decai: 0.1", "did you mean 'weight_decay'"),
    ],
)
def test_unknown_seed_key_is_one_line(tmp_path, capsys, block, wrong, hint):
    text = EXAMPLE.read_text().replace(f"\n{block}:\n", f"\n{block}:\n  {wrong}\n", 1)
    config = tmp_path / "wrong.yaml"
    config.write_text(text)
    assert main(["finetune", "--config", str(config), "--dryrun"]) != 0
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and hint in err and f"{block}" in err


def test_lora_from_the_command_line_trains_adapters_only(tmp_path):
    frozen = ["peft.freeze_vision_model=true", "peft.freeze_vision_projection=true"]
    argv = ["finetune", "--factory", "llava_tiny", "--yes", f"log.exp_dir={tmp_path}"]
    assert main([*argv, "peft=lora", *frozen, "trainer.max_steps=3", *SMALL]) == 0
    (run_dir,) = (tmp_path / "llava_tiny").iterdir()
    checkpoint = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)
    weights = checkpoint["state_dict"]
    adapters = [k for k in weights if ".lora_a." in k or ".lora_b." in k]
    assert adapters and all(".language_model." in f".{k}" for k in adapters)
    optimizer = checkpoint["optimizer_states"][0]
    assert len(optimizer["state"]) == len(adapters)  # nothing else reached the optimizer
    start = run.build(llava_tiny.model()).init_weights(seed=1234).state_dict()  # trainer.seed
    for key, tensor in weights.items():
        name = key.removeprefix("model.")
        if name in start:
            assert torch.equal(tensor, start[name]), name  # base weights untouched
    assert any(not torch.all(weights[k] == 0) for k in adapters if ".lora_b." in k)  # B moved
