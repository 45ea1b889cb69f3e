"""CLIP and DINO(v2) image embeddings through transformers, from a local model folder (no hub access).

`clip`: a CLIP checkpoint (full or vision-only); the descriptor is the projected image embedding.
`dino`: a DINO / DINOv2 / ViT checkpoint; the descriptor is the CLS token (for DINOv2 its pooler output,
which is the layer-normed CLS token). Preprocessing follows the folder's `preprocessor_config.json` (shortest-edge resize, centre
crop, mean/std) and runs in torch, so gradients flow. These are semantic embeddings, not copy
detectors: there is no conventional tau_c, so none is set; calibrate one on your data with
`diffmem.metrics.calibrate.calibrate_threshold` and pass it as `threshold`.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch

from ..errors import BadInputError, DiffmemError
from .base import Descriptor
from .policy import IMAGENET_MEAN, IMAGENET_STD, DescriptorPolicy

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")


def _folder_sha256(folder: Path) -> str:
    """sha256 over config.json and the weight files (by name, in order): identifies the checkpoint."""
    h = hashlib.sha256()
    names = ["config.json"] + sorted(p.name for p in folder.iterdir()
                                     if p.name.endswith((".safetensors", ".bin")) and p.is_file())
    for name in names:
        p = folder / name
        if p.exists():
            h.update(name.encode())
            with open(p, "rb") as f:
                for block in iter(lambda: f.read(1 << 20), b""):
                    h.update(block)
    return h.hexdigest()


def _preprocessing(folder: Path, kind: str) -> dict:
    mean, std = (CLIP_MEAN, CLIP_STD) if kind == "clip" else (IMAGENET_MEAN, IMAGENET_STD)
    size, crop = 224, 224
    cfg_path = folder / "preprocessor_config.json"
    if cfg_path.exists():
        cfg = json.loads(cfg_path.read_text())
        mean = tuple(cfg.get("image_mean", mean))
        std = tuple(cfg.get("image_std", std))
        s = cfg.get("size", size)
        size = s.get("shortest_edge", s.get("height", size)) if isinstance(s, dict) else int(s)
        c = cfg.get("crop_size", crop)
        crop = c.get("height", crop) if isinstance(c, dict) else int(c)
        if not cfg.get("do_center_crop", True):
            crop = None
    return {"size": int(size), "crop": int(crop) if crop else None, "mean": tuple(map(float, mean)),
            "std": tuple(map(float, std))}


class HFDescriptor(Descriptor):
    def __init__(self, folder: str | Path, kind: str = "clip", *, threshold: float | None = None,
                 device: str | torch.device = "cpu"):
        super().__init__()
        folder = Path(folder)
        if kind not in ("clip", "dino"):
            raise DiffmemError(f"unknown transformers descriptor kind {kind!r}; use clip or dino")
        if not (folder / "config.json").is_file():
            raise BadInputError(folder, "not a transformers model folder (no config.json)")
        use_st = (folder / "model.safetensors").exists()
        if not use_st and not (folder / "pytorch_model.bin").exists():
            raise BadInputError(folder, f"no weights ({' or '.join(_WEIGHT_FILES)})")
        try:
            if kind == "clip":
                from transformers import CLIPVisionModelWithProjection

                model = CLIPVisionModelWithProjection.from_pretrained(folder, local_files_only=True,
                                                                      use_safetensors=use_st)
            else:
                from transformers import AutoModel

                model = AutoModel.from_pretrained(folder, local_files_only=True, use_safetensors=use_st)
        except (OSError, ValueError, KeyError) as e:
            raise BadInputError(folder, f"cannot load a {kind} model ({e})") from e
        model.eval().requires_grad_(False)
        self.model = model.to(torch.device(device))
        self.kind = kind
        pre = _preprocessing(folder, kind)
        probe = torch.zeros(1, 3, pre["crop"] or pre["size"], pre["crop"] or pre["size"], device=self.device)
        with torch.no_grad():
            dim = int(self._raw(probe).shape[-1])
        self.policy = DescriptorPolicy(
            name=f"{kind}-hf", descriptor=kind, resize="short_side", size=pre["size"], crop=pre["crop"],
            mean=pre["mean"], std=pre["std"], dim=dim, model_sha256=_folder_sha256(folder), source=str(folder),
            threshold=threshold, threshold_source="given by the user" if threshold is not None else "",
        )

    def _raw(self, x: torch.Tensor) -> torch.Tensor:
        out = self.model(pixel_values=x)
        if self.kind == "clip":
            return out.image_embeds
        if self.model.config.model_type.startswith("dinov2"):
            return out.pooler_output  # the layer-normed CLS token
        return out.last_hidden_state[:, 0]  # ViT/DINO: the CLS token (their pooler is an untrained head)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self._raw(x)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device
