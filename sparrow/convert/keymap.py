"""A declarative key map from released state_dicts to the kit's, and the strict report of what it did.

A :class:`KeyMap` is a list of :class:`Section` s, one per component. A section reads one input (the release
folder, the CLIP folder, the InternVideo2 file, the proposer folder), takes the keys under its ``source_prefix``
and renames the rest of each key by the first :class:`Rule` whose regular expression matches it whole; the result
is put under ``kit_prefix``. A rule may name a transform (a function of the tensor, supplied at apply time:
loader quirks such as the ``roi_fusion_gamma`` policy). With ``lora_aware``, a target that the kit holds as a
LoRA-wrapped Linear (``...base_layer.weight``) is found there.

The report is strict: a released key that no rule maps, a kit key that nothing fills, a shape that differs, two
keys mapped onto one, are errors, unless the key matches an :class:`Allowance` of the map, which gives the reason.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch

Transform = Callable[[torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class Rule:
    """``pattern`` (a regex matched against the whole key after the section's source prefix) -> ``target`` (a
    ``re`` replacement template, e.g. ``r"net.\\1"``), optionally through the named transform."""

    pattern: str
    target: str
    transform: str | None = None


IDENTITY = (Rule(r"(.+)", r"\1"),)


@dataclass(frozen=True)
class Section:
    """One component: the keys of ``source`` under ``source_prefix`` go under ``kit_prefix``."""

    name: str
    source: str
    source_prefix: str
    kit_prefix: str
    rules: tuple[Rule, ...] = IDENTITY
    lora_aware: bool = False


@dataclass(frozen=True)
class Allowance:
    """Keys (a regex matched against the whole key) that may stay unmapped, and why."""

    pattern: str
    reason: str
    source: str = "release"  # unexpected keys: which input; missing keys: "kit"


@dataclass(frozen=True)
class KeyMap:
    name: str
    sections: tuple[Section, ...]
    allow_unexpected: tuple[Allowance, ...] = ()
    allow_missing: tuple[Allowance, ...] = ()


@dataclass
class Report:
    """What a key map did: counts per section, the allowed leftovers with their reasons, and the errors."""

    keymap: str
    mapped: dict[str, int] = field(default_factory=dict)
    allowed_unexpected: dict[str, list[str]] = field(default_factory=dict)
    allowed_missing: dict[str, list[str]] = field(default_factory=dict)
    unexpected: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (self.unexpected or self.missing or self.errors)

    def to_json(self) -> dict[str, Any]:
        return {
            "keymap": self.keymap,
            "ok": self.ok,
            "mapped": self.mapped,
            "allowed_unexpected": self.allowed_unexpected,
            "allowed_missing": self.allowed_missing,
            "unexpected": self.unexpected,
            "missing": self.missing,
            "errors": self.errors,
            "notes": self.notes,
        }

    def format(self, limit: int = 10) -> str:
        lines = [f"key map {self.keymap}: {'OK' if self.ok else 'FAILED'}"]
        for name, count in self.mapped.items():
            lines.append(f"  mapped  {count:6d}  {name}")
        for title, groups in (("unused ", self.allowed_unexpected), ("kept   ", self.allowed_missing)):
            for reason, keys in groups.items():
                lines.append(f"  {title}{len(keys):6d}  {reason}  (e.g. {keys[0]})")
        for title, keys in (("UNEXPECTED", self.unexpected), ("MISSING", self.missing), ("ERROR", self.errors)):
            for key in keys[:limit]:
                lines.append(f"  {title}  {key}")
            if len(keys) > limit:
                lines.append(f"  {title}  ... {len(keys) - limit} more")
        lines.extend(f"  note  {note}" for note in self.notes)
        return "\n".join(lines)


def _base_layer(key: str) -> str:
    head, _, leaf = key.rpartition(".")
    return f"{head}.base_layer.{leaf}"


def _allowed(key: str, allowances: tuple[Allowance, ...], source: str) -> str | None:
    for allowance in allowances:
        if allowance.source == source and re.fullmatch(allowance.pattern, key):
            return allowance.reason
    return None


def apply_keymap(
    keymap: KeyMap,
    inputs: Mapping[str, Mapping[str, torch.Tensor]],
    kit_state: Mapping[str, torch.Tensor],
    transforms: Mapping[str, Transform] | None = None,
) -> tuple[dict[str, torch.Tensor], Report]:
    """(kit key -> tensor, report) for the named input state_dicts against the kit's ``state_dict()``.

    Tensors are cast to the kit tensor's dtype; nothing is loaded into a model here."""
    transforms = dict(transforms or {})
    report = Report(keymap.name)
    out: dict[str, torch.Tensor] = {}
    origin: dict[str, str] = {}
    for source, state in inputs.items():
        sections = [s for s in keymap.sections if s.source == source]
        for key, tensor in state.items():
            target, section = _target(key, sections, kit_state)
            if target is None:
                reason = _allowed(key, keymap.allow_unexpected, source)
                if reason is None:
                    report.unexpected.append(f"{source}:{key}")
                else:
                    report.allowed_unexpected.setdefault(reason, []).append(f"{source}:{key}")
                continue
            rule_transform = section[1]
            if rule_transform is not None:
                if rule_transform not in transforms:
                    report.errors.append(f"{source}:{key}: transform {rule_transform!r} not supplied")
                    continue
                tensor = transforms[rule_transform](tensor)
            if target not in kit_state:
                report.errors.append(f"{source}:{key} -> {target}: no such kit key")
                continue
            if target in out:
                report.errors.append(f"{source}:{key} -> {target}: also mapped from {origin[target]}")
                continue
            expected = kit_state[target]
            if tuple(tensor.shape) != tuple(expected.shape):
                report.errors.append(
                    f"{source}:{key} -> {target}: shape {tuple(tensor.shape)} != kit {tuple(expected.shape)}"
                )
                continue
            out[target] = tensor.detach().to(expected.dtype)
            origin[target] = f"{source}:{key}"
            report.mapped[section[0]] = report.mapped.get(section[0], 0) + 1
    for key in kit_state:
        if key in out:
            continue
        reason = _allowed(key, keymap.allow_missing, "kit")
        if reason is None:
            report.missing.append(key)
        else:
            report.allowed_missing.setdefault(reason, []).append(key)
    return out, report


def _target(
    key: str, sections: list[Section], kit_state: Mapping[str, torch.Tensor]
) -> tuple[str | None, tuple[str, str | None]]:
    for section in sections:
        if not key.startswith(section.source_prefix):
            continue
        rest = key[len(section.source_prefix) :]
        for rule in section.rules:
            match = re.fullmatch(rule.pattern, rest)
            if match is None:
                continue
            target = section.kit_prefix + match.expand(rule.target)
            if section.lora_aware and target not in kit_state and _base_layer(target) in kit_state:
                target = _base_layer(target)
            return target, (section.name, rule.transform)
    return None, ("", None)
