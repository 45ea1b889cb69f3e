"""Thresholds for the magnitudes, set on prompts known to be novel, for a chosen false-positive rate.

A magnitude's scale depends on the model, on n and s, on the timesteps (scheduler, number of steps)
and, for s > 1, on the guidance scale. So a threshold is only valid with the settings it was made
with: a `Calibration` stores them and `check` refuses to apply it under others.

File format (JSON, written by `Calibration.save`):

    {"format": "diffmem-detect-calibration/1", "model": "builtin:tiny-t2v",
     "settings": {"seeds": 4, "steps": 1, "guidance_scale": 7.5, "scheduler": "ddim", "num_steps": 25, ...},
     "fpr": 0.01, "thresholds": {"content": 0.123, "motion": 0.045, "total": 0.130},
     "novel_summary": {"content": {"count": 200, "mean": ..., "std": ..., "min": ..., "p50": ..., "p90": ...,
                                   "p99": ..., "max": ...}, ...},
     "calibration_fpr": {"content": 0.01, ...}, "created": "...", "environment": {...}}

A prompt is flagged for a magnitude when its score is strictly above that magnitude's threshold.
"""
from __future__ import annotations

import datetime as _dt
import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from ..errors import BadInputError, DiffmemError, PolicyMismatchError
from ..io.results import environment, write_json
from ..models.sampler import SamplerConfig
from .evaluate import threshold_at_fpr

FORMAT = "diffmem-detect-calibration/1"


@dataclass(frozen=True)
class DetectConfig:
    """Everything that changes a magnitude score, apart from the model and the prompt.

    `seeds` (n) and `steps` (s): the score averages the first `steps` denoising steps of `seeds`
    samples with seeds first_seed, first_seed+1, ...; `num_steps`, `scheduler`, `guidance_scale`, `eta`
    are those of the generation being screened (they fix the timesteps and, for s > 1, the path).
    """

    seeds: int = 4
    steps: int = 1
    num_steps: int = 25            # `diffmem generate`'s default
    guidance_scale: float = 7.5
    scheduler: str = "ddim"
    eta: float = 0.0
    first_seed: int = 0
    num_frames: int | None = None
    height: int | None = None
    width: int | None = None

    #: fields that do not change the score's distribution (another seed draws from the same one)
    NEUTRAL = ("first_seed",)

    def __post_init__(self):
        if self.seeds < 1:
            raise DiffmemError(f"seeds (n) must be >= 1, got {self.seeds}")
        if self.steps < 1:
            raise DiffmemError(f"steps (s) must be >= 1, got {self.steps}")
        if self.steps > self.num_steps:
            raise DiffmemError(f"steps (s = {self.steps}) cannot exceed the sampler's num_steps ({self.num_steps})")

    def as_dict(self) -> dict:
        return asdict(self)

    def sampler_config(self):
        # The detector's unconditional branch must be the empty prompt (D is defined against it).
        return SamplerConfig(num_steps=self.num_steps, guidance_scale=self.guidance_scale, scheduler=self.scheduler,
                             eta=self.eta, negative_prompt="", num_frames=self.num_frames, height=self.height,
                             width=self.width)

    def denoiser_evals_per_prompt(self, n_prompts: int | None = None) -> float:
        """Denoiser evaluations (one batch row = one) per prompt.

        Through the sampler (s > 1, or `n_prompts` None): cond + uncond at s steps for n seeds = 2 n s.
        At s = 1 the first latent is the seed's noise, the same for every prompt, so eps(x_T, "") is
        computed once per seed for the whole run: n + n / n_prompts per prompt.
        """
        if self.steps == 1 and n_prompts:
            return self.seeds * (1 + 1 / n_prompts)
        return 2 * self.seeds * self.steps

    def generation_evals(self) -> int:
        """Denoiser evaluations of one full generation with these sampler settings."""
        return self.num_steps * (1 if self.guidance_scale == 1.0 else 2)

    def cost_fraction(self, n_prompts: int | None = None) -> float:
        """Detection cost per prompt as a fraction of one full generation of one sample."""
        return self.denoiser_evals_per_prompt(n_prompts) / self.generation_evals()

    @classmethod
    def from_dict(cls, d: Mapping) -> "DetectConfig":
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})


def summarize(values: Sequence[float]) -> dict:
    v = np.asarray(values, dtype=np.float64)
    q = np.quantile(v, [0.5, 0.9, 0.99]) if v.size else [float("nan")] * 3
    return {"count": int(v.size), "mean": float(v.mean()), "std": float(v.std()), "min": float(v.min()),
            "p50": float(q[0]), "p90": float(q[1]), "p99": float(q[2]), "max": float(v.max())}


@dataclass
class Calibration:
    """Per-magnitude thresholds for a false-positive rate, with the model and settings they hold for."""

    model: str
    settings: DetectConfig
    fpr: float
    thresholds: dict[str, float]
    novel_summary: dict[str, dict] = field(default_factory=dict)
    calibration_fpr: dict[str, float] = field(default_factory=dict)
    created: str = ""
    environment: dict = field(default_factory=dict)

    def flags(self, scores: Mapping[str, float | Sequence[float]]) -> dict[str, np.ndarray]:
        """{magnitude: bool array}, True where the score is strictly above the threshold.

        Only magnitudes present in both `scores` and the calibration are flagged.
        """
        out = {}
        for name, thr in self.thresholds.items():
            if name in scores:
                out[name] = np.asarray(scores[name], dtype=np.float64) > thr
        return out

    def check(self, model: str, settings: DetectConfig) -> None:
        """Refuse to apply these thresholds to another model or other score settings."""
        if model != self.model:
            raise PolicyMismatchError(f"calibration was made for model {self.model!r}, not {model!r}; "
                                      "calibrate again for this model")
        mine, theirs = self.settings.as_dict(), settings.as_dict()
        diff = {k: (mine[k], theirs[k]) for k in mine if k not in DetectConfig.NEUTRAL and mine[k] != theirs[k]}
        if diff:
            detail = ", ".join(f"{k}: calibrated {a!r}, asked {b!r}" for k, (a, b) in diff.items())
            raise PolicyMismatchError(f"calibration settings differ ({detail}); the thresholds only hold for the "
                                      "settings they were made with -- drop the overrides or calibrate again")

    def as_dict(self) -> dict:
        return {"format": FORMAT, "model": self.model, "settings": self.settings.as_dict(), "fpr": self.fpr,
                "thresholds": dict(self.thresholds), "novel_summary": self.novel_summary,
                "calibration_fpr": self.calibration_fpr, "created": self.created, "environment": self.environment}

    def save(self, path: str | Path) -> Path:
        return write_json(path, self.as_dict())

    @classmethod
    def load(cls, path: str | Path) -> "Calibration":
        path = Path(path)
        try:
            d = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise BadInputError(path, "calibration file not found") from None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise BadInputError(path, f"not a readable calibration JSON ({e})") from None
        if not isinstance(d, dict) or d.get("format") != FORMAT:
            raise BadInputError(path, f"not a diffmem detect calibration (expected format {FORMAT!r})")
        try:
            thresholds = {str(k): float(v) for k, v in d["thresholds"].items()}
            return cls(model=str(d["model"]), settings=DetectConfig.from_dict(d["settings"]), fpr=float(d["fpr"]),
                       thresholds=thresholds, novel_summary=d.get("novel_summary", {}),
                       calibration_fpr=d.get("calibration_fpr", {}), created=d.get("created", ""),
                       environment=d.get("environment", {}))
        except (KeyError, TypeError, ValueError, AttributeError, DiffmemError) as e:
            raise BadInputError(path, f"calibration is missing or has a bad field ({e})") from None


def calibrate(novel_scores: Mapping[str, Sequence[float]], fpr: float = 0.01, *, model: str,
              settings: DetectConfig) -> Calibration:
    """Thresholds such that at most floor(fpr * N) of the N novel prompts score above them, per magnitude.

    With N < 1/fpr the threshold is the novel maximum and the FPR is not resolved: use at least 1/fpr
    novel prompts (better 10/fpr) for a threshold that holds on new prompts.
    """
    thresholds, summary, achieved = {}, {}, {}
    for name, vals in novel_scores.items():
        v = np.asarray(vals, dtype=np.float64).ravel()
        if v.size == 0:
            raise DiffmemError(f"no novel scores for magnitude {name!r}")
        thr = threshold_at_fpr(v, fpr, "at-most")  # a deployer's budget: FPR <= fpr
        thresholds[name] = thr
        summary[name] = summarize(v)
        achieved[name] = float(np.mean(v > thr))
    return Calibration(model=model, settings=settings, fpr=float(fpr), thresholds=thresholds, novel_summary=summary,
                       calibration_fpr=achieved,
                       created=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
                       environment=environment())
