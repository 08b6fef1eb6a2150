"""Declarative key maps between Hugging Face and optica state dicts.

A family lists :class:`Rule` s — an optica key, the HF key(s) it comes from, and a transform — with
a ``{layer}`` placeholder expanded per layer. HF keys are written in one canonical spelling;
``prefix_aliases`` name the other spellings seen in the wild (``language_model.model.`` of old
llava-hf files, ``model.language_model.`` of transformers 5.x), which are rewritten to the
canonical one before matching. Export always writes the canonical spelling.

Conversion checks everything before failing, then raises one ``CheckpointError`` naming every
missing, unexpected and mis-shaped tensor (per-layer keys folded as ``layers.{0-31}``).
"""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace

import torch

from optica.models.hf.problems import Problems
from optica.models.hf.transforms import IDENTITY, Transform


@dataclass(frozen=True)
class Rule:
    """``optica`` ← ``transform.to_optica(hf...)``; keys may contain ``{layer}``."""

    optica: str
    hf: tuple[str, ...]
    transform: Transform = IDENTITY


@dataclass(frozen=True)
class KeyMap:
    """Expanded rules plus the HF spellings they accept.

    Args:
        rules: Rules without placeholders (see :meth:`from_templates`).
        prefix_aliases: Canonical HF prefix → other prefixes meaning the same thing.
        ignore: Glob patterns of canonical HF keys to skip on import (buffers such as
            ``*.rotary_emb.inv_freq``, a duplicate tied ``lm_head.weight``).
    """

    rules: tuple[Rule, ...]
    prefix_aliases: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    ignore: tuple[str, ...] = ()

    @classmethod
    def from_templates(
        cls,
        rules: Sequence[Rule],
        *,
        num_layers: int,
        prefix_aliases: Mapping[str, tuple[str, ...]] | None = None,
        ignore: Sequence[str] = (),
    ) -> KeyMap:
        """Expands ``{layer}`` in each rule for layers ``0..num_layers-1``."""
        expanded: list[Rule] = []
        for rule in rules:
            if "{layer}" in rule.optica:
                expanded += [_fill(rule, layer) for layer in range(num_layers)]
            else:
                expanded.append(rule)
        return cls(tuple(expanded), dict(prefix_aliases or {}), tuple(ignore))

    def rebased(
        self,
        *,
        optica_prefix: str = "",
        hf_prefixes: Mapping[str, str] | None = None,
        prefix_aliases: Mapping[str, tuple[str, ...]] | None = None,
    ) -> KeyMap:
        """This map nested in a bigger model: optica keys gain ``optica_prefix``, canonical HF
        prefixes are renamed by ``hf_prefixes`` (old → new), and the aliases are replaced."""
        rename = dict(hf_prefixes or {})
        rules = tuple(
            replace(r, optica=optica_prefix + r.optica, hf=tuple(_rename(k, rename) for k in r.hf))
            for r in self.rules
        )
        ignore = tuple(_rename(pattern, rename) for pattern in self.ignore)
        aliases = self.prefix_aliases if prefix_aliases is None else prefix_aliases
        return KeyMap(rules, dict(aliases), ignore)

    def merged(self, *others: KeyMap) -> KeyMap:
        """One map covering this one and ``others`` (e.g. a VLM's towers)."""
        maps = (self, *others)
        aliases = {k: v for m in maps for k, v in m.prefix_aliases.items()}
        rules = tuple(r for m in maps for r in m.rules)
        return KeyMap(rules, aliases, tuple(p for m in maps for p in m.ignore))

    def to_optica(
        self,
        hf_state: Mapping[str, torch.Tensor],
        expected: Mapping[str, torch.Size],
        *,
        dtype: torch.dtype | None = None,
        where: str = "checkpoint",
    ) -> dict[str, torch.Tensor]:
        """Converts an HF state dict into optica keys, checking it against ``expected``.

        Args:
            hf_state: HF tensors, in any accepted spelling; read one rule at a time, so a lazy
                mapping (``read_hf_state_dict``) keeps peak memory at one model copy.
            expected: The model's optica key → shape (``model.state_dict()`` on meta will do).
            dtype: Cast floating-point tensors to this dtype.
            where: Names the source in error messages (a path).

        Raises:
            CheckpointError: Listing every missing, unexpected and mis-shaped tensor.
        """
        problems = Problems()
        canonical = self._canonicalize(hf_state, problems)
        for rule in self.rules:
            _check(rule, hf_state, canonical, expected, problems)
        used = {key for rule in self.rules for key in rule.hf}
        for key, original in canonical.items():
            if key not in used and not any(fnmatch.fnmatchcase(key, p) for p in self.ignore):
                problems.unexpected.append(original)
        problems.unmapped.extend(sorted(set(expected) - {rule.optica for rule in self.rules}))
        problems.raise_if_any(f"{where} does not fit the model")
        out: dict[str, torch.Tensor] = {}
        for rule in self.rules:  # NOTE: only after every check passed: no tensor read in vain
            tensors = [hf_state[canonical[key]] for key in rule.hf]
            out[rule.optica] = _cast(rule.transform.to_optica(tensors), dtype)
        return out

    def to_hf(
        self, state: Mapping[str, torch.Tensor], *, dtype: torch.dtype | None = None
    ) -> dict[str, torch.Tensor]:
        """Converts an optica state dict to canonical HF keys (the inverse of :meth:`to_optica`).

        Raises:
            CheckpointError: When a tensor has no HF name (e.g. unmerged LoRA weights) or is absent.
        """
        problems = Problems()
        out: dict[str, torch.Tensor] = {}
        for rule in self.rules:
            if rule.optica not in state:
                problems.missing.append(rule.optica)
                continue
            for key, tensor in zip(rule.hf, rule.transform.to_hf(state[rule.optica]), strict=True):
                out[key] = _cast(tensor, dtype)
        problems.unexpected.extend(sorted(set(state) - {rule.optica for rule in self.rules}))
        problems.raise_if_any("model cannot be exported (merge LoRA adapters first?)")
        return out

    def _canonicalize(
        self, hf_state: Mapping[str, torch.Tensor], problems: Problems
    ) -> dict[str, str]:
        """Canonical key → the key as spelled in the checkpoint."""
        pairs = [(alt, canon) for canon, alts in self.prefix_aliases.items() for alt in alts]
        pairs += [(canon, canon) for canon in self.prefix_aliases]
        pairs.sort(key=lambda pair: len(pair[0]), reverse=True)
        out: dict[str, str] = {}
        for key in hf_state:
            alt, canon = next(((a, c) for a, c in pairs if key.startswith(a)), ("", ""))
            name = canon + key[len(alt) :]
            if name in out:
                problems.duplicate.append(f"{out[name]} / {key}")
            out[name] = key
        return out


def _check(
    rule: Rule,
    hf_state: Mapping[str, torch.Tensor],
    canonical: Mapping[str, str],
    expected: Mapping[str, torch.Size],
    problems: Problems,
) -> None:
    """Records whether the rule's HF tensors are present and shaped as the model needs."""
    if rule.optica not in expected:
        problems.unknown_targets.append(rule.optica)
        return
    problems.missing.extend(key for key in rule.hf if key not in canonical)
    meta = torch.empty(expected[rule.optica], device="meta")
    wanted = [tuple(t.shape) for t in rule.transform.to_hf(meta)]
    for key, want in zip(rule.hf, wanted, strict=True):
        if key in canonical and (got := _shape(hf_state, canonical[key])) != want:
            problems.misshaped.append(f"{canonical[key]} {list(got)} (expected {list(want)})")


def _shape(hf_state: Mapping[str, torch.Tensor], key: str) -> tuple[int, ...]:
    """A tensor's shape, from the file header when the mapping can tell it without reading."""
    shape_of = getattr(hf_state, "shape", None)
    return tuple(shape_of(key)) if callable(shape_of) else tuple(hf_state[key].shape)


def _fill(rule: Rule, layer: int) -> Rule:
    return replace(
        rule,
        optica=rule.optica.format(layer=layer),
        hf=tuple(key.format(layer=layer) for key in rule.hf),
    )


def _rename(key: str, prefixes: Mapping[str, str]) -> str:
    """Renames the longest matching prefix of ``key``."""
    for old in sorted(prefixes, key=len, reverse=True):
        if key.startswith(old):
            return prefixes[old] + key[len(old) :]
    return key


def _cast(tensor: torch.Tensor, dtype: torch.dtype | None) -> torch.Tensor:
    if dtype is None or not tensor.is_floating_point():
        return tensor
    return tensor.to(dtype)
