"""Seed 002's ViT fine-tuning at a higher resolution than pre-training (224 → 512 px there; 32 → 48
px here, 4x4 → 6x6 patches): the fine-tuning recipe restores the pre-trained checkpoint
(``resume.restore_config``), the position embeddings are resampled to the new grid, and it
trains."""

import csv
import logging
import math

import torch
import torch.nn.functional as F

from optica import run
from optica.checkpoint import save
from optica.data.shapes import ShapesConfig, shapes_sample
from optica.models import ViTClassificationModel, ViTConfigTiny
from optica.recipes import vit

TABLE = "backbone.position_embeddings.weight"


def write_image_folder(root, count: int, size: int) -> None:
    """Class-per-sub-folder images of one shape each, labelled by its kind."""
    config = ShapesConfig(image_size=size, min_objects=1, max_objects=1, size_range=(0.45, 0.6))
    for index in range(count):
        sample = shapes_sample(config, "train", index)
        folder = root / sample.objects[0].kind
        folder.mkdir(parents=True, exist_ok=True)
        sample.image.save(folder / f"{index}.png")


def resampled(table: torch.Tensor, old: int, new: int) -> torch.Tensor:
    grid = table[1:].reshape(1, old, old, -1).permute(0, 3, 1, 2)
    grid = F.interpolate(grid, size=(new, new), mode="bicubic", antialias=True)
    return torch.cat((table[:1], grid.permute(0, 2, 3, 1).reshape(new * new, -1)))


def finetune_at_48px(tmp_path, restore_from: str) -> run.Partial:
    """The seed-002 fine-tuning recipe on the tiny ViT, shrunk to two CPU steps."""
    task = vit.finetune(
        ViTConfigTiny, name="ft48", dir=str(tmp_path / "runs"), num_nodes=1, num_gpus_per_node=1,
        data_root=str(tmp_path / "data"), num_classes=3, restore_from=restore_from,
    )  # fmt: skip
    task.model.config.img_h = task.model.config.img_w = 48
    task.data.image_size, task.data.val_root, task.data.num_workers = 48, None, 0
    task.data.global_batch_size = task.data.micro_batch_size = 4
    task.trainer.max_steps, task.trainer.precision, task.trainer.log_every_n_steps = 2, "32-true", 1
    task.trainer.enable_progress_bar = False
    return task


def test_finetune_at_a_higher_resolution_restores_resampled_positions(tmp_path, caplog):
    pretrained = ViTClassificationModel(ViTConfigTiny(num_classes=3)).init_weights(seed=5)
    save(pretrained, tmp_path / "pretrained")
    write_image_folder(tmp_path / "data" / "train", 12, 48)
    task = finetune_at_48px(tmp_path, str(tmp_path / "pretrained"))
    with caplog.at_level(logging.INFO, logger="optica.checkpoint"):
        run_dir = run.run(task, direct=True)
    notes = [r.getMessage() for r in caplog.records if "resampled the position" in r.getMessage()]
    assert notes == [
        f"{TABLE}: resampled the position embeddings from a 4x4 to a 6x6 patch grid "
        "(bicubic, 1 class token(s) kept)"
    ]
    with open(run_dir / "metrics.csv") as file:
        losses = [float(r["reduced_train_loss"]) for r in csv.DictReader(file)
                  if r.get("reduced_train_loss")]  # fmt: skip
    assert len(losses) == 2 and all(math.isfinite(loss) for loss in losses)
    state = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=False)["state_dict"]
    table = state[f"model.{TABLE}"]
    expected = resampled(pretrained.state_dict()[TABLE], 4, 6)
    assert table.shape == (1 + 36, 64)
    # two SGD steps in warm-up (lr <= 0.03 * 2/500) move the restored table only slightly
    torch.testing.assert_close(table, expected, atol=1e-3, rtol=0)
    assert not torch.equal(table, expected)  # and it did train
