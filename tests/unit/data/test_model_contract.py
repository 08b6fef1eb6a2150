"""The batches feed optica's real tiny LLaVA: keys, shapes, positions, and packing."""

import inspect

import torch

from optica.data import ShapesDataModule
from optica.data.packing import concatenate
from optica.models import LlavaConfigTiny, LlavaModel


def tiny_llava(tokenizer) -> LlavaModel:
    config = LlavaConfigTiny(image_token_id=None)
    config.language_transformer_config.vocab_size = len(tokenizer)
    return LlavaModel(config).init_weights(seed=0)


def model_inputs(model, batch) -> dict:
    """What the training module passes: the keys ``forward`` accepts, labels aside."""
    accepted = inspect.signature(model.forward).parameters
    return {k: v for k, v in batch.items() if k in accepted}


def loss_sum(model, batch) -> tuple[torch.Tensor, int]:
    logits = model(**model_inputs(model, batch))
    labels = model.expand_labels(batch["input_ids"], batch["labels"])[:, 1:]
    total = torch.nn.functional.cross_entropy(
        logits[:, :-1].flatten(0, 1), labels.flatten(), reduction="sum"
    )
    return total, int((labels != -100).sum())


def shapes(**kw) -> ShapesDataModule:
    return ShapesDataModule(num_train_samples=16, num_val_samples=0, **kw)


def test_shapes_batch_runs_through_the_tiny_llava():
    dm = shapes(micro_batch_size=4, global_batch_size=4)
    model = tiny_llava(dm.tokenizer)
    assert model.config.num_image_tokens == dm.vision.image_token_len
    batch = next(iter(dm.train_dataloader()))
    logits = model(**model_inputs(model, batch))
    width = batch["input_ids"].shape[1] + 63
    assert logits.shape[:2] == (4, width) == batch["position_ids"].shape


def test_packed_loss_equals_unpacked_with_images():
    dm = shapes(micro_batch_size=1, global_batch_size=1)
    model = tiny_llava(dm.tokenizer)
    dm.setup()
    samples = [dm.datasets["train"][i] for i in range(6)]
    collate = dm.collator()
    with torch.no_grad():
        plain_sum, plain_count = loss_sum(model, collate(samples))
        packed = collate([concatenate(samples[:3]), concatenate(samples[3:])])
        assert "packed_seq_params" in packed
        packed_sum, packed_count = loss_sum(model, packed)
    assert packed_count == plain_count
    torch.testing.assert_close(packed_sum / packed_count, plain_sum / plain_count)
    positions = packed["position_ids"][0]
    first = len(samples[0].input_ids) + 63
    assert positions[first - 1] == first - 1 and positions[first] == 0  # restarts per sample
