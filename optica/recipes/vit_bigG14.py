"""ViT-G/14 (gigantic, 1843M) recipes:
``optica pretrain|finetune --factory vit_bigG14`` (see :mod:`optica.recipes.vit`)."""

from optica.models import ViTG14Config
from optica.recipes.vit import make_recipes

finetune_recipe, pretrain_recipe = make_recipes("vit_bigG14", ViTG14Config)
