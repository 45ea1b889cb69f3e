"""The extraction study's tables, from hand-built audit rows."""
import math

import pytest

from diffmem.errors import DiffmemError
from diffmem.studies.extract_tables import score_summary, tabulate

from _extract_rows import NaN, _entries, _samples


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
