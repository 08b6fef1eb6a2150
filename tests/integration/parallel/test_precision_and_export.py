"""The vision plans with bf16-mixed, activation checkpointing and ``torch.compile``, and a TP=2
run's checkpoint exported to Hugging Face through ``optica export``: one two-rank gloo launch
(``LocalExecutor`` with torchrun) trains every run below in turn, compared step by step with one
plain process (Lightning's default strategy) on the same global batch of 8.

Activation checkpointing recomputes the same fp32 arithmetic, so its losses equal the run without
it to float tolerance. bf16-mixed is compared with one bf16-mixed process: TP computes under
autocast like the single process, FSDP2 also keeps bf16 parameter copies, so the tolerance is
bf16's (~2^-8 relative on a loss of ~5). FP8 cannot run on CPU; its refusal is checked here at the
command line (and without processes in ``tests/unit/train/test_strategy.py``).

Recorded 2026-11 (torch 2.13 CPU): LLaVA fp32 5.33711, 4.82607, 4.16475; bf16-mixed 5.33727,
4.82316, 4.16254 (max 2.9e-3 from fp32); TP=2 bf16 within 1.6e-3 and FSDP2 bf16 within 4.8e-3 of
the bf16 process; every activation-checkpointed run and the compiled ViT within 5e-7 of fp32.
"""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file

from optica.cli.main import main
from optica.models import LlavaConfigTiny, LlavaModel, save_hf
from tests.integration.parallel import vision_tasks as tasks
from tests.integration.parallel.launching import launch

SLOW = [pytest.mark.slow, pytest.mark.distributed]
FP32_TOLERANCE = 1e-5  # reduction order only
BF16_TOLERANCE = 1e-2  # bf16 rounding of activations (and FSDP2's bf16 parameters)
REFERENCES = {  # name: (model, precision)
    "llava": ("llava", "32-true"),
    "llava_bf16": ("llava", "bf16-mixed"),
    "vit": ("vit", "32-true"),
}
TWO_RANKS = {  # name: (reference, micro-batch size, strategy, precision)
    "llava_tp2_bf16": ("llava_bf16", 8, {"tensor_model_parallel_size": 2}, "bf16-mixed"),
    "llava_fsdp2_bf16": ("llava_bf16", 4, {}, "bf16-mixed"),
    "llava_tp2_selective_ac": ("llava", 8, {"tensor_model_parallel_size": 2,
                                            "activation_checkpointing": "selective"}, "32-true"),
    "llava_fsdp2_full_ac": ("llava", 4, {"activation_checkpointing": "full"}, "32-true"),
    "vit_tp2_full_ac": ("vit", 8, {"tensor_model_parallel_size": 2,
                                   "activation_checkpointing": "full"}, "32-true"),
    "vit_cp2_selective_ac": ("vit", 8, {"context_parallel_size": 2,
                                        "activation_checkpointing": "selective"}, "32-true"),
    "vit_ddp2_compile": ("vit", 4, {"data_parallel_sharding": "ddp", "compile": True}, "32-true"),
}  # fmt: skip
EXPORTED = "llava_tp2"  # saved at step 2, exported through the CLI


@pytest.fixture(scope="module")
def reference(environment):
    """One plain process per reference; the fp32 LLaVA run saves its step-2 checkpoint."""
    return {
        name: tasks.train(str(environment), f"reference_{name}", kind=kind, devices=1,
                          micro_batch_size=8, precision=precision,
                          save_at=2 if name == "llava" else None)
        for name, (kind, precision) in REFERENCES.items()
    }  # fmt: skip


@pytest.fixture(scope="module")
def two_ranks(environment):
    runs = [
        {"name": name, "kind": which.split("_")[0], "devices": 2, "micro_batch_size": micro,
         "strategy": strategy, "precision": precision}
        for name, (which, micro, strategy, precision) in TWO_RANKS.items()
    ]  # fmt: skip
    tp2 = {"tensor_model_parallel_size": 2}
    runs.append({"name": EXPORTED, "kind": "llava", "devices": 2, "micro_batch_size": 8,
                 "steps": 2, "save_at": 2, "strategy": tp2})  # fmt: skip
    return launch(environment, runs, ranks=2, task=tasks.train_all)


@pytest.mark.parametrize("name", list(TWO_RANKS))
@pytest.mark.slow
@pytest.mark.distributed
def test_two_rank_run_matches_one_process(name, two_ranks, reference):
    which, _, _, precision = TWO_RANKS[name]
    tolerance = BF16_TOLERANCE if precision == "bf16-mixed" else FP32_TOLERANCE
    expected = reference[which]
    assert two_ranks[name] == pytest.approx(expected, abs=tolerance)
    assert len(set(expected)) == 3  # the loss moves: the steps really trained
    if precision == "bf16-mixed":  # and it really computed in bf16, not in fp32
        assert two_ranks[name] != pytest.approx(reference["llava"], abs=1e-4)


@pytest.mark.slow
@pytest.mark.distributed
def test_bf16_really_changes_the_arithmetic(reference):
    """The bf16 reference differs from fp32 by more than fp32 noise, so the bf16 runs above are
    compared with a run that really computed in bf16."""
    assert reference["llava_bf16"] != pytest.approx(reference["llava"], abs=1e-4)
    assert reference["llava_bf16"] == pytest.approx(reference["llava"], abs=BF16_TOLERANCE)


@pytest.mark.slow
@pytest.mark.distributed
def test_tensor_parallel_run_exports_through_the_cli_like_one_process(
    environment, two_ranks, reference, capsys
):
    """``optica export RUN_DIR`` of the TP=2 run (its latest checkpoint, step 2) writes the same
    tensors and config.json as the one-process run's step-2 model saved with ``save_hf``."""
    run_dir = environment / EXPORTED / "run"
    assert main(["export", str(run_dir)]) == 0
    assert capsys.readouterr().out.splitlines() == [str(run_dir / "hf")]
    single = torch.load(
        environment / "reference_llava" / "run" / "checkpoints" / "step=2.ckpt",
        weights_only=False,
    )["state_dict"]
    model = LlavaModel(LlavaConfigTiny())
    model.load_weights({k.removeprefix("model."): v for k, v in single.items()})
    save_hf(model, environment / "hf_one_process")
    ours, theirs = _weights(run_dir / "hf"), _weights(environment / "hf_one_process")
    assert set(ours) == set(theirs)
    for key, tensor in theirs.items():
        torch.testing.assert_close(ours[key], tensor, atol=1e-5, rtol=0)
    assert (run_dir / "hf" / "config.json").read_text() == (
        environment / "hf_one_process" / "config.json"
    ).read_text()


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on machines without GPU")
def test_fp8_is_refused_at_the_command_line_in_one_line(environment, capsys):
    argv = [
        "finetune", "--yes", "--factory", "llava_tiny(max_steps=1)", "data.num_val_samples=0",
        f"log.exp_dir={environment}", "log.name=fp8", "trainer.strategy.fp8=hybrid",
    ]  # fmt: skip
    assert main(argv) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1, err
    assert err[0].startswith("error: invalid parallel layout for LlavaConfig")
    assert "fp8 needs an NVIDIA GPU with compute capability >= 8.9" in err[0]


def _weights(directory) -> dict[str, torch.Tensor]:
    files = sorted(directory.glob("*.safetensors"))
    return {key: value for file in files for key, value in load_file(file).items()}
