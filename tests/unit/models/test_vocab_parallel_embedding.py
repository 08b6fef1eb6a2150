"""``vocab_parallel_embedding``: each tensor-parallel rank's embedding gradient is its own rows.

DTensor's ``RowwiseParallel`` embedding builds the whole [vocab, hidden] gradient on every rank
(its embedding backward has no vocabulary-sharded rule) and reduce-scatters it; optica's style
looks rows up on the local shard. Two ranks are simulated in one process with torch's fake
process group (collectives do nothing, shapes are real): every tensor the backward pass makes
is recorded by its local shape. Values across real ranks are covered by the two-process TP
parity tests (tests/integration/parallel)."""

import pytest
import torch
import torch.distributed as dist
from torch import nn
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.tensor import DTensor, Replicate
from torch.distributed.tensor.parallel import RowwiseParallel, parallelize_module
from torch.testing._internal.distributed.fake_pg import FakeStore
from torch.utils._python_dispatch import TorchDispatchMode

from optica.models.modules.parallel import vocab_parallel_embedding

VOCAB, HIDDEN = 64, 8


class LocalShapes(TorchDispatchMode):
    """The local shape of every tensor an op returns (a DTensor's shard, not its global shape)."""

    def __init__(self) -> None:
        super().__init__()
        self.shapes: set[tuple[int, ...]] = set()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for tensor in out if isinstance(out, (tuple, list)) else (out,):
            if isinstance(tensor, torch.Tensor):
                local = tensor.to_local() if isinstance(tensor, DTensor) else tensor
                self.shapes.add(tuple(local.shape))
        return out


@pytest.fixture
def two_rank_mesh():
    dist.init_process_group("fake", rank=0, world_size=2, store=FakeStore())
    yield init_device_mesh("cpu", (2,))
    dist.destroy_process_group()


@pytest.mark.parametrize("style", ["optica", "dtensor"])
def test_each_rank_builds_only_its_own_rows_gradient(two_rank_mesh, style):
    embedding = nn.Embedding(VOCAB, HIDDEN)
    plan = (
        vocab_parallel_embedding(Replicate(), use_local_output=True)
        if style == "optica"
        else RowwiseParallel(input_layouts=Replicate(), output_layouts=Replicate())
    )
    parallelize_module(embedding, two_rank_mesh, plan)
    ids = torch.tensor([[0, 5, 40, 63], [31, 32, 33, 1]])
    out = embedding(ids)
    assert out.shape == (2, 4, HIDDEN)
    with LocalShapes() as seen:
        out.sum().backward()
    whole = (VOCAB, HIDDEN) in seen.shapes | {tuple(embedding.weight.grad.to_local().shape)}
    assert whole == (style == "dtensor")  # DTensor's rule: a [vocab, hidden] gradient per rank


def test_rows_outside_the_shard_read_zero(two_rank_mesh):
    """Rank 0 holds rows 0-31: its partial sums are its rows' vectors and zero elsewhere (the
    all-reduce, a no-op here, adds the other rank's)."""
    embedding = nn.Embedding(VOCAB, HIDDEN)
    full = embedding.weight.detach().clone()
    parallelize_module(embedding, two_rank_mesh, vocab_parallel_embedding(Replicate(), True))
    out = embedding(torch.tensor([[3, 40]]))
    assert torch.equal(out[0, 0], full[3]) and torch.equal(out[0, 1], torch.zeros(HIDDEN))


def test_only_a_plain_embedding_is_taken(two_rank_mesh):
    with pytest.raises(TypeError, match="nn.Embedding without padding_idx"):
        parallelize_module(
            nn.Embedding(VOCAB, HIDDEN, padding_idx=0),
            two_rank_mesh,
            vocab_parallel_embedding(Replicate(), True),
        )
