"""A generation-time guard: flag a sample while it is being generated, from its own magnitudes.

    guard = MemorizationGuard(Calibration.load("calib.json"))        # made with --seeds 1
    out = sample(adapter, prompts, seeds, config, hooks=[guard])      # records flags
    guard.flagged          # {sample index: GuardFlag(step, t, magnitudes, scores)}

    # AMG's switch (inside another hook): guidance only for the samples flagged so far
    on = guard.check(state)                                           # (B,) bool tensor

At each of the first s steps (s = the calibration's `steps`) the guard records the sample's content,
motion and total magnitude; at step s-1 it compares each sample's mean over those s steps -- exactly the
statistic the calibration thresholded, for n = 1 -- with the thresholds. A sample is flagged when any
guarded magnitude is above its threshold; a flag stays for the rest of the generation.
`action="stop"` raises `StopSampling` once every sample of the batch is flagged (run with batch_size 1
to stop per sample); the default `"record"` only records, so the caller can discard or switch to AMG.

The magnitude is defined against the empty prompt: with a non-empty negative prompt, the sampler's
unconditional branch is not eps(x_t, "") and the guard refuses (strict) or warns.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Sequence

import torch

from ..errors import BadInputError, DiffmemError, PolicyMismatchError
from ..models.sampler import StopSampling
from .calibrate import Calibration, DetectConfig
from .magnitude import magnitudes as _magnitudes

ACTIONS = ("record", "stop")
_SCHEDULER_CLASSES = {"ddim": "DDIMScheduler", "ddpm": "DDPMScheduler"}


@dataclass
class GuardFlag:
    """Why a sample was flagged: at which step, by which magnitudes, with which mean scores."""

    sample_index: int
    prompt: str
    seed: int
    step: int
    t: int
    magnitudes: list[str]
    scores: dict[str, float] = field(default_factory=dict)

    def as_dict(self) -> dict:
        return dict(self.__dict__)


class MemorizationGuard:
    """Sampler hook + per-sample switch driven by calibrated magnitude thresholds.

    `magnitudes` restricts which thresholds are used (default: every one in the calibration, e.g.
    content, motion and total). `strict=True` refuses a calibration made for another model or other
    settings than the generation it watches (and one made with n != 1 seeds, whose thresholds are for
    an average the guard does not see); `strict=False` only warns.
    """

    def __init__(self, calibration: Calibration, *, magnitudes: Sequence[str] | None = None, action: str = "record",
                 strict: bool = True):
        if action not in ACTIONS:
            raise DiffmemError(f"unknown guard action {action!r}; choose one of {', '.join(ACTIONS)}")
        names = list(calibration.thresholds) if magnitudes is None else list(magnitudes)
        missing = [n for n in names if n not in calibration.thresholds]
        if missing or not names:
            raise DiffmemError(f"calibration has no threshold for {missing or 'any magnitude'}; "
                               f"it has {sorted(calibration.thresholds)}")
        self.calibration = calibration
        self.thresholds = {n: float(calibration.thresholds[n]) for n in names}
        self.steps = int(calibration.settings.steps)
        self.action = action
        self.strict = strict
        self.calibrated = True
        self.reset()

    @classmethod
    def from_file(cls, path, *, model: str | None = None, magnitudes: Sequence[str] | None = None,
                  action: str = "record") -> "MemorizationGuard":
        """A strict guard from a calibration file (`diffmem detect --calibrate --seeds 1`), refused at once
        (naming the file) when it was made with n != 1 seeds or, given `model`, for another model -- before
        any sample is made, not at the generation's first step."""
        cal = Calibration.load(path)
        if cal.settings.seeds != 1:
            raise BadInputError(path, f"calibration made with --seeds {cal.settings.seeds}; a guard sees one sample "
                                      "at a time: calibrate with --seeds 1")
        if model is not None and cal.model != model:
            raise BadInputError(path, f"calibration made for model {cal.model!r}, not {model!r}")
        return cls(cal, magnitudes=magnitudes, action=action, strict=True)

    @classmethod
    def from_thresholds(cls, thresholds: dict[str, float], *, steps: int = 1, action: str = "record") -> "MemorizationGuard":
        """A guard with hand-set thresholds (no calibration file): nothing to check the generation against."""
        cal = Calibration(model="", settings=DetectConfig(seeds=1, steps=steps, num_steps=max(steps, 1)), fpr=float("nan"),
                          thresholds=dict(thresholds))
        guard = cls(cal, action=action, strict=False)
        guard.calibrated = False  # hand-set: no calibrated settings to compare the generation with
        return guard

    def reset(self) -> None:
        """Forget every sample (call between unrelated sampling runs that reuse sample indices)."""
        self._values: dict[int, dict[int, dict[str, float]]] = {}  # sample -> step -> magnitude -> value
        self.flagged: dict[int, GuardFlag] = {}
        self._checked_settings = False

    # ---- the switch ----------------------------------------------------------------------------
    def magnitudes(self, state) -> dict[str, torch.Tensor]:
        """This step's per-sample magnitudes (B,) for the guarded names."""
        if state.eps_uncond is None:
            raise DiffmemError("the guard needs eps(x_t, \"\"): install it as a hook so the sampler computes it")
        mags = _magnitudes(state.eps_cond, state.eps_uncond, state.adapter.frame_axis)
        missing = [n for n in self.thresholds if n not in mags]
        if missing:
            raise DiffmemError(f"this model has no {missing} magnitude (it has {sorted(mags)})")
        return {n: mags[n] for n in self.thresholds}

    def check(self, state) -> torch.Tensor:
        """(B,) bool on the latents' device: which samples of this batch are flagged as of this step.

        Idempotent within a step (a second call at the same step, e.g. from AMG and from the hook,
        does not count the step twice).
        """
        if not self._checked_settings and self.calibrated:
            self._check_settings(state)
            self._checked_settings = True
        if state.index < self.steps:
            mags = {n: v.detach().cpu().double().tolist() for n, v in self.magnitudes(state).items()}
            for row, idx in enumerate(state.sample_indices):
                self._values.setdefault(idx, {})[state.index] = {n: mags[n][row] for n in mags}
        out = torch.zeros(len(state.sample_indices), dtype=torch.bool)
        for row, idx in enumerate(state.sample_indices):
            if idx not in self.flagged and state.index >= self.steps - 1:
                self._decide(idx, state, row)
            out[row] = idx in self.flagged
        return out.to(state.eps_cond.device)

    def _decide(self, idx: int, state, row: int) -> None:
        per_step = self._values.get(idx, {})
        if len(per_step) < self.steps:
            return  # the guard was not watching from step 0 for this sample: no calibrated statistic
        means = {n: sum(per_step[s][n] for s in range(self.steps)) / self.steps for n in self.thresholds}
        above = [n for n, m in means.items() if m > self.thresholds[n]]
        if above:
            self.flagged[idx] = GuardFlag(sample_index=idx, prompt=state.prompts[row], seed=int(state.seeds[row]),
                                          step=int(state.index), t=int(state.t), magnitudes=above, scores=means)

    def scores(self, sample_index: int) -> dict[str, float] | None:
        """The sample's mean magnitudes over the first s steps (None until it has all s)."""
        per_step = self._values.get(sample_index, {})
        if len(per_step) < self.steps:
            return None
        return {n: sum(per_step[s][n] for s in range(self.steps)) / self.steps for n in self.thresholds}

    def is_flagged(self, sample_index: int) -> bool:
        return sample_index in self.flagged

    # ---- as a hook ------------------------------------------------------------------------------
    def __call__(self, state) -> None:
        flags = self.check(state)
        if self.action == "stop" and bool(flags.all()):
            raise StopSampling
        return None

    # ---- the calibration must fit the generation --------------------------------------------------
    def _check_settings(self, state) -> None:
        cal, st = self.calibration, self.calibration.settings
        problems = []
        name = getattr(state.adapter, "name", "")
        if name != cal.model:
            problems.append(f"model {name!r} (calibrated for {cal.model!r})")
        if st.seeds != 1:
            problems.append(f"a calibration made with n = {st.seeds} seeds (the guard sees one sample: use --seeds 1)")
        if state.num_steps != st.num_steps:
            problems.append(f"num_steps {state.num_steps} (calibrated {st.num_steps})")
        if self.steps > 1 and float(state.guidance_scale) != float(st.guidance_scale):
            problems.append(f"guidance scale {state.guidance_scale} (calibrated {st.guidance_scale})")
        want = _SCHEDULER_CLASSES.get(st.scheduler, getattr(state.adapter, "default_scheduler", None))
        have = type(state.scheduler).__name__ if state.scheduler is not None else None
        if have is not None and want is not None and have != want:
            problems.append(f"scheduler {have} (calibrated {want})")
        uncond = state.adapter.encode_prompt([""]).to(state.uncond_embeddings.device, state.uncond_embeddings.dtype)
        if not torch.equal(uncond[0], state.uncond_embeddings[0]):
            problems.append("a negative prompt (the magnitudes are defined against the empty prompt)")
        if problems:
            msg = "memorization guard: calibration does not fit this generation: " + "; ".join(problems)
            if self.strict:
                raise PolicyMismatchError(msg + " (calibrate again, or strict=False to use it anyway)")
            warnings.warn(msg, stacklevel=3)
