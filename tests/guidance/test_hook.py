"""The AMG sampler hook on a toy memorizing denoiser."""

from dataclasses import replace

import json

import numpy as np
import pytest
import torch

from diffmem.errors import DiffmemError
from diffmem.guidance.config import AMGConfig
from diffmem.guidance.hook import AMGHook, write_traces
from diffmem.guidance.schedules import ThresholdSchedule
from diffmem.guidance.similarity import ContentSimilarity, MemoryNeighbours, MotionSimilarity
from diffmem.guidance.terms import amg_step
from diffmem.models.adapter import predicted_x0
from diffmem.models.sampler import SamplerConfig, StepState, sample
from diffmem.studies.generate import GenerateConfig, generate

from _amg_toy import Memorizer, RandomDescriptor, frames_of, smooth_pattern

TRAIN = {"a cat on grass": 1, "a dog on sand": 2}
NOVEL = {"a cup on wood": 5}
CFG = SamplerConfig(num_steps=8, guidance_scale=3.0)
# the toy's AMG: c3 = 1 and the authors' absolute SSCD thresholds, lambda from 0.3 (t = T) to 0.4 (t = 0)
TOY = AMGConfig(c3=1.0, content_lambda=(0.3, 0.4), check_every=1)  # the paper's switch: sigma at every step


@pytest.fixture(scope="module")
def setup():
    desc = RandomDescriptor()
    pats = {c: smooth_pattern(s) for c, s in {**TRAIN, **NOVEL}.items()}
    vecs, ids, caps, frames = [], [], [], []
    for n, cap in enumerate(TRAIN):
        for rep in range(2):  # every training clip is duplicated
            v = desc.encode(frames_of(pats[cap]))
            vecs += list(v); ids += [f"{n}-{rep}"] * len(v); caps += [cap] * len(v); frames += list(range(len(v)))
    sim = ContentSimilarity(desc, MemoryNeighbours(np.stack(vecs), ids, caps, frames))
    return Memorizer(pats), sim


def test_memorized_sample_is_guided_and_novel_one_untouched(setup):
    adapter, sim = setup
    prompts, seeds = ["a cat on grass", "a cup on wood"], [0, 1]
    base = sample(adapter, prompts, seeds, CFG, progress=False)
    hook = AMGHook([sim], TOY)
    out = sample(adapter, prompts, seeds, CFG, hooks=[hook], progress=False)
    s_base, _ = sim(base.frames)
    s_amg, _ = sim(out.frames)
    assert s_base[0] > 0.9 and s_base[1] < 0.4  # the toy memorizes the cat, not the cup
    assert s_amg[0] < s_base[0] - 0.05
    assert torch.equal(out.frames[1], base.frames[1])  # never triggered: bit-identical
    rec0, rec1 = hook.records[0], hook.records[1]
    assert len(rec0) == len(rec1) == CFG.num_steps
    assert all(r.triggered for r in rec0) and not any(r.triggered for r in rec1)
    assert rec0[0].terms == ["spe", "sim"]  # s2 is capped to 0 once s1 = s0 - 1
    assert rec0[0].y_n == "a cat on grass" and rec0[0].neighbour.startswith("0-")
    summ = hook.summary(0)
    assert summ["amg_triggered_steps"] == CFG.num_steps and summ["amg_spe_steps"] == CFG.num_steps
    tr = hook.trace(1)
    assert len(tr["sigma"]["content"]) == CFG.num_steps and tr["lambda"]["content"][0] < tr["lambda"]["content"][-1]
    # eps(x_t, y_N) is never needed when s2 = 0 ... but is computed for triggered rows when "dup" is on
    assert hook.stats["dup_calls"] == CFG.num_steps and hook.stats["grad_calls"] == CFG.num_steps


def _capture_state(adapter, prompt, seed, step):
    got = {}

    def grab(state):
        if state.index == step:
            got["s"] = state
    sample(adapter, [prompt], [seed], CFG, hooks=[grab], progress=False)
    return got["s"]


def test_hook_step_equals_the_functional_step(setup):
    adapter, sim = setup
    st: StepState = _capture_state(adapter, "a dog on sand", 3, step=2)
    cfg = AMGConfig(c1=0.5, c2=1.0, c3=2.0, content_lambda=(0.3, 0.4), check_every=1)  # small c1: s2 > 0 too
    hook = AMGHook([sim], cfg)
    got = hook(st)
    # independently: sigma and its gradient at x0_hat, eps(x_t, y_N), then the equations
    x = st.x_t.detach().clone().requires_grad_(True)
    frames = adapter.decode(predicted_x0(x, st.eps_guided, st.alpha_bar_t))
    sigma, info = sim(frames)
    # G_sim's quantity for video: mean over frames of each frame's best similarity to any training frame
    train = torch.as_tensor(sim.neighbours.vectors(np.arange(len(sim.neighbours))))
    f = frames.reshape(-1, *frames.shape[2:]).permute(0, 3, 1, 2)
    per_frame = (sim.descriptor.embed(f) @ train.T).max(1).values
    (grad,) = torch.autograd.grad(per_frame.mean(), x)
    eps_dup = adapter.predict_noise(st.x_t, st.t, adapter.encode_prompt([info.captions[0]]))
    lam = ThresholdSchedule("exponential")(st.t, 1000)
    assert sigma.item() > lam
    ref = amg_step(st.eps_cond, st.eps_uncond, sigma.detach(), lam, guidance_scale=3.0, alpha_bar_t=st.alpha_bar_t,
                   eps_dup=eps_dup, grad_sigma=grad, c1=0.5, c2=1.0, c3=2.0)
    assert torch.allclose(got, ref.eps, atol=1e-5)
    r = hook.records[0][0]
    assert r.terms == ["spe", "dup", "sim"] and r.s1 == pytest.approx(0.5 * sigma.item(), rel=1e-5)
    assert r.s2 == pytest.approx(min(sigma.item(), 3.0 - r.s1 - 1), rel=1e-5)


def test_ablations_and_switches(setup):
    adapter, sim = setup
    prompts, seeds = ["a cat on grass", "a cup on wood"], [0, 1]
    base = sample(adapter, prompts, seeds, CFG, progress=False)
    # a pre-switch that flags nothing: no similarity computed at all, output unchanged
    off = AMGHook([sim], TOY, pre_switch=lambda s: torch.zeros(len(s.prompts), dtype=torch.bool))
    out = sample(adapter, prompts, seeds, CFG, hooks=[off], progress=False)
    assert off.stats["similarity_calls"] == 0 and torch.equal(out.frames, base.frames)
    # an object with .check works too (the memorization guard's interface)

    class Guard:
        def check(self, state):
            return torch.tensor([p == "a cat on grass" for p in state.prompts])
    g = AMGHook([sim], TOY, pre_switch=Guard())
    sample(adapter, prompts, seeds, CFG, hooks=[g], progress=False)
    assert g.stats["similarity_calls"] == CFG.num_steps
    # always-on: the novel sample is guided too
    on = AMGHook([sim], replace(TOY, terms=("spe",), switch="always"))
    out = sample(adapter, prompts, seeds, CFG, hooks=[on], progress=False)
    assert all(r.triggered for r in on.records[1]) and not torch.equal(out.frames[1], base.frames[1])
    # a term subset: spe alone never calls the denoiser for y_N nor the gradient
    spe = AMGHook([sim], replace(TOY, terms=("spe",)))
    sample(adapter, prompts, seeds, CFG, hooks=[spe], progress=False)
    assert spe.stats["dup_calls"] == 0 and spe.stats["grad_calls"] == 0
    with pytest.raises(DiffmemError, match="unknown AMG terms"):
        AMGConfig(terms=("spe", "xyz"))
    # check_every: the novel sample is measured at steps 0, 3, 6 only; the guided one at every step
    lazy = AMGHook([sim], replace(TOY, check_every=3))
    out = sample(adapter, prompts, seeds, CFG, hooks=[lazy], progress=False)
    measured = [[r.sigma["content"] is not None for r in lazy.records[i]] for i in (0, 1)]
    assert all(measured[0]) and measured[1] == [k % 3 == 0 for k in range(CFG.num_steps)]
    assert torch.equal(out.frames[1], base.frames[1])


def test_motion_channel_needs_its_threshold(setup):
    adapter, sim = setup
    motion = MotionSimilarity(np.zeros((1, 2 * 64 * 4), np.float32), [("x", 0, "cap")])
    motion.threshold = None  # a similarity that names no verdict threshold
    with pytest.raises(DiffmemError, match="no threshold for the 'motion' similarity"):
        AMGHook([sim, motion], TOY)
    # lambda_motion = 0.8 at every step: tau_m = 0.8, from 1.0 tau_m to 1.0 tau_m
    hook = AMGHook([sim, motion], replace(TOY, motion_lo=1.0, motion_hi=1.0), thresholds={"motion": 0.8})
    assert hook.schedule("motion")(0, 1000) == hook.schedule("motion")(999, 1000) == pytest.approx(0.8)
    assert hook.schedule("content") == ThresholdSchedule("exponential", 0.3, 0.4)
    sample(adapter, ["a cup on wood"], [0], CFG, hooks=[hook], progress=False)
    # the toy's clips are still: motion sigma is -1 at every step, never above 0.8
    assert all(r.sigma["motion"] == -1.0 for r in hook.records[0])


def test_traces_of_finished_batches_survive_a_kill(setup, tmp_path):
    """Traces are written batch by batch: a run killed in its second batch keeps the first batch's."""
    adapter, sim = setup
    hook = AMGHook([sim], TOY)
    settings = GenerateConfig(n=1, steps=4, guidance=3.0)
    batches = []

    def after(rows):
        batches.append(write_traces(hook, tmp_path, rows))
        if len(batches) == 1:
            raise KeyboardInterrupt  # killed right after the first batch was written

    with pytest.raises(KeyboardInterrupt):
        generate(adapter, ["a cat on grass", "a cup on wood"], tmp_path, settings, batch_size=1, hooks=[hook],
                 after_batch=after, progress=False)
    traces = sorted(p.name for p in (tmp_path / "samples").glob("*.amg.json"))
    assert batches == [1] and len(traces) == 1
    first = json.loads((tmp_path / "samples" / traces[0]).read_text())
    assert len(first["trace"]["step"]) == 4  # every step of the finished sample
    assert set(first) == {"summary", "trace", "config"}
    assert first["config"]["c3"] == 1.0 and first["config"]["schedules"]["content"]["lo"] == 0.3
