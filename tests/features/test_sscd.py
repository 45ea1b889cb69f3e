"""SSCD loading, integrity checks and preprocessing, with small random TorchScript models of the same
interface as the real files (float (B,3,H,W) -> (B,D))."""
import hashlib

import numpy as np
import pytest
import torch

from diffmem.errors import BadInputError, DiffmemError, PolicyMismatchError
from diffmem.features import check_same, descriptor_from_policy, load_descriptor
from diffmem.features.policy import IMAGENET_MEAN, IMAGENET_STD
from diffmem.features.sscd import KNOWN_CHECKPOINTS, SSCDDescriptor, resolve_checkpoint


class TinySSCD(torch.nn.Module):
    def __init__(self, dim: int = 512):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 8, 5, stride=4)
        self.fc = torch.nn.Linear(8, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.conv(x)).mean(dim=(2, 3))
        return self.fc(h)


class ShapeProbe(torch.nn.Module):
    """Returns (H, W, mean of channel 0, 1, 2, 0, 0, 0): shows what the model was fed."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b = x.shape[0]
        hw = torch.tensor([float(x.shape[2]), float(x.shape[3])]).expand(b, 2)
        return torch.cat([hw, x.mean(dim=(2, 3)), torch.zeros(b, 3)], 1)


def _save(model, path):
    torch.manual_seed(0)
    torch.jit.script(model).save(str(path))
    return path


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    torch.manual_seed(0)
    return _save(TinySSCD(), tmp_path_factory.mktemp("sscd") / "tiny.torchscript.pt")


def test_loads_unit_vectors_and_records_sha256(tiny):
    d = load_descriptor(f"sscd:{tiny}")
    assert isinstance(d, SSCDDescriptor) and d.dim == 512
    v = d.encode(np.random.default_rng(0).integers(0, 255, (3, 40, 50, 3), dtype=np.uint8))
    assert v.shape == (3, 512) and v.dtype == np.float32
    assert np.allclose(np.linalg.norm(v, axis=1), 1, atol=1e-5)
    assert d.policy.model_sha256 == hashlib.sha256(tiny.read_bytes()).hexdigest()
    assert d.threshold == 0.5 and d.policy.name == "sscd-official"
    assert not d.verified


def test_sha256_checked_when_given(tiny):
    good = hashlib.sha256(tiny.read_bytes()).hexdigest()
    assert load_descriptor(f"sscd:{tiny}", sha256=good.upper()).verified
    with pytest.raises(BadInputError, match="sha256 mismatch"):
        load_descriptor(f"sscd:{tiny}", sha256="0" * 64)


def test_known_name_with_recorded_hash_is_verified(tiny, tmp_path, monkeypatch):
    monkeypatch.setenv("DIFFMEM_CACHE", str(tmp_path))
    cached = tmp_path / "sscd" / "sscd_disc_mixup.torchscript.pt"
    cached.parent.mkdir(parents=True)
    cached.write_bytes(tiny.read_bytes())
    monkeypatch.setitem(KNOWN_CHECKPOINTS, "sscd_disc_mixup",
                        {**KNOWN_CHECKPOINTS["sscd_disc_mixup"], "sha256": "f" * 64})
    with pytest.raises(BadInputError, match="sha256 mismatch"):
        SSCDDescriptor("sscd_disc_mixup")
    monkeypatch.setitem(KNOWN_CHECKPOINTS, "sscd_disc_mixup",
                        {**KNOWN_CHECKPOINTS["sscd_disc_mixup"], "sha256": hashlib.sha256(tiny.read_bytes()).hexdigest()})
    assert SSCDDescriptor("sscd_disc_mixup").verified


def test_url_is_downloaded_into_a_cache_keyed_by_the_url(tiny, tmp_path, monkeypatch):
    """A URL's file is cached under the URL, not its file name: after a download of some other
    'sscd_disc_mixup.torchscript.pt', the known name must not load it (reliability issue). Only https."""
    from diffmem.features import sscd

    monkeypatch.setenv("DIFFMEM_CACHE", str(tmp_path / "cache"))
    fetched = []

    def fake_download(url, dest):  # no network in tests: "download" the tiny model
        fetched.append(url)
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_bytes(tiny.read_bytes())
        return dest

    monkeypatch.setattr(sscd, "_download", fake_download)
    url = "https://example.org/models/sscd_disc_mixup.torchscript.pt"
    path, expected = resolve_checkpoint(url)
    assert path.name == "sscd_disc_mixup.torchscript.pt" and fetched == [url] and expected is None
    other, _ = resolve_checkpoint("https://elsewhere.org/sscd_disc_mixup.torchscript.pt")
    assert other != path and len(fetched) == 2
    assert resolve_checkpoint(url)[0] == path and len(fetched) == 2  # cached: not fetched again
    assert load_descriptor(f"sscd:{url}").dim == 512
    with pytest.raises(BadInputError, match="not in the cache"):  # the known name is its own entry
        SSCDDescriptor("sscd_disc_mixup", download=False)
    with pytest.raises(BadInputError, match="only https"):
        resolve_checkpoint(tiny.as_uri())


def test_missing_and_non_torchscript_files_are_clear_errors(tmp_path, monkeypatch):
    with pytest.raises(BadInputError, match="not found"):
        load_descriptor(f"sscd:{tmp_path / 'nope.pt'}")
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a model")
    with pytest.raises(BadInputError, match="TorchScript"):
        load_descriptor(f"sscd:{bad}")
    monkeypatch.setenv("DIFFMEM_CACHE", str(tmp_path / "empty"))
    with pytest.raises(BadInputError, match="not in the cache"):
        SSCDDescriptor("sscd_disc_large", download=False)


@pytest.mark.parametrize("policy,shape", [
    ("sscd-official", (288, 432)), ("sscd-skew320", (320, 320)), ("legacy-dcr", (224, 224)), ("legacy-amg", (224, 224)),
])
def test_the_model_is_fed_what_the_policy_says(tmp_path, policy, shape):
    probe = _save(ShapeProbe(), tmp_path / "probe.pt")
    d = load_descriptor(f"sscd:{probe}", policy=policy)
    frame = np.full((1, 40, 60, 3), 128, np.uint8)  # 2:3 aspect
    raw = d.features(d.preprocess(torch.as_tensor(frame).permute(0, 3, 1, 2).float() / 255))[0]
    assert (raw[0].item(), raw[1].item()) == shape
    want = 128 / 255 if policy == "legacy-amg" else ((128 / 255 - (0.5 if policy == "legacy-dcr" else IMAGENET_MEAN[0]))
                                                    / (0.5 if policy == "legacy-dcr" else IMAGENET_STD[0]))
    assert raw[2].item() == pytest.approx(want, abs=1e-4)
    assert d.policy.dim == 8


def test_different_files_or_policies_never_share_a_fingerprint(tiny, tmp_path):
    torch.manual_seed(1)
    other = _save(TinySSCD(), tmp_path / "other.pt")
    a, b = load_descriptor(f"sscd:{tiny}"), load_descriptor(f"sscd:{other}")
    c = load_descriptor(f"sscd:{tiny}", policy="legacy-amg")
    assert len({a.fingerprint, b.fingerprint, c.fingerprint}) == 3
    with pytest.raises(PolicyMismatchError):
        check_same(a.policy, c.policy)


def test_rebuilt_from_policy_and_differentiable(tiny):
    d = load_descriptor(f"sscd:{tiny}", policy="legacy-dcr")
    again = descriptor_from_policy(d.policy.as_dict())
    x = torch.rand(2, 3, 50, 50, requires_grad=True)
    e = again.embed(x)
    assert torch.allclose(e, d.embed(x))
    e[0].sum().backward()
    assert float(x.grad.abs().sum()) > 0


def test_threshold_override_and_bad_specs(tiny):
    assert load_descriptor(f"sscd:{tiny}", threshold=0.4).threshold == 0.4
    with pytest.raises(DiffmemError, match="needs a path"):
        load_descriptor("sscd")
    with pytest.raises(DiffmemError, match="unknown descriptor"):
        load_descriptor("vgg:/x")
