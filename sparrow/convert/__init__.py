"""Released checkpoints -> kit checkpoints: readers for the released layouts, the VideoGLaMM-host key maps (on the
key-map engine and strict report of :mod:`sparrow.model.state_report`), and the converter behind ``sparrow convert``
(docs/released-weights.md)."""

from sparrow.convert.converter import (
    GAMMA_POLICIES,
    ConversionError,
    Converted,
    ConvertOptions,
    convert,
    write_converted,
)
from sparrow.convert.reader import ReleaseError, read_release, read_weights
from sparrow.model.state_report import Allowance, KeyMap, Report, Rule, Section, apply_keymap

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
