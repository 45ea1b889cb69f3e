"""Training sets in the field's formats, end to end through the CLI: a WebVid CSV with its videos in another
folder, a LAION parquet (captions only, and images in img2dataset's layout), Wen et al.'s prompt JSONL.
(The loader itself: tests/data/test_manifest.py.)"""
import json
import re
import shlex
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from diffmem import cli
from diffmem.io.image import write_image
from diffmem.io.video import write_video
from diffmem.world.clips import ClipSpec, render_clip

README = Path(__file__).resolve().parents[2] / "README.md"
README_HEADING = "### Training sets in the field's formats"

WEBVID = [  # WebVid-10M's CSV columns; the downloaded videos are {page_dir}/{videoid}.mp4
    ("1066697575", "Aerial shot, a cat runs across the grass", "006001_006050", ("cat", "grass", "linear", "right")),
    ("21179416", "Rocket circling over bricks", "1000_1050", ("rocket", "bricks", "circle", "cw")),
    ("1018465102", "Coin zooming in the stars", "006001_006050", ("coin", "stars", "zoom_in", "")),
]
LAION_KEYS = ["000000012", "000000013", "000010000"]  # img2dataset: 5-digit shard folder + 4-digit index
LAION_CAPTIONS = ["Starry Night by Van Gogh", "Starry Night by Van Gogh", "a fox in the snow"]
WEN = ["The Great Wave off Kanagawa"] * 3 + ["a red bicycle leaning on a wall", "portrait of an old fisherman"]


def make_sets(root: Path) -> Path:
    """meta/results_2M_val.csv + data/{page_dir}/{videoid}.mp4, samples/ (a generated copy and a new clip),
    laion.parquet + imgs/{shard}/{key}.jpg, sdv1_500_memorized.jsonl."""
    (root / "meta").mkdir(parents=True, exist_ok=True)
    clips = {}
    for vid, _, page_dir, spec in WEBVID:
        clips[vid] = render_clip(ClipSpec.make(*spec, size=32, n_frames=6))
        (root / "data" / page_dir).mkdir(parents=True, exist_ok=True)
        write_video(root / "data" / page_dir / f"{vid}.mp4", clips[vid], fps=4)
    pd.DataFrame([{"videoid": v, "name": n, "page_dir": p, "duration": "PT00H00M06S",
                   "contentUrl": f"https://ak.picdn.net/{v}/preview.mp4"} for v, n, p, _ in WEBVID]
                 ).to_csv(root / "meta" / "results_2M_val.csv", index=False)
    (root / "samples").mkdir(exist_ok=True)
    write_video(root / "samples" / "copy.mp4", clips["21179416"], fps=4)
    write_video(root / "samples" / "new.mp4", render_clip(ClipSpec.make("cat", "stars", "static", size=32, n_frames=6)),
                fps=4)
    pd.DataFrame({"url": [f"https://example.org/{k}.jpg" for k in LAION_KEYS], "caption": LAION_CAPTIONS,
                  "key": LAION_KEYS, "similarity": [0.31, 0.33, 0.29], "width": [32] * 3, "height": [32] * 3}
                 ).to_parquet(root / "laion.parquet", index=False)
    for k, (_, _, _, spec) in zip(LAION_KEYS, WEBVID):
        (root / "imgs" / k[:5]).mkdir(parents=True, exist_ok=True)
        write_image(root / "imgs" / k[:5] / f"{k}.jpg", render_clip(ClipSpec.make(*spec, size=32, n_frames=1))[0])
    (root / "sdv1_500_memorized.jsonl").write_text("".join(
        json.dumps({"caption": c, "index": i, "url": f"https://example.org/{i}.jpg"}) + "\n" for i, c in enumerate(WEN)))
    return root


@pytest.fixture(scope="module")
def sets(tmp_path_factory):
    return make_sets(tmp_path_factory.mktemp("field-formats"))


def _index_items(folder: Path) -> dict[str, str]:
    from diffmem.index import VectorIndex

    meta = VectorIndex.open(folder).metadata
    return dict(zip(meta["item_id"].astype(str), meta["caption"].astype(str)))


def test_webvid_csv_with_videos_elsewhere(sets, tmp_path, capsys):
    csv_path = str(sets / "meta" / "results_2M_val.csv")
    # as reported: no path column (a one-line error that names the preset to use)
    assert cli.main(["index", "build", csv_path, "--root", str(sets / "data"), "--out", str(tmp_path / "x")]) == 1
    err = capsys.readouterr().err
    assert "no 'path' column" in err and "--preset webvid" in err and len(err.strip().splitlines()) == 1
    idx = tmp_path / "webvid_index"
    assert cli.main(["index", "build", csv_path, "--preset", "webvid", "--root", str(sets / "data"),
                     "--out", str(idx), "--fps", "4"]) == 0
    assert "of 3 items" in capsys.readouterr().out
    assert _index_items(idx) == {v: n for v, n, _, _ in WEBVID}  # every video, its caption from `name`
    assert cli.main(["audit", str(sets / "samples"), str(idx), "--out", str(tmp_path / "audit"), "--no-motion",
                     "--no-report"]) == 0
    items = {it["id"]: it for it in json.loads((tmp_path / "audit" / "audit.json").read_text())["items"]}
    assert items["copy"]["verdict"] == "content" and items["copy"]["content_match"]["train_id"] == "21179416"
    # the column options are for a training manifest: an index is refused, not silently re-read
    assert cli.main(["audit", str(sets / "samples"), str(idx), "--out", str(tmp_path / "a2"), "--preset", "webvid"]) == 1
    assert "content index" in capsys.readouterr().err


def test_audit_indexes_a_webvid_csv_itself(sets, tmp_path, capsys):
    assert cli.main(["audit", str(sets / "samples"), str(sets / "meta" / "results_2M_val.csv"), "--preset", "webvid",
                     "--root", str(sets / "data"), "--out", str(tmp_path / "a"), "--no-motion", "--no-report"]) == 1
    # --root is also GENERATED's root, and a folder is its own: give the generated items as a manifest there
    assert "a folder is its own root" in capsys.readouterr().err
    pd.DataFrame({"path": [f"samples/{n}" for n in ("copy.mp4", "new.mp4")]}).to_csv(sets / "gen.csv", index=False)
    assert cli.main(["audit", str(sets / "gen.csv"), str(sets / "meta" / "results_2M_val.csv"),
                     "--preset", "webvid", "--root", str(sets), "--path-template", "data/{page_dir}/{videoid}.mp4",
                     "--out", str(tmp_path / "b"), "--no-motion", "--no-report"]) == 0
    items = {it["id"]: it for it in json.loads((tmp_path / "b" / "audit.json").read_text())["items"]}
    assert items["samples/copy"]["content_match"]["train_id"] == "21179416"


def test_webvid_captions_without_any_video(sets, tmp_path, capsys):
    out = tmp_path / "p.jsonl"
    with pytest.warns(UserWarning, match="curating from the captions only"):
        rc = cli.main(["prompts", str(sets / "meta" / "results_2M_val.csv"), "--preset", "webvid",
                       "--root", str(tmp_path), "--out", str(out)])  # no video under this root
    assert rc == 0, capsys.readouterr().err
    s = json.loads((tmp_path / "p.summary.json").read_text())
    assert s["n_items"] == 3 and s["config"]["content"] is False
    # without the preset the captions (in `name`) would be missed: refused, naming the columns
    (tmp_path / "named.csv").write_text("videoid,name\n1,a cat\n2,a cat\n")
    assert cli.main(["prompts", str(tmp_path / "named.csv"), "--out", str(tmp_path / "q.jsonl")]) == 1
    err = capsys.readouterr().err
    assert "named.csv" in err and "no text column" in err and "videoid" in err
    assert cli.main(["prompts", str(tmp_path / "named.csv"), "--caption-column", "name", "--id-column", "videoid",
                     "--out", str(tmp_path / "q.jsonl")]) == 0
    from diffmem.data.prompts import read_prompts

    got = read_prompts(tmp_path / "q.jsonl")
    assert [e.prompt for e in got] == ["a cat"] and got[0].evidence["caption_ids"] == ["1", "2"]
    # a path column but the captions in `name`: the loader warns (naming the file and columns), curation refuses
    pd.DataFrame({"path": [f"data/{p}/{v}.mp4" for v, _, p, _ in WEBVID], "name": [n for _, n, _, _ in WEBVID]}
                 ).to_csv(sets / "with_path.csv", index=False)
    with pytest.warns(UserWarning, match=r"with_path.csv: no 'caption' column \(columns: path, name\)"):
        assert cli.main(["prompts", str(sets / "with_path.csv"), "--no-content", "--out", str(tmp_path / "r.jsonl")]) == 1
    assert "every caption is empty" in capsys.readouterr().err
    assert cli.main(["prompts", str(sets / "with_path.csv"), "--no-content", "--caption-column", "name",
                     "--out", str(tmp_path / "r.jsonl")]) == 0


def test_laion_parquet_captions_then_img2dataset_images(sets, tmp_path, capsys):
    from diffmem.data.prompts import read_prompts

    for extra in ([], ["--preset", "laion"]):  # no image needed, with or without the preset
        out = tmp_path / f"laion{len(extra)}.jsonl"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # with the preset: "curating from the captions only" (no image here)
            assert cli.main(["prompts", str(sets / "laion.parquet"), *extra, "--out", str(out)]) == 0, \
                capsys.readouterr().err
        got = read_prompts(out)
        assert got[0].prompt == "Starry Night by Van Gogh" and got[0].evidence["n_caption"] == 2
    assert set(read_prompts(tmp_path / "laion2.jsonl")[0].evidence["caption_ids"]) == set(LAION_KEYS[:2])
    idx = tmp_path / "laion_index"
    assert cli.main(["index", "build", str(sets / "laion.parquet"), "--preset", "laion", "--root", str(sets / "imgs"),
                     "--out", str(idx)]) == 0
    assert "of 3 items" in capsys.readouterr().out
    assert _index_items(idx) == dict(zip(LAION_KEYS, LAION_CAPTIONS))


def test_wen_prompt_jsonl_through_prompts_and_detect(sets, tmp_path, capsys):
    from diffmem.data.prompts import read_prompts

    jsonl = str(sets / "sdv1_500_memorized.jsonl")
    assert cli.main(["prompts", jsonl, "--out", str(tmp_path / "curated.jsonl")]) == 0
    got = read_prompts(tmp_path / "curated.jsonl")
    assert [e.prompt for e in got] == ["The Great Wave off Kanagawa"] and got[0].evidence["caption_ids"] == ["0", "1", "2"]
    entries = read_prompts(jsonl)  # every line of Wen et al.'s list is memorized
    assert [e.id for e in entries] == ["0", "1", "2", "3", "4"] and all(e.label is True for e in entries)
    capsys.readouterr()
    assert cli.main(["detect", "builtin:tiny-t2i", "--prompts", jsonl, "--out", str(tmp_path / "det"),
                     "--seeds", "1"]) == 0
    assert "5 prompts" in capsys.readouterr().out
    det = pd.read_parquet(tmp_path / "det" / "detect.parquet")
    assert len(det) == 5 and np.isfinite(det.select_dtypes("number").to_numpy(dtype=float)).all()


def test_the_preset_choices_are_the_librarys():
    from diffmem.cli.options import MANIFEST_PRESETS
    from diffmem.data.manifest import PRESETS

    assert set(MANIFEST_PRESETS) == set(PRESETS)


def test_bad_column_options_are_one_line_errors(sets, tmp_path, capsys):
    csv_path = str(sets / "meta" / "results_2M_val.csv")
    for extra, why in [(["--path-column", "p", "--path-template", "{videoid}.mp4"], "not both"),
                       (["--path-template", "{videoid.x}.mp4"], "must name a column"),
                       (["--preset", "webvid", "--path-template", "{part}/{videoid}.mp4"], "uses column 'part'"),
                       (["--preset", "webvid", "--caption-column", "title"], "no 'title' column")]:
        assert cli.main(["index", "build", csv_path, *extra, "--out", str(tmp_path / "i")]) == 1
        err = capsys.readouterr().err
        assert why in err and len(err.strip().splitlines()) == 1, err
    with pytest.raises(SystemExit):
        cli.main(["index", "build", csv_path, "--preset", "coco", "--out", str(tmp_path / "i")])
    assert "invalid choice: 'coco'" in capsys.readouterr().err


# ------------------------------------------------------------------ the README's examples, as written there

def readme_commands(text: str) -> list[list[str]] | None:
    """The `diffmem` command lines of the first fenced code block after README_HEADING (None: no heading)."""
    at = text.find(README_HEADING + "\n")
    if at < 0:
        return None
    block = re.search(r"^```[^\n]*\n(.*?)^```", text[at:], flags=re.S | re.M)
    assert block, f"README.md: no fenced code block after {README_HEADING!r}"
    lines = block.group(1).replace("\\\n", " ").splitlines()
    cmds = [shlex.split(ln, comments=True) for ln in lines]
    cmds = [c for c in cmds if c and c[0] == "diffmem"]
    assert cmds, f"README.md: the block after {README_HEADING!r} has no diffmem command"
    return cmds


def run_readme_commands(cmds: list[list[str]], folder: Path, monkeypatch) -> None:
    make_sets(folder)
    monkeypatch.chdir(folder)
    for c in cmds:
        assert cli.main(c[1:]) == 0, f"README command failed: {shlex.join(c)}"


def test_the_readme_examples_run_as_written(tmp_path, monkeypatch):
    cmds = readme_commands(README.read_text(encoding="utf-8"))
    assert cmds is not None, f"README.md has no {README_HEADING!r} section"
    run_readme_commands(cmds, tmp_path, monkeypatch)
