"""Quality and text alignment of generated samples: Frechet distances, CLIP score.

Frechet distance between Gaussians fitted to two feature sets (Heusel et al., 2017):

    FD = |mu_1 - mu_2|^2 + Tr(S_1 + S_2 - 2 (S_1 S_2)^(1/2))

It is *FID* only in Inception-v3 pool features; diffmem computes it in
- "inception": a local TorchScript Inception file (e.g. the `inception-2015-12-05.pt` that
  StyleGAN3 / clean-fid / torchmetrics use; called as `model(uint8 NCHW, return_features=True)`),
  reported as "FID"; or
- "builtin": the built-in copy descriptor's frame vectors (no weights needed), reported as
  "FD-builtin" -- a Frechet distance in another feature space, comparable only with itself.
Video samples contribute every frame. Small sets give biased FD (the bias shrinks like 1/n); compare
settings at equal n, as AMG's table does.

Text alignment:
- `clip_score`: 100 * max(cos(image, text), 0) with local CLIP weights (Hessel et al., 2021),
  averaged over a clip's frames, then over clips;
- the embedded world's own judge of text alignment (captioned sprite and motion) is
  `diffmem.world.judge.WorldAlignment`.
"""
from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from threadpoolctl import threadpool_limits

from ..errors import BadInputError, DiffmemError
from ..features.builtin import BuiltinDescriptor
from ..io.video import resize_frames

FEATURE_SPACES = ("builtin", "inception")


# ----------------------------------------------------------------------------- Frechet distance

def gaussian_stats(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(N, D) -> mean (D,), covariance (D, D) (unbiased, N - 1), in float64."""
    x = np.asarray(features, np.float64)
    if x.ndim != 2 or len(x) < 2:
        raise DiffmemError(f"a Frechet distance needs at least 2 feature vectors, got shape {x.shape}")
    return x.mean(0), np.cov(x, rowvar=False)


def frechet_distance(mu1, sigma1, mu2, sigma2) -> float:
    """|mu1 - mu2|^2 + Tr(S1 + S2 - 2 sqrt(S1 S2)).

    Tr sqrt(S1 S2) = sum of sqrt(eigenvalues of sqrt(S1) S2 sqrt(S1)), a symmetric PSD matrix, so
    the square root is computed from real eigenvalues (no complex parts to drop, no sqrtm instability).
    """
    mu1, mu2 = np.atleast_1d(np.asarray(mu1, np.float64)), np.atleast_1d(np.asarray(mu2, np.float64))
    s1, s2 = np.atleast_2d(np.asarray(sigma1, np.float64)), np.atleast_2d(np.asarray(sigma2, np.float64))
    if mu1.shape != mu2.shape or s1.shape != s2.shape or s1.shape != (len(mu1), len(mu1)):
        raise DiffmemError(f"Frechet distance: shapes do not match: {mu1.shape}, {s1.shape}, {mu2.shape}, {s2.shape}")
    with _one_blas_thread():
        w, v = np.linalg.eigh((s1 + s1.T) / 2)
        root1 = (v * np.sqrt(np.clip(w, 0, None))) @ v.T
        m = root1 @ ((s2 + s2.T) / 2) @ root1
        ev = np.clip(np.linalg.eigvalsh((m + m.T) / 2), 0, None)
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * np.sqrt(ev).sum())


def _one_blas_thread():
    # Matrices of a few hundred rows gain nothing from BLAS threads, and on a busy machine OpenBLAS's
    # spinning threads made one 384-d distance take 6 s instead of 0.09 s (measured).
    return threadpool_limits(1, user_api="blas")  # threadpoolctl comes with scikit-learn


class FrechetDistance:
    """Metric object: `update(features, real=True/False)` any number of times, then `compute()`."""

    def __init__(self, name: str = "FD"):
        self.name = name
        self.reset()

    def reset(self) -> None:
        self._real: list[np.ndarray] = []
        self._fake: list[np.ndarray] = []

    def update(self, features: np.ndarray, real: bool) -> None:
        (self._real if real else self._fake).append(np.asarray(features, np.float64).reshape(len(features), -1))

    def compute(self) -> float:
        if not self._real or not self._fake:
            raise DiffmemError(f"{self.name}: needs both real and generated features")
        return frechet_distance(*gaussian_stats(np.concatenate(self._real)), *gaussian_stats(np.concatenate(self._fake)))


class InceptionFeatures:
    """Pool features of a local TorchScript Inception-v3 (FID's network); records the file's sha256.

    The file is loaded with `torch.jit.load` (a TorchScript archive is a graph plus weights, the format
    clean-fid and torchmetrics distribute the FID network in); pass only files you trust.
    """

    name = "inception"

    def __init__(self, path: str | Path, device: str | torch.device = "cpu", sha256: str | None = None):
        p = Path(path)
        if not p.is_file():
            raise BadInputError(p, "Inception weights not found (give a local TorchScript file, e.g. inception-2015-12-05.pt)")
        self.sha256 = hashlib.sha256(p.read_bytes()).hexdigest()
        if sha256 and sha256.lower() != self.sha256:
            raise BadInputError(p, f"sha256 mismatch: expected {sha256.lower()}, file has {self.sha256} "
                                   "(a different or corrupted network: FID values would not compare)")
        try:
            self.model = torch.jit.load(str(p), map_location=device).eval()
        except Exception as e:  # noqa: BLE001 - any loader failure means the same thing to the user
            raise BadInputError(p, f"not a TorchScript Inception model ({type(e).__name__}: {e})") from None
        self.device = torch.device(device)
        self.path = str(p)

    @torch.no_grad()
    def __call__(self, frames_uint8: np.ndarray, batch_size: int = 32) -> np.ndarray:
        """uint8 (N, H, W, 3) -> float (N, D). The network resizes to 299 itself."""
        x = torch.as_tensor(np.asarray(frames_uint8)).permute(0, 3, 1, 2)
        out = [self.model(x[i:i + batch_size].to(self.device), return_features=True).float().cpu()
               for i in range(0, len(x), batch_size)]
        return torch.cat(out).numpy().reshape(len(x), -1)

    def describe(self) -> dict:
        return {"space": "inception", "path": self.path, "sha256": self.sha256, "metric": "FID"}


class DescriptorFeatures:
    """Frame vectors of a copy descriptor (default: the built-in one) as a feature space for FD."""

    name = "builtin"

    def __init__(self, descriptor=None):
        if descriptor is None:
            descriptor = BuiltinDescriptor()
        self.descriptor = descriptor

    def __call__(self, frames_uint8: np.ndarray) -> np.ndarray:
        return self.descriptor.encode(np.asarray(frames_uint8))

    def describe(self) -> dict:
        pol = self.descriptor.policy
        return {"space": "descriptor", "policy": pol.name, "fingerprint": pol.fingerprint,
                "metric": f"FD-{pol.name}"}


def feature_space(inception: str | Path | InceptionFeatures | None = None, descriptor=None):
    """Inception features when a local file (or loaded `InceptionFeatures`) is given (FID), else the
    descriptor space (FD-<policy>)."""
    if isinstance(inception, InceptionFeatures):
        return inception
    return InceptionFeatures(inception) if inception else DescriptorFeatures(descriptor)


def quality_distance(generated: Sequence[np.ndarray], training: Sequence[np.ndarray], space=None) -> dict:
    """FD between every frame of the generated clips and every frame of the training clips.

    Clips are uint8 (T, H, W, 3); training frames are resized to the generated size first, so the
    comparison is not about resolution. Returns {"metric", "value", "n_generated", "n_training", ...space}.
    """
    return quality_distances({"": generated}, training, space)[""]


def quality_distances(generated: dict, training: Sequence[np.ndarray], space=None) -> dict:
    """`quality_distance` of several sets of generated clips ({name: clips}) against one training set,
    whose features are computed once per generated frame size (they dominate the cost: thousands of
    training frames against a few dozen generated ones). Returns {name: result}; empty sets are left out."""
    space = space or DescriptorFeatures()
    d = space.describe()
    train_feats, out = {}, {}
    for name, clips in generated.items():
        if not len(clips):
            continue
        gen = np.concatenate([np.asarray(c).reshape(-1, *np.asarray(c).shape[-3:]) for c in clips])
        size = tuple(gen.shape[1:3])
        if size not in train_feats:
            train_feats[size] = space(np.concatenate(
                [resize_frames(np.asarray(c).reshape(-1, *np.asarray(c).shape[-3:]), size) for c in training]))
        fd = FrechetDistance()
        fd.update(space(gen), real=False)
        fd.update(train_feats[size], real=True)
        out[name] = {**d, "value": fd.compute(), "n_generated": int(len(gen)),
                     "n_training": int(len(train_feats[size]))}
    return out


# ----------------------------------------------------------------------------- CLIP score

_CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
_CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


class CLIPScore:
    """CLIP score with local weights (a transformers CLIP folder: config, weights, tokenizer files).

    `update(frames_uint8 (T,H,W,3), caption)` per clip; `compute()` the mean over clips. Preprocessing
    is CLIP's: bicubic resize of the short side to the model's image size, centre crop, CLIP mean/std.
    """

    def __init__(self, path: str | Path, device: str | torch.device = "cpu"):
        p = Path(path)
        if not (p / "config.json").is_file():
            raise BadInputError(p, "not a CLIP folder (no config.json); give local CLIP weights")
        from transformers import CLIPModel, CLIPTokenizer

        try:
            self.model = CLIPModel.from_pretrained(str(p), local_files_only=True).to(device).eval()
            self.tokenizer = CLIPTokenizer.from_pretrained(str(p), local_files_only=True)
        except Exception as e:  # noqa: BLE001
            raise BadInputError(p, f"cannot load CLIP ({type(e).__name__}: {e})") from None
        self.device = torch.device(device)
        self.size = int(self.model.config.vision_config.image_size)
        self.path = str(p)
        self.scores: list[float] = []

    def reset(self) -> None:
        self.scores = []

    @torch.no_grad()
    def clip_score(self, frames_uint8: np.ndarray, caption: str) -> float:
        x = torch.as_tensor(np.asarray(frames_uint8)).reshape(-1, *np.asarray(frames_uint8).shape[-3:])
        x = x.permute(0, 3, 1, 2).float().div(255.0)
        h, w = x.shape[-2:]
        s = self.size / min(h, w)
        x = F.interpolate(x, size=(max(self.size, round(h * s)), max(self.size, round(w * s))), mode="bicubic",
                          align_corners=False).clamp(0, 1)
        top, left = (x.shape[-2] - self.size) // 2, (x.shape[-1] - self.size) // 2
        x = x[..., top:top + self.size, left:left + self.size]
        mean = torch.tensor(_CLIP_MEAN).view(1, 3, 1, 1)
        std = torch.tensor(_CLIP_STD).view(1, 3, 1, 1)
        img = self.model.get_image_features(pixel_values=((x - mean) / std).to(self.device))
        tok = self.tokenizer([caption], padding=True, truncation=True, return_tensors="pt").to(self.device)
        txt = self.model.get_text_features(**tok)
        img, txt = _as_tensor(img), _as_tensor(txt)
        cos = F.cosine_similarity(img, txt.expand_as(img), dim=-1)
        return float(100.0 * cos.clamp(min=0).mean())

    def update(self, frames_uint8: np.ndarray, caption: str) -> float:
        s = self.clip_score(frames_uint8, caption)
        self.scores.append(s)
        return s

    def compute(self) -> float:
        if not self.scores:
            raise DiffmemError("CLIP score: no clips given")
        return float(np.mean(self.scores))

    def describe(self) -> dict:
        return {"metric": "CLIP score", "path": self.path}


def _as_tensor(out) -> torch.Tensor:
    # newer transformers may return a model output object instead of a tensor
    if isinstance(out, torch.Tensor):
        return out
    for key in ("image_embeds", "text_embeds", "pooler_output"):
        v = getattr(out, key, None)
        if isinstance(v, torch.Tensor):
            return v
    raise DiffmemError(f"unexpected CLIP output {type(out).__name__}")
