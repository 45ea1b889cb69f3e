"""The adapter's guided noise, latents and frames equal what each diffusers pipeline computes itself.

Reference = the pipeline's own `__call__` on the same latents, prompts, guidance scale and steps; we spy
on what it hands to `scheduler.step` (its guided noise) without changing it.
"""
from __future__ import annotations

import functools

import numpy as np
import pytest
import torch

from diffmem.errors import BadInputError
from diffmem.models import load_adapter
from diffmem.models.diffusers_adapters import SUPPORTED, DiffusersAdapter, load_diffusers, pipeline_class_of
from diffmem.models.sampler import SamplerConfig, sample

PROMPTS = ["a red cat", "dog on a mat"]
GUIDANCE = 5.0
ATOL = 1e-6  # float32 rounding; measured: SD exactly 0, the video pipelines ~1e-7


def _spy_scheduler(pipe):
    recorded = []
    original = pipe.scheduler.step

    @functools.wraps(original)
    def step(model_output, timestep, sample, *args, **kwargs):
        recorded.append((int(timestep), model_output.detach().clone()))
        return original(model_output, timestep, sample, *args, **kwargs)

    pipe.scheduler.step = step
    return recorded


def _to_our_layout(cls_name, eps, batch):
    # TextToVideoSDPipeline steps the scheduler on (B*F, C, h, w); bring it back to (B, C, F, h, w).
    if cls_name == "TextToVideoSDPipeline":
        bf, c, h, w = eps.shape
        return eps.reshape(batch, bf // batch, c, h, w).permute(0, 2, 1, 3, 4)
    return eps


def _pipeline_call(pipe, cls_name, latents, output_type, steps=2):
    kw = {"num_frames": 4} if SUPPORTED[cls_name] == "video" else {}
    out = pipe(PROMPTS, num_inference_steps=steps, guidance_scale=GUIDANCE, latents=latents.clone(),
               height=16, width=16, output_type=output_type, **kw)
    return out.images if cls_name == "StableDiffusionPipeline" else out.frames


@pytest.mark.parametrize("cls_name", sorted(SUPPORTED))
def test_adapter_matches_pipeline(cls_name, tiny_pipeline_factory):
    pipe, folder = tiny_pipeline_factory(cls_name)
    assert pipeline_class_of(folder) == cls_name
    adapter = load_diffusers(folder)  # loaded back from disk: the reference pipeline is the in-memory one
    assert adapter.kind == SUPPORTED[cls_name]
    config = SamplerConfig(num_steps=2, guidance_scale=GUIDANCE, scheduler="default", num_frames=4, height=16, width=16)
    shape = adapter.latent_shape(4, 16, 16)
    assert shape == ((4, 4, 8, 8) if adapter.kind == "video" else (4, 8, 8))
    latents = torch.randn((len(PROMPTS),) + shape, generator=torch.Generator().manual_seed(3))

    ours = []

    def hook(state):
        ours.append((state.t, state.eps_guided.clone(), state.eps_cond.clone(), state.eps_uncond.clone()))

    out = sample(adapter, PROMPTS, [0, 1], config, latents=latents, hooks=[hook], decode=True, progress=False)

    recorded = _spy_scheduler(pipe)
    ref_latents = _pipeline_call(pipe, cls_name, latents, "latent")
    assert [t for t, _ in recorded] == [t for t, *_ in ours]
    for (t, ref_eps), (_, eps_g, eps_c, eps_u) in zip(recorded, ours):
        ref_eps = _to_our_layout(cls_name, ref_eps, len(PROMPTS))
        torch.testing.assert_close(eps_g, ref_eps, atol=ATOL, rtol=0)
        # and the guidance really mixes two different predictions
        assert (eps_c - eps_u).abs().max() > 1e-4
    torch.testing.assert_close(out.latents, ref_latents.float(), atol=ATOL, rtol=0)

    ref_frames = np.asarray(_pipeline_call(pipe, cls_name, latents, "np"))
    if adapter.kind == "image":
        ref_frames = ref_frames[:, None]  # images are one-frame videos
    assert out.frames.shape == ref_frames.shape
    np.testing.assert_allclose(out.frames.numpy(), ref_frames, atol=ATOL)


def test_empty_prompt_is_the_pipelines_unconditional_embedding(tiny_pipeline_factory):
    pipe, folder = tiny_pipeline_factory("StableDiffusionPipeline")
    adapter = load_adapter(str(folder))  # the registry recognises a pipeline folder
    assert isinstance(adapter, DiffusersAdapter) and adapter.kind == "image"
    _, negative = pipe.encode_prompt(["a cat"], torch.device("cpu"), 1, True)
    torch.testing.assert_close(adapter.encode_prompt([""]), negative, atol=1e-6, rtol=0)


def test_v_prediction_model_gives_epsilon(tiny_pipeline_factory):
    """With a v-predicting scheduler the adapter returns epsilon; stepping DDIM on it equals the pipeline."""
    from diffusers import DDIMScheduler

    pipe, folder = tiny_pipeline_factory("StableDiffusionPipeline")
    pipe.scheduler = DDIMScheduler.from_config(pipe.scheduler.config, prediction_type="v_prediction")
    pipe.save_pretrained(str(folder))
    adapter = load_diffusers(folder)
    latents = torch.randn((2, 4, 8, 8), generator=torch.Generator().manual_seed(5))
    config = SamplerConfig(num_steps=2, guidance_scale=GUIDANCE, scheduler="default", height=16, width=16)
    out = sample(adapter, PROMPTS, [0, 1], config, latents=latents, decode=False, progress=False)
    ref = _pipeline_call(pipe, "StableDiffusionPipeline", latents, "latent")
    torch.testing.assert_close(out.latents, ref.float(), atol=1e-4, rtol=0)


def test_not_a_pipeline_folder_is_a_clear_error(tmp_path):
    with pytest.raises(BadInputError, match="model_index.json"):
        load_diffusers(tmp_path)
    (tmp_path / "model_index.json").write_text('{"_class_name": "FluxPipeline"}')
    with pytest.raises(BadInputError, match="FluxPipeline is not supported"):
        load_diffusers(tmp_path)


def test_animatediff_frames_beyond_its_motion_adapter_are_a_clear_error(tiny_pipeline_factory):
    """The motion adapter here learned 8 frame positions; the pipeline's default 16 crashed inside the UNet
    with a raw traceback (real-models issue). Now the default is the adapter's 8, and asking for more is
    one error naming the limit, before any sampling."""
    from diffmem.errors import BadInputError
    from diffmem.models import load_adapter

    _, folder = tiny_pipeline_factory("AnimateDiffPipeline")
    ad = load_adapter(folder)
    assert ad.latent_shape(num_frames=6)[1] == 6
    assert ad.latent_shape()[1] == 8  # min(pipeline default 16, motion_max_seq_length 8)
    with pytest.raises(BadInputError, match="at most 8 frames"):
        ad.latent_shape(num_frames=16)


def test_animatediff_generates_through_the_cli_at_its_default_frames(tiny_pipeline_factory, tmp_path, capsys):
    from diffmem.cli import main
    from diffmem.io.video import read_frames

    _, folder = tiny_pipeline_factory("AnimateDiffPipeline")
    (tmp_path / "p.txt").write_text("a red cat\n")
    args = ["generate", str(folder), "--prompts", str(tmp_path / "p.txt"), "--n", "1", "--steps", "2",
            "--height", "16", "--width", "16"]
    assert main([*args, "--frames", "16", "--out", str(tmp_path / "g16")]) == 1
    assert "at most 8 frames" in capsys.readouterr().err
    # the refused run made no sample: the same folder takes the run at the adapter's default
    assert main([*args, "--out", str(tmp_path / "g16")]) == 0, capsys.readouterr().err
    media = sorted((tmp_path / "g16" / "samples").glob("*.mp4"))
    assert len(media) == 1 and read_frames(media[0]).array.shape[0] == 8


@pytest.mark.parametrize("cls_name", ["StableDiffusionPipeline", "TextToVideoSDPipeline"])
def test_attention_probe_reads_softmax_qk_and_leaves_the_output_alone(cls_name, tiny_pipeline_factory):
    pipe, _ = tiny_pipeline_factory(cls_name)
    adapter = DiffusersAdapter(pipe)
    layers = adapter.cross_attention_layers()
    attn = layers[min(3, len(layers) - 1)]
    shape = adapter.latent_shape(4, 16, 16)
    x = torch.randn((2,) + shape, generator=torch.Generator().manual_seed(1))
    emb = adapter.encode_prompt(["a red cat", "a dog"])
    t = torch.tensor(981)
    seen = {}
    handle = attn.register_forward_hook(
        lambda m, args, kwargs, out: seen.update(h=args[0], ctx=kwargs["encoder_hidden_states"]), with_kwargs=True)
    with torch.no_grad():
        plain = adapter.predict_noise(x, t, emb)
        handle.remove()
        with adapter.attention_probe() as rec:
            probed = adapter.predict_noise(x, t, emb)
    torch.testing.assert_close(probed, plain, atol=1e-5, rtol=0)
    assert len(rec) == 1
    # independently: per head softmax(q k^T / sqrt(d)) from the layer's own projections, then the mean of heads
    h, ctx, heads = seen["h"], seen["ctx"], attn.heads
    q, k = attn.to_q(h), attn.to_k(ctx)
    d = q.shape[-1] // heads
    q = q.reshape(q.shape[0], q.shape[1], heads, d).transpose(1, 2)
    k = k.reshape(k.shape[0], k.shape[1], heads, d).transpose(1, 2)
    want = torch.softmax(q @ k.transpose(-1, -2) / d ** 0.5, -1).mean(1)   # (rows, positions, tokens)
    want = want.reshape(2, -1, want.shape[-1])  # a video's frames run as rows: one row of positions per sample
    torch.testing.assert_close(rec[0], want.float(), atol=1e-5, rtol=0)
    assert rec[0].shape[-1] == emb.shape[1] and torch.allclose(rec[0].sum(-1), torch.ones(()), atol=1e-5)
    assert attn.get_processor() is not None and type(attn.get_processor()).__name__ != "_ProbeProcessor"


def test_attention_detector_runs_on_a_diffusers_unet(tiny_pipeline_factory):
    from diffmem.detect.magnitude import first_step_records

    pipe, _ = tiny_pipeline_factory("StableDiffusionPipeline")
    adapter = DiffusersAdapter(pipe)
    cfg = SamplerConfig(num_steps=5, scheduler="default", height=16, width=16)
    recs = first_step_records(adapter, ["a red cat", "a dog"], [0, 1], cfg, detectors=("attention",))
    tokens = adapter.encode_prompt([""]).shape[1]  # every position of the text, padding included (Ren et al.)
    assert len(recs) == 4
    for r in recs:
        assert 0 < r["attention_entropy"] <= np.log(tokens) + 1e-6
        assert r["attention_entropy_norm"] == pytest.approx(r["attention_entropy"] / np.log(tokens), rel=1e-5)


def test_ren_reweighting_by_hand(tiny_pipeline_factory):
    from diffmem.mitigate.attention import CrossAttentionReweight, reweight_logits

    # the edit alone: keys from l on are -inf on every row, key 0 times c1 on conditional rows only
    z = torch.ones(2, 1, 1, 5)
    got = reweight_logits(z, [3, 2], [True, False], c1=1.25)
    assert got[0, 0, 0].tolist() == [1.25, 1.0, 1.0, float("-inf"), float("-inf")]
    assert got[1, 0, 0].tolist() == [1.0, 1.0, float("-inf"), float("-inf"), float("-inf")]

    pipe, _ = tiny_pipeline_factory("StableDiffusionPipeline")
    adapter = DiffusersAdapter(pipe)
    x = torch.randn((2,) + adapter.latent_shape(4, 16, 16), generator=torch.Generator().manual_seed(2))
    t = torch.tensor(500)
    prompts = ["a red cat", "dog"]
    # c1 = 1 without the mask is the model itself (the explicit processor changes nothing)
    same = CrossAttentionReweight(adapter, c1=1.0, mask=False)
    with torch.no_grad():
        torch.testing.assert_close(same.predict_noise(x, t, same.encode_prompt(prompts)),
                                   adapter.predict_noise(x, t, adapter.encode_prompt(prompts)), atol=1e-5, rtol=0)
    # the CFG batch: unconditional rows take their pair's length
    ren = CrossAttentionReweight(adapter)
    cond = ren.encode_prompt(prompts)
    both = torch.cat([ren.encode_prompt(["", ""]), cond])
    lengths, is_cond = ren.row_rules(both)
    want_len = adapter.token_lengths(prompts)
    assert lengths == want_len + want_len and is_cond == [False, False, True, True]
    assert want_len[0] > want_len[1] >= 3  # BOS + at least one token + EOS
    # one layer's output recomputed from its inputs with the rule written out
    attn = adapter.cross_attention_layers()[0]
    seen = {}
    hook = attn.register_forward_hook(lambda m, a, kw, out: seen.update(h=a[0], ctx=kw["encoder_hidden_states"], out=out),
                                      with_kwargs=True)
    with torch.no_grad():
        ren.predict_noise(torch.cat([x, x]), t, both)
    hook.remove()
    h, ctx, heads = seen["h"], seen["ctx"], attn.heads
    q, k, v = attn.to_q(h), attn.to_k(ctx), attn.to_v(ctx)
    d = q.shape[-1] // heads
    split = lambda m: m.reshape(m.shape[0], m.shape[1], heads, d).transpose(1, 2)  # noqa: E731
    logits = split(q) @ split(k).transpose(-1, -2) / d ** 0.5          # (rows, heads, positions, tokens)
    for r, (n, c) in enumerate(zip(lengths, is_cond)):
        logits[r, :, :, n:] = float("-inf")
        if c:
            logits[r, :, :, 0] *= 1.25
    o = (torch.softmax(logits, -1) @ split(v)).transpose(1, 2).reshape(h.shape[0], h.shape[1], -1)
    torch.testing.assert_close(seen["out"], attn.to_out[0](o), atol=1e-5, rtol=0)
