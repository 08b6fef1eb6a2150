"""``AutoConfigurator``: one object holding a search's inputs, which searches, writes files and
launches the best candidates to measure them (:mod:`optica.autoconfig.runner`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from optica.autoconfig.hardware import Cluster, Efficiency
from optica.autoconfig.outputs import write_base_config, write_candidates_csv, write_top_k
from optica.autoconfig.results import write_results
from optica.autoconfig.runner import Launch, Outcome, RunLimits, run_candidates
from optica.autoconfig.search import SearchResult, SearchSpace, search
from optica.autoconfig.shapes import ModelShape
from optica.autoconfig.training import Training
from optica.run.errors import ConfigError


@dataclass(frozen=True)
class Outputs:
    """Files one :meth:`AutoConfigurator.write` produced."""

    directory: Path
    candidates_csv: Path
    base_config: Path
    top_k: tuple[Path, ...]


@dataclass(frozen=True)
class AutoConfigurator:
    """Finds the fastest layouts for ``model`` on ``cluster`` (seed 004).

    Args:
        model: The model's shape (see :mod:`optica.autoconfig.catalog` for published sizes).
        cluster: Nodes, GPUs per node and GPU kind.
        space: The grid to search.
        training: Precision, LoRA, frozen parts.
        efficiency: The time model's stated efficiencies.
        top_k: How many of the best candidates get a config file.
    """

    model: ModelShape
    cluster: Cluster
    space: SearchSpace = field(default_factory=SearchSpace)
    training: Training = field(default_factory=Training)
    efficiency: Efficiency = field(default_factory=Efficiency)
    top_k: int = 5

    def __post_init__(self) -> None:
        if not isinstance(self.top_k, int) or self.top_k < 1:
            raise ConfigError(f"top_k must be a positive integer, got {self.top_k!r}")

    def search(self) -> SearchResult:
        return search(
            self.model,
            self.cluster,
            space=self.space,
            training=self.training,
            efficiency=self.efficiency,
        )

    def write(self, output_dir: str | Path, result: SearchResult | None = None) -> Outputs:
        """Searches (unless ``result`` is given) and writes ``candidates.csv``,
        ``base_config.yaml`` and ``top_k/rank_NN.yaml`` under ``output_dir``."""
        result = result or self.search()
        directory = Path(output_dir)
        return Outputs(
            directory=directory,
            candidates_csv=write_candidates_csv(result, directory / "candidates.csv"),
            base_config=write_base_config(result, directory / "base_config.yaml"),
            top_k=tuple(write_top_k(result, directory / "top_k", self.top_k)),
        )

    def run(
        self,
        output_dir: str | Path,
        *,
        limits: RunLimits | None = None,
        launch: Launch | None = None,
        result: SearchResult | None = None,
    ) -> Measurements:
        """Searches and writes (as :meth:`write`), then trains each of the top-k candidates for
        ``limits`` and writes ``results.csv``, ``failed.csv`` and the predicted-vs-measured plot.
        A candidate that fails is recorded, never raised."""
        result = result or self.search()
        outputs = self.write(output_dir, result)
        outcomes = run_candidates(
            result,
            result.top(self.top_k),
            outputs.directory,
            limits=limits or RunLimits(),
            launch=launch or Launch(),
        )
        files = write_results(result, outcomes, outputs.directory)
        return Measurements(result, outputs, tuple(outcomes), *files)


@dataclass(frozen=True)
class Measurements:
    """What :meth:`AutoConfigurator.run` measured and wrote."""

    result: SearchResult
    outputs: Outputs
    outcomes: tuple[Outcome, ...]
    results_csv: Path
    failed_csv: Path
    plot: Path

    @property
    def succeeded(self) -> tuple[Outcome, ...]:
        return tuple(o for o in self.outcomes if o.measured is not None)
