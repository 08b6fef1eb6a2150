"""The probe's measurements on this machine's procfs (no training needed)."""

import torch

from optica.autoconfig.measure import median_step_time, peak_memory, reset_peak_memory


def test_median_leaves_out_the_warm_up_step():
    assert median_step_time([]) is None
    assert median_step_time([5.0]) == 5.0
    assert median_step_time([9.0, 1.0, 3.0, 2.0]) == 2.0


def test_cpu_peak_sees_a_tensor_allocated_and_freed_after_the_reset():
    cpu = torch.device("cpu")
    baseline = reset_peak_memory(cpu)
    block = torch.ones(64 * 2**20 // 4)  # 64 MiB, touched
    del block
    grown = peak_memory(cpu) - baseline
    assert 60 * 2**20 < grown < 200 * 2**20
    again = reset_peak_memory(cpu)  # a new reset forgets the old peak
    assert peak_memory(cpu) - again < 32 * 2**20
