"""The built-in tiny model: tokenizer, shapes, checkpoints (sha256, bad files), and the registry."""
from __future__ import annotations

import json

import pytest
import torch

from diffmem.errors import BadInputError, DiffmemError
from diffmem.models import load_adapter
from diffmem.models.tiny import (
    NULL,
    UNK,
    TinyAdapter,
    TinyConfig,
    TinyModel,
    build_vocab,
    file_sha256,
    load_tiny,
    save_tiny,
    words,
)

CAPTIONS = ["a cat moves right across grass", "a picture of a face on stars"]


def micro(kind="video"):
    torch.manual_seed(0)
    cfg = TinyConfig(kind=kind, size=16, frames=4 if kind == "video" else 1, channels=(8, 16), blocks=1, text_dim=16,
                     latent_channels=4, vocab=build_vocab(CAPTIONS))
    return TinyModel(cfg)


def test_tokenizer():
    enc = micro().text
    assert words("A Cat, moves-RIGHT!") == ["a", "cat", "moves", "right"]
    ids = enc.token_ids(["a cat", "", "a zebra", " ".join(["cat"] * 40)])
    v = enc.vocab
    assert [v[i] for i in ids[0, :2]] == ["a", "cat"] and ids[0, 2:].eq(0).all()
    assert v[ids[1, 0]] == NULL and ids[1, 1:].eq(0).all()
    assert v[ids[2, 1]] == UNK
    assert ids.shape[1] == enc.max_tokens and ids[3].ne(0).all()


def test_padding_does_not_change_the_embedding_of_real_tokens():
    enc = micro().text.eval()
    e = enc(enc.token_ids(["a cat"]))
    assert e[0, 2:].abs().sum() == 0  # padding is zeroed
    assert e[0, :2].abs().sum() > 0


@pytest.mark.parametrize("kind", ["video", "image"])
def test_adapter_shapes(kind):
    ad = TinyAdapter(micro(kind), "t")
    shape = ad.latent_shape()
    assert shape == ((4, 4, 4, 4) if kind == "video" else (4, 4, 4))
    z = torch.randn(3, *shape)
    emb = ad.encode_prompt(CAPTIONS + [""])
    eps = ad.predict_noise(z, torch.tensor(10), emb)
    assert eps.shape == z.shape
    frames = ad.decode(z)
    assert frames.shape == (3, 4 if kind == "video" else 1, 16, 16, 3)
    assert 0 <= float(frames.min()) and float(frames.max()) <= 1
    with pytest.raises(DiffmemError, match="16x16 only"):
        ad.latent_shape(height=32)
    # encode_frames is the sampler's space (what decode reads): latents of decoded frames decode to them again
    # up to the uint8 rounding (the autoencoder's basis is orthonormal, so decode(encode(decode(z))) = decode(z))
    u8 = (frames * 255).round().to(torch.uint8)
    z2 = ad.encode_frames(u8 if kind == "video" else u8[:, :1])
    assert tuple(z2.shape) == (3, *shape)
    assert float((ad.decode(z2) - frames).abs().max()) < 0.02


def test_conditioning_reaches_the_output():
    m = micro()
    for p in m.denoiser.parameters():  # the zero-initialised output layers would hide everything
        torch.nn.init.normal_(p, std=0.1)
    ad = TinyAdapter(m, "t")
    z = torch.randn(1, *ad.latent_shape())
    a = ad.predict_noise(z, 500, ad.encode_prompt(["a cat"]))
    b = ad.predict_noise(z, 500, ad.encode_prompt(["a face"]))
    c = ad.predict_noise(z, 100, ad.encode_prompt(["a cat"]))
    assert (a - b).abs().max() > 1e-4 and (a - c).abs().max() > 1e-4


def test_checkpoint_roundtrip_and_sha(tmp_path):
    m = micro()
    save_tiny(m, tmp_path / "ck", extra={"note": "x"})
    meta = json.loads((tmp_path / "ck" / "config.json").read_text())
    assert meta["note"] == "x" and meta["config"]["vocab"] == m.cfg.vocab
    sha = file_sha256(tmp_path / "ck" / "model.safetensors")
    back = load_tiny(tmp_path / "ck", sha256=sha)
    for (k, a), (_, b) in zip(m.state_dict().items(), back.state_dict().items()):
        torch.testing.assert_close(b, a.half().float(), msg=k)  # stored as float16
    with pytest.raises(BadInputError, match="sha256 mismatch"):
        load_tiny(tmp_path / "ck", sha256="0" * 64)
    ad = load_adapter(tmp_path / "ck")
    assert isinstance(ad, TinyAdapter) and ad.kind == "video"


def test_bad_checkpoints(tmp_path):
    with pytest.raises(BadInputError, match="config.json"):
        load_tiny(tmp_path)
    save_tiny(micro(), tmp_path / "ck")
    (tmp_path / "ck" / "model.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(BadInputError, match="sha256 mismatch"):  # the saved hash catches it first
        load_tiny(tmp_path / "ck")
    cfg = json.loads((tmp_path / "ck" / "config.json").read_text())
    del cfg["weights_sha256"]  # a folder of an older version: no hash, the loader still refuses the file
    (tmp_path / "ck" / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(BadInputError, match="cannot load weights"):
        load_tiny(tmp_path / "ck")
    (tmp_path / "ck" / "config.json").write_text('{"format": "something-else"}')
    with pytest.raises(BadInputError, match="not a diffmem tiny-model"):
        load_tiny(tmp_path / "ck")


def test_registry_errors(tmp_path):
    with pytest.raises(BadInputError, match="unknown built-in"):
        load_adapter("builtin:nope")
    with pytest.raises(BadInputError, match="no such model"):
        load_adapter(tmp_path / "missing")
    with pytest.raises(BadInputError, match="not a model folder"):
        load_adapter(tmp_path)


def test_v_prediction_is_returned_as_epsilon():
    """If the network outputs the true v, predict_noise returns the true epsilon (v = sqrt(a) eps - sqrt(1-a) x0)."""
    ad = TinyAdapter(micro(), "t")
    g = torch.Generator().manual_seed(0)
    x0, eps = torch.randn((2, *ad.latent_shape()), generator=g), torch.randn((2, *ad.latent_shape()), generator=g)
    t = torch.tensor([100, 900])
    a = ad.alphas_cumprod.float()[t].view(-1, 1, 1, 1, 1)
    x_t = a.sqrt() * x0 + (1 - a).sqrt() * eps
    ad.model.denoiser.forward = lambda z, tt, text: a.sqrt() * eps - (1 - a).sqrt() * x0
    torch.testing.assert_close(ad.predict_noise(x_t, t, ad.encode_prompt(["a", "b"])), eps, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("name,kind,shape,world", [
    ("tiny-t2v", "video", (16, 8, 8, 8), "small"), ("tiny-t2i", "image", (16, 8, 8), "small"),
    ("tiny-t2v-large", "video", (16, 8, 8, 8), "large"), ("tiny-t2i-large", "image", (16, 8, 8), "large")])
def test_builtin_models_load_by_short_name_with_their_sha256(name, kind, shape, world):
    from diffmem.models.registry import BUILTIN, CHECKPOINTS

    assert file_sha256(CHECKPOINTS / f"{name}.safetensors") == BUILTIN[name]
    ad = load_adapter(f"builtin:{name}")
    assert ad.kind == kind and ad.latent_shape() == shape and ad.name == f"builtin:{name}"
    meta = json.loads((CHECKPOINTS / f"{name}.json").read_text())
    cfg = meta["training"]["config"]
    assert meta["training"]["world"]["size"] == world
    if name == "tiny-t2v-large":  # the last part of its training, continued from the one before (checkpoints README)
        assert cfg["seed"] == 5 and cfg["init"].startswith("d73d19a6") and cfg["steps"] == 6000
        assert cfg["fps"] == 8.0 and ad.fps == 8.0  # the first second of the world's clips, at their rate
        assert cfg["full_xattn"] and ad.model.cfg.full_xattn  # cross-attention at full resolution too
    elif name == "tiny-t2i-large":  # three parts on the balanced-background world, continuing the first image twin
        assert cfg["seed"] == 4 and cfg["init"].startswith("1cffbf3f") and cfg["steps"] == 16000
    else:
        assert cfg["seed"] == 0 and "init" not in cfg


def test_builtin_sha_mismatch_is_refused(monkeypatch):
    from diffmem.models import registry

    monkeypatch.setitem(registry.BUILTIN, "tiny-t2v", "0" * 64)
    with pytest.raises(BadInputError, match="sha256 mismatch"):
        load_adapter("builtin:tiny-t2v")


def test_a_saved_checkpoint_refuses_a_changed_byte(tmp_path):
    """`diffmem train` folders record their weights' sha256 (reliability issue: a flipped byte loaded
    silently and changed the output)."""
    save_tiny(micro(), tmp_path / "m")
    meta = json.loads((tmp_path / "m" / "config.json").read_text())
    assert meta["weights_sha256"] == file_sha256(tmp_path / "m" / "model.safetensors")
    load_tiny(tmp_path / "m")  # intact: loads
    w = tmp_path / "m" / "model.safetensors"
    data = bytearray(w.read_bytes())
    data[-3] ^= 0x01  # one bit of the last weight
    w.write_bytes(bytes(data))
    with pytest.raises(BadInputError, match="sha256 mismatch"):
        load_tiny(tmp_path / "m")
    with pytest.raises(BadInputError, match="sha256 mismatch"):
        load_adapter(str(tmp_path / "m"))


@pytest.mark.parametrize("config", [
    {"num_train_timesteps": 1000, "beta_schedule": "squaredcos_cap_v2"},          # the tiny models'
    {"num_train_timesteps": 1000, "beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "scaled_linear"},  # SD
    {"num_train_timesteps": 200, "beta_schedule": "linear"},
    {},                                                                           # every default
])
def test_noise_schedule_equals_diffusers_bit_for_bit(config):
    """alpha-bar computed from the formulas equals diffusers' DDPMScheduler's (a second implementation)."""
    import diffusers

    from diffmem.models.adapter import alphas_cumprod_of

    want = diffusers.DDPMScheduler.from_config(config).alphas_cumprod.double()
    assert torch.equal(alphas_cumprod_of(config), want)


def test_schedulers_built_from_their_arguments_have_the_from_config_config():
    import inspect

    import diffusers

    ad = TinyAdapter(micro(), "t")
    for name, cls in (("ddim", diffusers.DDIMScheduler), ("ddpm", diffusers.DDPMScheduler)):
        ref = cls.from_config({**ad.scheduler_config(), "prediction_type": "epsilon"})
        got = ad.make_scheduler(name)
        params = set(inspect.signature(cls.__init__).parameters) - {"self"}
        assert {k: got.config[k] for k in params} == {k: ref.config[k] for k in params}  # every argument
        ref.set_timesteps(25)
        got.set_timesteps(25)
        assert torch.equal(got.timesteps, ref.timesteps)
        x, eps = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(0)), torch.zeros(1, 4, 8, 8)
        t = int(ref.timesteps[3])
        assert torch.equal(got.step(eps, t, x, generator=torch.Generator().manual_seed(1)).prev_sample,
                           ref.step(eps, t, x, generator=torch.Generator().manual_seed(1)).prev_sample)


def test_a_hub_id_resolves_offline_from_the_local_cache_only(tmp_path, monkeypatch):
    """`org/name` that sits in the local Hugging Face cache loads (was "no such model"); one that does not
    is a clear error, and nothing is downloaded (no network here or in CI)."""
    cache = tmp_path / "hub"
    snap = cache / "models--someorg--tiny-t2v" / "snapshots" / "0123456789abcdef0123456789abcdef01234567"
    save_tiny(micro(), snap)
    (cache / "models--someorg--tiny-t2v" / "refs").mkdir(parents=True)
    (cache / "models--someorg--tiny-t2v" / "refs" / "main").write_text(snap.name)
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    import huggingface_hub.constants as hc

    monkeypatch.setattr(hc, "HF_HUB_CACHE", str(cache))
    ad = load_adapter("someorg/tiny-t2v")
    assert ad.kind == "video" and str(snap) in ad.name
    with pytest.raises(BadInputError, match="not in the local Hugging Face cache"):
        load_adapter("someorg/not-there")
