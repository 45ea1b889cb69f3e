"""The built-in tiny latent text-to-video (and text-to-image) diffusion model, trainable on a CPU.

Three small networks, the way real latent video models are built, sized for a 2-core machine
(DESIGN.md, "The embedded world"):

- `FrameAutoencoder`: frames (size x size RGB) <-> latents (C x size/4 x size/4), per frame: a linear
  patch code fitted by PCA on the training frames; latents are scaled by `latent_scale` to unit
  variance (Stable Diffusion's scaling-factor idea);
- `WordTextEncoder`: a word-level tokenizer over the training captions' vocabulary, token + position
  embeddings and a two-layer transformer; the prompt embedding is (B, max_tokens, text_dim) with
  padding zeroed, and the empty prompt is its own learned token, so "" is a real unconditional embedding;
- `VideoDenoiser`: a (2+1)D convolutional U-Net on latents (spatial 3x3 convs per frame, temporal
  3-tap convs per pixel, two resolutions), conditioned on the timestep and on the text through
  FiLM (scale/shift per block) from the pooled text plus one cross-attention layer at the low
  resolution (optionally at the full resolution too, `full_xattn`, and joint space-time self-attention
  at both, `self_attn`); a learned position embedding over (frame, y, x) lets it place things exactly,
  which is what memorizing a clip needs. It predicts v (the adapter converts to epsilon). The image twin
  is the same network with one frame.

`TinyModel` bundles the three with their config; `TinyAdapter` is its `DenoiserAdapter`. Checkpoints
are a folder with `config.json` and `model.safetensors` (`save_tiny` / `load_tiny`).
"""
from __future__ import annotations

import hashlib
import json
import math
import re
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..errors import BadInputError, DiffmemError
from ..io.atomic import atomic_output
from ..io.results import write_json
from .adapter import DenoiserAdapter, noise_from_output, timestep_tensor

FORMAT = "diffmem-tiny/1"
PAD, UNK, NULL = "<pad>", "<unk>", "<null>"


@dataclass
class TinyConfig:
    """Everything needed to rebuild a tiny model (stored as config.json next to the weights)."""

    kind: str = "video"            # "video" or "image"
    size: int = 32                 # frame side in pixels
    frames: int = 8                # frames per sample (1 for the image twin)
    fps: float = 4.0               # playback rate of generated videos (8 frames at 4 fps = the world's 2 s)
    latent_channels: int = 16
    patch: int = 4                 # autoencoder patch side: latents are size/patch on a side
    channels: tuple = (64, 128)    # denoiser width at full / half latent resolution
    blocks: int = 2                # residual blocks per resolution
    text_dim: int = 64
    text_layers: int = 2
    max_tokens: int = 12
    vocab: list = field(default_factory=list)
    latent_scale: float = 1.0
    num_train_timesteps: int = 1000
    beta_schedule: str = "squaredcos_cap_v2"
    # what the network outputs; `predict_noise` always returns epsilon. v (Salimans & Ho 2022) because with
    # the cosine schedule alpha-bar reaches 0.0035 at the first DDIM step: an epsilon network's small errors
    # there become large errors in x0 = (x_t - sqrt(1 - abar) eps) / sqrt(abar), and samples stay noisy.
    prediction_type: str = "v_prediction"
    # cross-attention also at the full latent resolution (after the down and the up blocks), with the
    # (frame, y, x) position embedding in its queries: where the prompt's words put things frame by frame
    # (a captioned motion's trajectory) at 4 px instead of the half resolution's 8 px. Its output starts at
    # zero, so a model without it continues exactly (`diffmem train --init`).
    full_xattn: bool = False
    # joint space-time self-attention at both resolutions (after the down blocks and after the middle
    # blocks): every latent position of every frame reads every other, so frame f can find where the
    # sprite was at f - 1 anywhere in the frame, which the 3-tap temporal convolutions at a fixed position
    # cannot. Outputs start at zero, so a model without it continues exactly (`diffmem train --init`).
    self_attn: bool = False

    @property
    def latent_size(self) -> int:
        return self.size // self.patch

    def as_dict(self) -> dict:
        d = asdict(self)
        d["channels"] = list(self.channels)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "TinyConfig":
        known = {k: v for k, v in d.items() if k in cls.__dataclass_fields__}
        if "channels" in known:
            known["channels"] = tuple(known["channels"])
        return cls(**known)

    def scheduler_config(self) -> dict:
        return {"num_train_timesteps": self.num_train_timesteps, "beta_schedule": self.beta_schedule,
                "clip_sample": False, "set_alpha_to_one": False, "steps_offset": 1,
                "prediction_type": "epsilon", "timestep_spacing": "leading"}


# ---- text --------------------------------------------------------------------------------------

_WORD = re.compile(r"[a-z0-9]+")


def words(text: str) -> list[str]:
    """Lower-case alphanumeric words: the tokenizer's only normalisation."""
    return _WORD.findall(text.lower())


def build_vocab(captions: Sequence[str]) -> list[str]:
    """Special tokens + every word of the captions, sorted (deterministic)."""
    return [PAD, UNK, NULL] + sorted({w for c in captions for w in words(c)})


def _attention_mask(padding: torch.Tensor, heads: int, queries: int) -> torch.Tensor:
    """A key-padding mask (B, keys), True = ignore, as the equivalent (B x heads, queries, keys) attention
    mask: the same attention, but torch checks a key_padding_mask through torch._check_with, whose first
    call imports torch.fx's symbolic shapes (0.5-0.7 s of a short command's start-up)."""
    b, k = padding.shape
    return padding[:, None, None, :].expand(b, heads, queries, k).reshape(b * heads, queries, k)


class WordTextEncoder(nn.Module):
    def __init__(self, vocab: Sequence[str], dim: int, layers: int, max_tokens: int):
        super().__init__()
        self.vocab = list(vocab)
        self.index = {w: i for i, w in enumerate(self.vocab)}
        self.max_tokens = max_tokens
        self.tok = nn.Embedding(len(self.vocab), dim)
        self.pos = nn.Parameter(torch.randn(max_tokens, dim) * 0.02)
        self.heads = 4
        layer = nn.TransformerEncoderLayer(dim, nhead=self.heads, dim_feedforward=2 * dim, dropout=0.0,
                                           batch_first=True, norm_first=True)
        self.body = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(dim)

    def token_ids(self, prompts: Sequence[str]) -> torch.Tensor:
        """(B, max_tokens) ids; "" -> the <null> token; unknown words -> <unk>; long prompts cut."""
        ids = torch.zeros(len(prompts), self.max_tokens, dtype=torch.long)
        for i, p in enumerate(prompts):
            toks = [self.index.get(w, self.index[UNK]) for w in words(p)][: self.max_tokens] or [self.index[NULL]]
            ids[i, : len(toks)] = torch.tensor(toks)
        return ids

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        mask = ids == 0
        h = self.tok(ids) + self.pos[: ids.shape[1]]
        h = self.body(h, mask=_attention_mask(mask, self.heads, ids.shape[1]))
        return self.norm(h).masked_fill(mask[..., None], 0.0)


# ---- frames <-> latents ------------------------------------------------------------------------

class FrameAutoencoder(nn.Module):
    """Linear patch autoencoder: each `patch` x `patch` RGB patch <-> `latent_channels` coefficients.

    (N, 3, S, S) in [-1, 1] <-> (N, C, S/patch, S/patch). The basis is the top principal components of
    the training patches (`fit`), so it is fitted in closed form in seconds, is the best linear code
    for its size in mean squared error, and decodes with one matrix product (cheap to differentiate
    through, which AMG does). Measured on the small world at 32 px, 16 of 48 components: RMS
    reconstruction error 0.016 (pixel values in [0, 1]), against 0.05 for a 4-layer conv autoencoder
    trained for 200 CPU-seconds.
    """

    def __init__(self, latent_channels: int = 16, patch: int = 4):
        super().__init__()
        self.patch = patch
        d = 3 * patch * patch
        if latent_channels > d:
            raise ValueError(f"latent_channels {latent_channels} > {d} values per {patch}x{patch} RGB patch")
        self.register_buffer("mean", torch.zeros(d))
        self.register_buffer("basis", torch.eye(d)[:latent_channels].clone())  # rows: orthonormal directions

    @torch.no_grad()
    def fit(self, frames: torch.Tensor) -> "FrameAutoencoder":
        """Principal components of all patches of `frames` (N, 3, S, S) in [-1, 1] (float64 for stability)."""
        u = F.pixel_unshuffle(frames.double(), self.patch)
        v = u.permute(0, 2, 3, 1).reshape(-1, u.shape[1])
        mean = v.mean(0)
        cov = (v - mean).T @ (v - mean) / max(1, len(v) - 1)
        _, vecs = torch.linalg.eigh(cov)
        basis = vecs.flip(1)[:, : self.basis.shape[0]].T
        # eigenvectors have no sign: make the largest entry of each positive, so a fit is reproducible
        idx = basis.abs().argmax(1, keepdim=True)
        basis = basis * torch.sign(basis.gather(1, idx))
        self.mean.copy_(mean.to(self.mean.dtype))
        self.basis.copy_(basis.to(self.basis.dtype))
        return self

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        u = F.pixel_unshuffle(x, self.patch) - self.mean[None, :, None, None]
        return torch.einsum("cd,ndhw->nchw", self.basis, u)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        u = torch.einsum("cd,nchw->ndhw", self.basis, z) + self.mean[None, :, None, None]
        return F.pixel_shuffle(u, self.patch)


# ---- the denoiser ------------------------------------------------------------------------------

def timestep_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
    """Sinusoidal embedding of integer timesteps (Vaswani et al. / DDPM)."""
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    args = t.float()[:, None] * freqs[None]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=1)


def _groups(c: int) -> int:
    return 8 if c % 8 == 0 else 1


class ResBlock(nn.Module):
    """Spatial 3x3 conv per frame, FiLM from (time, text), spatial conv, then a temporal 3-tap conv."""

    def __init__(self, cin: int, cout: int, emb_dim: int, temporal: bool):
        super().__init__()
        self.n1, self.c1 = nn.GroupNorm(_groups(cin), cin), nn.Conv2d(cin, cout, 3, padding=1)
        self.film = nn.Linear(emb_dim, 2 * cout)
        self.n2, self.c2 = nn.GroupNorm(_groups(cout), cout), nn.Conv2d(cout, cout, 3, padding=1)
        self.temporal = nn.Conv1d(cout, cout, 3, padding=1) if temporal else None
        if self.temporal is not None:  # start as identity: the block is first a per-frame block
            nn.init.zeros_(self.temporal.weight)
            nn.init.zeros_(self.temporal.bias)
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()

    def forward(self, x: torch.Tensor, emb: torch.Tensor, frames: int) -> torch.Tensor:
        h = self.c1(F.silu(self.n1(x)))
        scale, shift = self.film(F.silu(emb)).repeat_interleave(frames, 0)[..., None, None].chunk(2, dim=1)
        h = self.c2(F.silu(self.n2(h) * (1 + scale) + shift))
        if self.temporal is not None:
            bf, c, hh, ww = h.shape
            seq = h.reshape(bf // frames, frames, c, hh * ww).permute(0, 3, 2, 1).reshape(-1, c, frames)
            seq = self.temporal(seq).reshape(bf // frames, hh * ww, c, frames).permute(0, 3, 2, 1)
            h = h + seq.reshape(bf, c, hh, ww)
        return self.skip(x) + h


class CrossAttention(nn.Module):
    """Latent positions (all frames together) attend to the prompt's tokens."""

    def __init__(self, c: int, text_dim: int, heads: int = 4):
        super().__init__()
        self.norm = nn.GroupNorm(_groups(c), c)
        self.attn = nn.MultiheadAttention(c, heads, kdim=text_dim, vdim=text_dim, batch_first=True)
        self.out = nn.Linear(c, c)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)
        self.record: list | None = None  # a list: the attention distributions of each call are appended

    def forward(self, x: torch.Tensor, text: torch.Tensor, mask: torch.Tensor, frames: int,
                pos: torch.Tensor | None = None) -> torch.Tensor:
        bf, c, h, w = x.shape
        q = self.norm(x) if pos is None else self.norm(x) + pos[:frames].repeat(bf // frames, 1, 1, 1)
        q = q.reshape(bf // frames, frames, c, h * w).permute(0, 1, 3, 2).reshape(bf // frames, -1, c)
        a, probs = self.attn(q, text, text, attn_mask=_attention_mask(mask, self.attn.num_heads, q.shape[1]),
                             need_weights=self.record is not None)
        if self.record is not None:  # (B, frames x positions, tokens), heads averaged: `TinyAdapter.attention_probe`
            self.record.append(probs.detach())
        a = self.out(a).reshape(bf // frames, frames, h * w, c).permute(0, 1, 3, 2).reshape(bf, c, h, w)
        return x + a


class SelfAttention(nn.Module):
    """Joint space-time self-attention over all (frame, y, x) positions of a clip, with its own learned
    position embedding added to its input (video transformers' divided attention splits this into a
    spatial and a temporal pass; at 128-512 positions the joint one is cheap)."""

    def __init__(self, c: int, frames: int, side: int, heads: int = 4):
        super().__init__()
        self.norm = nn.GroupNorm(_groups(c), c)
        self.pos = nn.Parameter(torch.randn(frames, c, side, side) * 0.02)
        self.attn = nn.MultiheadAttention(c, heads, batch_first=True)
        self.out = nn.Linear(c, c)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def _attend(self, q: torch.Tensor) -> torch.Tensor:
        """`self.attn(q, q, q)` with its weights, through the fused attention kernel (5-6x faster at 512
        positions on a CPU), or written out where the kernel has no forward-mode autodiff (the anisotropy
        and sharpness detectors' Jacobian-vector products): the same arithmetic either way."""
        b, n, c = q.shape
        heads = self.attn.num_heads
        qkv = F.linear(q, self.attn.in_proj_weight, self.attn.in_proj_bias)
        qq, kk, vv = qkv.view(b, n, 3, heads, c // heads).permute(2, 0, 3, 1, 4)
        try:
            a = F.scaled_dot_product_attention(qq, kk, vv)
        except NotImplementedError:
            a = torch.softmax(qq @ kk.transpose(-1, -2) / math.sqrt(c // heads), dim=-1) @ vv
        return self.attn.out_proj(a.transpose(1, 2).reshape(b, n, c))

    def forward(self, x: torch.Tensor, frames: int) -> torch.Tensor:
        bf, c, h, w = x.shape
        q = self.norm(x) + self.pos[:frames].repeat(bf // frames, 1, 1, 1)
        q = q.reshape(bf // frames, frames, c, h * w).permute(0, 1, 3, 2).reshape(bf // frames, -1, c)
        a = self.out(self._attend(q)).reshape(bf // frames, frames, h * w, c).permute(0, 1, 3, 2).reshape(bf, c, h, w)
        return x + a


class VideoDenoiser(nn.Module):
    """eps(z_t, t, text) for latents (B, C, F, h, w); F = 1 is the image twin."""

    def __init__(self, cfg: TinyConfig):
        super().__init__()
        c0, c1 = cfg.channels
        emb = 4 * cfg.text_dim
        self.frames, self.side = cfg.frames, cfg.latent_size
        temporal = cfg.frames > 1
        self.t_mlp = nn.Sequential(nn.Linear(c0, emb), nn.SiLU(), nn.Linear(emb, emb))
        self.txt_mlp = nn.Sequential(nn.Linear(cfg.text_dim, emb), nn.SiLU(), nn.Linear(emb, emb))
        self.inp = nn.Conv2d(cfg.latent_channels, c0, 3, padding=1)
        self.pos = nn.Parameter(torch.zeros(cfg.frames, c0, self.side, self.side))
        self.down = nn.ModuleList([ResBlock(c0, c0, emb, temporal) for _ in range(cfg.blocks)])
        self.downsample = nn.Conv2d(c0, c1, 3, stride=2, padding=1)
        self.mid = nn.ModuleList([ResBlock(c1, c1, emb, temporal) for _ in range(cfg.blocks)])
        self.xattn = CrossAttention(c1, cfg.text_dim)
        self.mid2 = ResBlock(c1, c1, emb, temporal)
        self.upsample = nn.Conv2d(c1, c0, 3, padding=1)
        self.up = nn.ModuleList([ResBlock(2 * c0 if i == 0 else c0, c0, emb, temporal) for i in range(cfg.blocks)])
        if cfg.full_xattn:
            self.xattn_down, self.xattn_up = CrossAttention(c0, cfg.text_dim), CrossAttention(c0, cfg.text_dim)
        else:
            self.xattn_down = self.xattn_up = None
        self.out_norm = nn.GroupNorm(_groups(c0), c0)
        self.out = nn.Conv2d(c0, cfg.latent_channels, 3, padding=1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)
        self.c0 = c0
        # created last, so that the other layers' initialisation is the same with and without them
        if cfg.self_attn:
            self.sattn_full = SelfAttention(c0, cfg.frames, self.side)
            self.sattn_mid = SelfAttention(c1, cfg.frames, (self.side + 1) // 2)
        else:
            self.sattn_full = self.sattn_mid = None

    def forward(self, z: torch.Tensor, t: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        b, c, f, h, w = z.shape
        mask = (text.abs().sum(-1) == 0)
        mask[:, 0] = False  # never mask every key (an all-zero row would give NaN attention)
        pooled = text.sum(1) / (~mask).sum(1, keepdim=True).clamp(min=1)
        emb = self.t_mlp(timestep_embedding(t, self.c0).to(self.inp.weight.dtype)) + self.txt_mlp(pooled)
        x = z.permute(0, 2, 1, 3, 4).reshape(b * f, c, h, w)
        x = self.inp(x) + self.pos[:f].repeat(b, 1, 1, 1)
        for blk in self.down:
            x = blk(x, emb, f)
        if self.sattn_full is not None:
            x = self.sattn_full(x, f)
        if self.xattn_down is not None:
            x = self.xattn_down(x, text, mask, f, self.pos)
        skip = x
        x = self.downsample(x)
        for blk in self.mid:
            x = blk(x, emb, f)
        if self.sattn_mid is not None:
            x = self.sattn_mid(x, f)
        x = self.xattn(x, text, mask, f)
        x = self.mid2(x, emb, f)
        x = self.upsample(F.interpolate(x, scale_factor=2, mode="nearest"))
        x = torch.cat([x, skip], 1)
        for blk in self.up:
            x = blk(x, emb, f)
        if self.xattn_up is not None:
            x = self.xattn_up(x, text, mask, f, self.pos)
        x = self.out(F.silu(self.out_norm(x)))
        return x.reshape(b, f, c, h, w).permute(0, 2, 1, 3, 4)


class TinyModel(nn.Module):
    """Autoencoder + text encoder + denoiser, with their config."""

    def __init__(self, cfg: TinyConfig):
        super().__init__()
        self.cfg = cfg
        self.autoencoder = FrameAutoencoder(cfg.latent_channels, cfg.patch)
        self.text = WordTextEncoder(cfg.vocab, cfg.text_dim, cfg.text_layers, cfg.max_tokens)
        self.denoiser = VideoDenoiser(cfg)

    # frames uint8/float (B, F, S, S, 3) in [0, 1] <-> scaled latents (B, C, F, h, w)
    def encode_frames(self, frames: torch.Tensor) -> torch.Tensor:
        b, f = frames.shape[:2]
        x = frames.reshape(b * f, *frames.shape[2:]).permute(0, 3, 1, 2) * 2 - 1
        z = self.autoencoder.encode(x) * self.cfg.latent_scale
        return z.reshape(b, f, *z.shape[1:]).permute(0, 2, 1, 3, 4)

    def decode_latents(self, z: torch.Tensor) -> torch.Tensor:
        b, c, f, h, w = z.shape
        x = z.permute(0, 2, 1, 3, 4).reshape(b * f, c, h, w) / self.cfg.latent_scale
        img = self.autoencoder.decode(x)
        img = ((img + 1) / 2).clamp(0, 1)
        return img.reshape(b, f, 3, *img.shape[2:]).permute(0, 1, 3, 4, 2)

    def num_parameters(self) -> dict:
        # the autoencoder's weights are buffers (fitted, not trained by gradient): count them too
        return {name: sum(p.numel() for p in m.parameters()) + sum(b.numel() for b in m.buffers())
                for name, m in (("autoencoder", self.autoencoder), ("text", self.text), ("denoiser", self.denoiser))}


# ---- checkpoints -------------------------------------------------------------------------------

def save_tiny(model: TinyModel, folder: str | Path, extra: dict | None = None, half: bool = True) -> Path:
    """Write `folder/config.json` + `folder/model.safetensors` (float16 by default: half the size, and
    the float16 rounding of these small weights changes samples far less than the sampling noise). The
    config records the weights' sha256, and `load_tiny` checks it: a changed byte is refused, not loaded."""
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    state = {k: (v.half() if half and v.is_floating_point() else v).contiguous().cpu()
             for k, v in model.state_dict().items()}
    with atomic_output(folder / "model.safetensors", suffix=".safetensors") as tmp:
        save_file(state, tmp, metadata={"format": FORMAT})
    write_json(folder / "config.json", {"format": FORMAT, "config": model.cfg.as_dict(),
                                        "weights_sha256": file_sha256(folder / "model.safetensors"), **(extra or {})})
    return folder


def load_tiny(folder: str | Path, device: str | torch.device = "cpu", sha256: str | None = None) -> TinyModel:
    """Load a tiny-model folder (config.json + model.safetensors); the weights must match `sha256` if given,
    else the sha256 recorded when they were saved (folders of older versions have none: not checked)."""
    folder = Path(folder)
    return load_tiny_files(folder / "config.json", folder / "model.safetensors", device, sha256)


def load_tiny_files(cfg_path: str | Path, weights: str | Path, device: str | torch.device = "cpu",
                    sha256: str | None = None) -> TinyModel:
    """Load a tiny model from its config JSON and safetensors weights (the built-in ones are stored flat)."""
    from safetensors.torch import load_file

    cfg_path, weights = Path(cfg_path), Path(weights)
    for p in (cfg_path, weights):
        if not p.is_file():
            raise BadInputError(p, "missing (a tiny-model checkpoint is a config.json and a model.safetensors)")
    try:
        meta = json.loads(cfg_path.read_text(encoding="utf-8"))
    except ValueError as e:
        raise BadInputError(cfg_path, f"not valid JSON ({e})") from e
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        fmt = meta.get("format") if isinstance(meta, dict) else None
        raise BadInputError(cfg_path, f"not a diffmem tiny-model config (format {fmt!r}, expected {FORMAT!r})")
    sha256 = sha256 or meta.get("weights_sha256")  # given (built-in models), else the one saved with them
    if sha256 is not None:
        got = file_sha256(weights)
        if got != sha256:
            raise BadInputError(weights, f"sha256 mismatch: expected {sha256}, got {got} (file changed or corrupt)")
    model = TinyModel(TinyConfig.from_dict(meta["config"]))
    try:
        state = load_file(str(weights))
        model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in state.items()})
    except Exception as e:  # safetensors raises its own error types for truncated files
        raise BadInputError(weights, f"cannot load weights ({e})") from e
    return model.to(device).eval()


def file_sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


# ---- the adapter -------------------------------------------------------------------------------

class TinyAdapter(DenoiserAdapter):
    """A `TinyModel` seen as a `DenoiserAdapter`. Fixed output size: cfg.frames x cfg.size x cfg.size."""

    space = "latent"
    first_token_is_bos = False  # word tokens only (Wen et al.'s mitigation freezes CLIP's first token)

    def __init__(self, model: TinyModel, name: str = "tiny"):
        self.model = model.eval()
        self.cfg = model.cfg
        self.kind = self.cfg.kind
        self.name = name
        self._abar = self.alphas_cumprod.float()

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.model.parameters()).dtype

    def to_dtype(self, dtype: torch.dtype) -> "TinyAdapter":
        """Cast the network (weights and the autoencoder's basis) to `dtype`; returns self. float32, bfloat16
        and float16 all run on a CPU (float16 slowly: it is meant for CUDA)."""
        if dtype != self.dtype:
            self.model.to(dtype)
        return self

    def scheduler_config(self) -> dict:
        return self.cfg.scheduler_config()

    def encode_prompt(self, prompts: Sequence[str]) -> torch.Tensor:
        return self.model.text(self.model.text.token_ids(list(prompts)).to(self.device))

    def predict_noise(self, latents: torch.Tensor, t: int | torch.Tensor, embeddings: torch.Tensor) -> torch.Tensor:
        video = latents.ndim == 5
        z = latents if video else latents[:, :, None]
        if embeddings.shape[0] == 1 and z.shape[0] > 1:
            embeddings = embeddings.expand(z.shape[0], *embeddings.shape[1:])
        tt = timestep_tensor(t, z.shape[0], z.device)
        out = noise_from_output(self.model.denoiser(z, tt, embeddings), z, tt, self._abar, self.cfg.prediction_type)
        return out if video else out[:, :, 0]

    @contextmanager
    def attention_probe(self):
        """Within the block, every denoiser call appends to the yielded list its middle-resolution
        cross-attention distribution over the prompt's tokens, (B, query positions, tokens) with the heads
        averaged and padding at probability 0 (the layer Ren et al.'s detector reads; `detect.detectors`)."""
        layer = self.model.denoiser.xattn
        layer.record = []
        try:
            yield layer.record
        finally:
            layer.record = None

    def encode_frames(self, frames) -> torch.Tensor:
        """uint8 (or float in [0, 1]) frames (B, F, S, S, 3) -> latents in the sampler's space: (B, C, F, h, w),
        or (B, C, h, w) for an image model (its first frame)."""
        x = torch.as_tensor(frames)
        x = x.float() / 255.0 if x.dtype == torch.uint8 else x.float()
        with torch.no_grad():
            z = self.model.encode_frames(x.to(self.device, self.dtype))
        return z if self.kind == "video" else z[:, :, 0]

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        z = latents if latents.ndim == 5 else latents[:, :, None]
        # frames are float32 whatever the model's dtype (AMG differentiates float32 latents through here)
        return self.model.decode_latents(z.to(self.dtype)).float()

    def latent_shape(self, num_frames: int | None = None, height: int | None = None,
                     width: int | None = None) -> tuple[int, ...]:
        c, s = self.cfg.latent_channels, self.cfg.latent_size
        for what, got, want in (("num_frames", num_frames, self.cfg.frames), ("height", height, self.cfg.size),
                                ("width", width, self.cfg.size)):
            if got is not None and got != want and not (what == "num_frames" and self.kind == "image"):
                raise DiffmemError(f"{self.name} makes {self.cfg.frames} frames of {self.cfg.size}x{self.cfg.size} "
                                   f"only; {what}={got} is not possible")
        return (c, self.cfg.frames, s, s) if self.kind == "video" else (c, s, s)

    @property
    def fps(self) -> float:
        return self.cfg.fps
