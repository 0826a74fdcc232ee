"""One intra-op thread for these tests (as tests/estimators/test_generator.py does)."""
import pytest
import torch


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny tensors: a second intra-op thread only adds synchronisation, 5-100x slower when
    the machine is busy (measured: tests/models 11.0 s -> 1.8 s under load)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
