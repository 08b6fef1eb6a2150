"""Importable task functions for the launch integration tests (each rank imports this module)."""

import os


def all_reduce_sum(value_per_rank: float = 1.0) -> dict:
    """Every rank contributes ``value_per_rank * (rank + 1)``; all ranks must agree on the sum."""
    import torch
    import torch.distributed as dist

    dist.init_process_group("gloo")
    rank, world_size = dist.get_rank(), dist.get_world_size()
    tensor = torch.tensor([value_per_rank * (rank + 1)])
    dist.all_reduce(tensor)
    print(f"rank {rank}/{world_size} all_reduce sum={tensor.item():g}", flush=True)
    return {"rank": rank, "world_size": world_size, "sum": tensor.item(), "pid": os.getpid()}


def fail_on_rank(rank: int = 1, code: int = 3) -> None:
    """Rank ``rank`` exits with ``code``; the others finish normally."""
    import sys

    if int(os.environ["RANK"]) == rank:
        print(f"rank {rank} failing with {code}", flush=True)
        sys.exit(code)
