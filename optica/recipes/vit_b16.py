"""ViT-B/16 (86M) recipes:
``optica pretrain|finetune --factory vit_b16`` (see :mod:`optica.recipes.vit`)."""

from optica.models import ViTB16Config
from optica.recipes.vit import make_recipes

finetune_recipe, pretrain_recipe = make_recipes("vit_b16", ViTB16Config)
