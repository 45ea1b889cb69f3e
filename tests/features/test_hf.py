"""CLIP / DINOv2 descriptors from a local folder, with tiny randomly initialised transformers models."""
import json

import numpy as np
import pytest
import torch

from diffmem.errors import BadInputError, DiffmemError
from diffmem.features import load_descriptor

transformers = pytest.importorskip("transformers")


@pytest.fixture(scope="module")
def clip_dir(tmp_path_factory):
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    torch.manual_seed(0)
    cfg = CLIPVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                           image_size=32, patch_size=8, projection_dim=24)
    d = tmp_path_factory.mktemp("clip")
    CLIPVisionModelWithProjection(cfg).eval().save_pretrained(d)
    (d / "preprocessor_config.json").write_text(json.dumps({
        "size": {"shortest_edge": 32}, "crop_size": {"height": 32, "width": 32}, "do_center_crop": True,
        "image_mean": [0.5, 0.4, 0.3], "image_std": [0.2, 0.25, 0.3]}))
    return d


@pytest.fixture(scope="module")
def dino_dir(tmp_path_factory):
    from transformers import Dinov2Config, Dinov2Model

    torch.manual_seed(0)
    cfg = Dinov2Config(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                       image_size=32, patch_size=8)
    d = tmp_path_factory.mktemp("dino")
    Dinov2Model(cfg).eval().save_pretrained(d)
    return d


def test_clip_is_the_normalised_projected_embedding(clip_dir):
    from transformers import CLIPVisionModelWithProjection

    d = load_descriptor(f"clip:{clip_dir}")
    assert d.dim == 24 and d.policy.size == 32 and d.policy.crop == 32 and d.threshold is None
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 255, (2, 32, 32, 3), dtype=np.uint8)
    v = d.encode(frames)
    # by hand: the input is already 32 x 32, so preprocessing is only (x - mean) / std
    x = torch.as_tensor(frames).permute(0, 3, 1, 2).float() / 255
    x = (x - torch.tensor([0.5, 0.4, 0.3]).view(1, 3, 1, 1)) / torch.tensor([0.2, 0.25, 0.3]).view(1, 3, 1, 1)
    ref = CLIPVisionModelWithProjection.from_pretrained(clip_dir).eval()
    with torch.no_grad():
        e = ref(pixel_values=x).image_embeds
    e = (e / e.norm(dim=1, keepdim=True)).numpy()
    assert np.allclose(v, e, atol=1e-5)


def test_dino_cls_token_and_imagenet_defaults(dino_dir):
    d = load_descriptor(f"dino:{dino_dir}", threshold=0.9)
    assert d.dim == 32 and d.threshold == 0.9
    assert d.policy.mean == pytest.approx((0.485, 0.456, 0.406))
    v = d.encode(np.random.default_rng(1).integers(0, 255, (3, 40, 48, 3), dtype=np.uint8))
    assert v.shape == (3, 32) and np.allclose(np.linalg.norm(v, axis=1), 1, atol=1e-5)
    x = torch.rand(1, 3, 40, 40, requires_grad=True)
    (d.embed(x) * torch.arange(32.0)).sum().backward()  # (a plain sum of a layer-normed CLS token is constant)
    assert float(x.grad.abs().sum()) > 0


def test_fingerprint_follows_the_weights(clip_dir, tmp_path):
    from transformers import CLIPVisionModelWithProjection

    a = load_descriptor(f"clip:{clip_dir}")
    torch.manual_seed(5)
    m = CLIPVisionModelWithProjection.from_pretrained(clip_dir)
    with torch.no_grad():
        m.visual_projection.weight.add_(1.0)
    m.save_pretrained(tmp_path)
    (tmp_path / "preprocessor_config.json").write_text((clip_dir / "preprocessor_config.json").read_text())
    b = load_descriptor(f"clip:{tmp_path}")
    assert a.fingerprint != b.fingerprint
    assert load_descriptor(f"clip:{clip_dir}").fingerprint == a.fingerprint


def test_bad_folders(tmp_path):
    with pytest.raises(BadInputError, match="config.json"):
        load_descriptor(f"clip:{tmp_path}")
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(BadInputError, match="no weights"):
        load_descriptor(f"dino:{tmp_path}")
    with pytest.raises(DiffmemError, match="SSCD only"):
        load_descriptor(f"clip:{tmp_path}", policy="legacy-amg")
