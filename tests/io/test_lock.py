"""One writer per output folder: a live holder refuses a second writer, a dead one's lock is taken over."""
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from diffmem.errors import BadInputError
from diffmem.io.lock import LOCK_NAME, LockedError, folder_lock, writes_folder

REPO = Path(__file__).resolve().parents[2]


def _plant(folder: Path, pid: int, command: str = "index build") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / LOCK_NAME
    path.write_text(json.dumps({"pid": pid, "host": socket.gethostname(), "command": command,
                                "since": "2026-12-05 10:00:00"}))
    return path


def test_a_live_holder_refuses_a_second_writer_and_says_who(tmp_path):
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        lock = _plant(tmp_path / "out", holder.pid)
        with pytest.raises(LockedError) as e:
            with folder_lock(tmp_path / "out", "audit"):
                pytest.fail("entered a folder another live process holds")
        msg = str(e.value)
        assert f"pid {holder.pid}" in msg and "index build" in msg and str(lock) in msg
        assert json.loads(lock.read_text())["pid"] == holder.pid  # the holder's lock is untouched
    finally:
        holder.kill()
        holder.wait()


def test_a_dead_holders_lock_is_taken_over_and_removed_after(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()  # its pid is no longer running
    lock = _plant(tmp_path / "out", dead.pid)
    with folder_lock(tmp_path / "out", "audit"):
        info = json.loads(lock.read_text())
        assert (info["pid"], info["command"]) == (os.getpid(), "audit")
    assert not lock.exists()


def test_reentrant_in_one_process_and_released_on_error(tmp_path):
    with folder_lock(tmp_path, "extract"):
        with folder_lock(tmp_path, "generate"):  # a study calling another on the same folder
            assert (tmp_path / LOCK_NAME).exists()
        assert (tmp_path / LOCK_NAME).exists()  # still held by the outer block
    assert not (tmp_path / LOCK_NAME).exists()
    with pytest.raises(RuntimeError):
        with folder_lock(tmp_path, "x"):
            raise RuntimeError("boom")
    assert not (tmp_path / LOCK_NAME).exists()


def test_a_file_given_as_output_folder_is_a_clear_error(tmp_path):
    (tmp_path / "notes.pdf").write_text("x")
    with pytest.raises(BadInputError, match="not a folder"):
        with folder_lock(tmp_path / "notes.pdf", "x"):
            pass


def test_decorated_functions_lock_their_out_argument(tmp_path):
    seen = []

    @writes_folder("thing")
    def run(data, out, *, n=1):
        seen.append(json.loads((Path(out) / LOCK_NAME).read_text())["command"])
        return n

    assert run(1, tmp_path / "o", n=3) == 3 and seen == ["thing"]
    assert run.__name__ == "run" and "out" in str(__import__("inspect").signature(run))


@pytest.mark.slow
def test_two_index_builds_into_one_folder_one_fails_nothing_lost(tmp_path):
    """The race of the reliability issue: two `diffmem index build` runs with different inputs into one
    folder. Before, both exited 0 and the last writer's items replaced the first's."""
    from diffmem.world import make_world

    make_world(tmp_path / "w", seed=0, size="tiny")
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    for i, p in enumerate(sorted((tmp_path / "w" / "videos").glob("*.mp4"))):
        os.link(p, (a if i % 2 else b) / p.name)
    out = tmp_path / "index"
    cli = "import sys; from diffmem.cli import main; sys.exit(main(sys.argv[1:]))"
    # the first run's descriptor is slowed down (0.5 s per batch of one item) so that it still holds the
    # folder when the second run (a plain CLI process) reaches it
    slow = ("import time; from diffmem.features.builtin import BuiltinDescriptor as B; enc = B.encode\n"
            "B.encode = lambda self, *a, **k: (time.sleep(0.5), enc(self, *a, **k))[1]\n")
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    first = subprocess.Popen([sys.executable, "-c", slow + cli, "index", "build", str(a), "--out", str(out),
                              "--batch-size", "8"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True)
    cmd = [sys.executable, "-c", cli, "index", "build"]
    t0 = time.time()
    while not (out / LOCK_NAME).exists() and first.poll() is None and time.time() - t0 < 120:
        time.sleep(0.05)
    second = subprocess.run(cmd + [str(b), "--out", str(out)], env=env, capture_output=True, text=True)
    so, se = first.communicate(timeout=600)
    assert first.returncode == 0, se
    assert second.returncode == 1 and "is writing here" in second.stderr, second.stderr
    assert "Traceback" not in second.stderr
    from diffmem.index import VectorIndex

    held = set(VectorIndex.open(out).metadata["item_id"])
    assert held == {p.stem for p in a.glob("*.mp4")}  # the first run's items, all of them
    assert not (out / LOCK_NAME).exists()
