"""Triton Vandermonde product behind the S4D convolution kernel, forward and backward.

``K[h, l] = 2 Re(sum_n coef[h, n] * exp(log_z[h, n] * l))`` (S4D, Gu et al. 2022, "On the
Parameterization and Initialization of Diagonal SSMs"), the same function as
:func:`ssmsignal.kernels.reference.vandermonde`.

How it is computed
------------------
One program owns one channel ``h`` and one chunk of ``BLOCK_P * BLOCK_Q`` consecutive positions.
Writing ``l = l0 + BLOCK_Q * p + q`` gives ``z^l = z^(l0 + BLOCK_Q p) * z^q``, so the chunk is
the real part of a complex matrix product::

    K[p, q] = 2 * sum_n  W[p, n] V[n, q],   W = coef * z^(l0 + BLOCK_Q p),   V = z^q

i.e. two real ``tl.dot`` calls per block of ``n``. Only ``(BLOCK_P + BLOCK_Q) * N`` powers are
evaluated with ``exp``/``cos``/``sin`` per program instead of ``BLOCK_P * BLOCK_Q * N``, and
every power is evaluated directly (no repeated multiplication), so errors do not grow with ``l``.

Phase accuracy: ``Im(log_z) * l`` reaches ~1e5 rad at ``L = 65536``, where a float32 product
loses ~0.01 rad. The launcher therefore converts each phase to turns in float64 and stores its
fractional part as a 52-bit fixed-point integer ``T``; in the kernel ``(T * l) mod 2^52`` is an
exact int64 product, so the reduced angle is accurate to float32 rounding for any ``l < 2^31``.

Backward (PyTorch's convention for complex leaves: ``grad = dLoss/dRe + i dLoss/dIm``)::

    dcoef[h, n]  = 2 * sum_l dK[h, l] * conj(z^l)
    dlog_z[h, n] = 2 * conj(coef[h, n]) * sum_l dK[h, l] * l * conj(z^l)

Each program reduces its own chunk with ``tl.dot`` (``dK @ conj(V)^T``) and writes partial sums
per (h, chunk, n); ``torch.sum`` over chunks finishes the reduction: deterministic, no atomics.
Memory is ``O(H (N + L))`` plus ``O(H N L / chunk)`` for the partial sums.
"""

from __future__ import annotations

import math

import torch
import triton
import triton.language as tl

__all__ = ["vandermonde"]

#: Fixed-point fraction bits of the phase (turns). ``(T * l) mod 2^52`` is exact in int64.
_PHASE_BITS = 52
#: Precision of the in-kernel matrix products: "ieee" (FMA, exact float32) or "tf32x3".
DOT_PRECISION = "ieee"


@triton.jit
def _zpow(a, t, m):
    """``exp((a + 2 pi i t 2^-52) * m)`` as (re, im); ``a`` float32, ``t`` and ``m`` int64."""
    mag = tl.exp(a * m.to(tl.float32))
    turns = ((t * m) & 0xFFFFFFFFFFFFF).to(tl.float32) * 2.220446049250313e-16  # [0, 1]
    turns = tl.where(turns >= 0.5, turns - 1.0, turns)  # [-1/2, 1/2): exact (Sterbenz)
    angle = turns * 6.283185307179586
    return mag * tl.cos(angle), mag * tl.sin(angle)


@triton.jit
def _vandermonde_fwd_kernel(
    cr_ptr, ci_ptr, a_ptr, t_ptr,  # (H, N) planes: Re coef, Im coef, Re log_z, phase (int64)
    k_ptr,  # (H, L) float32 output
    N: tl.constexpr,  # constexpr: a runtime loop bound breaks the interpreter under numpy >= 2.4
    L,
    BLOCK_N: tl.constexpr, BLOCK_P: tl.constexpr, BLOCK_Q: tl.constexpr,
    PRECISION: tl.constexpr,
):
    h = tl.program_id(0)
    l0 = tl.program_id(1) * (BLOCK_P * BLOCK_Q)
    p = tl.arange(0, BLOCK_P)  # (P,)
    q = tl.arange(0, BLOCK_Q)  # (Q,)
    m_outer = (l0 + BLOCK_Q * p).to(tl.int64)  # (P,) first position of each row
    m_inner = q.to(tl.int64)  # (Q,)
    acc = tl.zeros((BLOCK_P, BLOCK_Q), dtype=tl.float32)
    for n0 in range(0, N, BLOCK_N):
        n = n0 + tl.arange(0, BLOCK_N)  # (BN,)
        nmask = n < N
        offs = h * N + n
        cr = tl.load(cr_ptr + offs, mask=nmask, other=0.0)  # (BN,) padding: coef 0
        ci = tl.load(ci_ptr + offs, mask=nmask, other=0.0)
        a = tl.load(a_ptr + offs, mask=nmask, other=0.0)
        t = tl.load(t_ptr + offs, mask=nmask, other=0)
        vr, vi = _zpow(a[:, None], t[:, None], m_inner[None, :])  # (BN, Q): z^q
        ur, ui = _zpow(a[None, :], t[None, :], m_outer[:, None])  # (P, BN): z^(l0 + Q p)
        wr = cr[None, :] * ur - ci[None, :] * ui  # (P, BN): coef * z^(l0 + Q p)
        wi = cr[None, :] * ui + ci[None, :] * ur
        acc = tl.dot(wr, vr, acc, input_precision=PRECISION)  # Re(W V) = Wr Vr - Wi Vi
        acc = tl.dot(-wi, vi, acc, input_precision=PRECISION)
    l = l0 + BLOCK_Q * p[:, None] + q[None, :]  # (P, Q)
    tl.store(k_ptr + h * L + l, 2.0 * acc, mask=l < L)


@triton.jit
def _vandermonde_bwd_kernel(
    a_ptr, t_ptr,  # (H, N) planes: Re log_z, phase (int64)
    dk_ptr,  # (H, L) float32 upstream gradient
    part_ptr,  # (4, H, n_chunks, N) float32: Re/Im of sum dK conj(z^l), Re/Im of sum dK l conj(z^l)
    N: tl.constexpr, L, n_chunks,
    BLOCK_N: tl.constexpr, BLOCK_P: tl.constexpr, BLOCK_Q: tl.constexpr,
    PRECISION: tl.constexpr,
):
    h = tl.program_id(0)
    c = tl.program_id(1)
    l0 = c * (BLOCK_P * BLOCK_Q)
    p = tl.arange(0, BLOCK_P)  # (P,)
    q = tl.arange(0, BLOCK_Q)  # (Q,)
    l = l0 + BLOCK_Q * p[:, None] + q[None, :]  # (P, Q)
    g = tl.load(dk_ptr + h * L + l, mask=l < L, other=0.0)  # (P, Q)
    gq = g * q[None, :].to(tl.float32)  # (P, Q): dK * q
    m_outer = (l0 + BLOCK_Q * p).to(tl.int64)  # (P,)
    mf = m_outer.to(tl.float32)[:, None]  # (P, 1)
    plane = tl.num_programs(0) * n_chunks * N  # elements per partial plane
    base = part_ptr + (h * n_chunks + c) * N
    for n0 in range(0, N, BLOCK_N):
        n = n0 + tl.arange(0, BLOCK_N)  # (BN,)
        nmask = n < N
        a = tl.load(a_ptr + h * N + n, mask=nmask, other=0.0)
        t = tl.load(t_ptr + h * N + n, mask=nmask, other=0)
        vr, vi = _zpow(a[None, :], t[None, :], q.to(tl.int64)[:, None])  # (Q, BN): z^q
        ur, ui = _zpow(a[None, :], t[None, :], m_outer[:, None])  # (P, BN): z^(l0 + Q p)
        # G = sum_q dK conj(z^q) = gr - i gi;  G1 = sum_q dK q conj(z^q) = g1r - i g1i   (P, BN)
        gr = tl.dot(g, vr, input_precision=PRECISION)
        gi = tl.dot(g, vi, input_precision=PRECISION)
        g1r = tl.dot(gq, vr, input_precision=PRECISION)
        g1i = tl.dot(gq, vi, input_precision=PRECISION)
        # S0 = sum_p conj(U) G;  S1 = sum_p conj(U) (m_p G + G1),  conj(U) = ur - i ui
        s0r = tl.sum(ur * gr - ui * gi, axis=0)  # (BN,)
        s0i = -tl.sum(ur * gi + ui * gr, axis=0)
        hr = mf * gr + g1r  # (P, BN)
        hi = mf * gi + g1i
        s1r = tl.sum(ur * hr - ui * hi, axis=0)
        s1i = -tl.sum(ur * hi + ui * hr, axis=0)
        tl.store(base + n, s0r, mask=nmask)
        tl.store(base + plane + n, s0i, mask=nmask)
        tl.store(base + 2 * plane + n, s1r, mask=nmask)
        tl.store(base + 3 * plane + n, s1i, mask=nmask)


def _alloc(*shape: int, device) -> torch.Tensor:
    """Uninitialised float32 buffer that the kernels overwrite entirely (tests poison it)."""
    return torch.empty(*shape, device=device, dtype=torch.float32)


def _blocks(N: int, L: int) -> tuple[int, int, int]:
    """Tile sizes (BLOCK_N, BLOCK_P, BLOCK_Q); every one >= 16 as ``tl.dot`` needs."""
    block_q = min(64, max(16, triton.next_power_of_2(math.isqrt(max(L - 1, 0)) + 1)))
    block_p = min(64, max(16, triton.next_power_of_2(triton.cdiv(max(L, 1), block_q))))
    block_n = min(32, max(16, triton.next_power_of_2(N)))
    return block_n, block_p, block_q


def _planes(coef: torch.Tensor, log_z: torch.Tensor):
    """Float32 planes (Re coef, Im coef, Re log_z) and the int64 fixed-point phase of log_z."""
    cr = coef.real.to(torch.float32).contiguous()  # (H, N)
    ci = coef.imag.to(torch.float32).contiguous()
    a = log_z.real.to(torch.float32).contiguous()
    turns = log_z.imag.to(torch.float64) / (2.0 * math.pi)  # (H, N) phase per step, in turns
    frac = turns - torch.floor(turns)  # [0, 1]
    phase = torch.round(frac * 2.0 ** _PHASE_BITS).to(torch.int64) & ((1 << _PHASE_BITS) - 1)
    return cr, ci, a, phase.contiguous()


def _check(coef: torch.Tensor, log_z: torch.Tensor, L: int) -> None:
    if not (coef.is_complex() and log_z.is_complex()):
        raise TypeError(f"vandermonde: coef and log_z must be complex, got {coef.dtype} and {log_z.dtype}")
    if coef.dim() != 2 or coef.shape != log_z.shape:
        raise ValueError(f"vandermonde: coef and log_z must both be (H, N), got {tuple(coef.shape)} "
                         f"and {tuple(log_z.shape)}")
    if coef.device != log_z.device:
        raise ValueError(f"vandermonde: coef on {coef.device} but log_z on {log_z.device}")
    if int(L) != L or L < 0 or L >= 2 ** 31:
        raise ValueError(f"vandermonde: L must be an integer in [0, 2^31), got {L!r}")


class _Vandermonde(torch.autograd.Function):
    @staticmethod
    def forward(ctx, coef, log_z, L, precision):
        H, N = coef.shape
        cr, ci, a, phase = _planes(coef, log_z)
        out = _alloc(H, L, device=coef.device)  # (H, L)
        block_n, block_p, block_q = _blocks(N, L)
        n_chunks = triton.cdiv(L, block_p * block_q)
        if H * N > 0 and n_chunks > 0:
            _vandermonde_fwd_kernel[(H, n_chunks)](
                cr, ci, a, phase, out, N, L,
                BLOCK_N=block_n, BLOCK_P=block_p, BLOCK_Q=block_q, PRECISION=precision)
        elif L > 0:
            out.zero_()
        ctx.save_for_backward(coef, a, phase)
        ctx.L, ctx.precision = L, precision
        real = torch.float64 if coef.dtype == torch.complex128 else torch.float32
        return out.to(real)

    @staticmethod
    def backward(ctx, grad_k):
        coef, a, phase = ctx.saved_tensors
        H, N = coef.shape
        L = ctx.L
        block_n, block_p, block_q = _blocks(N, L)
        n_chunks = triton.cdiv(L, block_p * block_q)
        s0 = torch.zeros(H, N, device=coef.device, dtype=coef.dtype)  # (H, N) sum dK conj(z^l)
        s1 = torch.zeros_like(s0)  # (H, N) sum dK l conj(z^l)
        if H * N > 0 and n_chunks > 0:
            g = grad_k.to(torch.float32).contiguous()  # (H, L)
            part = _alloc(4, H, n_chunks, N, device=coef.device)
            _vandermonde_bwd_kernel[(H, n_chunks)](
                a, phase, g, part, N, L, n_chunks,
                BLOCK_N=block_n, BLOCK_P=block_p, BLOCK_Q=block_q, PRECISION=ctx.precision)
            sums = part.sum(dim=2)  # (4, H, N)
            s0 = torch.complex(sums[0], sums[1]).to(coef.dtype)
            s1 = torch.complex(sums[2], sums[3]).to(coef.dtype)
        grad_coef = 2.0 * s0 if ctx.needs_input_grad[0] else None
        grad_log_z = 2.0 * coef.conj() * s1 if ctx.needs_input_grad[1] else None
        return grad_coef, grad_log_z, None, None


def vandermonde(coef, log_z, L):
    """Triton Vandermonde product ``K[h, l] = 2 Re(sum_n coef[h, n] exp(log_z[h, n] l))``.

    Parameters
    ----------
    coef, log_z : Tensor, shape (H, N), complex (on CUDA, or CPU under ``TRITON_INTERPRET=1``)
        Coefficients and logarithms of the Vandermonde nodes.
    L : int
        Kernel length.

    Returns
    -------
    K : Tensor, shape (H, L), float32 (float64 for complex128 inputs)
        Differentiable with respect to ``coef`` and ``log_z``.

    Notes
    -----
    Arithmetic is float32 whatever the input precision (complex128 inputs are rounded to
    complex64 planes, the result is cast back to float64); use the torch backend for float64
    accuracy. Neither pass allocates ``(H, N, L)``.
    """
    _check(coef, log_z, L)
    return _Vandermonde.apply(coef, log_z, int(L), DOT_PRECISION)
