"""Generation sweeps on Ray: prompts x seeds split into tasks, one model per actor (`generate`'s twin).

    summary = generate_ray("builtin:tiny-t2v", "prompts.jsonl", "OUT", GenerateConfig(n=64), address="auto")

The sweep (every prompt x seeds settings.seed .. settings.seed + n - 1) is cut into tasks of
`prompts_per_task` prompts x `seeds_per_task` seeds. Ray Data runs them with `map_batches` over an
actor pool; each actor loads the model once (a GPU per actor when the cluster has GPUs) and runs
`studies.generate.generate` for its task into OUT/parts/<task>/ -- so every sample is written
atomically (media, then its record) and a rerun resumes sample by sample, exactly as `generate` does.

OUT/manifest.parquet and OUT/generation.json are then written in `generate`'s format: the same sample
ids (`<prompt id>_s<k>`), seeds, groups and columns as a local run, paths pointing into parts/, so
`diffmem audit` / `diffmem extract` read a Ray sweep like a local one. Sampler hooks (AMG) are not
available on this engine.
"""
from __future__ import annotations

import hashlib
import json
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from ..data.prompts import PromptEntry, as_prompt_entries
from ..errors import DiffmemError
from ..index.ray_engine import actor_pool, ray_session
from ..io.lock import writes_folder
from ..io.results import environment, read_json, to_jsonable, write_json, write_parquet
from ..models.registry import dtype_name, load_adapter, resolve_dtype
from .generate import GenerateConfig, generate

__all__ = ["generate_ray", "plan_sweep"]


def plan_sweep(specs: list[PromptEntry], settings: GenerateConfig, out: Path, *,
               prompts_per_task: int = 8, seeds_per_task: int | None = None) -> list[dict]:
    """The tasks of a sweep: {"name", "prompts", "k0", "n", "done"} in (prompt block, seed block) order.

    A task is done when its part folder holds a finished generation covering all its samples.
    """
    if prompts_per_task < 1 or (seeds_per_task is not None and seeds_per_task < 1):
        raise DiffmemError("prompts_per_task and seeds_per_task must be >= 1")
    spt = settings.n if seeds_per_task is None else min(int(seeds_per_task), settings.n)
    tasks = []
    for b in range(0, len(specs), prompts_per_task):
        block = specs[b:b + prompts_per_task]
        ids = [p.id for p in block]
        for k0 in range(0, settings.n, spt):
            n = min(spt, settings.n - k0)
            h = hashlib.sha256(json.dumps([ids, [p.prompt for p in block], k0, n]).encode()).hexdigest()[:8]
            name = f"{b // prompts_per_task:05d}-s{k0}-{h}"
            tasks.append({"name": name, "prompts": [{"id": p.id, "prompt": p.prompt, "group": p.group} for p in block],
                          "k0": k0, "n": n, "done": _part_done(out / "parts" / name, len(block) * n)})
    return tasks


def _part_done(part: Path, n_samples: int) -> bool:
    g = part / "generation.json"
    if not (g.is_file() and (part / "manifest.parquet").is_file()):
        return False
    try:
        info = read_json(g)
    except (OSError, ValueError):
        return False
    if info.get("status") != "done" or info.get("n_samples") != n_samples:
        return False
    m = pd.read_parquet(part / "manifest.parquet")
    return len(m) == n_samples and all((part / p).is_file() for p in m["path"])


def _task_settings(settings: GenerateConfig, task: dict) -> GenerateConfig:
    return replace(settings, n=int(task["n"]), seed=int(settings.seed) + int(task["k0"]))


class _Generator:
    """Ray Data actor: loads the model once, runs `generate` for one task per call."""

    def __init__(self, model, device, settings: dict, batch_size: int, out: str, threads: int = 1,
                 dtype: str = "float32", model_config: str | None = None):
        torch.set_num_threads(max(1, int(threads)))
        if device in (None, "auto"):
            device = "cuda" if torch.cuda.is_available() else "cpu"
        self.adapter = load_adapter(model, device, dtype=dtype, config=model_config)
        self.settings = GenerateConfig(**settings)
        self.batch_size, self.out = batch_size, Path(out)

    def __call__(self, batch: dict) -> dict:
        names = []
        for raw in batch["task"]:
            t = json.loads(str(raw))
            specs = [PromptEntry(p["id"], p["prompt"], p.get("group")) for p in t["prompts"]]
            generate(self.adapter, specs, self.out / "parts" / t["name"], _task_settings(self.settings, t),
                     batch_size=self.batch_size, progress=False)
            names.append(t["name"])
        return {"name": np.asarray(names)}


def _merge(out: Path, specs: list[PromptEntry], tasks: list[dict]):
    """The parts' manifests as one, in `generate`'s order and with its ids: prompt by prompt, k = 0..n-1."""
    frames = []
    for t in tasks:
        m = pd.read_parquet(out / "parts" / t["name"] / "manifest.parquet")
        j = m["sample_index"].astype(int)
        k = j + int(t["k0"])
        m["id"] = [i[: -len(f"_s{a}")] + f"_s{b}" for i, a, b in zip(m["id"], j, k)]
        m["sample_index"] = k
        m["path"] = [f"parts/{t['name']}/{p}" for p in m["path"]]
        frames.append(m)
    df = pd.concat(frames, ignore_index=True)
    order = {p.id: i for i, p in enumerate(specs)}
    df["_o"] = df["prompt_id"].map(order)
    return df.sort_values(["_o", "sample_index"], kind="stable").drop(columns="_o").reset_index(drop=True)


@writes_folder("generate (ray)")
def generate_ray(model, prompts, out: str | Path, settings: GenerateConfig = GenerateConfig(), *,
                 batch_size: int = 8, device: Any = None, dtype: str = "float32", model_config: Any = None,
                 progress: bool = True, log=None, address: str | None = None, num_cpus: int | None = None, num_actors: int | None = None,
                 gpus_per_actor: float | None = None, prompts_per_task: int = 8,
                 seeds_per_task: int | None = None) -> dict:
    """`generate` on Ray (see the module docstring). Returns the summary written to OUT/generation.json.

    model: a spec string for `models.load_adapter` (each actor loads its own copy).
    address / num_cpus: as for `index.ray_engine.ray_session`; num_actors default: one per GPU, else per CPU.
    """
    if settings.n < 1:
        raise DiffmemError(f"--n must be >= 1, got {settings.n}")
    if not isinstance(model, (str, Path)):
        raise DiffmemError("generate_ray needs the model as a spec (builtin:NAME or a folder): each Ray actor loads it")
    specs = as_prompt_entries(prompts)
    if not specs:
        raise DiffmemError("no prompts")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    identity = {"model_spec": str(model), "settings": settings.as_dict(), "engine": "ray",
                "dtype": dtype_name(resolve_dtype(dtype))}
    gen_path = out / "generation.json"
    if gen_path.is_file():
        old = read_json(gen_path)
        if {k: old.get(k, "float32" if k == "dtype" else None) for k in identity} != json.loads(json.dumps(to_jsonable(identity))):
            raise DiffmemError(f"{out} holds samples made with other settings or another model; "
                               "use another --out (or the same settings to resume)")
    tasks = plan_sweep(specs, settings, out, prompts_per_task=prompts_per_task, seeds_per_task=seeds_per_task)
    todo = [t for t in tasks if not t["done"]]
    if log and len(todo) < len(tasks):
        log(f"{len(tasks) - len(todo)} of {len(tasks)} tasks already done; running {len(todo)}")
    write_json(gen_path, {**identity, "status": "running", "environment": environment(),
                          "n_prompts": len(specs), "n_samples": len(specs) * settings.n, "n_tasks": len(tasks)})
    t0 = time.time()
    if todo:
        with ray_session(address, num_cpus=num_cpus) as ray:
            num_actors, gpus_per_actor = actor_pool(ray, len(todo), device, num_actors, gpus_per_actor)
            ds = ray.data.from_items([{"task": json.dumps({k: t[k] for k in ("name", "prompts", "k0", "n")})}
                                      for t in todo], override_num_blocks=len(todo))
            ds = ds.map_batches(_Generator, batch_size=1, compute=ray.data.ActorPoolStrategy(size=num_actors),
                                num_cpus=1, num_gpus=gpus_per_actor or None,
                                fn_constructor_kwargs=dict(model=str(model), device=device or (
                                    "cuda" if gpus_per_actor else "cpu"), settings=settings.as_dict(),
                                    batch_size=batch_size, out=str(out), dtype=dtype,
                                    model_config=None if model_config is None else str(model_config)))
            bar = None
            if progress:
                bar = tqdm(total=len(todo), desc="ray: generating", unit="task", leave=False)
            for _ in ds.iter_rows():
                if bar is not None:
                    bar.update(1)
            if bar is not None:
                bar.close()
    seconds = time.time() - t0
    missing = [t["name"] for t in tasks if not _part_done(out / "parts" / t["name"], len(t["prompts"]) * t["n"])]
    if missing:
        raise DiffmemError(f"{out}: {len(missing)} task(s) did not finish (e.g. parts/{missing[0]}); run again to resume")
    manifest = _merge(out, specs, tasks)
    write_parquet(out / "manifest.parquet", manifest)
    first = read_json(out / "parts" / tasks[0]["name"] / "generation.json")
    n_new = sum(len(t["prompts"]) * t["n"] for t in todo)
    summary = {**identity, "model": first.get("model"), "extra_settings": {}, "status": "done",
               "environment": environment(), "n_prompts": len(specs), "n_samples": len(manifest),
               "n_in_tasks_run": n_new, "fps": first.get("fps"),
               "n_tasks": len(tasks), "n_tasks_run": len(todo), "seconds": round(seconds, 2),
               "samples_per_minute": round(60.0 * n_new / seconds, 2) if n_new and seconds > 0 else None}
    write_json(gen_path, summary)
    return summary
