"""What data parallelism holds on a rank, as optica's trainer runs it (FSDP2, SPEC §4).

``use_distributed_optimizer`` is FSDP2's ``fully_shard`` (ZeRO-3) over the data × context ranks
(``optica.models.modules.parallel.apply_data_parallel``): each rank keeps 1/d of every parameter
in fp32, 1/d of its gradient and 1/d of the Adam moments — 16/d bytes per trained parameter, 4/d
per frozen one, in either precision (under ``bf16-mixed`` FSDP2's ``param_dtype`` is bf16: the
copies it gathers for compute are bf16, the fp32 shards are the master weights). Without it,
FSDP2's ``replicate`` (DDP) keeps whole states: Megatron's accounting in ``memory.state_bytes``.

Each decoder (and vision) layer is its own FSDP group and the root module holds the rest
(embeddings, final norm, output layer; a VLM's projector and vision embeddings). What is gathered
on top of the shards, measured on CPU for the calibration Llama (the module docstring of
``tests/integration/autoconfig/test_calibration.py``):

* **during the forward and backward passes**: the root's parameters, gathered once and kept
  until the backward pass ends (FSDP2 does not reshard the root after forward), and two layers'
  (the one computing and the one prefetched), in the compute dtype;
* **at the end of the backward pass**: the root's parameters still gathered, their unsharded
  gradients (compute dtype) and the flat fp32 copy FSDP2 reduce-scatters (or, for DDP,
  all-reduces), next to every layer's gradient shard already reduced.

With one rank (d = 1) nothing is wrapped: no copies, no reduction buffers.
"""

from __future__ import annotations

from optica.autoconfig import params as P
from optica.autoconfig.layout import Layout
from optica.autoconfig.pipeline import Stage, StageParams, backbone_trained, lora_layer_params
from optica.autoconfig.shapes import ModelShape
from optica.autoconfig.training import Training

REDUCE_BYTES = 4  # gradients are reduced in fp32 (``reduce_dtype``) in both precisions


def data_parallel_degree(layout: Layout) -> int:
    """The ranks FSDP2/DDP spans: data × context."""
    return layout.dp * layout.cp


def fully_sharded(layout: Layout) -> bool:
    """Whether FSDP2 shards the states (the distributed optimizer over more than one rank)."""
    return layout.use_distributed_optimizer and data_parallel_degree(layout) > 1


def sharded_state_bytes(
    trained: float, experts: float, frozen: float, layout: Layout
) -> tuple[float, float, float]:
    """(weights, gradients, optimizer) bytes of FSDP2's shards on one rank (module docstring).
    Expert weights are sharded over the data ranks that do not already split the experts."""
    shard = data_parallel_degree(layout)
    expert_shard = max(shard // layout.ep, 1)
    weights = 4 * ((trained + frozen) / shard + experts / expert_shard)
    gradients = 4 * (trained / shard + experts / expert_shard)
    return weights, gradients, 2 * gradients


def gathered_bytes(
    model: ModelShape, layout: Layout, stage: Stage, params: StageParams, training: Training
) -> tuple[float, float, float]:
    """(held through the forward and backward passes, held at the end of the backward pass,
    the root's share of the gradient shards) on one rank of ``stage`` (module docstring)."""
    if data_parallel_degree(layout) == 1:
        return 0.0, 0.0, 0.0
    compute = training.activation_bytes  # bf16 copies under bf16-mixed, fp32 otherwise
    _, largest, root_all = group_parameters(model, layout, stage, params, training)
    on_rank = _per_rank(params.trainable, layout) + params.adapters
    root_trained = max(on_rank - _trained_layers(model, layout, stage, training), 0.0)
    if not fully_sharded(layout):  # DDP: whole parameters; one group's gradients reduced
        return 0.0, root_trained * (compute + REDUCE_BYTES), 0.0
    during = compute * (root_all + 2 * largest)
    end = compute * (root_all + root_trained) + REDUCE_BYTES * root_trained
    root_shard = 4 * root_trained / data_parallel_degree(layout)
    return during, end, root_shard


def group_parameters(
    model: ModelShape, layout: Layout, stage: Stage, params: StageParams, training: Training
) -> tuple[float, float, float]:
    """(parameters in the stage's per-layer groups, in the largest of them, in the root group)
    on one rank, before data-parallel sharding."""
    layers, largest = _wrapped_layers(model, layout, stage, training)
    on_rank = (
        _per_rank(params.trainable, layout) + params.adapters + _per_rank(params.frozen, layout)
    )
    return layers, largest, on_rank - layers


def _per_rank(count: P.ParamCount, layout: Layout) -> float:
    return count.per_rank(tp=layout.tp, ep=layout.ep)


def _layer(model: ModelShape, layout: Layout, training: Training) -> float:
    backbone = model.backbone
    adapters = 0.0
    if training.lora is not None and model.language is not None:
        adapters = lora_layer_params(model.language, training.lora)
    return _per_rank(P.layer_params(backbone), layout) + adapters


def _wrapped_layers(
    model: ModelShape, layout: Layout, stage: Stage, training: Training
) -> tuple[float, float]:
    """(parameters in the stage's per-layer FSDP groups, the largest group) on one rank."""
    layer = _layer(model, layout, training)
    total, largest = layer * stage.layers, layer
    if stage.first and model.vision is not None and model.language is not None:
        vision = _per_rank(P.layer_params(model.vision), layout)
        total += vision * model.vision.num_layers
        largest = max(largest, vision)
    return total, largest


def _trained_layers(model: ModelShape, layout: Layout, stage: Stage, training: Training) -> float:
    """Trained parameters inside the stage's layer groups (their gradients are reduced as the
    backward pass goes, before the root's)."""
    trained = 0.0
    if backbone_trained(model, training):
        trained += _per_rank(P.layer_params(model.backbone), layout) * stage.layers
    elif training.lora is not None and model.language is not None:
        trained += lora_layer_params(model.language, training.lora) * stage.layers
    vlm = model.vision is not None and model.language is not None
    if stage.first and vlm and not training.vision_frozen(model.kind):
        vision = model.vision
        trained += _per_rank(P.layer_params(vision), layout) * vision.num_layers  # type: ignore[union-attr]
    return trained
