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
