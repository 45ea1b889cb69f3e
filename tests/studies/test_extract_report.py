"""The extraction study's report and its text summary, from hand-built audit rows."""
import numpy as np
from _extract_rows import _entries, _samples

from diffmem.io.video import write_video
from diffmem.studies.extract_report import clip_pairs, extract_report, format_summary
from diffmem.studies.extract_tables import tabulate


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
    assert "data:image/gif;base64,BBBB" in html and "data:image/svg+xml;base64," in html  # histogram embedded


def test_clip_pairs_one_per_training_item_best_score_first(tmp_path):
    frames = np.zeros((4, 16, 16, 3), np.uint8)
    for name in ("gen.mp4", "t1.mp4"):
        write_video(tmp_path / name, frames, fps=4)
    s = _samples().assign(prompt="p", path=str(tmp_path / "gen.mp4"))
    pairs = clip_pairs(s, {"t1": tmp_path / "t1.mp4"}, {"t1": "a red car"})
    # extracted: t1 by pA-0 (0.9), pA-1 (0.8), pA-2 (both: its content match, 0.7); t5 by pB-0 (motion, 0.97)
    assert [(p["train_id"], p["sample_id"], p["verdict"]) for p in pairs] == [("t5", "pB-0", "motion"),
                                                                            ("t1", "pA-0", "content")]
    assert pairs[0]["original_uri"] is None and pairs[1]["original_uri"].startswith("data:image/gif")
    assert pairs[1]["train_caption"] == "a red car" and clip_pairs(s, {}, {}, limit=1)[0]["train_id"] == "t5"


def test_format_summary_headline_and_group_rows():
    _, summ = tabulate(_samples(), _entries())
    text = format_summary({**summ, "config": {"motion": "off"}}).splitlines()
    assert text[0] == "3 distinct training items extracted by 4 of 8 samples from 2 of 4 prompts (motion audit: off)"
    assert text[2].split() == ["dup", "2", "6", "50.0%", "33.3%", "16.7%", "66.7%", "3"]
    assert text[3].split() == ["novel", "2", "2", "0.0%", "0.0%", "0.0%", "0.0%", "0"]
    assert text[4].split()[:3] == ["all", "4", "8"] and len(text) == 5


# The study end to end (generation, audit, resume, the CLI) is tested in test_demo.py on the demo's tiny world.
