"""The one AMG configuration: what `diffmem generate --amg`, `diffmem amg evaluate`, the demo and the
Python API run. Its defaults are the CLI's (how they were chosen: README, "AMG", "Defaults and how they
were chosen").

    config = AMGConfig()                                    # the CLI's defaults
    config = AMGConfig(c3=100.0, content_lo=0.9)            # recalibrated for another model
    hook = build_amg_hook(training, config, kind="video")   # guidance.reference

Thresholds are relative to each similarity channel's own verdict threshold: the content schedule
lambda_t runs from `content_lo` * tau_c (t = T) up to `content_hi` * tau_c (t = 0), the motion one from
`motion_lo` * tau_m to `motion_hi` * tau_m. `content_lambda` = (lo, hi) sets absolute content (and
pixel) values instead; set it for the pixel channel, whose threshold (-nL2 = -1.4) is negative.
`schedule_for(kind, tau)` turns this into the hook's `ThresholdSchedule` for one channel.

There is no "as the authors ran it" preset: the authors' code differs from the paper's equations in
ways this hook does not reproduce (DESIGN.md, "What the authors' code actually does"). Their SSCD
constants are c1 = 13 (kept) and lambda from 0.3 to 0.4 (`content_lambda=(0.3, 0.4)`).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

from ..errors import DiffmemError
from .schedules import SCHEDULES, ThresholdSchedule, make_schedule
from .similarity import CAPTION_MODES
from .terms import TERM_NAMES

SWITCHES = ("threshold", "always")


@dataclass(frozen=True)
class AMGConfig:
    """AMG's knobs.

    terms: the subset of ("spe", "dup", "sim") that is on (ablations). switch: "threshold"
    (1{sigma > lambda_t}) or "always" (the paper's always-on ablation). c1, c2, c3: the constants of
    despecification, caption deduplication and dissimilarity. c1 = 13 is the authors' (with s0 = 7.5),
    c2 = 13 the same value (not published separately); c3 = 200 and the content thresholds 0.97 / 1.0
    x tau_c were measured on the committed tiny model with the built-in descriptor, on prompts and seeds
    outside the evaluation set. c3 scales a gradient whose size depends on the descriptor and the
    resolution: calibrate it for another model (`diffmem amg evaluate --c3`).
    schedule: the shape of lambda_t (`guidance.schedules`). motion: add the motion channel (video
    models); motion_weight: its weight in G_sim's gradient. caption_mode, caption_top: how y_N is
    chosen (`guidance.similarity.pick_caption`). check_every: sigma_t is measured at every k-th step,
    and at every step for a sample whose last measurement triggered guidance (1 = every step, the
    paper's switch; larger = cheaper for samples that never come near the threshold). The default 5 was
    measured on `builtin:tiny-t2v-large` and `builtin:tiny-t2i-large`: on 52 held-out samples each (28 of
    duplicated prompts) it removes every copy with the same quality and alignment as every 3rd step
    (which gave the samples of every step), at 1.16x (video) and 1.20x (image) plain sampling on novel
    prompts instead of 1.36x and 1.41x (every step: 1.69x and 2.11x). (The image twin's weights of that
    measurement were replaced on 2026-12-07; with the new ones it removes all 12 of 28 copies: README.)
    """

    terms: tuple[str, ...] = TERM_NAMES
    switch: str = "threshold"
    c1: float = 13.0
    c2: float = 13.0
    c3: float = 200.0
    schedule: str = "exponential"
    content_lo: float = 0.97
    content_hi: float = 1.0
    content_lambda: tuple[float, float] | None = None
    motion: bool = True
    motion_lo: float = 0.75
    motion_hi: float = 0.9
    motion_weight: float = 1.0
    caption_mode: str = "frequent"
    caption_top: int = 10
    check_every: int = 5

    def __post_init__(self):
        object.__setattr__(self, "terms", tuple(self.terms))
        if self.content_lambda is not None:
            object.__setattr__(self, "content_lambda", tuple(self.content_lambda))
        bad = set(self.terms) - set(TERM_NAMES)
        if bad:
            raise DiffmemError(f"unknown AMG terms {sorted(bad)}; choose from {', '.join(TERM_NAMES)}")
        if self.switch not in SWITCHES:
            raise DiffmemError(f"unknown AMG switch {self.switch!r}; choose 'threshold' or 'always'")
        if self.schedule not in SCHEDULES:
            raise DiffmemError(f"unknown threshold schedule {self.schedule!r}; choose one of {', '.join(SCHEDULES)}")
        if self.caption_mode not in CAPTION_MODES:
            raise DiffmemError(f"unknown caption mode {self.caption_mode!r}; choose one of {', '.join(CAPTION_MODES)}")
        if int(self.check_every) < 1:
            raise DiffmemError(f"check_every must be >= 1, got {self.check_every}")

    def schedule_for(self, kind: str, tau: float | None) -> ThresholdSchedule:
        """lambda_t of one similarity channel ("content", "pixel", "motion") whose verdict threshold is tau."""
        if kind != "motion" and self.content_lambda is not None:
            lo, hi = self.content_lambda
        elif tau is None:
            raise DiffmemError(f"AMG has no threshold for the {kind!r} similarity: give the hook its tau "
                               f"(thresholds={{{kind!r}: ...}})" + ("" if kind == "motion" else " or set content_lambda"))
        elif kind == "motion":
            lo, hi = self.motion_lo * tau, self.motion_hi * tau
        else:
            lo, hi = self.content_lo * tau, self.content_hi * tau
        if self.schedule == "constant":
            return make_schedule("constant", value=hi)
        return make_schedule(self.schedule, lo=lo, hi=hi)

    def weight(self, kind: str) -> float:
        """The channel's weight in G_sim's gradient."""
        return float(self.motion_weight) if kind == "motion" else 1.0

    def as_dict(self) -> dict:
        return asdict(self)
