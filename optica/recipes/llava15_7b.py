"""LLaVA-1.5 7B (Vicuna-7B + CLIP ViT-L/14-336): ``optica finetune --factory llava15_7b``.

    recipe = llava15_7b.finetune_recipe(name="llava15_7b_finetune", dir="/checkpoints",
                                        num_nodes=1, num_gpus_per_node=8, peft_scheme="lora")

See :mod:`optica.recipes.llava15` for the hyper-parameters and where they come from.
"""

from optica.models import Llava15Config7B
from optica.recipes.llava15 import make_recipes

NAME = "llava15_7b"
HF_ID = "llava-hf/llava-1.5-7b-hf"

finetune_recipe, pretrain_recipe = make_recipes(NAME, Llava15Config7B, HF_ID, "LLaVA-1.5 7B")
