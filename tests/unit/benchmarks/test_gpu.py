"""The GPU benchmark's code path on tiny models (CPU here): every case trains and gets FLOPs;
MFU appears once a peak is known. No timing is asserted."""

import pytest

from benchmarks import gpu


@pytest.fixture(scope="module")
def tiny_result():
    return gpu.run(tiny=True, options=gpu.parse(["--tiny", "--steps", "1", "--warmup", "0",
                                                 "--peak-tflops", "1.0"]))  # fmt: skip


def test_every_case_runs_and_counts_model_flops(tiny_result):
    rows = {r["case"]: r for r in tiny_result["rows"]}
    assert set(rows) == {c.name for c in gpu.TINY_CASES}
    for row in rows.values():
        assert row["step_s"] > 0 and row["tflops"] > 0 and row["samples_per_s"] > 0
        assert row["mfu"] == pytest.approx(row["tflops"])  # against a 1 TFLOPS peak
    # LoRA trains no base weight: its model FLOPs per sample are below the full fine-tune's
    lora, full = rows["llava tiny lora"], rows["llava tiny full"]
    assert lora["tflops"] * lora["step_s"] < full["tflops"] * full["step_s"]


def test_the_table_names_every_case(tiny_result):
    text = gpu.report(tiny_result)
    assert all(c.name in text for c in gpu.TINY_CASES) and "MFU" in text


def test_without_a_gpu_the_full_run_says_so_in_one_line(monkeypatch):
    monkeypatch.setattr(gpu.torch.cuda, "is_available", lambda: False)
    result = gpu.run(tiny=False)
    assert result["rows"] == [] and gpu.report(result).startswith("gpu: skipped: no GPU here")


def test_the_optimizer_can_step_inside_the_backward_pass():
    options = gpu.parse(["--tiny", "--steps", "1", "--warmup", "1", "--cases", "full",
                         "--step-in-backward"])  # fmt: skip
    (row,) = gpu.run(tiny=True, options=options)["rows"]
    assert row["case"] == "llava tiny full" and row["step_s"] > 0
