"""torchvision compatibility shim for CPU-only torch.

PyPI ships torchvision 0.28.0 only as a CUDA build whose ``_C.so`` needs ``libc10_cuda.so``. On a CPU torch
``import torchvision`` then fails at an unguarded ``register_fake("torchvision::nms")``, and with it every
transformers model import and sam2's image predictor. :func:`install` defines the missing operator schemas and a
pure-torch NMS kernel before torchvision is imported. Where torchvision's own extension loads (GPU torch, or a CPU
torchvision build) it does nothing, so the same package code runs on both kinds of machine.

``torchvision.io`` (image decoding) stays unavailable under the shim; the kit decodes with PIL, cv2, decord or av.
"""

from __future__ import annotations

import importlib.util
import os
import sys

_LIBRARY = None  # keeps the torch.library.Library alive; dropping it would unregister the ops
_STATE: dict[str, bool] = {}


def _nms_python(dets, scores, iou_threshold: float):
    """Greedy NMS with torchvision's semantics (descending score, suppress IoU > threshold)."""
    import torch

    if dets.numel() == 0:
        return torch.empty(0, dtype=torch.long, device=dets.device)
    x1, y1, x2, y2 = dets.unbind(1)
    areas = (x2 - x1).clamp(min=0) * (y2 - y1).clamp(min=0)
    order = scores.argsort(descending=True, stable=True)
    suppressed = torch.zeros(dets.size(0), dtype=torch.bool, device=dets.device)
    keep: list[int] = []
    for i in order.tolist():
        if suppressed[i]:
            continue
        keep.append(i)
        iw = (torch.minimum(x2[i], x2) - torch.maximum(x1[i], x1)).clamp(min=0)
        ih = (torch.minimum(y2[i], y2) - torch.maximum(y1[i], y1)).clamp(min=0)
        inter = iw * ih
        suppressed |= inter / (areas[i] + areas - inter) > iou_threshold
    return torch.tensor(keep, dtype=torch.long, device=dets.device)


def install() -> bool:
    """Make ``import torchvision`` work on CPU torch. Returns True when the shim was needed and installed."""
    global _LIBRARY
    if "installed" in _STATE:
        return _STATE["installed"]
    if "torchvision" in sys.modules:
        _STATE["installed"] = False
        return False
    spec = importlib.util.find_spec("torchvision")
    if spec is None or spec.origin is None:
        _STATE["installed"] = False
        return False
    import torch

    try:
        torch.ops.load_library(os.path.join(os.path.dirname(spec.origin), "_C.so"))
        _STATE["installed"] = False
        return False
    except (OSError, ImportError, RuntimeError):
        pass
    _LIBRARY = torch.library.Library("torchvision", "DEF")
    _LIBRARY.define("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    _LIBRARY.define("qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    _LIBRARY.impl("nms", _nms_python, "CompositeExplicitAutograd")
    import torchvision.ops.boxes as boxes

    # torchvision checks for its compiled ops before calling them; the python kernel above is the op here.
    boxes._assert_has_ops = lambda: None
    _STATE["installed"] = True
    return True


def shim_active() -> bool:
    """True when :func:`install` replaced torchvision's compiled ops."""
    return _STATE.get("installed", False)
