import pytest
import torch

from diffmem.device import resolve_device
from diffmem.errors import BadInputError, DiffmemError


def test_cpu_and_auto():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type in ("cpu", "cuda")


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_requested_without_cuda_is_a_clear_error():
    with pytest.raises(DiffmemError, match="CUDA is not available"):
        resolve_device("cuda")


def test_bad_input_error_names_file_and_reason():
    e = BadInputError("/data/clip.mp4", "zero-byte file")
    assert str(e) == "/data/clip.mp4: zero-byte file"
    assert isinstance(e, DiffmemError)


def test_threads_set_before_faiss_is_imported_reach_faiss_when_it_is(fresh_python):
    """`diffmem detect` never imports FAISS (0.14 s of its start-up); a command that does still gets
    --threads. A fresh process, so that FAISS is not imported yet; n is never the machine's default."""
    import os

    n = (os.cpu_count() or 1) + 1
    code = (f"import sys; from diffmem.device import set_threads; set_threads({n}); "
            "assert 'faiss' not in sys.modules; import diffmem.index.faiss_index, faiss; "
            "print(faiss.omp_get_max_threads())")
    assert fresh_python(code).split() == [str(n)]


def test_threads_reach_opencv_whether_it_is_imported_before_or_after(fresh_python):
    """OpenCV is imported only where frames are read or flow is computed (0.03 s of every other command's
    start-up); --threads reaches it either way. n is never the machine's default."""
    import os

    n = (os.cpu_count() or 1) + 1
    after = (f"import sys; from diffmem.device import set_threads; set_threads({n}); "
             "assert 'cv2' not in sys.modules; import cv2; print(cv2.getNumThreads())")
    before = f"import cv2; from diffmem.device import set_threads; set_threads({n}); print(cv2.getNumThreads())"
    assert fresh_python(after).split() == [str(n)]
    assert fresh_python(before).split() == [str(n)]
