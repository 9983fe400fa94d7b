"""Strict loading of a foreign state_dict into a kit module, with a report of every key.

A released checkpoint holds more than the module the kit builds from it (InternVideo2's text tower, the heads the
kit never runs). :func:`load_strict` loads the tensors whose names the module has, counts the keys that an
allow-list of patterns names as knowingly unused, and raises :class:`StateMismatch` on anything else: a missing key,
an unexpected key outside the allow-list, or a shape that differs. The report is printable (``str(report)``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import torch
from torch import nn

from sparrow.storage import DataError


class StateMismatch(DataError):
    """A state_dict that does not fit its module; the message names the source and the keys."""


@dataclass
class StateReport:
    """What :func:`load_strict` did: the loaded keys, the ignored ones (allow-listed), and any mismatch."""

    source: str
    loaded: list[str] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    mismatched: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (self.missing or self.unexpected or self.mismatched)

    def ignored_by_prefix(self, depth: int = 1) -> dict[str, int]:
        """Ignored keys counted per dotted prefix of ``depth`` parts."""
        counts: dict[str, int] = {}
        for key in self.ignored:
            prefix = ".".join(key.split(".")[:depth])
            counts[prefix] = counts.get(prefix, 0) + 1
        return counts

    def __str__(self) -> str:
        lines = [f"{self.source}: {len(self.loaded)} tensors loaded, {len(self.ignored)} ignored"]
        for prefix, n in sorted(self.ignored_by_prefix().items()):
            lines.append(f"  ignored {prefix}.* ({n})")
        for title, keys in (("missing", self.missing), ("unexpected", self.unexpected), ("shape", self.mismatched)):
            if keys:
                lines.append(f"  {title} ({len(keys)}): {_preview(keys)}")
        return "\n".join(lines)


def _preview(items: list[str], limit: int = 12) -> str:
    shown = ", ".join(items[:limit])
    return shown + (f", ... ({len(items) - limit} more)" if len(items) > limit else "")


def check_state(
    module: nn.Module, state: Mapping[str, torch.Tensor], ignore: Iterable[str] = (), source: str = "state_dict"
) -> StateReport:
    """The report of loading ``state`` into ``module``; ``ignore``: regular expressions (``re.match``) of keys
    that are knowingly unused."""
    patterns = [re.compile(p) for p in ignore]
    expected = module.state_dict()
    report = StateReport(source)
    for key in sorted(state):
        if key in expected:
            if tuple(state[key].shape) != tuple(expected[key].shape):
                report.mismatched.append(f"{key} {tuple(state[key].shape)} != {tuple(expected[key].shape)}")
            else:
                report.loaded.append(key)
        elif any(p.match(key) for p in patterns):
            report.ignored.append(key)
        else:
            report.unexpected.append(key)
    report.missing = sorted(set(expected) - set(state))
    return report


def load_strict(
    module: nn.Module, state: Mapping[str, torch.Tensor], ignore: Iterable[str] = (), source: str = "state_dict"
) -> StateReport:
    """Load ``state`` into ``module`` (see :func:`check_state`); a mismatch raises :class:`StateMismatch` with the
    report, before any tensor is copied."""
    report = check_state(module, state, ignore, source)
    if not report.ok:
        raise StateMismatch(str(report))
    module.load_state_dict({k: state[k] for k in report.loaded}, strict=True)
    return report
