"""Fused recurrent step of SaShiMi: one launch runs one *tier pass* for one audio sample.

A tier pass is everything a tier of :class:`ssmsignal.models.SaShiMi` does between two pooling
points: its residual SSM blocks (LayerNorm -> S4 or S4D step on the state -> + D u -> GELU ->
linear to ``2 H`` -> GLU -> residual add) and feed-forward blocks (LayerNorm -> linear -> GELU
-> linear -> residual add), with a prologue that forms the pass input and an epilogue that
hands the result on:

* prologue ``PRO_EMBED``: code embedding (+ label embedding) of the previous sample;
  ``PRO_Z``: the inner tier's input written by the outer down-pool;
  ``PRO_UNFOLD``: the tier's own value after its down blocks (ring slot) plus the cached
  up-pool row of this phase;
* epilogue ``EPI_RING``: store into the pooling ring buffer and, on pooling steps, apply the
  down-pool linear map (input of the inner tier); ``EPI_UP``: apply the outer tier's up-pool
  linear map (the ``p`` unfolded rows it adds over its next ``p`` steps); ``EPI_HEAD``:
  final LayerNorm, output linear map, temperature, optional nucleus (top-p) mask and the
  Gumbel-max draw, so the sampled code is written back for the next step's embedding.

One program owns one batch row. The residual stream ``x`` stays in registers; every stage that
works in chunks (the SSM over channel blocks, the matrix-vector products over row blocks) writes
its output vector to a per-row scratch area in global memory (L1/L2 resident) and the program
reads it back whole after a CTA barrier. Weights are read from global memory (they stay in L2
across steps). The recurrent state ``(pairs, batch, 2, H, N/2)`` (real and imaginary planes) is
updated in place.

The math of each block is that of :mod:`ssmsignal.layers.s4`, :mod:`ssmsignal.layers.s4d`,
:mod:`ssmsignal.layers.blocks` and :meth:`ssmsignal.models.SaShiMi.step`; the host side
(packing, launch plan) is :mod:`ssmsignal.models._sashimi_fused`.
"""

from __future__ import annotations

import triton
import triton.language as tl

__all__ = ["tier_pass", "PRO_EMBED", "PRO_Z", "PRO_UNFOLD", "EPI_RING", "EPI_UP", "EPI_HEAD",
           "KIND_S4D", "KIND_S4", "CONFIG"]

PRO_EMBED, PRO_Z, PRO_UNFOLD = 0, 1, 2
EPI_RING, EPI_UP, EPI_HEAD = 0, 1, 2
KIND_S4D, KIND_S4 = 0, 1
#: Launch configuration: warps per program, weight elements per matrix-vector chunk (32 fp32
#: registers per thread at 8 warps), complex state elements per SSM chunk, the one-tile
#: pipelined block path where a tier fits (``single``), and loading the next chunk before the
#: current one's arithmetic (``prefetch``). Register counts: kernels/NOTES.md; the benchmark
#: sweeps these.
CONFIG = {"num_warps": 8, "tile": 8192, "ssm_tile": 2048, "single": True, "prefetch": True}


@triton.jit
def _gelu(x):
    """Exact GELU (``torch.nn.GELU()``), float32."""
    return 0.5 * x * (1.0 + tl.erf(x * 0.7071067811865476))


@triton.jit
def _layer_norm(x, mask, w_ptr, b_ptr, offs, n, eps):
    """LayerNorm of the ``(P,)`` vector ``x`` (``n`` valid entries, zeros elsewhere)."""
    mean = tl.sum(x, axis=0) / n
    d = tl.where(mask, x - mean, 0.0)
    var = tl.sum(d * d, axis=0) / n
    w = tl.load(w_ptr + offs, mask=mask, other=0.0)
    b = tl.load(b_ptr + offs, mask=mask, other=0.0)
    return d / tl.sqrt(var + eps) * w + b  # (P,)


@triton.jit
def _tile(w_ptr, ld, r0, n_rows, cols, cmask, BM: tl.constexpr):
    """Rows ``r0 .. r0 + BM`` of the row-major ``W`` (leading dimension ``ld``); rows past
    ``n_rows`` are masked (no memory access)."""
    rows = r0 + tl.arange(0, BM)  # (BM,)
    return tl.load(w_ptr + rows[:, None] * ld + cols[None, :],
                   mask=(rows < n_rows)[:, None] & cmask[None, :], other=0.0)  # (BM, K)


@triton.jit
def _linear_to(w_ptr, b_ptr, v, cols, cmask, n_in, n_out, out_ptr, BM: tl.constexpr,
               GELU: tl.constexpr, PREFETCH: tl.constexpr):
    """``out[:n_out] = act(W v + b)`` for ``W (n_out, n_in)``, in chunks of ``BM`` rows; with
    ``PREFETCH`` the next chunk's load is issued before this chunk's arithmetic."""
    w = _tile(w_ptr, n_in, 0, n_out, cols, cmask, BM)
    r0 = 0
    while r0 < n_out:
        if PREFETCH:
            w_next = _tile(w_ptr, n_in, r0 + BM, n_out, cols, cmask, BM)
        rows = r0 + tl.arange(0, BM)
        rmask = rows < n_out
        out = tl.sum(w * v[None, :], axis=1) + tl.load(b_ptr + rows, mask=rmask, other=0.0)
        if GELU:
            out = _gelu(out)
        tl.store(out_ptr + rows, out, mask=rmask)
        r0 += BM
        if PREFETCH:
            w = w_next
        else:
            w = _tile(w_ptr, n_in, r0, n_out, cols, cmask, BM)


@triton.jit
def _glu_to(w_ptr, b_ptr, g, cols, cmask, H, out_ptr, BM: tl.constexpr, PREFETCH: tl.constexpr):
    """``out[:H] = (Wv g + bv) * sigmoid(Wg g + bg)`` for ``W = [Wv; Wg] (2H, H)``, chunked."""
    hh = H * H
    wv = _tile(w_ptr, H, 0, H, cols, cmask, BM)
    wg = _tile(w_ptr + hh, H, 0, H, cols, cmask, BM)
    r0 = 0
    while r0 < H:
        if PREFETCH:
            wv_next = _tile(w_ptr, H, r0 + BM, H, cols, cmask, BM)
            wg_next = _tile(w_ptr + hh, H, r0 + BM, H, cols, cmask, BM)
        rows = r0 + tl.arange(0, BM)
        rmask = rows < H
        val = tl.sum(wv * g[None, :], axis=1) + tl.load(b_ptr + rows, mask=rmask, other=0.0)
        gate = tl.sum(wg * g[None, :], axis=1) + tl.load(b_ptr + H + rows, mask=rmask, other=0.0)
        tl.store(out_ptr + rows, val * tl.sigmoid(gate), mask=rmask)
        r0 += BM
        if PREFETCH:
            wv, wg = wv_next, wg_next
        else:
            wv = _tile(w_ptr, H, r0, H, cols, cmask, BM)
            wg = _tile(w_ptr + hh, H, r0, H, cols, cmask, BM)


@triton.jit
def _ssm(coef_ptr, d_ptr, st_ptr, u_ptr, y_ptr, H, N2, KIND: tl.constexpr, N2P: tl.constexpr,
         BC: tl.constexpr):
    """One S4/S4D step for all ``H`` channels of a row: state in place, ``GELU(y + D u)`` out.

    ``coef_ptr`` points at the block's ``(NK, 2, H, N2)`` step coefficients (S4D: ``dA, dB, 2C``;
    S4: ``conj P, a, g, e, qc, 2C``, see ``S4._discretize_step``), ``st_ptr`` at the row's
    ``(2, H, N2)`` state; ``u_ptr`` holds the normalised input, ``y_ptr`` receives the output.
    """
    hn = H * N2
    n = tl.arange(0, N2P)[None, :]  # (1, N2P)
    c0 = 0
    while c0 < H:
        ch = c0 + tl.arange(0, BC)  # (BC,)
        cm = ch < H
        m2 = cm[:, None] & (n < N2)  # (BC, N2P)
        off = ch[:, None] * N2 + n  # (BC, N2P)
        u = tl.load(u_ptr + ch, mask=cm, other=0.0)[:, None]  # (BC, 1)
        sr = tl.load(st_ptr + off, mask=m2, other=0.0)  # (BC, N2P) real part
        si = tl.load(st_ptr + hn + off, mask=m2, other=0.0)  # imaginary part
        if KIND == 0:  # S4D: x <- dA x + dB u
            ar = tl.load(coef_ptr + off, mask=m2, other=0.0)
            ai = tl.load(coef_ptr + hn + off, mask=m2, other=0.0)
            br = tl.load(coef_ptr + 2 * hn + off, mask=m2, other=0.0)
            bi = tl.load(coef_ptr + 3 * hn + off, mask=m2, other=0.0)
            nr = ar * sr - ai * si + br * u
            ni = ar * si + ai * sr + bi * u
            c_ptr = coef_ptr + 4 * hn
        else:  # S4 (DPLR bilinear, Woodbury): r = a x - g Re(P* x) + e u; x = r - qc Re(P* r)
            pr = tl.load(coef_ptr + off, mask=m2, other=0.0)
            pi = tl.load(coef_ptr + hn + off, mask=m2, other=0.0)
            s = tl.sum(pr * sr - pi * si, axis=1)[:, None]  # (BC, 1)
            ar = tl.load(coef_ptr + 2 * hn + off, mask=m2, other=0.0)
            ai = tl.load(coef_ptr + 3 * hn + off, mask=m2, other=0.0)
            gr = tl.load(coef_ptr + 4 * hn + off, mask=m2, other=0.0)
            gi = tl.load(coef_ptr + 5 * hn + off, mask=m2, other=0.0)
            er = tl.load(coef_ptr + 6 * hn + off, mask=m2, other=0.0)
            ei = tl.load(coef_ptr + 7 * hn + off, mask=m2, other=0.0)
            rr = ar * sr - ai * si - gr * s + er * u
            ri = ar * si + ai * sr - gi * s + ei * u
            t = tl.sum(pr * rr - pi * ri, axis=1)[:, None]  # (BC, 1)
            qr = tl.load(coef_ptr + 8 * hn + off, mask=m2, other=0.0)
            qi = tl.load(coef_ptr + 9 * hn + off, mask=m2, other=0.0)
            nr = rr - qr * t
            ni = ri - qi * t
            c_ptr = coef_ptr + 10 * hn
        tl.store(st_ptr + off, nr, mask=m2)
        tl.store(st_ptr + hn + off, ni, mask=m2)
        cr = tl.load(c_ptr + off, mask=m2, other=0.0)
        ci = tl.load(c_ptr + hn + off, mask=m2, other=0.0)
        y = tl.sum(cr * nr - ci * ni, axis=1)  # (BC,) Re(2C x) over the stored modes
        y += tl.load(d_ptr + ch, mask=cm, other=0.0) * tl.load(u_ptr + ch, mask=cm, other=0.0)
        tl.store(y_ptr + ch, _gelu(y), mask=cm)
        c0 += BC


@triton.jit
def _pairs_chunked(x, first, n_pairs, ln_ptr, coef_ptr, d_ptr, ow_ptr, ob_ptr, fln_ptr, w1_ptr,
                   b1_ptr, w2_ptr, b2_ptr, state_ptr, batch, b, H, N2, F, n_coef, eps, u_scr,
                   y_scr, o_scr, KIND: tl.constexpr, HAS_FF: tl.constexpr, HP: tl.constexpr,
                   N2P: tl.constexpr, FP: tl.constexpr, BC: tl.constexpr, BMG: tl.constexpr,
                   BM1: tl.constexpr, BM2: tl.constexpr, PREFETCH: tl.constexpr):
    """The blocks of a pass in chunks (any width): each stage writes its output vector to the
    row's scratch area and the program reads it back whole after a CTA barrier."""
    offs = tl.arange(0, HP)
    hm = offs < H
    fo = tl.arange(0, FP)
    fm = fo < F
    hh = H * H
    pair = first
    while pair < first + n_pairs:
        # residual SSM block: x += GLU(W GELU(SSM(LN x) + D LN x) + b)
        u = _layer_norm(x, hm, ln_ptr + pair * 2 * H, ln_ptr + pair * 2 * H + H, offs, H, eps)
        tl.store(u_scr + offs, u, mask=hm)
        tl.debug_barrier()
        _ssm(coef_ptr + pair * n_coef * H * N2, d_ptr + pair * H,
             state_ptr + (pair * batch + b) * 2 * H * N2, u_scr, y_scr, H, N2, KIND, N2P, BC)
        tl.debug_barrier()
        g = tl.load(y_scr + offs, mask=hm, other=0.0)  # (HP,)
        _glu_to(ow_ptr + pair * 2 * hh, ob_ptr + pair * 2 * H, g, offs, hm, H, o_scr, BMG,
                PREFETCH)
        tl.debug_barrier()
        x += tl.load(o_scr + offs, mask=hm, other=0.0)
        if HAS_FF:  # feed-forward block: x += W2 GELU(W1 LN x + b1) + b2
            u = _layer_norm(x, hm, fln_ptr + pair * 2 * H, fln_ptr + pair * 2 * H + H, offs,
                            H, eps)
            _linear_to(w1_ptr + pair * F * H, b1_ptr + pair * F, u, offs, hm, H, F, y_scr, BM1,
                       True, PREFETCH)
            tl.debug_barrier()
            hv = tl.load(y_scr + fo, mask=fm, other=0.0)  # (FP,)
            _linear_to(w2_ptr + pair * H * F, b2_ptr + pair * H, hv, fo, fm, F, H, o_scr, BM2,
                       False, PREFETCH)
            tl.debug_barrier()
            x += tl.load(o_scr + offs, mask=hm, other=0.0)
        pair += 1
    return x


@triton.jit
def _planes(coef_ptr, off, m2, hn, KIND: tl.constexpr):
    """The block's step-coefficient planes ``(HP, N2P)`` each (S4D: 6, the rest zeros; S4: 12)."""
    p0 = tl.load(coef_ptr + off, mask=m2, other=0.0)
    p1 = tl.load(coef_ptr + hn + off, mask=m2, other=0.0)
    p2 = tl.load(coef_ptr + 2 * hn + off, mask=m2, other=0.0)
    p3 = tl.load(coef_ptr + 3 * hn + off, mask=m2, other=0.0)
    p4 = tl.load(coef_ptr + 4 * hn + off, mask=m2, other=0.0)
    p5 = tl.load(coef_ptr + 5 * hn + off, mask=m2, other=0.0)
    if KIND == 0:
        zero = tl.zeros_like(p0)
        p6, p7, p8, p9, p10, p11 = zero, zero, zero, zero, zero, zero
    else:
        p6 = tl.load(coef_ptr + 6 * hn + off, mask=m2, other=0.0)
        p7 = tl.load(coef_ptr + 7 * hn + off, mask=m2, other=0.0)
        p8 = tl.load(coef_ptr + 8 * hn + off, mask=m2, other=0.0)
        p9 = tl.load(coef_ptr + 9 * hn + off, mask=m2, other=0.0)
        p10 = tl.load(coef_ptr + 10 * hn + off, mask=m2, other=0.0)
        p11 = tl.load(coef_ptr + 11 * hn + off, mask=m2, other=0.0)
    return p0, p1, p2, p3, p4, p5, p6, p7, p8, p9, p10, p11


@triton.jit
def _pairs_single(x, first, n_pairs, ln_ptr, coef_ptr, d_ptr, ow_ptr, ob_ptr, fln_ptr, w1_ptr,
                  b1_ptr, w2_ptr, b2_ptr, state_ptr, batch, b, H, N2, F, n_coef, eps,
                  KIND: tl.constexpr, HAS_FF: tl.constexpr, HP: tl.constexpr,
                  N2P: tl.constexpr, FP: tl.constexpr):
    """The blocks of a pass whose every stage fits one register tile (tier 0 of the defaults),
    software-pipelined: each stage's weights are loaded one stage ahead (the SSM coefficients
    of the next pair during the last linear map of this one), so an L2 round trip overlaps the
    previous stage's arithmetic. No scratch memory: layout changes stay inside Triton."""
    offs = tl.arange(0, HP)
    hm = offs < H
    rows, cols = offs[:, None], offs[None, :]
    wmask = (rows < H) & (cols < H)  # (HP, HP)
    fo = tl.arange(0, FP)
    fm = fo < F
    n = tl.arange(0, N2P)[None, :]
    m2 = (rows < H) & (n < N2)  # (HP, N2P)
    off = rows * N2 + n
    hn = H * N2
    hh = H * H
    last = first + n_pairs - 1
    p0, p1, p2, p3, p4, p5, p6, p7, p8, p9, p10, p11 = _planes(
        coef_ptr + tl.maximum(tl.minimum(first, last), 0) * n_coef * hn, off, m2, hn, KIND)
    pair = first
    while pair <= last:
        st = state_ptr + (pair * batch + b) * 2 * hn
        sr = tl.load(st + off, mask=m2, other=0.0)  # (HP, N2P)
        si = tl.load(st + hn + off, mask=m2, other=0.0)
        wo = ow_ptr + pair * 2 * hh
        wv = tl.load(wo + rows * H + cols, mask=wmask, other=0.0)  # (HP, HP) value half
        wg = tl.load(wo + hh + rows * H + cols, mask=wmask, other=0.0)  # gate half
        bv = tl.load(ob_ptr + pair * 2 * H + offs, mask=hm, other=0.0)
        bg = tl.load(ob_ptr + pair * 2 * H + H + offs, mask=hm, other=0.0)
        dd = tl.load(d_ptr + pair * H + offs, mask=hm, other=0.0)
        u = _layer_norm(x, hm, ln_ptr + pair * 2 * H, ln_ptr + pair * 2 * H + H, offs, H, eps)
        u2 = u[:, None]  # (HP, 1)
        if KIND == 0:  # S4D
            nr = p0 * sr - p1 * si + p2 * u2
            ni = p0 * si + p1 * sr + p3 * u2
            cr, ci = p4, p5
        else:  # S4, Woodbury (see _ssm)
            s = tl.sum(p0 * sr - p1 * si, axis=1)[:, None]
            rr = p2 * sr - p3 * si - p4 * s + p6 * u2
            ri = p2 * si + p3 * sr - p5 * s + p7 * u2
            t = tl.sum(p0 * rr - p1 * ri, axis=1)[:, None]
            nr = rr - p8 * t
            ni = ri - p9 * t
            cr, ci = p10, p11
        tl.store(st + off, nr, mask=m2)
        tl.store(st + hn + off, ni, mask=m2)
        g = _gelu(tl.sum(cr * nr - ci * ni, axis=1) + dd * u)  # (HP,)
        if HAS_FF:
            w1 = tl.load(w1_ptr + pair * F * H + fo[:, None] * H + cols,
                         mask=fm[:, None] & (cols < H), other=0.0)  # (FP, HP)
            b1 = tl.load(b1_ptr + pair * F + fo, mask=fm, other=0.0)
        val = tl.sum(wv * g[None, :], axis=1) + bv
        gate = tl.sum(wg * g[None, :], axis=1) + bg
        x += val * tl.sigmoid(gate)
        nxt = tl.minimum(pair + 1, last)
        if HAS_FF:
            u = _layer_norm(x, hm, fln_ptr + pair * 2 * H, fln_ptr + pair * 2 * H + H, offs,
                            H, eps)
            hid = _gelu(tl.sum(w1 * u[None, :], axis=1) + b1)  # (FP,)
            w2 = tl.load(w2_ptr + pair * H * F + rows * F + fo[None, :],
                         mask=(rows < H) & fm[None, :], other=0.0)  # (HP, FP)
            b2 = tl.load(b2_ptr + pair * H + offs, mask=hm, other=0.0)
            p0, p1, p2, p3, p4, p5, p6, p7, p8, p9, p10, p11 = _planes(
                coef_ptr + nxt * n_coef * hn, off, m2, hn, KIND)
            x += tl.sum(w2 * hid[None, :], axis=1) + b2
        else:
            p0, p1, p2, p3, p4, p5, p6, p7, p8, p9, p10, p11 = _planes(
                coef_ptr + nxt * n_coef * hn, off, m2, hn, KIND)
        pair += 1
    return x


@triton.jit(do_not_specialize=["slot", "first", "n_pairs", "pool_now", "batch"])
def _tier_pass_kernel(
        # prologue
        in_ptr, next_ptr, emb_ptr, label_ptr, label_emb_ptr, unf_ptr, slot,
        # blocks: pairs [first, first + n_pairs) of the tier's packed weights
        first, n_pairs, ln_ptr, coef_ptr, d_ptr, ow_ptr, ob_ptr,
        fln_ptr, w1_ptr, b1_ptr, w2_ptr, b2_ptr, state_ptr, eps,
        # epilogue
        out_ptr, pool_now, pw_ptr, pb_ptr, pz_ptr, ek, er,
        noise_ptr, forced_ptr, codes_ptr, logits_ptr, inv_temp, top_p,
        # sizes
        batch, H, N2, F, n_coef, scr_ptr, scr_stride,
        PRO: tl.constexpr, EPI: tl.constexpr, KIND: tl.constexpr, HAS_FF: tl.constexpr,
        HAS_LABEL: tl.constexpr, TOP_P: tl.constexpr, SINGLE: tl.constexpr,
        PREFETCH: tl.constexpr,
        HP: tl.constexpr, N2P: tl.constexpr, FP: tl.constexpr, EKP: tl.constexpr,
        YS: tl.constexpr, BC: tl.constexpr, BMG: tl.constexpr, BM1: tl.constexpr, BM2: tl.constexpr,
        BME: tl.constexpr):
    b = tl.program_id(0).to(tl.int64)
    offs = tl.arange(0, HP)  # (HP,)
    hm = offs < H
    scr = scr_ptr + b * scr_stride
    u_scr = scr  # (HP,) normalised input of an SSM block
    y_scr = scr + HP  # (YS,) SSM output / feed-forward hidden
    o_scr = y_scr + YS  # (HP,) output of a block's last linear map

    # ---- prologue: the pass input x (HP,) in registers
    if PRO == 0:
        code = tl.load(next_ptr + b)
        x = tl.load(emb_ptr + code * H + offs, mask=hm, other=0.0)
        if HAS_LABEL:
            lab = tl.load(label_ptr + b)
            x += tl.load(label_emb_ptr + lab * H + offs, mask=hm, other=0.0)
    elif PRO == 1:
        x = tl.load(in_ptr + b * H + offs, mask=hm, other=0.0)
    else:
        row = b * ek + slot * H  # ek = p H here: the ring and unfolded rows are (p, H)
        x = tl.load(in_ptr + row + offs, mask=hm, other=0.0)
        x += tl.load(unf_ptr + row + offs, mask=hm, other=0.0)

    # ---- blocks
    if SINGLE:
        x = _pairs_single(x, first, n_pairs, ln_ptr, coef_ptr, d_ptr, ow_ptr, ob_ptr, fln_ptr,
                          w1_ptr, b1_ptr, w2_ptr, b2_ptr, state_ptr, batch, b, H, N2, F, n_coef,
                          eps, KIND, HAS_FF, HP, N2P, FP)
    else:
        x = _pairs_chunked(x, first, n_pairs, ln_ptr, coef_ptr, d_ptr, ow_ptr, ob_ptr, fln_ptr,
                           w1_ptr, b1_ptr, w2_ptr, b2_ptr, state_ptr, batch, b, H, N2, F, n_coef,
                           eps, u_scr, y_scr, o_scr, KIND, HAS_FF, HP, N2P, FP, BC, BMG, BM1,
                           BM2, PREFETCH)

    # ---- epilogue
    if EPI == 0:  # ring slot <- x; on pooling steps the down-pool map of the whole ring
        tl.store(out_ptr + b * ek + slot * H + offs, x, mask=hm)
        if pool_now != 0:
            tl.debug_barrier()
            ko = tl.arange(0, EKP)
            km = ko < ek
            v = tl.load(out_ptr + b * ek + ko, mask=km, other=0.0)  # (EKP,) the p slots
            _linear_to(pw_ptr, pb_ptr, v, ko, km, ek, er, pz_ptr + b * er, BME, False, PREFETCH)
    elif EPI == 1:  # outer tier's up-pool map: its p unfolded rows
        _linear_to(pw_ptr, pb_ptr, x, offs, hm, H, er, pz_ptr + b * er, BME, False, PREFETCH)
    else:  # head and sampling
        u = _layer_norm(x, hm, pw_ptr, pw_ptr + H, offs, H, eps)
        lrow = logits_ptr + b * er
        _linear_to(pb_ptr, pb_ptr + er * H, u, offs, hm, H, er, lrow, BME, False, False)
        tl.debug_barrier()
        co = tl.arange(0, EKP)
        cmask = co < er
        z = tl.load(lrow + co, mask=cmask, other=float("-inf")) * inv_temp  # (EKP,)
        if TOP_P:  # keep the smallest set of codes whose probability reaches top_p
            zs = tl.sort(z, 0, descending=True)
            p = tl.exp(zs - tl.max(zs, axis=0))
            p = p / tl.sum(p, axis=0)
            before = tl.cumsum(p, 0) - p  # mass of the codes ranked above
            cut = tl.min(tl.where(before < top_p, zs, float("inf")), axis=0)
            z = tl.where(z >= cut, z, float("-inf"))
        noise = tl.load(noise_ptr + b * er + co, mask=cmask, other=0.0)
        code = tl.argmax(tl.where(cmask, z + noise, float("-inf")), axis=0).to(tl.int64)
        forced = tl.load(forced_ptr + b)
        code = tl.where(forced >= 0, forced, code)
        tl.store(codes_ptr + b, code)
        tl.store(next_ptr + b, code)  # the next step's input


def tier_pass(*, pro, epi, kind, batch, H, N2, F, eps, first, n_pairs, weights, state, scratch,
              inputs, next_codes, emb=None, labels=None, label_emb=None, unfolded=None, slot=0,
              out=None, pool_now=False, pool_w=None, pool_b=None, pool_out=None, ek=0, er=0,
              noise=None, forced=None, codes=None, logits=None, inv_temp=1.0, top_p=1.0):
    """Launch one tier pass for every batch row (grid ``(batch,)``); see the module docstring.

    ``weights`` is the tier's packed tuple ``(ln, coef, D, out_w, out_b, ff_ln, w1, b1, w2,
    b2)`` (float32, contiguous, stacked over block pairs); the head epilogue takes the final
    LayerNorm ``(2, H)`` as ``pool_w`` and the output map ``[W (C, H) | b (C,)]`` flattened as
    ``pool_b``. Unused pointers may be any tensor of the right device. Tensors are used in
    place: the launch has fixed arguments, so it can be captured in a CUDA graph.
    """
    ln, coef, D, ow, ob, fln, w1, b1, w2, b2 = weights
    n_coef = 6 if kind == KIND_S4D else 12
    HP = triton.next_power_of_2(H)
    N2P = triton.next_power_of_2(N2)
    FP = triton.next_power_of_2(max(F, 1))
    EKP = triton.next_power_of_2(max(ek if epi == EPI_RING else H, er if epi == EPI_HEAD else 1))
    if epi == EPI_UP:
        EKP = max(EKP, HP)
    tile, ssm_tile = CONFIG["tile"], CONFIG["ssm_tile"]
    YS = max(FP, HP)
    assert scratch.shape[1] >= 2 * HP + YS, "scratch too small"
    some = ln
    _tier_pass_kernel[(batch,)](
        inputs, next_codes, some if emb is None else emb, some if labels is None else labels,
        some if label_emb is None else label_emb, some if unfolded is None else unfolded, slot,
        first, n_pairs, ln, coef, D, ow, ob, fln, w1, b1, w2, b2, state, eps,
        some if out is None else out, int(bool(pool_now)), some if pool_w is None else pool_w,
        some if pool_b is None else pool_b, some if pool_out is None else pool_out, ek, er,
        some if noise is None else noise, some if forced is None else forced,
        some if codes is None else codes, some if logits is None else logits,
        float(inv_temp), float(top_p),
        batch, H, N2, F, n_coef, scratch, scratch.stride(0),
        PRO=pro, EPI=epi, KIND=kind, HAS_FF=F > 0, HAS_LABEL=labels is not None,
        TOP_P=top_p < 1.0, HP=HP,
        PREFETCH=bool(CONFIG["prefetch"]), SINGLE=bool(CONFIG["single"]) and HP * N2P <= ssm_tile
        and 2 * HP * HP <= tile and FP * HP <= tile, N2P=N2P, FP=FP, EKP=EKP, YS=YS,
        BC=max(1, min(HP, ssm_tile // N2P)), BMG=max(1, min(HP, tile // 2 // HP)),
        BM1=max(1, min(FP, tile // HP)), BM2=max(1, min(HP, tile // FP)),
        BME=max(1, min(triton.next_power_of_2(max(er, 1)), tile // (EKP if epi == EPI_RING else HP))),
        num_warps=CONFIG["num_warps"])
