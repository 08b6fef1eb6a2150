"""Ending a launched process that used torch.distributed without the gloo exit crash.

NOTE: a gloo process group still alive when the interpreter exits is destroyed during its
teardown, where its worker threads abort the process ("terminate called without an active
exception", or SIGSEGV; pytorch/pytorch#190489). So every launched task ends with
:func:`shutdown_distributed`: a barrier, then the groups released and destroyed while Python
still runs. What can keep a group alive past ``destroy_process_group``:

* a ``DeviceMesh`` keeps its groups in ``_pg_registry``, and DTensor's caches keep meshes alive
  long after the model (measured: after FSDP2 on a mesh, one group's gloo threads outlived
  ``destroy_process_group`` in every run); :func:`release_mesh_groups` empties those registries;
* a module still referenced somewhere holds FSDP2's mesh info and so its group. For that,
  :func:`exit_now_if_gloo_lingers` ends a finished process without interpreter teardown.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import os
import sys
import traceback
from collections.abc import Callable
from pathlib import Path

GLOO_THREAD_NAMES = ("pt_gloo_runloop", "gloo_tcp_loop")


def shutdown_distributed(clean: bool) -> None:
    """Tears down the process groups a task left behind, without masking the real outcome.

    The barrier lets every rank finish its last collective; it is skipped after a failure, as
    the other ranks may never reach it. Groups the task destroyed itself may still be held by
    its meshes, so those are released either way. A task can only have made a group if it
    imported ``torch.distributed``, so torch is never imported here just to check.
    """
    dist = sys.modules.get("torch.distributed")
    if dist is None or not dist.is_available():
        return
    initialized = dist.is_initialized()
    if not initialized and not lingering_gloo_threads():
        return
    if initialized and clean:
        _printing_failure(dist.barrier)
    _printing_failure(release_mesh_groups)
    if initialized:
        _printing_failure(dist.destroy_process_group)
    gc.collect()  # groups no one holds now are destroyed here, their threads joined


def _printing_failure(teardown_step: Callable[[], object]) -> None:
    """Runs one teardown step; a failure is printed, never raised: a broken group must not turn
    a task's success into a crash."""
    try:
        teardown_step()
    except Exception:
        traceback.print_exc()


def release_mesh_groups() -> None:
    """Empties every live ``DeviceMesh``'s process-group registry."""
    device_mesh = sys.modules.get("torch.distributed.device_mesh")
    if device_mesh is None:
        return
    for obj in gc.get_objects():
        # NOTE: not isinstance: DeviceMesh's metaclass hooks it, and the hook raises
        # ReferenceError on a weak proxy whose object is gone (the heap holds such proxies).
        if device_mesh.DeviceMesh in type(obj).__mro__:
            registry = getattr(obj, "_pg_registry", None)
            if registry:
                registry.clear()


def lingering_gloo_threads(task_dir: Path = Path("/proc/self/task")) -> list[str]:
    """Names of this process's gloo threads (Linux; elsewhere none are seen)."""
    names = []
    for thread in task_dir.glob("*/comm") if task_dir.is_dir() else ():
        try:
            name = thread.read_text().strip()
        except OSError:  # the thread ended while we looked
            continue
        if name in GLOO_THREAD_NAMES:
            names.append(name)
    return sorted(names)


def exit_now_if_gloo_lingers(code: int) -> None:
    """Ends the process with ``code`` at once when gloo threads outlived the process group.

    The task has finished and recorded its result; what is skipped is only the interpreter's
    teardown (atexit handlers), during which those threads would abort the process. Streams and
    logging handlers are flushed first.
    """
    threads = lingering_gloo_threads()
    if not threads:
        return
    print(
        f"optica: {len(threads)} gloo thread(s) outlived the process group; "
        "exiting without interpreter teardown (the gloo exit crash)",
        file=sys.stderr,
    )
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):
            stream.flush()
    os._exit(code)
