"""optica.autoconfig — how big a model, on which layout, before booking a cluster (seed 004).

* :func:`recommend_model_size` / :func:`estimate_training_days`: the budget C = 8·N·T.
* :func:`model_shape` / :func:`generate_base_config`: published sizes of GPT-3, Llama 2/3,
  Mistral, Mixtral, Gemma, Nemotron, LLaVA-1.5 and ViT as :class:`ModelShape`.
* :func:`count_parameters`, :func:`model_flops_per_step`, :func:`estimate_memory`,
  :func:`predict_step_time`: the analytic models.
* :class:`Layout`: what a parallel layout is and whether it is valid (shared with the trainer).
* :func:`search` / :class:`AutoConfigurator`: enumerate, prune by memory, rank by speed, write
  ``candidates.csv`` and the top-k configs; :meth:`AutoConfigurator.run` trains the top-k with
  limits (:class:`RunLimits`, :class:`Launch`) and writes ``results.csv``, ``failed.csv`` and a
  predicted-vs-measured plot.
"""

from optica.autoconfig.catalog import (
    families,
    generate_base_config,
    model_shape,
    preset_names,
)
from optica.autoconfig.configurator import AutoConfigurator, Measurements, Outputs
from optica.autoconfig.flops import model_flops_per_step, step_work_flops
from optica.autoconfig.hardware import GPUS, Cluster, Efficiency, GpuSpec, gpu_preset
from optica.autoconfig.layout import Layout, LayoutError, layout_problems
from optica.autoconfig.memory import MemoryEstimate, estimate_memory
from optica.autoconfig.params import count_parameters
from optica.autoconfig.runner import Launch, Outcome, RunLimits
from optica.autoconfig.search import Candidate, SearchResult, SearchSpace, search
from optica.autoconfig.shapes import (
    LanguageShape,
    ModelShape,
    ProjectorShape,
    TransformerShape,
    VisionShape,
)
from optica.autoconfig.sizing import estimate_training_days, recommend_model_size
from optica.autoconfig.timing import StepTime, predict_step_time
from optica.autoconfig.training import Lora, Training

__all__ = [
    "GPUS",
    "AutoConfigurator",
    "Candidate",
    "Cluster",
    "Efficiency",
    "GpuSpec",
    "LanguageShape",
    "Launch",
    "Layout",
    "LayoutError",
    "Lora",
    "Measurements",
    "MemoryEstimate",
    "ModelShape",
    "Outcome",
    "Outputs",
    "ProjectorShape",
    "RunLimits",
    "SearchResult",
    "SearchSpace",
    "StepTime",
    "Training",
    "TransformerShape",
    "VisionShape",
    "count_parameters",
    "estimate_memory",
    "estimate_training_days",
    "families",
    "generate_base_config",
    "gpu_preset",
    "layout_problems",
    "model_flops_per_step",
    "model_shape",
    "predict_step_time",
    "preset_names",
    "recommend_model_size",
    "search",
    "step_work_flops",
]
