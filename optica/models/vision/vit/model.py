"""The ViT image classifier (Dosovitskiy et al., 2021, "An Image is Worth 16x16 Words"): the shared
Vision Transformer encoder, a class token, a final LayerNorm and a linear classification head on
the class token — NeMo's ``MegatronVitClassificationModel`` (seed 002) and transformers'
``ViTForImageClassification``.

The head is one linear layer, as in the paper's fine-tuning setup, timm and transformers (so
checkpoints move between them unchanged).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from optica.models.base import OpticaModel, init_parameters
from optica.models.vision.encoder import VisionTransformer, VisionTransformerConfig
from optica.run.errors import ConfigError


@dataclass
class ViTConfig(VisionTransformerConfig):
    """A ViT classifier: the encoder fields (seed 002's ``hidden_size``, ``ffn_hidden_size``,
    ``num_attention_heads``, ``num_layers``, ``patch_dim``, ``img_h``/``img_w``, ``num_channels``,
    ``hidden_dropout``, ``attention_dropout``) plus:

    Args:
        num_classes: Labels the head predicts (ImageNet-1K: 1000).
    """

    num_classes: int = 1000
    activation: str = "gelu"
    layernorm_epsilon: float = 1e-6
    add_class_token: bool = True
    pre_layernorm: bool = False
    post_layernorm: str = "sequence"
    patch_bias: bool = True
    hidden_dropout: float = 0.1
    attention_dropout: float = 0.0

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.num_classes < 1:
            raise ConfigError(f"{type(self).__name__}: num_classes={self.num_classes} must be >= 1")


class ViTClassificationModel(OpticaModel):
    """Images [B, C, img_h, img_w] → logits [B, num_classes].

    Built on the meta device (no memory); call ``init_weights`` or ``load_weights``.

    Args:
        config: The architecture.
    """

    def __init__(self, config: ViTConfig) -> None:
        super().__init__(config)
        self.backbone = VisionTransformer(config)
        with torch.device("meta"):
            self.head = nn.Linear(config.hidden_size, config.num_classes)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Classifies ``images`` from the final-normed class token (only its state is computed
        in the last layer: nothing else reaches the head)."""
        first = 1 if self.backbone.class_token is not None else None
        return self.head(self.backbone.pool(self.backbone(images, first_tokens=first)))

    def _init_parameters(self, generator: torch.Generator) -> None:
        std = self.config.init_method_std
        init_parameters(self, generator, std=std, output_std=std)
