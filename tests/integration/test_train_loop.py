"""The training path end to end on a tiny Llama: files, checkpoint names, top-k, EMA, atomicity."""

import copy
import csv

import lightning.pytorch as pl
import pytest
import torch
from torch.utils.data import DataLoader, Dataset

from optica import run
from optica.data import MockDataModule
from optica.models import LlamaConfigTiny, LlamaModel
from optica.run.errors import ConfigError
from optica.train.api import finetune
from optica.train.callbacks import AtomicCheckpointIO
from optica.train.exp_manager import CheckpointConfig, EMAConfig, ExpManager, ResumeConfig
from optica.train.optim import OptimizerConfig
from optica.train.schedules import CosineAnnealing, WarmupPolicy
from optica.train.trainer import TrainerConfig


class CopyTask(Dataset):
    """Sequences whose second half repeats the first: learnable in a few steps."""

    def __len__(self):
        return 64

    def __getitem__(self, index):
        half = torch.randint(3, 60, (8,), generator=torch.Generator().manual_seed(index))
        ids = torch.cat([half, half])
        labels = ids.clone()
        labels[:8] = -100
        return {"input_ids": ids, "labels": labels}


class CopyData(pl.LightningDataModule):
    def __init__(self, micro_batch_size=4, global_batch_size=8):
        super().__init__()
        self.micro_batch_size, self.global_batch_size = micro_batch_size, global_batch_size

    def train_dataloader(self):
        return DataLoader(CopyTask(), batch_size=self.micro_batch_size)


def tiny_model():
    return LlamaModel(LlamaConfigTiny())


def trainer(steps=4, **kw):
    return TrainerConfig(
        max_steps=steps,
        log_every_n_steps=1,
        enable_progress_bar=False,
        enable_model_summary=False,
        **kw,
    )


def read_metrics(run_dir):
    with open(run_dir / "metrics.csv") as file:
        return list(csv.DictReader(file))


def test_finetune_writes_metrics_tensorboard_and_named_checkpoints(tmp_path):
    log = ExpManager(
        exp_dir=str(tmp_path),
        name="copy",
        ckpt=CheckpointConfig(save_top_k=2, every_n_train_steps=1),
    )
    optim = OptimizerConfig(lr=3e-3, sched=CosineAnnealing(warmup_steps=1, min_lr=1e-4))
    run_dir = finetune(tiny_model(), CopyData(), trainer(6), log=log, optim=optim)
    assert run_dir.parent == tmp_path / "copy"
    rows = [r for r in read_metrics(run_dir) if r["reduced_train_loss"]]
    assert len(rows) == 6 and float(rows[-1]["reduced_train_loss"]) < float(
        rows[0]["reduced_train_loss"]
    )
    assert [float(r["consumed_samples"]) for r in rows] == [8.0 * (i + 1) for i in range(6)]
    assert any(run_dir.glob("events.out.tfevents.*"))
    ckpts = sorted(p.name for p in (run_dir / "checkpoints").glob("copy--*.ckpt"))
    assert len(ckpts) == 2  # top-2 kept, the rest rotated out
    assert all(
        n.startswith("copy--reduced_train_loss=") and "-step=" in n and "-consumed_samples=" in n
        for n in ckpts
    )
    assert (run_dir / "checkpoints" / "last.ckpt").exists()


def test_accumulation_is_derived_and_mismatch_is_an_error(tmp_path):
    log = ExpManager(exp_dir=str(tmp_path), name="acc", ckpt=None)
    with pytest.raises(ConfigError, match="accumulate_grad_batches=3 but .* give 2"):
        finetune(tiny_model(), CopyData(4, 8), trainer(1, accumulate_grad_batches=3), log=log)
    with pytest.raises(ConfigError, match="global_batch_size=6 is not divisible"):
        finetune(tiny_model(), CopyData(4, 6), trainer(1), log=log)


def test_optimizer_stepped_in_backward_trains_and_resumes_like_stepping_after(tmp_path):
    """``optim.step_in_backward`` through Lightning: the same weights after 4 steps as the
    plain run, also when the run is stopped after 2 steps and resumed from its checkpoint."""
    torch.manual_seed(0)
    start = tiny_model()
    models = {name: copy.deepcopy(start) for name in ("after", "inside", "resumed")}
    sched = WarmupPolicy(warmup_steps=3)  # the same LR per step whatever max_steps says
    for name, model in models.items():
        optim = OptimizerConfig(lr=3e-3, sched=sched, step_in_backward=name != "after")
        ckpt = CheckpointConfig(monitor=None, save_top_k=-1, every_n_train_steps=2)
        log = ExpManager(exp_dir=str(tmp_path), name=name, ckpt=ckpt)
        if name == "resumed":
            finetune(copy.deepcopy(start), _resumable_data(), trainer(2), log=log, optim=optim)
        finetune(model, _resumable_data(), trainer(4), log=log, optim=optim)
    expected = dict(models["after"].named_parameters())
    initial = tiny_model().init_weights(trainer().seed)  # what the lazy model starts from
    assert not torch.equal(expected["output_layer.weight"], initial.output_layer.weight)
    for name in ("inside", "resumed"):
        for key, param in models[name].named_parameters():
            assert torch.equal(param, expected[key]), (name, key)
    # the run's hooks leave with it: the model's gradients stay where autograd puts them again
    inside = models["inside"]
    inside(torch.randint(0, 64, (1, 8))).sum().backward()
    assert all(param.grad is not None for param in inside.parameters())


def _resumable_data() -> MockDataModule:
    """Text-only batches that a resumed run continues from where the checkpoint was taken."""
    return MockDataModule(
        seq_length=16, vocab_size=64, num_images=0, num_train_samples=64, num_val_samples=0,
        micro_batch_size=4, global_batch_size=4,
    )  # fmt: skip


def test_optimizer_in_backward_refuses_accumulation(tmp_path):
    log = ExpManager(exp_dir=str(tmp_path), name="acc", ckpt=None)
    optim = OptimizerConfig(step_in_backward=True)
    with pytest.raises(ConfigError, match="step_in_backward=True: gradients must not accumulate"):
        finetune(tiny_model(), CopyData(4, 8), trainer(1), log=log, optim=optim)


def test_ema_weights_differ_from_raw_weights(tmp_path):
    log = ExpManager(exp_dir=str(tmp_path), name="ema", ema=EMAConfig(decay=0.9))
    run_dir = finetune(
        tiny_model(), CopyData(), trainer(3), log=log, optim=OptimizerConfig(lr=1e-2)
    )
    checkpoint = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=False)
    average, raw = checkpoint["state_dict"], checkpoint["current_model_state"]
    key = "model.decoder.layers.0.mlp.linear_fc1.weight"
    assert not torch.equal(average[key], raw[key])


def test_resume_continues_the_step_count(tmp_path):
    log = ExpManager(exp_dir=str(tmp_path), name="resume")
    first = finetune(tiny_model(), CopyData(), trainer(2), log=log)
    second = finetune(tiny_model(), CopyData(), trainer(4), log=log)
    assert second == first
    checkpoint = torch.load(first / "checkpoints" / "last.ckpt", weights_only=False)
    assert checkpoint["global_step"] == 4 and checkpoint["consumed_samples"] == 32
    steps = [int(r["step"]) for r in read_metrics(first) if r["reduced_train_loss"]]
    assert steps == [0, 1, 2, 3]  # the first run's rows are kept, the resumed run appends


def test_missing_checkpoint_is_an_error_when_asked(tmp_path):
    log = ExpManager(exp_dir=str(tmp_path), name="fresh", version="v1")
    resume = ResumeConfig(resume_ignore_no_checkpoint=False)
    with pytest.raises(ConfigError, match="no checkpoint in"):
        finetune(tiny_model(), CopyData(), trainer(1), log=log, resume=resume)


def test_run_saves_the_resolved_config(tmp_path):
    task = run.Partial(
        finetune,
        model=run.Config(LlamaModel, run.Config(LlamaConfigTiny)),
        data=run.Config(CopyData),
        trainer=run.Config(TrainerConfig, max_steps=1, enable_progress_bar=False),
        log=run.Config(ExpManager, exp_dir=str(tmp_path), name="cfg", ckpt=None),
    )
    run_dir = run.run(task, direct=True)
    assert run.from_yaml((run_dir / "config.yaml").read_text(), allow=("tests",)) == task


def test_interrupted_save_keeps_the_good_checkpoint(tmp_path):
    io = AtomicCheckpointIO()
    target = tmp_path / "last.ckpt"
    io.save_checkpoint({"step": 1}, target)

    class Unpicklable:
        def __reduce__(self):
            raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        io.save_checkpoint({"step": 2, "bad": Unpicklable()}, target)
    assert torch.load(target)["step"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["last.ckpt"]


def test_restore_config_starts_from_an_imported_checkpoint(tmp_path):
    from optica.checkpoint import load, save
    from optica.train.exp_manager import RestoreConfig

    source = tiny_model().init_weights(seed=7)
    save(source, tmp_path / "imported")
    log = ExpManager(exp_dir=str(tmp_path), name="restore", ckpt=None)
    resume = ResumeConfig(restore_config=RestoreConfig(path=str(tmp_path / "imported")))
    model = tiny_model()
    finetune(
        model,
        CopyData(),
        trainer(1),
        log=log,
        resume=resume,
        optim=OptimizerConfig(lr=0.0, weight_decay=0.0),
    )
    reference = load(tmp_path / "imported")
    for (name, ours), (_, theirs) in zip(
        model.state_dict().items(), reference.state_dict().items()
    ):
        assert torch.equal(ours, theirs), name
