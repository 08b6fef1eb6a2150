"""Process settings optica gives the processes it starts (its own command and every launched rank).

``THP_MEM_ALLOC_ENABLE=1`` puts CPU tensors of 2 MB or more on transparent huge pages (torch's
CPU allocator, ``c10/core/alloc_cpu.cpp``). A training step allocates its gradients, the bf16
copies autocast makes of the weights and the embedding's dense gradient afresh every step, and
on 4 KB pages every first touch is a page fault: measured on the LLaVA-shaped CPU benchmark,
0.1-0.15 s of system time per step (10-20% of the step) that huge pages cut to ~0.05 s, with the
same peak memory (``benchmarks/RESULTS.md``). torch reads the variable once, at its first
allocation, so it has to be in the environment before torch starts. GPU memory is untouched.

``MALLOC_MMAP_THRESHOLD_`` / ``MALLOC_TRIM_THRESHOLD_`` (glibc) serve blocks up to 1 GiB from the
heap and keep freed ones there for reuse, instead of mapping each large block afresh and handing
it back when freed. The blocks a step frees are then the ones the next step reuses, already
mapped: the remaining ~10k page faults and ~0.05 s of system time per LLaVA-shaped step fall to
~0, for 2-3% more peak memory (freed blocks stay in the process). glibc reads these at start-up,
so a running process (the ``optica`` command itself) sets them with ``mallopt``.

A value the user set (``THP_MEM_ALLOC_ENABLE=0`` to opt out) is kept.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
from collections.abc import Mapping

_KEEP_FREED_BELOW = str(1 << 30)  # bytes
PROCESS_DEFAULTS = {
    "THP_MEM_ALLOC_ENABLE": "1",
    "MALLOC_MMAP_THRESHOLD_": _KEEP_FREED_BELOW,
    "MALLOC_TRIM_THRESHOLD_": _KEEP_FREED_BELOW,
}
# glibc's mallopt parameters for the two variables above (malloc.h)
_MALLOPT = {"MALLOC_TRIM_THRESHOLD_": -1, "MALLOC_MMAP_THRESHOLD_": -3}


def with_process_defaults(env: Mapping[str, str]) -> dict[str, str]:
    """``env`` for a process optica starts: the defaults, then ``env``'s own values."""
    return {**PROCESS_DEFAULTS, **env}


def apply_process_defaults() -> None:
    """Sets the defaults in this process's environment (call it before torch is imported) and
    the allocator settings the user did not set in this running process."""
    unset = [name for name in _MALLOPT if name not in os.environ]
    os.environ.update(with_process_defaults(os.environ))
    _set_malloc_options({name: int(PROCESS_DEFAULTS[name]) for name in unset})


def _set_malloc_options(values: Mapping[str, int]) -> None:
    """``mallopt`` for each setting, where the C library is glibc (elsewhere nothing)."""
    if not values or not hasattr(os, "confstr"):
        return
    try:
        if not os.confstr("CS_GNU_LIBC_VERSION"):
            return
    except (ValueError, OSError):
        return
    libc = ctypes.CDLL(ctypes.util.find_library("c"))
    for name, value in values.items():
        libc.mallopt(_MALLOPT[name], value)
