import json

from diffmem.studies.demo_settings import SETTINGS_FILE, settings_changed


def test_changed_settings_are_detected_for_a_fresh_start(tmp_path):
    s = {"model": "m", "n": 4, "guidance": 3.0}
    assert settings_changed(tmp_path, s) is None          # nothing made yet
    (tmp_path / "extract").mkdir()
    assert settings_changed(tmp_path, s) is None          # interrupted before any record: resume
    (tmp_path / "demo.json").write_text("{}")
    assert settings_changed(tmp_path, s) == "not recorded"  # a finished run of an older version
    (tmp_path / SETTINGS_FILE).write_text(json.dumps({"model": "m", "n": 2, "guidance": 3.0}))
    assert settings_changed(tmp_path, s) == "n 2 -> 4"
    (tmp_path / SETTINGS_FILE).write_text(json.dumps(s))
    assert settings_changed(tmp_path, s) is None


def test_a_model_that_cannot_be_loaded_fails_the_demo(tmp_path, capsys):
    """`diffmem demo --model nope` exited 0 with the model's stages "skipped" (reliability issue)."""
    from diffmem import cli

    assert cli.main(["demo", "--out", str(tmp_path / "d"), "--size", "tiny", "--model", str(tmp_path / "nope"),
                     "--quiet"]) == 1
    out = capsys.readouterr().out
    assert "EXTRACT  FAILED" in out.upper() and "could not be loaded" in out and "no such model" in out
