"""Inference-time mitigations other than AMG (`diffmem.guidance`), as their authors run them.

Each acts at one of the three places a generation can be changed without retraining:

- the guided prediction, per step (a sampler hook, like AMG): `cfg_schedule` — Jain et al. (CVPR 2025),
  classifier-free guidance withheld or reversed until a transition point;
- the cross-attention, per step (a wrapped adapter): `attention` — Ren et al. (ECCV 2024), padding keys masked
  and the beginning token's logit scaled up on the conditional branch (diffusers UNets);
- the prompt embedding, before sampling (a wrapped adapter): `embedding` — Wen et al. (ICLR 2024),
  the conditional embedding optimised to shrink the text-conditional difference at the first step;
- the initial noise, before sampling (a wrapped adapter): `noise` — Jeon et al. (ICML 2025), SAIL, noises
  searched for a small and flat text-conditional difference.

Formulas, constants and where they were read in the authors' code: docs/related-methods.md.
"""
from .attention import REN_C1, CrossAttentionReweight, reweight_logits
from .cfg_schedule import JAIN_PRESETS, DynamicTransition, StaticTransition
from .embedding import EmbeddingOverride, WenConfig, optimize_embedding
from .noise import NoiseOverride, SAILConfig, optimize_noise, sail_loss

__all__ = ["StaticTransition", "DynamicTransition", "JAIN_PRESETS", "WenConfig", "optimize_embedding",
           "EmbeddingOverride", "SAILConfig", "optimize_noise", "sail_loss", "NoiseOverride",
           "CrossAttentionReweight", "reweight_logits", "REN_C1"]
