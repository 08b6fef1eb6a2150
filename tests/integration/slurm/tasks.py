"""Task functions the Slurm tests submit (every rank imports this module)."""

import sys


def fail_while_peer_waits(code: int = 3) -> None:
    """Rank 1 exits with ``code`` while rank 0 blocks in a barrier that can never complete:
    only the launcher stopping rank 0 ends the job."""
    import torch.distributed as dist

    dist.init_process_group("gloo")
    if dist.get_rank() == 1:
        print(f"rank 1 failing with {code}", flush=True)
        sys.exit(code)
    print("rank 0 waiting for rank 1 in a barrier", flush=True)
    dist.barrier()
