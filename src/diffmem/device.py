"""CPU by default, CUDA when asked for or when `auto` finds one."""
from __future__ import annotations

import torch

from .errors import DiffmemError


def resolve_device(name: str | torch.device | None = "cpu") -> torch.device:
    if isinstance(name, torch.device):
        return name
    if name in (None, "", "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(name)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise DiffmemError(f"--device {name}: CUDA is not available on this machine")
    return dev
