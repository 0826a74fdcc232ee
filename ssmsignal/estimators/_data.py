"""Input handling for the estimators: validation, padding with lengths, standardisation.

Every accepted form of ``X`` becomes a :class:`SeriesBatch`: a float32 array
``(n_samples, n_channels, max_length)`` padded with zeros at the END of each series, plus the
true length of each series. The models are causal, so right-padding never changes the outputs
at valid positions, and pooling averages over valid positions only (see
:class:`ssmsignal.models.SequenceModel`). Nothing is ever truncated.

Accepted ``X``:

* ``(n_samples, n_timesteps)`` array (univariate), or a pandas DataFrame of equal-length rows;
* ``(n_samples, n_channels, n_timesteps)`` array (channels first, aeon's convention);
* a list of ``(n_i,)`` or ``(n_channels, n_i)`` arrays, possibly of unequal lengths.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.utils.validation import check_array

from ssmsignal.functional import check_sampling_rate as _check_rate

__all__ = ["SeriesBatch", "check_series", "check_sampling_rate", "channel_stats",
           "check_regression_targets"]


@dataclass
class SeriesBatch:
    """A validated batch of series.

    Attributes
    ----------
    values : numpy.ndarray
        ``(n_samples, n_channels, max_length)`` float32, zero-padded at the end.
    lengths : numpy.ndarray
        ``(n_samples,)`` int64 true lengths (all equal to ``max_length`` for array input).
    """

    values: np.ndarray
    lengths: np.ndarray

    @property
    def n_samples(self) -> int:
        return self.values.shape[0]

    @property
    def n_channels(self) -> int:
        return self.values.shape[1]

    @property
    def equal_length(self) -> bool:
        return bool(np.all(self.lengths == self.values.shape[2]))

    def subset(self, index) -> "SeriesBatch":
        """Rows ``index`` (trimmed to their own longest length)."""
        lengths = self.lengths[index]
        longest = int(lengths.max()) if lengths.size else 0
        return SeriesBatch(self.values[index, :, :longest], lengths)


def check_sampling_rate(value, name: str = "sampling_rate"):
    """``value`` checked by :func:`ssmsignal.functional.check_sampling_rate`; None stays None."""
    return None if value is None else _check_rate(value, name)


def _check_one_series(x, index: int) -> np.ndarray:
    """One list element -> float32 ``(n_channels, n_i)``."""
    arr = np.asarray(x)
    if arr.ndim == 1:
        arr = arr[None, :]
    if arr.ndim != 2:
        raise ValueError(f"X[{index}] must be a (n_timesteps,) or (n_channels, n_timesteps) "
                         f"array, got shape {arr.shape}")
    if arr.shape[1] == 0:
        raise ValueError(f"X[{index}] is an empty series (shape {arr.shape})")
    return check_array(arr, dtype=np.float32, input_name=f"X[{index}]")


def _from_list(X) -> SeriesBatch:
    if len(X) == 0:
        raise ValueError("X is an empty list; need at least one series")
    items = [_check_one_series(x, i) for i, x in enumerate(X)]
    channels = {a.shape[0] for a in items}
    if len(channels) > 1:
        raise ValueError(f"all series in X must have the same number of channels, got "
                         f"{sorted(channels)}")
    lengths = np.array([a.shape[1] for a in items], dtype=np.int64)
    values = np.zeros((len(items), items[0].shape[0], int(lengths.max())), dtype=np.float32)
    for i, a in enumerate(items):
        values[i, :, : a.shape[1]] = a  # (C, n_i) into the padded row
    return SeriesBatch(values, lengths)


def _is_ragged_sequence(X) -> bool:
    if not isinstance(X, (list, tuple)) or len(X) == 0:
        return False
    try:
        shapes = {np.shape(x) for x in X}
    except (TypeError, ValueError):
        return True
    # Unequal shapes, or a list of 2-D (C, n_i) arrays: handled as separate series.
    return len(shapes) > 1 or len(next(iter(shapes))) == 2


def check_series(X, n_channels: int | None = None) -> SeriesBatch:
    """Validate ``X`` and return a padded :class:`SeriesBatch`.

    Parameters
    ----------
    X : array-like, DataFrame or list of arrays
        See the module docstring.
    n_channels : int, optional
        Expected channel count (the one seen in ``fit``); a mismatch raises ValueError.

    Raises
    ------
    ValueError
        Wrong number of dimensions, empty input, NaN or inf, complex values, a channel count
        different from ``n_channels``.
    TypeError
        Sparse matrices (series are dense) or non-numeric values.
    """
    if _is_ragged_sequence(X):
        batch = _from_list(X)
    else:
        arr = check_array(X, dtype=np.float32, allow_nd=True, ensure_2d=False,
                          input_name="X")
        if arr.ndim < 2:
            raise ValueError(
                "X must be 2-D (n_samples, n_timesteps) or 3-D (n_samples, n_channels, "
                f"n_timesteps), got {arr.ndim}-D shape {arr.shape}. Reshape your data: a "
                "single series x becomes x[None, :]; or pass a list of series")
        if arr.ndim == 2:
            values = arr[:, None, :]  # (n, 1, L)
        elif arr.ndim == 3:
            values = arr  # (n, C, L)
        else:
            raise ValueError(f"X must be 2-D (n_samples, n_timesteps) or 3-D (n_samples, "
                             f"n_channels, n_timesteps), got {arr.ndim}-D shape {arr.shape}")
        if values.shape[2] == 0:
            raise ValueError(f"X has zero time steps (shape {arr.shape})")
        values = np.ascontiguousarray(values)
        lengths = np.full(values.shape[0], values.shape[2], dtype=np.int64)
        batch = SeriesBatch(values, lengths)
    if n_channels is not None and batch.n_channels != n_channels:
        raise ValueError(f"X has {batch.n_channels} channel(s), but the estimator was fitted "
                         f"with {n_channels} channel(s)")
    return batch


def channel_stats(batch: SeriesBatch) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and standard deviation over all valid time steps of all series.

    Returns float32 arrays ``(n_channels,)``; a constant channel gets std 1 (no scaling).
    """
    steps = np.arange(batch.values.shape[2])
    mask = steps[None, :] < batch.lengths[:, None]  # (n, L)
    count = mask.sum()
    x = batch.values.astype(np.float64)  # (n, C, L)
    total = np.einsum("ncl,nl->c", x, mask)
    mean = total / count
    sq = np.einsum("ncl,nl->c", (x - mean[None, :, None]) ** 2, mask)
    std = np.sqrt(sq / count)
    std = np.where(std > 1e-8 * max(1.0, float(np.abs(mean).max(initial=0.0))), std, 1.0)
    return mean.astype(np.float32), std.astype(np.float32)


def check_regression_targets(y, batch: SeriesBatch) -> tuple[np.ndarray, bool, int]:
    """Validate regression targets against ``batch``.

    Returns
    -------
    y : numpy.ndarray
        float32, ``(n, k)`` for per-series targets or ``(n, L)`` for per-timestep targets.
    per_step : bool
        True when ``y`` is ``(n_samples, n_timesteps)`` matching equal-length ``X`` of length
        > 1, i.e. one target per time step.
    ndim : int
        Number of dimensions of ``y`` as given (1 or 2), to shape the predictions alike.
    """
    arr = check_array(y, dtype=np.float32, ensure_2d=False, input_name="y")
    if arr.ndim == 0 or arr.ndim > 2:
        raise ValueError(f"y must be (n_samples,) or (n_samples, n_targets) or "
                         f"(n_samples, n_timesteps), got shape {arr.shape}")
    if arr.shape[0] != batch.n_samples:
        raise ValueError(f"X has {batch.n_samples} samples but y has {arr.shape[0]}")
    if arr.ndim == 1:
        return arr[:, None], False, 1
    per_step = (batch.equal_length and arr.shape[1] == batch.values.shape[2]
                and arr.shape[1] > 1)
    return arr, per_step, 2
