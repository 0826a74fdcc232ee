"""Triton Cauchy kernel of DPLR S4, forward and backward.

``out[..., l] = sum_n v[..., n] / (z[l] - w[..., n])`` (S4, Gu et al. 2022), the same function
as :func:`ssmsignal.kernels.reference.cauchy`.

How it is computed
------------------
Leading dimensions are broadcast and flattened to ``B`` rows. One program owns one row ``b``
and ``BLOCK_L`` nodes ``z[l]`` and loops over ``n``: each step reads four scalars (``v[b, n]``,
``w[b, n]``, the same for every thread) and updates ``BLOCK_L`` accumulators, so the loop is pure
arithmetic. Complex numbers are pairs of float32 registers; ``1 / d = conj(d) / |d|^2`` costs one
(approximate, 2-ulp) reciprocal per term.

Backward (the op is holomorphic in each input, so PyTorch's vector-Jacobian product is
``grad_in = sum grad_out * conj(d out / d in)``), with ``r = 1 / (z[l] - w[b, n])``::

    dv[b, n] = sum_l g[b, l] conj(r)
    dw[b, n] = conj(v[b, n]) * sum_l g[b, l] conj(r)^2
    dz[l]    = -sum_b sum_n g[b, l] conj(v[b, n]) conj(r)^2

The same tiling computes all three: sums over ``l`` are written as partial sums per l-tile and
sums over ``b`` as one partial row per ``b`` (only when ``z`` needs a gradient), both finished by
``torch.sum`` (deterministic, no atomics). No ``(B, N, L)`` tensor is built in either pass.
"""

from __future__ import annotations

import math

import torch
import triton
import triton.language as tl

from ._common import new_buffer

__all__ = ["cauchy"]

#: Im z in masked lanes: far from every w, so z - w never vanishes there (those lanes are never
#: stored; this only keeps inf/NaN out of them).
_PAD = tl.constexpr(1.0e15)


@triton.jit
def _term(zr, zi, v_ptr, w_ptr, k):
    """(v_k, conj(1 / (z - w_k))) for scalar index k: four scalar loads, one reciprocal."""
    vr = tl.load(v_ptr + 2 * k)
    vi = tl.load(v_ptr + 2 * k + 1)
    dr = zr - tl.load(w_ptr + 2 * k)  # (BL,) d = z - w
    di = zi - tl.load(w_ptr + 2 * k + 1)
    inv = tl.fdiv(1.0, dr * dr + di * di)  # 1 / |d|^2
    return vr, vi, dr * inv, di * inv  # conj(1 / d) = d / |d|^2


@triton.jit
def _cauchy_fwd_kernel(
    v_ptr, w_ptr,  # (B, N, 2) float32: interleaved complex rows
    z_ptr,  # (L, 2) float32
    out_ptr,  # (B, L, 2) float32
    L,
    N: tl.constexpr,  # constexpr: a runtime loop bound breaks the interpreter under numpy >= 2.4
    BLOCK_L: tl.constexpr,
):
    b = tl.program_id(0)
    l = tl.program_id(1) * BLOCK_L + tl.arange(0, BLOCK_L)  # (BL,)
    lmask = l < L
    zr = tl.load(z_ptr + 2 * l, mask=lmask, other=0.0)  # (BL,)
    zi = tl.load(z_ptr + 2 * l + 1, mask=lmask, other=_PAD)
    acc_r = tl.zeros((BLOCK_L,), dtype=tl.float32)
    acc_i = tl.zeros((BLOCK_L,), dtype=tl.float32)
    for n in range(N):
        vr, vi, cr, ci = _term(zr, zi, v_ptr, w_ptr, b * N + n)
        acc_r += vr * cr + vi * ci  # v / d = v (cr - i ci)
        acc_i += vi * cr - vr * ci
    offs = (b * L + l) * 2
    tl.store(out_ptr + offs, acc_r, mask=lmask)
    tl.store(out_ptr + offs + 1, acc_i, mask=lmask)


@triton.jit
def _cauchy_bwd_kernel(
    v_ptr, w_ptr, z_ptr,  # as in the forward
    g_ptr,  # (B, L, 2) float32 upstream gradient
    pvw_ptr,  # (4, n_ltiles, B, N) float32: Re/Im sum_l g conj(r), Re/Im sum_l g conj(r)^2
    pz_ptr,  # (B, L, 2) float32: per-row terms sum_n g conj(v) conj(r)^2 (if WITH_DZ)
    B, L,
    N: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_L: tl.constexpr, WITH_DZ: tl.constexpr,
):
    # A (BLOCK_N, BLOCK_L) tile per step: one reduction over l serves BLOCK_N terms.
    # Padding: Im z = +_PAD and Im w = -_PAD keep z - w far from 0 (finite r) and g = v = 0 there
    # make every padded term exactly 0, so padded lanes can join the reductions.
    b = tl.program_id(0)
    tile = tl.program_id(1)
    l = tile * BLOCK_L + tl.arange(0, BLOCK_L)  # (BL,)
    lmask = l < L
    zr = tl.load(z_ptr + 2 * l, mask=lmask, other=0.0)[None, :]  # (1, BL)
    zi = tl.load(z_ptr + 2 * l + 1, mask=lmask, other=_PAD)[None, :]
    offs = (b * L + l) * 2
    gr = tl.load(g_ptr + offs, mask=lmask, other=0.0)[None, :]  # (1, BL)
    gi = tl.load(g_ptr + offs + 1, mask=lmask, other=0.0)[None, :]
    dz_r = tl.zeros((BLOCK_L,), dtype=tl.float32)
    dz_i = tl.zeros((BLOCK_L,), dtype=tl.float32)
    pplane = tl.num_programs(1) * B * N
    for n0 in range(0, N, BLOCK_N):
        n = n0 + tl.arange(0, BLOCK_N)  # (BN,)
        nmask = n < N
        k = 2 * (b * N + n)
        vr = tl.load(v_ptr + k, mask=nmask, other=0.0)[:, None]  # (BN, 1)
        vi = tl.load(v_ptr + k + 1, mask=nmask, other=0.0)[:, None]
        dr = zr - tl.load(w_ptr + k, mask=nmask, other=0.0)[:, None]  # (BN, BL) d = z - w
        di = zi - tl.load(w_ptr + k + 1, mask=nmask, other=-_PAD)[:, None]
        inv = tl.fdiv(tl.full(dr.shape, 1.0, tl.float32), dr * dr + di * di)
        cr = dr * inv  # conj(r) = d / |d|^2
        ci = di * inv
        sr = cr * cr - ci * ci  # conj(r)^2
        si = 2.0 * cr * ci
        qr = gr * sr - gi * si  # g conj(r)^2
        qi = gr * si + gi * sr
        if WITH_DZ:
            dz_r += tl.sum(vr * qr + vi * qi, axis=0)  # conj(v) g conj(r)^2
            dz_i += tl.sum(vr * qi - vi * qr, axis=0)
        pidx = pvw_ptr + (tile * B + b) * N + n  # (BN,)
        tl.store(pidx, tl.sum(gr * cr - gi * ci, axis=1), mask=nmask)  # g conj(r)
        tl.store(pidx + pplane, tl.sum(gr * ci + gi * cr, axis=1), mask=nmask)
        tl.store(pidx + 2 * pplane, tl.sum(qr, axis=1), mask=nmask)
        tl.store(pidx + 3 * pplane, tl.sum(qi, axis=1), mask=nmask)
    if WITH_DZ:
        tl.store(pz_ptr + offs, -dz_r, mask=lmask)
        tl.store(pz_ptr + offs + 1, -dz_i, mask=lmask)


def _block_l(L: int) -> int:
    """Nodes per program of the forward kernel (one row, a loop over n)."""
    return min(512, max(16, triton.next_power_of_2(L)))


def _bwd_tiles(N: int, L: int) -> tuple[int, int]:
    """(BLOCK_N, BLOCK_L) tile of the backward kernel."""
    return min(16, triton.next_power_of_2(N)), min(128, max(16, triton.next_power_of_2(L)))


class _Cauchy(torch.autograd.Function):
    @staticmethod
    def forward(ctx, v, z, w):
        B, N = v.shape  # (B, N) complex64 contiguous, w the same
        L = z.shape[0]
        vf, wf = torch.view_as_real(v), torch.view_as_real(w)  # (B, N, 2)
        zf = torch.view_as_real(z)  # (L, 2)
        out = new_buffer((B, L, 2), torch.float32, v.device)  # (B, L, 2): Re, Im
        if B * L > 0 and N > 0:
            bl = _block_l(L)
            _cauchy_fwd_kernel[(B, triton.cdiv(L, bl))](vf, wf, zf, out, L, N=N, BLOCK_L=bl)
        else:
            out.zero_()
        ctx.save_for_backward(v, z, w)
        return torch.view_as_complex(out)  # (B, L)

    @staticmethod
    def backward(ctx, grad_out):
        v, z, w = ctx.saved_tensors
        B, N = v.shape
        L = z.shape[0]
        sum_r = torch.zeros_like(v)  # (B, N) sum_l g conj(r)
        sum_r2 = torch.zeros_like(v)  # (B, N) sum_l g conj(r)^2
        grad_z = torch.zeros_like(z)  # (L,)
        with_dz = ctx.needs_input_grad[1]
        if B * L > 0 and N > 0:
            bn, bl = _bwd_tiles(N, L)
            nl = triton.cdiv(L, bl)
            g = torch.view_as_real(grad_out.to(torch.complex64).contiguous())  # (B, L, 2)
            f32 = dict(dtype=torch.float32, device=v.device)
            pvw = new_buffer((4, nl, B, N), **f32)  # partial sums over l tiles
            pz = new_buffer((B, L, 2), **f32) if with_dz else pvw  # per-row terms of dz
            _cauchy_bwd_kernel[(B, nl)](
                torch.view_as_real(v), torch.view_as_real(w), torch.view_as_real(z), g, pvw, pz,
                B, L, N=N, BLOCK_N=bn, BLOCK_L=bl, WITH_DZ=with_dz)
            s = pvw.sum(dim=1)  # (4, B, N)
            sum_r = torch.complex(s[0], s[1])  # (B, N)
            sum_r2 = torch.complex(s[2], s[3])
            if with_dz:
                grad_z = torch.view_as_complex(pz.sum(dim=0))  # (L,)
        grad_v = sum_r if ctx.needs_input_grad[0] else None
        grad_z = grad_z if with_dz else None
        grad_w = v.conj() * sum_r2 if ctx.needs_input_grad[2] else None
        return grad_v, grad_z, grad_w


def cauchy(v, z, w):
    """Triton Cauchy kernel ``out[..., l] = sum_n v[..., n] / (z[l] - w[..., n])``.

    Parameters
    ----------
    v, w : Tensor, shape (..., N), complex; leading dimensions broadcast against each other
    z : Tensor, shape (L,), complex
        All on CUDA (or CPU under ``TRITON_INTERPRET=1``).

    Returns
    -------
    Tensor, shape (..., L), complex64 (complex128 if any input is complex128)
        Differentiable with respect to ``v``, ``z`` and ``w``.

    Notes
    -----
    Arithmetic is float32 whatever the input precision; use the torch backend for float64.
    """
    for name, t in (("v", v), ("z", z), ("w", w)):
        if not t.is_complex():
            raise TypeError(f"cauchy: {name} must be complex, got {t.dtype}")
        if t.device != v.device:
            raise ValueError(f"cauchy: v is on {v.device} but {name} is on {t.device}")
    if z.dim() != 1:
        raise ValueError(f"cauchy: z must be 1-D (L,), got shape {tuple(z.shape)}")
    if v.dim() < 1 or w.dim() < 1 or v.shape[-1] != w.shape[-1]:
        raise ValueError(f"cauchy: v and w must be (..., N) with the same N, got {tuple(v.shape)} "
                         f"and {tuple(w.shape)}")
    wide = torch.complex128 in (v.dtype, z.dtype, w.dtype)
    cdtype = torch.complex128 if wide else torch.complex64
    v, w = torch.broadcast_tensors(v.to(cdtype), w.to(cdtype))  # (..., N)
    lead, N = v.shape[:-1], v.shape[-1]
    B = math.prod(lead)
    rows = [t.to(torch.complex64).reshape(B, N).contiguous() for t in (v, w)]  # (B, N) each
    out = _Cauchy.apply(rows[0], z.to(torch.complex64).contiguous(), rows[1])  # (B, L)
    return out.to(cdtype).reshape(*lead, z.shape[0])
