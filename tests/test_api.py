"""The public API (`import diffmem`): what it shows, its defaults against the CLI's, and the README's example."""
import inspect
import json
import re
from pathlib import Path

import pandas as pd
import pytest

import diffmem
from diffmem import api
from diffmem.cli import build_parser
from diffmem.index import build_content_index
from diffmem.studies.audit import audit as study_audit
from diffmem.studies.detect import run_detect
from diffmem.studies.extract import run_extract
from diffmem.studies.generate import GenerateConfig
from diffmem.studies.generate import generate as study_generate
from diffmem.studies.prompts import run_prompts

README = Path(__file__).resolve().parents[1] / "README.md"


def test_help_shows_the_api_and_import_is_light(fresh_python):
    import pydoc

    text = pydoc.render_doc(diffmem, renderer=pydoc.plaintext)
    for name in ("build_index", "audit", "curate_prompts", "extract", "detect_prompts", "generate", "load_model",
                 "load_descriptor", "AMGConfig", "Result"):
        assert name in text, name
    # `import diffmem` alone does not import torch: the CLI's --help stays fast
    code = "import sys, diffmem; print('torch' in sys.modules)"
    assert fresh_python(code).strip() == "False"
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        diffmem.nope


def _defaults(*functions) -> dict:
    """Parameter defaults of the API function and of the study function its **options go to."""
    out = {}
    for fn in reversed(functions):  # the API's own signature wins
        out.update({k: p.default for k, p in inspect.signature(fn).parameters.items()
                    if p.default is not inspect.Parameter.empty})
    return out


def _cli_defaults(*command) -> dict:
    p = build_parser()
    for name in command:
        sub = next(a for a in p._actions if a.__class__.__name__ == "_SubParsersAction")
        p = sub.choices[name]
    d = {a.dest: a.default for a in p._actions if a.dest != "help"}
    for neg, pos in (("no_motion", "motion"), ("no_report", "report")):  # --no-X flags
        if neg in d:
            d[pos] = not d.pop(neg)
    return d


@pytest.mark.parametrize("command, functions", [
    (("index", "build"), (api.build_index, build_content_index)),
    (("audit",), (api.audit, study_audit)),
    (("prompts",), (api.curate_prompts, run_prompts)),
    (("extract",), (api.extract, run_extract)),
    (("detect",), (api.detect_prompts, run_detect)),
    (("generate",), (api.generate, study_generate, GenerateConfig)),
])
def test_api_defaults_are_the_cli_defaults(command, functions):
    cli, py = _cli_defaults(*command), _defaults(*functions)
    ignore = {"progress", "device"}  # the CLI shows progress on a terminal; device: "cpu" vs None = cpu
    shared = sorted(set(cli) & set(py) - ignore)
    assert len(shared) >= 3, (command, shared)  # the comparison is not vacuous
    differ = {k: (cli[k], py[k]) for k in shared if cli[k] != py[k]}
    assert not differ, f"{' '.join(command)}: CLI vs Python defaults differ: {differ}"


def test_result_tables_have_real_nested_columns(tmp_path):
    from diffmem.io.results import Result, write_parquet

    write_parquet(tmp_path / "t.parquet", [{"id": "a", "match": {"train_id": "x", "similarity": float("nan")},
                                            "frames": [1, 2]},
                                           {"id": "b", "match": None, "frames": []}])
    df = Result(tmp_path, {"n": 2}, {"items": tmp_path / "t.parquet"}).to_pandas()
    assert df.loc[0, "match"] == {"train_id": "x", "similarity": None}  # a dict, NaN as None
    assert df.loc[0, "frames"] == [1, 2] and df.loc[1, "match"] is None
    raw = pd.read_parquet(tmp_path / "t.parquet")  # other readers still get valid JSON text
    assert json.loads(raw.loc[0, "match"]) == {"train_id": "x", "similarity": None}
    with pytest.raises(ValueError, match="no table 'x'"):
        Result(tmp_path, {}, {"items": tmp_path / "t.parquet"}).to_pandas("x")


def _readme_python_example() -> str:
    text = README.read_text()
    section = text[text.index("\n## Python\n"):]
    section = section[: section.index("\n## ", 5)]
    blocks = re.findall(r"```python\n(.*?)```", section, re.S)
    assert blocks, "the README's Python section has no ```python block"
    return blocks[0]


@pytest.mark.slow
def test_the_readme_python_example_runs(tmp_path, monkeypatch):
    """The README's "Python" section, run as written (in a temporary folder)."""
    monkeypatch.chdir(tmp_path)
    code = _readme_python_example()
    scope: dict = {}
    exec(compile(code, "README.md (Python)", "exec"), scope)
    audit = scope["audit"]
    df = audit.to_pandas()
    assert len(df) == audit.summary["n_audited"] and isinstance(df.loc[0, "frame_similarities"], list)
    ex = scope["ex"]
    assert set(ex.tables) == {"prompts", "samples"} and len(ex.to_pandas("samples")) > 0
