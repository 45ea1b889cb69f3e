"""Generate samples for a prompt list, resumably: `diffmem generate MODEL --prompts FILE --n N --seed S --out DIR`.

Layout of DIR:

- `samples/<id>.mp4` (video models) or `samples/<id>.png` (image models), one per sample; the id is
  `<prompt id>_s<k>` for the k-th sample of a prompt (k = 0..n-1), made with seed `seed + k`
  (every prompt gets the same n seeds, so prompts are compared on the same starting noise);
- `samples/<id>.json`: that sample's record (prompt, seed, group...), written after its media file;
- `manifest.parquet`: one row per sample -- id, path (relative to DIR), caption (= the prompt, so
  `diffmem.data.manifest.load_manifest(DIR / "manifest.parquet")` loads the samples), kind, prompt,
  prompt_id, group, sample_index, seed, steps_run;
- `generation.json`: the model, its dtype, every setting, the package versions, counts and timing.

Resume: media and records are written atomically, media first; a sample whose record exists (with the
same prompt and seed) is not redone. A DIR made with other settings is refused.
"""
from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

from ..data.prompts import as_prompt_entries
from ..errors import DiffmemError
from ..io.image import write_image
from ..io.lock import writes_folder
from ..io.results import environment, read_json, to_jsonable, write_json, write_parquet
from ..io.video import write_video
from ..models.adapter import frames_to_uint8
from ..models.registry import dtype_name, load_adapter
from ..models.sampler import SamplerConfig, iter_samples


@dataclass(frozen=True)
class GenerateConfig:
    """What changes the samples. `fps` None = the model's own rate (tiny models) or 8."""

    n: int = 4
    seed: int = 0
    steps: int = 25
    guidance: float = 7.5
    scheduler: str = "ddim"
    eta: float = 0.0
    negative_prompt: str = ""
    num_frames: int | None = None
    height: int | None = None
    width: int | None = None
    fps: float | None = None
    video_format: str = "mp4"

    def as_dict(self) -> dict:
        return asdict(self)

    def sampler_config(self):
        return SamplerConfig(num_steps=self.steps, guidance_scale=self.guidance, scheduler=self.scheduler,
                             eta=self.eta, negative_prompt=self.negative_prompt, num_frames=self.num_frames,
                             height=self.height, width=self.width)


def _safe_id(s: str) -> str:
    keep = "".join(c if c.isalnum() or c in "-_." else "_" for c in s).strip(".")
    return keep or hashlib.sha1(s.encode()).hexdigest()[:10]


@writes_folder("generate")
def generate(model, prompts, out: str | Path, settings: GenerateConfig = GenerateConfig(), *,
             batch_size: int = 8, device=None, dtype: str = "float32", model_config: str | Path | None = None,
             hooks: Sequence = (), extra_settings: dict | None = None, after_batch=None, progress: bool = True,
             log=None) -> dict:
    """Sample `settings.n` samples per prompt into `out` (see the module docstring); returns the summary.

    `model`: a `DenoiserAdapter` (used in its own dtype) or a spec for `models.load_adapter`, loaded in
    `dtype` ("float32", "bfloat16", "float16"; `model_config`: a single file's pipeline config). `hooks`: sampler hooks (e.g. AMG),
    described in `extra_settings`, which is stored and compared on resume like the settings.
    `after_batch(rows)`: called with the rows of each batch once its samples are written (so what a hook
    recorded for them is saved with them, and survives a kill).
    """
    if settings.n < 1:
        raise DiffmemError(f"--n must be >= 1, got {settings.n}")
    adapter = load_adapter(model, device, dtype=dtype, config=model_config)
    specs = as_prompt_entries(prompts)
    if not specs:
        raise DiffmemError("no prompts")
    out = Path(out)
    samples_dir = out / "samples"
    samples_dir.mkdir(parents=True, exist_ok=True)
    fps = settings.fps or float(getattr(adapter, "fps", 8.0))
    ext = ".png" if adapter.kind == "image" else "." + settings.video_format.lstrip(".")
    # the dtype changes the samples: a folder made in another dtype is refused like other settings changes
    identity = {"model": adapter.describe(), "dtype": dtype_name(adapter.dtype), "settings": settings.as_dict(),
                "extra_settings": extra_settings or {}}

    gen_path = out / "generation.json"
    if gen_path.is_file():
        old = read_json(gen_path)
        finished = any(p.is_file() and not p.name.startswith(".") for p in samples_dir.iterdir())
        # folders written before dtypes existed were float32
        if {k: old.get(k, "float32" if k == "dtype" else None) for k in identity} != json.loads(json.dumps(to_jsonable(identity))) and finished:
            raise DiffmemError(f"{out} holds samples made with other settings or another model; "
                               "use another --out (or the same settings to resume)")
        # a run that finished no sample (e.g. it failed on its first batch) leaves nothing to protect

    # Every sample: (row, media path, record path)
    todo, rows = [], []
    for p in specs:
        for k in range(settings.n):
            sid = f"{_safe_id(p.id)}_s{k}"
            row = {"id": sid, "path": f"samples/{sid}{ext}", "caption": p.prompt, "kind": adapter.kind,
                   "prompt": p.prompt, "prompt_id": p.id, "group": p.group, "sample_index": k,
                   "seed": settings.seed + k}
            rows.append(row)
            rec = samples_dir / f"{sid}.json"
            done = False
            if rec.is_file() and (out / row["path"]).is_file():
                try:
                    r = read_json(rec)
                    done = r.get("prompt") == p.prompt and r.get("seed") == row["seed"]
                    row["steps_run"] = r.get("steps_run")
                except (OSError, ValueError):
                    done = False
            if not done:
                todo.append(row)
    n_before = len(rows) - len(todo)
    t0 = time.time()
    write_json(gen_path, {**identity, "status": "running", "environment": environment(),
                          "n_prompts": len(specs), "n_samples": len(rows), "fps": fps})
    if log and n_before:
        log(f"{n_before} of {len(rows)} samples already done; generating {len(todo)}")
    if todo:
        for batch in iter_samples(adapter, [r["prompt"] for r in todo], [r["seed"] for r in todo],
                                  settings.sampler_config(), batch_size=batch_size, hooks=hooks, decode=True,
                                  progress=progress):
            frames = frames_to_uint8(batch.frames)
            for j, i in enumerate(batch.indices):
                row = todo[i]
                media = out / row["path"]
                if adapter.kind == "image":
                    write_image(media, frames[j][0])
                else:
                    write_video(media, frames[j], fps=fps)
                row["steps_run"] = batch.steps_run
                write_json(samples_dir / f"{row['id']}.json", row)
            if after_batch is not None:
                after_batch([todo[i] for i in batch.indices])
    seconds = time.time() - t0
    write_parquet(out / "manifest.parquet", rows)
    summary = {**identity, "status": "done", "environment": environment(), "n_prompts": len(specs),
               "n_samples": len(rows), "n_generated": len(todo), "n_already_done": n_before, "fps": fps,
               "seconds": round(seconds, 2),
               "samples_per_minute": round(60.0 * len(todo) / seconds, 2) if todo and seconds > 0 else None}
    write_json(gen_path, summary)
    return summary
