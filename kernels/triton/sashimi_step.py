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

Grid ``(batch, S)``: ``S`` programs share one batch row (``S = 1`` unless the host splits a
wide tier over several multiprocessors at small batch). The residual stream ``x`` stays in
registers, the same in all ``S`` programs. Blocks that fit one register tile (tier 0 of the
defaults) run software-pipelined in registers (:func:`_pairs_single`); wider ones
(:func:`_pairs_chunked`) work in chunks through a per-program scratch area: program ``j`` runs
the SSM of channel slice ``j`` and the products with its column slice of each matrix, writes
the partial sums, and after a barrier (a CTA barrier, or a counter in global memory for
``S > 1``) every program adds the ``S`` partials in the same order. Weights are read from
global memory (they stay in L2 across steps). The recurrent state ``(pairs, batch, 2, H, N/2)``
(real and imaginary planes) is updated in place.

The math of each block is that of :mod:`ssmsignal.layers.s4`, :mod:`ssmsignal.layers.s4d`,
:mod:`ssmsignal.layers.blocks` and :meth:`ssmsignal.models.SaShiMi.step`; the host side
(packing, launch plan) is :mod:`ssmsignal.models._sashimi_fused`.
"""

from __future__ import annotations

import triton
import triton.language as tl

__all__ = ["tier_pass", "scratch_width", "fits_one_tile", "PRO_EMBED", "PRO_Z", "PRO_UNFOLD", "EPI_RING", "EPI_UP", "EPI_HEAD",
           "KIND_S4D", "KIND_S4", "CONFIG"]

PRO_EMBED, PRO_Z, PRO_UNFOLD = 0, 1, 2
EPI_RING, EPI_UP, EPI_HEAD = 0, 1, 2
KIND_S4D, KIND_S4 = 0, 1
#: Launch configuration: warps per program, weight elements per matrix-vector chunk (32 fp32
#: registers per thread at 8 warps), complex state elements per SSM chunk, the one-tile
#: pipelined block path where a tier fits (``single``), and loading the next chunk before the
#: current one's arithmetic (``prefetch``). Register counts: kernels/NOTES.md; the benchmark
#: sweeps these. ``split``: the most programs per batch row the host may use for a chunked
#: tier (a power of two; only while ``batch * split`` fits on the GPU). ``merge``: the host
#: runs tier 0's head pass and the next step's down pass as one launch. ``regs``: wide tiers
#: with one program per row assemble chunk outputs in registers instead of scratch memory;
#: ``num_warps_wide``: warps for the passes that do not take the one-tile path.
CONFIG = {"num_warps": 8, "tile": 8192, "ssm_tile": 2048, "single": True, "prefetch": True,
          "split": 1, "merge": False, "regs": True, "num_warps_wide": 8}


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
               HAS_BIAS: tl.constexpr, GELU: tl.constexpr, PREFETCH: tl.constexpr):
    """``out[:n_out] = act(W v (+ b))`` for ``W (n_out, n_in)``, in chunks of ``BM`` rows; with
    ``PREFETCH`` the next chunk's load is issued before this chunk's arithmetic."""
    w = _tile(w_ptr, n_in, 0, n_out, cols, cmask, BM)
    r0 = 0
    while r0 < n_out:
        if PREFETCH:
            w_next = _tile(w_ptr, n_in, r0 + BM, n_out, cols, cmask, BM)
        rows = r0 + tl.arange(0, BM)
        rmask = rows < n_out
        out = tl.sum(w * v[None, :], axis=1)  # (BM,)
        if HAS_BIAS:
            out += tl.load(b_ptr + rows, mask=rmask, other=0.0)
        if GELU:
            out = _gelu(out)
        tl.store(out_ptr + rows, out, mask=rmask)
        r0 += BM
        if PREFETCH:
            w = w_next
        else:
            w = _tile(w_ptr, n_in, r0, n_out, cols, cmask, BM)


@triton.jit
def _sync(cnt_ptr, target, SPLIT: tl.constexpr):
    """Barrier of the CTA, and with ``SPLIT`` of the ``S`` programs of a batch row: each adds
    1 to the row's counter (release) and waits until it reaches ``target`` (acquire). The
    programs of a row are co-resident (the host keeps ``batch * S`` <= multiprocessors)."""
    tl.debug_barrier()
    if SPLIT:
        tl.atomic_add(cnt_ptr, 1, sem="release", scope="gpu")
        seen = tl.atomic_add(cnt_ptr, 0, sem="acquire", scope="gpu")
        while seen < target:
            seen = tl.atomic_add(cnt_ptr, 0, sem="acquire", scope="gpu")
        tl.debug_barrier()


@triton.jit
def _partials(row_scr, scr_stride, jj, jm, offs, hm, SPLIT: tl.constexpr):
    """Sum over the ``S`` programs of a row of their partial vectors at ``row_scr + j *
    scr_stride`` (fixed order: the same result in every program). ``.cg`` loads bypass L1,
    which may hold an older copy written by another multiprocessor."""
    ptrs = row_scr + jj * scr_stride + offs[None, :]  # (SP, HP)
    if SPLIT:
        part = tl.load(ptrs, mask=jm & hm[None, :], other=0.0, cache_modifier=".cg")
    else:
        part = tl.load(ptrs, mask=jm & hm[None, :], other=0.0)
    return tl.sum(part, axis=0)  # (HP,)


@triton.jit
def _ssm_update(p0, p1, p2, p3, p4, p5, p6, p7, p8, p9, p10, p11, sr, si, u,
                KIND: tl.constexpr):
    """One recurrent step on ``(C, N2P)`` state planes ``sr + i si`` with input ``u (C, 1)``;
    returns the new state and ``Re(2 C x)`` summed over the stored modes ``(C,)``.

    S4D (coefficients ``dA, dB, 2C``): ``x <- dA x + dB u``. S4 (``conj P, a, g, e, qc, 2C``, see
    ``S4._discretize_step``; DPLR bilinear step via Woodbury): ``r = a x - g Re(P* x) + e u``,
    ``x <- r - qc Re(P* r)``."""
    if KIND == 0:
        nr = p0 * sr - p1 * si + p2 * u
        ni = p0 * si + p1 * sr + p3 * u
        cr, ci = p4, p5
    else:
        s = tl.sum(p0 * sr - p1 * si, axis=1)[:, None]  # (C, 1)
        rr = p2 * sr - p3 * si - p4 * s + p6 * u
        ri = p2 * si + p3 * sr - p5 * s + p7 * u
        t = tl.sum(p0 * rr - p1 * ri, axis=1)[:, None]  # (C, 1)
        nr = rr - p8 * t
        ni = ri - p9 * t
        cr, ci = p10, p11
    return nr, ni, tl.sum(cr * nr - ci * ni, axis=1)


@triton.jit
def _ssm(coef_ptr, d_ptr, st_ptr, u_ptr, y_ptr, c_start, c_end, H, N2, KIND: tl.constexpr,
         N2P: tl.constexpr, BC: tl.constexpr):
    """SSM step of channels ``c_start .. c_end`` of a row, in chunks of ``BC``: state in place,
    ``GELU(y + D u)`` to ``y_ptr``. ``coef_ptr``: the block's ``(NK, 2, H, N2)`` coefficients;
    ``st_ptr``: the row's ``(2, H, N2)`` state; ``u_ptr``: the normalised input."""
    hn = H * N2
    n = tl.arange(0, N2P)[None, :]  # (1, N2P)
    c0 = c_start
    while c0 < c_end:
        ch = c0 + tl.arange(0, BC)  # (BC,)
        cm = ch < c_end
        m2 = cm[:, None] & (n < N2)  # (BC, N2P)
        off = ch[:, None] * N2 + n  # (BC, N2P)
        u = tl.load(u_ptr + ch, mask=cm, other=0.0)  # (BC,)
        sr = tl.load(st_ptr + off, mask=m2, other=0.0)  # (BC, N2P) real part
        si = tl.load(st_ptr + hn + off, mask=m2, other=0.0)  # imaginary part
        p0, p1, p2, p3, p4, p5, p6, p7, p8, p9, p10, p11 = _planes(coef_ptr, off, m2, hn, KIND)
        nr, ni, y = _ssm_update(p0, p1, p2, p3, p4, p5, p6, p7, p8, p9, p10, p11, sr, si,
                                u[:, None], KIND)
        tl.store(st_ptr + off, nr, mask=m2)
        tl.store(st_ptr + hn + off, ni, mask=m2)
        y += tl.load(d_ptr + ch, mask=cm, other=0.0) * u
        tl.store(y_ptr + ch, _gelu(y), mask=cm)
        c0 += BC


@triton.jit
def _pairs_chunked(x, first, n_pairs, ln_ptr, coef_ptr, d_ptr, ow_ptr, ob_ptr, fln_ptr, w1_ptr,
                   b1_ptr, w2_ptr, b2_ptr, state_ptr, batch, b, j, S, H, N2, F, n_coef, eps,
                   scr, row_scr, scr_stride, cnt_ptr, KIND: tl.constexpr, HAS_FF: tl.constexpr,
                   SPLIT: tl.constexpr, HP: tl.constexpr, N2P: tl.constexpr, YS: tl.constexpr,
                   SP: tl.constexpr, HSP: tl.constexpr, FSP: tl.constexpr, BC: tl.constexpr,
                   BMG: tl.constexpr, BM1: tl.constexpr, BM2: tl.constexpr,
                   PREFETCH: tl.constexpr):
    """The blocks of a pass in chunks, program ``j`` of the ``S`` of its row: SSM of channels
    ``j H/S ..``, products with column slice ``j`` of the gated-output map ``(S, 2H, H/S)`` and
    of the second feed-forward map ``(S, H, F/S)``, rows ``j F/S ..`` of the first; partial sums
    go to two alternating regions of the scratch area (a region is rewritten only after the
    next barrier, when every program has read it)."""
    offs = tl.arange(0, HP)
    hm = offs < H
    HS = H // S
    FS = F // S
    hs = tl.arange(0, HSP)
    hsm = hs < HS
    fs = tl.arange(0, FSP)
    fsm = fs < FS
    jj = tl.arange(0, SP)[:, None]
    jm = jj < S
    u_scr = scr  # (HP,) normalised input
    y_scr = scr + HP  # (YS,) SSM output / feed-forward hidden
    p_off = HP + YS  # two regions of 2 HP partial sums
    k = 0  # barriers passed in this launch
    pair = first
    while pair < first + n_pairs:
        # residual SSM block: x += GLU(W GELU(SSM(LN x) + D LN x) + b)
        u = _layer_norm(x, hm, ln_ptr + pair * 2 * H, ln_ptr + pair * 2 * H + H, offs, H, eps)
        tl.store(u_scr + offs, u, mask=hm)
        tl.debug_barrier()
        _ssm(coef_ptr + pair * n_coef * H * N2, d_ptr + pair * H,
             state_ptr + (pair * batch + b) * 2 * H * N2, u_scr, y_scr, j * HS, j * HS + HS, H,
             N2, KIND, N2P, BC)
        tl.debug_barrier()
        g = tl.load(y_scr + j * HS + hs, mask=hsm, other=0.0)  # (HSP,) this slice
        region = p_off + (k % 2) * 2 * HP
        _linear_to(ow_ptr + (pair * S + j) * 2 * H * HS, ob_ptr, g, hs, hsm, HS, 2 * H,
                   scr + region, BMG, False, False, PREFETCH)
        k += 1
        _sync(cnt_ptr, S * k, SPLIT)
        val = _partials(row_scr + region, scr_stride, jj, jm, offs, hm, SPLIT)
        gate = _partials(row_scr + region + H, scr_stride, jj, jm, offs, hm, SPLIT)
        val += tl.load(ob_ptr + pair * 2 * H + offs, mask=hm, other=0.0)
        gate += tl.load(ob_ptr + pair * 2 * H + H + offs, mask=hm, other=0.0)
        x += val * tl.sigmoid(gate)
        if HAS_FF:  # feed-forward block: x += W2 GELU(W1 LN x + b1) + b2
            u = _layer_norm(x, hm, fln_ptr + pair * 2 * H, fln_ptr + pair * 2 * H + H, offs,
                            H, eps)
            _linear_to(w1_ptr + pair * F * H + j * FS * H, b1_ptr + pair * F + j * FS, u, offs,
                       hm, H, FS, y_scr, BM1, True, True, PREFETCH)
            tl.debug_barrier()
            hv = tl.load(y_scr + fs, mask=fsm, other=0.0)  # (FSP,) this slice of the hidden
            region = p_off + (k % 2) * 2 * HP
            _linear_to(w2_ptr + (pair * S + j) * H * FS, b2_ptr, hv, fs, fsm, FS, H,
                       scr + region, BM2, False, False, PREFETCH)
            k += 1
            _sync(cnt_ptr, S * k, SPLIT)
            x += _partials(row_scr + region, scr_stride, jj, jm, offs, hm, SPLIT)
            x += tl.load(b2_ptr + pair * H + offs, mask=hm, other=0.0)
        pair += 1
    return x


@triton.jit
def _rows_regs(w_ptr, b_ptr, v, cols, cmask, n_in, n_out, RP: tl.constexpr, BM: tl.constexpr,
               GELU: tl.constexpr, PREFETCH: tl.constexpr):
    """``act(W v + b)`` for ``W (n_out, n_in)`` in chunks of ``BM`` rows, assembled in
    registers: chunk ``c`` lands in row ``c`` of an ``(RP/BM, BM)`` accumulator through a select
    (no memory round trip), returned as ``(RP,)``."""
    rid = tl.arange(0, RP // BM)[:, None]  # (NCH, 1)
    acc = tl.zeros((RP // BM, BM), tl.float32)
    w = _tile(w_ptr, n_in, 0, n_out, cols, cmask, BM)
    c = 0
    while c < RP // BM:
        r0 = c * BM
        if PREFETCH:
            w_next = _tile(w_ptr, n_in, r0 + BM, n_out, cols, cmask, BM)
        rows = r0 + tl.arange(0, BM)
        out = tl.sum(w * v[None, :], axis=1) + tl.load(b_ptr + rows, mask=rows < n_out,
                                                       other=0.0)
        if GELU:
            out = _gelu(out)
        acc += tl.where(rid == c, out[None, :], 0.0)
        c += 1
        if PREFETCH:
            w = w_next
        else:
            w = _tile(w_ptr, n_in, c * BM, n_out, cols, cmask, BM)
    return tl.reshape(acc, (RP,))


@triton.jit
def _ssm_regs(coef_ptr, d_ptr, st_ptr, u, H, N2, KIND: tl.constexpr, HP: tl.constexpr,
              N2P: tl.constexpr, BC: tl.constexpr):
    """:func:`_ssm` with the input ``u (HP,)`` and the output ``GELU(y + D u) (HP,)`` in
    registers: channel chunk ``c`` is selected from / added to row ``c`` of an ``(HP/BC, BC)``
    view."""
    hn = H * N2
    n = tl.arange(0, N2P)[None, :]  # (1, N2P)
    rid = tl.arange(0, HP // BC)[:, None]  # (NCH, 1)
    u2 = tl.reshape(u, (HP // BC, BC))
    y2 = tl.zeros((HP // BC, BC), tl.float32)
    c = 0
    while c < HP // BC:
        uc = tl.sum(tl.where(rid == c, u2, 0.0), axis=0)  # (BC,) this chunk of u
        ch = c * BC + tl.arange(0, BC)
        cm = ch < H
        m2 = cm[:, None] & (n < N2)  # (BC, N2P)
        off = ch[:, None] * N2 + n
        sr = tl.load(st_ptr + off, mask=m2, other=0.0)
        si = tl.load(st_ptr + hn + off, mask=m2, other=0.0)
        p0, p1, p2, p3, p4, p5, p6, p7, p8, p9, p10, p11 = _planes(coef_ptr, off, m2, hn, KIND)
        nr, ni, y = _ssm_update(p0, p1, p2, p3, p4, p5, p6, p7, p8, p9, p10, p11, sr, si,
                                uc[:, None], KIND)
        tl.store(st_ptr + off, nr, mask=m2)
        tl.store(st_ptr + hn + off, ni, mask=m2)
        y = _gelu(y + tl.load(d_ptr + ch, mask=cm, other=0.0) * uc)
        y2 += tl.where(rid == c, y[None, :], 0.0)
        c += 1
    return tl.reshape(y2, (HP,))


@triton.jit
def _pairs_regs(x, first, n_pairs, ln_ptr, coef_ptr, d_ptr, ow_ptr, ob_ptr, fln_ptr, w1_ptr,
                b1_ptr, w2_ptr, b2_ptr, state_ptr, batch, b, H, N2, F, n_coef, eps,
                KIND: tl.constexpr, HAS_FF: tl.constexpr, HP: tl.constexpr, N2P: tl.constexpr,
                FP: tl.constexpr, BC: tl.constexpr, BMG: tl.constexpr, BM1: tl.constexpr,
                BM2: tl.constexpr, PREFETCH: tl.constexpr):
    """The blocks of a pass too wide for one tile, one program per row: every stage in chunks
    whose outputs are assembled in registers (:func:`_rows_regs`, :func:`_ssm_regs`), so no
    activation goes through memory."""
    offs = tl.arange(0, HP)
    hm = offs < H
    fo = tl.arange(0, FP)
    fm = fo < F
    hh = H * H
    pair = first
    while pair < first + n_pairs:
        u = _layer_norm(x, hm, ln_ptr + pair * 2 * H, ln_ptr + pair * 2 * H + H, offs, H, eps)
        g = _ssm_regs(coef_ptr + pair * n_coef * H * N2, d_ptr + pair * H,
                      state_ptr + (pair * batch + b) * 2 * H * N2, u, H, N2, KIND, HP, N2P, BC)
        wo = ow_ptr + pair * 2 * hh
        val = _rows_regs(wo, ob_ptr + pair * 2 * H, g, offs, hm, H, H, HP, BMG, False, PREFETCH)
        gate = _rows_regs(wo + hh, ob_ptr + pair * 2 * H + H, g, offs, hm, H, H, HP, BMG, False,
                          PREFETCH)
        x += val * tl.sigmoid(gate)
        if HAS_FF:
            u = _layer_norm(x, hm, fln_ptr + pair * 2 * H, fln_ptr + pair * 2 * H + H, offs,
                            H, eps)
            hid = _rows_regs(w1_ptr + pair * F * H, b1_ptr + pair * F, u, offs, hm, H, F, FP,
                             BM1, True, PREFETCH)
            x += _rows_regs(w2_ptr + pair * H * F, b2_ptr + pair * H, hid, fo, fm, F, H, HP, BM2,
                            False, PREFETCH)
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
        nr, ni, y = _ssm_update(p0, p1, p2, p3, p4, p5, p6, p7, p8, p9, p10, p11, sr, si,
                                u[:, None], KIND)
        tl.store(st + off, nr, mask=m2)
        tl.store(st + hn + off, ni, mask=m2)
        g = _gelu(y + dd * u)  # (HP,)
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


@triton.jit
def _blocks(x, first, n_pairs, ln_ptr, coef_ptr, d_ptr, ow_ptr, ob_ptr, fln_ptr, w1_ptr, b1_ptr,
            w2_ptr, b2_ptr, state_ptr, batch, b, j, S, H, N2, F, n_coef, eps, row_scr,
            scr_stride, cnt_ptr, KIND: tl.constexpr, HAS_FF: tl.constexpr,
            SINGLE: tl.constexpr, SPLIT: tl.constexpr, REGS: tl.constexpr, HP: tl.constexpr,
            N2P: tl.constexpr, FP: tl.constexpr, YS: tl.constexpr, SP: tl.constexpr, HSP: tl.constexpr,
            FSP: tl.constexpr, BC: tl.constexpr, BMG: tl.constexpr, BM1: tl.constexpr,
            BM2: tl.constexpr, PREFETCH: tl.constexpr):
    if SINGLE:
        x = _pairs_single(x, first, n_pairs, ln_ptr, coef_ptr, d_ptr, ow_ptr, ob_ptr, fln_ptr,
                          w1_ptr, b1_ptr, w2_ptr, b2_ptr, state_ptr, batch, b, H, N2, F, n_coef,
                          eps, KIND, HAS_FF, HP, N2P, FP)
    elif not SPLIT and REGS:
        x = _pairs_regs(x, first, n_pairs, ln_ptr, coef_ptr, d_ptr, ow_ptr, ob_ptr, fln_ptr,
                        w1_ptr, b1_ptr, w2_ptr, b2_ptr, state_ptr, batch, b, H, N2, F, n_coef,
                        eps, KIND, HAS_FF, HP, N2P, FP, BC, BMG, BM1, BM2, PREFETCH)
    else:
        x = _pairs_chunked(x, first, n_pairs, ln_ptr, coef_ptr, d_ptr, ow_ptr, ob_ptr, fln_ptr,
                           w1_ptr, b1_ptr, w2_ptr, b2_ptr, state_ptr, batch, b, j, S, H, N2, F,
                           n_coef, eps, row_scr + j * scr_stride, row_scr, scr_stride,
                           cnt_ptr + b, KIND, HAS_FF, SPLIT, HP, N2P, YS, SP, HSP, FSP, BC, BMG,
                           BM1, BM2, PREFETCH)
    return x


@triton.jit
def _embed(next_ptr, emb_ptr, label_ptr, label_emb_ptr, b, offs, hm, H,
           HAS_LABEL: tl.constexpr):
    """Embedding of the row's next input code (+ its label embedding)."""
    code = tl.load(next_ptr + b)
    x = tl.load(emb_ptr + code * H + offs, mask=hm, other=0.0)
    if HAS_LABEL:
        lab = tl.load(label_ptr + b)
        x += tl.load(label_emb_ptr + lab * H + offs, mask=hm, other=0.0)
    return x


@triton.jit
def _ring(x, ring_ptr, slot, pool_now, pw_ptr, pb_ptr, pz_ptr, b, j, offs, hm, H, ek, er, S,
          EKP: tl.constexpr, BME: tl.constexpr, PREFETCH: tl.constexpr):
    """Ring slot <- x (the same value from every program of the row); on pooling steps the
    down-pool map of the whole ring (program j: rows j er/S ..) into the inner tier's input."""
    tl.store(ring_ptr + b * ek + slot * H + offs, x, mask=hm)
    if pool_now != 0:
        tl.debug_barrier()
        rs = er // S
        ko = tl.arange(0, EKP)
        km = ko < ek
        v = tl.load(ring_ptr + b * ek + ko, mask=km, other=0.0)  # (EKP,) the p slots
        _linear_to(pw_ptr + j * rs * ek, pb_ptr + j * rs, v, ko, km, ek, rs,
                   pz_ptr + b * er + j * rs, BME, True, False, PREFETCH)


@triton.jit(do_not_specialize=["slot", "first", "n_pairs", "pool_now", "batch", "slot2",
                               "pool_now2", "n_pairs2"])
def _tier_pass_kernel(
        # prologue
        in_ptr, next_ptr, emb_ptr, label_ptr, label_emb_ptr, unf_ptr, slot,
        # blocks: pairs [first, first + n_pairs) of the tier's packed weights
        first, n_pairs, ln_ptr, coef_ptr, d_ptr, ow_ptr, ob_ptr,
        fln_ptr, w1_ptr, b1_ptr, w2_ptr, b2_ptr, state_ptr, eps,
        # epilogue
        out_ptr, pool_now, pw_ptr, pb_ptr, pz_ptr, ek, er,
        noise_ptr, forced_ptr, codes_ptr, logits_ptr, inv_temp, top_p,
        # MERGE: after the head, the next step's down pass (pairs [0, n_pairs2), ring slot2)
        n_pairs2, slot2, pool_now2, dpw_ptr, dpb_ptr, dpz_ptr, der,
        # sizes, splitting
        batch, H, N2, F, n_coef, scr_ptr, scr_stride, S, cnt_ptr,
        PRO: tl.constexpr, EPI: tl.constexpr, KIND: tl.constexpr, HAS_FF: tl.constexpr,
        HAS_LABEL: tl.constexpr, TOP_P: tl.constexpr, SINGLE: tl.constexpr,
        PREFETCH: tl.constexpr, SPLIT: tl.constexpr, MERGE: tl.constexpr, REGS: tl.constexpr,
        HP: tl.constexpr, N2P: tl.constexpr, FP: tl.constexpr, EKP: tl.constexpr,
        DKP: tl.constexpr, YS: tl.constexpr, SP: tl.constexpr, HSP: tl.constexpr,
        FSP: tl.constexpr, BC: tl.constexpr, BMG: tl.constexpr, BM1: tl.constexpr,
        BM2: tl.constexpr, BME: tl.constexpr, BMD: tl.constexpr):
    b = tl.program_id(0).to(tl.int64)
    j = tl.program_id(1)  # which of the S programs of this row
    offs = tl.arange(0, HP)  # (HP,)
    hm = offs < H
    row_scr = scr_ptr + b * S * scr_stride

    # ---- prologue: the pass input x (HP,) in registers
    if PRO == 0:
        x = _embed(next_ptr, emb_ptr, label_ptr, label_emb_ptr, b, offs, hm, H, HAS_LABEL)
    elif PRO == 1:
        x = tl.load(in_ptr + b * H + offs, mask=hm, other=0.0)
    else:
        row = b * ek + slot * H  # ek = p H here: the ring and unfolded rows are (p, H)
        x = tl.load(in_ptr + row + offs, mask=hm, other=0.0)
        x += tl.load(unf_ptr + row + offs, mask=hm, other=0.0)

    x = _blocks(x, first, n_pairs, ln_ptr, coef_ptr, d_ptr, ow_ptr, ob_ptr, fln_ptr, w1_ptr,
                b1_ptr, w2_ptr, b2_ptr, state_ptr, batch, b, j, S, H, N2, F, n_coef, eps,
                row_scr, scr_stride, cnt_ptr, KIND, HAS_FF, SINGLE, SPLIT, REGS, HP, N2P, FP, YS,
                SP, HSP, FSP, BC, BMG, BM1, BM2, PREFETCH)

    # ---- epilogue (the pooling maps: program j computes rows j er/S .. of er)
    if EPI == 0:
        _ring(x, out_ptr, slot, pool_now, pw_ptr, pb_ptr, pz_ptr, b, j, offs, hm, H, ek, er, S,
              EKP, BME, PREFETCH)
    elif EPI == 1:  # outer tier's up-pool map: its p unfolded rows
        rs = er // S
        _linear_to(pw_ptr + j * rs * H, pb_ptr + j * rs, x, offs, hm, H, rs,
                   pz_ptr + b * er + j * rs, BME, True, False, PREFETCH)
    elif j == 0:  # head and sampling (one program of the row)
        u = _layer_norm(x, hm, pw_ptr, pw_ptr + H, offs, H, eps)
        lrow = logits_ptr + b * er
        _linear_to(pb_ptr, pb_ptr + er * H, u, offs, hm, H, er, lrow, BME, True, False, False)
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
        if MERGE:  # S == 1: the next step's down pass of this tier, in the same launch
            tl.debug_barrier()
            x = _embed(next_ptr, emb_ptr, label_ptr, label_emb_ptr, b, offs, hm, H, HAS_LABEL)
            x = _blocks(x, 0, n_pairs2, ln_ptr, coef_ptr, d_ptr, ow_ptr, ob_ptr, fln_ptr,
                        w1_ptr, b1_ptr, w2_ptr, b2_ptr, state_ptr, batch, b, j, S, H, N2, F,
                        n_coef, eps, row_scr, scr_stride, cnt_ptr, KIND, HAS_FF, SINGLE, SPLIT,
                        REGS, HP, N2P, FP, YS, SP, HSP, FSP, BC, BMG, BM1, BM2, PREFETCH)
            _ring(x, in_ptr, slot2, pool_now2, dpw_ptr, dpb_ptr, dpz_ptr, b, j, offs, hm, H, ek,
                  der, S, DKP, BMD, PREFETCH)


def fits_one_tile(H, N2, F):
    """Whether a tier's blocks take the one-tile pipelined path (with ``CONFIG["single"]``)."""
    HP, N2P = triton.next_power_of_2(H), triton.next_power_of_2(N2)
    FP = triton.next_power_of_2(max(F, 1))
    tile = CONFIG["tile"]
    return (bool(CONFIG["single"]) and HP * N2P <= CONFIG["ssm_tile"] and 2 * HP * HP <= tile
            and FP * HP <= tile)


def scratch_width(H, F):
    """Floats of scratch per program for a tier of width ``H`` and feed-forward width ``F``."""
    HP, FP = triton.next_power_of_2(H), triton.next_power_of_2(max(F, 1))
    return 5 * HP + max(FP, HP)  # u (HP), y (max(FP, HP)), two partial regions (2 HP each)


def tier_pass(*, pro, epi, kind, batch, H, N2, F, eps, first, n_pairs, weights, state, scratch,
              inputs, next_codes, split=1, counters=None, emb=None, labels=None, label_emb=None, unfolded=None, slot=0,
              out=None, pool_now=False, pool_w=None, pool_b=None, pool_out=None, ek=0, er=0,
              noise=None, forced=None, codes=None, logits=None, inv_temp=1.0, top_p=1.0,
              merge=None):
    """Launch one tier pass for every batch row (grid ``(batch,)``); see the module docstring.

    ``weights`` is the tier's packed tuple ``(ln, coef, D, out_w, out_b, ff_ln, w1, b1, w2,
    b2)`` (float32, contiguous, stacked over block pairs); the head epilogue takes the final
    LayerNorm ``(2, H)`` as ``pool_w`` and the output map ``[W (C, H) | b (C,)]`` flattened as
    ``pool_b``. Unused pointers may be any tensor of the right device. Tensors are used in
    place: the launch has fixed arguments, so it can be captured in a CUDA graph.

    ``split = S > 1`` runs ``S`` programs per row (``H``, ``F`` and the pooling output widths
    divisible by ``S``; ``out_w`` packed ``(pairs, S, 2H, H/S)``, ``w2`` ``(pairs, S, H, F/S)``;
    ``scratch`` has ``batch * S`` rows; ``counters`` ``(batch,)`` int32 zeros, counting the
    barriers of this launch; ``batch * S`` programs must fit on the GPU at once).

    ``merge = (n_pairs2, slot2, pool_now2, down_w, down_b, down_out, down_rows)`` (head passes
    of a pooled tier 0 with ``S = 1``): after the draw, the next step's down pass (pairs
    ``0 .. n_pairs2``) with the drawn code, its ring slot and down-pool map, in this launch.
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
    S = int(split)
    HSP, FSP = triton.next_power_of_2(max(H // S, 1)), triton.next_power_of_2(max(F // S, 1))
    YS = max(FP, HP)
    if scratch.shape[0] < batch * S or scratch.shape[1] < scratch_width(H, F):
        raise ValueError(f"scratch {tuple(scratch.shape)} too small for batch {batch} x split {S}")
    if S > 1 and (H % S or F % S or er % S or counters is None):
        raise ValueError(f"split {S} must divide H {H}, F {F} and {er} and needs counters")
    single = S == 1 and fits_one_tile(H, N2, F)
    regs = S == 1 and bool(CONFIG["regs"])
    some = ln
    n2, slot2, now2, dpw, dpb, dpz, der = merge or (0, 0, 0, some, some, some, 0)
    if merge is not None and (S != 1 or epi != EPI_HEAD or pro != PRO_UNFOLD):
        raise ValueError("merge needs a head pass (PRO_UNFOLD, EPI_HEAD) with split 1")
    DKP = triton.next_power_of_2(max(ek, 1))
    _tier_pass_kernel[(batch, S)](
        inputs, next_codes, some if emb is None else emb, some if labels is None else labels,
        some if label_emb is None else label_emb, some if unfolded is None else unfolded, slot,
        first, n_pairs, ln, coef, D, ow, ob, fln, w1, b1, w2, b2, state, eps,
        some if out is None else out, int(bool(pool_now)), some if pool_w is None else pool_w,
        some if pool_b is None else pool_b, some if pool_out is None else pool_out, ek, er,
        some if noise is None else noise, some if forced is None else forced,
        some if codes is None else codes, some if logits is None else logits,
        float(inv_temp), float(top_p), n2, slot2, int(bool(now2)), dpw, dpb, dpz, der,
        batch, H, N2, F, n_coef, scratch, scratch.stride(0), S,
        some if counters is None else counters,
        PRO=pro, EPI=epi, KIND=kind, HAS_FF=F > 0, HAS_LABEL=labels is not None,
        TOP_P=top_p < 1.0, HP=HP,
        PREFETCH=bool(CONFIG["prefetch"]), SINGLE=single, SPLIT=S > 1, MERGE=merge is not None,
        N2P=N2P, FP=FP, EKP=EKP, DKP=DKP, BMD=max(1, min(triton.next_power_of_2(max(der, 1)),
                                                       tile // DKP)),
        YS=YS, SP=triton.next_power_of_2(S), HSP=HSP, FSP=FSP,
        REGS=regs, BC=max(1, min(HSP, ssm_tile // N2P)),
        BMG=max(1, min(HP if regs else 2 * HP, tile // HSP)),
        BM1=max(1, min(FSP, tile // HP)), BM2=max(1, min(HP, tile // FSP)),
        BME=max(1, min(triton.next_power_of_2(max(er // S, 1)),
                       tile // (EKP if epi == EPI_RING else HP))),
        num_warps=CONFIG["num_warps"] if single else CONFIG["num_warps_wide"])
