"""Each box of the paper's figure against its golden tensors (tests/golden/boxes.safetensors, smoke VideoGLaMM).

A failure names the box whose numbers moved. If the change is meant to move them, rewrite the file with
``python tests/golden/make_goldens.py`` and say in the commit which tensors moved and why.
"""

from __future__ import annotations

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

from golden.make_goldens import GOLDEN_FILE, HOST, PROFILE, compute, tolerance

GOLDEN = load_file(str(GOLDEN_FILE))

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def recomputed() -> dict[str, torch.Tensor]:
    return compute()


def test_the_golden_file_is_small_and_names_its_preset():
    assert GOLDEN_FILE.stat().st_size < 256 * 1024
    with safe_open(str(GOLDEN_FILE), "pt") as handle:
        meta = handle.metadata()
    assert meta["host"] == HOST and meta["profile"] == PROFILE


def test_every_box_has_its_goldens(recomputed):
    assert sorted(recomputed) == sorted(GOLDEN)
    boxes = {name.split("/")[0] for name in GOLDEN}
    assert boxes >= {
        "spatial_encoder",
        "temporal_encoder",
        "vl_adapter",
        "llm",
        "tokens",
        "lv_projector",
        "proposer",
        "selector",
        "roi_helper",
        "box_prior_filter",
        "pixel_decoder",
        "tsf",
        "losses",
        "forward",
    }


@pytest.mark.parametrize("name", sorted(GOLDEN))
def test_box_matches_its_golden(recomputed, name):
    atol, rtol, why = tolerance(name)
    torch.testing.assert_close(
        recomputed[name],
        GOLDEN[name],
        atol=atol,
        rtol=rtol,
        msg=lambda m: f"{name} moved ({why}; atol {atol:g}, rtol {rtol:g}):\n{m}",
    )
