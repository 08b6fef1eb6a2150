"""optica.data — multimodal data: LLaVA conversations, templates, images, packing, synthetic sets.

Seeds 000 and 001; SPEC §3. The Lightning DataModules import lazily (``lightning`` is heavy and
``optica data inspect`` does not need it).
"""

from __future__ import annotations

import importlib

from optica.data.collate import Collator
from optica.data.config import (
    IGNORE_INDEX,
    IMAGE_TOKEN_ID,
    BaseConversationTemplateConfig,
    ImageDataConfig,
    ImageToken,
    LLaVATemplateConfig,
    MultiModalSampleConfig,
    VisionGeometry,
)
from optica.data.conversation import Conversation, Message, parse_conversation
from optica.data.encoding import SegmentTokenizer
from optica.data.errors import BadSampleError, DataConfigError, DataError, DataReport, Problem
from optica.data.images import (
    ImageProcessor,
    clip_processor,
    expand_to_square,
    siglip_processor,
    vit_processor,
)
from optica.data.index import ConversationIndex
from optica.data.llava import LlavaDataset
from optica.data.packing import PackedDataset, first_fit_decreasing
from optica.data.sample import Sample, SampleEncoder
from optica.data.sampler import Progress, ResumableBatchSampler
from optica.data.shapes import ShapesConfig, shapes_sample
from optica.data.templates import TEMPLATES, ConversationTemplate, get_template

_LAZY = {
    "OpticaDataModule": "optica.data.module",
    "NevaLazyDataModule": "optica.data.neva",
    "ShapesDataModule": "optica.data.synthetic",
    "ShapesClassificationDataModule": "optica.data.synthetic",
    "MockDataModule": "optica.data.synthetic",
    "shapes_tokenizer": "optica.data.synthetic",
}


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'optica.data' has no attribute {name!r}")


__all__ = [
    "IGNORE_INDEX",
    "IMAGE_TOKEN_ID",
    "TEMPLATES",
    "BadSampleError",
    "BaseConversationTemplateConfig",
    "Collator",
    "Conversation",
    "ConversationIndex",
    "ConversationTemplate",
    "DataConfigError",
    "DataError",
    "DataReport",
    "ImageDataConfig",
    "ImageProcessor",
    "ImageToken",
    "LLaVATemplateConfig",
    "LlavaDataset",
    "Message",
    "MockDataModule",
    "MultiModalSampleConfig",
    "NevaLazyDataModule",
    "OpticaDataModule",
    "PackedDataset",
    "Problem",
    "Progress",
    "ResumableBatchSampler",
    "Sample",
    "SampleEncoder",
    "SegmentTokenizer",
    "ShapesClassificationDataModule",
    "ShapesConfig",
    "ShapesDataModule",
    "VisionGeometry",
    "clip_processor",
    "expand_to_square",
    "first_fit_decreasing",
    "get_template",
    "parse_conversation",
    "shapes_sample",
    "shapes_tokenizer",
    "siglip_processor",
    "vit_processor",
]
