"""Parallel layouts as a user runs them: ``optica finetune --factory llava_tiny|vit_tiny`` with
``trainer.strategy.<key>=`` overrides and ``executor=torchrun`` (two gloo processes), against
the same recipe run by ``optica finetune`` in one process. Three steps on a global batch of 8.

Each layout is its own launch (one command line each, as a user types it): ~15 s apiece on an
idle 2-core machine. The recipes' own overrides below only shrink the run and make its metrics
easy to find.
"""

from __future__ import annotations

import pytest

from optica.cli.main import main
from tests.integration.parallel.tasks import read_losses

pytestmark = [pytest.mark.slow, pytest.mark.distributed]

TOLERANCE = 1e-5
LAYOUTS = {  # name: (micro-batch size, strategy overrides)
    "tp2": (8, ["trainer.strategy.tensor_model_parallel_size=2"]),
    "ddp2": (4, ["trainer.strategy=parallel", "trainer.strategy.data_parallel_sharding=ddp"]),
    "fsdp2": (4, ["trainer.strategy=parallel"]),
    "cp2": (8, ["trainer.strategy.context_parallel_size=2"]),
    "pp2": (8, ["trainer.strategy.pipeline_model_parallel_size=2"]),
}
RUNS = [(recipe, layout) for recipe in ("llava_tiny", "vit_tiny") for layout in LAYOUTS]


def finetune(exp_dir, recipe: str, name: str, micro_batch_size: int, extra: list[str]) -> list:
    """``optica finetune --factory "<recipe>(max_steps=3)" ...``; returns the logged losses."""
    argv = [
        "finetune", "--yes", "--factory", f"{recipe}(max_steps=3)",
        "trainer.log_every_n_steps=1", "trainer.enable_progress_bar=false",
        "data.num_train_samples=64",
        "data.num_val_samples=0", "data.global_batch_size=8",
        f"data.micro_batch_size={micro_batch_size}", f"log.exp_dir={exp_dir}",
        f"log.name={name}", "log.version=run", "log.ckpt=null", *extra,
    ]  # fmt: skip
    assert main(argv) == 0
    return read_losses(exp_dir / name / "run")


@pytest.fixture(scope="module")
def reference(environment):
    """Each recipe in this process, as ``optica finetune`` runs it without an executor."""
    return {recipe: finetune(environment, recipe, f"{recipe}_one", 8, []) for recipe in
            ("llava_tiny", "vit_tiny")}  # fmt: skip


@pytest.mark.parametrize(("recipe", "layout"), RUNS)
def test_cli_layout_on_two_processes_matches_one(recipe, layout, environment, reference):
    micro, overrides = LAYOUTS[layout]
    launch = ["trainer.devices=2", "executor=torchrun", "executor.ntasks_per_node=2"]
    losses = finetune(environment, recipe, f"{recipe}_{layout}", micro, overrides + launch)
    assert losses == pytest.approx(reference[recipe], abs=TOLERANCE)
    assert len(reference[recipe]) == 3 and len(set(reference[recipe])) == 3
