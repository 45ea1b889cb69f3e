"""Single-file Stable Diffusion checkpoints (`model.safetensors` in the original LDM layout), loaded offline.

Model-sharing sites distribute Stable Diffusion v1-style models as ONE file holding the UNet
(`model.diffusion_model.*`), the VAE (`first_stage_model.*`) and the CLIP text encoder
(`cond_stage_model.transformer.*`). diffusers' `StableDiffusionPipeline.from_single_file` converts those
keys, but it needs the pipeline's configuration (model_index.json, the component configs, the tokenizer
and scheduler files), which it normally downloads from the hub. diffmem downloads nothing, so the
configuration is given: `config` is a diffusers StableDiffusionPipeline folder (a hub id is resolved to its
local cache folder by `registry.load_adapter`).

Only `.safetensors` is read. `.ckpt` / `.pt` / `.pth` / `.bin` files are Python pickles, which can run code
when loaded: diffmem never unpickles them (convert them to .safetensors first).
"""
from __future__ import annotations

import warnings
from pathlib import Path

import torch

from ..errors import BadInputError
from .diffusers_adapters import DiffusersAdapter, _quiet_diffusers, pipeline_class_of

#: suffixes of single-file checkpoints diffmem recognises (only the first is loaded)
SAFE_SUFFIXES = (".safetensors",)
PICKLE_SUFFIXES = (".ckpt", ".pt", ".pth", ".bin")
#: the prefix of the UNet's keys in an original-layout (LDM) Stable Diffusion checkpoint
LDM_UNET_PREFIX = "model.diffusion_model."
CONFIG_HELP = ("a diffusers StableDiffusionPipeline folder (model_index.json + component configs) or the id of one "
               "in the local Hugging Face cache, e.g. --config stable-diffusion-v1-5/stable-diffusion-v1-5")


def is_single_file(path: str | Path) -> bool:
    """Whether `path` is a file with a checkpoint suffix (safe or pickle)."""
    path = Path(path)
    return path.is_file() and path.suffix.lower() in SAFE_SUFFIXES + PICKLE_SUFFIXES


def load_single_file(path: str | Path, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32,
                     config: str | Path | None = None) -> DiffusersAdapter:
    """A `DiffusersAdapter` for a single-file SD checkpoint `path`, configured by the pipeline folder `config`."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix in PICKLE_SUFFIXES:
        raise BadInputError(path, f"a {suffix} checkpoint is a Python pickle, which diffmem never unpickles (it can run "
                                  "code): convert it to .safetensors (e.g. load it in a trusted environment and save "
                                  "its state_dict with safetensors.torch.save_file)")
    if suffix not in SAFE_SUFFIXES:
        raise BadInputError(path, "a model is a folder (a `diffmem train` checkpoint or a diffusers pipeline) or a "
                                  "single .safetensors Stable Diffusion checkpoint")
    if config is None:
        raise BadInputError(path, f"a single-file checkpoint needs --config: {CONFIG_HELP}")
    config = Path(config)
    cls_name = pipeline_class_of(config) if config.is_dir() else None
    if cls_name != "StableDiffusionPipeline":
        what = "not a folder" if not config.is_dir() else (
            "no model_index.json" if cls_name is None else f"a {cls_name} folder")
        raise BadInputError(config, f"--config must be {CONFIG_HELP} ({what}); single files are supported for "
                                    "StableDiffusionPipeline only")
    _check_layout(path)
    import diffusers

    with _quiet_diffusers(), warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        try:
            pipe = diffusers.StableDiffusionPipeline.from_single_file(
                str(path), config=str(config), local_files_only=True, torch_dtype=dtype, safety_checker=None,
                feature_extractor=None, requires_safety_checker=False)
        except Exception as e:  # diffusers raises OSError, ValueError, KeyError, its own SingleFileComponentError
            msg = " ".join(str(e).split()) or type(e).__name__
            raise BadInputError(path, f"cannot load it as a StableDiffusionPipeline with --config {config}: "
                                      f"{msg}") from e
    pipe = pipe.to(device)
    pipe.set_progress_bar_config(disable=True)
    return DiffusersAdapter(pipe, name=str(path))


def _check_layout(path: Path) -> None:
    """One-line errors for files that are not safetensors, or not an original-layout SD checkpoint."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            keys = list(f.keys())
    except Exception as e:  # safetensors' own error types for truncated or foreign files
        raise BadInputError(path, f"not a readable .safetensors file ({' '.join(str(e).split())})") from e
    if not any(k.startswith(LDM_UNET_PREFIX) for k in keys):
        raise BadInputError(path, f"not a single-file Stable Diffusion checkpoint in the original layout (no "
                                  f"{LDM_UNET_PREFIX}* keys); a diffusers model is a folder with model_index.json")
