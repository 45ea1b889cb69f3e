"""Prompt files: the public lists as they are published (Wen et al.'s JSONL, Webster's ground-truth parquet),
the world's prompts, CSV and plain text; ids made unique; bad files name the file and the problem."""
import json

import pandas as pd
import pytest

from diffmem.data.prompts import PromptEntry, read_prompts, write_prompts
from diffmem.errors import BadInputError


def test_write_then_read_keeps_every_field(tmp_path):
    e = [PromptEntry("q1", "a <b>cat</b>", group="g", label=True, evidence={"n": 3, "ids": ["a", "b"]}),
         PromptEntry("q2", "ünïcode", label=False), PromptEntry("q3", "plain")]
    back = read_prompts(write_prompts(tmp_path / "p.jsonl", e))
    assert [(b.id, b.prompt, b.group, b.label, b.evidence) for b in back] == \
           [(x.id, x.prompt, x.group, x.label, x.evidence) for x in e]


def test_label_cells_parse_like_label_files(tmp_path):
    c = tmp_path / "p.csv"
    pd.DataFrame({"prompt": ["a", "b", "c", "d"], "label": ["memorized", "no", "", "T"]}).to_csv(c, index=False)
    assert [x.label for x in read_prompts(c)] == [True, False, None, True]  # a blank label is unknown


def test_reads_wen_et_al_jsonl_as_memorized(tmp_path):
    # the schema of the 500 memorized Stable Diffusion prompts (caption, index, url)
    p = tmp_path / "sdv1_500_memorized.jsonl"
    p.write_text("\n".join(json.dumps(r) for r in [
        {"caption": "The No Limits Business Woman Podcast", "index": 1030727993, "url": "https://x/1.jpg"},
        {"caption": "Sony Won't Release <i>The Interview</i> on VOD", "index": 851022632, "url": "https://x/2.jpg"},
    ]) + "\n\n")
    e = read_prompts(p)
    assert [x.prompt for x in e] == ["The No Limits Business Woman Podcast", "Sony Won't Release <i>The Interview</i> on VOD"]
    assert [x.id for x in e] == ["1030727993", "851022632"]
    assert all(x.label is True for x in e)
    assert e[0].evidence["url"] == "https://x/1.jpg"


def test_reads_webster_groundtruth_parquet(tmp_path):
    p = tmp_path / "sdv1_bb_edge_groundtruth.parquet"
    pd.DataFrame({
        "caption": ["Mothers influence on her young hippo", "Galaxy Women's Leather Boots", "a painting of a fox", "x"],
        "url": ["u1", "u2", "u3", "u4"],
        "overfit_type": ["MV", "TV", "N", "RV"],
        "gen_seeds": [[0, 1], [2], [], [3]],
    }).to_parquet(p)
    e = read_prompts(p)
    assert [x.label for x in e] == [True, True, False, True]
    assert [x.evidence["overfit_type"] for x in e] == ["MV", "TV", "N", "RV"]
    assert [x.id for x in e] == ["p00000", "p00001", "p00002", "p00003"]


def test_reads_world_prompts_with_groups_and_csv_and_text(tmp_path):
    w = tmp_path / "prompts.jsonl"
    w.write_text(json.dumps({"id": "q1", "prompt": "a", "group": "duplicated_video", "label": True,
                             "train_ids": ["vid0001", "vid0007"]}) + "\n"
                 + json.dumps({"id": "q2", "prompt": "b", "group": "novel", "label": "novel", "train_ids": []}) + "\n")
    e = read_prompts(w)
    assert [(x.id, x.group, x.label) for x in e] == [("q1", "duplicated_video", True), ("q2", "novel", False)]
    assert e[0].evidence == {"train_ids": ["vid0001", "vid0007"]}

    c = tmp_path / "p.csv"
    pd.DataFrame({"prompt": ["one", "two"], "label": [1, 0]}).to_csv(c, index=False)
    assert [(x.prompt, x.label) for x in read_prompts(c)] == [("one", True), ("two", False)]

    t = tmp_path / "p.txt"
    t.write_text("first prompt\n\n  second prompt  \n")
    assert [(x.id, x.prompt) for x in read_prompts(t)] == [("p00000", "first prompt"), ("p00001", "second prompt")]


def test_duplicate_ids_are_made_unique(tmp_path):
    p = tmp_path / "p.jsonl"
    p.write_text('{"id": 7, "prompt": "a"}\n{"id": 7, "prompt": "b"}\n')
    assert [x.id for x in read_prompts(p)] == ["7-1", "7-2"]


@pytest.mark.parametrize("name, content, message", [
    ("bad.jsonl", '{"prompt": "ok"}\n{not json\n', "line 2: not JSON"),
    ("nofield.jsonl", '{"title": "x"}\n', "line 1: no text field"),
    ("empty.txt", "\n\n", "no prompts"),
    ("label.jsonl", '{"prompt": "x", "label": "maybe"}\n', "not a boolean"),
    ("blank.jsonl", '{"prompt": "  "}\n', "is empty"),
])
def test_bad_files_name_file_and_problem(tmp_path, name, content, message):
    p = tmp_path / name
    p.write_text(content)
    with pytest.raises(BadInputError) as e:
        read_prompts(p)
    assert str(p) in str(e.value) and message in str(e.value)


def test_missing_file_and_wrong_columns(tmp_path):
    with pytest.raises(BadInputError, match="no such file"):
        read_prompts(tmp_path / "nope.jsonl")
    p = tmp_path / "x.parquet"
    pd.DataFrame({"title": ["a"]}).to_parquet(p)
    with pytest.raises(BadInputError, match="no text column"):
        read_prompts(p)
    with pytest.raises(BadInputError, match="is a folder"):
        read_prompts(tmp_path)


def test_as_prompt_entries_takes_files_strings_dicts_and_entries(tmp_path):
    import pytest

    from diffmem.data.prompts import PromptEntry, as_prompt_entries, write_prompts
    from diffmem.errors import DiffmemError

    got = as_prompt_entries(["a cat", {"prompt": "a dog", "id": "d", "group": "novel"}, PromptEntry("e", "x")])
    assert [(e.id, e.prompt, e.group) for e in got] == [("p00000", "a cat", None), ("d", "a dog", "novel"),
                                                        ("e", "x", None)]
    write_prompts(tmp_path / "p.jsonl", got)
    assert [e.id for e in as_prompt_entries(tmp_path / "p.jsonl")] == ["p00000", "d", "e"]
    assert as_prompt_entries([""])[0].prompt == ""  # unconditional sampling is allowed
    with pytest.raises(DiffmemError, match="prompt 1 is empty"):
        as_prompt_entries(["a", " "], allow_empty=False)
    with pytest.raises(DiffmemError, match="unique"):
        as_prompt_entries([{"prompt": "a", "id": "x"}, {"prompt": "b", "id": "x"}])
    with pytest.raises(DiffmemError, match="no prompts"):
        as_prompt_entries([])
    with pytest.raises(DiffmemError, match="prompt 0: expected text"):
        as_prompt_entries([3])


def test_a_file_of_another_type_is_not_read_as_prompts(tmp_path):
    """`generate --prompts notes.pdf` generated samples for the PDF's lines and exited 0."""
    import pytest

    from diffmem.data.prompts import read_prompts
    from diffmem.errors import BadInputError

    (tmp_path / "notes.pdf").write_text("%PDF-1.4\nsome text\n")
    with pytest.raises(BadInputError, match="unknown prompt file type '.pdf'"):
        read_prompts(tmp_path / "notes.pdf")
    (tmp_path / "plain").write_text("a cat\n\na dog\n")  # no extension: text, one prompt per line
    assert [e.prompt for e in read_prompts(tmp_path / "plain")] == ["a cat", "a dog"]


def test_the_empty_prompt_of_an_unconditional_group_is_read(tmp_path):
    f = tmp_path / "p.jsonl"
    f.write_text('{"prompt": "a cat", "group": "novel"}\n{"prompt": "", "group": "unconditional"}\n')
    entries = read_prompts(f)
    assert [(e.prompt, e.group) for e in entries] == [("a cat", "novel"), ("", "unconditional")]
    f.write_text('{"prompt": "", "group": "novel"}\n')
    with pytest.raises(BadInputError, match="must have group 'unconditional'"):
        read_prompts(f)
