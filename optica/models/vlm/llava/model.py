"""LLaVA / NeVA (Liu et al., 2023, "Visual Instruction Tuning"; "Improved Baselines with Visual
Instruction Tuning" for LLaVA-1.5): a vision encoder, a projector into the language model's
embedding space, and a decoder-only language model that reads the projected image tokens in place
of each ``<image>`` placeholder.

The towers are any registered vision family (CLIP, SigLIP, InternViT) and any Llama-family
language model, found through the registry from their configs, so this module names neither.
Parameter names are Megatron's (``language_model.decoder.layers.N.self_attention.linear_qkv``,
``vision_model.decoder...``, ``vision_projection.linear_fc1``), so the seed's LoRA patterns such
as ``*.language_model.*.linear_qkv`` select exactly the language model's layers.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from optica.models.base import OpticaModel, init_parameters
from optica.models.errors import CheckpointError
from optica.models.language.llama import LlamaConfig
from optica.models.modules.kv_cache import KVCache
from optica.models.modules.masks import PackedSeqParams
from optica.models.registry import family_for_config
from optica.models.vision.clip import CLIPViTL_14_336_Config
from optica.models.vision.encoder import VisionTransformerConfig, feature_layer_depth
from optica.models.vlm.llava.splice import IMAGE_TOKEN_INDEX, SplicePlan, expand_labels
from optica.run.errors import ConfigError, did_you_mean

PROJECTOR_TYPES = ("mlp2x_gelu", "linear")
PARTS = ("vision_model", "vision_projection", "language_model")


@dataclass
class LlavaConfig:
    """A LLaVA model: vision encoder → projector → language model (NeMo's ``NevaConfig`` names).

    Args:
        language_transformer_config: A Llama-family config (Llama 2, Vicuna, Llama 3, Mistral).
        vision_transformer_config: A vision-encoder config (CLIP, SigLIP, InternViT).
        projector_type: ``"mlp2x_gelu"`` (LLaVA-1.5: linear, exact GELU, linear) or ``"linear"``
            (LLaVA-1.0's single affine map).
        projector_bias: Whether the projector's linears have biases.
        vision_feature_layer: Which encoder hidden state feeds the projector, in Hugging Face's
            ``hidden_states`` numbering (-2: the penultimate layer; later layers are not run).
        drop_vision_class_token: Drop the encoder's class token, where it has one (LLaVA's
            ``vision_feature_select_strategy="default"``).
        image_token_id: The tokenizer's ``<image>`` id in Hugging Face checkpoints (llava-hf:
            32000), written on export; optica's own inputs mark images with -200 instead.
        language_model_from_pretrained: Path of an imported optica checkpoint of the language
            model to start from (LLaVA's stage 1); see ``LlavaModel.load_pretrained_parts``.
        vision_model_from_pretrained: Same, for the vision encoder.
        init_method_std: Std of the projector's normal init (the towers use their own).
    """

    language_transformer_config: LlamaConfig = field(default_factory=LlamaConfig)
    vision_transformer_config: VisionTransformerConfig = field(
        default_factory=CLIPViTL_14_336_Config
    )
    projector_type: str = "mlp2x_gelu"
    projector_bias: bool = True
    vision_feature_layer: int = -2
    drop_vision_class_token: bool = True
    image_token_id: int | None = None
    language_model_from_pretrained: str | None = None
    vision_model_from_pretrained: str | None = None
    init_method_std: float = 0.02

    def __post_init__(self) -> None:
        if self.projector_type not in PROJECTOR_TYPES:
            hint = did_you_mean(self.projector_type, PROJECTOR_TYPES)
            raise ConfigError(
                f"{type(self).__name__}: projector_type={self.projector_type!r} is not one of "
                f"{', '.join(PROJECTOR_TYPES)}{hint}"
            )
        feature_layer_depth(self.vision_feature_layer, self.vision_transformer_config.num_layers)

    @property
    def drops_class_token(self) -> bool:
        """Whether image features lose a leading class token before the projector."""
        return self.drop_vision_class_token and self.vision_transformer_config.add_class_token

    @property
    def num_image_tokens(self) -> int:
        """Embeddings each image contributes to the language model's sequence."""
        vision = self.vision_transformer_config
        return vision.seq_length - (vision.class_token_len if self.drops_class_token else 0)

    def pretrained_parts(self) -> dict[str, str]:
        """Part name → checkpoint path, for each ``*_from_pretrained`` that is set."""
        paths = {
            "language_model": self.language_model_from_pretrained,
            "vision_model": self.vision_model_from_pretrained,
        }
        return {part: path for part, path in paths.items() if path}


class VisionProjection(nn.Module):
    """Maps image features [..., vision_hidden] into the language model's width.

    Args:
        input_size: The vision encoder's width.
        hidden_size: The language model's width.
        projector_type: One of ``PROJECTOR_TYPES``.
        bias: Whether the linears have biases.
    """

    def __init__(self, input_size: int, hidden_size: int, *, projector_type: str, bias: bool):
        super().__init__()
        self.linear_fc1 = nn.Linear(input_size, hidden_size, bias=bias)
        self.linear_fc2 = None
        if projector_type == "mlp2x_gelu":
            self.linear_fc2 = nn.Linear(hidden_size, hidden_size, bias=bias)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """Projects ``features`` (exact, erf-based GELU between the two linears)."""
        x = self.linear_fc1(features)
        return x if self.linear_fc2 is None else self.linear_fc2(F.gelu(x))


class LlavaModel(OpticaModel):
    """Token ids with -200 at each image, plus the images → next-token logits over the expanded
    sequence. Built on the meta device (no memory); call ``init_weights`` or ``load_weights``.

    Args:
        config: The architecture.
    """

    def __init__(self, config: LlavaConfig) -> None:
        super().__init__(config)
        vision, language = config.vision_transformer_config, config.language_transformer_config
        self.vision_model = family_for_config(vision).build(vision)
        with torch.device("meta"):
            self.vision_projection = VisionProjection(
                vision.hidden_size,
                language.hidden_size,
                projector_type=config.projector_type,
                bias=config.projector_bias,
            )
        self.language_model = family_for_config(language).build(language)

    def forward(
        self,
        input_ids: torch.Tensor,
        images: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        packed_seq_params: PackedSeqParams | None = None,
        kv_cache: KVCache | None = None,
        logits_at: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Computes logits [B, T', vocab_size], T' being the longest row after each -200 in
        ``input_ids`` became its image's ``num_image_tokens`` embeddings (shorter rows are padded
        at the end; ``expand_labels`` aligns labels the same way).

        Args:
            input_ids: [B, T], ``IMAGE_TOKEN_INDEX`` (-200) where an image goes.
            images: [N, C, H, W], one per placeholder in reading order (row by row); None when
                no row has an image.
            attention_mask: [B, T] padding mask over ``input_ids`` (expanded here). In decoding
                steps after a cached prompt, [B, cached + T] over the expanded tokens, as given.
            position_ids: [B, T'] over the expanded sequence; default consecutive (restarting
                per packed sample).
            packed_seq_params: Sample boundaries over ``input_ids`` (cu_seqlens of a row of T, or
                document ids [B, T]); an image belongs to its placeholder's sample.
            kv_cache: Cache for incremental decoding; images may only come with the prompt.
            logits_at: Boolean [B, T'] over the expanded sequence: logits only there, as
                [N, vocab_size] (see ``LlamaModel.forward``; ``expand_labels`` gives the layout).
        """
        if kv_cache is not None and kv_cache.offset > 0:
            return self._decode_step(input_ids, images, attention_mask, position_ids, kv_cache)
        plan = SplicePlan.build(input_ids, self.config.num_image_tokens)
        embeds = self._embed(input_ids, images, plan)
        return self.language_model(
            inputs_embeds=embeds,
            attention_mask=self._expanded_mask(plan, attention_mask),
            position_ids=_checked_positions(position_ids, embeds.shape[:2]),
            packed_seq_params=_expanded_packing(plan, packed_seq_params),
            kv_cache=kv_cache,
            logits_at=logits_at,
        )

    def encode_images(self, images: torch.Tensor) -> torch.Tensor:
        """Images [N, C, H, W] → projected features [N, num_image_tokens, language hidden]."""
        config = self.config
        features = self.vision_model(images, feature_layer=config.vision_feature_layer)
        if config.drops_class_token:
            features = features[:, config.vision_transformer_config.class_token_len :]
        return self.vision_projection(features)

    def expand_labels(self, input_ids: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Labels [B, T] → [B, T'] aligned with ``forward``'s logits (-100 at images, padding)."""
        return expand_labels(input_ids, labels, self.config.num_image_tokens)

    def _embed(
        self, input_ids: torch.Tensor, images: torch.Tensor | None, plan: SplicePlan
    ) -> torch.Tensor:
        text = self.language_model.embedding(plan.text_ids(input_ids))
        given = 0 if images is None else images.shape[0]
        if plan.num_images != given:
            raise ValueError(
                f"input_ids hold {plan.num_images} image placeholders ({IMAGE_TOKEN_INDEX}) but "
                f"{given} images were given"
            )
        if given == 0:
            return text
        return plan.expand(text, image=self.encode_images(images).to(text.dtype))

    def _expanded_mask(
        self, plan: SplicePlan, attention_mask: torch.Tensor | None
    ) -> torch.Tensor | None:
        if attention_mask is not None:
            if attention_mask.shape != plan.is_image.shape:
                raise ValueError(
                    f"attention_mask {list(attention_mask.shape)} must match input_ids "
                    f"{list(plan.is_image.shape)} (it is expanded with them)"
                )
            return plan.expand(attention_mask, pad=0)
        return plan.padding_mask() if plan.ragged else None

    def _decode_step(
        self,
        input_ids: torch.Tensor,
        images: torch.Tensor | None,
        attention_mask: torch.Tensor | None,
        position_ids: torch.Tensor | None,
        kv_cache: KVCache,
    ) -> torch.Tensor:
        """A step after the cached prompt: text only, masks and positions already expanded."""
        if images is not None or bool((input_ids == IMAGE_TOKEN_INDEX).any()):
            raise ValueError("images can only be given with the prompt, not in decoding steps")
        return self.language_model(
            input_ids=input_ids,
            attention_mask=attention_mask,
            position_ids=position_ids,
            kv_cache=kv_cache,
        )

    # --- materialisation and the *_from_pretrained hook -------------------------------------

    def init_weights(
        self, seed: int = 0, *, device: torch.device | str = "cpu", dtype: torch.dtype | None = None
    ) -> LlavaModel:
        """Allocates and initialises every part still on the meta device: all of them on a fresh
        model, only the others after ``load_submodule_weights`` (so a pretrained part is never
        overwritten nor held twice). Returns ``self``."""
        generator = torch.Generator(device=device).manual_seed(seed)
        for name in PARTS:
            part = getattr(self, name)
            if not any(t.is_meta for t in itertools.chain(part.parameters(), part.buffers())):
                continue
            if dtype is not None:
                part.to(dtype=dtype)
            part.to_empty(device=device)
            with torch.no_grad():
                self._init_part(part, generator)
        return self

    def _init_part(self, part: nn.Module, generator: torch.Generator) -> None:
        if isinstance(part, OpticaModel):
            part._init_parameters(generator)
        else:
            std = self.config.init_method_std
            init_parameters(part, generator, std=std, output_std=std)

    def load_submodule_weights(
        self, part: str, state_dict: Mapping[str, torch.Tensor], *, strict: bool = True
    ) -> None:
        """Adopts the weights of one part (no copy): the hook through which
        ``language_model_from_pretrained`` / ``vision_model_from_pretrained`` are honoured.

        Args:
            part: ``"vision_model"``, ``"vision_projection"`` or ``"language_model"``.
            state_dict: The part's tensors, keyed as in the part (an imported Llama or CLIP
                checkpoint: ``decoder.layers.0...``) or as in a whole LLaVA (``language_model.``
                prefix, stripped here).
            strict: Fail on missing or unexpected keys.
        """
        if part not in PARTS:
            raise ValueError(f"unknown LLaVA part {part!r}{did_you_mean(part, PARTS)}")
        prefix = part + "."
        if state_dict and all(key.startswith(prefix) for key in state_dict):
            state_dict = {key[len(prefix) :]: tensor for key, tensor in state_dict.items()}
        module = getattr(self, part)
        if isinstance(module, OpticaModel):
            module.load_weights(state_dict, strict=strict)
            return
        missing, unexpected = module.load_state_dict(dict(state_dict), strict=False, assign=True)
        if strict and (missing or unexpected):
            raise CheckpointError(
                f"state dict does not fit {part}: missing {missing}, unexpected {unexpected}"
            )

    def load_pretrained_parts(
        self, read_state_dict: Callable[[str], Mapping[str, torch.Tensor]]
    ) -> list[str]:
        """Loads each part the config names a checkpoint for (``config.pretrained_parts()``),
        reading it with ``read_state_dict(path)`` (the checkpoint code's reader); call before
        ``init_weights``, which then fills in only the rest. Returns the parts loaded."""
        parts = self.config.pretrained_parts()
        for part, path in parts.items():
            self.load_submodule_weights(part, read_state_dict(path))
        return list(parts)

    def unused_parameter_names(self) -> list[str]:
        """Vision parameters that never get a gradient: the layers after
        ``vision_feature_layer`` and the encoder's final norms. Freeze them (or let DDP find
        unused parameters); they are kept so imports and exports stay complete."""
        depth = feature_layer_depth(
            self.config.vision_feature_layer, self.config.vision_transformer_config.num_layers
        )
        layers = len(self.vision_model.decoder.layers)
        unused = [f"decoder.layers.{i}." for i in range(depth, layers)]
        unused += ["decoder.final_layernorm.", "ln_post."]
        names = (name for name, _ in self.vision_model.named_parameters())
        return [f"vision_model.{n}" for n in names if n.startswith(tuple(unused))]


def _checked_positions(
    position_ids: torch.Tensor | None, shape: tuple[int, int]
) -> torch.Tensor | None:
    if position_ids is not None and tuple(position_ids.shape) != tuple(shape):
        raise ValueError(
            f"position_ids {list(position_ids.shape)} must cover the expanded sequence "
            f"{list(shape)} (each image counts as its number of tokens)"
        )
    return position_ids


def _expanded_packing(plan: SplicePlan, packed: PackedSeqParams | None) -> PackedSeqParams | None:
    if packed is None:
        return None
    batch, seq_len = plan.is_image.shape
    documents = packed.to_document_ids(batch, seq_len, plan.is_image.device)
    return PackedSeqParams(document_ids=plan.expand(documents, pad=-1))
