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
