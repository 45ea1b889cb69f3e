"""Ren et al. (ECCV 2024), inference-time mitigation through cross-attention: in every cross-attention layer
(text keys), at every step,

1. the keys after the prompt's first end token are masked (-inf before the softmax), on both the
   conditional and the unconditional branch, with the prompt's length l (beginning token, the prompt's
   tokens and the first end token);
2. the pre-softmax logit of the beginning token (key 0) is multiplied by c1 = 1.25 on the conditional
   branch only, which moves attention to it and away from the trigger tokens.

As their code runs it (the flags `--c1 1.25 --cross_attn_mask --miti_mem`; docs/related-methods.md, 3).
Models: diffusers UNets (`DiffusersAdapter.attention_edit`, `token_lengths`); the built-in tiny models
have no beginning token and mask padding already, so the rule does not apply to them.

Which rows are conditional: a row whose embedding is not the empty prompt's. In the sampler's
classifier-free-guidance batch [unconditional x B, conditional x B], unconditional row i takes the length
of conditional row B + i (their mask is the prompt's on both branches); a lone unconditional row, that
of the empty prompt.
"""
from __future__ import annotations

from typing import Sequence

import torch

from ..errors import DiffmemError
from .embedding import EmbeddingOverride

#: Ren et al.'s scale of the beginning token's logit
REN_C1 = 1.25


def reweight_logits(logits: torch.Tensor, lengths: Sequence[int], conditional: Sequence[bool], *, c1: float = REN_C1,
                    mask: bool = True) -> torch.Tensor:
    """Ren et al.'s edit of cross-attention logits (rows, heads, positions, tokens): keys at positions
    >= lengths[row] set to -inf (with `mask`), key 0 multiplied by c1 on conditional rows."""
    out = logits.clone()
    n_tok = out.shape[-1]
    if mask:
        pos = torch.arange(n_tok, device=out.device)
        keep = pos[None, :] < torch.as_tensor(list(lengths), device=out.device)[:, None]   # (rows, tokens)
        out = out.masked_fill(~keep[:, None, None, :], float("-inf"))
    scale = torch.where(torch.as_tensor(list(conditional), device=out.device), c1, 1.0).to(out.dtype)
    out[..., 0] = out[..., 0] * scale[:, None, None]
    return out


class CrossAttentionReweight(EmbeddingOverride):
    """A diffusers model sampled with Ren et al.'s cross-attention mitigation (module docstring); everything
    else is the wrapped adapter's."""

    def __init__(self, adapter, *, c1: float = REN_C1, mask: bool = True, label: str = "ren-2024"):
        if not hasattr(adapter, "attention_edit") or not hasattr(adapter, "token_lengths"):
            raise DiffmemError(f"Ren et al.'s mitigation edits text cross-attention after a beginning token: "
                               f"{adapter.name or 'this model'} does not expose it (diffusers UNets do)")
        super().__init__(adapter, {}, label)
        self.c1, self.mask = float(c1), bool(mask)
        self._lengths: dict[bytes, int] = {}
        self._uncond = adapter.encode_prompt([""])[0].detach()
        self._empty_length = adapter.token_lengths([""])[0]

    def encode_prompt(self, prompts: Sequence[str]) -> torch.Tensor:
        emb = self._adapter.encode_prompt(list(prompts))
        for row, n in zip(emb, self._adapter.token_lengths(list(prompts))):
            self._lengths[_key(row)] = n
        return emb

    def row_rules(self, embeddings: torch.Tensor) -> tuple[list[int], list[bool]]:
        """(l, conditional?) per embedding row (module docstring)."""
        cond = [not torch.equal(row.to(self._uncond.device, self._uncond.dtype), self._uncond) for row in embeddings]
        lengths = [self._lengths.get(_key(row), self._empty_length) if c else self._empty_length
                   for row, c in zip(embeddings, cond)]
        n = len(cond)
        if n % 2 == 0 and not any(cond[: n // 2]) and all(cond[n // 2:]):  # [uncond x B, cond x B]
            lengths[: n // 2] = lengths[n // 2:]
        return lengths, cond

    def predict_noise(self, latents, t, embeddings):
        if embeddings.shape[0] == 1 and latents.shape[0] > 1:
            embeddings = embeddings.expand(latents.shape[0], *embeddings.shape[1:])
        lengths, cond = self.row_rules(embeddings)

        def edit(logits, per_sample):
            rep = lambda v: [x for x in v for _ in range(per_sample)]  # noqa: E731  (frames run as rows)
            return reweight_logits(logits, rep(lengths), rep(cond), c1=self.c1, mask=self.mask)

        with self._adapter.attention_edit(edit):
            return self._adapter.predict_noise(latents, t, embeddings)

    def describe(self) -> dict:
        return {**self._adapter.describe(), "cross_attention": f"{self.label} (c1 {self.c1}, mask {self.mask})"}


def _key(row: torch.Tensor) -> bytes:
    return row.detach().float().cpu().numpy().tobytes()
