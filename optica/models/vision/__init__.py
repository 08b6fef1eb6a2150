"""Vision families — CLIP, SigLIP and InternViT encoders and the ViT classifier — over one shared
Vision Transformer encoder; importing this package registers them."""

from optica.models.vision import clip, intern_vit, siglip, vit
from optica.models.vision.encoder import (
    VisionTransformer,
    VisionTransformerConfig,
    feature_layer_depth,
)

__all__ = [
    "VisionTransformer",
    "VisionTransformerConfig",
    "clip",
    "feature_layer_depth",
    "intern_vit",
    "siglip",
    "vit",
]
