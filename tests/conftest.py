"""Suite-wide settings.

Torch and FAISS run single-threaded in tests: the suite's batches are tiny, and on a 2-core machine two
intra-op threads mostly wait on each other (measured 40x slower for small descriptor batches under load,
and FAISS PQ training 30 s with two OpenMP threads against under 1 s with one).
"""
import subprocess
import sys

import pytest


@pytest.fixture(autouse=True, scope="session")
def _one_thread():
    import faiss
    import torch

    n_torch, n_faiss = torch.get_num_threads(), faiss.omp_get_max_threads()
    torch.set_num_threads(1)
    faiss.omp_set_num_threads(1)
    yield
    torch.set_num_threads(n_torch)
    faiss.omp_set_num_threads(n_faiss)


@pytest.fixture(autouse=True)
def _shards_by_size_only(monkeypatch):
    """Indexes commit a shard every COMMIT_SECONDS too (kill safety); tests that compare shard layouts
    between engines or runs need them cut by size alone, whatever the machine's load. The kill test sets
    its own interval in the process it kills."""
    from diffmem.index.faiss_index import VectorIndex

    monkeypatch.setattr(VectorIndex, "COMMIT_SECONDS", float("inf"))


@pytest.fixture
def fresh_python():
    """Run Python code in a new interpreter (nothing imported yet) and return what it printed: for the
    checks of what a command or module imports, and of settings made before an import."""
    def run(code: str) -> str:
        return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout

    return run
