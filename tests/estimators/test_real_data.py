"""Real heartbeats (embedded MIT-BIH excerpt): learning and zero-shot rate transfer.

A balanced sample of N, S, V and F beats (100 per class for training, 100 per class for
testing, 0.7 s windows at 360 Hz) keeps this under ~10 s on a 2-core CPU. The majority-class
baseline on a balanced test set is 25 %.
"""
import numpy as np
import pytest

from ssmsignal import S4Classifier
from ssmsignal.datasets import load_mitbih
from ssmsignal.functional import resample


@pytest.fixture(scope="module")
def beats_model():
    bunch = load_mitbih()
    X, y = bunch.data, np.asarray(bunch.target_names)[bunch.target]
    rng = np.random.default_rng(0)
    classes = ["N", "S", "V", "F"]
    picked = np.concatenate([rng.choice(np.flatnonzero(y == c), 200, replace=False)
                             for c in classes])
    rng.shuffle(picked)
    train, test = picked[:400], picked[400:]
    clf = S4Classifier(d_model=16, n_layers=2, d_state=16, max_epochs=12, lr=1e-2,
                       early_stopping=False, verbose=0, random_state=0, device="cpu")
    clf.fit(X[train], y[train], sampling_rate=bunch.sampling_rate)
    return clf, X[test], y[test], bunch.sampling_rate


def test_beats_majority_baseline_by_a_clear_margin(beats_model):
    clf, X_test, y_test, _ = beats_model
    majority = np.max(np.unique(y_test, return_counts=True)[1]) / len(y_test)
    accuracy = clf.score(X_test, y_test)
    assert accuracy > majority + 0.35, (accuracy, majority)


def test_rescaling_dt_transfers_to_half_the_rate(beats_model):
    clf, X_test, y_test, fs = beats_model
    X_half = resample(X_test, fs, fs / 2)  # (n, 1, 126): the same beats at 180 Hz
    rescaled = clf.score(X_half, y_test, sampling_rate=fs / 2)  # dt_scale = 2
    naive = clf.score(X_half, y_test, sampling_rate=fs)  # pretends nothing changed
    full = clf.score(X_test, y_test)
    assert rescaled > naive + 0.15, (rescaled, naive)
    assert full - rescaled < 0.1, (full, rescaled)
