"""``optica autoconfig --run --executor slurm`` against the real Slurm cluster of conftest.py:
each top-k candidate of the tiny Llama is an sbatch job (srun + torchrun, two CPU processes),
its measurements come back into results.csv, and a candidate that cannot run lands in
failed.csv with its error."""

import csv

import pytest

from optica.cli.main import main

pytestmark = [pytest.mark.slow, pytest.mark.distributed]

TINY_LLAMA_ON_TWO_CPUS = (
    "autoconfig", "--model", "llama_tiny", "--num-nodes", "1", "--gpus-per-node", "2",
    "--gpu-memory-gb", "4", "--seq-length", "64", "--global-batch-size", "8",
    "--micro-batch-sizes", "2", "--pipeline-parallel-sizes", "1", "--context-parallel-sizes",
    "1", "--recompute-num-layers", "0", "--precision", "32", "--run", "--executor", "slurm",
    "--max-steps-per-run", "3", "--max-minutes-per-run", "1",
)  # fmt: skip


def rows(path):
    return list(csv.DictReader(path.open()))


def test_top_candidates_run_as_slurm_jobs_and_are_measured(slurm_cluster, tmp_path, capsys):
    out = tmp_path / "out"
    argv = [*TINY_LLAMA_ON_TWO_CPUS, "--accelerator", "cpu", "--top-k", "2"]
    assert main([*argv, "--output", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "llama_tiny: measured (best first) vs predicted" in printed

    measured = rows(out / "results.csv")
    assert rows(out / "failed.csv") == []
    assert sorted(r["TP"] for r in measured) == ["1", "2"]  # DP2 and TP2: both ran
    for row in measured:
        assert row["Model Name"] == "llama_tiny" and row["GPUs per Node"] == "2"
        assert row["Steps Measured"] == "3" and row["Stopped by Time Limit"] == "False"
        assert 0 < float(row["Time per Step"]) < 60
        assert 0 < float(row["Measured Memory per GPU (GiB)"]) < 2
        run_dir = tmp_path / "out" / "runs" / f"rank_{int(row['Predicted Rank']):02d}"
        assert len(list((run_dir / "run" / "autoconfig").glob("rank_*.json"))) == 2
    # Each candidate was an sbatch job of its own: srun starts torchrun, which starts 2 ranks.
    scripts = [s.read_text() for s in (tmp_path / "optica_home").rglob("sbatch.sh")]
    assert len(scripts) == 2
    assert all("srun " in s and "--nproc_per_node 2" in s for s in scripts)


def test_a_candidate_slurm_cannot_run_is_in_failed_csv(slurm_cluster, tmp_path, capsys):
    """GPUs asked of a cluster that has none: Slurm refuses the job, the runner records it."""
    out = tmp_path / "out"
    argv = [*TINY_LLAMA_ON_TWO_CPUS, "--accelerator", "gpu", "--top-k", "1"]
    assert main([*argv, "--output", str(out)]) != 0
    assert f"error: no candidate ran successfully; see {out / 'failed.csv'}" in (
        capsys.readouterr().err.replace("\n", "")
    )
    assert rows(out / "results.csv") == []
    (failed,) = rows(out / "failed.csv")
    assert (failed["Predicted Rank"], failed["TP"], failed["Error Type"]) == ("1", "1", "error")
    assert failed["Error"] == (
        "FAILED: [optica] sbatch refused the job: sbatch: error: Invalid generic resource (gres) "
        "specification"
    )
    assert (out / "predicted_vs_measured.png").read_bytes()[:4] == b"\x89PNG"
