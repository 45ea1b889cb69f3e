"""What the demo runs with: its options and model (`DemoRun`, shared by the stages), the sampler settings,
the record of both, and the study's prompt set."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..data.prompts import PromptEntry, read_prompts
from ..errors import DiffmemError
from ..index import DEFAULT_FPS
from ..metrics.duplicates import normalize_caption
from ..models.adapter import DenoiserAdapter
from ..models.registry import load_adapter
from .demo_result import DemoResult, StageSkipped
from .world_eval import model_window

# Stage folders that depend on the model and sampler settings (replaced by force=True).
MODEL_STAGES = ("extract", "detect", "amg")
# The world prompt groups added to the curated prompts as controls (and the groups their rates are reported by).
CONTROL_GROUPS = ("novel", "motion_memorization")

SETTINGS_FILE = "demo_settings.json"


def settings_changed(out: Path, settings: dict) -> str | None:
    """What differs between `settings` and those the model's stages in `out` were made with (None: nothing,
    or nothing made yet). A folder of an older version without the record counts as changed when it
    finished (its demo.json exists); an interrupted one is left to resume (generation refuses a mismatch)."""
    if not settings or not any((out / sub).is_dir() for sub in MODEL_STAGES):
        return None
    try:
        old = json.loads((out / SETTINGS_FILE).read_text())
    except (OSError, ValueError):
        return "not recorded" if (out / "demo.json").is_file() else None
    diff = [f"{k} {old.get(k)} -> {v}" for k, v in settings.items() if old.get(k) != v]
    return ", ".join(diff) or None


def load_model(model):
    """(adapter, None) or (None, why it is not available)."""
    try:
        return load_adapter(model, "cpu"), None
    except DiffmemError as e:
        return None, str(e)


# The demo samples at guidance 3: the committed tiny model memorizes most cleanly there (its checkpoints
# README measures 91 % of duplicated-video samples copying a clip at guidance 3, 59 % at 7.5, and no novel
# prompt copying at either). The library default elsewhere stays 7.5, Stable Diffusion's convention.
DEMO_STEPS, DEMO_GUIDANCE = 25, 3.0


def sampler_defaults(adapter, steps, guidance) -> dict:
    """Sampler settings: given ones, else the model's recommendation (`adapter.recommended`), else the demo's."""
    rec = dict(getattr(adapter, "recommended", None) or {}) if adapter is not None else {}
    return {"steps": int(steps or rec.get("steps", DEMO_STEPS)),
            "guidance": float(guidance or rec.get("guidance", DEMO_GUIDANCE))}


def study_prompts(curated, world_prompts: Path, top: int | None, novel: int | None = None):
    """Curated prompts (tagged with the world's group when the world lists that text) + the world's
    control prompts (novel, motion memorization), each text once, with unique ids."""
    world = read_prompts(world_prompts)
    group_of = {normalize_caption(e.prompt): e.group for e in world}
    chosen = curated[:top] if top is not None else list(curated)
    out, seen = [], set()
    for e in chosen:
        key = normalize_caption(e.prompt)
        if key in seen:
            continue
        seen.add(key)
        out.append(PromptEntry(e.id, e.prompt, group=group_of.get(key, "curated_other"), evidence=e.evidence,
                               source="curated"))
    k = n_novel = 0
    for e in world:
        key = normalize_caption(e.prompt)
        if e.group == "novel":
            if novel is not None and n_novel >= novel:
                continue
            n_novel += 1
        if e.group in CONTROL_GROUPS and key not in seen:
            seen.add(key)
            k += 1
            out.append(PromptEntry(f"w{k:03d}", e.prompt, group=e.group, evidence=e.evidence, source="world"))
    return out


@dataclass
class DemoRun:
    """What the stages of one demo run share: the options, the model and what earlier stages made."""

    out: Path
    seed: int
    size: str
    n: int
    top: int | None
    novel: int
    detect_seeds: int
    amg: bool
    amg_prompts: int
    amg_n: int
    force: bool
    progress: bool
    say: Any
    result: DemoResult
    adapter: DenoiserAdapter | None = None
    why: str | None = None           # why there is no model
    sampler: dict = field(default_factory=dict)
    index_fps: float = DEFAULT_FPS
    study: list | None = None        # the study's prompt entries (prompts stage)

    @property
    def world_dir(self) -> Path:
        return self.out / "world"

    @property
    def index_dir(self) -> Path:
        return self.out / "index"

    @property
    def motion_index_dir(self) -> Path:
        """The training videos' motion index, shared by the extract and AMG stages; named by what decides its
        policy (the model's rate, and the frames it makes of the world's clips), so another model reuses or
        builds its own."""
        fps = float(getattr(self.adapter, "fps", 0) or 8.0)
        window = model_window(self.adapter, self.world_dir) if self.adapter is not None else None
        return self.out / f"motion_index_{fps:g}fps_{window or 'all'}"

    @property
    def train_ref(self) -> Path:
        return self.index_dir if (self.index_dir / "index.json").is_file() else self.world_dir / "train.parquet"

    @property
    def labels_path(self) -> Path:
        return self.out / "extract" / "labels.jsonl"

    def need_model(self) -> None:
        if self.adapter is None:
            raise DiffmemError(f"the model could not be loaded: {self.why}")  # a failure: exit code 1

    def need_labels(self) -> None:
        if not self.labels_path.is_file():
            raise StageSkipped("no labels (the extract stage did not finish)")
