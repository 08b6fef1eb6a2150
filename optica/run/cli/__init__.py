"""The CLI framework: ``@run.cli.entrypoint`` commands and ``@run.cli.factory`` named configs."""

from optica.run.cli.registry import entrypoint, factory

__all__ = ["entrypoint", "factory"]
