"""What `diffmem demo` returns: one `Stage` record per stage and the `DemoResult` that prints the summary."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..world import WorldSummary

# The stages whose results are findings (the others prepare them), in the order they are told.
FINDINGS = ("prompts", "extract", "detect", "amg")


@dataclass
class Stage:
    name: str
    status: str = "pending"      # done | skipped | failed
    seconds: float = 0.0
    result: str = ""             # one line for the report's stage table (all the numbers)
    detail: dict = field(default_factory=dict)
    headline: str = ""           # what a new user should take away, short (terminal summary); default: result

    def as_dict(self) -> dict:
        return {"name": self.name, "status": self.status, "seconds": round(self.seconds, 1), "result": self.result,
                "headline": self.headline, "detail": self.detail}


@dataclass
class DemoResult:
    out: Path
    world: WorldSummary | None
    stages: list[Stage] = field(default_factory=list)
    report: Path | None = None
    seconds: float = 0.0
    settings: dict = field(default_factory=dict)  # model, n, sampler: what the numbers were measured with

    def stage(self, name: str) -> Stage | None:
        return next((s for s in self.stages if s.name == name), None)

    def format(self) -> str:
        """The terminal summary: what was found (one line per finding stage), the extraction table, the
        stages' times, and where the report is. Skipped and failed stages say why."""
        st = self.settings
        how = (f": model {st['model']}, {st['n']} samples per prompt, {st['steps']} steps, guidance {st['guidance']:g}"
               if st.get("model") else "")
        lines = [f"diffmem demo finished in {self.seconds:.0f} s{how}", ""]
        w = max(len(s.name) for s in self.stages) if self.stages else 8
        for s in self.stages:
            if s.name in FINDINGS and s.status == "done":
                lines.append(f"  {s.name:<{w}}  {s.headline or s.result}")
            elif s.status != "done":
                lines.append(f"  {s.name:<{w}}  {s.status.upper()}: {s.result}")
        ex = self.stage("extract")
        if ex is not None and ex.status == "done":
            lines += ["", "Extraction by prompt group (share of samples that copy a training item; items = distinct "
                      "training items copied):"]
            lines += ["  " + ln for ln in ex.detail["table"].splitlines()]
        lines += ["", "Time per stage: " + ", ".join(f"{s.name} {s.seconds:.0f} s" for s in self.stages)]
        if self.report:
            lines.append(f"Report: {self.report}  (one self-contained page: open it in a browser)")
        return "\n".join(lines)


def pct_text(v) -> str:
    return "-" if v is None else f"{100 * v:.0f}%"


def value_text(v) -> str:
    if v is None:
        return "-"
    return f"{v:.3g}" if isinstance(v, float) else str(v)


class StageSkipped(Exception):
    """A stage that cannot run here (says why)."""
