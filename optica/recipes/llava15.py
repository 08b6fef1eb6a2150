"""LLaVA-1.5 recipes shared by the 7B and 13B modules (Liu et al. 2023, "Improved Baselines with
Visual Instruction Tuning"; hyper-parameters from the LLaVA repository's ``scripts/v1_5``).

* Stage 1, projector pre-training (:func:`pretrain`): ``plain`` template (image, then caption),
  both towers frozen, lr 1e-3, global batch 256, 1 epoch of LCS-558K (2,180 steps).
* Stage 2, visual instruction tuning (:func:`finetune`): ``v1`` template, global batch 128,
  1 epoch of the 665K mix (5,197 steps); full: lr 2e-5; LoRA: r=128, alpha=256, lr 2e-4 and the
  projector at 2e-5. Cosine decay, warm-up ratio 0.03, no weight decay, sequence 2048, bf16.

Seed 001's defaults: mock data until ``data=`` is set, LoRA on every linear layer of the language
model with the vision encoder left trainable, ``peft_scheme='none'`` fine-tunes the whole model,
and the weights start from ``hf://llava-hf/llava-1.5-<size>-hf`` (import it once with
``optica import``; change it with ``resume.restore_config.path=...``).
"""

from __future__ import annotations

from optica import run
from optica.data.synthetic import MockDataModule
from optica.models import LlavaModel
from optica.recipes import common
from optica.run.cli import factory
from optica.train.api import finetune as finetune_fn
from optica.train.api import pretrain as pretrain_fn

SEQ_LENGTH = 2048
FINETUNE_STEPS = 5197  # 665K samples / 128
PRETRAIN_STEPS = 2180  # 558K samples / 256
IMAGE_SIZE, IMAGE_TOKENS, VOCAB = 336, 576, 32064


def mock_data(global_batch_size: int, micro_batch_size: int) -> run.Config[MockDataModule]:
    """Random LLaVA-1.5-shaped samples (seed 001's recipes train on mock data by default)."""
    return run.Config(
        MockDataModule,
        seq_length=SEQ_LENGTH,
        vocab_size=32000,
        image_size=IMAGE_SIZE,
        image_token_len=IMAGE_TOKENS,
        global_batch_size=global_batch_size,
        micro_batch_size=micro_batch_size,
        num_workers=4,
    )


def finetune(
    model_config: type,
    hf_id: str,
    *,
    name: str,
    dir: str | None,
    num_nodes: int,
    num_gpus_per_node: int,
    peft_scheme: str,
) -> run.Partial:
    """Stage 2 of LLaVA-1.5 on ``model_config`` (full or LoRA)."""
    scheme = common.check_peft_scheme(peft_scheme)
    if scheme == "lora":
        optim = common.cosine_optim(
            lr=2e-4, warmup_ratio=0.03, param_groups={"vision_projection.*": {"lr": 2e-5}}
        )
        peft = common.lora(dim=128, alpha=256, dropout=0.05)
    else:
        optim, peft = common.cosine_optim(lr=2e-5, warmup_ratio=0.03), None
    return run.Partial(
        finetune_fn,
        model=run.Config(LlavaModel, run.Config(model_config)),
        data=mock_data(global_batch_size=128, micro_batch_size=1),
        trainer=common.trainer(
            num_nodes=num_nodes,
            num_gpus_per_node=num_gpus_per_node,
            max_steps=FINETUNE_STEPS,
            val_check_interval=1000,
            limit_val_batches=10,
        ),
        log=common.log(name, dir, every_n_train_steps=1000),
        optim=optim,
        resume=common.resume(f"hf://{hf_id}"),
        peft=peft,
    )


def pretrain(
    model_config: type,
    *,
    name: str,
    dir: str | None,
    num_nodes: int,
    num_gpus_per_node: int,
    language_model_from_pretrained: str | None,
    vision_model_from_pretrained: str | None,
) -> run.Partial:
    """Stage 1 of LLaVA-1.5: only the projector learns, from imported towers."""
    config = run.Config(
        model_config,
        language_model_from_pretrained=language_model_from_pretrained,
        vision_model_from_pretrained=vision_model_from_pretrained,
    )
    return run.Partial(
        pretrain_fn,
        model=run.Config(LlavaModel, config),
        data=mock_data(global_batch_size=256, micro_batch_size=1),
        trainer=common.trainer(
            num_nodes=num_nodes,
            num_gpus_per_node=num_gpus_per_node,
            max_steps=PRETRAIN_STEPS,
            val_check_interval=1000,
            limit_val_batches=10,
        ),
        log=common.log(name, dir, every_n_train_steps=500),
        optim=common.cosine_optim(lr=1e-3, warmup_ratio=0.03),
        resume=common.resume(),
        freeze=common.projector_only(),
    )


def make_recipes(recipe_name: str, model_config: type, hf_id: str, label: str) -> tuple:
    """``(finetune_recipe, pretrain_recipe)`` for one size (``label`` e.g. "LLaVA-1.5 7B"),
    registered as ``recipe_name`` for ``optica finetune`` and ``optica pretrain``."""

    def finetune_recipe(
        name: str = f"{recipe_name}_finetune",
        dir: str | None = None,
        num_nodes: int = 1,
        num_gpus_per_node: int = 8,
        peft_scheme: str = "lora",
    ) -> run.Partial:
        return finetune(
            model_config,
            hf_id,
            name=name,
            dir=dir,
            num_nodes=num_nodes,
            num_gpus_per_node=num_gpus_per_node,
            peft_scheme=peft_scheme,
        )

    def pretrain_recipe(
        name: str = f"{recipe_name}_pretrain",
        dir: str | None = None,
        num_nodes: int = 1,
        num_gpus_per_node: int = 8,
        language_model_from_pretrained: str | None = None,
        vision_model_from_pretrained: str | None = None,
    ) -> run.Partial:
        return pretrain(
            model_config,
            name=name,
            dir=dir,
            num_nodes=num_nodes,
            num_gpus_per_node=num_gpus_per_node,
            language_model_from_pretrained=language_model_from_pretrained,
            vision_model_from_pretrained=vision_model_from_pretrained,
        )

    finetune_recipe.__doc__ = (
        f"{label} visual instruction tuning (LoRA r=128 or full), from the llava-hf weights."
    )
    pretrain_recipe.__doc__ = (
        f"{label} projector pre-training (towers frozen, plain template, lr 1e-3)."
    )
    factory(target=finetune_fn, name=recipe_name)(finetune_recipe)
    factory(target=pretrain_fn, name=recipe_name)(pretrain_recipe)
    return finetune_recipe, pretrain_recipe
