"""ViT-g/14 (giant, 1011M) recipes:
``optica pretrain|finetune --factory vit_g14`` (see :mod:`optica.recipes.vit`)."""

from optica.models import ViTg14Config
from optica.recipes.vit import make_recipes

finetune_recipe, pretrain_recipe = make_recipes("vit_g14", ViTg14Config)
