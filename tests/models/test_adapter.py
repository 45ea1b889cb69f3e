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


@pytest.mark.parametrize("cls_name", ["DDIMScheduler", "DDPMScheduler"])
@pytest.mark.parametrize("spacing,offset", [("leading", 0), ("leading", 1), ("linspace", 0), ("trailing", 0)])
def test_inference_timesteps_are_the_schedulers_own(cls_name, spacing, offset):
    """Computed without diffusers for the start-up of short commands; checked against set_timesteps."""
    import diffusers
    import numpy as np

    from diffmem.models.adapter import inference_timesteps

    for T in (1000, 1001, 300):
        config = {"num_train_timesteps": T, "timestep_spacing": spacing, "steps_offset": offset}
        sched = getattr(diffusers, cls_name)(**config)
        for n in (1, 3, 7, 25, 50, T):
            sched.set_timesteps(n)
            np.testing.assert_array_equal(inference_timesteps(config, n), sched.timesteps.numpy(),
                                          err_msg=f"{cls_name} {spacing} offset {offset} T {T} n {n}")


def test_inference_timesteps_bad_input():
    from diffmem.models.adapter import inference_timesteps

    with pytest.raises(DiffmemError, match="between 1 and 1000"):
        inference_timesteps({}, 0)
    with pytest.raises(DiffmemError, match="timestep_spacing 'karras'"):
        inference_timesteps({"timestep_spacing": "karras"}, 10)
