"""Kernel ops of ssmsignal: each public function checks its arguments, then dispatches.

Every op takes a keyword-only ``backend="auto" | "triton" | "torch"`` (see
:mod:`ssmsignal.kernels._dispatch` for the rules, including ``SSMSIGNAL_BACKEND`` and
``TRITON_INTERPRET``). The mathematical definition of each op, with shapes and dtypes, is the
docstring of the function of the same name in :mod:`ssmsignal.kernels.reference`.
"""

from __future__ import annotations

from . import _checks, reference
from ._dispatch import BACKENDS, available_backends, resolve, uses_triton

__all__ = [
    "BACKENDS",
    "available_backends",
    "cauchy",
    "fft_conv",
    "s4d_conv",
    "s4d_kernel",
    "selective_scan",
    "selective_state_update",
    "uses_triton",
    "vandermonde",
]


def selective_scan(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False,
                   return_last_state=False, seq_lengths=None, *, backend="auto"):
    """Selective scan, as ``mamba_ssm.selective_scan_fn`` (real ``A``).

    Shapes: ``u, delta, z (b, d, L)``; ``A (d, N)``; ``B, C (b, N, L)`` or ``(b, G, N, L)``;
    ``D, delta_bias (d,)``; ``seq_lengths (b,)`` int. Returns ``out (b, d, L)`` in ``u``'s dtype,
    plus ``last_state (b, d, N)`` float32 with ``return_last_state``.
    Full specification: :func:`ssmsignal.kernels.reference.selective_scan`.
    """
    _checks.check_selective_scan(u, delta, A, B, C, D, z, delta_bias, seq_lengths)
    fn = resolve("selective_scan", backend, u, delta, A, B, C, D, z, delta_bias, seq_lengths)
    return fn(u, delta, A, B, C, D=D, z=z, delta_bias=delta_bias, delta_softplus=delta_softplus,
              return_last_state=return_last_state, seq_lengths=seq_lengths)


def selective_state_update(state, x, dt, A, B, C, D=None, z=None, dt_bias=None,
                           dt_softplus=False, *, backend="auto"):
    """One selective-scan step: updates ``state (b, d, N)`` in place, returns ``y (b, d)``.

    Full specification: :func:`ssmsignal.kernels.reference.selective_state_update`.
    """
    _checks.check_selective_state_update(state, x, dt, A, B, C, D, z, dt_bias)
    fn = resolve("selective_state_update", backend, state, x, dt, A, B, C, D, z, dt_bias)
    return fn(state, x, dt, A, B, C, D=D, z=z, dt_bias=dt_bias, dt_softplus=dt_softplus)


def vandermonde(coef, log_z, L, *, backend="auto"):
    """``K[h, l] = 2 Re(sum_n coef[h, n] exp(log_z[h, n] l))``, real ``(H, L)``.

    Full specification: :func:`ssmsignal.kernels.reference.vandermonde`.
    """
    L = _checks.as_length("vandermonde", L)
    _checks.check_vandermonde(coef, log_z)
    return resolve("vandermonde", backend, coef, log_z)(coef, log_z, L)


def s4d_kernel(A, B, C, dt, L, discretization="zoh", *, backend="auto"):
    """S4D convolution kernel ``(H, L)`` from ``A, B, C (H, N)`` complex and ``dt (H,)``.

    The O(H N) discretisation runs in PyTorch
    (:func:`ssmsignal.kernels.reference.s4d_coefficients`); the Vandermonde product is
    dispatched like :func:`vandermonde` (Triton on CUDA when available).
    """
    L = _checks.as_length("s4d_kernel", L)
    _checks.check_s4d_kernel(A, B, C, dt, discretization)
    coef, log_z = reference.s4d_coefficients(A, B, C, dt, discretization)  # (H, N) each
    return resolve("vandermonde", backend, coef, log_z)(coef, log_z, L)  # (H, L)


def cauchy(v, z, w, *, backend="auto"):
    """``out[..., l] = sum_n v[..., n] / (z[l] - w[..., n])``, complex ``(..., L)``.

    Full specification: :func:`ssmsignal.kernels.reference.cauchy`.
    """
    _checks.check_cauchy(v, z, w)
    return resolve("cauchy", backend, v, z, w)(v, z, w)


def fft_conv(u, k, D=None, *, backend="auto"):
    """Causal FFT convolution ``y = k * u (+ D u)``, ``u (B, H, L)``, ``k (H, Lk <= L)``.

    There is no Triton kernel: ``torch.fft`` already uses cuFFT on the GPU, so ``"auto"`` always
    runs the reference and ``"triton"`` raises. Full specification:
    :func:`ssmsignal.kernels.reference.fft_conv`.
    """
    _checks.check_fft_conv(u, k, D)
    return resolve("fft_conv", backend, u, k, D)(u, k, D)


def s4d_conv(u, log_z, coef, D=None, *, backend="auto"):
    """S4D convolution in ``(batch, length, channels)`` layout: ``y = K * u + D u``.

    ``u (b, L, H)`` real; ``log_z, coef (H, N)`` complex (or ``(b, H, N)``: one set per
    sequence); ``D (H,)``; ``K = vandermonde(coef, log_z, L)``. The Triton kernel runs the
    equivalent diagonal recurrence on ``u`` in place (no transposes, no FFT).
    Full specification: :func:`ssmsignal.kernels.reference.s4d_conv`.
    """
    op = "s4d_conv"
    _checks._tensor(op, "u", u, ndim=3, floating=True)
    b, L, H = u.shape
    _checks._tensor(op, "log_z", log_z, ndim=(2, 3), is_complex=True)
    _checks._tensor(op, "coef", coef, is_complex=True)
    _checks._shape(op, "coef", coef, log_z.shape)
    if log_z.shape[:-1] not in ((H,), (b, H)):
        raise ValueError(f"{op}: log_z and coef must have shape (H={H}, N) or (b={b}, H={H}, N), "
                         f"got {tuple(log_z.shape)}")
    _checks._optional(op, "D", D, (H,))
    return resolve(op, backend, u, log_z, coef, D)(u, log_z, coef, D)
