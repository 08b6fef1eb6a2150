"""``ParallelStrategy.block_backward_sync``: under DDP the micro-batches of an accumulation window
before the last skip the gradient all-reduce; under FSDP nothing changes. Two ranks simulated in
one process with torch's fake process group; that the losses match a run reducing every
micro-batch is checked with two real processes in
tests/integration/parallel/test_parallel_layouts.py."""

import pytest
import torch.distributed as dist
from torch import nn
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.fsdp import FSDPModule
from torch.testing._internal.distributed.fake_pg import FakeStore

from optica.models.modules.parallel import ParallelConfig, apply_data_parallel
from optica.train.strategy import ParallelStrategy


@pytest.fixture
def two_rank_mesh():
    dist.init_process_group("fake", rank=0, world_size=2, store=FakeStore())
    yield init_device_mesh("cpu", (2,))
    dist.destroy_process_group()


def wrapped(mesh, sharding: str) -> nn.Module:
    model = nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 4))
    apply_data_parallel(model, [model[0]], mesh, ParallelConfig(data_parallel_sharding=sharding))
    return model


def reducing(model: nn.Module) -> list[bool]:
    modules = [m for m in model.modules() if isinstance(m, FSDPModule)]
    return [m._get_fsdp_state()._fsdp_param_group.reduce_grads for m in modules]


@pytest.mark.parametrize("sharding, inside", [("ddp", False), ("fsdp", True)])
def test_only_ddp_skips_the_reduction_inside_the_block(two_rank_mesh, sharding, inside):
    model = wrapped(two_rank_mesh, sharding)
    assert len([m for m in model.modules() if isinstance(m, FSDPModule)]) == 2
    strategy = ParallelStrategy(data_parallel_sharding=sharding)
    strategy._lightning_module = model
    assert reducing(model) == [True, True]
    with strategy.block_backward_sync():
        assert reducing(model) == [inside, inside]
    assert reducing(model) == [True, True]
