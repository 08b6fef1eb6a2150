"""Shared building blocks that every family composes."""

from optica.models.modules.attention import SelfAttention, attend, fuse_qkv, split_qkv
from optica.models.modules.kv_cache import KVCache, StaticKVCache
from optica.models.modules.masks import (
    PackedSeqParams,
    build_attention_mask,
    positions_from_document_ids,
)
from optica.models.modules.mlp import ACTIVATIONS, MLP, quick_gelu
from optica.models.modules.norms import RMSNorm, build_norm
from optica.models.modules.patch_embed import PatchEmbedding
from optica.models.modules.pos_embed import PositionEmbedding, resample_abs_pos_embed
from optica.models.modules.rope import RopeScaling, RotaryEmbedding, apply_rotary, rope_inv_freq
from optica.models.modules.transformer import TransformerBlock, TransformerLayer

__all__ = [
    "ACTIVATIONS",
    "MLP",
    "KVCache",
    "PackedSeqParams",
    "PatchEmbedding",
    "PositionEmbedding",
    "RMSNorm",
    "RopeScaling",
    "RotaryEmbedding",
    "SelfAttention",
    "StaticKVCache",
    "TransformerBlock",
    "TransformerLayer",
    "apply_rotary",
    "attend",
    "build_attention_mask",
    "build_norm",
    "fuse_qkv",
    "positions_from_document_ids",
    "quick_gelu",
    "resample_abs_pos_embed",
    "rope_inv_freq",
    "split_qkv",
]
