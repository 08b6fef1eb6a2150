"""Which targets a config file may import.

Loading a config calls the functions it names, so a config file could run anything. By default
only targets under trusted package prefixes load; anything else is refused with one line saying
how to allow it (``allow=`` in Python, ``--allow-import`` on the CLI, ``OPTICA_ALLOW_IMPORTS``).
A few entry points inside trusted packages that load or compile code are refused even so.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from optica.run.errors import ConfigError, ImportNotAllowedError, did_you_mean

DEFAULT_PREFIXES: tuple[str, ...] = (
    "optica",
    "torch",
    "lightning",
    "lightning_fabric",
    "pytorch_lightning",
    "transformers",
    "tokenizers",
    "torchao",
    "megatron.energon",
)
# Plain values written as calls (see optica.run.serialize), allowed by exact name only.
EXACT_NAMES: frozenset[str] = frozenset(
    {"builtins.tuple", "builtins.dict", "builtins.set", "builtins.frozenset"}
    | {
        f"pathlib.{name}"
        for name in ("Path", "PosixPath", "WindowsPath", "PurePath", "PurePosixPath")
    }
    | {"pathlib.PureWindowsPath"}
)
# Trusted packages still hold ways to load pickles, compile or fetch code.
DENIED_PREFIXES: tuple[str, ...] = (
    "torch.hub",
    "torch.load",
    "torch.serialization",
    "torch.package",
    "torch.utils.cpp_extension",
    "torch.jit.load",
    "torch.ops.load_library",
    "torch.classes.load_library",
    "transformers.dynamic_module_utils",
)
_user_prefixes: list[str] = []


def allow_imports(*prefixes: str) -> None:
    """Allows targets under these module prefixes for the rest of this process."""
    _user_prefixes.extend(p.strip() for p in prefixes if p.strip())


def _env_prefixes() -> list[str]:
    return [p.strip() for p in os.environ.get("OPTICA_ALLOW_IMPORTS", "").split(",") if p.strip()]


def _under(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


@dataclass(frozen=True)
class Policy:
    """The allowlist in force for one load: defaults + process-wide + ``extra``."""

    extra: tuple[str, ...] = ()

    def prefixes(self) -> list[str]:
        return [*DEFAULT_PREFIXES, *_user_prefixes, *_env_prefixes(), *self.extra]

    def check_name(self, name: str) -> None:
        if not isinstance(name, str) or not name.replace(".", "").replace("_", "").isalnum():
            raise ConfigError(f"_target_ must be a dotted name, got {name!r}")
        if name in EXACT_NAMES:
            return
        if any(_under(name, p) for p in DENIED_PREFIXES):
            raise ImportNotAllowedError(f"refusing to import '{name}': it loads or runs code")
        if any(part.startswith("_") for part in name.split(".")):
            raise ImportNotAllowedError(f"refusing to import private name '{name}'")
        if not any(_under(name, p) for p in self.prefixes()):
            top = name.split(".")[0]
            raise ImportNotAllowedError(
                f"refusing to import '{name}': '{top}' is not on the import allowlist "
                f"(allow it with --allow-import {top}, allow=('{top}',) or OPTICA_ALLOW_IMPORTS)"
            )

    def import_object(self, name: str) -> Any:
        """Imports ``a.b.C`` (module ``a.b``, attribute ``C``) after :meth:`check_name`."""
        self.check_name(name)
        return import_dotted(name)

    def check_arguments(self, name: str, kwargs: Mapping[str, Any], where: str = "") -> None:
        if kwargs.get("trust_remote_code") is True and not self.extra:
            raise ImportNotAllowedError(
                f"{where}refusing {name}(trust_remote_code=True) from a config file "
                "(pass allow=... to opt in)"
            )


def import_dotted(name: str) -> Any:
    """Imports the longest importable module prefix of ``name``, then follows attributes."""
    parts = name.split(".")
    for split in range(len(parts), 0, -1):
        module_name = ".".join(parts[:split])
        try:
            obj = importlib.import_module(module_name)
        except ModuleNotFoundError as err:
            if err.name and not module_name.startswith(err.name):
                raise  # the module exists but one of its own imports is missing
            continue
        return _follow(obj, parts[split:], name)
    raise ConfigError(f"cannot import '{name}': no module '{parts[0]}'")


def _follow(obj: Any, attributes: Iterable[str], name: str) -> Any:
    for attribute in attributes:
        if not hasattr(obj, attribute):
            hint = did_you_mean(attribute, [a for a in dir(obj) if not a.startswith("_")])
            raise ConfigError(f"cannot import '{name}': no attribute '{attribute}'{hint}")
        obj = getattr(obj, attribute)
    return obj
