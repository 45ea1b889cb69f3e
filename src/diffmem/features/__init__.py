"""Copy-detection descriptors and their named preprocessing policies.

    from diffmem.features import load_descriptor
    d = load_descriptor("builtin")              # or "sscd:/path/model.torchscript.pt", "clip:/folder", "dino:/folder"
    v = d.encode(frames_uint8)                  # (T, D) float32, L2-normalised
    e = d.embed(x)                              # differentiable: float (B,3,H,W) in [0, 1] -> (B, D)
    d.policy.fingerprint, d.threshold           # stored with every index and result
"""
from __future__ import annotations

from typing import Any, Mapping

from ..device import resolve_device
from ..errors import DiffmemError
from .base import Descriptor
from .builtin import BuiltinDescriptor
from .hf import HFDescriptor
from .policy import SSCD_POLICIES, DescriptorPolicy, check_same, fingerprint_of, policy_fingerprint
from .sscd import SSCDDescriptor

__all__ = ["Descriptor", "DescriptorPolicy", "SSCD_POLICIES", "load_descriptor", "descriptor_from_policy",
           "check_same", "fingerprint_of", "policy_fingerprint", "DESCRIPTOR_SPECS"]

DESCRIPTOR_SPECS = "builtin | sscd:PATH_URL_OR_NAME | clip:FOLDER | dino:FOLDER"


def load_descriptor(spec: str | Descriptor = "builtin", *, policy: str | None = None, sha256: str | None = None,
                    threshold: float | None = None, device: Any = "cpu") -> Descriptor:
    """A descriptor from a spec string (`DESCRIPTOR_SPECS`). `policy` names an SSCD preprocessing policy;
    `threshold` overrides the policy's tau_c."""
    if isinstance(spec, Descriptor):
        return spec
    dev = resolve_device(device)
    kind, _, arg = str(spec).partition(":")
    kind = kind.strip().lower()
    if kind == "builtin":
        if arg or (policy and policy != "builtin"):
            raise DiffmemError(f"descriptor {spec!r}: builtin takes no path and has one policy ('builtin')")
        return BuiltinDescriptor(threshold=threshold).to(dev)
    if not arg:
        raise DiffmemError(f"descriptor {spec!r} needs a path: {DESCRIPTOR_SPECS}")
    if kind == "sscd":
        d = SSCDDescriptor(arg, policy or "sscd-official", sha256=sha256, device=dev)
        if threshold is not None:
            d.policy = d.policy.with_(threshold=float(threshold), threshold_source="given by the user")
        return d
    if kind in ("clip", "dino"):
        if policy:
            raise DiffmemError(f"descriptor {spec!r}: --policy applies to SSCD only; {kind} follows its folder's "
                               "preprocessor_config.json")
        return HFDescriptor(arg, kind, threshold=threshold, device=dev)
    raise DiffmemError(f"unknown descriptor {spec!r}; use {DESCRIPTOR_SPECS}")


def descriptor_from_policy(policy: Mapping[str, Any] | DescriptorPolicy, *, device: Any = "cpu",
                           threshold: float | None = None) -> Descriptor:
    """Rebuild the descriptor an index was made with, from its stored policy, and check the fingerprint."""
    p = policy if isinstance(policy, DescriptorPolicy) else DescriptorPolicy.from_dict(policy)
    if p.descriptor == "builtin":
        spec = "builtin"
    elif p.descriptor in ("sscd", "clip", "dino"):
        if not p.source:
            raise DiffmemError(f"policy {p.name!r} does not record where its model came from; pass --descriptor")
        spec = f"{p.descriptor}:{p.source}"
    else:
        raise DiffmemError(f"policy {p.name!r}: descriptor {p.descriptor!r} is not a frame descriptor")
    d = load_descriptor(spec, policy=p.name if p.descriptor == "sscd" else None,
                        threshold=threshold if threshold is not None else p.threshold, device=device)
    check_same(p, d.policy, what="index")
    return d
