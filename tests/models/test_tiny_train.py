"""Training the tiny model: a checkpoint comes out, an interrupted run resumes to the same weights."""
from __future__ import annotations

import json

import pytest
import torch

from diffmem.errors import DiffmemError
from diffmem.models import load_adapter
from diffmem.models.train import STATE, TrainConfig, load_training_data, train_tiny

MICRO = TrainConfig(size=16, frames=4, channels=(8, 16), blocks=1, text_dim=16, latent_channels=8, steps=6, batch=4,
                    save_every=2, seed=3)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    from diffmem.world import make_world

    out = tmp_path_factory.mktemp("world")
    make_world(out, seed=0, size="tiny")
    return out


def test_training_data_reads_every_item(world):
    import pandas as pd

    d = load_training_data(world, MICRO, progress=False)
    n = len(pd.read_parquet(world / "train.parquet"))
    assert d.frames.shape == (n, 4, 16, 16, 3) and len(d.captions) == n and not d.skipped
    img = [i for i, x in enumerate(d.ids) if x.startswith("img")]
    assert img and all((d.frames[i] == d.frames[i][:1]).all() for i in img)  # images are static clips


def test_training_data_at_a_frame_rate_is_the_first_frames(world):
    # the tiny world's clips are 8 frames at 8 fps: at fps=8 the 4 frames are frames 0-3 (the first half
    # second); without a rate they are spread over the clip (0, 2, 4, 6)
    from dataclasses import replace

    import pandas as pd

    from diffmem.io.video import read_frames

    vid = pd.read_parquet(world / "train.parquet").query("kind == 'video'").iloc[0]
    every = read_frames(world / vid["path"], size=(16, 16)).array  # all 8 decoded frames
    assert len(every) == 8
    at_rate = load_training_data(world, replace(MICRO, fps=8.0), progress=False)
    spread = load_training_data(world, MICRO, progress=False)
    i = at_rate.ids.index(vid["id"])
    assert (at_rate.frames[i] == every[:4]).all()
    assert (spread.frames[i] == every[::2]).all()
    assert "fps" not in MICRO.as_dict() and replace(MICRO, fps=8.0).as_dict()["fps"] == 8.0


def test_train_then_resume_gives_the_same_weights(world, tmp_path, monkeypatch):
    straight = tmp_path / "straight"
    summary = train_tiny(world, straight, MICRO, progress=False, log=lambda m: None, command="test")
    assert summary["world"]["size"] == "tiny" and summary["world"]["seed"] == 0
    assert (straight / "model.safetensors").is_file() and not (straight / STATE).exists()
    meta = json.loads((straight / "config.json").read_text())
    assert meta["training"]["config"]["steps"] == 6 and meta["training"]["command"] == "test"

    # interrupt the second run inside step 4 (0-based 3), as Ctrl-C would
    calls = {"n": 0}
    real = torch.nn.utils.clip_grad_norm_

    def interrupt(*a, **k):
        calls["n"] += 1
        if calls["n"] == 4:
            raise KeyboardInterrupt
        return real(*a, **k)

    resumed = tmp_path / "resumed"
    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", interrupt)
    with pytest.raises(KeyboardInterrupt):
        train_tiny(world, resumed, MICRO, progress=False, log=lambda m: None)
    assert (resumed / STATE).is_file() and not (resumed / "model.safetensors").exists()
    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", real)
    logs = []
    train_tiny(world, resumed, MICRO, progress=False, log=logs.append)
    assert any("resuming" in m and "step 3" in m for m in logs)

    a = load_adapter(straight).model.state_dict()
    b = load_adapter(resumed).model.state_dict()
    for k in a:
        torch.testing.assert_close(a[k], b[k], msg=k)

    # finished: the same command is a no-op, other settings are refused
    logs.clear()
    train_tiny(world, straight, MICRO, progress=False, log=logs.append)
    assert any("nothing to do" in m for m in logs)
    with pytest.raises(DiffmemError, match="other settings"):
        train_tiny(world, straight, TrainConfig(**{**MICRO.__dict__, "steps": 7}), progress=False, log=lambda m: None)


def test_image_twin_trains(world, tmp_path):
    cfg = TrainConfig(**{**MICRO.__dict__, "kind": "image", "steps": 2})
    train_tiny(world, tmp_path / "img", cfg, progress=False, log=lambda m: None)
    ad = load_adapter(tmp_path / "img")
    assert ad.kind == "image" and ad.latent_shape() == (8, 4, 4)


def test_init_continues_from_a_finished_model(world, tmp_path):
    from dataclasses import replace

    from diffmem.models.tiny import file_sha256, load_tiny

    first = tmp_path / "first"
    train_tiny(world, first, MICRO, progress=False, log=lambda m: None)
    # a near-zero learning rate: continuing must leave the weights where --init put them
    still = replace(MICRO, steps=3, lr=1e-12, min_lr=1e-12)
    summary = train_tiny(world, tmp_path / "more", still, progress=False, log=lambda m: None, init=first)
    assert summary["config"]["init"] == file_sha256(first / "model.safetensors")
    a, b = load_tiny(first).state_dict(), load_tiny(tmp_path / "more").state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    fresh = load_tiny(train_tiny(world, tmp_path / "fresh", still, progress=False, log=lambda m: None) and tmp_path / "fresh")
    assert not torch.equal(fresh.state_dict()["denoiser.inp.weight"], a["denoiser.inp.weight"])
    with pytest.raises(DiffmemError, match="channels"):
        train_tiny(world, tmp_path / "other", replace(MICRO, channels=(8, 8)), progress=False, log=lambda m: None,
                   init=first)
    # the frame rate is not architecture: a model continues at another rate, and makes clips at it
    train_tiny(world, tmp_path / "rate", replace(still, fps=8.0), progress=False, log=lambda m: None, init=first)
    assert load_tiny(first).cfg.fps == 4.0 and load_tiny(tmp_path / "rate").cfg.fps == 8.0


@pytest.mark.parametrize("option, layers", [("full_xattn", ("xattn_down", "xattn_up")),
                                            ("self_attn", ("sattn_full", "sattn_mid"))])
def test_init_can_add_attention_layers(world, tmp_path, option, layers):
    # the added layers start as identity, so at a near-zero learning rate the grown model computes what
    # the model it grew from computes; a model with the layers cannot be continued without them
    from dataclasses import replace

    from diffmem.models.tiny import load_tiny

    first = tmp_path / "first"
    train_tiny(world, first, MICRO, progress=False, log=lambda m: None)
    grown = replace(MICRO, steps=2, lr=1e-12, min_lr=1e-12, **{option: True})
    summary = train_tiny(world, tmp_path / "grown", grown, progress=False, log=lambda m: None, init=first)
    assert summary["config"][option] is True and option not in MICRO.as_dict()
    a, b = load_tiny(first), load_tiny(tmp_path / "grown")
    assert getattr(b.cfg, option) and not getattr(a.cfg, option)
    assert {k for k in b.state_dict()} - {k for k in a.state_dict()} == {
        k for k in b.state_dict() if k.startswith(tuple(f"denoiser.{m}." for m in layers))}
    z, t = torch.randn(2, 8, 4, 4, 4, generator=torch.Generator().manual_seed(0)), torch.tensor([100, 900])
    txt = a.text(a.text.token_ids(["a cat", "a dog on grass"]))
    with torch.no_grad():
        assert torch.allclose(a.denoiser(z, t, txt), b.denoiser(z, t, txt), atol=1e-5)
        for m in layers:  # once a layer has learnt something, it changes the output (the micro model's
            before = b.denoiser(z, t, txt)  # outputs are small after 6 steps: compared at their own scale)
            getattr(b.denoiser, m).out.weight.normal_()
            assert (before - b.denoiser(z, t, txt)).abs().max() > 0.05 * before.abs().max()
    with pytest.raises(DiffmemError, match=option):
        train_tiny(world, tmp_path / "shrunk", replace(MICRO, steps=2), progress=False, log=lambda m: None,
                   init=tmp_path / "grown")


def test_self_attention_lets_a_position_read_another_frame():
    # the 3-tap temporal convolutions reach one frame either side at the same position; joint space-time
    # attention reaches every position of every frame: a change at frame 0, position (0, 0) changes the
    # layer's output at frame 7, position (3, 3)
    from diffmem.models.tiny import SelfAttention

    torch.manual_seed(0)
    layer = SelfAttention(8, frames=8, side=4)
    torch.nn.init.normal_(layer.out.weight)
    x = torch.randn(8, 8, 4, 4)
    y = x.clone()
    y[0, :, 0, 0] += 3.0
    with torch.no_grad():
        assert (layer(x, 8)[7, :, 3, 3] - layer(y, 8)[7, :, 3, 3]).abs().max() > 1e-3
        torch.nn.init.zeros_(layer.out.weight)
        torch.nn.init.zeros_(layer.out.bias)
        assert torch.equal(layer(x, 8), x)  # the initial layer is the identity


def test_self_attention_is_multihead_attention_and_takes_forward_mode_autodiff():
    # written out so that Jacobian-vector products go through it (the anisotropy and sharpness detectors);
    # checked against torch's own multi-head attention on the same weights, in training mode (no fused kernel)
    from diffmem.models.tiny import SelfAttention

    torch.manual_seed(1)
    layer = SelfAttention(16, frames=2, side=4).eval()
    torch.nn.init.normal_(layer.out.weight)  # (it starts at zero: the derivative would be zero too)
    q = torch.randn(3, 32, 16)
    with torch.no_grad():
        want, _ = layer.attn.train()(q, q, q, need_weights=False)
        assert torch.allclose(layer._attend(q), want, atol=1e-5)
    layer.eval()
    x, dx = torch.randn(4, 16, 4, 4), torch.randn(4, 16, 4, 4)
    _, jvp = torch.func.jvp(lambda v: layer(v, 2), (x,), (dx,))
    eps = 1e-3  # a central difference as the second method
    fd = (layer(x + eps * dx, 2) - layer(x - eps * dx, 2)) / (2 * eps)
    assert jvp.abs().max() > 0.1 and torch.allclose(jvp, fd.detach(), atol=1e-2)


def test_motion_map_by_hand():
    """One channel, 2 frames, 1 x 2 positions: position 0 goes 0 -> 2 (frame mean 1, departure 1 in each
    frame), position 1 stays at 5 (departure 0). Mean departure over the 4 values 0.5, so the map is
    2 where it moves and 0 where it does not; a still clip (or an image) gets zeros, not a division by 0."""
    from diffmem.models.train import motion_map

    z = torch.tensor([[0.0, 5.0], [2.0, 5.0]]).view(1, 1, 2, 1, 2)
    assert torch.equal(motion_map(z), torch.tensor([[2.0, 0.0], [2.0, 0.0]]).view(1, 1, 2, 1, 2))
    # two channels: departures (3, 4) -> 5 by L2, still 2 x the mean where it moves
    z2 = torch.zeros(1, 2, 2, 1, 2)
    z2[0, 0, :, 0, 0] = torch.tensor([-3.0, 3.0])
    z2[0, 1, :, 0, 0] = torch.tensor([4.0, -4.0])
    assert torch.allclose(motion_map(z2), torch.tensor([[2.0, 0.0], [2.0, 0.0]]).view(1, 1, 2, 1, 2))
    assert torch.equal(motion_map(torch.ones(1, 3, 1, 2, 2)), torch.zeros(1, 1, 1, 2, 2))


def test_motion_weighted_mse_by_hand():
    """With the clip above, errors 1 everywhere in the moving position and 3 in the still one: weight 0.5
    counts the moving position (1 + 0.5 x 2) = 2 times, so the loss is (2 x 1 + 1 x 9) x 2 frames / 4 = 5.5;
    plain MSE (weight 0) is (1 + 9) / 2 = 5."""
    from diffmem.models.train import motion_weighted_mse

    z = torch.tensor([[0.0, 5.0], [2.0, 5.0]]).view(1, 1, 2, 1, 2)
    pred = torch.zeros_like(z)
    target = torch.tensor([[1.0, 3.0], [1.0, 3.0]]).view(1, 1, 2, 1, 2)
    assert motion_weighted_mse(pred, target, z, 0.5).item() == pytest.approx(5.5)
    assert motion_weighted_mse(pred, target, z, 0.0).item() == pytest.approx(5.0)


def test_motion_weight_is_recorded_and_a_negative_one_refused(world, tmp_path):
    from diffmem.cli import main

    out = tmp_path / "m"
    cfg = TrainConfig(**{**MICRO.__dict__, "steps": 2, "motion_weight": 2.0})
    train_tiny(world, out, cfg, progress=False, log=lambda m: None)
    assert json.loads((out / "config.json").read_text())["training"]["config"]["motion_weight"] == 2.0
    assert "motion_weight" not in MICRO.as_dict()  # configs of plain runs read as before
    with pytest.raises(SystemExit) as e:  # argparse's one-line error, before any work
        main(["train", str(world), "--out", str(tmp_path / "n"), "--motion-weight", "-1"])
    assert e.value.code == 2 and not (tmp_path / "n").exists()
