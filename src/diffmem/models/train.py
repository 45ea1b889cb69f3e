"""Train a built-in tiny model (`tiny.TinyModel`) on a captioned set -- normally the synthetic world.

Two stages, one command (`diffmem train WORLD --out CKPT`):

1. the frame autoencoder: principal components of the 4x4 patches of every training frame (closed
   form, seconds); its latents are then scaled to unit variance (`latent_scale`);
2. the text encoder and latent denoiser together, v-prediction MSE at uniform timesteps, with
   10 % of captions replaced by the empty prompt so classifier-free guidance works, AdamW with a
   cosine learning-rate decay and an exponential moving average (EMA) of the weights, which is what
   is saved.

Items are drawn uniformly over *files*, so a clip copied 24 times is seen 24 times as often: that is
how duplication causes memorization, and why the model memorizes the world's duplicated clips.
Videos are read as `frames` frames over their duration (the world's 16 frames at 8 fps -> 8 at 4 fps),
or, with `fps`, as their first `frames` frames at that rate (8 at 8 fps -> the first second), images as static clips (the video model) or single frames (the image twin, which also sees the
first frame of every video under that video's caption).

Resumable: a training state (`train_state.pt`: stage, step, weights, optimiser, RNG) is written
atomically every `save_every` steps and on Ctrl-C; running the same command again continues from it.
When training ends the folder holds `config.json` + `model.safetensors` (float16 EMA weights) and the
state file is removed; running the command once more is then a no-op.
"""
from __future__ import annotations

import copy
import hashlib
import json
import math
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from ..data.manifest import load_manifest, manifest_file
from ..errors import BadInputError, DiffmemError, Skipped
from ..io.atomic import atomic_output
from ..io.lock import writes_folder
from ..io.results import environment, read_json
from ..io.video import read_frames
from .tiny import TinyConfig, TinyModel, build_vocab, file_sha256, load_tiny, save_tiny

STATE = "train_state.pt"
# architecture options a run may add to its --init model, with the weights they add: their layers start
# as identity, so the continued model begins exactly where the --init model ended
GROWABLE = {"full_xattn": ("denoiser.xattn_down.", "denoiser.xattn_up."),
            "self_attn": ("denoiser.sattn_full.", "denoiser.sattn_mid.")}


@dataclass
class TrainConfig:
    """Everything that changes the trained weights (stored with the checkpoint)."""

    kind: str = "video"
    seed: int = 0
    size: int = 32
    frames: int = 8
    channels: tuple = (48, 96)
    blocks: int = 2
    text_dim: int = 64
    latent_channels: int = 16
    steps: int = 2500
    batch: int = 16
    lr: float = 1e-3
    min_lr: float = 1e-4
    warmup: int = 100
    prediction: str = "v_prediction"   # or "epsilon"
    cond_dropout: float = 0.1
    ema: float = 0.999
    save_every: int = 100
    init: str | None = None  # sha256 of the weights training continued from (`train_tiny(init=...)`), if any
    # frame rate of the clips: None spreads `frames` over each video's duration (rate = frames / duration);
    # a rate reads the first `frames` frames at it. Optical flow, hence the motion audit, follows motion
    # only when it moves little between frames: the large world's model is trained at its clips' 8 fps.
    fps: float | None = None
    # cross-attention at the full latent resolution too (`TinyConfig.full_xattn`); a model without it can
    # be continued with it (`--init`: the new layers start as identity)
    full_xattn: bool = False
    # joint space-time self-attention at both resolutions (`TinyConfig.self_attn`); may be added with `--init`
    self_attn: bool = False
    # weight of the moving parts in the loss (`motion_weighted_mse`); 0 is plain MSE. In the large world a
    # small sprite moves over a still background that fills most of the frame, so plain MSE spends most
    # of the model on the background: the models copied backgrounds and props but not the moving sprite.
    motion_weight: float = 0.0

    def as_dict(self) -> dict:
        d = asdict(self)
        d["channels"] = list(self.channels)
        for optional in ("init", "fps", "full_xattn", "self_attn", "motion_weight"):
            if not d[optional]:
                del d[optional]  # configs of runs without them read as they always did
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        d = {k: v for k, v in d.items() if k in cls.__dataclass_fields__}
        if "channels" in d:
            d["channels"] = tuple(d["channels"])
        return cls(**d)


@dataclass
class TrainData:
    """Decoded training clips: uint8 (N, F, S, S, 3), their captions and ids."""

    frames: np.ndarray
    captions: list[str]
    ids: list[str]
    skipped: list[Skipped] = field(default_factory=list)


def load_training_data(world: str | Path, cfg: TrainConfig, progress: bool = True) -> TrainData:
    """Read every item of a world folder (its train.parquet) or any manifest, at the model's size.

    Unreadable items are skipped and reported, the rest is used.
    """
    manifest = load_manifest(world)
    skipped = list(manifest.skipped)
    frames, captions, ids = [], [], []
    for item in tqdm(manifest.items, desc="reading training items", disable=not progress, leave=False):
        try:
            if item.kind == "image":
                arr = read_frames(item.path, size=(cfg.size, cfg.size)).array[:1]
                clips = [np.repeat(arr, cfg.frames, axis=0)]
            else:
                if cfg.fps:
                    arr = read_frames(item.path, fps=cfg.fps, size=(cfg.size, cfg.size)).array[:cfg.frames]
                else:
                    arr = read_frames(item.path, num_frames=cfg.frames, size=(cfg.size, cfg.size)).array
                if len(arr) < cfg.frames:  # very short clip: hold its last frame
                    arr = np.concatenate([arr, np.repeat(arr[-1:], cfg.frames - len(arr), 0)])
                clips = [arr]
        except BadInputError as e:
            skipped.append(Skipped(item.id, str(item.path), e.reason))
            continue
        if cfg.kind == "image":
            clips = [c[:1] for c in clips]
        for c in clips:
            frames.append(c)
            captions.append(item.caption)
            ids.append(item.id)
    if not frames:
        raise BadInputError(world, "no usable training items")
    return TrainData(np.stack(frames), captions, ids, skipped)


def motion_map(z0: torch.Tensor) -> torch.Tensor:
    """(B, C, F, h, w) clean latents -> (B, 1, F, h, w): how far each position departs from its mean over
    the clip's frames (L2 over channels), divided by that sample's mean departure; zeros for a still clip
    (or an image). The parts of a clip that move get the most, its still background none."""
    dev = (z0 - z0.mean(2, keepdim=True)).pow(2).sum(1, keepdim=True).sqrt()
    mean = dev.flatten(1).mean(1).view(-1, 1, 1, 1, 1)
    return torch.where(mean > 1e-6, dev / mean.clamp(min=1e-6), torch.zeros_like(dev))


def motion_weighted_mse(pred: torch.Tensor, target: torch.Tensor, z0: torch.Tensor, weight: float) -> torch.Tensor:
    """mean((1 + weight * motion_map(z0)) * (pred - target)^2) over every element: the diffusion loss with
    the moving parts counted (1 + weight x their relative motion) times. weight 0 is `F.mse_loss`."""
    if weight == 0:  # the exact kernel the committed checkpoints were trained with
        return F.mse_loss(pred, target)
    return ((1 + weight * motion_map(z0)) * (pred - target).pow(2)).mean()


def _to_float(frames_u8: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(frames_u8).float() / 255.0


def _lr_at(step: int, total: int, lr: float, min_lr: float, warmup: int) -> float:
    if step < warmup:
        return lr * (step + 1) / warmup
    p = (step - warmup) / max(1, total - warmup)
    return min_lr + 0.5 * (lr - min_lr) * (1 + math.cos(math.pi * min(1.0, p)))


def _atomic_torch_save(obj, path: Path) -> None:
    with atomic_output(path) as tmp:
        torch.save(obj, tmp)


def _world_info(world: Path) -> dict:
    """Seed and size of a diffmem world (from its marker), else just the path."""
    marker = Path(world) / ".diffmem-world.json"
    info = {"path": str(world)}
    src = manifest_file(world)
    if src.is_file():
        info["manifest_sha256"] = file_sha256(src)
    if marker.is_file():
        try:
            info.update({k: v for k, v in json.loads(marker.read_text()).items() if k in ("seed", "size", "format")})
        except ValueError:
            pass
    return info


@writes_folder("train")
def train_tiny(world: str | Path, out: str | Path, cfg: TrainConfig = TrainConfig(), *,
               device: str | torch.device = "cpu", progress: bool = True, log=print,
               command: str | None = None, init: str | Path | None = None) -> dict:
    """Train (or resume training) a tiny model on `world`; write the checkpoint folder `out`.

    init: a finished tiny-model folder of the same architecture, trained on the same captions: training
    starts from its weights (and its autoencoder and EMA) for `cfg.steps` more steps with a fresh
    learning-rate schedule, instead of from scratch (a long run done in parts; its sha256 is recorded).
    Returns a summary dict (also stored in out/config.json under "training").
    """
    world, out = Path(world), Path(out)
    start = None
    if init is not None:
        start = load_tiny(init)
        cfg = replace(cfg, init=file_sha256(Path(init) / "model.safetensors"))
    out.mkdir(parents=True, exist_ok=True)
    state_path = out / STATE
    if (out / "model.safetensors").is_file() and (out / "config.json").is_file() and not state_path.exists():
        meta = read_json(out / "config.json")
        done = meta.get("training", {})
        if done.get("config") == cfg.as_dict():
            log(f"{out}: already trained with these settings; nothing to do")
            return done
        raise DiffmemError(f"{out} already holds a trained model with other settings; choose another --out")

    torch.manual_seed(cfg.seed)
    data = load_training_data(world, cfg, progress)
    for s in data.skipped:
        log(f"skipped {s.id} ({s.path}): {s.reason}")
    vocab = build_vocab(data.captions)
    tcfg = TinyConfig(kind=cfg.kind, size=cfg.size, frames=cfg.frames if cfg.kind == "video" else 1,
                      channels=tuple(cfg.channels), blocks=cfg.blocks, text_dim=cfg.text_dim, vocab=vocab,
                      latent_channels=cfg.latent_channels, prediction_type=cfg.prediction,
                      full_xattn=cfg.full_xattn, self_attn=cfg.self_attn, **({"fps": float(cfg.fps)} if cfg.fps else {}))
    model = TinyModel(tcfg).to(device)
    if start is not None:
        mine, theirs = tcfg.as_dict(), start.cfg.as_dict()
        # the frame rate is not architecture: a model can continue at another rate (it then learns that one)
        # nor is adding attention layers (`GROWABLE`): they start as identity
        grows = [k for k in GROWABLE if mine[k] and not theirs.get(k)]
        differ = [k for k in mine if k not in ("latent_scale", "fps", *grows) and mine[k] != theirs.get(k)]
        if differ:
            raise DiffmemError(f"{init}: --init model differs from this run in {', '.join(differ)} "
                               "(it must have the same architecture and the same training captions)")
    ema = None
    gen = torch.Generator().manual_seed(cfg.seed)
    stage, step, elapsed = "autoencoder", 0, {"autoencoder": 0.0, "denoiser": 0.0}
    den_params = list(model.denoiser.parameters()) + list(model.text.parameters())
    opt = torch.optim.AdamW(den_params, lr=cfg.lr, weight_decay=0.0)

    if state_path.exists():
        st = torch.load(state_path, map_location="cpu", weights_only=True)
        if st["train_config"] != cfg.as_dict() or st["vocab"] != vocab:
            raise DiffmemError(f"{state_path} was written by a run with other settings or data; "
                               "use the same command, or another --out")
        model.load_state_dict(st["model"])
        model.cfg.latent_scale = float(st["latent_scale"])
        opt.load_state_dict(st["opt"])
        if st.get("ema") is not None:
            ema = copy.deepcopy(model)
            ema.load_state_dict(st["ema"])
        gen.set_state(st["gen"])
        torch.set_rng_state(st["torch_rng"])
        stage, step, elapsed = st["stage"], int(st["step"]), st["elapsed"]
        log(f"resuming {out} at stage {stage}, step {step}")

    gen_mark = gen.get_state()  # the generator at the start of the current step (what a resume must replay)

    def save_state():
        _atomic_torch_save({
            "train_config": cfg.as_dict(), "vocab": vocab, "model": model.state_dict(),
            "latent_scale": model.cfg.latent_scale, "opt": opt.state_dict(),
            "ema": None if ema is None else ema.state_dict(), "gen": gen_mark,
            "torch_rng": torch.get_rng_state(), "stage": stage, "step": step, "elapsed": elapsed}, state_path)

    clips = data.frames
    n = len(clips)
    try:
        if stage == "autoencoder" and start is not None:  # continue from --init: its weights and autoencoder
            missing, unexpected = model.load_state_dict(start.state_dict(), strict=False)
            new = tuple(prefix for k in grows for prefix in GROWABLE[k])
            if unexpected or any(not k.startswith(new) for k in missing):
                raise DiffmemError(f"{init}: weights do not fit this architecture "
                                   f"(missing {missing[:3]}, unexpected {unexpected[:3]})")
            model.cfg.latent_scale = start.cfg.latent_scale
            stage, step = "denoiser", 0
            gen_mark = gen.get_state()
            ema = copy.deepcopy(model)
            save_state()
            log(f"starting from {init}")
        # ---- stage 1: frame autoencoder (closed-form PCA of the training patches) ------------
        if stage == "autoencoder":
            t0 = time.time()
            flat = clips.reshape(-1, cfg.size, cfg.size, 3)
            x = _to_float(flat).permute(0, 3, 1, 2) * 2 - 1
            model.autoencoder.fit(x)
            with torch.no_grad():
                zs = model.autoencoder.encode(x)
                rec = ((model.autoencoder.decode(zs) + 1) / 2).clamp(0, 1)
            ae_rms = float((rec - (x + 1) / 2).pow(2).mean().sqrt())
            model.cfg.latent_scale = float(1.0 / zs.std())
            del x, zs, rec
            stage, step = "denoiser", 0
            gen_mark = gen.get_state()
            ema = copy.deepcopy(model)
            elapsed["autoencoder"] += time.time() - t0
            elapsed["autoencoder_rms"] = ae_rms
            save_state()
            log(f"autoencoder fitted: reconstruction RMS {ae_rms:.4f}, latent scale {model.cfg.latent_scale:.4f}")

        # ---- stage 2: text encoder + denoiser --------------------------------------------------
        model.autoencoder.eval()
        with torch.no_grad():
            latents = torch.cat([model.encode_frames(_to_float(clips[i:i + 64]).to(device)) for i in range(0, n, 64)])
        if ema is None:
            ema = copy.deepcopy(model)
        ids = model.text.token_ids(data.captions).to(device)
        null_ids = model.text.token_ids([""]).to(device)
        sched_cfg = model.cfg.scheduler_config()
        import diffusers

        abar = diffusers.DDPMScheduler.from_config(sched_cfg).alphas_cumprod.float().to(device)
        model.denoiser.train()
        model.text.train()
        bar = tqdm(total=cfg.steps, initial=step, desc="denoiser", disable=not progress)
        last = float("nan")
        while step < cfg.steps:
            t0 = time.time()
            gen_mark = gen.get_state()
            idx = torch.randint(0, n, (cfg.batch,), generator=gen)
            z0 = latents[idx]
            noise = torch.randn(z0.shape, generator=gen).to(device)
            t = torch.randint(0, cfg_num_t(sched_cfg), (cfg.batch,), generator=gen).to(device)
            a = abar[t].view(-1, 1, 1, 1, 1)
            zt = a.sqrt() * z0 + (1 - a).sqrt() * noise
            tok = ids[idx]
            drop = torch.rand(cfg.batch, generator=gen).to(device) < cfg.cond_dropout
            tok = torch.where(drop[:, None], null_ids.expand_as(tok), tok)
            pred = model.denoiser(zt, t, model.text(tok))
            target = a.sqrt() * noise - (1 - a).sqrt() * z0 if model.cfg.prediction_type == "v_prediction" else noise
            loss = motion_weighted_mse(pred, target, z0, cfg.motion_weight)
            for g in opt.param_groups:
                g["lr"] = _lr_at(step, cfg.steps, cfg.lr, cfg.min_lr, cfg.warmup)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(den_params, 1.0)
            opt.step()
            decay = min(cfg.ema, (1 + step) / (10 + step))
            with torch.no_grad():
                for pe, pm in zip(list(ema.denoiser.parameters()) + list(ema.text.parameters()), den_params):
                    pe.lerp_(pm, 1 - decay)
            step += 1
            last = 0.98 * last + 0.02 * loss.item() if math.isfinite(last) else loss.item()
            elapsed["denoiser"] += time.time() - t0
            bar.update(1)
            bar.set_postfix(loss=f"{last:.4f}")
            if step % cfg.save_every == 0:
                gen_mark = gen.get_state()
                save_state()
                if not progress:
                    log(f"step {step}/{cfg.steps} loss {last:.4f} ({elapsed['denoiser']:.0f} s)")
        bar.close()
    except KeyboardInterrupt:
        save_state()
        raise

    ema.autoencoder.load_state_dict(model.autoencoder.state_dict())
    ema.cfg.latent_scale = model.cfg.latent_scale
    summary = {
        "config": cfg.as_dict(), "world": _world_info(world), "n_training_clips": n,
        # the decoded clips the model saw: tells apart two worlds with the same metadata but other pixels
        "data_sha256": hashlib.sha256(np.ascontiguousarray(clips).tobytes()).hexdigest(),
        "n_skipped": len(data.skipped), "vocab_size": len(vocab), "final_loss": last,
        "seconds": {k: round(v, 1) for k, v in elapsed.items() if k in ("autoencoder", "denoiser")},
        "autoencoder_rms": elapsed.get("autoencoder_rms"),
        "parameters": ema.num_parameters(), "device": str(device), "torch_threads": torch.get_num_threads(),
        "command": command, "environment": environment(),
    }
    save_tiny(ema, out, extra={"training": summary})
    state_path.unlink(missing_ok=True)
    log(f"saved {out}: {n} clips, loss {last:.4f}, "
        f"{summary['seconds']['autoencoder']:.0f} s autoencoder + {summary['seconds']['denoiser']:.0f} s denoiser")
    return summary


def cfg_num_t(sched_cfg: dict) -> int:
    return int(sched_cfg["num_train_timesteps"])
