"""`diffmem flow VIDEO --out FILE`."""
import json

import numpy as np
import pytest

from diffmem import cli
from diffmem.world.synthetic import camera_video
from diffmem.io.video import read_frames, write_video


@pytest.fixture()
def rightward(tmp_path):
    frames, _ = camera_video("translate", (2.0, 0.0), n_frames=6, size=(48, 64), seed=4)
    return write_video(tmp_path / "in.mp4", frames, fps=8.0)


@pytest.mark.parametrize("ext", [".gif", ".mp4"])
def test_writes_colour_coded_flow(rightward, tmp_path, capsys, ext):
    out = tmp_path / f"flow{ext}"
    assert cli.main(["flow", str(rightward), "--out", str(out), "--short-side", "96", "--flow-only"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["flows"] == 5 and summary["size"] == [96, 128]
    got = read_frames(out).array
    assert got.shape == (5, 96, 128, 3)
    # Rightward motion is red on the wheel: strong red, little green and blue (away from the borders).
    mid = got[:, 16:-16, 16:-16].reshape(-1, 3).astype(float).mean(0)
    assert mid[0] > 200 and mid[1] < 80 and mid[2] < 80


def test_side_by_side_is_twice_as_wide(rightward, tmp_path, capsys):
    out = tmp_path / "both.gif"
    assert cli.main(["flow", str(rightward), "--out", str(out), "--short-side", "0", "--flow", "farneback"]) == 0
    assert read_frames(out).array.shape == (5, 48, 128, 3)


def test_errors_name_the_file(tmp_path, capsys, rightward):
    assert cli.main(["flow", str(tmp_path / "missing.mp4"), "--out", str(tmp_path / "o.gif")]) == 1
    assert "missing.mp4" in capsys.readouterr().err
    assert cli.main(["flow", str(rightward), "--out", str(tmp_path / "o.png")]) == 1
    assert "o.png" in capsys.readouterr().err
    one = write_video(tmp_path / "one.gif", np.zeros((1, 8, 8, 3), np.uint8))
    assert cli.main(["flow", str(one), "--out", str(tmp_path / "o.gif")]) == 1
    assert "at least 2 frames" in capsys.readouterr().err
