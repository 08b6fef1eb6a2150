"""ViT-H/16 (632M) recipes:
``optica pretrain|finetune --factory vit_h16`` (see :mod:`optica.recipes.vit`)."""

from optica.models import ViTH16Config
from optica.recipes.vit import make_recipes

finetune_recipe, pretrain_recipe = make_recipes("vit_h16", ViTH16Config)
