"""The three run profiles.

- ``smoke``: seconds per notebook; what CI runs.
- ``mini``: the embedded default (``make reproduce``): SPARROW-Mini at 128 px and tiny models trained on CPU.
- ``paper``: the paper's sizes and real component ids, loaded from local directories, for GPU users with data.

Each subsystem owns a config dataclass with a ``for_profile(name)`` constructor (e.g.
:class:`sparrow.data.synthetic.SynthConfig`); this module only names and validates profiles so that those
constructors agree on the spelling.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

ProfileName = Literal["smoke", "mini", "paper"]
PROFILES: tuple[str, ...] = ("smoke", "mini", "paper")


def check_profile(name: str) -> str:
    """Return ``name`` if it is a known profile, else raise a ValueError that lists the choices."""
    if name not in PROFILES:
        raise ValueError(f"unknown profile {name!r}; choose one of {', '.join(PROFILES)}")
    return name


@dataclass(frozen=True)
class RunContext:
    """What every notebook and CLI command runs under: a profile and a seed."""

    profile: str = "mini"
    seed: int = 0

    def __post_init__(self) -> None:
        check_profile(self.profile)
        if not isinstance(self.seed, int) or self.seed < 0:
            raise ValueError(f"seed must be a non-negative int, got {self.seed!r}")
