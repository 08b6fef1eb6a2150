"""Ending a process that used gloo (``optica.run.teardown``): no group's threads may outlive
``shutdown_distributed``, and a process where some do still ends with its own exit code.

Each case runs in a fresh Python process: a one-rank gloo group, FSDP2 on a DeviceMesh, one
training step (the set-up after which torch keeps the group's threads alive past
``destroy_process_group``: pytorch/pytorch#190489)."""

import subprocess
import sys
import textwrap

import pytest

from optica.run.teardown import lingering_gloo_threads

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="threads are read from /proc")

FSDP_STEP = """
import atexit, os, sys, tempfile
import torch, torch.distributed as dist
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.fsdp import fully_shard
from optica.run.teardown import exit_now_if_gloo_lingers, lingering_gloo_threads
from optica.run.teardown import shutdown_distributed

store = os.path.join(tempfile.mkdtemp(), "store")
dist.init_process_group("gloo", init_method=f"file://{store}", rank=0, world_size=1)
model = torch.nn.Linear(8, 2)
fully_shard(model, mesh=init_device_mesh("cpu", (1,)))
model(torch.randn(3, 8)).sum().backward()
print("threads while training:", len(lingering_gloo_threads()))
"""


def run_python(code: str) -> subprocess.CompletedProcess:
    script = textwrap.dedent(FSDP_STEP) + textwrap.dedent(code)
    return subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)


def test_shutdown_frees_the_groups_a_device_mesh_held():
    done = run_python("""
        del model
        shutdown_distributed(clean=True)
        print("threads after shutdown:", lingering_gloo_threads())
    """)
    assert done.returncode == 0, done.stderr
    assert "threads while training: 3" in done.stdout  # one group: 2 workers + its TCP loop
    assert "threads after shutdown: []" in done.stdout


def test_destroying_the_group_alone_leaves_its_threads():
    """The case the release is for: torch's own teardown leaves them running."""
    done = run_python("""
        del model
        dist.barrier(); dist.destroy_process_group()
        import gc; gc.collect()
        print("threads after destroy:", len(lingering_gloo_threads()))
        os._exit(0)  # this process would otherwise risk the very crash
    """)
    assert "threads after destroy: 3" in done.stdout, done.stderr


def test_a_process_whose_group_is_still_held_exits_at_once_with_its_code():
    """The model stays referenced (FSDP2's state holds the group), so the threads outlive the
    shutdown: the process ends with its code, its output flushed, no atexit handler run."""
    done = run_python("""
        atexit.register(lambda: print("atexit ran"))
        shutdown_distributed(clean=True)
        sys.stdout.write("unflushed output")
        exit_now_if_gloo_lingers(3)
        print("not reached")
    """)
    assert done.returncode == 3, done.stderr
    assert done.stdout.endswith("unflushed output")
    assert "optica: 3 gloo thread(s) outlived the process group" in done.stderr


def test_a_process_without_lingering_threads_goes_on():
    done = run_python("""
        del model
        shutdown_distributed(clean=True)
        exit_now_if_gloo_lingers(3)
        print("went on")
    """)
    assert done.returncode == 0 and done.stdout.endswith("went on\n"), done.stderr


def test_only_gloo_threads_are_counted(tmp_path):
    for tid, name in enumerate(["python", "pt_gloo_runloop", "gloo_tcp_loop", "pt_gloo_runloop"]):
        (tmp_path / str(tid)).mkdir()
        (tmp_path / str(tid) / "comm").write_text(name + "\n")
    assert lingering_gloo_threads(tmp_path) == ["gloo_tcp_loop", *["pt_gloo_runloop"] * 2]
    assert lingering_gloo_threads(tmp_path / "missing") == []


def test_groups_the_task_destroyed_itself_are_released_too():
    done = run_python("""
        del model
        dist.barrier(); dist.destroy_process_group()
        shutdown_distributed(clean=True)
        print("threads after shutdown:", lingering_gloo_threads())
    """)
    assert done.returncode == 0, done.stderr
    assert "threads after shutdown: []" in done.stdout


def test_dead_weak_proxies_on_the_heap_do_not_stop_the_release():
    """``isinstance`` against DeviceMesh raises ReferenceError on such a proxy (seen in CI)."""
    done = run_python("""
        import weakref
        class Thing: pass
        thing = Thing(); proxy = weakref.proxy(thing); holder = [proxy]; del thing
        del model
        shutdown_distributed(clean=True)
        print("threads after shutdown:", lingering_gloo_threads())
    """)
    assert done.returncode == 0, done.stderr
    assert "threads after shutdown: []" in done.stdout
