"""Tiny, randomly initialised components of the real diffusers classes (as diffusers' own tests build them).

No hub: the CLIP tokenizer is built from a vocab.json + merges.txt written here (characters only,
no merges, which is a valid byte-pair vocabulary).
"""
from __future__ import annotations

import json
import string
import warnings

import pytest
import torch

TEXT_DIM = 16


def tiny_tokenizer(folder):
    from transformers import CLIPTokenizer

    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for ch in string.ascii_lowercase:
        vocab.setdefault(ch, len(vocab))
        vocab.setdefault(ch + "</w>", len(vocab))
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    return CLIPTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt"), model_max_length=12)


def tiny_text_encoder(vocab_size):
    from transformers import CLIPTextConfig, CLIPTextModel

    return CLIPTextModel(CLIPTextConfig(
        vocab_size=vocab_size, hidden_size=TEXT_DIM, intermediate_size=32, num_hidden_layers=2,
        num_attention_heads=2, max_position_embeddings=12, bos_token_id=0, eos_token_id=1, pad_token_id=1))


def tiny_vae():
    from diffusers import AutoencoderKL

    # two blocks -> vae_scale_factor 2: 16x16 frames <-> 4x8x8 latents
    return AutoencoderKL(block_out_channels=(8, 8), in_channels=3, out_channels=3, latent_channels=4,
                         down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2,
                         norm_num_groups=8, sample_size=16)


def tiny_scheduler():
    from diffusers import DDIMScheduler

    return DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                         clip_sample=False, set_alpha_to_one=False, steps_offset=1)


def tiny_unet2d():
    from diffusers import UNet2DConditionModel

    return UNet2DConditionModel(
        block_out_channels=(8, 16), layers_per_block=1, sample_size=8, in_channels=4, out_channels=4,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=TEXT_DIM, norm_num_groups=8, attention_head_dim=2)


def build_pipeline(cls_name: str, folder):
    """A tiny random pipeline of class `cls_name`, its components seeded so every run is the same."""
    import diffusers

    torch.manual_seed(0)
    tok = tiny_tokenizer(folder / "tok")
    common = dict(vae=tiny_vae(), text_encoder=tiny_text_encoder(len(tok.get_vocab()) + 2), tokenizer=tok,
                  scheduler=tiny_scheduler())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if cls_name == "StableDiffusionPipeline":
            pipe = diffusers.StableDiffusionPipeline(unet=tiny_unet2d(), safety_checker=None, feature_extractor=None,
                                                     requires_safety_checker=False, **common)
        elif cls_name == "TextToVideoSDPipeline":
            unet = diffusers.UNet3DConditionModel(
                block_out_channels=(8, 16), layers_per_block=1, sample_size=8, in_channels=4, out_channels=4,
                down_block_types=("CrossAttnDownBlock3D", "DownBlock3D"),
                up_block_types=("UpBlock3D", "CrossAttnUpBlock3D"),
                cross_attention_dim=TEXT_DIM, norm_num_groups=8, attention_head_dim=4)
            pipe = diffusers.TextToVideoSDPipeline(unet=unet, **common)
        elif cls_name == "AnimateDiffPipeline":
            adapter = diffusers.MotionAdapter(block_out_channels=(8, 16), motion_layers_per_block=1,
                                              motion_norm_num_groups=2, motion_num_attention_heads=2,
                                              motion_max_seq_length=8)
            pipe = diffusers.AnimateDiffPipeline(unet=tiny_unet2d(), motion_adapter=adapter, **common)
        else:  # pragma: no cover
            raise ValueError(cls_name)
    pipe.set_progress_bar_config(disable=True)
    return pipe


@pytest.fixture
def tiny_pipeline_factory(tmp_path):
    def make(cls_name):
        pipe = build_pipeline(cls_name, tmp_path / cls_name)
        pipe.save_pretrained(str(tmp_path / cls_name / "saved"))
        return pipe, tmp_path / cls_name / "saved"

    return make
