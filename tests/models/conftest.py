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


def build_cogvideox(folder, rotary: bool = True):
    """A tiny random CogVideoXPipeline (the real model's scheduler settings), saved to `folder`; returns the
    in-memory pipeline. 16x16 frames <-> 2x2 latents (4 VAE blocks), 9 frames <-> 3 latent frames (time
    compressed 4x), T5 text of 8 tokens. The T5 tokenizer is a Unigram vocabulary written here (no hub,
    no sentencepiece): the pieces of a few words plus single letters."""
    import diffusers
    from transformers import T5Config, T5EncoderModel, T5Tokenizer

    pieces = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("\u2581", -2.0)]
    pieces += [("\u2581" + w, -1.0) for w in ["a", "red", "cat", "dog", "on", "mat", "the", "moves", "right"]]
    pieces += [(c, -3.0) for c in string.ascii_lowercase]
    tok = T5Tokenizer(vocab=pieces, extra_ids=0, model_max_length=8)
    torch.manual_seed(0)
    text_encoder = T5EncoderModel(T5Config(vocab_size=len(pieces), d_model=32, d_kv=8, d_ff=37, num_layers=1,
                                           num_heads=2, relative_attention_num_buckets=8))
    # heads * head_dim = 32 = the T5 width; head_dim 16 splits evenly into the 3-D rotary (t, h, w) parts
    transformer = diffusers.CogVideoXTransformer3DModel(
        num_attention_heads=2, attention_head_dim=16, in_channels=4, out_channels=4, time_embed_dim=4,
        text_embed_dim=32, num_layers=1, sample_width=2, sample_height=2, sample_frames=9, patch_size=2,
        temporal_compression_ratio=4, max_text_seq_length=8, use_rotary_positional_embeddings=rotary)
    vae = diffusers.AutoencoderKLCogVideoX(
        in_channels=3, out_channels=3, down_block_types=("CogVideoXDownBlock3D",) * 4,
        up_block_types=("CogVideoXUpBlock3D",) * 4, block_out_channels=(8, 8, 8, 8), latent_channels=4,
        layers_per_block=1, norm_num_groups=2, temporal_compression_ratio=4)
    # THUDM/CogVideoX-2b's scheduler_config.json
    scheduler = diffusers.CogVideoXDDIMScheduler(
        num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
        prediction_type="v_prediction", rescale_betas_zero_snr=True, snr_shift_scale=3.0,
        timestep_spacing="trailing", clip_sample=False, set_alpha_to_one=True, steps_offset=0)
    for module in (text_encoder, transformer, vae):
        module.eval()  # as from_pretrained leaves them (T5's dropout is on in train mode)
    pipe = diffusers.CogVideoXPipeline(tokenizer=tok, text_encoder=text_encoder, vae=vae, transformer=transformer,
                                       scheduler=scheduler)
    pipe.set_progress_bar_config(disable=True)
    pipe.save_pretrained(str(folder))
    return pipe
