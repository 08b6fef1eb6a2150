"""ViT classification through the command line: the tiny ViT on shapes reaches a stated top-1,
trains from an image folder (class per sub-folder), and ``optica validate`` reports top-1/top-5."""

import csv

import pytest
import torch

from optica import run
from optica.cli.main import main
from optica.data.shapes import ShapesConfig, shapes_sample
from optica.recipes import vit_tiny
from optica.train.api import validate

FAST = ["trainer.enable_progress_bar=false", "trainer.enable_model_summary=false"]


@pytest.fixture(autouse=True)
def one_thread():
    """Two threads on a busy 2-core machine spin against each other."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def val_rows(run_dir) -> list[dict]:
    with open(run_dir / "metrics.csv") as file:
        return [r for r in csv.DictReader(file) if r.get("val_top1")]


@pytest.mark.slow
def test_tiny_vit_learns_shapes(tmp_path, capsys):
    """Measured on 2 cores: val_top1 0.48 / 0.60 / 0.68 after 120 / 240 / 360 steps (chance:
    0.33); a ViT learns shapes from scratch slowly (no convolutional prior)."""
    argv = ["finetune", "--factory", "vit_tiny", "--yes", f"log.exp_dir={tmp_path}"]
    assert main([*argv, "trainer.max_steps=360", "trainer.val_check_interval=120", *FAST]) == 0
    (run_dir,) = (tmp_path / "vit_tiny").iterdir()
    top1 = [float(r["val_top1"]) for r in val_rows(run_dir)]
    assert len(top1) == 3 and top1[-1] >= 0.6 and top1[-1] > top1[0]
    assert all(float(r["val_top5"]) == 1.0 for r in val_rows(run_dir))  # 3 classes
    checkpoint = run_dir / "checkpoints" / "last.ckpt"
    capsys.readouterr()
    validated = ["validate", "--factory", "vit_tiny", "--yes", f"log.exp_dir={tmp_path}"]
    assert main([*validated, f"resume.resume_from_checkpoint={checkpoint}", *FAST]) == 0
    assert "val_top1" in capsys.readouterr().out


def write_image_folder(root, per_class: int, split: str) -> None:
    config = ShapesConfig(min_objects=1, max_objects=1, size_range=(0.45, 0.6))
    for index in range(per_class * 6):
        sample = shapes_sample(config, split, index)
        folder = root / sample.objects[0].kind
        folder.mkdir(parents=True, exist_ok=True)
        sample.image.save(folder / f"{index}.png")


def test_tiny_vit_on_an_image_folder_and_validate_returns_top_k(tmp_path):
    write_image_folder(tmp_path / "train", 32, "train")
    write_image_folder(tmp_path / "val", 8, "val")
    task = vit_tiny.finetune_recipe(dir=str(tmp_path), max_steps=60)
    task.data = vit_tiny.image_folder(root=str(tmp_path / "train"), val_root=str(tmp_path / "val"))
    task.trainer.val_check_interval = None
    task.trainer.enable_progress_bar = False
    run_dir = run.run(task, direct=True)
    last = run_dir / "checkpoints" / "last.ckpt"
    check = vit_tiny.validate_recipe(dir=str(tmp_path))
    check.resume.resume_from_checkpoint = str(last)
    check.data = task.data
    built = run.build(check)
    assert built.func is validate
    (metrics,) = built()
    assert {"val_loss", "val_top1", "val_top5"} <= set(metrics)
    assert 0.0 <= metrics["val_top1"] <= metrics["val_top5"] == 1.0
