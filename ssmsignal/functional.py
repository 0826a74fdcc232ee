"""Stateless signal operations shared by the datasets, estimators and generators.

The library has exactly one resampler, :func:`resample`. Torch tensors go through
torchaudio's windowed-sinc resampler when torchaudio is installed (on the tensor's device, GPU
included); numpy arrays, and tensors when torchaudio is missing, through scipy's polyphase
filter (:func:`scipy.signal.resample_poly`). Both are anti-aliased.

Why numpy arrays do not use torchaudio by default: on the CPU, torchaudio's resampler
(a ``conv1d``) took 13.4 ms for one 0.5 s clip at 8 kHz -> 16 kHz against 0.38 ms for
``resample_poly`` (2-core CPU, torch 2.11, 2026-11-22), which made loading the 3000 FSDD files
at 16 kHz take 54 s instead of about 2 s. ``backend="torchaudio"`` still forces it.
"""
from __future__ import annotations

import math
from fractions import Fraction

import numpy as np

__all__ = ["check_sampling_rate", "rational_ratio", "resample"]

# Largest up/down factor accepted when approximating a non-integer rate ratio. Larger factors
# make polyphase filters long and slow; 1000 keeps the approximation error below 1e-6 relative
# for every ratio of "usual" rates (8 kHz, 11.025 kHz, 44.1 kHz, 360 Hz, 125 Hz, ...).
_MAX_DENOMINATOR = 1000


def check_sampling_rate(rate, name="sampling_rate"):
    """Return ``rate`` as a float, raising a clear error unless it is a positive finite number.

    Parameters
    ----------
    rate : float
        Sampling rate in Hz.
    name : str, default="sampling_rate"
        Name used in the error message.

    Returns
    -------
    float

    Raises
    ------
    TypeError
        For booleans, strings and anything else that is not a number (a 0-d array is fine).
    ValueError
        For zero, negative, NaN or infinite rates.
    """
    if isinstance(rate, (bool, str, bytes)):
        raise TypeError(f"{name} must be a positive number, got {rate!r}")
    try:
        value = float(rate)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a positive number, got {rate!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a positive finite sampling rate in Hz, got {rate!r}")
    return value


def rational_ratio(orig_fs, target_fs, max_denominator=_MAX_DENOMINATOR):
    """Approximate ``target_fs / orig_fs`` by a reduced fraction ``up / down``.

    Parameters
    ----------
    orig_fs, target_fs : float
        Sampling rates in Hz (> 0).
    max_denominator : int, default=1000
        Largest denominator of the approximation.

    Returns
    -------
    up, down : int
        Positive co-prime integers with ``up / down ~= target_fs / orig_fs``.

    Examples
    --------
    >>> rational_ratio(44100, 8000)
    (80, 441)
    """
    orig = check_sampling_rate(orig_fs, "orig_fs")
    target = check_sampling_rate(target_fs, "target_fs")
    frac = Fraction(target / orig).limit_denominator(max_denominator)
    if frac.numerator == 0:
        raise ValueError(f"cannot resample from {orig} Hz to {target} Hz: ratio too small "
                         f"to represent with denominator <= {max_denominator}")
    return frac.numerator, frac.denominator


def _torchaudio_functional():
    try:
        import torchaudio.functional as taf
    except Exception:  # ImportError, or a torchaudio built for another torch
        return None
    return taf


def _is_torch(x):
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a hard dependency
        return False
    return isinstance(x, torch.Tensor)


def resample(x, orig_fs, target_fs, axis=-1, *, backend="auto"):
    """Resample a signal from ``orig_fs`` to ``target_fs`` along ``axis`` (anti-aliased).

    Parameters
    ----------
    x : numpy.ndarray or torch.Tensor
        Real signal of any shape; time runs along ``axis``.
    orig_fs, target_fs : float
        Sampling rates in Hz, both > 0. A non-integer ratio is approximated by a fraction
        ``up / down`` with ``down <= 1000`` (see :func:`rational_ratio`).
    axis : int, default=-1
        Time axis.
    backend : {"auto", "torchaudio", "scipy"}, default="auto"
        ``"auto"``: torch tensors use torchaudio when it imports (else scipy via the CPU),
        numpy arrays use scipy (faster on the CPU, see the module notes). ``"torchaudio"``
        forces torchaudio for both and raises when it is missing.

    Returns
    -------
    numpy.ndarray or torch.Tensor
        Same type, device and floating dtype as ``x`` (integer input becomes float32), with
        ``ceil(n * up / down)`` samples along ``axis``.

    Raises
    ------
    ValueError
        If a rate is not positive/finite, ``x`` is empty along ``axis`` or contains NaN/inf.

    Examples
    --------
    >>> import numpy as np
    >>> resample(np.zeros((2, 360)), 360, 125).shape
    (2, 125)
    """
    up, down = rational_ratio(orig_fs, target_fs)
    if backend not in ("auto", "torchaudio", "scipy"):
        raise ValueError(f"backend must be 'auto', 'torchaudio' or 'scipy', got {backend!r}")
    is_tensor = _is_torch(x)
    use_ta = backend == "torchaudio" or (backend == "auto" and is_tensor)
    taf = _torchaudio_functional() if use_ta else None
    if backend == "torchaudio" and taf is None:
        raise RuntimeError("backend='torchaudio' requested but torchaudio cannot be imported; "
                           "install the 'audio' extra or use backend='scipy'")
    if not is_tensor:
        x = np.asarray(x)
        if not np.issubdtype(x.dtype, np.floating):
            x = x.astype(np.float32)
    if x.ndim == 0:
        raise ValueError("resample needs an array with a time axis, got a scalar")
    axis = axis % x.ndim
    n = x.shape[axis]
    if n == 0:
        raise ValueError(f"cannot resample an empty signal (shape {tuple(x.shape)}, axis {axis})")
    finite = bool(x.isfinite().all()) if is_tensor else bool(np.isfinite(x).all())
    if not finite:
        raise ValueError("cannot resample a signal containing NaN or inf")
    n_out = -(-n * up // down)  # ceil(n * up / down), the length both backends return
    if up == down:
        return x.clone() if is_tensor else x.copy()
    if is_tensor:
        return _resample_tensor(x, up, down, axis, n_out, taf)
    if taf is not None:
        import torch

        arr = np.ascontiguousarray(x) if x.flags.writeable else x.copy()  # torch needs writable
        out = _resample_tensor(torch.from_numpy(arr), up, down, axis, n_out, taf)
        return out.numpy()
    from scipy.signal import resample_poly  # imported here: the estimators only need the checks

    return np.asarray(resample_poly(x, up, down, axis=axis), dtype=x.dtype)


def _resample_tensor(x, up, down, axis, n_out, taf):
    """Tensor path: torchaudio on the tensor's device, else scipy via the CPU."""
    import torch

    if not torch.is_floating_point(x):
        x = x.to(torch.float32)
    if taf is None:
        from scipy.signal import resample_poly

        arr = x.detach().cpu().numpy()
        out = resample_poly(arr, up, down, axis=axis)
        return torch.from_numpy(np.asarray(out, dtype=arr.dtype)).to(x.device)
    moved = x.movedim(axis, -1)  # (..., n)
    # torchaudio's signature is resample(waveform, orig_freq, new_freq): new/orig = up/down
    out = taf.resample(moved.contiguous(), down, up)  # (..., ceil(n * up / down))
    if out.shape[-1] != n_out:  # guard against version-dependent rounding
        raise RuntimeError(f"torchaudio returned {out.shape[-1]} samples, expected {n_out}")
    return out.movedim(-1, axis)
