"""Install rules: environment.yml agrees with pyproject.toml, CPU pins stay out of pyproject, the shim works."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import tomllib
import yaml

ROOT = Path(__file__).resolve().parents[1]


def _requirement_map(lines: list[str]) -> dict[str, str]:
    out = {}
    for line in lines:
        match = re.match(r"^\s*([A-Za-z0-9_.\-]+)\s*(.*)$", line)
        assert match, f"cannot parse requirement {line!r}"
        out[match.group(1).lower().replace("_", "-")] = match.group(2).replace(" ", "")
    return out


def test_environment_yml_lists_the_same_dependencies_as_pyproject() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = list(project["dependencies"])
    for extra in ("notebooks", "dev"):
        declared += project["optional-dependencies"][extra]
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip_section = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d)
    listed = [r for r in pip_section if not r.startswith("-e")]
    assert _requirement_map(listed) == _requirement_map(declared)


def test_pyproject_declares_floors_not_cpu_pins() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    deps = _requirement_map(project["dependencies"])
    assert deps["torch"].startswith(">="), "torch must be a floor; the CPU pin lives in constraints-cpu.txt"
    assert deps["torchvision"].startswith(">=")
    pins = (ROOT / "constraints-cpu.txt").read_text()
    assert "torch==2.13.0" in pins and "torchvision==0.28.0" in pins


def test_shim_makes_torchvision_and_transformers_importable() -> None:
    code = (
        "import sparrow, sparrow._compat as c, torch, torchvision\n"
        "from torchvision.ops import nms, batched_nms\n"
        "b = torch.tensor([[0,0,10,10],[1,1,11,11],[50,50,60,60]], dtype=torch.float)\n"
        "s = torch.tensor([0.9, 0.8, 0.7])\n"
        "print(nms(b, s, 0.5).tolist(), batched_nms(b, s, torch.tensor([0, 1, 0]), 0.5).tolist())\n"
        "from transformers import Qwen2ForCausalLM\n"
        "print('shim', c.shim_active())\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    lines = out.stdout.strip().splitlines()
    assert lines[0] == "[0, 2] [0, 1, 2]"
    assert lines[1] in ("shim True", "shim False")


def test_shim_nms_matches_a_brute_force_reference() -> None:
    import torch

    from sparrow._compat import _nms_python

    gen = torch.Generator().manual_seed(0)
    xy = torch.rand(60, 2, generator=gen) * 50
    wh = torch.rand(60, 2, generator=gen) * 20 + 1
    boxes = torch.cat([xy, xy + wh], dim=1)
    scores = torch.rand(60, generator=gen)
    keep = _nms_python(boxes, scores, 0.3).tolist()
    order = scores.argsort(descending=True).tolist()
    expected: list[int] = []
    for i in order:
        ok = True
        for j in expected:
            iw = max(0.0, min(boxes[i, 2], boxes[j, 2]) - max(boxes[i, 0], boxes[j, 0]))
            ih = max(0.0, min(boxes[i, 3], boxes[j, 3]) - max(boxes[i, 1], boxes[j, 1]))
            inter = iw * ih
            area = lambda k: (boxes[k, 2] - boxes[k, 0]) * (boxes[k, 3] - boxes[k, 1])  # noqa: E731
            if inter / (area(i) + area(j) - inter) > 0.3:
                ok = False
                break
        if ok:
            expected.append(i)
    assert keep == expected
    assert _nms_python(torch.zeros(0, 4), torch.zeros(0), 0.5).numel() == 0


def test_shim_is_a_no_op_when_torchvision_is_already_imported() -> None:
    code = (
        "import sys; sys.modules['torchvision'] = object()\n"
        "import sparrow._compat as c\n"
        "print(c.shim_active(), c.install())"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "False False"
