"""Argument checks shared by every backend of the public kernel ops.

Each ``check_<op>`` raises ``ValueError`` (bad shape, size or value) or ``TypeError`` (bad dtype)
with a message that names the argument, what was expected and what was given.
"""

from __future__ import annotations

import operator

import torch

_FLOATS = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


def _tensor(op, name, t, ndim=None, floating=False, is_complex=False):
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{op}: {name} must be a torch.Tensor, got {type(t).__name__}")
    allowed = (ndim,) if isinstance(ndim, int) else ndim
    if ndim is not None and t.dim() not in allowed:
        expected = " or ".join(map(str, allowed))
        raise ValueError(f"{op}: {name} must have {expected} dimensions, got shape "
                         f"{tuple(t.shape)}")
    if floating and t.dtype not in _FLOATS:
        raise TypeError(f"{op}: {name} must be a real floating tensor, got {t.dtype}")
    if is_complex and not t.is_complex():
        raise TypeError(f"{op}: {name} must be complex, got {t.dtype}")


def _shape(op, name, t, expected):
    if t is not None and tuple(t.shape) != tuple(expected):
        raise ValueError(f"{op}: {name} must have shape {tuple(expected)}, got {tuple(t.shape)}")


def _bc(op, name, t, b, d, N, L):
    """B or C: (b, N, L) or (b, G, N, L) with G dividing d (L omitted for the step op)."""
    tail = (N,) if L is None else (N, L)
    _tensor(op, name, t, ndim=(len(tail) + 1, len(tail) + 2), floating=True)
    if t.dim() == len(tail) + 1:
        _shape(op, name, t, (b, *tail))
        return
    G = t.shape[1]
    if G < 1 or d % G:
        raise ValueError(f"{op}: the number of groups of {name} ({G}) must divide d ({d})")
    _shape(op, name, t, (b, G, *tail))


def _optional(op, name, t, expected):
    if t is not None:
        _tensor(op, name, t, ndim=len(expected), floating=True)
        _shape(op, name, t, expected)


def check_selective_scan(u, delta, A, B, C, D, z, delta_bias, seq_lengths):
    op = "selective_scan"
    _tensor(op, "u", u, ndim=3, floating=True)
    b, d, L = u.shape
    _tensor(op, "delta", delta, ndim=3, floating=True)
    _shape(op, "delta", delta, (b, d, L))
    _tensor(op, "A", A, ndim=2, floating=True)
    if A.shape[0] != d:
        raise ValueError(f"{op}: A must have shape (d={d}, N), got {tuple(A.shape)}")
    N = A.shape[1]
    _bc(op, "B", B, b, d, N, L)
    _bc(op, "C", C, b, d, N, L)
    _optional(op, "D", D, (d,))
    _optional(op, "z", z, (b, d, L))
    _optional(op, "delta_bias", delta_bias, (d,))
    if seq_lengths is not None:
        _tensor(op, "seq_lengths", seq_lengths, ndim=1)
        if seq_lengths.is_floating_point() or seq_lengths.is_complex():
            raise TypeError(f"{op}: seq_lengths must be an integer tensor, got {seq_lengths.dtype}")
        _shape(op, "seq_lengths", seq_lengths, (b,))
        if b and (int(seq_lengths.min()) < 0 or int(seq_lengths.max()) > L):
            raise ValueError(f"{op}: seq_lengths must lie in [0, L={L}], got "
                             f"{seq_lengths.tolist()}")


def check_selective_state_update(state, x, dt, A, B, C, D, z, dt_bias):
    op = "selective_state_update"
    _tensor(op, "state", state, ndim=3)
    if state.dtype not in (torch.float32, torch.float64):
        raise TypeError(f"{op}: state must be float32 (or float64), got {state.dtype}")
    b, d, N = state.shape
    for name, t in (("x", x), ("dt", dt)):
        _tensor(op, name, t, ndim=2, floating=True)
        _shape(op, name, t, (b, d))
    _tensor(op, "A", A, ndim=2, floating=True)
    _shape(op, "A", A, (d, N))
    _bc(op, "B", B, b, d, N, None)
    _bc(op, "C", C, b, d, N, None)
    _optional(op, "D", D, (d,))
    _optional(op, "z", z, (b, d))
    _optional(op, "dt_bias", dt_bias, (d,))


def check_vandermonde(coef, log_z):
    op = "vandermonde"
    _tensor(op, "coef", coef, ndim=2, is_complex=True)
    _tensor(op, "log_z", log_z, ndim=2, is_complex=True)
    _shape(op, "log_z", log_z, coef.shape)


def as_length(op, L):
    """``L`` as a Python int >= 1 (accepts any integer type, e.g. numpy ints)."""
    try:
        value = operator.index(L)
    except TypeError:
        raise TypeError(f"{op}: L must be an integer, got {type(L).__name__}") from None
    if isinstance(L, bool) or value < 1:
        raise ValueError(f"{op}: L must be a positive integer, got {L!r}")
    return value


def check_s4d_kernel(A, B, C, dt, discretization):
    op = "s4d_kernel"
    _tensor(op, "A", A, ndim=2, is_complex=True)
    for name, t in (("B", B), ("C", C)):
        _tensor(op, name, t, ndim=2, is_complex=True)
        _shape(op, name, t, A.shape)
    _tensor(op, "dt", dt, ndim=1, floating=True)
    _shape(op, "dt", dt, A.shape[:1])
    if discretization not in ("zoh", "bilinear"):
        raise ValueError(f"{op}: discretization must be 'zoh' or 'bilinear', got "
                         f"{discretization!r}")


def check_cauchy(v, z, w):
    op = "cauchy"
    _tensor(op, "v", v, is_complex=True)
    _tensor(op, "w", w, is_complex=True)
    _tensor(op, "z", z, ndim=1, is_complex=True)
    if v.dim() < 1 or w.dim() < 1 or v.shape[-1] != w.shape[-1]:
        raise ValueError(f"{op}: v and w must share their last dimension N, got "
                         f"{tuple(v.shape)} and {tuple(w.shape)}")
    try:
        torch.broadcast_shapes(v.shape, w.shape)
    except RuntimeError:
        raise ValueError(
            f"{op}: v {tuple(v.shape)} and w {tuple(w.shape)} do not broadcast") from None


def check_fft_conv(u, k, D):
    op = "fft_conv"
    _tensor(op, "u", u, ndim=3, floating=True)
    _, H, L = u.shape
    _tensor(op, "k", k, ndim=2, floating=True)
    if k.shape[0] != H or k.shape[1] > L:
        raise ValueError(f"{op}: k must have shape (H={H}, Lk <= L={L}), got {tuple(k.shape)}")
    _optional(op, "D", D, (H,))
