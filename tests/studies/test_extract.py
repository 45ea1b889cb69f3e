"""The extraction study's tables and report, from hand-built audit rows."""
import math

import pandas as pd
import pytest

from diffmem.errors import DiffmemError
from diffmem.studies.extract import extract_report, score_summary, tabulate
from diffmem.studies.prompts import PromptEntry

NaN = float("nan")


def _samples():
    # prompt pA: 4 samples, 2 content copies of t1, 1 "both" copying t1 (content) and t9 (motion), 1 none
    # prompt pB: 2 samples, 1 motion copy of t5, 1 none;  prompt pC: 2 samples, none
    rows = [
        ("pA-0", "pA", 0, "content", 0.9, "t1", 0.2, "t3"),
        ("pA-1", "pA", 1, "content", 0.8, "t1", 0.1, "t3"),
        ("pA-2", "pA", 2, "both", 0.7, "t1", 0.95, "t9"),
        ("pA-3", "pA", 3, "none", 0.3, "t2", 0.4, "t9"),
        ("pB-0", "pB", 0, "motion", 0.2, "t4", 0.97, "t5"),
        ("pB-1", "pB", 1, "none", 0.1, "t4", NaN, None),
        ("pC-0", "pC", 0, "none", 0.2, "t7", 0.3, "t8"),
        ("pC-1", "pC", 1, "none", 0.4, "t7", 0.2, "t8"),
    ]
    return pd.DataFrame(rows, columns=["sample_id", "prompt_id", "seed", "verdict", "content_score", "content_match",
                                       "motion_score", "motion_match"])


def _entries():
    return [PromptEntry("pA", "a red car", group="dup", evidence={"rank": 1, "reasons": ["duplicate_content"]}),
            PromptEntry("pB", "a cat", group="dup"),
            PromptEntry("pC", "a cup", group="novel"),
            PromptEntry("pD", "never sampled", group="novel")]


def test_score_summary_by_hand():
    s = score_summary([0.1, 0.5, NaN, 0.9, None], {"0.5": 0.5, "0.4": 0.4})
    assert s["n"] == 3 and s["mean"] == pytest.approx(0.5) and s["median"] == pytest.approx(0.5)
    assert s["max"] == 0.9 and s["p95"] == pytest.approx(0.5 + 0.9 * 0.4)  # linear interpolation: 0.5 + 0.9*(0.9-0.5)
    assert s["frac_above_0.5"] == pytest.approx(1 / 3) and s["frac_above_0.4"] == pytest.approx(2 / 3)
    assert score_summary([])["mean"] is None


def test_per_prompt_table():
    per, summ = tabulate(_samples(), _entries(), content_thresholds={"tau": 0.5})
    per = per.set_index("prompt_id")
    a = per.loc["pA"]
    assert (a.n_samples, a.n_content, a.n_motion, a.n_both, a.n_extracted_samples) == (4, 3, 1, 1, 3)
    assert a.rate_content == 0.75 and a.rate_motion == 0.25 and a.rate_extracted == 0.75
    assert a.train_extracted == ["t1", "t9"] and a.n_train_extracted == 2  # t2/t3 matched by non-memorized verdicts
    assert a.content_max == 0.9 and a["content_frac_above_tau"] == 0.75
    assert a["rank"] == 1 and a.reasons == ["duplicate_content"]
    b = per.loc["pB"]
    assert (b.n_motion, b.n_content, b.train_extracted) == (1, 0, ["t5"])
    assert b.motion_mean == pytest.approx(0.97)  # the NaN motion score is left out
    d = per.loc["pD"]
    assert d.n_samples == 0 and math.isnan(d.rate_extracted) and d.train_extracted == []
    assert list(per.index) == ["pA", "pB", "pC", "pD"]


def test_overall_and_group_tables():
    _, summ = tabulate(_samples(), _entries())
    o = summ["overall"]
    assert (o["n_prompts"], o["n_samples"], o["n_extracted_samples"], o["n_prompts_extracted"]) == (4, 8, 4, 2)
    assert o["train_extracted"] == ["t1", "t5", "t9"]
    assert o["rate_content"] == pytest.approx(3 / 8) and o["rate_motion"] == pytest.approx(2 / 8)
    assert o["content_score"]["max"] == 0.9 and o["motion_score"]["n"] == 7
    dup, novel = summ["by_group"]["dup"], summ["by_group"]["novel"]
    assert (dup["n_prompts"], dup["n_samples"], dup["rate_extracted"]) == (2, 6, pytest.approx(4 / 6))
    assert (novel["n_prompts"], novel["n_samples"], novel["rate_extracted"], novel["n_train_extracted"]) == (2, 2, 0.0, 0)


def test_bad_sample_tables_are_refused():
    with pytest.raises(DiffmemError, match="lacks columns"):
        tabulate(_samples().drop(columns=["verdict"]), _entries())
    s = _samples()
    s.loc[0, "verdict"] = "copied"
    with pytest.raises(DiffmemError, match="unknown verdicts"):
        tabulate(s, _entries())


def test_report_escapes_and_shows_tables():
    e = _entries()
    e[0].prompt = "<script>alert(1)</script>"
    per, summ = tabulate(_samples(), e)
    pair = {"sample_id": "pA-0", "prompt": e[0].prompt, "verdict": "content", "content_score": 0.9,
            "motion_score": 0.2, "generated_uri": "data:image/gif;base64,AAAA", "original_uri": "data:image/gif;base64,BBBB",
            "train_id": "t1", "train_caption": "a <b>red</b> car"}
    html = extract_report(per, summ, _samples(), clip_pairs=[pair], thresholds={"content": 0.5}, config={"n": 4})
    assert "<script>" not in html and "&lt;script&gt;" in html
    assert "Extraction by group" in html and "Per prompt" in html and "beside their training originals" in html
    assert "data:image/gif;base64,BBBB" in html and "data:image/png;base64," in html  # histogram embedded

# The study end to end (generation, audit, resume, the CLI) is tested in test_demo.py on the demo's tiny world.
