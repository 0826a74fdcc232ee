"""Small data and settings shared by the estimator tests."""
import numpy as np
import pytest


TINY = dict(d_model=8, n_layers=1, max_epochs=3, batch_size=16, verbose=0, random_state=0,
            device="cpu")


def two_tone_data(n=48, length=40, channels=1, seed=0):
    """Two classes of noisy sines (slow vs fast), a task a tiny model learns in a few epochs."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 2
    t = np.arange(length) / length
    freq = np.where(y == 0, 2.0, 6.0)[:, None, None]  # (n, 1, 1)
    phase = rng.uniform(0, 2 * np.pi, size=(n, channels, 1))
    X = np.sin(2 * np.pi * freq * t + phase) + 0.1 * rng.normal(size=(n, channels, length))
    return X.astype(np.float32), y


@pytest.fixture
def tiny():
    """Constructor settings of a tiny, fast, silent, seeded model on the CPU."""
    return dict(TINY)


@pytest.fixture
def make_tones():
    """The :func:`two_tone_data` factory."""
    return two_tone_data


@pytest.fixture
def tones():
    X, y = two_tone_data()
    return X[:, 0, :], y
