"""The AMG sampler hook: sigma_t per step, the switch, the three terms, and a record of all of it.

    amg = AMGHook([ContentSimilarity(descriptor, neighbours)], AMGConfig(), thresholds={"content": tau_c})
    out = sample(adapter, prompts, seeds, config, hooks=[amg])
    amg.records[i]     # per step of sample i: t, lambda, sigma, triggered terms, y_N, neighbour
    write_traces(amg, out_dir, rows)   # DIR/samples/<id>.amg.json

(`guidance.reference.build_amg_hook` builds it from a training reference.)

Per step and sample (DESIGN.md, "AMG, exactly"): x0_hat from the CFG noise, decoded; every
similarity channel (content, and for video models motion) gives sigma_c and is compared with its
own schedule lambda_c(t); the sample is triggered when any channel is above its threshold. Then
- s1, s2 use the largest sigma among the triggered channels (every sigma: higher = more memorized);
- y_N is the caption chosen by the triggered channel most above its threshold;
- G_sim's gradient is the sum over triggered channels of weight_c * grad sigma_c (through the
  similarity's `for_gradient` when it has one: content uses the mean over frames there).
With one channel this is exactly the paper's step.

Cost: one decode + similarity per step without gradients for every sample; only triggered samples
pay the second, differentiable pass (decode + similarity + backward, no backward through the
denoiser) and the extra denoiser call for eps(x_t, y_N). An optional cheaper pre-switch (e.g.
`detect.guard.MemorizationGuard`) skips the similarity entirely for samples it does not flag.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Mapping, Sequence

import pandas as pd
import torch

from ..errors import DiffmemError
from ..io.results import write_json
from ..models.adapter import predicted_x0
from .config import AMGConfig
from .schedules import ThresholdSchedule
from .terms import TERM_NAMES, amg_step


@dataclass
class StepRecord:
    """What AMG saw and did at one step of one sample."""

    step: int
    t: int
    sigma: dict[str, float]
    lam: dict[str, float]
    triggered: bool
    terms: list[str] = field(default_factory=list)
    s1: float = 0.0
    s2: float = 0.0
    y_n: str = ""
    neighbour: str = ""
    channel: str = ""
    g_sim_rms: float = 0.0

    def as_dict(self) -> dict:
        return asdict(self)


class AMGHook:
    """Sampler hook (see module docstring). `similarities`: objects with `.kind` and
    `__call__(frames) -> (sigma (B,), SimilarityInfo)`; `config`: the AMG configuration;
    `thresholds`: the verdict threshold of each kind (tau_c, tau_m, ...) that the configuration's
    thresholds are fractions of (default: the similarity's own `.threshold`); `pre_switch`: None, a
    callable `state -> (B,) bool`, or an object with `.check(state)` (the memorization guard)."""

    def __init__(self, similarities: Sequence, config: AMGConfig = AMGConfig(), *,
                 thresholds: Mapping[str, float] | None = None, pre_switch: Callable | object | None = None):
        if not similarities:
            raise DiffmemError("AMG needs at least one similarity (content, pixel or motion)")
        self.similarities = list(similarities)
        self.config = config
        taus = dict(thresholds or {})
        self.schedules = [config.schedule_for(s.kind, taus.get(s.kind, getattr(s, "threshold", None)))
                          for s in self.similarities]
        self.pre_switch = getattr(pre_switch, "check", pre_switch)
        self.records: dict[int, list[StepRecord]] = {}
        self.sample_keys: dict[int, tuple[str, int]] = {}  # sample index -> (prompt, seed)
        self._last_trig: dict[int, bool] = {}
        self.stats = {"steps": 0, "similarity_calls": 0, "grad_calls": 0, "dup_calls": 0}

    def schedule(self, kind: str) -> ThresholdSchedule:
        """lambda_t of the channel of this kind."""
        for sim, sch in zip(self.similarities, self.schedules):
            if sim.kind == kind:
                return sch
        raise DiffmemError(f"this AMG hook has no {kind!r} similarity (it has {[s.kind for s in self.similarities]})")

    def describe(self) -> dict:
        """The per-step configuration as run: terms, constants, switch, each channel's resolved
        schedule and gradient weight (stored with every trace and generation)."""
        cfg = self.config
        return {"terms": list(cfg.terms), "c1": cfg.c1, "c2": cfg.c2, "c3": cfg.c3, "switch": cfg.switch,
                "schedules": {s.kind: sch.as_dict() for s, sch in zip(self.similarities, self.schedules)},
                "weights": {"motion": cfg.weight("motion")}, "check_every": cfg.check_every}

    def reset(self) -> None:
        self.records.clear()
        self.sample_keys.clear()
        self._last_trig.clear()
        self.stats = {k: 0 for k in self.stats}

    # ------------------------------------------------------------------------------ measuring
    def _measure(self, frames: torch.Tensor):
        out = []
        for sim in self.similarities:
            sigma, info = sim(frames)
            out.append((sigma, info))
        return out

    def __call__(self, state) -> torch.Tensor | None:
        cfg = self.config
        if state.eps_uncond is None:
            raise DiffmemError("AMG needs eps(x_t, \"\"): install it as a hook so the sampler computes it")
        b = state.x_t.shape[0]
        adapter = state.adapter
        n_train = adapter.num_train_timesteps
        eps_hat = state.eps_guided
        self.stats["steps"] += 1
        active = torch.ones(b, dtype=torch.bool)
        if self.pre_switch is not None:
            active = torch.as_tensor(self.pre_switch(state), dtype=torch.bool).reshape(-1).cpu()
        if cfg.check_every > 1 and state.index % cfg.check_every:
            # between scheduled checks, only samples guided at their last check are measured
            due = torch.tensor([self._last_trig.get(i, False) for i in state.sample_indices], dtype=torch.bool)
            active = active & due
        rows = active.nonzero().flatten().tolist()
        kinds = [s.kind for s in self.similarities]
        lams = [sch(state.t, n_train) for sch in self.schedules]
        sig = torch.full((len(kinds), b), float("nan"), dtype=torch.float64)
        infos: list[dict[int, tuple[str, str]]] = [dict() for _ in kinds]
        if rows:
            with torch.no_grad():
                x0 = predicted_x0(state.x_t[rows], eps_hat[rows], state.alpha_bar_t)
                frames = adapter.decode(x0).float()
                self.stats["similarity_calls"] += len(rows)
                for c, (sigma, info) in enumerate(self._measure(frames)):
                    sig[c, rows] = sigma.detach().double().cpu()
                    for r, row in enumerate(rows):
                        infos[c][row] = (info.captions[r], info.ids[r])
        lam_t = torch.tensor(lams, dtype=torch.float64)[:, None]
        if cfg.switch == "always":
            trig_c = torch.zeros_like(sig, dtype=torch.bool)
            trig_c[:, rows] = True
        else:
            trig_c = (sig > lam_t) & ~torch.isnan(sig)
        triggered = trig_c.any(0)
        # sigma for s1/s2: the largest triggered channel; the caption from the channel most above lambda
        masked = torch.where(trig_c, sig, torch.full_like(sig, -float("inf")))
        sigma_scale = masked.max(0).values
        margin = torch.where(trig_c, sig - lam_t, torch.full_like(sig, -float("inf")))
        best_c = margin.argmax(0)
        sigma_scale = torch.where(triggered, sigma_scale, torch.zeros_like(sigma_scale))
        trig_rows = triggered.nonzero().flatten().tolist()
        for row in rows:
            self._last_trig[state.sample_indices[row]] = bool(triggered[row])

        eps_dup = grad = None
        y_n = [""] * b
        for row in trig_rows:
            y_n[row] = infos[int(best_c[row])].get(row, ("", ""))[0]
        # the AMG terms are computed in float32 whatever the model's dtype (bfloat16's 8-bit mantissa would
        # round away small guidance terms); the guided noise goes back to the model's dtype at the end
        dev, dt = eps_hat.device, torch.float32
        if trig_rows and "dup" in cfg.terms:
            eps_dup = state.eps_uncond.to(dt, copy=True)  # rows left at eps_u contribute nothing
            with torch.no_grad():
                emb = adapter.encode_prompt([y_n[r] for r in trig_rows]).to(state.cond_embeddings)
                x_in = state.x_t[trig_rows]
                if state.scheduler is not None:
                    x_in = state.scheduler.scale_model_input(x_in, state.t)
                eps_dup[trig_rows] = adapter.predict_noise(x_in, state.t, emb).to(dt)
            self.stats["dup_calls"] += len(trig_rows)
        elif "dup" in cfg.terms:
            eps_dup = state.eps_uncond.to(dt)
        if trig_rows and "sim" in cfg.terms:
            grad = torch.zeros_like(state.x_t, dtype=dt)
            grad[trig_rows] = self._gradient(state, trig_rows, trig_c[:, trig_rows]).to(dt)
            self.stats["grad_calls"] += len(trig_rows)
        elif "sim" in cfg.terms:
            grad = torch.zeros_like(state.x_t, dtype=dt)
        res = amg_step(state.eps_cond.to(dt), state.eps_uncond.to(dt), sigma_scale.to(dev, dt), 0.0,
                       guidance_scale=state.guidance_scale, alpha_bar_t=state.alpha_bar_t, eps_dup=eps_dup,
                       grad_sigma=grad, eps_guided=eps_hat.to(dt), c1=cfg.c1, c2=cfg.c2, c3=cfg.c3, terms=cfg.terms,
                       triggered=triggered.to(dev))
        self._record(state, sig, lams, kinds, triggered, best_c, res, y_n, infos)
        return res.eps.to(eps_hat.dtype) if trig_rows else None

    def _gradient(self, state, rows: list[int], trig_c: torch.Tensor) -> torch.Tensor:
        """sum_c weight_c grad_{x_t} sigma_c for the given rows (eps held fixed, no denoiser backward)."""
        with torch.enable_grad():
            x = state.x_t[rows].detach().float().requires_grad_(True)
            x0 = predicted_x0(x, state.eps_guided[rows].detach().float(), state.alpha_bar_t)
            frames = state.adapter.decode(x0).float()
            total = x.new_zeros(())
            for c, sim in enumerate(self.similarities):
                on = trig_c[c].to(x.device)
                if not bool(on.any()):
                    continue
                # a similarity may name a smoother quantity for the gradient (content: mean over frames)
                sigma = sim.for_gradient(frames) if hasattr(sim, "for_gradient") else sim(frames)[0]
                total = total + self.config.weight(sim.kind) * (sigma * on.to(sigma.dtype)).sum()
            if not total.requires_grad:
                return torch.zeros_like(x)
            (g,) = torch.autograd.grad(total, x)
        return torch.nan_to_num(g.detach())

    def _record(self, state, sig, lams, kinds, triggered, best_c, res, y_n, infos) -> None:
        for row, idx in enumerate(state.sample_indices):
            trig = bool(triggered[row])
            terms = []
            if trig:
                if float(res.s1[row]) > 0:
                    terms.append("spe")
                if float(res.s2[row]) > 0:
                    terms.append("dup")
                if "sim" in self.config.terms:
                    terms.append("sim")
            c = int(best_c[row]) if trig else 0
            rec = StepRecord(
                step=int(state.index), t=int(state.t),
                sigma={k: (None if torch.isnan(sig[i, row]) else float(sig[i, row])) for i, k in enumerate(kinds)},
                lam={k: float(lams[i]) for i, k in enumerate(kinds)},
                triggered=trig, terms=terms, s1=float(res.s1[row]), s2=float(res.s2[row]),
                y_n=y_n[row] if trig else "", neighbour=infos[c].get(row, ("", ""))[1],
                channel=kinds[c] if trig else "",
                g_sim_rms=float(res.g_sim[row].pow(2).mean().sqrt()) if trig else 0.0)
            self.records.setdefault(idx, []).append(rec)
            self.sample_keys[idx] = (state.prompts[row], int(state.seeds[row]))

    # ------------------------------------------------------------------------------ reading records
    def trace(self, sample_index: int) -> dict:
        """Per-sample trajectories: steps, t, sigma and lambda per channel, the terms fired per step."""
        recs = self.records.get(sample_index, [])
        kinds = [s.kind for s in self.similarities]
        return {
            "step": [r.step for r in recs], "t": [r.t for r in recs],
            "sigma": {k: [r.sigma.get(k) for r in recs] for k in kinds},
            "lambda": {k: [r.lam.get(k) for r in recs] for k in kinds},
            "triggered": [r.triggered for r in recs], "terms": [r.terms for r in recs],
            "s1": [r.s1 for r in recs], "s2": [r.s2 for r in recs], "y_n": [r.y_n for r in recs],
            "neighbour": [r.neighbour for r in recs],
        }

    def summary(self, sample_index: int) -> dict:
        """One row per sample: how many steps fired each term, first trigger, max sigma per channel."""
        recs = self.records.get(sample_index, [])
        out = {"amg_steps": len(recs), "amg_triggered_steps": sum(r.triggered for r in recs),
               "amg_first_trigger": next((r.step for r in recs if r.triggered), None)}
        for term in TERM_NAMES:
            out[f"amg_{term}_steps"] = sum(term in r.terms for r in recs)
        for s in self.similarities:
            vals = [r.sigma.get(s.kind) for r in recs if r.sigma.get(s.kind) is not None]
            out[f"amg_sigma_{s.kind}_max"] = max(vals) if vals else None
            out[f"amg_sigma_{s.kind}_last"] = vals[-1] if vals else None
        return out


def write_traces(hook: AMGHook, out: str | Path, rows: Sequence[dict] | None = None) -> int:
    """DIR/samples/<id>.amg.json (summary + trace + the configuration as run) for the samples the hook
    guided in this run.

    `rows`: generation rows (id, prompt, seed) to write, e.g. one batch from `generate(after_batch=...)`;
    default: every sample of DIR/manifest.parquet. Samples are matched by (prompt, seed), which names a
    sample in a generation folder; samples finished in an earlier run keep the trace written then.
    Returns how many were written.
    """
    out = Path(out)
    if rows is None:
        man = pd.read_parquet(out / "manifest.parquet")
        rows = [{"prompt": p, "seed": s, "id": i} for p, s, i in zip(man["prompt"], man["seed"], man["id"])]
    by_key = {(r["prompt"], int(r["seed"])): r["id"] for r in rows}
    n = 0
    for i, (prompt, seed) in hook.sample_keys.items():
        sid = by_key.get((prompt, int(seed)))
        if sid is not None:
            write_json(out / "samples" / f"{sid}.amg.json",
                       {"summary": hook.summary(i), "trace": hook.trace(i), "config": hook.describe()})
            n += 1
    return n
