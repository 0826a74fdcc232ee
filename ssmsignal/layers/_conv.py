"""Rate-aware short causal convolution (Mamba's depthwise conv under a changed sampling rate).

The ``d_conv`` taps ``w_0 .. w_{D-1}`` (lag-ordered, ``w_0`` multiplies the current sample) are
read as a continuous-time filter on the training grid (τ in training sample periods):

    y(t) = ∫_0^{D-1} h(τ) u(t - τ) dτ + (w_0 / 2) u(t) + (w_{D-1} / 2) u(t - (D-1))

with ``h`` piecewise linear through ``(j, w_j)``. The two end masses make the trapezoid rule on
the training grid reproduce ``Σ_j w_j u(t - j)`` exactly, so at ``dt_scale = 1`` nothing
changes. At ``dt_scale = s`` the input is sampled at ``τ = 0, s, 2s, ...``; the integral is
evaluated by the trapezoid rule on the union of that grid and the integer breakpoints of ``h``
(``u`` linearly interpolated between its samples where a breakpoint falls between them). The
result is a causal filter of ``ceil((D-1)/s) + 1`` taps that

- equals the trained taps at ``s = 1``,
- has exactly the trained DC gain ``Σ_j w_j`` for every ``s``,
- approximates the same continuous filter to second order in the sample period.

The taps are linear in ``w``: ``w' = w R(s)`` with a constant ``(D, K)`` matrix, so gradients
reach the trained taps unchanged.
"""
from __future__ import annotations

import functools
import math

import torch
import torch.nn.functional as F

__all__ = ["conv_length", "resample_matrix", "resampled_taps", "causal_depthwise_conv"]

_EPS = 1e-9


def conv_length(d_conv: int, scale: float) -> int:
    """Number of taps of the resampled filter at ``dt_scale = scale``."""
    if d_conv == 1:
        return 1
    return math.ceil((d_conv - 1) / scale - _EPS) + 1


@functools.lru_cache(maxsize=64)
def _resample_matrix_cpu(d_conv: int, scale: float) -> torch.Tensor:
    span, K = d_conv - 1, conv_length(d_conv, scale)
    if d_conv == 1 or scale == 1.0:
        return torch.eye(d_conv, dtype=torch.float64)
    grid = torch.arange(K, dtype=torch.float64) * scale  # (K,) sample times
    nodes = torch.cat([grid[grid < span + _EPS], torch.arange(d_conv, dtype=torch.float64)])
    nodes = torch.unique(torch.round(nodes / _EPS) * _EPS)  # (n,) sorted, merged
    gaps = torch.diff(nodes)  # (n-1,)
    c = torch.zeros_like(nodes)  # (n,) trapezoid weights
    c[:-1] += 0.5 * gaps
    c[1:] += 0.5 * gaps
    hat = (1.0 - (nodes[None, :] - torch.arange(d_conv, dtype=torch.float64)[:, None]).abs())
    weights = hat.clamp(min=0.0) * c  # (D, n): contribution of w_i at node k
    weights[0, 0] += 0.5  # end mass at τ = 0
    weights[-1, -1] += 0.5  # end mass at τ = D-1 (the last node)
    pos = nodes / scale  # (n,) node positions in input samples
    lo = torch.floor(pos + _EPS).long().clamp(max=K - 1)  # (n,)
    frac = (pos - lo).clamp(min=0.0)  # (n,), 0 on grid nodes
    interp = torch.zeros(len(nodes), K, dtype=torch.float64)  # (n, K)
    interp[torch.arange(len(nodes)), lo] += 1.0 - frac
    hi = (lo + 1).clamp(max=K - 1)
    interp[torch.arange(len(nodes)), hi] += torch.where(frac > _EPS, frac, 0.0)
    return weights @ interp  # (D, K)


def resample_matrix(d_conv: int, scale: float) -> torch.Tensor:
    """``(d_conv, K)`` float64 matrix mapping trained taps to taps at ``dt_scale = scale``.

    Parameters
    ----------
    d_conv : int
        Trained filter length.
    scale : float
        ``dt_scale = fs_train / fs_input > 0``.
    """
    if not isinstance(d_conv, int) or d_conv < 1:
        raise ValueError(f"d_conv must be a positive int, got {d_conv!r}")
    if not (math.isfinite(scale) and scale > 0):
        raise ValueError(f"dt_scale must be finite and > 0, got {scale}")
    return _resample_matrix_cpu(d_conv, float(scale))


@functools.lru_cache(maxsize=64)
def _resample_matrix_on(d_conv: int, scale: float, device: torch.device,
                        dtype: torch.dtype) -> torch.Tensor:
    # Kept on the taps' device: a host-to-device copy in every Mamba step would synchronise
    # the GPU, and cannot be captured in a CUDA graph.
    return resample_matrix(d_conv, scale).to(device=device, dtype=dtype)  # (D, K)


def resampled_taps(taps: torch.Tensor, scale: float) -> torch.Tensor:
    """Lag-ordered taps ``(E, D)`` -> lag-ordered taps ``(E, K)`` at ``dt_scale = scale``."""
    if scale == 1.0:
        return taps  # R(1) is the identity
    return taps @ _resample_matrix_on(taps.shape[-1], float(scale), taps.device, taps.dtype)


def causal_depthwise_conv(x: torch.Tensor, taps: torch.Tensor,
                          bias: torch.Tensor | None) -> torch.Tensor:
    """``y[b, e, t] = Σ_j taps[..., e, j] x[b, e, t - j] + bias[e]`` (zeros before t = 0).

    Parameters
    ----------
    x : torch.Tensor
        ``(b, E, L)`` input.
    taps : torch.Tensor
        Lag-ordered ``(E, K)`` taps shared by the batch, or ``(b, E, K)`` per sequence.
    bias : torch.Tensor, optional
        ``(E,)``.
    """
    b, E, L = x.shape
    K = taps.shape[-1]
    xp = F.pad(x, (K - 1, 0))  # (b, E, L+K-1)
    if taps.dim() == 2:
        return F.conv1d(xp, taps.flip(-1)[:, None, :], bias, groups=E)  # (b, E, L)
    w = taps.flip(-1).reshape(b * E, 1, K)  # (b*E, 1, K)
    y = F.conv1d(xp.reshape(1, b * E, L + K - 1), w, groups=b * E).reshape(b, E, L)  # (b, E, L)
    return y if bias is None else y + bias[:, None]
