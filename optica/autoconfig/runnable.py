"""From a searched :class:`ModelShape` to the optica model and data a candidate's run trains.

A shape says only what the analytic models need; running it needs one of optica's model classes
with the same numbers. Language models with Llama's traits (gated MLP, RMSNorm, no biases, RoPE,
dense) run as :class:`~optica.models.LlamaModel` — Llama 2/3, Mistral, Vicuna and any size the
search generates in that style; LLaVA-style VLMs run as :class:`~optica.models.LlavaModel` with a
CLIP tower and that language model; ViT classifiers run as
:class:`~optica.models.ViTClassificationModel`. Other families (GPT-3's learned positions and
biases, MoE, Gemma, Nemotron) are searched and predicted but not launched here yet: asking for it
is one clear error, never a silently different model. Data is
:class:`~optica.data.MockDataModule`'s random batches of the model's kind: tokens of the shape's
sequence length for a language model, tokens and images for a VLM, labelled images for a ViT.
"""

from __future__ import annotations

from typing import Any

from optica import run
from optica.autoconfig.layout import Layout
from optica.autoconfig.shapes import LanguageShape, ModelShape, VisionShape
from optica.run.errors import ConfigError


def model_config(model: ModelShape) -> run.Config:
    """``run.Config`` of the optica model with ``model``'s shape (module docstring)."""
    from optica.models import LlamaModel, LlavaConfig, LlavaModel

    problems = _unsupported(model)
    if problems:
        raise ConfigError(f"cannot launch {model.name}: " + "; ".join(problems))
    if model.kind == "vit":
        return _vit_config(model)
    language = _language_config(model.language)  # type: ignore[arg-type]
    if model.kind == "gpt":
        return run.Config(LlamaModel, language)
    vision = _vision_config(model.vision)  # type: ignore[arg-type]
    llava = run.Config(
        LlavaConfig,
        language_transformer_config=language,
        vision_transformer_config=vision,
        projector_type=model.projector.kind,  # type: ignore[union-attr]
        drop_vision_class_token=model.drop_class_token,
        # NOTE: the analytic models count (and store activations of) every encoder layer.
        vision_feature_layer=-1,
    )
    return run.Config(LlavaModel, llava)


def layout_config_problems(model: ModelShape, layout: Layout) -> list[str]:
    """What keeps optica's model of ``model``'s shape from running ``layout`` although the
    layout is valid for the shape (the search predicts such layouts; the runner cannot launch
    them)."""
    tied = model.language is not None and model.language.tied_embeddings
    if tied and (layout.tp > 1 or layout.pp > 1):
        return [
            f"optica's Llama ties the embedding and output layer at TP = PP = 1 only "
            f"(this layout: TP={layout.tp}, PP={layout.pp})"
        ]
    return []


def data_config(model: ModelShape, layout: Layout, *, num_train_samples: int) -> run.Config:
    """Random data of the model's kind (module docstring), batched as ``layout`` says.

    Under pipeline parallelism a data micro-batch holds every pipeline micro-batch of a step
    (the strategy splits it), as :meth:`ParallelSettings.layout` reads it back.
    """
    from optica.data import MockDataModule

    micro = layout.micro_batch_size
    if layout.pp > 1:
        micro *= layout.num_microbatches
    sizes = dict(
        micro_batch_size=micro, global_batch_size=layout.global_batch_size,
        num_train_samples=num_train_samples, num_val_samples=0,
    )  # fmt: skip
    if model.kind == "vit":
        image_size = model.vision.image_size  # type: ignore[union-attr]
        return run.Config(
            MockDataModule, num_classes=model.num_classes, image_size=image_size, **sizes
        )
    vision = model.vision
    return run.Config(
        MockDataModule,
        seq_length=model.seq_length,
        vocab_size=model.language.vocab_size,  # type: ignore[union-attr]
        image_size=vision.image_size if vision is not None else 1,
        image_token_len=model.image_tokens or 1,
        num_images=model.images_per_sample if vision is not None else 0,
        **sizes,
    )


def strategy_config(layout: Layout) -> run.Config:
    """``ParallelStrategy`` with ``layout``'s degrees, recompute and optimizer sharding."""
    from optica.train.strategy import ParallelStrategy

    recompute: dict[str, Any] = {}
    if layout.recompute_granularity == "full":
        uniform = layout.recompute_method == "uniform"
        layers = None if uniform else layout.recompute_num_layers
        recompute = {"activation_checkpointing": "full", "activation_checkpointing_layers": layers}
    elif layout.recompute_granularity == "selective":
        recompute = {"activation_checkpointing": "selective"}
    return run.Config(
        ParallelStrategy,
        tensor_model_parallel_size=layout.tp,
        pipeline_model_parallel_size=layout.pp,
        virtual_pipeline_model_parallel_size=layout.virtual_pipeline_model_parallel_size,
        context_parallel_size=layout.cp,
        sequence_parallel=layout.sequence_parallel,
        data_parallel_sharding="fsdp" if layout.use_distributed_optimizer else "ddp",
        pipeline_microbatches=layout.num_microbatches if layout.pp > 1 else None,
        **recompute,
    )


def _unsupported(model: ModelShape) -> list[str]:
    if model.language is None:
        return _vision_unsupported(model.vision, "its encoder")  # type: ignore[arg-type]
    t, found = model.language, []
    for wrong, what in (
        (not t.gated_mlp, "a non-gated MLP"),
        (t.activation != "silu", f"a {t.activation} MLP, not SiLU"),
        (t.norm != "rmsnorm", f"{t.norm}"),
        (t.bias, "linear biases"),
        (t.learned_positions, "learned positions"),
        (t.is_moe, "mixture-of-experts layers"),
        (t.dropout, "dropout"),
    ):
        if wrong:
            found.append(f"its language model has {what} (the runner launches Llama-style models)")
    if model.vision is not None:
        found += _vision_unsupported(model.vision, "its vision encoder")
    return found


def _vision_unsupported(v: VisionShape, what: str) -> list[str]:
    found = []
    for wrong, trait in ((v.gated_mlp, "a gated MLP"), (v.norm != "layernorm", v.norm)):
        if wrong:
            found.append(f"{what} has {trait} (the runner launches CLIP and ViT encoders)")
    return found


def _language_config(t: LanguageShape) -> run.Config:
    from optica.models import LlamaConfig

    return run.Config(
        LlamaConfig,
        vocab_size=t.vocab_size,
        hidden_size=t.hidden_size,
        ffn_hidden_size=t.ffn_hidden_size,
        num_layers=t.num_layers,
        num_attention_heads=t.num_attention_heads,
        num_query_groups=t.num_query_groups,
        kv_channels=t.kv_channels,
        seq_length=t.seq_length,
        share_embeddings_and_output_weights=t.tied_embeddings,
    )


def _vision_config(v: VisionShape) -> run.Config:
    from optica.models import CLIPViTConfig

    return run.Config(
        CLIPViTConfig,
        hidden_size=v.hidden_size,
        ffn_hidden_size=v.ffn_hidden_size,
        num_layers=v.num_layers,
        num_attention_heads=v.num_attention_heads,
        patch_dim=v.patch_size,
        img_h=v.image_size,
        img_w=v.image_size,
        num_channels=v.num_channels,
        add_class_token=v.class_token,
        pre_layernorm=v.pre_norm,
        patch_bias=v.patch_bias,
    )


def _vit_config(model: ModelShape) -> run.Config:
    """The ViT classifier of a ``vit`` shape: its encoder, dropout as the shape says."""
    from optica.models import ViTClassificationModel, ViTConfig

    v = model.vision
    assert v is not None
    dropout = 0.1 if v.dropout else 0.0  # seed 002's ViT dropout
    config = run.Config(
        ViTConfig, hidden_size=v.hidden_size, ffn_hidden_size=v.ffn_hidden_size,
        num_layers=v.num_layers, num_attention_heads=v.num_attention_heads,
        patch_dim=v.patch_size, img_h=v.image_size, img_w=v.image_size,
        num_channels=v.num_channels, add_class_token=v.class_token, pre_layernorm=v.pre_norm,
        patch_bias=v.patch_bias, hidden_dropout=dropout, num_classes=model.num_classes,
    )  # fmt: skip
    return run.Config(ViTClassificationModel, config)
