"""ViT-L/16 (303M) recipes:
``optica pretrain|finetune --factory vit_l16`` (see :mod:`optica.recipes.vit`)."""

from optica.models import ViTL16Config
from optica.recipes.vit import make_recipes

finetune_recipe, pretrain_recipe = make_recipes("vit_l16", ViTL16Config)
