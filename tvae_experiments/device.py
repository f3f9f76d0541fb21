"""The ``device`` parameter of every chapter: ``"auto" | "cpu" | "cuda" | "cuda:<i>"``."""
from __future__ import annotations

import re

import torch

__all__ = ["resolve_device"]

_announced: set[str] = set()


def resolve_device(device: str | torch.device = "auto", verbose: bool = True) -> torch.device:
    """Turn the ``device`` parameter into a ``torch.device``.

    ``"auto"`` picks CUDA when available, otherwise the CPU; ``"cpu"``, ``"cuda"`` and
    ``"cuda:<i>"`` are taken literally (CUDA must then exist).  The choice is printed once.
    """
    if isinstance(device, torch.device):
        device = str(device)
    if not isinstance(device, str) or not re.fullmatch(r"auto|cpu|cuda(:\d+)?", device):
        raise ValueError(f"device={device!r} is not allowed; choose one of: 'auto', 'cpu', 'cuda', 'cuda:<index>'")
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    elif device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device={device!r} was requested but CUDA is not available here; use 'auto' or 'cpu'")
    dev = torch.device(device)
    if verbose and str(dev) not in _announced:
        _announced.add(str(dev))
        name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else f"{torch.get_num_threads()} CPU threads"
        print(f"tvae_core: using device {dev} ({name})")
    return dev
