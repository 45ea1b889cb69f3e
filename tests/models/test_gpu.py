"""CUDA and float16: the tiny random SD, TextToVideoSD and AnimateDiff pipelines sampled on "cuda" in float16,
through diffmem's sampler and through `diffmem generate --device cuda --dtype float16`, finite and close
to the float32 CUDA run. Skipped without CUDA (run them with `pytest -m gpu` on a GPU machine).

Tolerance: float16 keeps 10 bits of mantissa (relative rounding 2^-11 = 0.0005 per operation); measured on
a CPU for these tiny pipelines (3 DDIM steps, guidance 5, float16 against float32): max |frame difference|
0.0023-0.0028, frames in [0, 1]. CUDA kernels (cuDNN convolutions, fused attention) round differently, so
the tests allow max 0.03 and mean 0.005 (10x the CPU measurement).
"""
from __future__ import annotations

import json

import pytest
import torch

from diffmem.models import load_adapter, sample
from diffmem.models.diffusers_adapters import SUPPORTED
from diffmem.models.sampler import SamplerConfig

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA (torch.cuda.is_available() is False)")]

FP16_MAX, FP16_MEAN = 0.03, 0.005
CONFIG = SamplerConfig(num_steps=3, guidance_scale=5.0, num_frames=4, height=16, width=16)
PROMPTS, SEEDS = ["a red cat", "dog on a mat"], [0, 1]


@pytest.mark.parametrize("cls_name", sorted(SUPPORTED))
def test_float16_on_cuda_is_close_to_float32(cls_name, tiny_pipeline_factory):
    _, folder = tiny_pipeline_factory(cls_name)
    f32 = load_adapter(folder, device="cuda")
    f16 = load_adapter(folder, device="cuda", dtype="float16")
    assert f16.device.type == "cuda" and f16.dtype == torch.float16
    assert {p.dtype for p in f16.pipe.unet.parameters()} == {torch.float16}
    seen = []
    out = sample(f16, PROMPTS, SEEDS, CONFIG, progress=False, hooks=[lambda s: seen.append(s.x_t.dtype)])
    ref = sample(f32, PROMPTS, SEEDS, CONFIG, progress=False)
    assert seen and set(seen) == {torch.float16}  # latents in the model's dtype
    assert out.frames.dtype == torch.float32 and torch.isfinite(out.frames).all()
    diff = (out.frames - ref.frames).abs()
    assert diff.max() < FP16_MAX and diff.mean() < FP16_MEAN, (cls_name, float(diff.max()), float(diff.mean()))


@pytest.mark.parametrize("cls_name", sorted(SUPPORTED))
def test_cli_generate_on_cuda_in_float16(cls_name, tiny_pipeline_factory, tmp_path):
    import numpy as np

    from diffmem.cli import main
    from diffmem.io.image import read_image
    from diffmem.io.video import read_frames

    _, folder = tiny_pipeline_factory(cls_name)
    prompts = tmp_path / "p.txt"
    prompts.write_text("a red cat\n")
    frames = {}
    for dtype in ("float16", "float32"):
        out = tmp_path / dtype
        assert main(["generate", str(folder), "--prompts", str(prompts), "--out", str(out), "--n", "1",
                     "--steps", "3", "--guidance", "5", "--frames", "4", "--height", "16", "--width", "16",
                     "--device", "cuda", "--dtype", dtype]) == 0
        assert json.loads((out / "generation.json").read_text())["dtype"] == dtype
        media = sorted(p for p in (out / "samples").iterdir() if p.suffix in (".png", ".mp4"))
        assert len(media) == 1
        frames[dtype] = (read_image(media[0]) if media[0].suffix == ".png" else read_frames(media[0]).array)
    a, b = (np.asarray(frames[k], dtype=np.float64) / 255 for k in ("float16", "float32"))
    assert a.shape == b.shape and np.isfinite(a).all()
    # uint8 files (and mp4 compression for videos): compare means, not pixels
    assert abs(a.mean() - b.mean()) < 0.02, (cls_name, abs(a.mean() - b.mean()))
