"""Let Avalanche import on a CPU-only PyTorch when only a CUDA build of torchvision could be installed.

On PyPI every Linux torchvision wheel is built against CUDA PyTorch; the CPU build lives on the PyTorch
index, which some machines (this project's) cannot reach. With the CUDA build next to CPU torch, the
compiled detection operators (``torchvision::nms`` and friends) cannot load, and torchvision fails on
import while registering their fake (meta) implementations. B4 uses none of them — Avalanche needs
torchvision only for its pure-Python transforms — so the registrations are skipped, nothing else.
"""

from __future__ import annotations

import sys
import types


def allow_cuda_torchvision_on_cpu_torch() -> None:
    import torch

    try:
        torch.ops.load_library  # noqa: B018  (torch is importable; the question is torchvision's ops)
        import torchvision  # noqa: F401

        return
    except RuntimeError as exc:
        if "torchvision::" not in str(exc):
            raise
    for name in [m for m in sys.modules if m == "torchvision" or m.startswith("torchvision.")]:
        del sys.modules[name]  # the half-imported package
    sys.modules["torchvision._meta_registrations"] = types.ModuleType("torchvision._meta_registrations")
    import torchvision  # noqa: F401,F811
