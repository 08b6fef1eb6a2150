"""Parallel layouts of the vision models really launched: two gloo processes under torchrun
(``LocalExecutor``) train the tiny LLaVA (shapes VQA) and the tiny ViT (shapes classification)
for three steps under each layout, compared step by step with one plain process (Lightning's
default strategy) on the same global batch of 8.

One two-rank launch trains every layout in turn (LLaVA's PP=2 pads the spliced sequence to the
language model's seq_length, see ``optica.models.vlm.llava.pipeline``); a one-rank launch resumes
step-2 checkpoints under another layout. Reference losses (recorded 2026-11, torch 2.13 CPU,
fp32): LLaVA 5.33711, 4.82607, 4.16475; ViT 1.11551, 1.42012, 0.95553; every layout reproduced
them to < 1e-6.
"""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file

from optica.models import LlavaConfigTiny, LlavaModel, save_hf
from optica.train.parallel.checkpoint import consolidated_model_state
from optica.train.parallel.export import export_distributed_to_hf
from tests.integration.parallel import vision_tasks as tasks
from tests.integration.parallel.launching import launch

pytestmark = [pytest.mark.slow, pytest.mark.distributed]

TOLERANCE = 1e-5  # fp32: reduction order only (observed < 1e-6)
LAYOUTS = {  # name: (micro-batch size, strategy)
    "tp2": (8, {"tensor_model_parallel_size": 2}),
    "ddp2": (4, {"data_parallel_sharding": "ddp"}),
    "fsdp2": (4, {"data_parallel_sharding": "fsdp"}),
    "cp2": (8, {"context_parallel_size": 2}),
    "pp2": (8, {"pipeline_model_parallel_size": 2}),
}
TWO_RANKS = {
    f"{kind}_{layout}": {"kind": kind, "micro_batch_size": micro, "strategy": strategy}
    for kind in ("llava", "vit")
    for layout, (micro, strategy) in LAYOUTS.items()
}
SAVED = ("llava_tp2", "llava_fsdp2", "llava_pp2", "vit_tp2")
LORA = {"llava_lora_ddp2": "ddp", "llava_lora_fsdp2": "fsdp"}
RESUMED = {"llava_tp2_to_tp1": "llava_tp2", "llava_fsdp2_to_dp1": "llava_fsdp2",
           "llava_pp2_to_pp1": "llava_pp2", "vit_tp2_to_tp1": "vit_tp2"}  # fmt: skip


@pytest.fixture(scope="module")
def reference(environment):
    """One plain process per model (and LLaVA with LoRA), saving at step 2 for the export."""
    runs = {"llava": {"kind": "llava"}, "vit": {"kind": "vit"},
            "llava_lora": {"kind": "llava", "lora": True},
            "llava_frozen_vision": {"kind": "llava", "freeze_vision": True}}  # fmt: skip
    return {
        name: tasks.train(str(environment), f"reference_{name}", devices=1, micro_batch_size=8,
                          save_at=2, **spec)
        for name, spec in runs.items()
    }  # fmt: skip


@pytest.fixture(scope="module")
def two_ranks(environment):
    runs = [
        {"name": name, "devices": 2, **spec, "save_at": 2 if name in SAVED else None}
        for name, spec in TWO_RANKS.items()
    ]
    runs += [
        {"name": name, "kind": "llava", "devices": 2, "micro_batch_size": 4, "lora": True,
         "save_at": 2, "strategy": {"data_parallel_sharding": sharding}}
        for name, sharding in LORA.items()
    ]  # fmt: skip
    runs.append({"name": "llava_tp2_frozen_vision", "kind": "llava", "devices": 2,
                 "micro_batch_size": 8, "freeze_vision": True,
                 "strategy": {"tensor_model_parallel_size": 2}})  # fmt: skip
    return launch(environment, runs, ranks=2, task=tasks.train_all)


@pytest.fixture(scope="module")
def resumed(environment, two_ranks):
    """Step-2 checkpoints resumed in one process (TP=1, DP=1, PP=1) for the last step."""
    checkpoint = environment / "{}" / "run" / "checkpoints" / "step=2.ckpt"
    runs = [
        {"name": name, "kind": source.split("_")[0], "devices": 1, "micro_batch_size": 8,
         "strategy": {}, "resume_from": str(checkpoint).format(source)}
        for name, source in RESUMED.items()
    ]  # fmt: skip
    return launch(environment, runs, ranks=1, task=tasks.train_all)


@pytest.mark.parametrize("name", list(TWO_RANKS))
def test_two_rank_layout_matches_one_process(name, two_ranks, reference):
    expected = reference[TWO_RANKS[name]["kind"]]
    assert two_ranks[name] == pytest.approx(expected, abs=TOLERANCE)
    assert len(set(expected)) == 3  # the loss moves: the steps really trained


@pytest.mark.parametrize("name", list(RESUMED))
def test_resume_under_another_layout_gives_the_same_next_loss(name, resumed, reference):
    expected = reference[RESUMED[name].split("_")[0]][2]
    assert resumed[name] == pytest.approx([expected], abs=TOLERANCE)


def test_frozen_vision_tower_under_tensor_parallelism(two_ranks, reference):
    """LLaVA-1.5's full fine-tune (vision tower frozen, peft=freeze) runs under TP=2 like one
    process; only adapters (LoRA) are refused with TP > 1."""
    expected = reference["llava_frozen_vision"]
    assert two_ranks["llava_tp2_frozen_vision"] == pytest.approx(expected, abs=TOLERANCE)
    assert expected != pytest.approx(reference["llava"], abs=1e-4)  # the freeze changed training


@pytest.mark.parametrize("name", list(LORA))
def test_lora_trains_data_parallel_like_one_process(name, environment, two_ranks, reference):
    """LoRA under DDP and FSDP2: the same losses as one process, the adapters changed, the
    language model's base weights still their initial values (the vision tower and projector
    train too: LoRA's defaults, as NeMo's)."""
    assert two_ranks[name] == pytest.approx(reference["llava_lora"], abs=TOLERANCE)
    state = consolidated_model_state(environment / name / "run" / "checkpoints" / "step=2.ckpt")
    initial = LlavaModel(LlavaConfigTiny()).init_weights(tasks.SEED).state_dict()
    adapters = [key for key in state if ".lora_b." in key]
    assert adapters and all(state[key].abs().sum() > 0 for key in adapters)  # B starts at zero
    frozen = [key for key in initial if key.startswith("language_model.")]
    for key in frozen:
        torch.testing.assert_close(state[key], initial[key], atol=0, rtol=0)


def test_tensor_parallel_checkpoint_exports_like_one_process(environment, two_ranks, reference):
    """The TP=2 step-2 checkpoint, exported to Hugging Face in one process, holds the same
    tensors and config as the export of the one-process run's step-2 model."""
    exported = export_distributed_to_hf(
        environment / "llava_tp2" / "run" / "checkpoints" / "step=2.ckpt", environment / "hf_tp2"
    )
    single = torch.load(
        environment / "reference_llava" / "run" / "checkpoints" / "step=2.ckpt",
        weights_only=False,
    )["state_dict"]
    model = LlavaModel(LlavaConfigTiny())
    model.load_weights({k.removeprefix("model."): v for k, v in single.items()})
    save_hf(model, environment / "hf_single")
    ours, theirs = _weights(exported), _weights(environment / "hf_single")
    assert set(ours) == set(theirs)
    for key, tensor in theirs.items():
        torch.testing.assert_close(ours[key], tensor, atol=1e-5, rtol=0)
    assert (exported / "config.json").read_text() == (
        environment / "hf_single" / "config.json"
    ).read_text()


def _weights(directory) -> dict[str, torch.Tensor]:
    files = sorted(directory.glob("*.safetensors"))
    return {key: value for file in files for key, value in load_file(file).items()}
