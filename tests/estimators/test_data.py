"""Input validation, padding and standardisation (ssmsignal.estimators._data)."""
import numpy as np
import pandas as pd
import pytest

from ssmsignal.estimators._data import (channel_stats, check_regression_targets,
                                        check_sampling_rate, check_series)


def test_2d_3d_dataframe_and_list_forms():
    rng = np.random.default_rng(1)
    X2 = rng.normal(size=(4, 11))
    b2 = check_series(X2)
    assert b2.values.shape == (4, 1, 11) and b2.values.dtype == np.float32
    assert b2.lengths.tolist() == [11] * 4 and b2.equal_length
    b3 = check_series(rng.normal(size=(4, 3, 11)))
    assert b3.values.shape == (4, 3, 11) and b3.n_channels == 3
    bdf = check_series(pd.DataFrame(X2))
    np.testing.assert_array_equal(bdf.values, b2.values)
    bl = check_series(list(X2))  # a list of equal-length 1-D series
    np.testing.assert_array_equal(bl.values, b2.values)


def test_unequal_lengths_are_padded_not_truncated():
    series = [np.arange(1, 6, dtype=float), np.arange(1, 3, dtype=float), np.ones(7)]
    batch = check_series(series)
    assert batch.values.shape == (3, 1, 7)
    assert batch.lengths.tolist() == [5, 2, 7]
    np.testing.assert_array_equal(batch.values[0, 0], [1, 2, 3, 4, 5, 0, 0])
    np.testing.assert_array_equal(batch.values[1, 0], [1, 2, 0, 0, 0, 0, 0])
    multi = check_series([np.ones((2, 5)), np.zeros((2, 9))])
    assert multi.values.shape == (2, 2, 9) and multi.lengths.tolist() == [5, 9]
    sub = multi.subset(np.array([0]))
    assert sub.values.shape == (1, 2, 5)  # trimmed to its own longest length


@pytest.mark.parametrize("bad, match", [
    (np.array([[1.0, np.nan, 2.0]]), "NaN"),
    (np.array([[1.0, np.inf, 2.0]]), "infinity"),
    (np.zeros(5), "Reshape your data"),
    (np.zeros((2, 2, 2, 2)), "4-D"),
    ([np.ones(4), np.array([1.0, np.nan])], "NaN"),
    ([np.ones((2, 4)), np.ones((3, 4))], "same number of channels"),
    ([np.ones((2, 2)), np.ones((2, 2, 2))], "X\\[1\\]"),
    ([], "0 sample"),
])
def test_bad_inputs_raise_clear_errors(bad, match):
    with pytest.raises(ValueError, match=match):
        check_series(bad)


def test_channel_count_mismatch():
    with pytest.raises(ValueError, match="fitted with 2 channel"):
        check_series(np.zeros((3, 1, 10)), n_channels=2)


@pytest.mark.parametrize("rate", [0, -1.0, float("nan"), float("inf")])
def test_bad_sampling_rate(rate):
    with pytest.raises(ValueError, match="sampling_rate"):
        check_sampling_rate(rate)


def test_sampling_rate_type():
    with pytest.raises(TypeError):
        check_sampling_rate("360")
    assert check_sampling_rate(None) is None and check_sampling_rate(360) == 360.0


def test_channel_stats_ignore_padding():
    series = [np.array([[1.0, 3.0]]), np.array([[5.0, 7.0, 9.0, 11.0]])]
    mean, std = channel_stats(check_series(series))
    valid = np.array([1, 3, 5, 7, 9, 11.0])
    np.testing.assert_allclose(mean, [valid.mean()], rtol=1e-6)
    np.testing.assert_allclose(std, [valid.std()], rtol=1e-6)
    _, std_const = channel_stats(check_series(np.full((3, 5), 4.0)))
    assert std_const.tolist() == [1.0]  # a constant channel is not divided by zero


def test_regression_targets_shapes():
    batch = check_series(np.zeros((4, 6)))
    y, per_step, ndim = check_regression_targets(np.arange(4.0), batch)
    assert y.shape == (4, 1) and not per_step and ndim == 1
    y, per_step, ndim = check_regression_targets(np.zeros((4, 2)), batch)
    assert y.shape == (4, 2) and not per_step and ndim == 2
    y, per_step, _ = check_regression_targets(np.zeros((4, 6)), batch)
    assert per_step
    with pytest.raises(ValueError, match="4 samples but y has 3"):
        check_regression_targets(np.zeros(3), batch)
    with pytest.raises(ValueError, match="NaN"):
        check_regression_targets(np.array([1.0, np.nan, 2, 3]), batch)
