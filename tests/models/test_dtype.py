"""`dtype` / `--dtype`: models load in float32, bfloat16 or float16; latents are in the model's dtype, decoded
frames and scores are float32, and generate records the dtype (a folder made in another one is refused).

Tolerance of bfloat16 against float32 (CPU, tiny random SD, 3 DDIM steps, guidance 5): bfloat16 keeps 8
bits of mantissa (relative rounding 2^-8 = 0.004 per operation), accumulated over 3 UNet passes and the
VAE decoder. Measured: max |frame difference| 0.020, mean 0.0028 (frames in [0, 1]); the test allows
max 0.06 and mean 0.01 (3x margin). float16 (10-bit mantissa) measured max 0.0023.
"""
from __future__ import annotations

import json

import pytest
import torch

from diffmem.errors import DiffmemError
from diffmem.models import load_adapter, sample
from diffmem.models.registry import resolve_dtype
from diffmem.models.sampler import SamplerConfig

BF16_MAX, BF16_MEAN = 0.06, 0.01
CONFIG = SamplerConfig(num_steps=3, guidance_scale=5.0, height=16, width=16)
PROMPTS, SEEDS = ["a red cat", "dog on a mat"], [0, 1]


def test_bfloat16_diffusers_pipeline_is_close_to_float32(tiny_pipeline_factory):
    _, folder = tiny_pipeline_factory("StableDiffusionPipeline")
    f32 = load_adapter(folder)
    bf = load_adapter(folder, dtype="bfloat16")
    assert f32.dtype == torch.float32 and bf.dtype == torch.bfloat16
    for module in (bf.pipe.unet, bf.pipe.vae, bf.pipe.text_encoder):
        assert {p.dtype for p in module.parameters()} == {torch.bfloat16}
    ref = sample(f32, PROMPTS, SEEDS, CONFIG, progress=False)
    out = sample(bf, PROMPTS, SEEDS, CONFIG, progress=False)
    assert out.frames.dtype == torch.float32 and out.latents.dtype == torch.float32
    assert torch.isfinite(out.frames).all()
    diff = (out.frames - ref.frames).abs()
    assert diff.max() < BF16_MAX and diff.mean() < BF16_MEAN, (float(diff.max()), float(diff.mean()))
    assert diff.max() > 0  # it really ran in bfloat16


def test_sampler_latents_in_the_model_dtype_scores_in_float32(tiny_pipeline_factory):
    from diffmem.detect.magnitude import magnitudes

    _, folder = tiny_pipeline_factory("StableDiffusionPipeline")
    bf = load_adapter(folder, dtype=torch.bfloat16)
    seen = []

    def hook(state):
        seen.append((state.x_t.dtype, state.eps_cond.dtype,
                     {k: v.dtype for k, v in magnitudes(state.eps_cond, state.eps_uncond, None).items()}))

    sample(bf, PROMPTS[:1], SEEDS[:1], CONFIG, hooks=[hook], progress=False)
    x_dtype, eps_dtype, scores = seen[0]
    assert x_dtype == eps_dtype == torch.bfloat16
    assert set(scores.values()) == {torch.float32}


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_builtin_tiny_model_in_other_dtypes(dtype):
    a = load_adapter("builtin:tiny-t2i", dtype=dtype)
    assert a.dtype == resolve_dtype(dtype)
    cfg = SamplerConfig(num_steps=4)
    out = sample(a, ["a red ball"], [0], cfg, progress=False)
    ref = sample(load_adapter("builtin:tiny-t2i"), ["a red ball"], [0], cfg, progress=False)
    assert out.frames.dtype == torch.float32 and torch.isfinite(out.frames).all()
    assert (out.frames - ref.frames).abs().max() < BF16_MAX  # measured (8 steps, tiny-t2v): bf16 0.039, fp16 0.004


def test_unknown_dtype_is_refused():
    with pytest.raises(DiffmemError, match="dtype 'int8' is not supported"):
        load_adapter("builtin:tiny-t2i", dtype="int8")


def test_cli_generate_records_the_dtype_and_refuses_another(tiny_pipeline_factory, tmp_path, capsys):
    from diffmem.cli import main

    _, folder = tiny_pipeline_factory("StableDiffusionPipeline")
    prompts = tmp_path / "p.txt"
    prompts.write_text("a red cat\n")
    out = tmp_path / "gen"
    argv = ["generate", str(folder), "--prompts", str(prompts), "--out", str(out), "--n", "1", "--steps", "2",
            "--height", "16", "--width", "16"]
    assert main(argv + ["--dtype", "bfloat16"]) == 0
    gen = json.loads((out / "generation.json").read_text())
    assert gen["dtype"] == "bfloat16" and gen["n_samples"] == 1
    assert main(argv + ["--dtype", "bfloat16"]) == 0  # same dtype: resumes
    capsys.readouterr()
    assert main(argv) == 1  # float32 into a bfloat16 folder
    assert "other settings" in capsys.readouterr().err
