"""``optica export`` / ``optica.export_ckpt`` of training checkpoints: a distributed checkpoint
directory (written here in one process by the same ``DistributedCheckpointer`` that
``ParallelStrategy`` saves with, no process group), a one-process run (its ``config.yaml`` and
Lightning file), or a run directory → its latest checkpoint; anything else is one line. Layouts
that really shard (TP=2): ``tests/integration/parallel/test_precision_and_export.py``.
"""

from __future__ import annotations

import os

import pytest
import torch
from safetensors.torch import load_file

import optica
from optica import run
from optica.cli import main as cli_main
from optica.models import LlamaConfigTiny, LlamaModel, save_hf
from optica.run.serialize import to_yaml
from optica.train.api import finetune
from optica.train.parallel.checkpoint import DistributedCheckpointer
from optica.train.parallel.export import MODEL_CONFIG_FILE, model_config_text


def trained_like(seed: int) -> LlamaModel:
    return LlamaModel(LlamaConfigTiny()).init_weights(seed)


def write_training_checkpoint(model: LlamaModel, path) -> None:
    """What ``ParallelStrategy.save_checkpoint`` writes: the module's tensors (``model.`` keys),
    Lightning's metadata and the model config."""
    tensors = {"state_dict": {f"model.{k}": v for k, v in model.state_dict().items()}}
    files = {MODEL_CONFIG_FILE: model_config_text(model)}
    DistributedCheckpointer().save(tensors, {"global_step": 1}, path, files)


def weights(directory) -> dict[str, torch.Tensor]:
    files = sorted(directory.glob("*.safetensors"))
    return {key: value for file in files for key, value in load_file(file).items()}


def assert_same_export(exported, model, tmp_path) -> None:
    save_hf(model, tmp_path / "expected")
    ours, theirs = weights(exported), weights(tmp_path / "expected")
    assert set(ours) == set(theirs)
    for key, tensor in theirs.items():
        torch.testing.assert_close(ours[key], tensor, atol=0, rtol=0)
    assert (exported / "config.json").read_text() == (
        tmp_path / "expected" / "config.json"
    ).read_text()


def optica_cli(capsys, *argv):
    code = cli_main.main(list(argv))
    out, err = capsys.readouterr()
    return code, out.splitlines(), err.splitlines()


def test_cli_exports_a_distributed_checkpoint_directory(tmp_path, capsys):
    model = trained_like(1)
    checkpoint = tmp_path / "step=1.ckpt"
    write_training_checkpoint(model, checkpoint)
    code, out, err = optica_cli(capsys, "export", str(checkpoint))
    assert (code, out) == (0, [str(checkpoint / "hf")]), err
    assert_same_export(checkpoint / "hf", model, tmp_path)


def test_a_run_directory_exports_its_latest_checkpoint(tmp_path):
    run_dir = tmp_path / "run"
    older, newer = trained_like(1), trained_like(2)
    write_training_checkpoint(older, run_dir / "checkpoints" / "step=1.ckpt")
    write_training_checkpoint(newer, run_dir / "checkpoints" / "step=2.ckpt")
    old_time = (run_dir / "checkpoints" / "step=1.ckpt").stat().st_mtime - 60
    os.utime(run_dir / "checkpoints" / "step=1.ckpt", (old_time, old_time))
    (run_dir / "checkpoints" / ".step=3.ckpt.partial").mkdir()  # an unfinished save: ignored
    exported = optica.export_ckpt(run_dir, output_path=tmp_path / "hf")
    assert exported == tmp_path / "hf"
    assert_same_export(exported, newer, tmp_path)


def test_an_existing_output_is_refused_unless_overwritten(tmp_path):
    checkpoint = tmp_path / "ckpt"
    write_training_checkpoint(trained_like(1), checkpoint)
    optica.export_ckpt(checkpoint, output_path=tmp_path / "hf")
    with pytest.raises(optica.checkpoint.CheckpointExistsError, match="already exists"):
        optica.export_ckpt(checkpoint, output_path=tmp_path / "hf")
    assert optica.export_ckpt(checkpoint, output_path=tmp_path / "hf", overwrite=True)


def write_one_process_run(model: LlamaModel, run_dir, *, with_config: bool = True) -> None:
    """A run of Lightning's default strategy: ``config.yaml`` (the launched task, as
    ``optica.train.api`` writes it) and a single-file checkpoint."""
    (run_dir / "checkpoints").mkdir(parents=True)
    if with_config:
        task = run.Partial(finetune, model=run.Config(LlamaModel, run.Config(LlamaConfigTiny)))
        (run_dir / "config.yaml").write_text(to_yaml(task))
    state = {f"model.{k}": v for k, v in model.state_dict().items()}
    torch.save({"state_dict": state, "global_step": 2}, run_dir / "checkpoints" / "step=2.ckpt")


def test_a_one_process_run_exports_from_its_config_and_lightning_file(tmp_path, capsys):
    model = trained_like(3)
    write_one_process_run(model, tmp_path / "run")
    code, out, err = optica_cli(capsys, "export", str(tmp_path / "run"))
    assert (code, out) == (0, [str(tmp_path / "run" / "hf")]), err
    assert_same_export(tmp_path / "run" / "hf", model, tmp_path)


def test_what_is_not_exportable_is_one_line(tmp_path, capsys):
    (tmp_path / "empty_run" / "checkpoints").mkdir(parents=True)
    write_one_process_run(trained_like(1), tmp_path / "run_without_config", with_config=False)
    (tmp_path / "other").mkdir()
    cases = {
        "empty_run": "holds no checkpoint yet",
        "run_without_config": "is a one-process Lightning checkpoint and",
        "other": "is not an optica checkpoint (no optica_checkpoint.json), a distributed training "
        "checkpoint (no meta.pt and .metadata) or a run directory (no checkpoints/)",
    }
    for name, expected in cases.items():
        code, out, err = optica_cli(capsys, "export", str(tmp_path / name))
        assert (code, out, len(err)) == (2, [], 1), (name, err)
        assert err[0].startswith("error: ") and expected in err[0], err
