"""Adapters for diffusers pipelines loaded from a local folder (no hub access).

Supported (`SUPPORTED`): StableDiffusionPipeline (images), TextToVideoSDPipeline (ModelScope-style video)
and AnimateDiffPipeline (video). All three share the Stable Diffusion recipe -- a CLIP text encoder,
an AutoencoderKL and an epsilon- (or v-) predicting UNet called as `unet(x, t, encoder_hidden_states=e)` --
so one class serves them; `kind` says whether the UNet sees (B, C, h, w) images or (B, C, F, h, w) videos.

What the adapter computes is exactly what the pipeline computes inside its `__call__` (same text
embeddings from the pipeline's own `encode_prompt`, same UNet call, same latent scaling), which the
tests check on tiny random components. Not carried over: IP-adapters, LoRA scales, FreeInit/FreeNoise,
guidance rescale, the SD safety checker (not loaded: diffmem looks at raw samples).

CogVideoXPipeline (DiT text-to-video) has its own adapter (`OWN_ADAPTER`: cogvideox.CogVideoXAdapter),
which `load_diffusers` returns for a CogVideoX folder: the pipeline's T5 embeddings (at the transformer's
max_text_seq_length), its transformer on (B, F, C, h, w) latents (permuted in and out of diffmem's
(B, C, F, h, w)) with the pipeline's rotary embeddings, v converted to epsilon, its 3-D VAE's
decode_latents, and the scheduler's own zero-SNR, SNR-shifted alpha-bar (last value clamped to 2**-24).
Not carried over there: use_dynamic_cfg, LoRA scales, CogVideoXDPMScheduler as sampler ("default" then
runs CogVideoXDDIMScheduler over the same schedule), CogVideoX 1.5's latent-frame padding (frame counts
needing it are refused), the image-/video-to-video pipelines.
"""
from __future__ import annotations

import contextlib
import json
import warnings
from pathlib import Path
from typing import Sequence

import torch

from ..errors import BadInputError, DiffmemError
from .adapter import DenoiserAdapter, check_prediction_type, noise_from_output
from .cogvideox import CogVideoXAdapter

#: pipeline class name -> kind of its samples
SUPPORTED = {
    "StableDiffusionPipeline": "image",
    "TextToVideoSDPipeline": "video",
    "AnimateDiffPipeline": "video",
}

#: pipeline class name -> adapter class, for pipelines with an adapter of their own (not the Stable Diffusion
#: recipe); `load_diffusers` loads these too
OWN_ADAPTER = {"CogVideoXPipeline": CogVideoXAdapter}

#: every pipeline class `load_diffusers` loads
LOADABLE = (*SUPPORTED, *OWN_ADAPTER)

#: default number of frames when none is asked for (the pipelines' own defaults)
_DEFAULT_FRAMES = {"TextToVideoSDPipeline": 16, "AnimateDiffPipeline": 16}


#: Ren et al.'s cross-attention layer for their detector (mode "E": index 3 of SD v1.x's 16; docs/related-methods.md)
REN_LAYER = 3


class _ExplicitCrossAttention:
    """A cross-attention processor that computes softmax(q k^T / sqrt(d) + mask) explicitly (not a fused
    kernel), so that the probabilities can be read (`record`: their mean over heads, one list entry per
    call) and the logits changed before the softmax (`edit(logits (rows, heads, positions, tokens), rows
    per sample) -> logits`: Ren et al.'s mitigation). Without `edit` it returns the layer's usual output."""

    def __init__(self, adapter, record: list | None = None, edit=None):
        self.adapter, self.record, self.edit = adapter, record, edit

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, temb=None, *args, **kwargs):
        if encoder_hidden_states is None or hidden_states.ndim != 3:
            raise DiffmemError("diffmem reads text cross-attention on (batch, positions, width) inputs only")
        rows = hidden_states.shape[0]
        ctx = attn.norm_encoder_hidden_states(encoder_hidden_states) if attn.norm_cross else encoder_hidden_states
        q = attn.head_to_batch_dim(attn.to_q(hidden_states))
        k = attn.head_to_batch_dim(attn.to_k(ctx))
        v = attn.head_to_batch_dim(attn.to_v(ctx))
        logits = attn.scale * torch.bmm(q.float(), k.float().transpose(-1, -2))  # (rows * heads, positions, tokens)
        if attention_mask is not None:
            logits = logits + attn.prepare_attention_mask(attention_mask, ctx.shape[1], rows).float()
        b = getattr(self.adapter, "_batch", rows) or rows
        per = rows // b if rows % b == 0 else 1
        if self.edit is not None:
            logits = self.edit(logits.reshape(rows, attn.heads, *logits.shape[1:]), per).reshape(logits.shape)
        probs = logits.softmax(-1)
        if self.record is not None:
            mean = probs.reshape(rows, attn.heads, *probs.shape[1:]).mean(1).detach()
            self.record.append(mean.reshape(b, -1, mean.shape[-1]) if rows % b == 0 else mean)
        out = attn.batch_to_head_dim(torch.bmm(probs.to(v.dtype), v))
        out = attn.to_out[1](attn.to_out[0](out))
        if attn.residual_connection:
            out = out + hidden_states
        return out / attn.rescale_output_factor


class DiffusersAdapter(DenoiserAdapter):
    """A Stable-Diffusion-family pipeline (image or video) seen as a `DenoiserAdapter`.

    Build it from a pipeline object (`DiffusersAdapter(pipe)`) or a local folder
    (`load_diffusers(path)`).
    """

    space = "latent"

    def __init__(self, pipe, name: str = ""):
        cls = type(pipe).__name__
        if cls not in SUPPORTED:
            raise DiffmemError(f"{cls} is not supported; supported pipelines: {', '.join(SUPPORTED)}")
        self.pipe = pipe
        self.pipeline_class = cls
        self.kind = SUPPORTED[cls]
        self.name = name or cls
        self.unet = pipe.unet
        self.vae = pipe.vae
        self.vae_scale_factor = 2 ** (len(self.vae.config.block_out_channels) - 1)
        self._per_frame_text = type(self.unet).__name__ == "UNetMotionModel"
        self._prediction_type = check_prediction_type(self.name, pipe.scheduler.config.get("prediction_type", "epsilon"))

    # ---- interface ---------------------------------------------------------------------------
    @property
    def device(self) -> torch.device:
        return self.unet.device

    @property
    def dtype(self) -> torch.dtype:
        return self.unet.dtype

    @property
    def default_scheduler(self) -> str:
        return type(self.pipe.scheduler).__name__

    def scheduler_config(self) -> dict:
        return dict(self.pipe.scheduler.config)

    def encode_prompt(self, prompts: Sequence[str]) -> torch.Tensor:
        # The pipeline's own text path (tokenise to model_max_length, CLIP last hidden state), so that
        # "" gives exactly the unconditional embedding the pipeline uses for guidance.
        emb, _ = self.pipe.encode_prompt(list(prompts), self.device, 1, False)
        return emb

    def predict_noise(self, latents: torch.Tensor, t: int | torch.Tensor, embeddings: torch.Tensor) -> torch.Tensor:
        if embeddings.shape[0] == 1 and latents.shape[0] > 1:
            embeddings = embeddings.expand(latents.shape[0], *embeddings.shape[1:])
        if self._per_frame_text:
            # UNetMotionModel runs its 2-D layers on (B*F) frames and wants one text embedding per frame,
            # which AnimateDiffPipeline makes with repeat_interleave over frames.
            embeddings = embeddings.repeat_interleave(latents.shape[2], dim=0)
        self._batch = latents.shape[0]  # the probe folds frames run as batch rows back into their sample
        out = self.unet(latents, t, encoder_hidden_states=embeddings, return_dict=False)[0]
        return noise_from_output(out, latents, t, self.alphas_cumprod, self._prediction_type)

    def cross_attention_layers(self) -> list:
        """The UNet's cross-attention modules (attn2 of its transformer blocks), in Ren et al.'s order:
        down blocks, then the middle block, then up blocks (16 for Stable Diffusion v1.x)."""
        found = []
        for part in ("down_blocks", "mid_block", "up_blocks"):
            mod = getattr(self.unet, part, None)
            if mod is not None:
                found += [m for m in mod.modules() if type(m).__name__ == "Attention"
                          and getattr(m, "is_cross_attention", False)]
        return found

    @contextlib.contextmanager
    def attention_probe(self, layer: int = REN_LAYER):
        """Within the block, every denoiser call appends to the yielded list the cross-attention
        distribution of one layer over the prompt's tokens, (B, query positions, tokens) with the heads
        averaged (video: every frame's positions in one row). `layer` indexes `cross_attention_layers()`;
        the default 3 is Ren et al.'s mode "E" layer for Stable Diffusion v1.x (down_blocks[1].attentions[1],
        the second resolution); a UNet with fewer layers uses its last. The layer's output is unchanged."""
        layers = self.cross_attention_layers()
        if not layers:
            raise DiffmemError(f"{self.name} has no cross-attention layer to read")
        attn = layers[min(int(layer), len(layers) - 1)]
        record: list = []
        before = attn.get_processor()
        attn.set_processor(_ExplicitCrossAttention(self, record=record))
        try:
            yield record
        finally:
            attn.set_processor(before)

    @contextlib.contextmanager
    def attention_edit(self, edit):
        """Within the block, every cross-attention layer's logits pass through `edit(logits (rows, heads,
        positions, tokens), rows per sample)` before the softmax (`mitigate.attention`)."""
        layers = self.cross_attention_layers()
        if not layers:
            raise DiffmemError(f"{self.name} has no cross-attention layer")
        before = [a.get_processor() for a in layers]
        for a in layers:
            a.set_processor(_ExplicitCrossAttention(self, edit=edit))
        try:
            yield
        finally:
            for a, p in zip(layers, before):
                a.set_processor(p)

    def token_lengths(self, prompts: Sequence[str]) -> list[int]:
        """Per prompt: its tokens counted as the text encoder sees them, beginning and first end token
        included, padding not (Ren et al.'s l)."""
        tok = self.pipe.tokenizer
        enc = tok(list(prompts), padding="max_length", max_length=tok.model_max_length, truncation=True)
        return [int(sum(m)) for m in enc["attention_mask"]]

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        z = latents / self.vae.config.scaling_factor
        if self.kind == "video":
            b, c, f, h, w = z.shape
            z = z.permute(0, 2, 1, 3, 4).reshape(b * f, c, h, w)
        else:
            b, f = z.shape[0], 1
        img = self.vae.decode(z.to(self.vae.dtype), return_dict=False)[0].float()
        img = (img / 2 + 0.5).clamp(0, 1)  # the pipelines' postprocessing of [-1, 1] output
        img = img.reshape(b, f, *img.shape[1:])
        return img.permute(0, 1, 3, 4, 2)

    def latent_shape(self, num_frames: int | None = None, height: int | None = None,
                     width: int | None = None) -> tuple[int, ...]:
        default = int(self.unet.config.sample_size) * self.vae_scale_factor
        h = (height or default) // self.vae_scale_factor
        w = (width or default) // self.vae_scale_factor
        c = int(self.unet.config.in_channels)
        if self.kind == "video":
            # an AnimateDiff motion module has learned positions for at most this many frames: the default
            # is the pipeline's 16 or that, whichever is fewer; an explicit larger count is refused
            most = getattr(self.unet.config, "motion_max_seq_length", None)
            frames = int(num_frames or min(_DEFAULT_FRAMES[self.pipeline_class], int(most or 10**9)))
            if most is not None and frames > int(most):
                raise BadInputError(self.name or self.pipeline_class,
                                    f"its motion adapter takes at most {most} frames (motion_max_seq_length); "
                                    f"asked for {frames}: pass --frames {most} or fewer")
            return (c, frames, h, w)
        return (c, h, w)


@contextlib.contextmanager
def _quiet_diffusers():
    from diffusers.utils import logging as dlog

    level = dlog.get_verbosity()
    dlog.set_verbosity_error()
    try:
        yield
    finally:
        dlog.set_verbosity(level)


def pipeline_class_of(path: str | Path) -> str | None:
    """The `_class_name` in a pipeline folder's model_index.json, or None if it is not a pipeline folder."""
    index = Path(path) / "model_index.json"
    if not index.is_file():
        return None
    try:
        return json.loads(index.read_text(encoding="utf-8")).get("_class_name")
    except (OSError, ValueError) as e:
        raise BadInputError(index, f"unreadable model_index.json ({e})") from e


def load_diffusers(path: str | Path, device: str | torch.device = "cpu",
                   dtype: torch.dtype = torch.float32) -> DenoiserAdapter:
    """Load a saved pipeline folder (as written by `save_pretrained`) onto `device`, offline: a
    `DiffusersAdapter`, or a `CogVideoXAdapter` for a CogVideoXPipeline folder."""
    import diffusers

    path = Path(path)
    cls_name = pipeline_class_of(path)
    if cls_name is None:
        raise BadInputError(path, "not a diffusers pipeline folder (no model_index.json)")
    if cls_name not in LOADABLE:
        raise BadInputError(path, f"pipeline class {cls_name} is not supported (supported: {', '.join(LOADABLE)})")
    kwargs = {"local_files_only": True, "torch_dtype": dtype}
    if cls_name == "StableDiffusionPipeline":
        kwargs.update(safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    with _quiet_diffusers(), warnings.catch_warnings():
        # newer diffusers call it `dtype` and warn about `torch_dtype`; older ones only know `torch_dtype`
        warnings.simplefilter("ignore", FutureWarning)
        try:
            pipe = getattr(diffusers, cls_name).from_pretrained(str(path), **kwargs)
        except (OSError, ValueError, KeyError) as e:
            raise BadInputError(path, f"cannot load {cls_name}: {e}") from e
    pipe = pipe.to(device)
    pipe.set_progress_bar_config(disable=True)
    if cls_name in OWN_ADAPTER:
        return OWN_ADAPTER[cls_name](pipe, name=str(path))
    return DiffusersAdapter(pipe, name=str(path))
