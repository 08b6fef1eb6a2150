"""optica's tiny test models as searchable sizes: ``llama_tiny``, ``llava_tiny``, ``vit_tiny``.

Their shapes come from the models' own tiny configs (``LlamaConfigTiny``, ``LlavaConfigTiny``,
``ViTConfigTiny``) through each family's shape function, so what the runner launches is exactly
the model the unit tests build. They are what the CPU calibration and the Slurm runner test
train: ``optica autoconfig --model llama_tiny ... --run`` finishes in seconds on a laptop.
"""

from __future__ import annotations

from dataclasses import replace

from optica.autoconfig.catalog import Preset, register
from optica.autoconfig.shapes import ModelShape

SOURCE = "optica's tiny test configs (optica.models *ConfigTiny)"


def _llama() -> ModelShape:
    from optica.models import LlamaConfigTiny
    from optica.models.language.llama.parallelize import llama_shape

    return replace(llama_shape(LlamaConfigTiny()), name="llama_tiny")


def _llava() -> ModelShape:
    from optica.models import LlavaConfigTiny
    from optica.models.vlm.llava.parallelize import llava_shape

    return replace(llava_shape(LlavaConfigTiny()), name="llava_tiny")


def _vit() -> ModelShape:
    from optica.models import ViTConfigTiny
    from optica.models.vision.vit.parallelize import vit_shape

    return replace(vit_shape(ViTConfigTiny()), name="vit_tiny")


for _name, _make in (("llama_tiny", _llama), ("llava_tiny", _llava), ("vit_tiny", _vit)):
    register(Preset(name=_name, family="tiny", make=_make, source=SOURCE))
