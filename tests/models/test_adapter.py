"""The adapter's shared conversions (models/adapter.py): a denoiser's output as the noise eps."""
import pytest
import torch

from diffmem.errors import DiffmemError
from diffmem.models.adapter import check_prediction_type, noise_from_output


def test_v_prediction_becomes_the_noise_that_made_x_t():
    """Built from the definitions (Salimans & Ho 2022): x_t = sqrt(a) x0 + sqrt(1-a) eps and
    v = sqrt(a) eps - sqrt(1-a) x0, per batch row with its own timestep; the conversion must give eps back."""
    g = torch.Generator().manual_seed(0)
    abar = torch.tensor([0.999, 0.9, 0.5, 0.1, 0.0001], dtype=torch.float64)
    x0, eps = torch.randn(3, 4, 2, 5, 5, generator=g, dtype=torch.float64), torch.randn(3, 4, 2, 5, 5, generator=g,
                                                                                         dtype=torch.float64)
    t = torch.tensor([0, 2, 4])
    a = abar[t].view(-1, 1, 1, 1, 1)
    x_t = a.sqrt() * x0 + (1 - a).sqrt() * eps
    v = a.sqrt() * eps - (1 - a).sqrt() * x0
    assert torch.allclose(noise_from_output(v, x_t, t, abar, "v_prediction"), eps, atol=1e-12)
    # one timestep for the whole batch, and an epsilon model's output passes through unchanged
    a3 = abar[3]
    x_t3 = a3.sqrt() * x0 + (1 - a3).sqrt() * eps
    assert torch.allclose(noise_from_output(a3.sqrt() * eps - (1 - a3).sqrt() * x0, x_t3, 3, abar, "v_prediction"),
                          eps, atol=1e-12)
    assert noise_from_output(eps, x_t, t, abar, "epsilon") is eps


def test_unknown_prediction_types_are_refused_naming_the_model():
    assert check_prediction_type("m", "v_prediction") == "v_prediction"
    with pytest.raises(DiffmemError, match="m: prediction type 'sample' is not supported"):
        check_prediction_type("m", "sample")
