"""Short names for models: `load_adapter(spec)` turns a string into a `DenoiserAdapter`.

Accepted specs:

- `builtin:tiny-t2v`, `builtin:tiny-t2i` (trained on the small world), `builtin:tiny-t2v-large`,
  `builtin:tiny-t2i-large` (on the version-2 large world): the tiny models committed with diffmem
  (`diffmem/models/checkpoints/<name>.json` + `<name>.safetensors`), whose weights are checked
  against the sha256 recorded here;
- a folder written by `diffmem train` (config.json + model.safetensors);
- a diffusers pipeline folder (model_index.json) of a supported class, loaded offline;
- a hub id (`org/name`) whose snapshot is already in the local Hugging Face cache ($HF_HUB_CACHE,
  $HF_HOME/hub or ~/.cache/huggingface/hub): resolved offline to that folder, never downloaded;
- a single-file Stable Diffusion checkpoint (`model.safetensors`, original LDM layout) with `config=` a
  StableDiffusionPipeline folder or cached hub id giving its configuration (`single_file.py`).

`dtype` (`DTYPES`: "float32", the default, "bfloat16" or "float16", or the torch dtype) is the dtype of the
model's weights and of the latents sampled with it; decoded frames and every score are float32 whatever it
is. float16 is meant for CUDA (on a CPU it runs, slowly); bfloat16 also suits CPUs.
"""
from __future__ import annotations

import re
from pathlib import Path

import torch

from ..device import resolve_device
from ..errors import BadInputError, DiffmemError
from .adapter import DenoiserAdapter
from .diffusers_adapters import load_diffusers, pipeline_class_of
from .single_file import is_single_file, load_single_file
from .tiny import FORMAT, TinyAdapter, load_tiny, load_tiny_files

CHECKPOINTS = Path(__file__).resolve().parent / "checkpoints"

#: short name -> sha256 of CHECKPOINTS/<name>.safetensors (its config is CHECKPOINTS/<name>.json; stored
#: flat so that the package-data pattern ships them). How they were trained: CHECKPOINTS/README.md.
BUILTIN = {
    "tiny-t2v": "255cb7422caf91ef562a2fea474e00a86341ef5e05f4cd581d45460743555caf",
    "tiny-t2i": "562b349a1cd6bdbb69b35b0adbf6af726f411486f1070b4408110904fe81521f",
    # trained on the version-2 world (`diffmem world make --size large`): memorization rare and prompt-specific
    "tiny-t2v-large": "b275c709b9bacb96487526afc44fa38448c2c24198cb65af6f732eaca1b137db",
    "tiny-t2i-large": "5ecad0adcc8d9e30bc170acbf3bac119c3e1ab11b5ba842e857d155d431c2843",
}


def builtin_names() -> list[str]:
    return [f"builtin:{k}" for k in BUILTIN]


#: the dtypes a model can be loaded in (`--dtype`); float32 is the default
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def resolve_dtype(dtype: str | torch.dtype | None) -> torch.dtype:
    """`DTYPES` name (or torch dtype, or None = float32) -> torch dtype; DiffmemError for anything else."""
    if dtype is None:
        return torch.float32
    if isinstance(dtype, torch.dtype) and dtype in DTYPES.values():
        return dtype
    if isinstance(dtype, str) and dtype.removeprefix("torch.") in DTYPES:
        return DTYPES[dtype.removeprefix("torch.")]
    raise DiffmemError(f"dtype {dtype!r} is not supported; choose one of {', '.join(DTYPES)}")


def dtype_name(dtype: torch.dtype) -> str:
    """torch.bfloat16 -> "bfloat16" (as recorded in generation.json)."""
    return str(dtype).removeprefix("torch.")


def load_adapter(spec: str | Path | DenoiserAdapter, device: str | torch.device | None = "cpu",
                 dtype: str | torch.dtype | None = None, config: str | Path | None = None) -> DenoiserAdapter:
    """A `DenoiserAdapter` for a short name, a tiny-model folder, a diffusers pipeline folder or a single-file
    SD checkpoint (with `config`, see the module docstring), its weights in `dtype` (None = float32). An
    adapter given instead of a spec is returned as it is, on its own device and in its own dtype (so every
    study takes either; what a study records is the adapter's actual dtype)."""
    want = resolve_dtype(dtype)
    if isinstance(spec, DenoiserAdapter):
        return spec
    dev = resolve_device(device if device is not None else "cpu")
    spec = str(spec)
    if spec.startswith("builtin:"):
        name = spec.split(":", 1)[1]
        if name not in BUILTIN:
            raise BadInputError(spec, f"unknown built-in model; choose one of {', '.join(builtin_names())}")
        weights = CHECKPOINTS / f"{name}.safetensors"
        if not weights.is_file():
            raise BadInputError(weights, f"the weights of {spec} are not installed")
        return TinyAdapter(load_tiny_files(CHECKPOINTS / f"{name}.json", weights, dev, sha256=BUILTIN[name]),
                           name=spec).to_dtype(want)
    path = Path(spec).expanduser()
    if not path.exists() and _HUB_ID.fullmatch(spec):
        path = hub_cache_folder(spec)
    if not path.exists():
        raise BadInputError(path, "no such model: give builtin:NAME, a `diffmem train` folder, a diffusers pipeline "
                                  "folder or a single .safetensors checkpoint with --config")
    if path.is_file() and is_single_file(path):
        return load_single_file(path, dev, want, config=_config_folder(config))
    if not path.is_dir():
        raise BadInputError(path, "a model is a folder (a `diffmem train` checkpoint or a diffusers pipeline) or a "
                                  "single .safetensors Stable Diffusion checkpoint with --config")
    if pipeline_class_of(path) is not None:
        return load_diffusers(path, dev, want)
    cfg = path / "config.json"
    if cfg.is_file() and FORMAT in cfg.read_text(encoding="utf-8", errors="replace"):
        return TinyAdapter(load_tiny(path, dev), name=str(path)).to_dtype(want)
    raise BadInputError(path, "not a model folder (no model_index.json, no diffmem tiny-model config.json)")


_HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[A-Za-z0-9][\w.-]*")


def _config_folder(config: str | Path | None) -> Path | None:
    """--config of a single-file checkpoint: a local folder, else a hub id resolved in the local cache."""
    if config is None:
        return None
    path = Path(config).expanduser()
    if not path.exists() and _HUB_ID.fullmatch(str(config)):
        return hub_cache_folder(str(config))
    if not path.exists():
        raise BadInputError(path, "no such --config: give a diffusers pipeline folder or a hub id in the local cache")
    return path


def hub_cache_folder(repo_id: str) -> Path:
    """The local snapshot folder of a hub model id, from the Hugging Face cache only (offline: diffmem
    downloads nothing). BadInputError when the model is not in the cache."""
    try:
        from huggingface_hub import snapshot_download  # comes with diffusers
        from huggingface_hub.errors import LocalEntryNotFoundError
    except ImportError:  # pragma: no cover
        raise BadInputError(repo_id, "a hub id needs huggingface_hub to read the local cache") from None
    try:
        return Path(snapshot_download(repo_id, local_files_only=True))
    except (LocalEntryNotFoundError, FileNotFoundError, OSError, ValueError):
        raise BadInputError(repo_id, "not a local folder, and not in the local Hugging Face cache (diffmem never "
                                     "downloads: fetch it with `huggingface-cli download`, or give its folder)") from None
