"""The layout search: enumerate, validate, predict, prune by memory, rank by throughput.

The grid is the seed's — TP, PP, VP, CP, EP, micro batch, activation-checkpoint layers and global
batch — with its constraints, which are exactly :func:`~optica.autoconfig.layout.layout_problems`
(the trainer's own validation). Unlike NeMo, which launches every divisible candidate and learns
about OOM from the logs, every candidate here gets a predicted peak memory and step time first;
only those that fit are ranked, and a runner need launch only the top few.

Unset grid axes get defaults: TP in powers of two up to a node, PP over the divisors of the
backbone's layers, VP ∈ {1, 2, 4}, CP while each rank keeps ≥ 2048 tokens, EP over the divisors
of the expert count, micro batch in powers of two up to 8 or 32k tokens (a ViT's 197-token
samples go to 128), full recompute of 0, ¼, ½, ¾ or all the layers
of each model chunk. The global batch, which changes convergence and not only speed, defaults to
one value: the family's usual batch (~4M tokens for language models as Llama 2, 128 for LLaVA-1.5
fine-tuning, 4096 for ViT as seed 002) rounded to a multiple of the GPU count; give several and
they are ranked too — by samples/s, which favours the largest.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections.abc import Iterator
from dataclasses import dataclass

from optica.autoconfig.flops import model_flops_per_step
from optica.autoconfig.hardware import Cluster, Efficiency
from optica.autoconfig.layout import Layout, layout_problems
from optica.autoconfig.memory import GIB, MemoryEstimate, estimate_memory
from optica.autoconfig.shapes import ModelShape
from optica.autoconfig.timing import StepTime, predict_step_time
from optica.autoconfig.training import Training
from optica.run.errors import ConfigError

MIN_TOKENS_PER_CP_RANK = 2048
MICRO_BATCH_TOKENS = 32768
LANGUAGE_BATCH_TOKENS = 4 * 2**20
DEFAULT_GLOBAL_BATCH = {"vlm": 128, "vit": 4096}

Sizes = tuple[int, ...] | None


@dataclass(frozen=True)
class SearchSpace:
    """The grid to search; None on an axis means the defaults in the module docstring.

    Names follow NeMo's auto-configurator (``tensor_parallel_sizes=[1, 2, 4]``, ...).
    """

    tensor_parallel_sizes: Sizes = None
    pipeline_parallel_sizes: Sizes = None
    virtual_pipeline_sizes: Sizes = None
    context_parallel_sizes: Sizes = None
    expert_parallel_sizes: Sizes = None
    micro_batch_sizes: Sizes = None
    recompute_num_layers: Sizes = None
    global_batch_sizes: Sizes = None
    min_model_parallel_size: int = 1
    max_model_parallel_size: int | None = None
    use_distributed_optimizer: bool = True


@dataclass(frozen=True)
class Candidate:
    """One valid layout with its predictions; a runner adds what it measures."""

    layout: Layout
    memory: MemoryEstimate
    step_time: StepTime
    fits: bool
    model_flops: float
    rank: int | None = None

    @property
    def samples_per_second(self) -> float:
        return self.layout.global_batch_size / self.step_time.total

    @property
    def tflops_per_gpu(self) -> float:
        """Model TFLOPS per GPU (FLOPs as in :mod:`optica.autoconfig.flops`)."""
        return self.model_flops / self.step_time.total / self.layout.world_size / 1e12

    def row(self) -> dict[str, object]:
        """The candidate as one ``candidates.csv`` row."""
        layout, memory = self.layout, self.memory
        return {
            "rank": self.rank or "",
            "tp": layout.tp, "pp": layout.pp, "cp": layout.cp, "ep": layout.ep,
            "vp": layout.virtual_pipeline_model_parallel_size or "", "dp": layout.dp,
            "mbs": layout.micro_batch_size, "gbs": layout.global_batch_size,
            "act_ckpt_layers": layout.recompute_num_layers,
            "sequence_parallel": layout.sequence_parallel,
            "distributed_optimizer": layout.use_distributed_optimizer,
            "memory_per_gpu_gib": round(memory.total_gib, 3),
            "weights_gib": round(memory.weights / GIB, 3),
            "gradients_gib": round(memory.gradients / GIB, 3),
            "optimizer_gib": round(memory.optimizer / GIB, 3),
            "activations_gib": round(memory.activations / GIB, 3),
            "gathered_gib": round(memory.gathered / GIB, 3), "peak_at": memory.peak_at,
            "fits": self.fits,
            "step_time_s": round(self.step_time.total, 4),
            "bubble_s": round(self.step_time.bubble, 4),
            "samples_per_s": round(self.samples_per_second, 3),
            "tflops_per_gpu": round(self.tflops_per_gpu, 1),
        }  # fmt: skip


@dataclass(frozen=True)
class SearchResult:
    """Every evaluated candidate, best first (those that fit, by samples/s)."""

    model: ModelShape
    cluster: Cluster
    training: Training
    candidates: tuple[Candidate, ...]
    rejected: int
    rejected_examples: tuple[str, ...] = ()

    @property
    def fitting(self) -> tuple[Candidate, ...]:
        return tuple(c for c in self.candidates if c.fits)

    def top(self, k: int) -> tuple[Candidate, ...]:
        return self.fitting[:k]


def search(
    model: ModelShape,
    cluster: Cluster,
    *,
    space: SearchSpace | None = None,
    training: Training | None = None,
    efficiency: Efficiency | None = None,
) -> SearchResult:
    """Evaluates every valid layout of the grid; see the module docstring."""
    space, training = space or SearchSpace(), training or Training()
    efficiency = efficiency or Efficiency()
    budget = cluster.gpu.memory_gb * GIB * (1 - efficiency.memory_headroom)
    if training.step_in_backward and cluster.world_size > 1:
        raise ConfigError(
            f"step_in_backward runs on one GPU; the cluster has {cluster.world_size} "
            "(--num-nodes 1 --gpus-per-node 1)"
        )
    found, rejected = [], []
    for layout in enumerate_layouts(model, cluster, space):
        problems = layout_problems(
            layout, model, cluster.world_size, space.min_model_parallel_size,
            space.max_model_parallel_size,
        )  # fmt: skip
        problems += training.layout_problems(num_microbatches=layout.num_microbatches)
        if problems:
            rejected.append(_describe(layout, problems))
            continue
        memory = estimate_memory(
            model, layout, training=training, flash_attention=cluster.gpu.flash_attention
        )
        time = predict_step_time(model, layout, cluster, training=training, efficiency=efficiency)
        flops = model_flops_per_step(model, layout.global_batch_size, training)
        found.append(Candidate(layout, memory, time, memory.total <= budget, flops))
    ranked = [_with_rank(c, i + 1) for i, c in enumerate(sorted(found, key=_rank_key))]
    return SearchResult(model, cluster, training, tuple(ranked), len(rejected), tuple(rejected[:1]))


def enumerate_layouts(model: ModelShape, cluster: Cluster, space: SearchSpace) -> Iterator[Layout]:
    """Every grid point as a :class:`Layout` filling the cluster (invalid ones included)."""
    world = cluster.world_size
    axes = (
        space.tensor_parallel_sizes or _powers_of_two(min(cluster.gpus_per_node, world)),
        space.pipeline_parallel_sizes or _divisors(model.backbone.num_layers, world),
        space.context_parallel_sizes or _context_sizes(model, world),
        space.expert_parallel_sizes or _expert_sizes(model),
        space.virtual_pipeline_sizes or (1, 2, 4),
        space.micro_batch_sizes or _micro_batch_sizes(model),
        space.global_batch_sizes or (default_global_batch_size(model, world),),
    )
    for tp, pp, cp, ep, vp, mbs, gbs in itertools.product(*axes):
        if world % (tp * pp * cp) or (vp > 1 and pp == 1):
            continue
        chunk = max(model.backbone.num_layers // (pp * vp), 1)
        # Sequence parallelism whenever TP > 1 and the tokens split evenly (a ViT's 197 don't);
        # never for a VLM: optica splices image features into the whole sequence right before
        # the language model, so its LLaVA refuses sequence parallelism (TP alone runs).
        sp = tp > 1 and (model.seq_length // cp) % tp == 0 and model.kind != "vlm"
        for layers in space.recompute_num_layers or _recompute_grid(chunk):
            yield Layout(
                tensor_model_parallel_size=tp, pipeline_model_parallel_size=pp,
                virtual_pipeline_model_parallel_size=vp if vp > 1 else None,
                context_parallel_size=cp, expert_model_parallel_size=ep,
                data_parallel_size=world // (tp * pp * cp), micro_batch_size=mbs,
                global_batch_size=gbs, recompute_granularity="full" if layers else None,
                recompute_num_layers=layers, sequence_parallel=sp,
                use_distributed_optimizer=space.use_distributed_optimizer,
            )  # fmt: skip


def default_global_batch_size(model: ModelShape, world_size: int) -> int:
    """The family's usual global batch (module docstring), rounded to world size × 2^j.

    World size × 2^j is divisible by DP × MBS for every MBS up to 2^j, whatever odd factors the
    GPU count has (160 GPUs at 2048 tokens: 2560, where 2048 fits no DP with a factor 5).
    """
    target = DEFAULT_GLOBAL_BATCH.get(model.kind) or LANGUAGE_BATCH_TOKENS / model.seq_length
    options = [world_size * 2**j for j in range(3, 24)]
    return min(options, key=lambda gbs: abs(math.log(gbs / target)))


def _rank_key(candidate: Candidate) -> tuple[bool, float, int, float]:
    """Fitting first; then throughput to 3 significant digits (closer is within the model's
    error), the simpler layout (fewer model-parallel ranks) and the smaller memory."""
    throughput = float(f"{candidate.samples_per_second:.3g}")
    layout = candidate.layout
    return (not candidate.fits, -throughput, layout.model_parallel_size, candidate.memory.total)


def _describe(layout: Layout, problems: list[str]) -> str:
    where = (
        f"TP={layout.tp} PP={layout.pp} CP={layout.cp} EP={layout.ep} MBS={layout.micro_batch_size}"
    )
    return f"{where}: {problems[0]}"


def _with_rank(candidate: Candidate, rank: int) -> Candidate:
    if not candidate.fits:
        return candidate
    return dataclasses.replace(candidate, rank=rank)


def _powers_of_two(limit: int) -> tuple[int, ...]:
    return tuple(2**i for i in range(limit.bit_length()) if 2**i <= limit)


def _divisors(n: int, limit: int) -> tuple[int, ...]:
    return tuple(d for d in range(1, min(n, limit) + 1) if n % d == 0)


def _context_sizes(model: ModelShape, world: int) -> tuple[int, ...]:
    if model.language is None:
        return (1,)
    most = max(model.seq_length // MIN_TOKENS_PER_CP_RANK, 1)
    return _powers_of_two(min(most, world))


def _micro_batch_sizes(model: ModelShape) -> tuple[int, ...]:
    most = max(8, MICRO_BATCH_TOKENS // model.seq_length)
    return _powers_of_two(most)


def _expert_sizes(model: ModelShape) -> tuple[int, ...]:
    experts = model.backbone.num_experts
    return _divisors(experts, experts) if experts else (1,)


def _recompute_grid(chunk: int) -> tuple[int, ...]:
    return tuple(sorted({0, chunk // 4, chunk // 2, 3 * chunk // 4, chunk}))
