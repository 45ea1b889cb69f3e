"""CPU by default, CUDA when asked for or when `auto` finds one."""
from __future__ import annotations

import os
import sys

import torch

from .errors import DiffmemError


def resolve_device(name: str | torch.device | None = "cpu") -> torch.device:
    if isinstance(name, torch.device):
        return name
    if name in (None, "", "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(name)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise DiffmemError(f"--device {name}: CUDA is not available on this machine")
    return dev


def set_threads(n: int | None) -> None:
    """CPU threads for torch, FAISS (OpenMP) and OpenCV; None leaves each library's own choice.

    One thread is the CLI's default for the tiny models and small frames diffmem works on: their kernels
    are small, and on a busy shared machine extra OpenMP / BLAS threads spin and wait (the test suite
    runs single-threaded for the same reason, see tests/conftest.py)."""
    if n is None:
        return
    n = int(n)
    if n < 1:
        raise DiffmemError(f"--threads must be >= 1, got {n}")
    global _threads
    _threads = n
    torch.set_num_threads(n)
    if "cv2" in sys.modules:
        sys.modules["cv2"].setNumThreads(n)
    else:  # read when OpenCV loads; importing it here cost every command 0.03 s, and `detect` never uses it
        os.environ["OPENCV_FOR_THREADS_NUM"] = str(n)
    if "faiss" in sys.modules:
        sys.modules["faiss"].omp_set_num_threads(n)


_threads: int | None = None  # what set_threads asked for, applied to FAISS when it is imported later


#: searches of at least this many queries use BLAS. FAISS 1.15's default (128 000) left the audit's searches
#: (a few hundred frames against the large world's 21 k) on its query-by-query kernel: 240 queries 0.37 s,
#: with BLAS 0.06 s, the same neighbours and scores (checked on 300 queries, k = 5)
BLAS_THRESHOLD = 20


def configure_faiss(faiss) -> None:
    """FAISS's process settings: the thread count `set_threads` set, and `BLAS_THRESHOLD`. Called where FAISS
    is imported (`index.faiss_index`), because importing it here cost every command 0.14 s, and `detect`,
    `generate` and `train` never search."""
    faiss.cvar.distance_compute_blas_threshold = BLAS_THRESHOLD
    if _threads is not None:
        faiss.omp_set_num_threads(_threads)
