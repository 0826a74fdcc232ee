"""8-bit mu-law companding: float audio in [-1, 1] <-> integer codes 0..255.

Mu-law (ITU-T G.711) spends more codes near zero, where speech spends most of its time, so an
8-bit mu-law code loses far less than 8-bit linear quantisation. SaShiMi (Goel et al. 2022) and
WaveNet (van den Oord et al. 2016) both model audio as a 256-way categorical over these codes.

The functions accept numpy arrays and torch tensors and return the same kind.
"""
from __future__ import annotations

import math

import numpy as np
import torch

__all__ = ["mu_law_encode", "mu_law_decode", "N_CODES", "SILENCE_CODE"]

N_CODES = 256
MU = N_CODES - 1
# encode(0.0) = floor((0 + 1) / 2 * 255 + 0.5) = 128: the code of silence, used as the start token
SILENCE_CODE = 128


def mu_law_encode(x):
    """Compress float audio in [-1, 1] to integer mu-law codes in ``0..255``.

    Parameters
    ----------
    x : numpy.ndarray or torch.Tensor
        Real audio; values outside [-1, 1] are clipped. NaN raises.

    Returns
    -------
    numpy.ndarray or torch.Tensor
        ``int64`` codes of the same shape: ``round((F(x) + 1) / 2 * 255)`` with
        ``F(x) = sign(x) * log(1 + 255 |x|) / log(256)``.

    Examples
    --------
    >>> import numpy as np
    >>> mu_law_encode(np.array([-1.0, 0.0, 1.0])).tolist()
    [0, 128, 255]
    """
    if isinstance(x, torch.Tensor):
        if torch.isnan(x).any():
            raise ValueError("mu_law_encode got NaN audio")
        x = x.clamp(-1.0, 1.0)
        f = torch.sign(x) * torch.log1p(MU * x.abs()) / math.log1p(MU)
        return torch.floor((f + 1.0) / 2.0 * MU + 0.5).long()
    x = np.asarray(x, dtype=np.float64)
    if np.isnan(x).any():
        raise ValueError("mu_law_encode got NaN audio")
    x = np.clip(x, -1.0, 1.0)
    f = np.sign(x) * np.log1p(MU * np.abs(x)) / np.log1p(MU)
    return np.floor((f + 1.0) / 2.0 * MU + 0.5).astype(np.int64)


def mu_law_decode(q):
    """Expand integer mu-law codes ``0..255`` back to float audio in [-1, 1].

    Parameters
    ----------
    q : numpy.ndarray or torch.Tensor
        Integer codes; values outside ``0..255`` raise.

    Returns
    -------
    numpy.ndarray or torch.Tensor
        ``float32`` audio (float64 for numpy input) of the same shape.

    Examples
    --------
    >>> import numpy as np
    >>> np.round(mu_law_decode(np.array([0, 128, 255])), 4).tolist()
    [-1.0, 0.0001, 1.0]
    """
    if isinstance(q, torch.Tensor):
        if q.numel() and (int(q.min()) < 0 or int(q.max()) > MU):
            raise ValueError(f"mu-law codes must lie in 0..{MU}")
        y = 2.0 * q.to(torch.float32) / MU - 1.0
        return torch.sign(y) * torch.expm1(y.abs() * math.log1p(MU)) / MU
    q = np.asarray(q)
    if q.size and (q.min() < 0 or q.max() > MU):
        raise ValueError(f"mu-law codes must lie in 0..{MU}")
    y = 2.0 * q.astype(np.float64) / MU - 1.0
    return np.sign(y) * np.expm1(np.abs(y) * np.log1p(MU)) / MU
