"""Manifests: folder / CSV / TSV / JSONL / Parquet sources; one loader; bad rows skipped."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pandas as pd
import pytest

from diffmem.data.manifest import (MAX_CAPTION_CHARS, Item, clean_caption, load_manifest,
                                   write_manifest)
from diffmem.errors import BadInputError


def touch(path: Path, data: bytes = b"media") -> Path:
    """Manifests only check that files exist and are not empty; no decoding is needed."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def reasons(m) -> dict[str, str]:
    return {s.id or s.path: s.reason for s in m.skipped}


# ------------------------------------------------------------------ folders

def test_folder_source(tmp_path):
    root = tmp_path / "set"
    touch(root / "a.mp4")
    touch(root / "sub" / "b.PNG")
    (root / "sub" / "b.txt").write_text("a red\tcar\n", encoding="utf-8")
    touch(root / "sub" / "deeper" / "c.webm")
    touch(root / ".hidden" / "x.mp4")
    touch(root / ".y.mp4")
    (root / "notes.md").write_text("not media")
    touch(root / "empty.gif", b"")
    touch(root / "d.mp4")
    touch(root / "d.jpg")  # same stem as d.mp4: both are kept, their ids keep the extension (and a warning)
    with pytest.warns(UserWarning, match="keep the extension"):
        m = load_manifest(root)
    assert m.root == root.resolve()
    assert [(i.id, i.kind, i.caption) for i in m.items] == [
        ("a", "video", ""), ("d.jpg", "image", ""), ("d.mp4", "video", ""), ("sub/b", "image", "a red car"),
        ("sub/deeper/c", "video", "")]
    assert all(i.path.is_absolute() and i.path.is_file() for i in m.items)
    assert m.items[3].path == (root / "sub" / "b.PNG").resolve()
    r = reasons(m)
    assert set(r) == {"empty"} and "empty" in r["empty"]
    assert m.items[1].path.name == "d.jpg"
    with pytest.warns(UserWarning):
        assert [i.id for i in load_manifest(root, kind="image").items] == ["d.jpg", "sub/b"]


# ------------------------------------------------------------------ table formats

ROWS = [
    {"id": "v1", "path": "clips/one.mp4", "caption": "a dog runs"},
    {"id": "i1", "path": "imgs/two.jpg", "caption": "a cat"},
    {"id": "", "path": "clips/three.webm", "caption": ""},
]


def _layout(base: Path) -> None:
    for r in ROWS:
        touch(base / r["path"])


def _write(path: Path, rows: list[dict]) -> Path:
    df = pd.DataFrame(rows)
    if path.suffix == ".csv":
        df.to_csv(path, index=False)
    elif path.suffix == ".tsv":
        df.to_csv(path, index=False, sep="\t")
    elif path.suffix == ".jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    else:
        df.to_parquet(path, index=False)
    return path


@pytest.mark.parametrize("ext", [".csv", ".tsv", ".jsonl", ".parquet"])
def test_table_formats_load_the_same(tmp_path, ext, monkeypatch):
    base = tmp_path / "data"
    _layout(base)
    src = _write(base / f"train{ext}", ROWS)
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")  # relative paths follow the manifest, not the cwd
    m = load_manifest(src)
    assert m.skipped == []
    assert m.root == base.resolve() and m.source == src.resolve()
    assert [i.id for i in m.items] == ["v1", "i1", "clips/three"]  # missing id: from the path
    assert [i.kind for i in m.items] == ["video", "image", "video"]
    assert [i.caption for i in m.items] == ["a dog runs", "a cat", ""]
    assert [i.path for i in m.items] == [(base / r["path"]).resolve() for r in ROWS]


def test_optional_columns_and_kind_column(tmp_path):
    touch(tmp_path / "x.bin")
    touch(tmp_path / "y.bin")
    touch(tmp_path / "z.mp4")
    src = _write(tmp_path / "m.csv", [
        {"path": "x.bin", "kind": "image"},
        {"path": "y.bin", "kind": ""},        # no kind and an unknown extension
        {"path": "z.mp4", "kind": "Picture"},  # not a kind
    ])
    m = load_manifest(src)
    assert [(i.id, i.kind, i.caption) for i in m.items] == [("x", "image", "")]
    r = reasons(m)
    assert "unknown media type '.bin'" in r["y"]
    assert "kind must be 'video' or 'image'" in r["z"]


def test_path_only_csv(tmp_path):
    touch(tmp_path / "a" / "b.mp4")
    (tmp_path / "m.csv").write_text("PATH\na/b.mp4\n\n")  # header case, blank line
    m = load_manifest(tmp_path / "m.csv")
    assert [(i.id, i.caption) for i in m.items] == [("a/b", "")]


# ------------------------------------------------------------------ bad rows

def test_bad_rows_are_skipped_with_reasons(tmp_path):
    base = tmp_path / "deep" / "set"
    touch(base / "ok.mp4")
    touch(base / "ok2.mp4")
    touch(base / "empty.mp4", b"")
    (base / "adir.mp4").mkdir()
    outside = touch(tmp_path / "outside.mp4")
    rows = [
        {"id": "ok", "path": "ok.mp4", "caption": "fine"},
        {"id": "gone", "path": "missing.mp4", "caption": ""},
        {"id": "climb", "path": "../../etc/passwd", "caption": ""},
        {"id": "abs_out", "path": str(outside), "caption": ""},
        {"id": "etc", "path": "/etc/passwd", "caption": ""},
        {"id": "abs_in", "path": str(base / "ok2.mp4"), "caption": ""},
        {"id": "ok", "path": "ok2.mp4", "caption": "same id again"},
        {"id": "blank", "path": "", "caption": ""},
        {"id": "spaces", "path": "   ", "caption": ""},
        {"id": "empty", "path": "empty.mp4", "caption": ""},
        {"id": "dir", "path": "adir.mp4", "caption": ""},
        {"id": "sneaky/../../x", "path": "ok.mp4", "caption": ""},
        {"id": "dup_path", "path": "./sub/../ok.mp4", "caption": "same file, other id"},
    ]
    for ext in (".csv", ".jsonl", ".parquet"):
        m = load_manifest(_write(base / f"m{ext}", rows))
        assert [i.id for i in m.items] == ["ok", "abs_in", "dup_path"], ext
        assert m.items[2].path == (base / "ok.mp4").resolve()
        r = reasons(m)
        assert set(r) == {"gone", "climb", "abs_out", "etc", "ok", "blank", "spaces", "empty",
                          "dir", "sneaky/../../x"}, ext
        assert r["gone"].startswith("file not found")
        for k in ("climb", "abs_out", "etc"):
            assert r[k].startswith("path escapes the manifest folder")
        assert "duplicate id 'ok'" in r["ok"]
        assert r["blank"].startswith("empty path") and r["spaces"].startswith("empty path")
        assert "empty" in r["empty"] and "directory" in r["dir"]
        assert "row" in r["gone"] or "line" in r["gone"]  # says where
    # with check_files=False, the missing file is kept (the escaping one still is not)
    m = load_manifest(base / "m.csv", check_files=False)
    assert "gone" in [i.id for i in m.items] and "climb" not in [i.id for i in m.items]
    # an explicit root widens where paths may point
    m = load_manifest(base / "m.csv", root=tmp_path)
    assert "abs_out" in [i.id for i in m.items] and "etc" not in [i.id for i in m.items]


def test_odd_captions_are_normalised(tmp_path):
    touch(tmp_path / "a.mp4")
    touch(tmp_path / "b.mp4")
    touch(tmp_path / "c.mp4")
    touch(tmp_path / "d.mp4")
    long = "x" * (MAX_CAPTION_CHARS * 3)
    rows = [
        {"id": "a", "path": "a.mp4", "caption": "line1\nline2\x07\x1b[31m end\x7f"},
        {"id": "b", "path": "b.mp4", "caption": "<script>alert('x')</script> & \"q\""},
        {"id": "c", "path": "c.mp4", "caption": long},
        {"id": "d", "path": "d.mp4", "caption": "cafe\u0301 \u732b \U0001F431"},
    ]
    for ext in (".jsonl", ".parquet", ".csv"):
        m = load_manifest(_write(tmp_path / f"m{ext}", rows))
        caps = {i.id: i.caption for i in m.items}
        assert caps["a"] == "line1 line2[31m end"
        assert caps["b"] == "<script>alert('x')</script> & \"q\""  # kept verbatim: HTML escapes
        assert caps["c"] == "x" * MAX_CAPTION_CHARS
        assert caps["d"] == "caf\u00e9 \u732b \U0001F431"  # NFC, unicode kept


def test_csv_with_nul_and_non_utf8_bytes(tmp_path):
    touch(tmp_path / "a.mp4")
    touch(tmp_path / "b.mp4")
    raw = (b"id,path,caption\n"
           b"a,a.mp4,caf\xe9 au lait\n"          # latin-1 byte, not UTF-8
           b"b,b.mp4,nul\x00inside\n")
    (tmp_path / "m.csv").write_bytes(raw)
    m = load_manifest(tmp_path / "m.csv")
    caps = {i.id: i.caption for i in m.items}
    assert caps == {"a": "caf\ufffd au lait", "b": "nulinside"}


def test_huge_csv_field_does_not_abort_the_file(tmp_path):
    touch(tmp_path / "a.mp4")
    touch(tmp_path / "b.mp4")
    (tmp_path / "m.csv").write_text(f"id,path,caption\na,a.mp4,{'y' * 300_000}\nb,b.mp4,ok\n")
    m = load_manifest(tmp_path / "m.csv")
    assert [(i.id, len(i.caption)) for i in m.items] == [("a", MAX_CAPTION_CHARS), ("b", 2)]


def test_jsonl_bad_lines(tmp_path):
    touch(tmp_path / "a.mp4")
    (tmp_path / "m.jsonl").write_text('{"path": "a.mp4"}\n{not json\n[1, 2]\n\n{"path": 5}\n')
    m = load_manifest(tmp_path / "m.jsonl")
    assert [i.id for i in m.items] == ["a"]
    assert [s.reason for s in m.skipped] == ["not valid JSON (line 2)", "not a JSON object (line 3)",
                                             "unknown media type '(no extension)'; add a 'kind' "
                                             "column (line 5)"]


def test_clean_caption_by_hand():
    assert clean_caption(None) == "" and clean_caption(float("nan")) == ""
    assert clean_caption("  a\r\nb  ") == "a  b"
    assert clean_caption(b"\xff ok") == "\ufffd ok"
    assert clean_caption("\ud800x") == "\ufffdx"  # a lone surrogate (JSON escape) becomes U+FFFD
    assert clean_caption("abc", max_chars=2) == "ab"
    # plain ASCII takes a short way (most captions); the same results as character by character
    assert clean_caption("  ab c  ", max_chars=3) == "ab" and clean_caption(" A cat, 4K! ") == "A cat, 4K!"
    assert clean_caption("x\x7fy\x00z") == "xyz" and clean_caption("caf\u0065\u0301") == "caf\u00e9"


# ------------------------------------------------------------------ bad manifests

def test_bad_manifest_files(tmp_path):
    with pytest.raises(BadInputError, match="manifest not found"):
        load_manifest(tmp_path / "nope.csv")
    (tmp_path / "cols.csv").write_text("file,caption\na.mp4,x\n")
    with pytest.raises(BadInputError, match="no 'path' column") as e:
        load_manifest(tmp_path / "cols.csv")
    assert "cols.csv" in str(e.value)
    pd.DataFrame({"file": ["a.mp4"]}).to_parquet(tmp_path / "cols.parquet")
    with pytest.raises(BadInputError, match="no 'path' column"):
        load_manifest(tmp_path / "cols.parquet")
    (tmp_path / "cols.jsonl").write_text('{"file": "a.mp4"}\n')
    with pytest.raises(BadInputError, match="no 'path' field"):
        load_manifest(tmp_path / "cols.jsonl")
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(BadInputError, match="no header"):
        load_manifest(tmp_path / "empty.csv")
    (tmp_path / "junk.parquet").write_text("not parquet at all")
    with pytest.raises(BadInputError, match="not a readable Parquet"):
        load_manifest(tmp_path / "junk.parquet")
    (tmp_path / "m.txt").write_text("path\n")
    with pytest.raises(BadInputError, match="unknown manifest format"):
        load_manifest(tmp_path / "m.txt")
    with pytest.raises(ValueError):
        load_manifest(tmp_path, kind="audio")


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root reads everything")
def test_unreadable_manifest(tmp_path):
    p = tmp_path / "m.csv"
    p.write_text("path\n")
    p.chmod(0)
    with pytest.raises(BadInputError, match="not readable"):
        load_manifest(p)


# ------------------------------------------------------------------ writing

@pytest.mark.parametrize("ext", [".csv", ".tsv", ".jsonl", ".parquet"])
def test_write_manifest_round_trip(tmp_path, ext):
    touch(tmp_path / "v" / "a.mp4")
    touch(tmp_path / "i" / "b.png")
    items = [Item("a", (tmp_path / "v" / "a.mp4").resolve(), "comma, \"quote\"\nnewline", "video"),
             Item("b", (tmp_path / "i" / "b.png").resolve(), "", "image")]
    out = write_manifest(items, tmp_path / f"train{ext}")
    text = out.read_bytes()
    assert str(tmp_path).encode() not in text  # paths inside the folder are written relative
    m = load_manifest(out)
    assert m.skipped == []
    assert [(i.id, i.path, i.kind) for i in m.items] == [(i.id, i.path, i.kind) for i in items]
    assert m.items[0].caption == 'comma, "quote" newline'  # the line break is normalised on load
    # an empty set still writes a loadable manifest
    assert load_manifest(write_manifest([], tmp_path / f"none{ext}")).items == []


def test_folder_ids_that_would_collide_keep_their_extension_and_odd_entries_are_reported(tmp_path):
    """clip.mp4, clip.png and clip.gif in one folder were 1 item and 2 "duplicate id" skips; a folder
    named like a video was not reported; a symbolic link loop was "file not found"."""
    import warnings

    import numpy as np

    from diffmem.io.image import write_image
    from diffmem.io.video import write_video

    frames = np.zeros((4, 16, 16, 3), np.uint8)
    write_video(tmp_path / "clip.mp4", frames, fps=4)
    write_video(tmp_path / "clip.gif", frames, fps=4)
    write_image(tmp_path / "clip.png", frames[0])
    write_image(tmp_path / "other.png", frames[0])
    (tmp_path / "folder.mp4").mkdir()
    os.symlink(tmp_path / "loop2.mp4", tmp_path / "loop1.mp4")
    os.symlink(tmp_path / "loop1.mp4", tmp_path / "loop2.mp4")
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        m = load_manifest(tmp_path)
    assert sorted(it.id for it in m.items) == ["clip.gif", "clip.mp4", "clip.png", "other"]
    assert any("keep the extension" in str(x.message) for x in w)
    reasons = {s.path: s.reason for s in m.skipped}
    assert reasons["folder.mp4"] == "is a directory, not a media file"
    assert reasons["loop1.mp4"].startswith("symbolic link loop") and reasons["loop2.mp4"].startswith("symbolic link loop")


def test_every_skipped_file_keeps_its_own_record_in_the_index(tmp_path):
    from diffmem.index import VectorIndex

    idx = VectorIndex.create(tmp_path / "I", dim=2, policy={"name": "t"})
    idx.add_skipped({"id": "clip", "path": "a/clip.mp4", "reason": "broken"})
    idx.add_skipped({"id": "clip", "path": "b/clip.mp4", "reason": "empty"})
    idx.add_skipped({"id": "clip", "path": "a/clip.mp4", "reason": "broken again"})  # same file: replaced
    assert [(s["path"], s["reason"]) for s in idx.skipped] == [("b/clip.mp4", "empty"), ("a/clip.mp4", "broken again")]


def test_a_folder_holding_train_parquet_means_that_manifest(tmp_path):
    """`index build WORLD` and `prompts WORLD` scanned the media and lost the captions, while
    `generate --index WORLD` read WORLD/train.parquet: every command now reads the manifest."""
    from diffmem.data.manifest import load_manifest, manifest_file
    from diffmem.world import make_world

    make_world(tmp_path / "w", seed=0, size="tiny")
    assert manifest_file(tmp_path / "w") == tmp_path / "w" / "train.parquet"
    a, b = load_manifest(tmp_path / "w"), load_manifest(tmp_path / "w" / "train.parquet")
    assert [(i.id, i.caption, i.kind) for i in a.items] == [(i.id, i.caption, i.kind) for i in b.items]
    assert all(i.caption for i in a.items) and manifest_file(tmp_path) == tmp_path  # a plain folder is itself


# ------------------------------------------------------------------ column maps, templates and presets
# (the field's layouts: a WebVid CSV has no path column and its captions are in `name`; img2dataset's LAION
# parquet names images by key in shard folders; both were refused or loaded with empty captions silently)

import warnings  # noqa: E402

from diffmem.data.manifest import PRESETS, ColumnMap, ManifestWarning, column_map, load_captions  # noqa: E402

WEBVID = [  # columns of WebVid-10M's results_*.csv
    {"videoid": "1066697575", "name": "Aerial shot of a winter forest", "page_dir": "006001_006050",
     "duration": "PT00H00M11S", "contentUrl": "https://ak.picdn.net/1066697575/preview.mp4"},
    {"videoid": "21179416", "name": "Boat on a calm lake, sunset", "page_dir": "1000_1050",
     "duration": "PT00H00M20S", "contentUrl": "https://ak.picdn.net/21179416/preview.mp4"},
]


def _webvid(tmp_path: Path, rows=WEBVID) -> tuple[Path, Path]:
    (tmp_path / "meta").mkdir(exist_ok=True)
    csv_path = _write(tmp_path / "meta" / "results_2M_val.csv", rows)
    for r in rows:
        if r.get("page_dir") and r.get("videoid"):
            touch(tmp_path / "data" / r["page_dir"] / f"{r['videoid']}.mp4")
    return csv_path, tmp_path / "data"


def test_webvid_csv_is_refused_without_its_layout_and_loads_with_the_preset(tmp_path):
    src, data = _webvid(tmp_path)
    with pytest.raises(BadInputError, match="no 'path' column .*use the 'webvid' preset") as e:
        load_manifest(src, root=data)
    assert "results_2M_val.csv" in str(e.value) and "videoid, name, page_dir" in str(e.value)
    for columns in ("webvid", PRESETS["webvid"], column_map("webvid")):
        m = load_manifest(src, root=data, columns=columns)
        assert m.skipped == []
        assert [(i.id, i.caption, i.kind) for i in m.items] == [
            ("1066697575", "Aerial shot of a winter forest", "video"), ("21179416", "Boat on a calm lake, sunset", "video")]
        assert m.items[0].path == (data / "006001_006050" / "1066697575.mp4").resolve()


def test_a_table_without_its_caption_column_says_so_once(tmp_path):
    """A user added a path column to the WebVid CSV: the captions (in `name`) were empty, silently."""
    src, data = _webvid(tmp_path)
    rows = [{**r, "path": f"{r['page_dir']}/{r['videoid']}.mp4"} for r in WEBVID]
    src = _write(tmp_path / "meta" / "with_path.csv", rows)
    with pytest.warns(ManifestWarning, match="with_path.csv: no 'caption' column .*videoid, name, page_dir"):
        m = load_manifest(src, root=data)
    assert [i.caption for i in m.items] == ["", ""]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # mapped: no warning, and the captions are there
        m = load_manifest(src, root=data, columns=column_map(caption="name"))
        assert [i.caption for i in m.items] == [r["name"] for r in WEBVID]
        touch(tmp_path / "only" / "a.mp4")
        (tmp_path / "only" / "m.csv").write_text("path,kind\na.mp4,video\n")  # a plain list of media: no warning
        assert len(load_manifest(tmp_path / "only" / "m.csv").items) == 1
    with pytest.raises(BadInputError, match="no 'title' column for the captions"):
        load_manifest(src, root=data, columns=column_map(caption="title"))
    with pytest.raises(BadInputError, match="no 'uid' column for the ids"):
        load_manifest(src, root=data, columns=column_map(id="uid"))


def test_laion_parquet_in_img2dataset_layout(tmp_path):
    keys = ["000000012", "000000013", "000010000"]  # 5-digit shard + 4-digit index
    df = pd.DataFrame({"url": [f"https://x/{k}.jpg" for k in keys], "caption": ["a cat", "a dog", "a fox"],
                       "key": keys, "similarity": [0.31, 0.29, 0.33], "width": [256] * 3, "height": [256] * 3})
    src = tmp_path / "laion.parquet"
    df.to_parquet(src, index=False)
    for k in keys[:2]:
        touch(tmp_path / "imgs" / "00000" / f"{k}.jpg")
    touch(tmp_path / "imgs" / "00001" / "000010000.jpg")
    m = load_manifest(src, root=tmp_path / "imgs", columns="laion")
    assert m.skipped == []
    assert [(i.id, i.caption, i.kind, i.path.parent.name) for i in m.items] == [
        ("000000012", "a cat", "image", "00000"), ("000000013", "a dog", "image", "00000"),
        ("000010000", "a fox", "image", "00001")]
    # the same through an explicit template; the captions alone need no image
    m2 = load_manifest(src, root=tmp_path / "imgs", columns=column_map(id="key", template="{key:.5}/{key}.jpg"))
    assert [i.path for i in m2.items] == [i.path for i in m.items]
    assert [(i.id, i.caption) for i in load_captions(src, columns="laion")] == [
        ("000000012", "a cat"), ("000000013", "a dog"), ("000010000", "a fox")]


def test_explicit_columns_override_the_preset():
    cm = column_map("webvid", caption="alt", path="file")
    assert (cm.id, cm.caption, cm.path, cm.template) == ("videoid", "alt", "file", None)
    cm = column_map("laion", template="{Shard}/{KEY}.png")
    assert (cm.path, cm.fields) == (None, ("shard", "key"))
    assert column_map() == ColumnMap() == PRESETS["default"]
    for bad, why in [({"preset": "coco"}, "unknown manifest preset"), ({"path": "p", "template": "{a}"}, "not both"),
                     ({"template": "{0}.mp4"}, "must name a column"), ({"template": "{a.b}.mp4"}, "must name a column"),
                     ({"template": "{}.mp4"}, "must name a column"), ({"template": "all.mp4"}, "uses no column"),
                     ({"template": "{key:d}.jpg"}, "bad path template"), ({"template": "{key"}, "bad path template")]:
        with pytest.raises(ValueError, match=why):
            column_map(**bad)


def test_a_template_naming_a_missing_column_is_one_line_before_any_row(tmp_path):
    src, data = _webvid(tmp_path)
    for ext in (".csv", ".jsonl", ".parquet"):
        f = _write(tmp_path / "meta" / f"t{ext}", WEBVID)
        with pytest.raises(BadInputError) as e:
            load_manifest(f, root=data, columns=column_map("webvid", template="{part}/{videoid}.mp4"))
        msg = str(e.value)
        assert f"t{ext}" in msg and "uses column 'part'" in msg and "\n" not in msg


def test_template_values_cannot_escape_the_root(tmp_path):
    touch(tmp_path / "secret.mp4")
    touch(tmp_path / "data" / "ok" / "1.mp4")
    rows = [{"videoid": "1", "name": "fine", "page_dir": "ok"},
            {"videoid": "2", "name": "climbs", "page_dir": "../.."},
            {"videoid": "secret", "name": "climbs to a real file", "page_dir": ".."},
            {"videoid": "3", "name": "absolute", "page_dir": "/etc"},
            {"videoid": "../../x", "name": "id climbs", "page_dir": "ok"},
            {"videoid": "4", "name": "no folder", "page_dir": ""}]
    (tmp_path / "meta").mkdir()
    src = _write(tmp_path / "meta" / "w.csv", rows)
    m = load_manifest(src, root=tmp_path / "data", columns="webvid")
    assert [i.id for i in m.items] == ["1"]
    r = {s.id: s.reason for s in m.skipped}
    for vid in ("2", "secret", "3", "../../x"):
        assert "path escapes the manifest folder" in r[vid], r
    assert "no 'page_dir' value for the path template" in r["4"]


def test_a_preset_on_a_folder_is_refused(tmp_path):
    touch(tmp_path / "a.mp4")
    with pytest.raises(BadInputError, match="folder of media has no columns"):
        load_manifest(tmp_path, columns="webvid")
