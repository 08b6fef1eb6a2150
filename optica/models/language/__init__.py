"""Language-model families; importing this package registers them."""

from optica.models.language import llama, mistral

__all__ = ["llama", "mistral"]
