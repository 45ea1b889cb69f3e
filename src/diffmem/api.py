"""The public Python API: what `import diffmem` gives a notebook user, with the CLI's defaults.

Each study writes its files to `out` (so a killed run resumes, as on the command line) and returns a
`Result`: `.summary` (a dict), `.to_pandas()` (its table, nested columns as lists and dicts), `.tables`
(every table it wrote) and `.report` (its HTML page). tests/test_api.py checks that every default here is
the one the CLI uses.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from .features import Descriptor, load_descriptor
from .features.motion import MotionPolicy
from .guidance.config import AMGConfig
from .index import build_content_index, build_motion_index_beside
from .io.results import Result
from .models.adapter import DenoiserAdapter
from .models.registry import load_adapter
from .studies.amg import generate_with_amg
from .studies.audit import audit as _audit
from .studies.detect import run_detect
from .studies.extract import run_extract
from .studies.generate import GenerateConfig
from .studies.generate import generate as _generate
from .studies.prompts import run_prompts

__all__ = ["load_model", "load_descriptor", "build_index", "audit", "curate_prompts", "extract", "detect_prompts",
           "generate", "AMGConfig", "GenerateConfig", "Result", "Descriptor", "DenoiserAdapter"]


def load_model(spec: str | Path = "builtin:tiny-t2v", device: str = "cpu", dtype: str = "float32",
               config: str | Path | None = None) -> DenoiserAdapter:
    """A denoiser: `builtin:tiny-t2v`, `builtin:tiny-t2i`, a `diffmem train` folder, a local diffusers
    pipeline folder, or a single-file SD checkpoint with `config` (as `diffmem generate MODEL --config`),
    its weights in `dtype` ("float32", "bfloat16", or "float16" for CUDA; as `--dtype`)."""
    return load_adapter(spec, device, dtype=dtype, config=config)


def build_index(train, out, *, descriptor: str | Descriptor = "builtin", fps: float = 8.0, factory: str = "Flat",
                motion: bool | MotionPolicy = False, progress: bool = True, **options) -> Result:
    """Descriptors of every training frame into a FAISS index folder (`diffmem index build`); resumable.
    motion: also the training videos' motion windows into OUT/motion_index (True: the default motion policy),
    which every audit against OUT then reuses. `options`: as `diffmem.index.build_content_index` (policy,
    sha256, device, batch_size, ...)."""
    rep = build_content_index(train, out, descriptor=descriptor, fps=fps, factory=factory, progress=progress,
                              **options)
    summary = rep.as_dict()
    if motion:
        mi, skipped = build_motion_index_beside(rep.index, None if motion is True else motion, progress=progress)
        summary["motion"] = {"folder": str(mi.folder), "n_windows": len(mi), "n_videos": len(mi.train_ids),
                             "policy": mi.policy.name, "skipped": [k.as_dict() for k in skipped]}
    return Result(Path(rep.index.folder), summary)


def audit(generated, train_or_index, out, *, motion: bool = True, threshold: float | None = None,
          descriptor: str | Descriptor | None = None, progress: bool = True, **options) -> Result:
    """Content and motion memorization of every generated item (`diffmem audit`): one row per item.
    motion=False audits content only. `options`: as `diffmem.studies.audit.audit`."""
    r = _audit(generated, train_or_index, out, motion=motion, threshold=threshold, descriptor=descriptor,
               progress=progress, **options)
    out = Path(out)
    return Result(out, r.summary, {"items": out / "audit.parquet"}, _exists(out / "report.html"))


def curate_prompts(train, out, *, top: int | None = None, min_count: int = 2, caption_threshold: float = 0.8,
                   content: bool = True, model: str | DenoiserAdapter | None = None, progress: bool = True,
                   **options) -> Result:
    """Memorization-prone prompts from a captioned training set (`diffmem prompts`), written to the prompt
    file `out` (.jsonl), each with the evidence it was chosen for. `options`: as `run_prompts`."""
    s = run_prompts(train, out, top=top, min_count=min_count, caption_threshold=caption_threshold, content=content,
                    model=model, progress=progress, **options)
    return Result(Path(out), s, {"prompts": Path(out)})


def extract(model, prompts, train_or_index, out, *, n: int = 4, seed: int = 0, steps: int = 25,
            guidance: float = 7.5, motion: bool = True, progress: bool = True, **options) -> Result:
    """Generate n samples per prompt, audit them, count the training items extracted (`diffmem extract`).
    Tables: "prompts" (one row per prompt), "samples" (one per sample). `options`: as `run_extract`."""
    s = run_extract(model, prompts, train_or_index, out, n=n, seed=seed, steps=steps, guidance=guidance,
                    motion=motion, progress=progress, **options)
    out = Path(out)
    return Result(out, s, {"prompts": out / "extract.parquet", "samples": out / "samples.parquet"},
                  _exists(out / "report.html"))


def detect_prompts(model, prompts, out, *, labels=None, calibration=None, progress: bool = True, **options) -> Result:
    """Score every prompt by how much it changes the model's noise prediction (`diffmem detect`); with
    `labels`, the ROC against them. `options`: as `run_detect` (settings, calibrate_fpr, fprs, ...)."""
    s = run_detect(model, prompts, out, labels=labels, calibration=calibration, progress=progress, **options)
    out = Path(out)
    return Result(out, s, {"prompts": out / "detect.parquet", "steps": out / "steps.parquet"},
                  _exists(out / "report.html"))


def generate(model, prompts, out, *, n: int = 4, seed: int = 0, steps: int = 25, guidance: float = 7.5,
             amg: AMGConfig | bool = False, index=None, progress: bool = True, **options) -> Result:
    """Sample n videos (or images) per prompt (`diffmem generate`); resumable. With `amg` (True for the
    default `AMGConfig`, or a config) and `index` (the training set), Anti-Memorization Guidance steers
    away from the training data (`diffmem generate --amg --index`). `options`: batch_size, device, dtype,
    model_config (as `--config`), and the other `GenerateConfig` fields (scheduler, eta, negative_prompt, fps, ...)."""
    run = {k: options.pop(k) for k in ("batch_size", "device", "dtype", "model_config") if k in options}
    settings = GenerateConfig(n=n, seed=seed, steps=steps, guidance=guidance, **options)
    if amg:
        if index is None:
            raise ValueError("amg needs `index`: the training set to steer away from")
        s = generate_with_amg(model, prompts, out, settings, index, amg=AMGConfig() if amg is True else amg,
                              progress=progress, **run)
    else:
        s = _generate(model, prompts, out, settings, progress=progress, **run)
    out = Path(out)
    return Result(out, s, {"samples": out / "manifest.parquet"})


def _exists(path: Path) -> Path | None:
    return path if path.exists() else None

