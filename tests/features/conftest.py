import pytest
import torch


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread():
    # Small descriptor batches on a loaded 2-core machine: two intra-op threads wait on each other
    # (measured 40x slower than one thread), so these tests run torch single-threaded.
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
