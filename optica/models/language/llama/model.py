"""The Llama-architecture decoder (Touvron et al., 2023, "Llama 2"; Meta, 2024, "The Llama 3 Herd
of Models"): pre-norm RMSNorm blocks, rotary embeddings, grouped-query attention, SwiGLU MLP.
One implementation serves Llama 2, Vicuna, Llama 3/3.1 and Mistral (which adds a sliding window).

Parameter names are Megatron-Core's (``decoder.layers.N.self_attention.linear_qkv`` ...), so the
seed's LoRA patterns apply verbatim.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from optica.models.base import OpticaModel, init_parameters
from optica.models.modules.attention import SelfAttention
from optica.models.modules.kv_cache import KVCache
from optica.models.modules.masks import (
    PackedSeqParams,
    build_attention_mask,
    positions_from_document_ids,
)
from optica.models.modules.mlp import MLP
from optica.models.modules.norms import RMSNorm
from optica.models.modules.rope import RopeScaling, RotaryEmbedding
from optica.models.modules.transformer import TransformerBlock, TransformerLayer
from optica.run.errors import ConfigError


@dataclass
class LlamaConfig:
    """Architecture of a Llama-family decoder; field names follow NeMo/Megatron.

    Args:
        vocab_size: Tokens in the tokenizer (HF ``vocab_size``).
        hidden_size: Model width.
        ffn_hidden_size: SwiGLU inner width (HF ``intermediate_size``).
        num_layers: Decoder layers.
        num_attention_heads: Query heads.
        num_query_groups: Key/value heads (GQA); None means one per query head.
        kv_channels: Per-head width; None means ``hidden_size // num_attention_heads``.
        seq_length: Longest sequence the model is meant for (HF ``max_position_embeddings``).
        rotary_base: RoPE theta.
        rope_scaling: Llama-3.1 long-context scaling, or None.
        layernorm_epsilon: RMSNorm epsilon.
        share_embeddings_and_output_weights: Tie the output layer to the token embeddings.
        attention_bias: Biases on q, k, v and the output projection.
        mlp_bias: Biases on the MLP linears.
        sliding_window: Each token attends to at most this many latest tokens (Mistral v0.1).
        make_vocab_size_divisible_by: Pad the embedding rows to a multiple of this, so the
            vocabulary shards evenly under tensor parallelism; logits are returned unpadded.
        init_method_std: Std of the normal init.
    """

    vocab_size: int = 32000
    hidden_size: int = 4096
    ffn_hidden_size: int = 11008
    num_layers: int = 32
    num_attention_heads: int = 32
    num_query_groups: int | None = None
    kv_channels: int | None = None
    seq_length: int = 4096
    rotary_base: float = 10000.0
    rope_scaling: RopeScaling | None = None
    layernorm_epsilon: float = 1e-5
    share_embeddings_and_output_weights: bool = False
    attention_bias: bool = False
    mlp_bias: bool = False
    sliding_window: int | None = None
    make_vocab_size_divisible_by: int = 128
    init_method_std: float = 0.02

    def __post_init__(self) -> None:
        if self.num_attention_heads % self.num_kv_heads:
            raise ConfigError(
                f"{type(self).__name__}: num_attention_heads={self.num_attention_heads} is not a "
                f"multiple of num_query_groups={self.num_kv_heads}"
            )
        if self.kv_channels is None and self.hidden_size % self.num_attention_heads:
            raise ConfigError(
                f"{type(self).__name__}: hidden_size={self.hidden_size} is not divisible by "
                f"num_attention_heads={self.num_attention_heads}; set kv_channels"
            )

    @property
    def num_kv_heads(self) -> int:
        """Key/value heads after defaulting."""
        return self.num_query_groups or self.num_attention_heads

    @property
    def head_dim(self) -> int:
        """Per-head width after defaulting."""
        return self.kv_channels or self.hidden_size // self.num_attention_heads

    @property
    def padded_vocab_size(self) -> int:
        """Embedding rows: ``vocab_size`` rounded up to ``make_vocab_size_divisible_by``."""
        multiple = self.make_vocab_size_divisible_by
        return multiple * math.ceil(self.vocab_size / multiple)


class TokenEmbedding(nn.Module):
    """Token ids → vectors; a container so the table is named ``embedding.word_embeddings``."""

    def __init__(self, num_embeddings: int, hidden_size: int) -> None:
        super().__init__()
        self.word_embeddings = nn.Embedding(num_embeddings, hidden_size)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        """Maps ``input_ids`` [B, T] to [B, T, hidden]."""
        return self.word_embeddings(input_ids)


class LlamaModel(OpticaModel):
    """Llama-family causal language model returning logits.

    Constructed on the meta device (no memory); call ``init_weights`` or ``load_weights``.

    Args:
        config: The architecture.
    """

    def __init__(self, config: LlamaConfig) -> None:
        super().__init__(config)
        with torch.device("meta"):
            self.embedding = TokenEmbedding(config.padded_vocab_size, config.hidden_size)
            self.rotary_pos_emb = RotaryEmbedding(
                config.head_dim, config.rotary_base, config.rope_scaling
            )
            layers = [_decoder_layer(config, index) for index in range(config.num_layers)]
            final_norm = RMSNorm(config.hidden_size, config.layernorm_epsilon)
            self.decoder = TransformerBlock(layers, final_norm)
            self.output_layer = None
            if not config.share_embeddings_and_output_weights:
                self.output_layer = nn.Linear(
                    config.hidden_size, config.padded_vocab_size, bias=False
                )

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        packed_seq_params: PackedSeqParams | None = None,
        kv_cache: KVCache | None = None,
        logits_at: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Computes next-token logits [B, T, vocab_size].

        Args:
            input_ids: Token ids [B, T] (or give ``inputs_embeds``).
            inputs_embeds: Token vectors [B, T, hidden], e.g. text with image features spliced in.
            position_ids: [B, T]; default ``offset..offset+T-1``, or restarting per packed sample.
            attention_mask: [B, cached + T] padding mask (nonzero at real tokens), or a full
                [B, 1, T, cached + T] boolean/additive mask used as given.
            packed_seq_params: Sample boundaries of packed rows; attention stays within a sample.
            kv_cache: Cache to extend (incremental decoding); not combinable with packing.
            logits_at: Boolean [B, T]: compute logits only at these positions, returned as
                [N, vocab_size] in row-major order. A training loss needs them only where a
                label is learned; the output layer and the softmax over the vocabulary then skip
                prompts, image tokens and padding, and the last layer every position before the
                first one read.
        """
        hidden = self._embed(input_ids, inputs_embeds)
        batch, seq_len = hidden.shape[:2]
        offset = kv_cache.offset if kv_cache is not None else 0
        documents = self._document_ids(packed_seq_params, batch, seq_len, hidden.device, kv_cache)
        if position_ids is None:
            position_ids = _default_positions(batch, seq_len, offset, documents, hidden.device)
        mask = self._mask(attention_mask, documents, seq_len, offset, hidden.device)
        rope = self.rotary_pos_emb(position_ids, hidden.dtype)
        read = self._positions_read(logits_at, kv_cache)
        hidden = self.decoder(hidden, rope=rope, mask=mask, kv_cache=kv_cache, last_queries=read)
        if logits_at is not None:
            hidden = hidden[logits_at if read is None else logits_at[:, read]]
        return self._logits(hidden)

    def _positions_read(
        self, logits_at: torch.Tensor | None, kv_cache: KVCache | None
    ) -> slice | None:
        """The suffix of positions ``logits_at`` reads, from the first one any row reads: the last
        layer computes queries, projection and MLP for it alone (earlier layers still run every
        position: later ones attend to them). None when everything is read, or when a hook
        rewrites the layer stack (a parallel plan's sequence split)."""
        if logits_at is None or kv_cache is not None:
            return None
        if self.decoder._forward_pre_hooks or self.decoder._forward_hooks:
            return None
        read = logits_at.any(dim=0).nonzero()
        start = int(read[0]) if len(read) else 0
        return slice(start, None) if start > 0 else None

    def _embed(
        self, input_ids: torch.Tensor | None, inputs_embeds: torch.Tensor | None
    ) -> torch.Tensor:
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("give exactly one of input_ids or inputs_embeds")
        return self.embedding(input_ids) if inputs_embeds is None else inputs_embeds

    def _document_ids(
        self,
        packed: PackedSeqParams | None,
        batch: int,
        seq_len: int,
        device: torch.device,
        kv_cache: KVCache | None,
    ) -> torch.Tensor | None:
        if packed is None:
            return None
        if kv_cache is not None:
            raise ValueError("packed sequences cannot be combined with a KV cache")
        return packed.to_document_ids(batch, seq_len, device)

    def _mask(
        self,
        attention_mask: torch.Tensor | None,
        documents: torch.Tensor | None,
        seq_len: int,
        offset: int,
        device: torch.device,
    ) -> torch.Tensor | None:
        if attention_mask is not None and attention_mask.dim() == 4:
            return attention_mask
        return build_attention_mask(
            q_len=seq_len,
            k_len=offset + seq_len,
            device=device,
            offset=offset,
            padding_mask=attention_mask,
            document_ids=documents,
            sliding_window=self.config.sliding_window,
        )

    def _logits(self, hidden: torch.Tensor) -> torch.Tensor:
        if self.output_layer is not None:
            logits = self.output_layer(hidden)
        else:
            logits = F.linear(hidden, self.embedding.word_embeddings.weight)
        vocab = self.config.vocab_size
        return logits if logits.shape[-1] == vocab else logits[..., :vocab]

    def _init_parameters(self, generator: torch.Generator) -> None:
        std = self.config.init_method_std
        output_std = std / math.sqrt(2.0 * self.config.num_layers)
        init_parameters(self, generator, std=std, output_std=output_std)


def _decoder_layer(config: LlamaConfig, index: int) -> TransformerLayer:
    attention = SelfAttention(
        config.hidden_size,
        config.num_attention_heads,
        config.num_kv_heads,
        config.head_dim,
        qkv_bias=config.attention_bias,
        proj_bias=config.attention_bias,
        causal=True,
        layer_idx=index,
    )
    mlp = MLP(
        config.hidden_size,
        config.ffn_hidden_size,
        activation="silu",
        gated=True,
        bias=config.mlp_bias,
    )
    return TransformerLayer(
        self_attention=attention,
        mlp=mlp,
        input_layernorm=RMSNorm(config.hidden_size, config.layernorm_epsilon),
        pre_mlp_layernorm=RMSNorm(config.hidden_size, config.layernorm_epsilon),
    )


def _default_positions(
    batch: int, seq_len: int, offset: int, documents: torch.Tensor | None, device: torch.device
) -> torch.Tensor:
    if documents is not None:
        return positions_from_document_ids(documents)
    return torch.arange(offset, offset + seq_len, device=device).expand(batch, seq_len)
