"""The activation model against what autograd really saves: the bytes of every tensor a tiny
optica Llama layer keeps for its backward pass, summed through
``torch.autograd.graph.saved_tensors_hooks`` (each storage once, parameters and the RoPE tables
every layer shares left out), equal :func:`layer_activation_bytes` for that layer."""

from unittest import mock

import pytest
import torch

from optica.autoconfig import LanguageShape, Layout, ModelShape, Training, estimate_memory
from optica.autoconfig.memory import layer_activation_bytes, layer_input_bytes
from optica.models.language.llama.model import LlamaConfig, LlamaModel
from optica.models.modules import attention
from optica.models.modules.parallel import ParallelConfig, apply_activation_checkpointing

# The calibration model's layer (tests/integration/autoconfig/test_calibration.py), GQA 4/2.
SHAPE = LanguageShape(
    hidden_size=128, ffn_hidden_size=352, num_layers=2, num_attention_heads=4,
    num_query_groups=2, vocab_size=2048, seq_length=128,
)  # fmt: skip
CONFIG = LlamaConfig(
    hidden_size=128, ffn_hidden_size=352, num_layers=2, num_attention_heads=4,
    num_query_groups=2, vocab_size=2048, seq_length=128,
)  # fmt: skip
BATCH = 2


def saved_bytes(run, exclude: list[torch.Tensor]) -> int:
    """Bytes of the distinct storages autograd saves while ``run()`` executes."""
    skip = {t.untyped_storage().data_ptr() for t in exclude}
    storages: dict[int, int] = {}

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        storage = tensor.untyped_storage()
        if storage.data_ptr() not in skip:
            storages[storage.data_ptr()] = storage.nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        run()
    return sum(storages.values())


def measured_layer(dtype: torch.dtype, checkpointing: str) -> int:
    model = LlamaModel(CONFIG).init_weights(seed=0, dtype=dtype)
    layer = model.decoder.layers[0]
    if checkpointing != "none":
        config = ParallelConfig(activation_checkpointing=checkpointing)
        apply_activation_checkpointing([layer], config)
    positions = torch.arange(CONFIG.seq_length).expand(BATCH, -1)
    rope = model.rotary_pos_emb(positions, dtype)
    x = torch.randn(BATCH, CONFIG.seq_length, CONFIG.hidden_size, dtype=dtype, requires_grad=True)
    # NOTE: x is the previous layer's output: the layer's own to keep (full recompute keeps it).
    # The model describes GPU kernels, which attend in 16 bits as given; on a CPU optica attends
    # 16-bit inputs in fp32 (``attention._cpu_half_precision``), so the GPU path is taken here.
    with mock.patch.object(attention, "_cpu_half_precision", lambda q: None):
        return saved_bytes(lambda: layer(x, rope=rope), exclude=[*model.parameters(), *rope])


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("checkpointing", ["none", "selective"])
def test_layer_activations_equal_the_saved_tensors(dtype, checkpointing):
    value_bytes = dtype.itemsize
    predicted = layer_activation_bytes(
        SHAPE, tokens=BATCH * CONFIG.seq_length, span=CONFIG.seq_length, tp=1, sp=False,
        value_bytes=value_bytes, core_recomputed=checkpointing == "selective",
    )  # fmt: skip
    measured = measured_layer(dtype, checkpointing)
    assert predicted == pytest.approx(measured, rel=0.02), (predicted, measured)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_full_recompute_keeps_the_layer_input(dtype):
    predicted = layer_input_bytes(
        SHAPE, tokens=BATCH * CONFIG.seq_length, tp=1, sp=False, value_bytes=dtype.itemsize
    )
    assert predicted == measured_layer(dtype, "full")


def test_whole_model_activations_equal_the_saved_tensors():
    """Embedding → layers → final norm → logits → optica's loss, fp32, one micro-batch of 2. The
    prediction also holds the two fp32 T×V gradients the loss's backward pass writes while the
    saved log-softmax is alive (of the log-softmax, then of the logits): added to the saved."""
    from optica.train.module import token_loss

    model = LlamaModel(CONFIG).init_weights(seed=0, dtype=torch.float32)
    ids = torch.randint(0, CONFIG.vocab_size, (BATCH, CONFIG.seq_length))
    measured = saved_bytes(lambda: token_loss(model(ids), ids), exclude=[*model.parameters()])
    layout = Layout(micro_batch_size=BATCH, global_batch_size=BATCH)
    model_shape = ModelShape(name="tiny", language=SHAPE)
    predicted = estimate_memory(model_shape, layout, training=Training(precision="32"))
    gradient = 2 * 4 * BATCH * CONFIG.seq_length * CONFIG.vocab_size
    assert predicted.activations == pytest.approx(measured + gradient, rel=0.03)
