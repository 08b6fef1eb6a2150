"""The training loss computes logits only where a label is learned (``logits_at``): same value
and same gradients as the loss over the full logits, for a LLaVA batch (images expand the
sequence, prompts and image tokens learn nothing) and a plain language model."""

import torch

from optica.models import (
    IMAGE_TOKEN_INDEX,
    LlamaConfigTiny,
    LlamaModel,
    LlavaConfigTiny,
    LlavaModel,
)
from optica.train.module import IGNORE_INDEX, TrainingModule, token_loss


def _grads(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def _both_losses(model: torch.nn.Module, batch: dict) -> tuple:
    module = TrainingModule(model)
    assert module._logits_at_learned_only(batch)
    sparse = module.loss(batch)
    sparse.backward()
    sparse_grads = _grads(model)
    model.zero_grad(set_to_none=True)
    dense = module.output_loss(module(batch), batch)  # the full [B, T', V] logits
    dense.backward()
    return sparse, dense, sparse_grads, _grads(model)


def _assert_same(sparse, dense, sparse_grads, dense_grads) -> None:
    assert torch.allclose(sparse, dense, atol=1e-6), (sparse, dense)
    assert sparse_grads.keys() == dense_grads.keys() and sparse_grads
    for name, grad in dense_grads.items():
        assert torch.allclose(sparse_grads[name], grad, atol=1e-6), name


def test_llava_loss_over_learned_positions_equals_the_full_loss():
    model = LlavaModel(LlavaConfigTiny()).init_weights(seed=0)
    ids = torch.randint(0, 200, (2, 12), generator=torch.Generator().manual_seed(0))
    ids[0, 2], ids[1, 5], ids[1, 7] = IMAGE_TOKEN_INDEX, IMAGE_TOKEN_INDEX, IMAGE_TOKEN_INDEX
    labels = ids.clone()
    labels[:, :6] = IGNORE_INDEX  # the prompt
    labels[labels == IMAGE_TOKEN_INDEX] = IGNORE_INDEX
    images = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    batch = {"input_ids": ids, "images": images, "labels": labels}
    _assert_same(*_both_losses(model, batch))


def test_language_model_loss_over_learned_positions_equals_the_full_loss():
    model = LlamaModel(LlamaConfigTiny()).init_weights(seed=0)
    ids = torch.randint(0, 250, (2, 10), generator=torch.Generator().manual_seed(2))
    labels = ids.clone()
    labels[0, :4] = IGNORE_INDEX
    _assert_same(*_both_losses(model, {"input_ids": ids, "labels": labels}))


def test_token_loss_shifts_labels_like_slicing_the_logits():
    logits = torch.randn(2, 7, 11, generator=torch.Generator().manual_seed(3))
    labels = torch.randint(0, 11, (2, 7), generator=torch.Generator().manual_seed(4))
    labels[1, :3] = IGNORE_INDEX
    sliced = torch.nn.functional.cross_entropy(
        logits[:, :-1].reshape(-1, 11), labels[:, 1:].reshape(-1), ignore_index=IGNORE_INDEX
    )
    assert torch.allclose(token_loss(logits, labels), sliced)


def test_vit_last_layer_computes_only_the_class_token_with_the_same_result():
    from optica.models import ViTClassificationModel, ViTConfigTiny

    model = ViTClassificationModel(ViTConfigTiny(hidden_dropout=0.0)).init_weights(seed=0)
    images = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(5))
    labels = torch.tensor([1, 4, 7])
    backbone = model.backbone
    full = model.head(backbone.pool(backbone(images)))  # every token through every layer
    assert backbone(images).shape[1] == backbone.config.seq_length
    assert backbone(images, first_tokens=1).shape[1] == 1
    torch.nn.functional.cross_entropy(full, labels).backward()
    full_grads = _grads(model)
    model.zero_grad(set_to_none=True)
    short = model(images)
    torch.nn.functional.cross_entropy(short, labels).backward()
    _assert_same(short, full, _grads(model), full_grads)


def test_a_hooked_layer_stack_gets_every_token():
    from optica.models import ViTClassificationModel, ViTConfigTiny

    model = ViTClassificationModel(ViTConfigTiny()).init_weights(seed=0)
    seen = []
    model.backbone.decoder.register_forward_hook(lambda m, a, out: seen.append(out.shape[1]))
    model.eval()(torch.zeros(1, 3, 32, 32))
    assert seen == [model.config.seq_length]


def _suffix_case(config, **inputs) -> None:
    """``logits_at`` with nothing read before position 5 in any row: the last layer runs only
    from there (its output is shorter), with the same logits and gradients as the full pass."""
    model = LlamaModel(config).init_weights(seed=0)
    ids = torch.randint(0, 250, (2, 12), generator=torch.Generator().manual_seed(6))
    learned = torch.zeros(2, 12, dtype=torch.bool)
    learned[0, 5:9], learned[1, 7:11] = True, True
    weights = torch.randn(int(learned.sum()), config.vocab_size)
    lengths = []
    hook = model.decoder.layers[-1].register_forward_hook(
        lambda m, a, out: lengths.append(out.shape[1])
    )
    short = model(ids, logits_at=learned, **inputs)
    (short * weights).sum().backward()
    short_grads = _grads(model)
    model.zero_grad(set_to_none=True)
    full = model(ids, **inputs)[learned]
    (full * weights).sum().backward()
    hook.remove()
    assert lengths == [12 - 5, 12]
    _assert_same(short, full, short_grads, _grads(model))


def test_language_model_last_layer_starts_at_the_first_position_read():
    _suffix_case(LlamaConfigTiny())


def test_last_layer_suffix_keeps_padding_packing_and_sliding_window():
    from optica.models.modules.masks import PackedSeqParams

    padding = torch.ones(2, 12, dtype=torch.long)
    padding[1, 11:] = 0
    _suffix_case(LlamaConfigTiny(), attention_mask=padding)
    _suffix_case(
        LlamaConfigTiny(), packed_seq_params=PackedSeqParams(cu_seqlens=torch.tensor([0, 6, 12]))
    )
    _suffix_case(LlamaConfigTiny(sliding_window=4))


def test_causal_queries_must_be_a_suffix():
    import pytest

    model = LlamaModel(LlamaConfigTiny()).init_weights(seed=0)
    layer = model.decoder.layers[0]
    with pytest.raises(ValueError, match="suffix"):
        layer(torch.randn(1, 6, model.config.hidden_size), queries=slice(0, 3))


def test_images_for_a_model_that_takes_none_are_one_clear_error():
    import pytest

    from optica.data import MockDataModule
    from optica.run.errors import ConfigError

    model = LlamaModel(LlamaConfigTiny()).init_weights(seed=0)
    data = MockDataModule(seq_length=16, micro_batch_size=2, global_batch_size=2,
                          image_size=28, image_token_len=4, vocab_size=200)  # fmt: skip
    data.setup("fit")
    batch = next(iter(data.train_dataloader()))
    with pytest.raises(ConfigError, match="carry images but LlamaModel takes none"):
        TrainingModule(model).loss(batch)
