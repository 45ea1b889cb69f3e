"""The CogVideoX adapter computes what CogVideoXPipeline computes, on tiny random components built offline.

References are computed without the adapter: direct calls of the pipeline's transformer / VAE / T5 path
and of its own `__call__`, and the noise schedule written out by hand in numpy.
"""
from __future__ import annotations

import functools
import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from diffmem import cli
from diffmem.errors import BadInputError
from diffmem.models import load_adapter
from diffmem.models.cogvideox import CogVideoXAdapter
from diffmem.models.diffusers_adapters import load_diffusers, pipeline_class_of
from diffmem.models.sampler import SamplerConfig, sample

# the shared builder in tests/models/conftest.py, loaded by path ("conftest" names several modules in a run)
_spec = importlib.util.spec_from_file_location("_models_conftest", Path(__file__).with_name("conftest.py"))
_shared = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_shared)
build_cogvideox = _shared.build_cogvideox

PROMPTS = ["a red cat", "dog on a mat"]
SEQ = 8  # the tiny transformer's max_text_seq_length


@pytest.fixture(scope="module", params=[True, False], ids=["rotary", "sincos"])
def tiny(request, tmp_path_factory):
    folder = tmp_path_factory.mktemp("cogvideox") / "saved"
    pipe = build_cogvideox(folder, rotary=request.param)
    return pipe, folder, load_diffusers(folder)  # the adapter is loaded back from disk


@pytest.fixture(scope="module")
def rotary_only(tmp_path_factory):
    folder = tmp_path_factory.mktemp("cogvideox-r") / "saved"
    pipe = build_cogvideox(folder, rotary=True)
    return pipe, folder, load_adapter(str(folder))


def test_folder_loads_as_a_cogvideox_adapter(rotary_only):
    _, folder, adapter = rotary_only
    assert pipeline_class_of(folder) == "CogVideoXPipeline"
    assert isinstance(adapter, CogVideoXAdapter)
    assert adapter.kind == "video" and adapter.space == "latent" and adapter.frame_axis == 2
    assert adapter.dtype == torch.float32 and adapter.device == torch.device("cpu")
    d = adapter.describe()
    # default size: the transformer's sample_frames (9) and sample_height/width (2) x the VAE's 8
    assert d["class"] == "CogVideoXAdapter" and d["latent_shape"] == [4, 3, 2, 2]
    assert d["num_train_timesteps"] == 1000
    json.dumps(d)


def _v_to_eps(v, x, abar):
    a = torch.as_tensor(abar, dtype=x.dtype)
    return a.sqrt() * v + (1 - a).sqrt() * x


def test_predict_noise_is_the_transformer_v_turned_into_epsilon(tiny):
    pipe, _, adapter = tiny
    shape = adapter.latent_shape(9, 32, 16)  # non-square, not the sample size: h and w must not be swapped
    assert shape == (4, 3, 4, 2)
    x = torch.randn((2,) + shape, generator=torch.Generator().manual_seed(1))  # (B, C, F, h, w)
    cond, _ = pipe.encode_prompt(PROMPTS, do_classifier_free_guidance=False, max_sequence_length=SEQ,
                                 device=torch.device("cpu"))
    rotary = (pipe._prepare_rotary_positional_embeddings(32, 16, 3, torch.device("cpu"))
              if pipe.transformer.config.use_rotary_positional_embeddings else None)
    abar = pipe.scheduler.alphas_cumprod
    with torch.no_grad():
        emb = adapter.encode_prompt(PROMPTS)
        torch.testing.assert_close(emb, cond, atol=1e-6, rtol=0)  # loaded vs in-memory T5: float rounding
        for t in (999, 500, 20):
            v = pipe.transformer(hidden_states=x.permute(0, 2, 1, 3, 4), encoder_hidden_states=cond,
                                 timestep=torch.tensor([t, t]), image_rotary_emb=rotary, return_dict=False)[0]
            a = max(float(abar[t]), 2.0 ** -24)  # t = 999: zero terminal SNR, clamped
            ref = _v_to_eps(v.permute(0, 2, 1, 3, 4), x, a)
            ours = adapter.predict_noise(x, t, emb)
            assert ours.shape == x.shape
            torch.testing.assert_close(ours, ref, atol=1e-6, rtol=0)
        # one timestep per row, and a batch-1 embedding broadcast
        ours = adapter.predict_noise(x, torch.tensor([999, 20]), emb[:1])
        assert torch.isfinite(ours).all()


def test_empty_prompt_is_the_pipelines_unconditional_embedding(rotary_only):
    pipe, _, adapter = rotary_only
    _, negative = pipe.encode_prompt(["a cat"], do_classifier_free_guidance=True, max_sequence_length=SEQ,
                                     device=torch.device("cpu"))
    with torch.no_grad():
        torch.testing.assert_close(adapter.encode_prompt([""]), negative, atol=1e-6, rtol=0)
        assert (adapter.encode_prompt(["a cat"]) - negative).abs().max() > 1e-4


def _hand_schedule(shift_scale=3.0, n=1000, lo=0.00085, hi=0.012):
    """scaled-linear alpha-bar, SNR-shifted (abar / (s + (1 - s) abar)), then rescaled to zero terminal
    SNR (Lin et al. 2024, Algorithm 1, on sqrt(alpha-bar)) -- the order CogVideoXDDIMScheduler uses."""
    betas = np.linspace(np.sqrt(lo), np.sqrt(hi), n) ** 2
    abar = np.cumprod(1.0 - betas)
    abar = abar / (shift_scale + (1.0 - shift_scale) * abar)  # = abar / (3 - 2 abar)
    s = np.sqrt(abar)
    s0, sT = s[0], s[-1]
    s = (s - sT) * s0 / (s0 - sT)
    return s ** 2


def test_alphas_cumprod_are_the_schedulers_shifted_zero_snr_ones(rotary_only):
    pipe, _, adapter = rotary_only
    ours = adapter.alphas_cumprod
    own = pipe.scheduler.alphas_cumprod.double()
    assert ours.dtype == torch.float64 and ours.shape == (1000,)
    assert float(own[-1]) == 0.0  # zero terminal SNR
    torch.testing.assert_close(ours[:-1], own[:-1], atol=0, rtol=0)
    assert float(ours[-1]) == 2.0 ** -24
    assert adapter.alpha_bar(999) == 2.0 ** -24 and adapter.alpha_bar(0) == float(own[0])
    hand = _hand_schedule()
    np.testing.assert_allclose(own.numpy(), hand, rtol=1e-5, atol=1e-7)  # diffusers computes in float32 betas
    unshifted = _hand_schedule(shift_scale=1.0)
    assert np.abs(hand - unshifted).max() > 0.05  # the shift matters: not diffmem's generic schedule
    # every scheduler diffmem samples with runs on exactly this schedule
    for name, cls in (("default", "CogVideoXDDIMScheduler"), ("ddim", "DDIMScheduler"), ("ddpm", "DDPMScheduler")):
        sched = adapter.make_scheduler(name)
        assert type(sched).__name__ == cls
        assert sched.config.prediction_type == "epsilon"
        torch.testing.assert_close(sched.alphas_cumprod.double(), ours, atol=0, rtol=0)


def test_decode_is_the_pipelines_decode_latents_and_postprocessing(rotary_only):
    pipe, _, adapter = rotary_only
    z = torch.randn((2, 4, 3, 2, 2), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        video = pipe.decode_latents(z.permute(0, 2, 1, 3, 4))  # the pipeline's own layout (B, F, C, h, w)
        ref = pipe.video_processor.postprocess_video(video=video, output_type="np")
    ours = adapter.decode(z.clone().requires_grad_(True))
    assert ours.shape == (2, 9, 16, 16, 3) == ref.shape  # 3 latent frames -> 1 + 4 * 2 frames
    np.testing.assert_allclose(ours.detach().numpy(), ref, atol=1e-6)
    # differentiable (AMG's dissimilarity gradient flows through it)
    zz = z.clone().requires_grad_(True)
    adapter.decode(zz).sum().backward()
    assert zz.grad is not None and zz.grad.abs().sum() > 0


@pytest.mark.parametrize("scheduler", ["default", "ddim"])
def test_sampling_gives_finite_frames(tiny, scheduler):
    _, _, adapter = tiny
    cfg = SamplerConfig(num_steps=3, guidance_scale=6.0, scheduler=scheduler)
    out = sample(adapter, PROMPTS, [0, 1], cfg, progress=False)
    assert out.frames.shape == (2, 9, 16, 16, 3)
    assert torch.isfinite(out.frames).all() and torch.isfinite(out.latents).all()
    assert (out.frames[0] - out.frames[1]).abs().max() > 0


def test_default_sampling_follows_the_pipelines_own_call(tiny):
    """Our loop with scheduler "default" against CogVideoXPipeline.__call__ on the same latents: the same
    timesteps and final latents, up to the 2**-24 clamp at t = 999 (the pipeline's v-step takes x0 = -v
    there exactly, ours divides by sqrt(2**-24))."""
    pipe, _, adapter = tiny
    x = torch.randn((2, 4, 3, 2, 2), generator=torch.Generator().manual_seed(4))
    cfg = SamplerConfig(num_steps=3, guidance_scale=6.0, scheduler="default")
    ts = []
    out = sample(adapter, PROMPTS, [0, 1], cfg, latents=x, decode=False, progress=False,
                 hooks=[lambda s: ts.append(s.t)])
    seen = []
    original = pipe.scheduler.step

    @functools.wraps(original)
    def spy(model_output, timestep, *a, **k):
        seen.append(int(timestep))
        return original(model_output, timestep, *a, **k)

    pipe.scheduler.step = spy
    try:
        ref = pipe(PROMPTS, num_inference_steps=3, guidance_scale=6.0, latents=x.permute(0, 2, 1, 3, 4).clone(),
                   height=16, width=16, num_frames=9, max_sequence_length=SEQ, output_type="latent").frames
    finally:
        del pipe.scheduler.step
    assert ts == seen == [999, 666, 332]  # "trailing" spacing: starts at T - 1
    torch.testing.assert_close(out.latents, ref.permute(0, 2, 1, 3, 4).float(), atol=1e-3, rtol=0)


def test_frame_counts_the_vae_cannot_make_are_one_line_errors(rotary_only):
    pipe, folder, adapter = rotary_only
    # what the VAE really decodes from L latent frames (it decodes them two at a time)
    made = {}
    with torch.no_grad():
        for L in (1, 2, 3, 4, 5):
            made[L] = pipe.vae.decode(torch.zeros(1, 4, L, 2, 2)).sample.shape[2]
            assert adapter.decoded_frames(L) == made[L]
    assert made == {1: 1, 2: 8, 3: 9, 4: 16, 5: 17}
    for frames in (1, 8, 9, 16, 17):
        assert adapter.latent_shape(frames)[1] == (frames - 1) // 4 + 1
    for frames, hint in ((5, "--frames 1 or 8"), (13, "--frames 9 or 16"), (2, "--frames 1 or 8")):
        with pytest.raises(BadInputError) as e:
            adapter.latent_shape(frames)
        msg = str(e.value)
        assert "\n" not in msg and str(folder) in msg and "makes 1, 8, 9, 16, 17, ... frames" in msg and hint in msg
    with pytest.raises(BadInputError, match="multiples of 16"):
        adapter.latent_shape(9, 24, 16)


# ---- the command line, end to end, on the saved folder ---------------------------------------------------
@pytest.fixture
def cli_setup(rotary_only, tmp_path):
    _, folder, _ = rotary_only
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text("".join(json.dumps({"prompt": p}) + "\n" for p in PROMPTS))
    return folder, prompts, tmp_path


def _generate(folder, prompts, out, *extra):
    return cli.main(["generate", str(folder), "--prompts", str(prompts), "--n", "1", "--steps", "2",
                     "--frames", "8", "--out", str(out), *extra])


def test_cli_generate_and_amg(cli_setup):
    import pandas as pd

    from diffmem.io.video import read_frames

    folder, prompts, tmp = cli_setup
    assert _generate(folder, prompts, tmp / "plain") == 0
    df = pd.read_parquet(tmp / "plain" / "manifest.parquet")
    assert len(df) == 2
    clip = read_frames(tmp / "plain" / df["path"][0]).array
    assert clip.shape == (8, 16, 16, 3)
    gen = json.loads((tmp / "plain" / "generation.json").read_text())
    assert gen["model"]["class"] == "CogVideoXAdapter" and gen["status"] == "done"
    # AMG against a "training set" made of these very samples
    # sigma at every step (the paper's switch), so that each step's value can be checked
    assert _generate(folder, prompts, tmp / "amg", "--amg", "--index", str(tmp / "plain"), "--amg-check-every", "1") == 0
    df = pd.read_parquet(tmp / "amg" / "manifest.parquet")
    assert len(df) == 2
    for sid, path in zip(df["id"], df["path"]):
        assert read_frames(tmp / "amg" / path).array.shape == (8, 16, 16, 3)
        trace = json.loads((tmp / "amg" / "samples" / f"{sid}.amg.json").read_text())
        assert trace["summary"]["amg_steps"] == 2 and trace["trace"]["t"][0] == 999
        assert all(np.isfinite(trace["trace"]["sigma"]["content"]))


def test_cli_detect(cli_setup):
    import pandas as pd

    folder, prompts, tmp = cli_setup
    assert cli.main(["detect", str(folder), "--prompts", str(prompts), "--out", str(tmp / "det"), "--seeds", "2",
                     "--steps", "1", "--num-steps", "3", "--frames", "8", "--device", "cpu"]) == 0
    df = pd.read_parquet(tmp / "det" / "detect.parquet")
    assert sorted(df["prompt"]) == sorted(PROMPTS)
    assert np.isfinite(df[["content", "motion", "total"]].to_numpy(dtype=float)).all()
    assert (tmp / "det" / "summary.json").exists()
