"""The package's import structure: layers import downward only, no cycles, imports at module top.

Read from the source with `ast` (nothing is imported), so a violation hidden in a function body that
no test runs is found too.
"""
import ast
from collections import defaultdict
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "diffmem"

# Top to bottom (DESIGN.md, "Layers"); a module may import its own package and the ones below it.
# `world` (the synthetic world and its judge) sits right under `studies`: only studies and the CLI use
# it, so no library layer depends on it. `errors` and `device` are the floor.
LAYERS = ["cli", "__init__", "api", "studies", "world", "guidance", "mitigate", "detect", "models", "metrics", "index", "features",
          "flow", "data", "io", "errors", "device"]
RANK = {name: i for i, name in enumerate(LAYERS)}
RANK["api"] = RANK["__init__"]  # the public API module behind `import diffmem`
RANK["device"] = RANK["errors"]  # the floor: neither imports anything else of diffmem but the other

# Function-local imports are allowed only for a measured reason:
# - cli/: start-up time. `diffmem --help` takes 0.2 s, and took 3.8 s when it built every subcommand's
#   parser with the library's defaults (torch alone is 2.6 s); a subcommand imports what it calls when it
#   runs, and its defaults only when it is the one given (`cli.build_parser(only=...)`).
# - optional extras and slow imports used by one feature: Ray (the `ray` extra), diffusers (5.7 s) and
#   transformers (1.5 s) for real models, pandas (0.27 s) where a table is read back, so that a short
#   command such as `diffmem detect` starts without it, and the packages only one loader or calibration
#   run needs.
LAZY_OK_PACKAGES = {"cli"}
LAZY_OK_MODULES = {"ray", "diffusers", "transformers", "pandas", "safetensors", "torchvision", "skimage",
                   "sklearn", "scipy", "huggingface_hub"}


def _modules():
    for path in sorted(SRC.rglob("*.py")):
        rel = path.relative_to(SRC.parent).with_suffix("")
        parts = list(rel.parts)
        is_pkg = parts[-1] == "__init__"
        if is_pkg:
            parts = parts[:-1]
        yield ".".join(parts), path, is_pkg


def _imports(name: str, path: Path, is_pkg: bool):
    """(imported name, is_top_level, line) for every import of the file; `from m import x` gives "m.x"
    (x may be a submodule or a symbol of m: `_graph` resolves which)."""
    tree = ast.parse(path.read_text(), str(path))
    top = {id(n) for n in tree.body}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                yield a.name, id(node) in top, node.lineno
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".")
                base = base[: len(base) - node.level + (1 if is_pkg else 0)]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            for a in node.names:
                yield f"{mod}.{a.name}", id(node) in top, node.lineno


def _layer(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _graph():
    known = {name for name, _, _ in _modules()}
    edges, lazy = defaultdict(set), []
    for name, path, is_pkg in _modules():
        for mod, at_top, line in _imports(name, path, is_pkg):
            if mod.startswith("diffmem."):
                target = mod if mod in known else mod.rsplit(".", 1)[0]
                if target != "diffmem" or mod in known:
                    edges[name].add(target)
            if not at_top:
                lazy.append((name, mod, line))
    return edges, lazy


def test_every_module_belongs_to_a_layer():
    unknown = sorted({_layer(name) for name, _, _ in _modules()} - set(RANK))
    assert not unknown, f"packages missing from LAYERS: {unknown}"


def test_imports_point_downward_only():
    edges, _ = _graph()
    bad = [f"{a} imports {b}" for a, targets in edges.items() for b in targets
           if _layer(a) != _layer(b) and RANK[_layer(b)] < RANK[_layer(a)]]
    assert not bad, "upward imports:\n" + "\n".join(sorted(bad))


def test_no_import_cycles():
    edges, _ = _graph()
    state, stack, cycles = {}, [], []

    def visit(n):
        state[n] = 1
        stack.append(n)
        for m in sorted(edges.get(n, ())):
            if m == n:
                continue
            if state.get(m) == 1:
                cycles.append(" -> ".join(stack[stack.index(m):] + [m]))
            elif m not in state:
                visit(m)
        stack.pop()
        state[n] = 2

    for n in sorted(edges):
        if n not in state:
            visit(n)
    assert not cycles, "import cycles:\n" + "\n".join(cycles)


def test_imports_are_at_module_top_unless_there_is_a_measured_reason():
    _, lazy = _graph()
    bad = [f"{name}:{line} imports {mod} inside a function" for name, mod, line in lazy
           if _layer(name) not in LAZY_OK_PACKAGES and mod.split(".")[0] not in LAZY_OK_MODULES]
    assert not bad, "\n".join(bad)


def test_the_checks_see_a_violation(tmp_path):
    """The three checks are not vacuous: a planted upward, cyclic and local import is caught."""
    global SRC
    pkg = tmp_path / "diffmem"
    for sub in ("io", "metrics"):
        (pkg / sub).mkdir(parents=True)
        (pkg / sub / "__init__.py").write_text("")
    (pkg / "__init__.py").write_text("")
    (pkg / "io" / "a.py").write_text("from ..metrics import b\n")
    (pkg / "metrics" / "b.py").write_text("def f():\n    import pandas\n    from ..io import a\n")
    old, SRC = SRC, pkg
    try:
        edges, lazy = _graph()
        assert "diffmem.metrics.b" in edges["diffmem.io.a"]
        for check in (test_imports_point_downward_only, test_no_import_cycles,
                      test_imports_are_at_module_top_unless_there_is_a_measured_reason):
            try:
                check()
            except AssertionError:
                continue
            raise AssertionError(f"{check.__name__} missed the planted violation")
    finally:
        SRC = old
