"""LLaVA-1.5 7B (Vicuna-7B + CLIP ViT-L/14-336): ``optica finetune --factory llava15_7b``.

    recipe = llava15_7b.finetune_recipe(name="llava15_7b_finetune", dir="/checkpoints",
                                        num_nodes=1, num_gpus_per_node=8, peft_scheme="lora")

See :mod:`optica.recipes.llava15` for the hyper-parameters and where they come from.
"""

from __future__ import annotations

from optica import run
from optica.models import Llava15Config7B
from optica.recipes import llava15
from optica.run.cli import factory
from optica.train.api import finetune, pretrain

NAME = "llava15_7b"
HF_ID = "llava-hf/llava-1.5-7b-hf"


@factory(target=finetune, name=NAME)
def finetune_recipe(
    name: str = f"{NAME}_finetune",
    dir: str | None = None,
    num_nodes: int = 1,
    num_gpus_per_node: int = 8,
    peft_scheme: str = "lora",
) -> run.Partial:
    """LLaVA-1.5 7B visual instruction tuning (LoRA r=128 or full), from the llava-hf weights."""
    return llava15.finetune(
        Llava15Config7B,
        HF_ID,
        name=name,
        dir=dir,
        num_nodes=num_nodes,
        num_gpus_per_node=num_gpus_per_node,
        peft_scheme=peft_scheme,
    )


@factory(target=pretrain, name=NAME)
def pretrain_recipe(
    name: str = f"{NAME}_pretrain",
    dir: str | None = None,
    num_nodes: int = 1,
    num_gpus_per_node: int = 8,
    language_model_from_pretrained: str | None = None,
    vision_model_from_pretrained: str | None = None,
) -> run.Partial:
    """LLaVA-1.5 7B projector pre-training (towers frozen, plain template, lr 1e-3)."""
    return llava15.pretrain(
        Llava15Config7B,
        name=name,
        dir=dir,
        num_nodes=num_nodes,
        num_gpus_per_node=num_gpus_per_node,
        language_model_from_pretrained=language_model_from_pretrained,
        vision_model_from_pretrained=vision_model_from_pretrained,
    )
