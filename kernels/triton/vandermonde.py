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
computed once per call by :func:`_powers_kernel`, each entry directly as ``exp(log_z m)``.

Phase accuracy: ``Im(log_z) * m`` reaches ~1e5 rad at ``L = 65536`` where a float32 product is off
by ~0.01 rad. :func:`_powers_kernel` multiplies and reduces the phase modulo 2 pi in float64
(exact to ~1e-11 rad) before float32 ``cos``/``sin``, so every table entry is correctly rounded
to about float32 precision whatever ``m`` is, and ``U = coef z^l0 R`` adds two roundings.

Backward (PyTorch's convention for complex leaves, ``grad = dLoss/dRe + i dLoss/dIm``)::

    dcoef[h, n]  = 2 * sum_l dK[h, l] * conj(z^l)
    dlog_z[h, n] = 2 * conj(coef[h, n]) * sum_l dK[h, l] * l * conj(z^l)

In a chunk, ``sum_l dK conj(z^l) = conj(z^l0) sum_p conj(R[p]) G[p]`` with
``G = dK[p, :] @ conj(V)^T`` (two real ``tl.dot``); the ``l``-weighted sum uses
``l = (l0 + Q p) + q`` and a second product with ``q dK``. Each program writes its partial sums
per (h, chunk, n); ``torch.sum`` over chunks finishes: deterministic, no atomics.
Memory: ``O(H (N + L))`` plus tables and partial sums of ``O(H N (P + Q + L / (P Q)))``.
"""

from __future__ import annotations

import math

import torch
import triton
import triton.language as tl

__all__ = ["vandermonde"]

#: Precision of the in-kernel matrix products: "ieee" (FMA, exact float32) or "tf32x3".
DOT_PRECISION = "ieee"
#: Warps per program of the forward and backward kernels.
NUM_WARPS = 4


@triton.jit
def _powers_kernel(
    logz_ptr,  # (H, N, 2) float32: log_z as interleaved (Re, Im)
    out_ptr,  # (2, H, N, J) float32: Re and Im of z^(j * stride)
    H, J, stride,
    N: tl.constexpr,  # constexpr: a runtime loop bound breaks the interpreter under numpy >= 2.4
    BLOCK_N: tl.constexpr, BLOCK_J: tl.constexpr,
):
    h = tl.program_id(0)
    j = tl.program_id(1) * BLOCK_J + tl.arange(0, BLOCK_J)  # (BJ,)
    m = (j.to(tl.float64) * stride)[None, :]  # (1, BJ) exponent, exact in float64
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
def _load_tables(coef_ptr, v_ptr, r_ptr, z0_ptr, h, c, n, nmask, H, N, C,
                 BLOCK_P: tl.constexpr, BLOCK_Q: tl.constexpr):
    """Per n-block: coef (BN,), z^l0 (BN,), R (P, BN), V (BN, Q) as (re, im) pairs; 0 padded."""
    p = tl.arange(0, BLOCK_P)
    q = tl.arange(0, BLOCK_Q)
    hn = h * N + n  # (BN,)
    cr = tl.load(coef_ptr + 2 * hn, mask=nmask, other=0.0)
    ci = tl.load(coef_ptr + 2 * hn + 1, mask=nmask, other=0.0)
    zr = tl.load(z0_ptr + hn * C + c, mask=nmask, other=0.0)
    zi = tl.load(z0_ptr + H * N * C + hn * C + c, mask=nmask, other=0.0)
    r_offs = hn[None, :] * BLOCK_P + p[:, None]  # (P, BN)
    rmask = nmask[None, :]
    rr = tl.load(r_ptr + r_offs, mask=rmask, other=0.0)
    ri = tl.load(r_ptr + H * N * BLOCK_P + r_offs, mask=rmask, other=0.0)
    v_offs = hn[:, None] * BLOCK_Q + q[None, :]  # (BN, Q)
    vmask = nmask[:, None]
    vr = tl.load(v_ptr + v_offs, mask=vmask, other=0.0)
    vi = tl.load(v_ptr + H * N * BLOCK_Q + v_offs, mask=vmask, other=0.0)
    return cr, ci, zr, zi, rr, ri, vr, vi


@triton.jit
def _vandermonde_fwd_kernel(
    coef_ptr,  # (H, N, 2) float32 interleaved coef
    v_ptr, r_ptr, z0_ptr,  # power tables (2, H, N, Q), (2, H, N, P), (2, H, N, C)
    k_ptr,  # (H, L) float32 output
    H, L, C,
    N: tl.constexpr,
    BLOCK_N: tl.constexpr, BLOCK_P: tl.constexpr, BLOCK_Q: tl.constexpr,
    PRECISION: tl.constexpr,
):
    h = tl.program_id(0)
    c = tl.program_id(1)
    acc = tl.zeros((BLOCK_P, BLOCK_Q), dtype=tl.float32)
    for n0 in range(0, N, BLOCK_N):
        n = n0 + tl.arange(0, BLOCK_N)  # (BN,)
        cr, ci, zr, zi, rr, ri, vr, vi = _load_tables(
            coef_ptr, v_ptr, r_ptr, z0_ptr, h, c, n, n < N, H, N, C, BLOCK_P, BLOCK_Q)
        sr = cr * zr - ci * zi  # (BN,) coef z^l0
        si = cr * zi + ci * zr
        ur = sr[None, :] * rr - si[None, :] * ri  # (P, BN) U = coef z^(l0 + Q p)
        ui = sr[None, :] * ri + si[None, :] * rr
        acc = tl.dot(ur, vr, acc, input_precision=PRECISION)  # Re(U V) = Ur Vr - Ui Vi
        acc = tl.dot(-ui, vi, acc, input_precision=PRECISION)
    p = tl.arange(0, BLOCK_P)
    q = tl.arange(0, BLOCK_Q)
    l = c * (BLOCK_P * BLOCK_Q) + BLOCK_Q * p[:, None] + q[None, :]  # (P, Q)
    tl.store(k_ptr + h * L + l, 2.0 * acc, mask=l < L)


@triton.jit
def _vandermonde_bwd_kernel(
    v_ptr, r_ptr, z0_ptr,  # power tables as in the forward
    dk_ptr,  # (H, L) float32 upstream gradient
    part_ptr,  # (4, H, C, N) float32: Re/Im sum dK conj(z^l), Re/Im sum dK l conj(z^l)
    H, L, C,
    N: tl.constexpr,
    BLOCK_N: tl.constexpr, BLOCK_P: tl.constexpr, BLOCK_Q: tl.constexpr,
    BLOCK_QS: tl.constexpr,
    PRECISION: tl.constexpr,
):
    h = tl.program_id(0)
    c = tl.program_id(1)
    p = tl.arange(0, BLOCK_P)  # (P,)
    row = c * (BLOCK_P * BLOCK_Q) + BLOCK_Q * p  # (P,) l0 + Q p
    m_outer = row.to(tl.float32)[:, None]  # (P, 1)
    plane = H * C * N
    for n0 in range(0, N, BLOCK_N):
        n = n0 + tl.arange(0, BLOCK_N)  # (BN,)
        nmask = n < N
        hn = h * N + n  # (BN,)
        zr = tl.load(z0_ptr + hn * C + c, mask=nmask, other=0.0)  # (BN,) z^l0
        zi = tl.load(z0_ptr + plane + hn * C + c, mask=nmask, other=0.0)
        r_offs = hn[None, :] * BLOCK_P + p[:, None]  # (P, BN)
        rr = tl.load(r_ptr + r_offs, mask=nmask[None, :], other=0.0)  # R = z^(Q p)
        ri = tl.load(r_ptr + H * N * BLOCK_P + r_offs, mask=nmask[None, :], other=0.0)
        # G = sum_q dK conj(V) = gr - i gi;  G1 = sum_q dK q conj(V) = g1r - i g1i   (P, BN),
        # in slices of BLOCK_QS columns so that the float32 FMA products do not spill.
        gr = tl.zeros((BLOCK_P, BLOCK_N), dtype=tl.float32)
        gi = tl.zeros((BLOCK_P, BLOCK_N), dtype=tl.float32)
        g1r = tl.zeros((BLOCK_P, BLOCK_N), dtype=tl.float32)
        g1i = tl.zeros((BLOCK_P, BLOCK_N), dtype=tl.float32)
        for q0 in range(0, BLOCK_Q, BLOCK_QS):
            q = q0 + tl.arange(0, BLOCK_QS)  # (QS,)
            l = row[:, None] + q[None, :]  # (P, QS)
            g = tl.load(dk_ptr + h * L + l, mask=l < L, other=0.0)  # (P, QS)
            gq = g * q[None, :].to(tl.float32)  # dK * q
            v_offs = hn[None, :] * BLOCK_Q + q[:, None]  # (QS, BN)
            vrt = tl.load(v_ptr + v_offs, mask=nmask[None, :], other=0.0)  # V^T slice
            vit = tl.load(v_ptr + H * N * BLOCK_Q + v_offs, mask=nmask[None, :], other=0.0)
            gr = tl.dot(g, vrt, gr, input_precision=PRECISION)
            gi = tl.dot(g, vit, gi, input_precision=PRECISION)
            g1r = tl.dot(gq, vrt, g1r, input_precision=PRECISION)
            g1i = tl.dot(gq, vit, g1i, input_precision=PRECISION)
        # T0 = sum_p conj(R) G;  T1 = sum_p conj(R) (m_p G + G1);  conj(R) = rr - i ri
        t0r = tl.sum(rr * gr - ri * gi, axis=0)  # (BN,)
        t0i = -tl.sum(rr * gi + ri * gr, axis=0)
        hr = m_outer * gr + g1r  # (P, BN)
        hi = m_outer * gi + g1i
        t1r = tl.sum(rr * hr - ri * hi, axis=0)
        t1i = -tl.sum(rr * hi + ri * hr, axis=0)
        # multiply by conj(z^l0) = zr - i zi
        offs = (h * C + c) * N + n  # (BN,)
        tl.store(part_ptr + offs, zr * t0r + zi * t0i, mask=nmask)
        tl.store(part_ptr + plane + offs, zr * t0i - zi * t0r, mask=nmask)
        tl.store(part_ptr + 2 * plane + offs, zr * t1r + zi * t1i, mask=nmask)
        tl.store(part_ptr + 3 * plane + offs, zr * t1i - zi * t1r, mask=nmask)


def _alloc(*shape: int, device) -> torch.Tensor:
    """Uninitialised float32 buffer that the kernels overwrite entirely (tests poison it)."""
    return torch.empty(*shape, device=device, dtype=torch.float32)


def _blocks(N: int, L: int) -> tuple[int, int, int]:
    """Tile sizes (BLOCK_N, BLOCK_P, BLOCK_Q); every one >= 16 as ``tl.dot`` needs."""
    block_q = min(64, max(16, triton.next_power_of_2(math.isqrt(max(L - 1, 0)) + 1)))
    block_p = min(64, max(16, triton.next_power_of_2(triton.cdiv(max(L, 1), block_q))))
    return 16, block_p, block_q


def _powers(logz: torch.Tensor, J: int, stride: int) -> torch.Tensor:
    """``z^(j * stride)`` for ``j < J`` as float32 planes ``(2, H, N, J)``; logz is (H, N, 2)."""
    H, N = logz.shape[:2]
    out = _alloc(2, H, N, J, device=logz.device)
    block_j = min(64, triton.next_power_of_2(max(J, 1)))
    _powers_kernel[(H, triton.cdiv(J, block_j))](logz, out, H, J, stride, N=N,
                                                  BLOCK_N=16, BLOCK_J=block_j)
    return out


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
        coef32 = torch.view_as_real(coef.to(torch.complex64).contiguous())  # (H, N, 2)
        logz32 = torch.view_as_real(log_z.to(torch.complex64).contiguous())  # (H, N, 2)
        out = _alloc(H, L, device=coef.device)  # (H, L)
        block_n, block_p, block_q = _blocks(N, L)
        n_chunks = triton.cdiv(L, block_p * block_q)
        tables = ()
        if H * N > 0 and n_chunks > 0:
            tables = (_powers(logz32, block_q, 1),  # V = z^q        (2, H, N, Q)
                      _powers(logz32, block_p, block_q),  # R = z^(Q p)  (2, H, N, P)
                      _powers(logz32, n_chunks, block_p * block_q))  # z^l0 (2, H, N, C)
            _vandermonde_fwd_kernel[(H, n_chunks)](
                coef32, *tables, out, H, L, n_chunks, N=N,
                BLOCK_N=block_n, BLOCK_P=block_p, BLOCK_Q=block_q, PRECISION=precision,
                num_warps=NUM_WARPS)
        elif L > 0:
            out.zero_()
        ctx.save_for_backward(coef, *tables)
        ctx.L, ctx.precision = L, precision
        real = torch.float64 if coef.dtype == torch.complex128 else torch.float32
        return out.to(real)

    @staticmethod
    def backward(ctx, grad_k):
        coef, *tables = ctx.saved_tensors
        H, N = coef.shape
        L = ctx.L
        block_n, block_p, block_q = _blocks(N, L)
        n_chunks = triton.cdiv(L, block_p * block_q)
        s0 = torch.zeros_like(coef)  # (H, N) sum dK conj(z^l)
        s1 = torch.zeros_like(coef)  # (H, N) sum dK l conj(z^l)
        if tables:
            g = grad_k.to(torch.float32).contiguous()  # (H, L)
            part = _alloc(4, H, n_chunks, N, device=coef.device)
            _vandermonde_bwd_kernel[(H, n_chunks)](
                *tables, g, part, H, L, n_chunks, N=N, BLOCK_N=block_n, BLOCK_P=block_p,
                BLOCK_Q=block_q, BLOCK_QS=16, PRECISION=ctx.precision, num_warps=NUM_WARPS)
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
    Arithmetic is float32 (the power tables reduce phases in float64) whatever the input
    precision: complex128 inputs are rounded to complex64 and the result is cast back to
    float64; use the torch backend for float64 accuracy. Neither pass allocates ``(H, N, L)``.
    """
    _check(coef, log_z, L)
    return _Vandermonde.apply(coef, log_z, int(L), DOT_PRECISION)
