"""ViT-H/14 (632M) recipes:
``optica pretrain|finetune --factory vit_h14`` (see :mod:`optica.recipes.vit`)."""

from optica.models import ViTH14Config
from optica.recipes.vit import make_recipes

finetune_recipe, pretrain_recipe = make_recipes("vit_h14", ViTH14Config)
