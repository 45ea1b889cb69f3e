"""Single-file Stable Diffusion checkpoints: a tiny random pipeline written as ONE .safetensors file in the
original LDM key layout loads back (with --config = the saved pipeline folder) with every tensor equal.

The LDM layout is written here by the inverse of diffusers' key conversion (`loaders/single_file_utils.py`:
`convert_ldm_unet_checkpoint`, `convert_ldm_vae_checkpoint`, `convert_ldm_clip_checkpoint`) for the tiny
config of conftest.py only (UNet: 2 blocks, layers_per_block 1, CrossAttnDown + Down, Up + CrossAttnUp;
VAE: 2 blocks, layers_per_block 1). The round trip is the independent check: a wrong inverse or a wrong
forward conversion leaves some tensor different or missing.
"""
from __future__ import annotations

import json
import re

import pytest
import torch

from diffmem.errors import BadInputError
from diffmem.models import load_adapter
from diffmem.models.diffusers_adapters import DiffusersAdapter

_RESNET = [("norm1", "in_layers.0"), ("conv1", "in_layers.2"), ("time_emb_proj", "emb_layers.1"),
           ("norm2", "out_layers.0"), ("conv2", "out_layers.3"), ("conv_shortcut", "skip_connection")]
_UNET_FIXED = {"time_embedding.linear_1": "time_embed.0", "time_embedding.linear_2": "time_embed.2",
               "conv_in": "input_blocks.0.0", "conv_norm_out": "out.0", "conv_out": "out.2"}


def _unet_key(k: str, layers: int = 1) -> str:
    per = layers + 1  # LDM blocks per diffusers block (resnets + the down/upsampler slot)
    head, _, leaf = k.rpartition(".")
    if head in _UNET_FIXED:
        return f"{_UNET_FIXED[head]}.{leaf}"
    if m := re.match(r"down_blocks\.(\d+)\.resnets\.(\d+)\.(.*)", k):
        rest = m[3]
        for new, old in _RESNET:
            rest = rest.replace(new, old)
        return f"input_blocks.{1 + int(m[1]) * per + int(m[2])}.0.{rest}"
    if m := re.match(r"down_blocks\.(\d+)\.attentions\.(\d+)\.(.*)", k):
        return f"input_blocks.{1 + int(m[1]) * per + int(m[2])}.1.{m[3]}"
    if m := re.match(r"down_blocks\.(\d+)\.downsamplers\.0\.conv\.(.*)", k):
        return f"input_blocks.{(int(m[1]) + 1) * per}.0.op.{m[2]}"
    if m := re.match(r"mid_block\.resnets\.(\d+)\.(.*)", k):
        rest = m[2]
        for new, old in _RESNET:
            rest = rest.replace(new, old)
        return f"middle_block.{2 * int(m[1])}.{rest}"
    if m := re.match(r"mid_block\.attentions\.0\.(.*)", k):
        return f"middle_block.1.{m[1]}"
    if m := re.match(r"up_blocks\.(\d+)\.resnets\.(\d+)\.(.*)", k):
        rest = m[3]
        for new, old in _RESNET:
            rest = rest.replace(new, old)
        return f"output_blocks.{int(m[1]) * per + int(m[2])}.0.{rest}"
    if m := re.match(r"up_blocks\.(\d+)\.attentions\.(\d+)\.(.*)", k):
        return f"output_blocks.{int(m[1]) * per + int(m[2])}.1.{m[3]}"
    raise AssertionError(f"no LDM name for UNet key {k}")


def _unet_to_ldm(unet) -> dict:
    out = {}
    has_attn = {int(k.split(".")[1]) for k in unet.state_dict() if re.match(r"up_blocks\.\d+\.attentions", k)}
    for k, v in unet.state_dict().items():
        if m := re.match(r"up_blocks\.(\d+)\.upsamplers\.0\.conv\.(.*)", k):
            b = int(m[1])  # the upsampler follows the block's last resnet (and its attention, if any)
            out[f"output_blocks.{b * 2 + 1}.{2 if b in has_attn else 1}.conv.{m[2]}"] = v
        else:
            out[_unet_key(k)] = v
    return {"model.diffusion_model." + k: v for k, v in out.items()}


def _vae_to_ldm(vae) -> dict:
    n_up = len(vae.config.up_block_types)
    attn = {"group_norm": "norm", "to_q": "q", "to_k": "k", "to_v": "v", "to_out.0": "proj_out"}
    out = {}
    for k, v in vae.state_dict().items():
        new = k.replace("conv_norm_out", "norm_out").replace("conv_shortcut", "nin_shortcut")
        new = re.sub(r"encoder\.down_blocks\.(\d+)\.resnets\.", r"encoder.down.\1.block.", new)
        new = re.sub(r"encoder\.down_blocks\.(\d+)\.downsamplers\.0\.", r"encoder.down.\1.downsample.", new)
        new = re.sub(r"decoder\.up_blocks\.(\d+)\.resnets\.",
                     lambda m: f"decoder.up.{n_up - 1 - int(m[1])}.block.", new)
        new = re.sub(r"decoder\.up_blocks\.(\d+)\.upsamplers\.0\.",
                     lambda m: f"decoder.up.{n_up - 1 - int(m[1])}.upsample.", new)
        new = re.sub(r"mid_block\.resnets\.(\d+)\.", lambda m: f"mid.block_{int(m[1]) + 1}.", new)
        if m := re.match(r"(encoder|decoder)\.mid_block\.attentions\.0\.(.*)\.(weight|bias)", new):
            new = f"{m[1]}.mid.attn_1.{attn[m[2]]}.{m[3]}"
            if v.ndim == 2:  # LDM's attention projections are 1x1 convolutions
                v = v[:, :, None, None]
        out["first_stage_model." + new] = v
    return out


def write_ldm_single_file(pipe, path) -> None:
    """The pipeline's UNet, VAE and CLIP text encoder as one SD-v1-style .safetensors file."""
    from safetensors.torch import save_file

    state = {**_unet_to_ldm(pipe.unet), **_vae_to_ldm(pipe.vae),
             **{"cond_stage_model.transformer.text_model." + k: v for k, v in pipe.text_encoder.state_dict().items()}}
    save_file({k: v.contiguous() for k, v in state.items()}, str(path))


@pytest.fixture
def single_file(tiny_pipeline_factory, tmp_path):
    pipe, folder = tiny_pipeline_factory("StableDiffusionPipeline")
    path = tmp_path / "model.safetensors"
    write_ldm_single_file(pipe, path)
    return pipe, folder, path


def test_single_file_round_trip(single_file):
    pipe, folder, path = single_file
    adapter = load_adapter(path, config=folder)
    assert isinstance(adapter, DiffusersAdapter) and adapter.kind == "image"
    for name in ("unet", "vae", "text_encoder"):
        want, got = getattr(pipe, name).state_dict(), getattr(adapter.pipe, name).state_dict()
        assert set(got) == set(want), name
        for k in want:
            assert got[k].shape == want[k].shape and torch.equal(got[k], want[k]), f"{name}.{k}"
    bf = load_adapter(path, config=folder, dtype="bfloat16")
    assert bf.dtype == torch.bfloat16 and bf.pipe.text_encoder.dtype == torch.bfloat16


def test_single_file_errors(single_file, tmp_path):
    _, folder, path = single_file
    with pytest.raises(BadInputError, match="needs --config"):
        load_adapter(path)
    ckpt = tmp_path / "model.ckpt"
    ckpt.write_bytes(b"\x80\x04not really a pickle")
    with pytest.raises(BadInputError, match="never unpickles.*convert it to .safetensors"):
        load_adapter(ckpt, config=folder)
    with pytest.raises(BadInputError, match="--config must be"):
        load_adapter(path, config=tmp_path)  # a folder without model_index.json
    from safetensors.torch import save_file

    other = tmp_path / "other.safetensors"
    save_file({"x": torch.zeros(2)}, str(other))
    with pytest.raises(BadInputError, match="not a single-file Stable Diffusion checkpoint"):
        load_adapter(other, config=folder)
    txt = tmp_path / "notes.txt"
    txt.write_text("x")
    with pytest.raises(BadInputError, match="a model is a folder"):
        load_adapter(txt)
    for e in ("needs --config",):  # every message is one line
        try:
            load_adapter(path)
        except BadInputError as err:
            assert e in str(err) and "\n" not in str(err)


@pytest.mark.slow
def test_cli_generates_from_a_single_file(single_file, tmp_path):
    from diffmem.cli import main

    _, folder, path = single_file
    prompts = tmp_path / "p.txt"
    prompts.write_text("a red cat\n")
    out = tmp_path / "gen"
    assert main(["generate", str(path), "--config", str(folder), "--prompts", str(prompts), "--out", str(out),
                 "--n", "1", "--steps", "2", "--height", "16", "--width", "16"]) == 0
    gen = json.loads((out / "generation.json").read_text())
    assert gen["model"]["name"] == str(path) and gen["dtype"] == "float32" and gen["n_samples"] == 1
    assert len(list((out / "samples").glob("*.png"))) == 1
