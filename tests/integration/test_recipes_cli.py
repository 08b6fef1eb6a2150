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


def test_seed_data_preset_takes_its_factory_parameters(tmp_path, capsys):
    """``image_folder``'s required ``root`` comes from the block; without it, one line."""
    text = "name: v\nmodel: {preset: vit_tiny}\ndata: {preset: image_folder, root: /photos}\n"
    config = tmp_path / "vit.yaml"
    config.write_text(text)
    assert main(["finetune", "--config", str(config), "--dryrun"]) == 0
    assert "root: /photos" in capsys.readouterr().out
    config.write_text(text.replace(", root: /photos", ""))
    assert main(["finetune", "--config", str(config), "--dryrun"]) != 0
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "needs root" in err


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


def test_top_k_rotation_and_ema_from_the_command_line(tmp_path):
    """``log.ckpt.save_top_k=2`` keeps the two best of five step checkpoints (named from the
    template) plus ``last.ckpt``; ``log.ema.decay`` keeps an average that differs from the raw
    weights in the checkpoint."""
    argv = ["finetune", "--factory", "llava_tiny", "--yes", f"log.exp_dir={tmp_path}"]
    ckpt = ["log.ckpt.save_top_k=2", "log.ckpt.every_n_train_steps=1", "log.ema.decay=0.5"]
    steps = ["trainer.max_steps=5", "trainer.log_every_n_steps=1"]
    assert main([*argv, *ckpt, *steps, *SMALL]) == 0
    (run_dir,) = (tmp_path / "llava_tiny").iterdir()
    kept = sorted(p.name for p in (run_dir / "checkpoints").glob("llava_tiny--*.ckpt"))
    assert len(kept) == 2, kept  # three of the five were rotated out
    assert all("-step=" in name and "-consumed_samples=" in name for name in kept)
    losses = [float(name.split("reduced_train_loss=")[1].split("-")[0]) for name in kept]
    rows = (run_dir / "metrics.csv").read_text().splitlines()
    header = rows[0].split(",").index("reduced_train_loss")
    logged = sorted(float(r.split(",")[header]) for r in rows[1:] if r.split(",")[header])
    assert sorted(losses) == pytest.approx(logged[:2], abs=0.006)  # the two lowest (2 decimals)
    checkpoint = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=False)
    average, raw = checkpoint["state_dict"], checkpoint["current_model_state"]
    assert any(not torch.equal(average[key], raw[key]) for key in raw)
