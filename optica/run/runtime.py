"""Process settings optica gives the processes it starts (its own command and every launched rank).

``THP_MEM_ALLOC_ENABLE=1`` puts CPU tensors of 2 MB or more on transparent huge pages (torch's
CPU allocator, ``c10/core/alloc_cpu.cpp``). A training step allocates its gradients, the bf16
copies autocast makes of the weights and the embedding's dense gradient afresh every step, and
on 4 KB pages every first touch is a page fault: measured on the LLaVA-shaped CPU benchmark,
0.1-0.15 s of system time per step (10-20% of the step) that huge pages cut to ~0.05 s, with the
same peak memory (``benchmarks/RESULTS.md``). torch reads the variable once, at its first
allocation, so it has to be in the environment before torch starts. GPU memory is untouched.

A value the user set (``THP_MEM_ALLOC_ENABLE=0`` to opt out) is kept.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

PROCESS_DEFAULTS = {"THP_MEM_ALLOC_ENABLE": "1"}


def with_process_defaults(env: Mapping[str, str]) -> dict[str, str]:
    """``env`` for a process optica starts: the defaults, then ``env``'s own values."""
    return {**PROCESS_DEFAULTS, **env}


def apply_process_defaults() -> None:
    """Sets the defaults in this process's environment; call it before torch is imported."""
    os.environ.update(with_process_defaults(os.environ))
