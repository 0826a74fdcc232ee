"""Triton Vandermonde product behind the S4D convolution kernel, forward and backward.

``K[h, l] = 2 Re(sum_n coef[h, n] * exp(log_z[h, n] * l))`` (S4D, Gu et al. 2022, "On the
Parameterization and Initialization of Diagonal SSMs"), the same function as
:func:`ssmsignal.kernels.reference.vandermonde`.

How it is computed
------------------
One program owns one channel ``h`` and one chunk of ``P * Q`` positions starting at ``l0``
(``P = BLOCK_P``, ``Q = BLOCK_Q``). With ``l = l0 + Q p + q``,
``z^l = z^l0 * z^(Q p) * z^q``, so the chunk is the real part of a complex matrix product::

    K[p, q] = 2 Re sum_n  U[p, n] V[n, q],   U = (coef z^l0)[n] * R[n, p],   R = z^(Q p),  V = z^q

i.e. two real ``tl.dot`` per block of ``n`` with no transcendental function in the main loop.
The three power tables ``V (H, N, Q)``, ``R (H, N, P)`` and ``Z0 = z^l0 (H, N, chunks)`` are
computed once per call by one launch of :func:`_powers_kernel`, each entry directly as
``exp(log_z m)``, and kept for the backward pass.

Phase accuracy: ``Im(log_z) * m`` reaches ~1e5 rad at ``L = 65536`` where a float32 product is off
by ~0.01 rad. :func:`_powers_kernel` multiplies and reduces the phase modulo 2 pi in float64
(exact to ~1e-11 rad) before float32 ``cos``/``sin``, so every table entry is correctly rounded
to about float32 precision whatever ``m`` is, and ``U = coef z^l0 R`` adds two roundings.

Backward (PyTorch's convention for complex leaves, ``grad = dLoss/dRe + i dLoss/dIm``)::

    dcoef[h, n]  = 2 * sum_l dK[h, l] * conj(z^l)
    dlog_z[h, n] = 2 * conj(coef[h, n]) * sum_l dK[h, l] * l * conj(z^l)

In a chunk, ``sum_l dK conj(z^l) = conj(z^l0) sum_p conj(R[p]) G[p]`` with
``G = dK[p, :] @ conj(V)^T`` (two real ``tl.dot``); the ``l``-weighted sum uses
``l = (l0 + Q p) + q`` and a second product with ``q dK``. One program per (block of ``n``, h)
walks the chunks in order and keeps the sums in registers, then writes both gradients: one
launch, deterministic, no atomics. Memory: ``O(H (N + L))`` plus the tables,
``O(H N (P + Q + L / (P Q)))``.
"""

from __future__ import annotations

import math

import torch
import triton
import triton.language as tl

from ._common import new_buffer

__all__ = ["vandermonde"]

#: Precision of the in-kernel matrix products, forward and backward: "ieee" (FMA, exact
#: float32) or "tf32x3" (tensor cores, three tf32 products: about float32 accuracy). The
#: backward uses BWD_PRECISION on full 64 x 64 chunks (L > 2048) and "ieee" below, where the
#: kernel is cheap; those are the configurations the GPU tests check.
DOT_PRECISION = "ieee"
BWD_PRECISION = "tf32x3"
#: Warps per program and software-pipelining depth of the forward and backward kernels
#: (deeper pipelining prefetches the table loads but costs registers; see NOTES.md).
NUM_WARPS = 4
NUM_STAGES = 1
#: Rows and columns of a chunk per step of the backward kernel. "ieee" products hold whole
#: operand rows per thread, so they take 32 x 16 slices; tensor-core products take 64 x 32
#: (64 x 64 spills; ptxas report in NOTES.md).
BWD_SLICES = {"ieee": (32, 16), "tf32x3": (64, 32)}


@triton.jit
def _powers_kernel(
    logz_ptr,  # (H, N, 2) float32: log_z as interleaved (Re, Im)
    out_ptr,  # (2, H, N, Q + P + C) float32: Re and Im of the tables V | R | Z0
    H, J,  # J = Q + P + C entries per (h, n)
    N: tl.constexpr,  # constexpr: a runtime loop bound breaks the interpreter under numpy >= 2.4
    BLOCK_P: tl.constexpr, BLOCK_Q: tl.constexpr,
    BLOCK_N: tl.constexpr, BLOCK_J: tl.constexpr,
):
    h = tl.program_id(0)
    j = tl.program_id(1) * BLOCK_J + tl.arange(0, BLOCK_J)  # (BJ,)
    # exponent of entry j: V = z^q (j < Q), R = z^(Q p), Z0 = z^(P Q c); exact in float64
    m = tl.where(j < BLOCK_Q, j, tl.where(j < BLOCK_Q + BLOCK_P, (j - BLOCK_Q) * BLOCK_Q,
                                          (j - BLOCK_Q - BLOCK_P) * (BLOCK_P * BLOCK_Q)))
    m = m.to(tl.float64)[None, :]  # (1, BJ)
    for n0 in range(0, N, BLOCK_N):
        n = n0 + tl.arange(0, BLOCK_N)  # (BN,)
        nmask = n < N
        a = tl.load(logz_ptr + (h * N + n) * 2, mask=nmask, other=0.0).to(tl.float64)[:, None]
        b = tl.load(logz_ptr + (h * N + n) * 2 + 1, mask=nmask, other=0.0).to(tl.float64)[:, None]
        phase = b * m  # (BN, BJ) float64
        phase = phase - 6.283185307179586 * tl.floor(phase * 0.15915494309189535 + 0.5)
        angle = phase.to(tl.float32)  # [-pi, pi]
        mag = tl.exp((a * m).to(tl.float32))
        offs = (h * N + n)[:, None] * J + j[None, :]  # (BN, BJ)
        mask = nmask[:, None] & (j < J)[None, :]
        tl.store(out_ptr + offs, mag * tl.cos(angle), mask=mask)
        tl.store(out_ptr + H * N * J + offs, mag * tl.sin(angle), mask=mask)


@triton.jit
def _vandermonde_fwd_kernel(
    coef_ptr,  # (H, N, 2) float32 interleaved coef
    tab_ptr,  # (2, H, N, J) float32 power tables from _powers_kernel
    k_ptr,  # (H, L) float32 output
    H, L, J,
    N: tl.constexpr,
    BLOCK_N: tl.constexpr, BLOCK_P: tl.constexpr, BLOCK_Q: tl.constexpr,
    PRECISION: tl.constexpr,
):
    h = tl.program_id(0)
    c = tl.program_id(1)
    p = tl.arange(0, BLOCK_P)  # (P,)
    q = tl.arange(0, BLOCK_Q)  # (Q,)
    im = H * N * J  # offset of the imaginary plane
    acc = tl.zeros((BLOCK_P, BLOCK_Q), dtype=tl.float32)
    for n0 in range(0, N, BLOCK_N):
        n = n0 + tl.arange(0, BLOCK_N)  # (BN,)
        nmask = n < N
        hn = h * N + n  # (BN,)
        cr = tl.load(coef_ptr + 2 * hn, mask=nmask, other=0.0)  # padding: coef 0
        ci = tl.load(coef_ptr + 2 * hn + 1, mask=nmask, other=0.0)
        z0 = hn * J + BLOCK_Q + BLOCK_P + c  # (BN,) z^l0
        zr = tl.load(tab_ptr + z0, mask=nmask, other=0.0)
        zi = tl.load(tab_ptr + im + z0, mask=nmask, other=0.0)
        r = hn[None, :] * J + BLOCK_Q + p[:, None]  # (P, BN) R = z^(Q p)
        rr = tl.load(tab_ptr + r, mask=nmask[None, :], other=0.0)
        ri = tl.load(tab_ptr + im + r, mask=nmask[None, :], other=0.0)
        v = hn[:, None] * J + q[None, :]  # (BN, Q) V = z^q
        vr = tl.load(tab_ptr + v, mask=nmask[:, None], other=0.0)
        vi = tl.load(tab_ptr + im + v, mask=nmask[:, None], other=0.0)
        sr = cr * zr - ci * zi  # (BN,) coef z^l0
        si = cr * zi + ci * zr
        ur = sr[None, :] * rr - si[None, :] * ri  # (P, BN) U = coef z^(l0 + Q p)
        ui = sr[None, :] * ri + si[None, :] * rr
        acc = tl.dot(ur, vr, acc, input_precision=PRECISION)  # Re(U V) = Ur Vr - Ui Vi
        acc = tl.dot(-ui, vi, acc, input_precision=PRECISION)
    l = c * (BLOCK_P * BLOCK_Q) + BLOCK_Q * p[:, None] + q[None, :]  # (P, Q)
    tl.store(k_ptr + h * L + l, 2.0 * acc, mask=l < L)


@triton.jit
def _vandermonde_bwd_kernel(
    coef_ptr, tab_ptr,  # as in the forward
    dk_ptr,  # (H, L) float32 upstream gradient
    dcoef_ptr, dlogz_ptr,  # (H, N, 2) float32 outputs: interleaved complex gradients
    H, L, J, C,
    N: tl.constexpr,
    BLOCK_N: tl.constexpr, BLOCK_P: tl.constexpr, BLOCK_Q: tl.constexpr,
    BLOCK_PS: tl.constexpr, BLOCK_QS: tl.constexpr,
    PRECISION: tl.constexpr,
):
    n = tl.program_id(0) * BLOCK_N + tl.arange(0, BLOCK_N)  # (BN,)
    h = tl.program_id(1)
    nmask = n < N
    hn = h * N + n  # (BN,)
    im = H * N * J
    s0r = tl.zeros((BLOCK_N,), dtype=tl.float32)  # S0 = sum_l dK conj(z^l)
    s0i = tl.zeros((BLOCK_N,), dtype=tl.float32)
    s1r = tl.zeros((BLOCK_N,), dtype=tl.float32)  # S1 = sum_l dK l conj(z^l)
    s1i = tl.zeros((BLOCK_N,), dtype=tl.float32)
    c = 0
    while c < C:  # chunks in order: deterministic (a while loop: see N above)
        t0r = tl.zeros((BLOCK_N,), dtype=tl.float32)  # T0 = sum_p conj(R) G
        t0i = tl.zeros((BLOCK_N,), dtype=tl.float32)
        t1r = tl.zeros((BLOCK_N,), dtype=tl.float32)  # T1 = sum_p conj(R) (m_p G + G1)
        t1i = tl.zeros((BLOCK_N,), dtype=tl.float32)
        # rows of the chunk in slices of BLOCK_PS and columns in slices of BLOCK_QS, so that
        # the float32 FMA products (which hold whole operand rows per thread) do not spill.
        for p0 in range(0, BLOCK_P, BLOCK_PS):
            p = p0 + tl.arange(0, BLOCK_PS)  # (PS,)
            r = hn[None, :] * J + BLOCK_Q + p[:, None]  # (PS, BN) R = z^(Q p)
            rr = tl.load(tab_ptr + r, mask=nmask[None, :], other=0.0)
            ri = tl.load(tab_ptr + im + r, mask=nmask[None, :], other=0.0)
            row = c * (BLOCK_P * BLOCK_Q) + BLOCK_Q * p  # (PS,) l0 + Q p
            # G = sum_q dK conj(V) = gr - i gi;  G1 = sum_q dK q conj(V) = g1r - i g1i  (PS, BN)
            gr = tl.zeros((BLOCK_PS, BLOCK_N), dtype=tl.float32)
            gi = tl.zeros((BLOCK_PS, BLOCK_N), dtype=tl.float32)
            g1r = tl.zeros((BLOCK_PS, BLOCK_N), dtype=tl.float32)
            g1i = tl.zeros((BLOCK_PS, BLOCK_N), dtype=tl.float32)
            for q0 in range(0, BLOCK_Q, BLOCK_QS):
                q = q0 + tl.arange(0, BLOCK_QS)  # (QS,)
                l = row[:, None] + q[None, :]  # (PS, QS)
                g = tl.load(dk_ptr + h * L + l, mask=l < L, other=0.0)  # (PS, QS)
                gq = g * q[None, :].to(tl.float32)  # dK * q
                v = hn[None, :] * J + q[:, None]  # (QS, BN) V^T slice
                vrt = tl.load(tab_ptr + v, mask=nmask[None, :], other=0.0)
                vit = tl.load(tab_ptr + im + v, mask=nmask[None, :], other=0.0)
                gr = tl.dot(g, vrt, gr, input_precision=PRECISION)
                gi = tl.dot(g, vit, gi, input_precision=PRECISION)
                g1r = tl.dot(gq, vrt, g1r, input_precision=PRECISION)
                g1i = tl.dot(gq, vit, g1i, input_precision=PRECISION)
            t0r += tl.sum(rr * gr - ri * gi, axis=0)  # conj(R) = rr - i ri
            t0i -= tl.sum(rr * gi + ri * gr, axis=0)
            mp = row.to(tl.float32)[:, None]  # (PS, 1)
            hr = mp * gr + g1r  # (PS, BN)
            hi = mp * gi + g1i
            t1r += tl.sum(rr * hr - ri * hi, axis=0)
            t1i -= tl.sum(rr * hi + ri * hr, axis=0)
        z0 = hn * J + BLOCK_Q + BLOCK_P + c  # conj(z^l0) = zr - i zi
        zr = tl.load(tab_ptr + z0, mask=nmask, other=0.0)
        zi = tl.load(tab_ptr + im + z0, mask=nmask, other=0.0)
        s0r += zr * t0r + zi * t0i
        s0i += zr * t0i - zi * t0r
        s1r += zr * t1r + zi * t1i
        s1i += zr * t1i - zi * t1r
        c += 1
    cr = tl.load(coef_ptr + 2 * hn, mask=nmask, other=0.0)
    ci = tl.load(coef_ptr + 2 * hn + 1, mask=nmask, other=0.0)
    tl.store(dcoef_ptr + 2 * hn, 2.0 * s0r, mask=nmask)  # dcoef = 2 S0
    tl.store(dcoef_ptr + 2 * hn + 1, 2.0 * s0i, mask=nmask)
    tl.store(dlogz_ptr + 2 * hn, 2.0 * (cr * s1r + ci * s1i), mask=nmask)  # 2 conj(coef) S1
    tl.store(dlogz_ptr + 2 * hn + 1, 2.0 * (cr * s1i - ci * s1r), mask=nmask)


def _blocks(N: int, L: int) -> tuple[int, int, int]:
    """Tile sizes (BLOCK_N, BLOCK_P, BLOCK_Q); every one >= 16 as ``tl.dot`` needs."""
    block_q = min(64, max(16, triton.next_power_of_2(math.isqrt(max(L - 1, 0)) + 1)))
    block_p = min(64, max(16, triton.next_power_of_2(triton.cdiv(max(L, 1), block_q))))
    return 16, block_p, block_q


def _check(coef: torch.Tensor, log_z: torch.Tensor, L: int) -> None:
    if not (coef.is_complex() and log_z.is_complex()):
        raise TypeError(f"vandermonde: coef and log_z must be complex, got {coef.dtype} and "
                        f"{log_z.dtype}")
    if coef.dim() != 2 or coef.shape != log_z.shape:
        raise ValueError(f"vandermonde: coef and log_z must both be (H, N), got "
                         f"{tuple(coef.shape)} and {tuple(log_z.shape)}")
    if coef.device != log_z.device:
        raise ValueError(f"vandermonde: coef on {coef.device} but log_z on {log_z.device}")
    if int(L) != L or L < 0 or L >= 2 ** 31:
        raise ValueError(f"vandermonde: L must be an integer in [0, 2^31), got {L!r}")


class _Vandermonde(torch.autograd.Function):
    @staticmethod
    def forward(ctx, coef, log_z, L, precision):  # precision: (forward, backward)
        H, N = coef.shape
        coef32 = torch.view_as_real(coef.to(torch.complex64).contiguous())  # (H, N, 2)
        logz32 = torch.view_as_real(log_z.to(torch.complex64).contiguous())  # (H, N, 2)
        f32 = dict(dtype=torch.float32, device=coef.device)
        out = new_buffer((H, L), **f32)  # (H, L)
        block_n, block_p, block_q = _blocks(N, L)
        n_chunks = triton.cdiv(L, block_p * block_q)
        J = block_q + block_p + n_chunks
        tables = new_buffer((2, H, N, J), **f32)  # V | R | Z0, see _powers_kernel
        if H * N > 0 and n_chunks > 0:
            _powers_kernel[(H, triton.cdiv(J, 64))](
                logz32, tables, H, J, N=N, BLOCK_P=block_p, BLOCK_Q=block_q,
                BLOCK_N=16, BLOCK_J=64)
            _vandermonde_fwd_kernel[(H, n_chunks)](
                coef32, tables, out, H, L, J, N=N,
                BLOCK_N=block_n, BLOCK_P=block_p, BLOCK_Q=block_q, PRECISION=precision[0],
                num_warps=NUM_WARPS, num_stages=NUM_STAGES)
        elif L > 0:
            out.zero_()
        ctx.save_for_backward(coef, coef32, tables)
        ctx.L, ctx.precision = L, precision
        real = torch.float64 if coef.dtype == torch.complex128 else torch.float32
        return out.to(real)

    @staticmethod
    def backward(ctx, grad_k):
        coef, coef32, tables = ctx.saved_tensors
        H, N = coef.shape
        L = ctx.L
        block_n, block_p, block_q = _blocks(N, L)
        n_chunks = triton.cdiv(L, block_p * block_q)
        bwd_precision = ctx.precision[1] if block_p * block_q >= 4096 else "ieee"
        rows, cols = BWD_SLICES[bwd_precision]
        # dcoef, dlog_z as (H, N, 2) each
        grads = new_buffer((2, H, N, 2), torch.float32, coef.device)
        if H * N > 0 and n_chunks > 0:
            g = grad_k.to(torch.float32).contiguous()  # (H, L)
            _vandermonde_bwd_kernel[(triton.cdiv(N, block_n), H)](
                coef32, tables, g, grads[0], grads[1], H, L, tables.shape[-1], n_chunks, N=N,
                BLOCK_N=block_n, BLOCK_P=block_p, BLOCK_Q=block_q, BLOCK_PS=min(rows, block_p),
                BLOCK_QS=min(cols, block_q), PRECISION=bwd_precision, num_warps=NUM_WARPS,
                num_stages=NUM_STAGES)
        else:
            grads.zero_()
        grad_coef, grad_log_z = torch.view_as_complex(grads).to(coef.dtype)  # (H, N) each
        return (grad_coef if ctx.needs_input_grad[0] else None,
                grad_log_z if ctx.needs_input_grad[1] else None, None, None)


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
    Arithmetic is float32 (the power tables reduce phases in float64) whatever the input
    precision: complex128 inputs are rounded to complex64 and the result is cast back to
    float64; use the torch backend for float64 accuracy. Neither pass allocates ``(H, N, L)``.
    """
    _check(coef, log_z, L)
    return _Vandermonde.apply(coef, log_z, int(L), (DOT_PRECISION, BWD_PRECISION))
