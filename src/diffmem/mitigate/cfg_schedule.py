"""Jain et al. (CVPR 2025), "Classifier-Free Guidance inside the Attraction Basin May Cause Memorization":
guidance withheld (or reversed) until a transition point, then the usual classifier-free guidance.

With D = eps_c - eps_u and the run's CFG scale s (7.5 in their code):

- static transition point (their generate_test_dataset_stp.py and README settings): while the timestep
  t > tau the guided noise is eps_u + w_before D, from then on eps_u + s D. Presets: "no guidance"
  w_before = 0, tau = 500; "opposite guidance" w_before = -2, tau = 650 (timesteps of a 1000-step model);
- dynamic transition point (generate_test_dataset_dtp.py): per sample, d_k = ||D_k||_2 at step k; the
  switch happens at the first step k with d_(k-1) < d_(k-2) and d_k > d_(k-1) (just after the first
  local minimum of d); before it the guided noise is eps_c (w = 1, the conditional prediction alone).

Their opposite-guidance-with-dynamic-switch script flips the sign every step and exits at the switch
(docs/related-methods.md), so only the two rules above are offered, as their code runs them.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ..errors import DiffmemError


@dataclass(frozen=True)
class StaticTransition:
    """Sampler hook: eps_u + w_before (eps_c - eps_u) while t > tau; the run's own CFG after."""

    tau: int
    w_before: float

    def __call__(self, state) -> torch.Tensor | None:
        if state.eps_uncond is None:
            raise DiffmemError("delayed guidance needs the unconditional prediction (guidance scale != 1)")
        if state.t > self.tau:
            return state.eps_uncond + self.w_before * (state.eps_cond - state.eps_uncond)
        return None


class DynamicTransition:
    """Sampler hook: the conditional prediction alone (w = 1) until just after the first local minimum of
    ||eps_c - eps_u||_2 along each sample's path, the run's CFG from then on. `switched[i]` is the step at
    which sample i switched (None: never)."""

    def __init__(self, w_before: float = 1.0):
        self.w_before = float(w_before)
        self.norms: dict[int, list[float]] = {}
        self.switched: dict[int, int | None] = {}

    def __call__(self, state) -> torch.Tensor | None:
        if state.eps_uncond is None:
            raise DiffmemError("delayed guidance needs the unconditional prediction (guidance scale != 1)")
        d = state.eps_cond - state.eps_uncond
        norms = d.float().flatten(1).norm(dim=1).tolist()
        before = []
        for row, i in enumerate(state.sample_indices):
            hist = self.norms.setdefault(i, [])
            hist.append(norms[row])
            self.switched.setdefault(i, None)
            if self.switched[i] is None and len(hist) >= 3 and hist[-2] < hist[-3] and hist[-1] > hist[-2]:
                self.switched[i] = state.index
            before.append(self.switched[i] is None)
        if not any(before):
            return None
        mask = torch.tensor(before, device=d.device).view(-1, *([1] * (d.ndim - 1)))
        return torch.where(mask, state.eps_uncond + self.w_before * d, state.eps_guided)


#: the settings of Jain et al.'s README (static transition point)
JAIN_PRESETS = {
    "jain-none-2025": StaticTransition(tau=500, w_before=0.0),
    "jain-opposite-2025": StaticTransition(tau=650, w_before=-2.0),
}
