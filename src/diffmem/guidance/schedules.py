"""Named threshold schedules lambda_t for AMG's per-step switch 1{sigma_t > lambda_t}.

A schedule maps a training timestep t (0 = clean, T - 1 = pure noise) to a threshold. Time is used
as u = t / T in [0, 1), so one schedule means the same for any number of training steps.
lambda_t rises as t -> 0 (DESIGN.md): early in the chain a moderately similar x0_hat is enough to
trigger guidance, while changing course is still cheap; late, when x0_hat is sharp and details
decide, only a clearly similar one does (the quality cost of guiding is highest there).

- "exponential": the authors' Stable Diffusion code, lambda(t) = a + b exp(-k t) over 1000 DDPM
  steps with a = 0.3, b = 0.1, k = 0.005; here k is per unit of u (k_u = 0.005 * 1000 = 5).
- "parabolic": the paper calls its schedule parabolic without giving coefficients; ours is the
  parabola lo + (hi - lo) (1 - u)^2, with the same end points as the exponential one (0.4 at t = 0,
  0.3 at t = T - 1), convex like it.
- "constant": lambda_t = value (ablations; "always on" is constant -inf).

Thresholds are in the units of sigma_t: SSCD-like dot products by default. For another similarity
(the built-in descriptor, -nL2, motion) use `scaled(...)`/explicit parameters; `AMGConfig` picks them.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from ..errors import DiffmemError

SCHEDULES = ("parabolic", "exponential", "constant")


@dataclass(frozen=True)
class ThresholdSchedule:
    """lambda(t). `kind` is one of SCHEDULES; `lo`/`hi` are the values at t = T - 1 and t = 0.

    "exponential": lambda(u) = lo + (hi - lo) exp(-rate u), the authors' a + b exp(-k t) with a = lo,
    b = hi - lo, so lambda(0) = hi and lambda(1) = lo + (hi - lo) exp(-rate) (~ lo for rate 5).
    "constant": lambda = hi (lo is ignored).
    """

    kind: str = "exponential"
    lo: float = 0.3
    hi: float = 0.4
    rate: float = 5.0

    def __post_init__(self):
        if self.kind not in SCHEDULES:
            raise DiffmemError(f"unknown threshold schedule {self.kind!r}; choose one of {', '.join(SCHEDULES)}")
        if self.kind != "constant" and not (math.isfinite(self.lo) and math.isfinite(self.hi)):
            raise DiffmemError(f"threshold schedule {self.kind}: lo and hi must be finite, got {self.lo}, {self.hi}")

    def __call__(self, t: int | float, num_train_timesteps: int = 1000) -> float:
        # u = t / T (not t / (T - 1)) so that T = 1000 gives the authors' exp(-0.005 t) exactly.
        u = min(max(float(t) / max(num_train_timesteps, 1), 0.0), 1.0)
        return schedule_value(self.kind, u, self.lo, self.hi, self.rate)

    def scaled(self, factor: float, offset: float = 0.0) -> "ThresholdSchedule":
        """The same shape in other units: every value v becomes factor * v + offset."""
        return ThresholdSchedule(self.kind, self.lo * factor + offset, self.hi * factor + offset, self.rate)

    def as_dict(self) -> dict:
        return asdict(self)


def schedule_value(kind: str, u: float, lo: float, hi: float, rate: float = 5.0) -> float:
    """Functional twin of ThresholdSchedule: the threshold at normalised time u in [0, 1] (0 = clean)."""
    if kind == "exponential":
        return lo + (hi - lo) * math.exp(-rate * u)
    if kind == "parabolic":
        return lo + (hi - lo) * (1.0 - u) ** 2
    if kind == "constant":
        return hi
    raise DiffmemError(f"unknown threshold schedule {kind!r}; choose one of {', '.join(SCHEDULES)}")


def make_schedule(name: str, *, lo: float | None = None, hi: float | None = None,
                  rate: float | None = None, value: float | None = None) -> ThresholdSchedule:
    """A schedule by name with optional overrides; "constant" takes `value` (default 0.35)."""
    if name == "constant":
        v = value if value is not None else (hi if hi is not None else 0.35)
        return ThresholdSchedule("constant", v, v)
    kw = {k: v for k, v in (("lo", lo), ("hi", hi), ("rate", rate)) if v is not None}
    return ThresholdSchedule(name, **kw)
