"""Test-wide setup: offline hubs, a private artifact root per test session, and the torchvision shim first."""

from __future__ import annotations

import os

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("MPLBACKEND", "Agg")

import sparrow  # noqa: E402  (installs the torchvision shim before any test imports torchvision)
import pytest  # noqa: E402


@pytest.fixture(scope="session", autouse=True)
def sparrow_home(tmp_path_factory) -> str:
    """Each test session (each xdist worker) gets its own SPARROW_HOME and results folder."""
    # Artifacts a person should look at after the run (browser screenshots) stay under the caller's artifact root.
    from sparrow.paths import home as caller_home

    os.environ.setdefault("SPARROW_TEST_ARTIFACTS", str(caller_home() / "test-artifacts"))
    home = tmp_path_factory.mktemp("sparrow_home")
    os.environ["SPARROW_HOME"] = str(home)
    os.environ["SPARROW_RESULTS"] = str(home / "results")
    return str(home)
