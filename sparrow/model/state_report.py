"""Foreign state_dicts -> kit state_dicts: a declarative key map and the strict report of what it did.

One implementation serves every foreign layout: the released SPARROW/VideoGLaMM folders (:mod:`sparrow.convert`),
InternVideo2's stage-2 file (:mod:`sparrow.model.internvideo2`), the proposer's ``checkpoint-*`` folders
(:mod:`sparrow.model.deformable_detr`) and sam2 checkpoints seeding a backbone.

A :class:`KeyMap` is a list of :class:`Section` s, one per component. A section reads one input (a release folder,
the CLIP folder, the InternVideo2 file, the proposer folder), takes the keys under its ``source_prefix`` and renames
the rest of each key by the first :class:`Rule` whose regular expression matches it whole; the result is put under
``kit_prefix``. A rule may name a transform (a function of the tensor, supplied at apply time: loader quirks such as
the ``roi_fusion_gamma`` policy), and may be an alias rule: the second name of a tensor a release registers twice
(one module under two names), which must hold the same values as the first. With ``lora_aware``, a target that the
kit holds as a LoRA-wrapped Linear (``...base_layer.weight``) is found there.

The report is strict: a foreign key that no rule maps onto a kit key, a kit key that nothing fills, a shape that differs, two
different tensors mapped onto one key, are errors, unless the key matches an :class:`Allowance` of the map, which
gives the reason. :func:`load_strict` loads a module through a map and raises :class:`StateMismatch` (with the
printed report) before copying anything when the report is not clean.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import torch
from torch import nn

from sparrow.storage import DataError

Transform = Callable[[torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class Rule:
    """``pattern`` (a regex matched against the whole key after the section's source prefix) -> ``target`` (a
    ``re`` replacement template, e.g. ``r"net.\\1"``), optionally through the named transform. ``alias``: the key
    is a second name of a tensor that another key also fills; the two must be equal."""

    pattern: str
    target: str
    transform: str | None = None
    alias: bool = False


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

    def under(self, kit_prefix: str, source: str | None = None) -> KeyMap:
        """The same map for a kit module that sits under ``kit_prefix`` (and reads input ``source``)."""

        def move(section: Section) -> Section:
            return replace(section, kit_prefix=kit_prefix + section.kit_prefix, source=source or section.source)

        def allow(a: Allowance) -> Allowance:
            return a if a.source == "kit" else replace(a, source=source or a.source)

        missing = tuple(replace(a, pattern=re.escape(kit_prefix) + a.pattern) for a in self.allow_missing)
        return KeyMap(
            self.name,
            tuple(move(s) for s in self.sections),
            tuple(allow(a) for a in self.allow_unexpected),
            missing,
        )


def identity_map(name: str, source_prefix: str = "", source: str = "release") -> KeyMap:
    """Every key of ``source`` under ``source_prefix`` onto the kit key of the same name."""
    return KeyMap(name, (Section(name, source, source_prefix, ""),))


@dataclass
class Report:
    """What a key map did: counts per section, the kit keys filled, the aliases, the allowed leftovers with their
    reasons, and the errors."""

    keymap: str
    mapped: dict[str, int] = field(default_factory=dict)
    loaded: list[str] = field(default_factory=list)
    aliased: list[str] = field(default_factory=list)
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
            "aliased": len(self.aliased),
            "allowed_unexpected": self.allowed_unexpected,
            "allowed_missing": self.allowed_missing,
            "unexpected": self.unexpected,
            "missing": self.missing,
            "errors": self.errors,
            "notes": self.notes,
        }

    def format(self, limit: int = 10) -> str:
        lines = [f"key map {self.keymap}: {'OK' if self.ok else 'FAILED'} ({len(self.loaded)} tensors loaded)"]
        for name, count in self.mapped.items():
            lines.append(f"  mapped  {count:6d}  {name}")
        if self.aliased:
            lines.append(f"  alias   {len(self.aliased):6d}  second names of shared tensors (e.g. {self.aliased[0]})")
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

    __str__ = format


class StateMismatch(DataError):
    """A foreign state_dict that does not fit its module; the message is the report, ``report`` the report."""

    def __init__(self, message: str, report: Report):
        super().__init__(message)
        self.report = report


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
    origin: dict[str, tuple[str, bool]] = {}
    for source, state in inputs.items():
        sections = [s for s in keymap.sections if s.source == source]
        for key, tensor in state.items():
            name = f"{source}:{key}"
            target, section, rule = _target(key, sections, kit_state)
            if target is None or target not in kit_state:  # no rule, or a rename onto nothing the kit has
                reason = _allowed(key, keymap.allow_unexpected, source)
                if reason is None:
                    report.unexpected.append(name)
                else:
                    report.allowed_unexpected.setdefault(reason, []).append(name)
                continue
            if rule.transform is not None:
                if rule.transform not in transforms:
                    report.errors.append(f"{name}: transform {rule.transform!r} not supplied")
                    continue
                tensor = transforms[rule.transform](tensor)
            expected = kit_state[target]
            if tuple(tensor.shape) != tuple(expected.shape):
                report.errors.append(f"{name} -> {target}: shape {tuple(tensor.shape)} != kit {tuple(expected.shape)}")
                continue
            value = tensor.detach().to(expected.dtype)
            if target in out:
                first, first_alias = origin[target]
                if not (rule.alias or first_alias):
                    report.errors.append(f"{name} -> {target}: also mapped from {first}")
                elif not torch.equal(out[target], value):
                    report.errors.append(f"{name} -> {target}: holds different values from {first}, its other name")
                else:
                    report.aliased.append(name)
                continue
            out[target] = value
            origin[target] = (name, rule.alias)
            report.loaded.append(target)
            report.mapped[section.name] = report.mapped.get(section.name, 0) + 1
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
) -> tuple[str | None, Section | None, Rule | None]:
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
            return target, section, rule
    return None, None, None


def load_strict(
    module: nn.Module,
    keymap: KeyMap,
    inputs: Mapping[str, Mapping[str, torch.Tensor]],
    transforms: Mapping[str, Transform] | None = None,
) -> Report:
    """Load ``module`` through ``keymap`` (see :func:`apply_keymap`); an unclean report raises
    :class:`StateMismatch` before any tensor is copied."""
    mapped, report = apply_keymap(keymap, inputs, module.state_dict(), transforms)
    if not report.ok:
        raise StateMismatch(report.format(), report)
    module.load_state_dict(mapped, strict=not (report.allowed_missing))
    return report
