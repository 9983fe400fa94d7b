"""Released checkpoints -> kit checkpoints: readers for the released layouts, declarative key maps with a strict
report, and the converter behind ``sparrow convert`` (docs/released-weights.md)."""

from sparrow.convert.converter import (
    GAMMA_POLICIES,
    ConversionError,
    Converted,
    ConvertOptions,
    convert,
    write_converted,
)
from sparrow.convert.keymap import Allowance, KeyMap, Report, Rule, Section, apply_keymap
from sparrow.convert.reader import ReleaseError, read_release, read_weights

__all__ = [
    "GAMMA_POLICIES",
    "Allowance",
    "ConversionError",
    "ConvertOptions",
    "Converted",
    "KeyMap",
    "ReleaseError",
    "Report",
    "Rule",
    "Section",
    "apply_keymap",
    "convert",
    "read_release",
    "read_weights",
    "write_converted",
]
