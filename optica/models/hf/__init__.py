"""Hugging Face interop: declarative key maps, the adapter contract, checkpoint files."""

from optica.models.hf.adapter import HFAdapter
from optica.models.hf.convert import load_hf, save_hf
from optica.models.hf.io import read_hf_config, read_hf_state_dict, write_hf_checkpoint
from optica.models.hf.keymap import KeyMap, Rule
from optica.models.hf.rope import rope_from_hf, rope_to_hf
from optica.models.hf.transforms import IDENTITY, Concat, FuseQKV, Identity, PadVocab, Transform

__all__ = [
    "IDENTITY",
    "Concat",
    "FuseQKV",
    "HFAdapter",
    "Identity",
    "KeyMap",
    "PadVocab",
    "Rule",
    "Transform",
    "load_hf",
    "read_hf_config",
    "read_hf_state_dict",
    "rope_from_hf",
    "rope_to_hf",
    "save_hf",
    "write_hf_checkpoint",
]
