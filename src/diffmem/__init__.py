"""diffmem: measure, detect and prevent training-data memorization in image and video diffusion models.

The Python API (the same defaults as the `diffmem` command; each study writes its files to `out`,
resumes when run again, and returns a `Result` with `.summary`, `.to_pandas()` and `.report`):

    import diffmem

    index = diffmem.build_index("world/train.parquet", "runs/index")          # diffmem index build
    r = diffmem.audit("samples/", "runs/index", "runs/audit")                 # diffmem audit
    r.to_pandas()                                  # one row per generated item, nested columns as dicts
    prompts = diffmem.curate_prompts("world/train.parquet", "runs/prompts.jsonl")   # diffmem prompts
    ex = diffmem.extract("builtin:tiny-t2v", "runs/prompts.jsonl", "runs/index", "runs/extract")
    det = diffmem.detect_prompts("builtin:tiny-t2v", "runs/prompts.jsonl", "runs/detect",
                                 labels="runs/extract/labels.jsonl")           # diffmem detect
    diffmem.generate("builtin:tiny-t2v", ["a cat zigzags across grass"], "runs/amg",
                     amg=diffmem.AMGConfig(), index="runs/index")             # diffmem generate --amg
    model = diffmem.load_model("builtin:tiny-t2v"); desc = diffmem.load_descriptor("builtin")

The building blocks live in the layers below (`diffmem.metrics`, `diffmem.index`, `diffmem.guidance`, ...);
the embedded world for experiments is `diffmem.world`.
"""
from importlib import import_module

__version__ = "0.1.0"

# Loaded on first use: the API pulls in torch (2.7 s), and `diffmem --help` only needs __version__.
_API = ("load_model", "load_descriptor", "build_index", "audit", "curate_prompts", "extract", "detect_prompts",
        "generate", "AMGConfig", "GenerateConfig", "Result", "Descriptor", "DenoiserAdapter")
__all__ = ["__version__", *_API]


def __getattr__(name):
    if name in _API:
        value = getattr(import_module(".api", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'diffmem' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_API))
