"""Notebook 05 in a real browser: JupyterLab on loopback, headless Debian Chromium driven by Playwright.

The test copies notebook 05 into a temporary server root with its parameters pointing at a small demo set (two
prediction folders, TSF tracks), opens it in JupyterLab, runs it with Run > Run All Cells, moves the frame slider
and checks on screenshots of the explorer's image that the frame changed and that the ground-truth and
prediction colours are on screen. Screenshots are kept under ``$SPARROW_TEST_ARTIFACTS/browser_explorer`` (default
``$SPARROW_HOME/test-artifacts``, i.e. ``./artifacts/test-artifacts`` under ``make test``; never in git).

Needs the Debian ``chromium`` package (``apt-get install -y chromium``) and the ``playwright`` Python package; no
browser is ever downloaded (Playwright is pointed at ``/usr/bin/chromium``). Skipped, with the reason, without them.
"""

from __future__ import annotations

import io
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from sparrow.paths import home
from sparrow.viz.overlay import GT_COLOR, pred_color

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "05_mask_explorer.ipynb"

pytestmark = pytest.mark.browser


def _require_browser():
    if not CHROMIUM.is_file():
        pytest.skip(f"{CHROMIUM} not found: install the Debian package (apt-get install -y chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("the playwright Python package is not installed (pip install playwright; no browser download)")
    return sync_playwright


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _prepare_root(root: Path, demo) -> Path:
    """A copy of notebook 05 whose parameters cell points at the demo set (the rest is untouched)."""
    nb = json.loads(NOTEBOOK.read_text(encoding="utf-8"))
    params = next(c for c in nb["cells"] if "parameters" in c.get("metadata", {}).get("tags", []))
    params["source"] = "\n".join(
        [
            'profile = "smoke"',
            "seed = 0",
            f"curated_root = {str(demo.curated)!r}",
            f"baseline_predictions = {str(demo.baseline)!r}",
            f"sparrow_predictions = {str(demo.sparrow)!r}",
            f"tsf_tracks = {str(demo.tracks)!r}",
            'video_id = "demo/video0"',
            'expression_id = "demo/video0/0"',
        ]
    )
    root.mkdir(parents=True)
    path = root / NOTEBOOK.name
    path.write_text(json.dumps(nb, indent=1), encoding="utf-8")
    return path


def _start_lab(root: Path, port: int, token: str, scratch: Path) -> subprocess.Popen:
    env = dict(os.environ)
    env.pop("MPLBACKEND", None)
    # A private config/runtime/workspace so no user setting or saved layout changes what the page shows.
    for name in ("JUPYTER_CONFIG_DIR", "JUPYTER_RUNTIME_DIR", "JUPYTERLAB_WORKSPACES_DIR", "JUPYTERLAB_SETTINGS_DIR"):
        env[name] = str(scratch / name.lower())
    # No news prompt: it would cover part of the page (and the machine may have no internet anyway).
    news = (
        scratch / "jupyterlab_settings_dir" / "@jupyterlab" / "apputils-extension" / "notification.jupyterlab-settings"
    )
    news.parent.mkdir(parents=True, exist_ok=True)
    news.write_text(json.dumps({"fetchNews": "false"}), encoding="utf-8")
    cmd = [
        sys.executable,
        "-m",
        "jupyterlab",
        "--no-browser",
        "--ip=127.0.0.1",
        f"--port={port}",
        "--port-retries=0",
        f"--IdentityProvider.token={token}",
        f"--ServerApp.root_dir={root}",
        "--LabApp.news_url=None",
        "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
        "--LabApp.extension_manager=readonly",
        "--ServerApp.terminals_enabled=False",
    ]
    if hasattr(os, "geteuid") and os.geteuid() == 0:  # CI containers run as root
        cmd.append("--allow-root")
    log = open(scratch / "jupyterlab.log", "wb")
    return subprocess.Popen(cmd, cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)


def _wait_for_server(proc: subprocess.Popen, port: int, token: str, log: Path, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    url = f"http://127.0.0.1:{port}/api/status?token={token}"
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"JupyterLab exited with {proc.returncode}:\n{log.read_text(errors='replace')[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.3)
    raise TimeoutError(f"JupyterLab did not answer on port {port} within {timeout:.0f} s")


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=5)


def _pixels(png: bytes) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).astype(int)


def _near(image: np.ndarray, color, tol: int = 12) -> int:
    return int((np.abs(image - np.asarray(color)).max(axis=2) <= tol).sum())


def _frame_slider(page):
    return page.locator(".widget-slider", has=page.locator("label", has_text="frame")).first


def _drive(page, port: int, token: str, name: str, results: Path, artifacts: Path) -> tuple[bytes, bytes, str]:
    """Open the notebook, Run All, wait for the recorded results, move the slider; two screenshots of the image."""
    page.goto(f"http://127.0.0.1:{port}/lab/tree/{name}?token={token}")
    page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=60_000)
    # Run All before the kernel is up makes JupyterLab ask which kernel to use; wait for it instead.
    page.locator(".jp-StatusBar-TextItem", has_text="| Idle").first.wait_for(timeout=60_000)
    page.locator(".lm-MenuBar-itemLabel", has_text="Run").first.click()
    page.get_by_role("menuitem", name="Run All Cells", exact=True).click()
    image = page.locator("img.widget-image").first
    image.wait_for(state="visible", timeout=60_000)
    deadline = time.monotonic() + 60
    while not results.is_file() and time.monotonic() < deadline:
        time.sleep(0.3)
    assert results.is_file(), "notebook 05 did not finish (no results file recorded)"
    image.scroll_into_view_if_needed()
    first_src = image.get_attribute("src")
    before = image.screenshot(path=str(artifacts / "frame_before.png"))
    page.screenshot(path=str(artifacts / "page_before.png"), full_page=True)
    handle = _frame_slider(page).locator(".noUi-handle").first
    handle.focus()
    for _ in range(4):
        handle.press("ArrowRight")
    deadline = time.monotonic() + 20
    while image.get_attribute("src") == first_src and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(0.3)
    after = image.screenshot(path=str(artifacts / "frame_after.png"))
    page.screenshot(path=str(artifacts / "page_after.png"), full_page=True)
    readout = _frame_slider(page).locator(".widget-readout").first
    moved = readout.inner_text()
    # Play is linked to the slider in the browser only (jslink), so only a browser can check it.
    play = page.locator(".widget-play button").first
    play.click()
    deadline = time.monotonic() + 15
    while readout.inner_text() == moved and time.monotonic() < deadline:
        time.sleep(0.1)
    played = readout.inner_text()
    page.locator(".widget-play button").nth(1).click()
    assert played != moved, "the play button did not advance the frame slider"
    return before, after, moved


def test_notebook_05_explorer_in_jupyterlab(tmp_path: Path) -> None:
    sync_playwright = _require_browser()
    from sparrow.viz.demo import build_demo_set

    demo = build_demo_set(tmp_path / "demo", height=48, width=64, num_frames=8)
    root = tmp_path / "lab"
    notebook = _prepare_root(root, demo)
    artifacts = Path(os.environ.get("SPARROW_TEST_ARTIFACTS", home() / "test-artifacts")) / "browser_explorer"
    artifacts.mkdir(parents=True, exist_ok=True)
    results = Path(os.environ.get("SPARROW_RESULTS", home() / "results")) / "smoke" / "05_mask_explorer.json"
    results.unlink(missing_ok=True)
    port, token = _free_port(), os.urandom(16).hex()
    scratch = tmp_path / "jupyter"
    scratch.mkdir()
    proc = _start_lab(root, port, token, scratch)
    try:
        _wait_for_server(proc, port, token, scratch / "jupyterlab.log")
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
            try:
                page = browser.new_page(viewport={"width": 1500, "height": 1100})
                try:
                    before, after, slider_text = _drive(page, port, token, notebook.name, results, artifacts)
                except Exception:
                    page.screenshot(path=str(artifacts / "failure.png"), full_page=True)
                    raise
            finally:
                browser.close()
    finally:
        _stop(proc)

    recorded = {m["name"]: m["value"] for m in json.loads(results.read_text())["metrics"]}
    assert recorded["browsable/expressions"] == 6 and "shown_example/SPARROW/J" in recorded
    first, second = _pixels(before), _pixels(after)
    assert first.shape == second.shape and first.shape[0] >= 256
    assert int(slider_text) > 0, f"the frame slider did not move (readout {slider_text!r})"
    changed = (np.abs(first - second).max(axis=2) > 12).mean()
    assert changed > 0.005, f"only {changed:.2%} of the image changed after moving the slider"
    for shot in (first, second):
        assert _near(shot, GT_COLOR) > 50, "ground-truth colour not on screen"
        assert _near(shot, pred_color(0)) > 50, "baseline colour not on screen"
        assert _near(shot, pred_color(1)) > 50, "SPARROW colour not on screen"
