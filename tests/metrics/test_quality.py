"""Frechet distances, CLIP score and world alignment."""
import numpy as np
import pytest
import torch

from diffmem.errors import BadInputError, DiffmemError
from diffmem.metrics.quality import (CLIPScore, FrechetDistance, InceptionFeatures, frechet_distance,
                                     gaussian_stats, quality_distance, quality_distances)


def test_frechet_distance_by_hand():
    # 1-D: (m1 - m2)^2 + (s1 - s2)^2
    assert frechet_distance([1.0], [[4.0]], [3.0], [[9.0]]) == pytest.approx(4 + 1)
    # diagonal: sum over dims of the 1-D formula
    fd = frechet_distance([0, 0], np.diag([1.0, 4.0]), [1, 2], np.diag([4.0, 16.0]))
    assert fd == pytest.approx((1 + 4) + (1 + 4))
    # commuting (same eigenvectors, rotated) covariances: rotation-invariant
    r = np.array([[np.cos(0.3), -np.sin(0.3)], [np.sin(0.3), np.cos(0.3)]])
    fd_rot = frechet_distance([0, 0], r @ np.diag([1.0, 4.0]) @ r.T, r @ [1, 2], r @ np.diag([4.0, 16.0]) @ r.T)
    assert fd_rot == pytest.approx(fd)
    # identical -> 0
    c = np.array([[2.0, 0.5], [0.5, 1.0]])
    assert frechet_distance([1, 1], c, [1, 1], c) == pytest.approx(0, abs=1e-9)
    with pytest.raises(DiffmemError):
        frechet_distance([0, 0], np.eye(2), [0], np.eye(1))


def test_frechet_distance_non_commuting_against_scipy():
    from scipy.linalg import sqrtm

    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(5, 5)), rng.normal(size=(5, 5))
    s1, s2 = a @ a.T, b @ b.T
    mu1, mu2 = rng.normal(size=5), rng.normal(size=5)
    ref = ((mu1 - mu2) ** 2).sum() + np.trace(s1 + s2 - 2 * np.real(sqrtm(s1 @ s2)))
    assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(ref, rel=1e-6)


def test_metric_object_accumulates():
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(400, 3)), rng.normal(loc=2.0, size=(500, 3))
    m = FrechetDistance()
    m.update(x[:200], real=True)
    m.update(x[200:], real=True)
    m.update(y, real=False)
    assert m.compute() == pytest.approx(frechet_distance(*gaussian_stats(x), *gaussian_stats(y)))
    # same distribution: close to 0; shifted by 2 in 3 dims: close to 12
    assert m.compute() == pytest.approx(12, abs=1.5)
    with pytest.raises(DiffmemError):
        FrechetDistance().compute()


def test_quality_distance_in_descriptor_space():
    rng = np.random.default_rng(0)
    train = [rng.integers(0, 255, (4, 16, 16, 3), dtype=np.uint8) for _ in range(6)]
    same = [c.copy() for c in train]
    other = [np.full((4, 16, 16, 3), v, np.uint8) + rng.integers(0, 20, (4, 16, 16, 3), dtype=np.uint8)
             for v in (10, 120, 200, 60, 90, 30)]
    q_same = quality_distance(same, train)
    q_other = quality_distance(other, train)
    assert q_same["metric"] == "FD-builtin" and q_same["n_generated"] == 24
    assert q_same["value"] == pytest.approx(0, abs=1e-6)
    assert q_other["value"] > 0.1


def test_quality_distances_encode_the_training_frames_once_per_size():
    # the FD of each set, worked out as in the single-set case from the features directly, and the training
    # frames encoded once for the two sets of one size (twice in all with a set of another size)
    class MeanColour:
        calls = []

        def __call__(self, frames):
            self.calls.append(len(frames))
            return np.asarray(frames, np.float64).mean(axis=(1, 2))

        def describe(self):
            return {"metric": "FD-mean"}

    rng = np.random.default_rng(2)
    train = [rng.integers(0, 255, (3, 8, 8, 3), dtype=np.uint8) for _ in range(10)]
    sets = {"a": [rng.integers(0, 255, (3, 8, 8, 3), dtype=np.uint8) for _ in range(4)],
            "b": [rng.integers(0, 120, (3, 8, 8, 3), dtype=np.uint8) for _ in range(4)],
            "small": [rng.integers(0, 255, (3, 4, 4, 3), dtype=np.uint8) for _ in range(4)], "empty": []}
    space = MeanColour()
    got = quality_distances(sets, train, space)
    assert set(got) == {"a", "b", "small"} and space.calls.count(30) == 2  # 10 clips x 3 frames, two sizes
    tr = np.concatenate(train).astype(np.float64).mean(axis=(1, 2))
    for name in ("a", "b"):
        gen = np.concatenate(sets[name]).astype(np.float64).mean(axis=(1, 2))
        assert got[name]["value"] == pytest.approx(frechet_distance(*gaussian_stats(gen), *gaussian_stats(tr)))
        assert got[name]["n_generated"] == 12 and got[name]["n_training"] == 30
    assert got["b"]["value"] > got["a"]["value"]  # darker set, farther from the training colours


class _FakeInception(torch.nn.Module):
    def forward(self, x: torch.Tensor, return_features: bool = True) -> torch.Tensor:
        return x.float().mean(dim=(2, 3))  # (N, 3): mean colour


def test_inception_features_from_a_local_torchscript_file(tmp_path):
    path = tmp_path / "inception.pt"
    torch.jit.script(_FakeInception()).save(str(path))
    feats = InceptionFeatures(path)
    frames = np.zeros((2, 8, 8, 3), np.uint8)
    frames[1] = 255
    assert np.allclose(feats(frames), [[0, 0, 0], [255, 255, 255]])
    assert len(feats.describe()["sha256"]) == 64 and feats.describe()["metric"] == "FID"
    rng = np.random.default_rng(0)
    gen = [rng.integers(0, 255, (2, 8, 8, 3), dtype=np.uint8) for _ in range(5)]
    q = quality_distance(gen, gen, feats)
    assert q["metric"] == "FID" and q["value"] == pytest.approx(0, abs=1e-6)
    with pytest.raises(BadInputError, match="not found"):
        InceptionFeatures(tmp_path / "missing.pt")
    (tmp_path / "junk.pt").write_bytes(b"junk")
    with pytest.raises(BadInputError, match="TorchScript"):
        InceptionFeatures(tmp_path / "junk.pt")
    import hashlib

    good = hashlib.sha256(path.read_bytes()).hexdigest()
    assert InceptionFeatures(path, sha256=good.upper()).sha256 == good  # the recorded hash is checked
    with pytest.raises(BadInputError, match="sha256 mismatch"):
        InceptionFeatures(path, sha256="0" * 64)


def _tiny_clip(folder):
    import json
    import string

    from transformers import CLIPConfig, CLIPModel, CLIPTokenizer

    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for ch in string.ascii_lowercase:
        vocab.setdefault(ch, len(vocab))
        vocab.setdefault(ch + "</w>", len(vocab))
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    tok = CLIPTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt"), model_max_length=16)
    tok.save_pretrained(str(folder))
    torch.manual_seed(0)
    cfg = CLIPConfig(
        text_config=dict(vocab_size=len(vocab), hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                         num_attention_heads=2, max_position_embeddings=16, bos_token_id=0, eos_token_id=1,
                         pad_token_id=1),
        vision_config=dict(hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
                           image_size=32, patch_size=8),
        projection_dim=8)
    model = CLIPModel(cfg).eval()
    model.save_pretrained(str(folder))
    return model, tok


def test_clip_score_with_local_weights(tmp_path):
    model, tok = _tiny_clip(tmp_path / "clip")
    cs = CLIPScore(tmp_path / "clip")
    rng = np.random.default_rng(0)
    img = rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)
    # independent: the model's own forward on the same normalised pixels gives logits = scale * cos
    x = torch.as_tensor(img).permute(2, 0, 1)[None].float() / 255
    mean = torch.tensor([0.48145466, 0.4578275, 0.40821073]).view(1, 3, 1, 1)
    std = torch.tensor([0.26862954, 0.26130258, 0.27577711]).view(1, 3, 1, 1)
    t = tok(["a cat"], return_tensors="pt")
    with torch.no_grad():
        out = model(input_ids=t["input_ids"], attention_mask=t["attention_mask"], pixel_values=(x - mean) / std)
    cos = (out.logits_per_image / model.logit_scale.exp()).item()
    got = cs.update(img[None], "a cat")
    assert got == pytest.approx(100 * max(cos, 0.0), abs=1e-3)
    # a clip of repeated frames scores like its frame
    assert cs.clip_score(np.stack([img] * 3), "a cat") == pytest.approx(got, abs=1e-4)
    assert 0 <= cs.compute() <= 100
    with pytest.raises(BadInputError, match="not a CLIP folder"):
        CLIPScore(tmp_path)
