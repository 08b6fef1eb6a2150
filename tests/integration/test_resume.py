"""Exact resume: 8 steps straight equal 4 steps, a restart, then 4 more — same loss and LR at
every step (so the same batches, in the same order) and the same random stream (LoRA dropout),
through ``optica.finetune`` and once through the command line."""

import csv

import pytest
import torch
from torch.utils.data import Dataset

from optica import run
from optica.cli.main import main
from optica.data import ShapesDataModule
from optica.recipes import llava_tiny
from optica.train.api import finetune
from optica.train.exp_manager import CheckpointConfig, ExpManager
from optica.train.optim import OptimizerConfig
from optica.train.peft import LoRA
from optica.train.schedules import CosineAnnealing
from optica.train.trainer import TrainerConfig


@pytest.fixture(autouse=True)
def one_thread():
    """Two threads on a busy 2-core machine spin against each other (4x slower here)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


class Crash(RuntimeError):
    """The process dying mid-run (a node failure, a pre-emption)."""


class CrashingDataset(Dataset):
    def __init__(self, dataset, crash_after: int | None):
        self.dataset, self.crash_after, self.served = dataset, crash_after, 0

    def __len__(self):
        return len(self.dataset)

    def __getitem__(self, index):
        self.served += 1
        if self.crash_after is not None and self.served > self.crash_after:
            raise Crash(f"crashed after {self.crash_after} samples")
        return self.dataset[index]


class Shapes(ShapesDataModule):
    """Shapes whose training set can crash after a number of samples."""

    def __init__(self, crash_after: int | None = None):
        # two micro-batches per optimizer step: gradient accumulation resumes too
        super().__init__(
            num_train_samples=48, num_val_samples=0, micro_batch_size=2, global_batch_size=4
        )
        self.crash_after = crash_after

    def build_dataset(self, split):
        dataset = super().build_dataset(split)
        return CrashingDataset(dataset, self.crash_after) if split == "train" else dataset


def train(tmp_path, version: str, crash_after: int | None = None):
    log = ExpManager(
        exp_dir=str(tmp_path),
        name="resume",
        version=version,
        tensorboard=False,
        ckpt=CheckpointConfig(monitor=None, save_top_k=-1, every_n_train_steps=4),
    )
    trainer = TrainerConfig(
        max_steps=8,
        log_every_n_steps=1,
        enable_progress_bar=False,
        enable_model_summary=False,
        accelerator="cpu",
    )
    optim = OptimizerConfig(lr=5e-3, sched=CosineAnnealing(warmup_steps=2, min_lr=1e-4))
    peft = LoRA(dim=4, alpha=8, dropout=0.3)  # dropout: the random stream must resume too
    model = run.build(llava_tiny.model())
    return finetune(model, Shapes(crash_after), trainer, log=log, optim=optim, peft=peft)


def per_step(run_dir) -> dict[int, tuple[float, float, float]]:
    """step -> (loss, lr, consumed samples) from metrics.csv."""
    with open(run_dir / "metrics.csv") as file:
        rows = [r for r in csv.DictReader(file) if r.get("reduced_train_loss")]
    return {
        int(r["step"]): (
            float(r["reduced_train_loss"]),
            float(r["lr"]),
            float(r["consumed_samples"]),
        )
        for r in rows
    }


def test_eight_steps_equal_four_crash_resume_four(tmp_path):
    straight = per_step(train(tmp_path, "straight"))
    # The loader runs one micro-batch ahead: the 10th micro-batch (samples 19-20) is fetched
    # during step 5, after step 4's checkpoint is written.
    with pytest.raises(Crash):
        train(tmp_path, "resumed", crash_after=18)
    resumed = per_step(train(tmp_path, "resumed"))
    assert sorted(straight) == list(range(8)) and sorted(resumed) == list(range(8))
    for step in range(8):
        assert resumed[step] == straight[step], step  # exact: batches, LR, dropout masks
    assert straight[7][2] == 32.0


def test_cli_resume_continues_exactly(tmp_path):
    def cli(max_steps: int, version: str) -> int:
        return main(
            [
                "finetune",
                "--factory",
                "llava_tiny",
                "--yes",
                f"log.exp_dir={tmp_path}",
                f"log.version={version}",
                "log.tensorboard=false",
                "log.ckpt.every_n_train_steps=2",
                "log.ckpt.monitor=none",
                "log.ckpt.save_top_k=-1",
                "optim.sched=none",
                "data.num_train_samples=32",
                "data.num_val_samples=0",
                "data.micro_batch_size=4",
                "data.global_batch_size=4",
                f"trainer.max_steps={max_steps}",
                "trainer.val_check_interval=none",
                "trainer.log_every_n_steps=1",
                "trainer.enable_progress_bar=false",
            ]
        )

    assert cli(4, "straight") == 0
    assert cli(2, "resumed") == 0 and cli(4, "resumed") == 0
    straight = per_step(tmp_path / "llava_tiny" / "straight")
    resumed = per_step(tmp_path / "llava_tiny" / "resumed")
    assert sorted(resumed) == [0, 1, 2, 3] and resumed == straight
