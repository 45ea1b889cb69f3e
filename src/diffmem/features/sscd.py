"""SSCD (Pizzi et al., "A Self-Supervised Descriptor for Image Copy Detection", CVPR 2022) from a TorchScript file.

The model takes float (B,3,H,W) after the policy's preprocessing and returns (B,512) (1024 for the
large model); we L2-normalise again. Sources: a local path, a known checkpoint name (looked up in the
cache, downloaded there when the user has a network), or a URL (downloaded into the cache).

Integrity: the file's sha256 is always computed and put into the policy (so two different files never
share a fingerprint). It is *checked* when the user gives `sha256=` or when a known name has a recorded
hash in `KNOWN_CHECKPOINTS`. TorchScript is code from the file's author: load only files you trust.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import urllib.request
import warnings
from pathlib import Path

import torch

from ..errors import BadInputError, DiffmemError
from ..io.atomic import atomic_output
from .base import Descriptor
from .policy import sscd_policy

_BASE = "https://dl.fbaipublicfiles.com/sscd-copy-detection/"
# Names, URLs and dimensions from the SSCD README (github.com/facebookresearch/sscd-copy-detection).
# The README publishes no checksums, so no sha256 is recorded: none we could cite. Fill one in only
# from a published source; until then pass --sha256 to pin the file you use.
KNOWN_CHECKPOINTS: dict[str, dict] = {
    name: {"url": f"{_BASE}{name}.torchscript.pt", "dim": dim, "sha256": None}
    for name, dim in (("sscd_disc_blur", 512), ("sscd_disc_advanced", 512), ("sscd_disc_mixup", 512),
                      ("sscd_disc_large", 1024), ("sscd_imagenet_blur", 512),
                      ("sscd_imagenet_advanced", 512), ("sscd_imagenet_mixup", 512))
}


def cache_dir() -> Path:
    """$DIFFMEM_CACHE, else $XDG_CACHE_HOME/diffmem, else ~/.cache/diffmem."""
    if os.environ.get("DIFFMEM_CACHE"):
        return Path(os.environ["DIFFMEM_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "diffmem"


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


def _download(url: str, dest: Path) -> Path:
    try:
        with atomic_output(dest, suffix=".part") as tmp, open(tmp, "wb") as out, \
                urllib.request.urlopen(url, timeout=60) as resp:  # noqa: S310
            shutil.copyfileobj(resp, out)
    except OSError as e:
        raise DiffmemError(f"{url}: download failed ({e}); download it yourself and pass the local path") from e
    return dest


def resolve_checkpoint(source: str | Path, *, download: bool = True) -> tuple[Path, str | None]:
    """A path, known name or URL -> (local file, expected sha256 or None)."""
    s = str(source)
    name = s[:-len(".torchscript.pt")] if s.endswith(".torchscript.pt") else s
    if name in KNOWN_CHECKPOINTS and not Path(s).exists():
        info = KNOWN_CHECKPOINTS[name]
        local = cache_dir() / "sscd" / f"{name}.torchscript.pt"
        if not local.exists():
            if not download:
                raise BadInputError(local, f"SSCD checkpoint {name!r} is not in the cache and downloading is off")
            _download(info["url"], local)
        return local, info["sha256"]
    if "://" in s:
        if not s.lower().startswith("https://"):
            raise BadInputError(s, "only https:// URLs are downloaded; give a local file as a path instead")
        # keyed by the URL, not the file name: another source with the same name never hits this file
        key = hashlib.sha256(s.encode()).hexdigest()[:16]
        local = cache_dir() / "sscd" / "url" / key / Path(s.split("?")[0]).name
        if not local.exists():
            if not download:
                raise BadInputError(local, "not in the cache and downloading is off")
            _download(s, local)
        return local, None
    p = Path(s)
    if not p.is_file():
        raise BadInputError(p, "SSCD model file not found" if not p.exists() else "not a file")
    return p, None


class SSCDDescriptor(Descriptor):
    """SSCD TorchScript model + a named preprocessing policy (`sscd-official` by default)."""

    def __init__(self, source: str | Path, policy: str = "sscd-official", *, sha256: str | None = None,
                 device: str | torch.device = "cpu", download: bool = True):
        super().__init__()
        path, known = resolve_checkpoint(source, download=download)
        digest = sha256_file(path)
        expected = (sha256 or known or "").lower() or None
        if expected and digest != expected:
            raise BadInputError(path, f"sha256 mismatch: expected {expected}, file has {digest} "
                                      "(a different or corrupted checkpoint)")
        try:
            with warnings.catch_warnings():  # TorchScript is deprecated in torch, but it is SSCD's format
                warnings.simplefilter("ignore", DeprecationWarning)
                model = torch.jit.load(str(path), map_location=torch.device(device))
        except Exception as e:  # noqa: BLE001 - any load failure means the file is not a TorchScript model
            raise BadInputError(path, f"not a loadable TorchScript model ({type(e).__name__}: {e})") from e
        model.eval()
        self.model = model
        base = sscd_policy(policy)
        with torch.no_grad():  # the dimension, from one small forward pass
            probe = torch.zeros(1, 3, 64, 64, device=torch.device(device))
            out = model(probe)
        if out.ndim != 2 or out.shape[0] != 1:
            raise BadInputError(path, f"model output has shape {tuple(out.shape)}, expected (B, D)")
        self.policy = base.with_(dim=int(out.shape[1]), model_sha256=digest, source=str(source))
        self.verified = bool(expected)  # the file matched a sha256 the user or KNOWN_CHECKPOINTS gave
        for p in self.model.parameters():
            p.requires_grad_(False)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)

    @property
    def device(self) -> torch.device:
        for t in self.model.parameters():
            return t.device
        return torch.device("cpu")
