"""Settings shared by the whole suite."""
import pytest
import torch


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Run every test module on one intra-op thread, then restore the setting.

    The suite's tensors are small: a second thread mostly adds synchronisation, and on a busy
    2-core machine it made tests 5-100x slower (measured: tests/models 11.0 s -> 1.8 s; the
    estimator tests 55 s -> 14 s). Benchmarks, not tests, measure multi-threaded speed.
    """
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
