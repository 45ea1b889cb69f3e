"""Named preprocessing policies and their fingerprints.

A policy names everything that changes a descriptor's vectors (model sha256, resize mode, crop,
normalisation, dimension, algorithm version). Its fingerprint, a hash of exactly those fields, is
stored in every index and result; two different fingerprints are never mixed (`check_same`).
The threshold tau_c travels with the policy but is not fingerprinted: it does not change a vector.

Preprocessing runs in torch so gradients flow through it (AMG differentiates the descriptor).
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Mapping

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import DiffmemError, PolicyMismatchError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# Fields of a DescriptorPolicy that do not change a vector, so are left out of the fingerprint.
_NOT_FINGERPRINTED = ("name", "threshold", "threshold_source", "source")


def fingerprint_of(fields: Mapping[str, Any]) -> str:
    """16 hex digits of the sha256 of the canonical JSON of `fields` (generic: any policy-like dict)."""
    canon = json.dumps(dict(fields), sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canon.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class DescriptorPolicy:
    """How frames become descriptor vectors.

    resize: "short_side" (keep aspect, shorter side -> size), "square" (size x size, skewing) or "none".
    crop: centre crop to crop x crop after resizing, or None.
    mean/std: per-channel normalisation applied to [0, 1] RGB, or None.
    """

    name: str
    descriptor: str
    resize: str = "none"
    size: int | None = None
    crop: int | None = None
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    dim: int | None = None
    model_sha256: str | None = None
    version: str = "1"
    threshold: float | None = None
    threshold_source: str = ""
    source: str | None = None  # where the model was loaded from (informative only)
    extra: tuple[tuple[str, Any], ...] = field(default=())

    def fingerprint_fields(self) -> dict:
        d = asdict(self)
        for k in _NOT_FINGERPRINTED:
            d.pop(k, None)
        d["extra"] = [list(kv) for kv in self.extra]
        d["mean"] = list(self.mean) if self.mean is not None else None
        d["std"] = list(self.std) if self.std is not None else None
        return d

    @property
    def fingerprint(self) -> str:
        return fingerprint_of(self.fingerprint_fields())

    def as_dict(self) -> dict:
        d = asdict(self)
        d["extra"] = dict(self.extra)
        d["mean"] = list(self.mean) if self.mean is not None else None
        d["std"] = list(self.std) if self.std is not None else None
        d["fingerprint"] = self.fingerprint
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "DescriptorPolicy":
        d = dict(d)
        d.pop("fingerprint", None)
        extra = d.pop("extra", None) or {}
        for k in ("mean", "std"):
            if d.get(k) is not None:
                d[k] = tuple(float(v) for v in d[k])
        known = {f for f in cls.__dataclass_fields__}
        unknown = set(d) - known
        if unknown:
            raise DiffmemError(f"descriptor policy has unknown fields {sorted(unknown)}")
        return cls(**d, extra=tuple(sorted(dict(extra).items())))

    def with_(self, **changes) -> "DescriptorPolicy":
        return replace(self, **changes)


# SSCD (Pizzi et al., CVPR 2022). tau_c = 0.5 is the convention of Somepalli et al. and AMG.
SSCD_POLICIES: dict[str, DescriptorPolicy] = {
    # The SSCD README's inference transform: resize shorter side to 288, ImageNet normalisation.
    "sscd-official": DescriptorPolicy("sscd-official", "sscd", resize="short_side", size=288,
                                      mean=IMAGENET_MEAN, std=IMAGENET_STD, threshold=0.5,
                                      threshold_source="convention (Somepalli et al. 2023; Chen et al. 2024, AMG)"),
    "sscd-skew320": DescriptorPolicy("sscd-skew320", "sscd", resize="square", size=320,
                                     mean=IMAGENET_MEAN, std=IMAGENET_STD, threshold=0.5,
                                     threshold_source="convention (Somepalli et al. 2023; Chen et al. 2024, AMG)"),
    # Reproduces the numbers of diffusion-copying papers (Somepalli et al.): resize 256, centre crop 224.
    "legacy-dcr": DescriptorPolicy("legacy-dcr", "sscd", resize="short_side", size=256, crop=224,
                                   mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5), threshold=0.5,
                                   threshold_source="convention (Somepalli et al. 2023)"),
    # Reproduces AMG's evaluation code: 224 x 224, no normalisation.
    "legacy-amg": DescriptorPolicy("legacy-amg", "sscd", resize="square", size=224, threshold=0.5,
                                   threshold_source="convention (Chen et al. 2024, AMG)"),
}


def sscd_policy(name: str) -> DescriptorPolicy:
    try:
        return SSCD_POLICIES[name]
    except KeyError:
        raise DiffmemError(f"unknown SSCD policy {name!r}; choose one of {sorted(SSCD_POLICIES)}") from None


def check_same(expected: Mapping[str, Any] | DescriptorPolicy, got: Mapping[str, Any] | DescriptorPolicy,
               what: str = "index") -> None:
    """Refuse to mix two policies: raise PolicyMismatchError naming both."""
    fe, fg = policy_fingerprint(expected), policy_fingerprint(got)
    if fe != fg:
        ne, ng = _name(expected), _name(got)
        raise PolicyMismatchError(
            f"descriptor policy mismatch: the {what} was made with {ne!r} (fingerprint {fe}) "
            f"but {ng!r} (fingerprint {fg}) was given; use the same descriptor and policy, or build a new {what}")


def policy_fingerprint(p: Mapping[str, Any] | DescriptorPolicy) -> str:
    """Fingerprint of a DescriptorPolicy, or of any policy dict (its 'fingerprint' key if present)."""
    if isinstance(p, DescriptorPolicy):
        return p.fingerprint
    if "fingerprint" in p:
        return str(p["fingerprint"])
    return fingerprint_of({k: v for k, v in p.items() if k not in _NOT_FINGERPRINTED})


def _name(p) -> str:
    return p.name if isinstance(p, DescriptorPolicy) else str(p.get("name", "?"))


# ---------------------------------------------------------------- preprocessing (torch, differentiable)

def frames_to_tensor(frames, device: torch.device | str | None = None) -> torch.Tensor:
    """uint8 frames (H,W), (H,W,3), (T,H,W) or (T,H,W,3|4), numpy or torch -> float (T,3,H,W) in [0, 1]."""
    if isinstance(frames, np.ndarray) and not frames.flags.writeable:
        frames = frames.copy()  # torch cannot wrap read-only memory (e.g. memory-mapped or decoded frames)
    x = torch.as_tensor(frames)
    if x.dtype != torch.uint8:
        raise DiffmemError(f"frames must be uint8, got {x.dtype}")
    if x.ndim == 2:
        x = x[None, :, :, None]
    elif x.ndim == 3:
        # (H,W,3|4) is one colour frame; anything else is (T,H,W) greyscale
        x = x[None] if x.shape[-1] in (3, 4) else x[..., None]
    if x.ndim != 4:
        raise DiffmemError(f"frames must be (T,H,W,3); got shape {tuple(x.shape)}")
    if x.shape[-1] == 4:
        x = x[..., :3]
    if x.shape[-1] == 1:
        x = x.expand(-1, -1, -1, 3)
    x = x.to(device) if device is not None else x
    return x.permute(0, 3, 1, 2).float().div_(255.0)


def resize(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinear with antialiasing (like PIL), differentiable; a no-op at the same size."""
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=True)


def apply_policy(x: torch.Tensor, policy: DescriptorPolicy) -> torch.Tensor:
    """float (B,3,H,W) in [0, 1] -> the model's input, following `policy`."""
    h, w = x.shape[-2:]
    if policy.resize == "short_side":
        s = policy.size / min(h, w)
        x = resize(x, (max(1, round(h * s)), max(1, round(w * s))))
    elif policy.resize == "square":
        x = resize(x, (policy.size, policy.size))
    elif policy.resize != "none":
        raise DiffmemError(f"policy {policy.name}: unknown resize mode {policy.resize!r}")
    if policy.crop:
        h, w = x.shape[-2:]
        c = policy.crop
        if h < c or w < c:
            x = resize(x, (max(h, c), max(w, c)))
            h, w = x.shape[-2:]
        top, left = (h - c) // 2, (w - c) // 2
        x = x[..., top:top + c, left:left + c]
    if policy.mean is not None:
        mean = torch.tensor(policy.mean, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
        std = torch.tensor(policy.std, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
        x = (x - mean) / std
    return x
