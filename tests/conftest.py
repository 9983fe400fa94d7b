"""Test-wide setup: offline hubs, a private artifact root per test session, the torchvision shim first, the test
tiers (tests/README.md) and the fixtures shared by several test files."""

from __future__ import annotations

import os

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("MPLBACKEND", "Agg")

import pytest  # noqa: E402

import sparrow  # noqa: E402  (installs the torchvision shim before any test imports torchvision)

TIERS = ("unit", "regression", "notebooks")
# Every other test file is a unit tier file. A test may add a second tier explicitly (the notebook runs compare
# every recorded number, so they are also regression tests).
TIER_BY_FILE = {
    "test_notebooks.py": "notebooks",
    "test_browser_explorer.py": "notebooks",
    "test_paper_tables.py": "regression",
    "test_golden_boxes.py": "regression",
}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Give each test its file's tier, and skip ``gpu`` tests with the reason when CUDA is unavailable."""
    cuda = None
    for item in items:
        item.add_marker(TIER_BY_FILE.get(item.path.name, "unit"))
        if item.get_closest_marker("gpu") is not None:
            if cuda is None:
                import torch

                cuda = torch.cuda.is_available()
            if not cuda:
                item.add_marker(pytest.mark.skip(reason="gpu: torch.cuda is not available on this machine"))


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


@pytest.fixture(scope="module")
def one_thread():
    """One intra-op thread for a test module's tiny models: on a shared 2-core machine more threads only add
    contention (steps measured 10x slower). Use with ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
