"""The vision families' plans without processes: what each layout check accepts and refuses (one
line, with the reason), LLaVA's context-parallel batch split, and ``trainer.strategy`` on the
command line resolving to ``ParallelStrategy``."""

import pytest
import torch

from optica.autoconfig.layout import LayoutError
from optica.models import (
    CLIPViTConfigTiny,
    LlavaConfigTiny,
    LlavaModel,
    ViTClassificationModel,
    ViTConfigTiny,
)
from optica.models.modules.parallel import load_balanced_positions
from optica.models.registry import get_family
from optica.models.vision.encoder import VisionTransformer
from optica.models.vlm.llava.parallelize import split_llava_batch
from optica.models.vlm.llava.pipeline import llava_pipeline_batch, llava_pipeline_stages
from optica.models.vlm.llava.splice import IMAGE_TOKEN_INDEX, expand_labels
from optica.run.cli import registry
from optica.run.cli.command import parse_invocation
from optica.run.errors import ConfigError
from optica.train.module import token_loss
from optica.train.strategy import ParallelStrategy


def refused(model, world_size, **settings) -> str:
    with pytest.raises(LayoutError) as error:
        ParallelStrategy(**settings).validate(model, world_size)
    assert "\n" not in str(error.value)
    return str(error.value)


@pytest.mark.parametrize(
    "settings",
    [{"tensor_model_parallel_size": 2}, {"context_parallel_size": 2},
     {"pipeline_model_parallel_size": 2}, {}],
)  # fmt: skip
def test_the_tiny_vit_accepts_every_two_rank_layout(settings):
    # 17 tokens (16 patches + class token) with CP=2: the plan pads the sequence itself.
    ParallelStrategy(**settings).validate(ViTClassificationModel(ViTConfigTiny()), 2)


def test_llava_accepts_pipelines_and_refuses_sequence_parallelism_with_the_reason():
    model = LlavaModel(LlavaConfigTiny())
    ParallelStrategy(pipeline_model_parallel_size=2).validate(model, 2)
    message = refused(model, 2, tensor_model_parallel_size=2, sequence_parallel=True)
    assert "sequence_parallel with LLaVA is not supported yet" in message
    ParallelStrategy(tensor_model_parallel_size=2, context_parallel_size=2).validate(model, 4)


def test_vision_heads_must_divide_tp():
    model = ViTClassificationModel(ViTConfigTiny())  # 4 heads
    assert "num_attention_heads=4 is not divisible by TP=3" in refused(
        model, 3, tensor_model_parallel_size=3
    )


def test_every_vision_family_registers_a_plan():
    for name in ("clip_vit", "siglip_vit", "intern_vit", "vit", "llava"):
        assert get_family(name).parallel_plan is not None, name
    ParallelStrategy(context_parallel_size=2).validate(VisionTransformer(CLIPViTConfigTiny()), 2)


def test_llava_context_parallel_split_covers_the_spliced_labels_once():
    """The CP ranks' next-token targets are the one-process targets (spliced, shifted), cut into
    load-balanced shares; their losses over ``loss_denominator`` average to the whole mean."""
    model = LlavaModel(LlavaConfigTiny())
    ids = torch.tensor([[1, IMAGE_TOKEN_INDEX, 5, 6, 7], [1, IMAGE_TOKEN_INDEX, 8, 9, 3]])
    labels = torch.tensor([[-100, -100, 5, 6, 7], [-100, -100, 8, 9, -100]])
    batch = {"input_ids": ids, "labels": labels, "images": torch.zeros(2, 3, 32, 32)}
    shares = [split_llava_batch(batch, model, rank, 2) for rank in range(2)]
    expanded = expand_labels(ids, labels, model.config.num_image_tokens)  # [2, 68]
    padded = torch.full((2, 68), -100)
    padded[:, :-1] = expanded[:, 1:]
    joined = torch.full((2, 68), -100)
    for rank, share in enumerate(shares):
        joined[:, load_balanced_positions(68, rank, 2)] = share["next_labels"]
        assert share["loss_denominator"] == 5 / 2  # 5 learned tokens over CP=2
        assert share["input_ids"] is ids  # the model splices the whole row first
    assert torch.equal(joined, padded)


@pytest.mark.parametrize(
    "overrides",
    [["trainer.strategy.tensor_model_parallel_size=2"],
     ["trainer.strategy=parallel", "trainer.strategy.tensor_model_parallel_size=2"],
     ["trainer.strategy=parallel(tensor_model_parallel_size=2)"]],
)  # fmt: skip
def test_trainer_strategy_overrides_resolve_to_parallel_strategy(overrides):
    entry = registry.get_entrypoint("finetune")
    task = parse_invocation(entry, ["trainer.max_steps=1", *overrides]).task
    strategy = task.trainer.strategy
    assert strategy.__fn_or_cls__ is ParallelStrategy
    assert strategy.tensor_model_parallel_size == 2


def test_a_lightning_strategy_name_stays_a_string():
    entry = registry.get_entrypoint("finetune")
    task = parse_invocation(entry, ["trainer.max_steps=1", "trainer.strategy=ddp"]).task
    assert task.trainer.strategy == "ddp"


def _llava_batch() -> dict[str, torch.Tensor]:
    """Two right-padded rows: one image each, then a row with two images and one without."""
    image = IMAGE_TOKEN_INDEX
    ids = torch.tensor(
        [[1, image, 5, 6, 7], [1, image, 8, 9, 0], [1, image, image, 4, 5], [1, 3, 4, 5, 0]]
    )
    labels = torch.where(ids > 3, ids, -100)
    labels[0, 2] = -100  # every row learns two tokens
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 1, 0], [1, 1, 1, 1, 1], [1, 1, 1, 1, 0]])
    images = torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    return {"input_ids": ids, "labels": labels, "attention_mask": mask.bool(), "images": images}


def test_llava_pipeline_stages_give_one_process_loss_row_by_row():
    """Stage 0 (vision tower, projector, splice, first layer) then stage 1 (last layer, norm,
    output), one row per pipeline micro-batch, with labels padded like the spliced sequence to
    seq_length: the one-process loss (every row here learns the same number of tokens)."""
    model = LlavaModel(LlavaConfigTiny()).init_weights(3)
    batch = _llava_batch()
    inputs = {k: v for k, v in batch.items() if k != "labels"}
    expected = token_loss(model(**inputs), model.expand_labels(batch["input_ids"], batch["labels"]))
    first = LlavaModel(LlavaConfigTiny()).init_weights(3)
    last = LlavaModel(LlavaConfigTiny()).init_weights(3)
    (stage0,), (stage1,) = llava_pipeline_stages(first, [0], 2), llava_pipeline_stages(last, [1], 2)
    assert last.vision_model is None and first.language_model.output_layer is None
    (ids, images), target = llava_pipeline_batch(batch, last)
    assert images.shape == (4, 2, 3, 32, 32) and target.shape == (4, 256)
    losses = [token_loss(stage1(stage0(ids[i : i + 1], images[i : i + 1])), target[i : i + 1])
              for i in range(4)]  # fmt: skip
    torch.testing.assert_close(torch.stack(losses).mean(), expected)


def test_llava_pipeline_refuses_what_it_cannot_pad_with_one_line():
    model = LlavaModel(LlavaConfigTiny())
    batch = _llava_batch()
    left_padded = {**batch, "attention_mask": batch["attention_mask"].flip(1)}
    too_long = {**batch, "input_ids": batch["input_ids"].repeat(1, 60)}
    too_long["labels"] = too_long["input_ids"].clamp(min=-100)
    few_images = {**batch, "images": batch["images"][:2]}
    wrongs = [(left_padded, "right-padded"), (too_long, "exceeds the language model's"),
              (few_images, "4 image placeholders")]  # fmt: skip
    for wrong, reason in wrongs:
        with pytest.raises(ConfigError, match=reason) as error:
            llava_pipeline_batch(wrong, model)
        assert "\n" not in str(error.value)
