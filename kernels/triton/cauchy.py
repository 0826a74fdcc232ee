"""Triton Cauchy kernel of DPLR S4, forward and backward.

``out[..., l] = sum_n v[..., n] / (z[l] - w[..., n])`` (S4, Gu et al. 2022), the same function
as :func:`ssmsignal.kernels.reference.cauchy`.

How it is computed
------------------
Leading dimensions are broadcast and flattened to ``B`` rows. One program owns a tile of
``BLOCK_B`` rows by ``BLOCK_L`` nodes and loops over ``n`` in registers; complex numbers are
pairs of float32 planes and ``1 / d = conj(d) / |d|^2`` costs one reciprocal per term.

Backward (the op is holomorphic in each input, so PyTorch's vector-Jacobian product is
``grad_in = sum grad_out * conj(d out / d in)``), with ``r = 1 / (z[l] - w[b, n])``::

    dv[b, n] = sum_l g[b, l] conj(r)
    dw[b, n] = conj(v[b, n]) * sum_l g[b, l] conj(r)^2
    dz[l]    = -sum_b sum_n g[b, l] conj(v[b, n]) conj(r)^2

The same tiling computes all three: sums over ``l`` are written as partial sums per l-tile and
sums over ``b`` as partial sums per b-tile, both finished by ``torch.sum`` (deterministic, no
atomics). No ``(B, N, L)`` tensor is built in either pass.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

__all__ = ["cauchy"]

#: Padding for Im z (and -Im w) in masked lanes, so that z - w never vanishes there (the lanes
#: are never stored; this only keeps inf/NaN out of them).
_PAD = tl.constexpr(1.0e15)


@triton.jit
def _cauchy_fwd_kernel(
    vw_ptr,  # (4, N, B) float32: Re v, Im v, Re w, Im w (transposed: rows contiguous per n)
    z_ptr,  # (L, 2) float32: interleaved Re z, Im z
    out_ptr,  # (B, L, 2) float32: interleaved complex output
    B, L,
    N: tl.constexpr,  # constexpr: a runtime loop bound breaks the interpreter under numpy >= 2.4
    BLOCK_B: tl.constexpr, BLOCK_L: tl.constexpr,
):
    b = tl.program_id(0) * BLOCK_B + tl.arange(0, BLOCK_B)  # (BB,)
    l = tl.program_id(1) * BLOCK_L + tl.arange(0, BLOCK_L)  # (BL,)
    bmask = b < B
    lmask = l < L
    zr = tl.load(z_ptr + 2 * l, mask=lmask, other=0.0)[None, :]  # (1, BL)
    zi = tl.load(z_ptr + 2 * l + 1, mask=lmask, other=_PAD)[None, :]
    acc_r = tl.zeros((BLOCK_B, BLOCK_L), dtype=tl.float32)
    acc_i = tl.zeros((BLOCK_B, BLOCK_L), dtype=tl.float32)
    plane = N * B
    for n in range(N):
        vr = tl.load(vw_ptr + n * B + b, mask=bmask, other=0.0)[:, None]  # (BB, 1)
        vi = tl.load(vw_ptr + plane + n * B + b, mask=bmask, other=0.0)[:, None]
        wr = tl.load(vw_ptr + 2 * plane + n * B + b, mask=bmask, other=0.0)[:, None]
        wi = tl.load(vw_ptr + 3 * plane + n * B + b, mask=bmask, other=-_PAD)[:, None]
        dr = zr - wr  # (BB, BL): d = z - w
        di = zi - wi
        inv = 1.0 / (dr * dr + di * di)  # 1 / |d|^2
        acc_r += (vr * dr + vi * di) * inv  # v conj(d) / |d|^2
        acc_i += (vi * dr - vr * di) * inv
    offs = (b[:, None] * L + l[None, :]) * 2  # (BB, BL)
    mask = bmask[:, None] & lmask[None, :]
    tl.store(out_ptr + offs, acc_r, mask=mask)
    tl.store(out_ptr + offs + 1, acc_i, mask=mask)


@triton.jit
def _cauchy_bwd_kernel(
    vw_ptr,  # (4, N, B) float32 as in the forward
    z_ptr,  # (L, 2) float32
    g_ptr,  # (B, L, 2) float32 upstream gradient
    pvw_ptr,  # (4, n_ltiles, N, B) float32: Re/Im sum_l g conj(r), Re/Im sum_l g conj(r)^2
    pz_ptr,  # (n_btiles, L, 2) float32: partial sum_b sum_n g conj(v) conj(r)^2
    B, L,
    N: tl.constexpr,
    BLOCK_B: tl.constexpr, BLOCK_L: tl.constexpr,
):
    tile_b = tl.program_id(0)
    tile_l = tl.program_id(1)
    n_ltiles = tl.num_programs(1)
    b = tile_b * BLOCK_B + tl.arange(0, BLOCK_B)  # (BB,)
    l = tile_l * BLOCK_L + tl.arange(0, BLOCK_L)  # (BL,)
    bmask = b < B
    lmask = l < L
    mask = bmask[:, None] & lmask[None, :]
    zr = tl.load(z_ptr + 2 * l, mask=lmask, other=0.0)[None, :]  # (1, BL)
    zi = tl.load(z_ptr + 2 * l + 1, mask=lmask, other=_PAD)[None, :]
    goffs = (b[:, None] * L + l[None, :]) * 2  # (BB, BL)
    gr = tl.load(g_ptr + goffs, mask=mask, other=0.0)  # zero outside: partial sums stay exact
    gi = tl.load(g_ptr + goffs + 1, mask=mask, other=0.0)
    dz_r = tl.zeros((BLOCK_B, BLOCK_L), dtype=tl.float32)
    dz_i = tl.zeros((BLOCK_B, BLOCK_L), dtype=tl.float32)
    plane = N * B
    pplane = n_ltiles * N * B
    pbase = pvw_ptr + tile_l * N * B
    for n in range(N):
        vr = tl.load(vw_ptr + n * B + b, mask=bmask, other=0.0)[:, None]  # (BB, 1)
        vi = tl.load(vw_ptr + plane + n * B + b, mask=bmask, other=0.0)[:, None]
        wr = tl.load(vw_ptr + 2 * plane + n * B + b, mask=bmask, other=0.0)[:, None]
        wi = tl.load(vw_ptr + 3 * plane + n * B + b, mask=bmask, other=-_PAD)[:, None]
        dr = zr - wr  # (BB, BL)
        di = zi - wi
        inv = 1.0 / (dr * dr + di * di)
        cr = dr * inv  # conj(r) = d / |d|^2
        ci = di * inv
        ar = gr * cr - gi * ci  # g conj(r)
        ai = gr * ci + gi * cr
        sr = cr * cr - ci * ci  # conj(r)^2
        si = 2.0 * cr * ci
        qr = gr * sr - gi * si  # g conj(r)^2
        qi = gr * si + gi * sr
        dz_r += vr * qr + vi * qi  # conj(v) g conj(r)^2
        dz_i += vr * qi - vi * qr
        offs = pbase + n * B + b  # (BB,)
        tl.store(offs, tl.sum(ar, axis=1), mask=bmask)
        tl.store(offs + pplane, tl.sum(ai, axis=1), mask=bmask)
        tl.store(offs + 2 * pplane, tl.sum(qr, axis=1), mask=bmask)
        tl.store(offs + 3 * pplane, tl.sum(qi, axis=1), mask=bmask)
    zoffs = (tile_b * L + l) * 2  # (BL,)
    tl.store(pz_ptr + zoffs, -tl.sum(dz_r, axis=0), mask=lmask)
    tl.store(pz_ptr + zoffs + 1, -tl.sum(dz_i, axis=0), mask=lmask)


_BLOCK_B, _BLOCK_L = 16, 128


def _alloc(*shape: int, device) -> torch.Tensor:
    """Uninitialised float32 buffer that the kernels overwrite entirely (tests poison it)."""
    return torch.empty(*shape, device=device, dtype=torch.float32)


def _tiles(B: int, L: int) -> tuple[int, int]:
    block_l = min(_BLOCK_L, max(16, triton.next_power_of_2(L)))
    block_b = min(_BLOCK_B, max(2, triton.next_power_of_2(B)))
    return block_b, block_l


def _rows(v: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """Stack (B, N) complex rows into the kernel's (4, N, B) float32 planes."""
    return torch.stack([v.real.T, v.imag.T, w.real.T, w.imag.T]).to(torch.float32).contiguous()


class _Cauchy(torch.autograd.Function):
    @staticmethod
    def forward(ctx, v, z, w):
        B, N = v.shape  # (B, N) complex, w the same
        L = z.shape[0]
        vw = _rows(v, w)  # (4, N, B)
        zf = torch.view_as_real(z.to(torch.complex64)).contiguous()  # (L, 2)
        out = _alloc(B, L, 2, device=v.device)  # (B, L, 2): Re, Im
        if B * L > 0 and N > 0:
            bb, bl = _tiles(B, L)
            _cauchy_fwd_kernel[(triton.cdiv(B, bb), triton.cdiv(L, bl))](
                vw, zf, out, B, L, N=N, BLOCK_B=bb, BLOCK_L=bl)
        else:
            out.zero_()
        ctx.save_for_backward(v, w, vw, zf)
        ctx.z_dtype = z.dtype
        return torch.view_as_complex(out)  # (B, L)

    @staticmethod
    def backward(ctx, grad_out):
        v, w, vw, zf = ctx.saved_tensors
        B, N = v.shape
        L = zf.shape[0]
        sum_r = torch.zeros(B, N, device=v.device, dtype=torch.complex64)  # sum_l g conj(r)
        sum_r2 = torch.zeros_like(sum_r)  # sum_l g conj(r)^2
        grad_z = torch.zeros(L, device=v.device, dtype=torch.complex64)
        if B * L > 0 and N > 0:
            bb, bl = _tiles(B, L)
            nb, nl = triton.cdiv(B, bb), triton.cdiv(L, bl)
            g = torch.view_as_real(grad_out.to(torch.complex64).contiguous())  # (B, L, 2)
            pvw = _alloc(4, nl, N, B, device=v.device)
            pz = _alloc(nb, L, 2, device=v.device)
            _cauchy_bwd_kernel[(nb, nl)](vw, zf, g, pvw, pz, B, L, N=N, BLOCK_B=bb, BLOCK_L=bl)
            s = pvw.sum(dim=1)  # (4, N, B)
            sum_r = torch.complex(s[0], s[1]).T  # (B, N)
            sum_r2 = torch.complex(s[2], s[3]).T
            grad_z = torch.view_as_complex(pz.sum(dim=0).contiguous())  # (L,)
        grad_v = sum_r.to(v.dtype) if ctx.needs_input_grad[0] else None
        grad_z = grad_z.to(ctx.z_dtype) if ctx.needs_input_grad[1] else None
        grad_w = (v.conj() * sum_r2.to(v.dtype)) if ctx.needs_input_grad[2] else None
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
    out = _Cauchy.apply(v.reshape(-1, N), z.to(cdtype), w.reshape(-1, N))  # (B, L)
    return out.to(cdtype).reshape(*lead, z.shape[0])
