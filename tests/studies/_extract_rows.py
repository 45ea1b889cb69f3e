"""Hand-built audit rows and prompts for the extraction study's table and report tests."""
import pandas as pd

from diffmem.data.prompts import PromptEntry

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
