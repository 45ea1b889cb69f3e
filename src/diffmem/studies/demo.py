"""The offline demonstration: everything diffmem does, end to end, on the embedded world.

For now it builds the world into OUT/world; later issues add training the tiny model, auditing,
detection and guidance, each writing into its own folder under OUT.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..data.world import WorldSummary, make_world


@dataclass
class DemoResult:
    out: Path
    world: WorldSummary

    def format(self) -> str:
        return f"demo {self.out}\n" + self.world.format()


def run_demo(out, *, seed: int = 0, size: str = "small", force: bool = False, progress: bool = False) -> DemoResult:
    """Build (or resume) the demo in folder `out`."""
    out = Path(out)
    world = make_world(out / "world", seed=seed, size=size, force=force, progress=progress)
    return DemoResult(out, world)
