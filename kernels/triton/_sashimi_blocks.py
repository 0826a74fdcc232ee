"""Block pairs of one SaShiMi tier pass for :mod:`ssmsignal.kernels.triton.sashimi_step`.

A pair is a residual SSM block (LayerNorm -> S4 or S4D step on the state -> + D u -> GELU ->
linear to ``2 H`` -> GLU -> residual add) and, with ``HAS_FF``, a feed-forward block (LayerNorm
-> linear -> GELU -> linear -> residual add); the math is that of :mod:`ssmsignal.layers.s4`,
:mod:`ssmsignal.layers.s4d` and :mod:`ssmsignal.layers.blocks`. Here: the shared pieces (norm,
GELU, matrix-vector chunks, the SSM step) and the two one-program-per-row ways to run the pairs
of a pass:

* :func:`_pairs_single`: every stage fits one register tile (tier 0 of the defaults); the
  weights of each stage are loaded one stage ahead, nothing goes through memory;
* :func:`_pairs_regs`: wider tiers; stages in chunks whose outputs are assembled in registers.

The third way, ``S`` programs per row exchanging partial sums through memory (its barrier
:func:`_sync`, :func:`_partials` and :func:`_ssm` are here), and the choice among the three are
in :mod:`ssmsignal.kernels.triton.sashimi_step`. The residual stream
``x (HP,)`` is in registers throughout; the state ``(pairs, batch, 2, H, N/2)`` (real and
imaginary planes) is updated in place.
"""

from __future__ import annotations

import triton
import triton.language as tl


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
                   mask=(rows < n_rows)[:, None] & cmask[None, :],
                   other=0.0).to(tl.float32)  # (BM, K), from float32 or bfloat16


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
def _ssm_update(p0, p1, p2, p3, p4, p5, p6, p7, sr, si, u, dl, cc, KIND: tl.constexpr):
    """One recurrent step on ``(C, N2P)`` state planes ``sr + i si`` with input ``u (C, 1)``;
    returns the new state and ``Re(2 C x)`` summed over the stored modes ``(C,)``.

    S4D (planes ``dA, dB, 2C``): ``x <- dA x + dB u``. S4 (planes ``d, P, Δ B, 2C`` and the
    per-channel ``dl = Δ``, ``cc = 2 c`` (C, 1); the bilinear DPLR step of
    ``S4._discretize_step`` with ``a = d (1 + Δ/2 Λ) = 2 d - 1``, ``g = d Δ P``, ``e = d Δ B``,
    ``qc = 2 c d P`` formed here from 4 planes instead of loading 6):
    ``s = Re(P* x)``, ``r = d (2 x - Δ P s + Δ B u) - x``, ``x <- r - 2 c d P Re(P* r)``."""
    if KIND == 0:
        nr = p0 * sr - p1 * si + p2 * u
        ni = p0 * si + p1 * sr + p3 * u
        cr, ci = p4, p5
    else:
        s = tl.sum(p2 * sr + p3 * si, axis=1)[:, None]  # (C, 1): Re sum conj(P) x
        qr = 2.0 * sr - dl * s * p2 + p4 * u
        qi = 2.0 * si - dl * s * p3 + p5 * u
        rr = p0 * qr - p1 * qi - sr
        ri = p0 * qi + p1 * qr - si
        t = tl.sum(p2 * rr + p3 * ri, axis=1)[:, None]  # (C, 1): Re sum conj(P) r
        ct = cc * t
        nr = rr - ct * (p0 * p2 - p1 * p3)
        ni = ri - ct * (p0 * p3 + p1 * p2)
        cr, ci = p6, p7
    return nr, ni, tl.sum(cr * nr - ci * ni, axis=1)


@triton.jit
def _scalars(d_ptr, ch, cm, H, KIND: tl.constexpr):
    """The block's per-channel ``D`` and, for S4, ``Δ`` and ``2 c`` (zeros for S4D), at the
    channels ``ch``; ``d_ptr``: the block's ``(1 or 3, H)`` row."""
    dd = tl.load(d_ptr + ch, mask=cm, other=0.0)
    if KIND == 0:
        return dd, tl.zeros_like(dd), tl.zeros_like(dd)
    return (dd, tl.load(d_ptr + H + ch, mask=cm, other=0.0),
            tl.load(d_ptr + 2 * H + ch, mask=cm, other=0.0))


@triton.jit
def _ssm_chunk(coef_ptr, d_ptr, st_ptr, ch, cm, u, H, N2, KIND: tl.constexpr,
               N2P: tl.constexpr):
    """SSM step of the channels ``ch (BC,)`` (mask ``cm``) with input ``u (BC,)``: the state
    ``(2, H, N2)`` at ``st_ptr`` updated in place; returns ``GELU(y + D u) (BC,)``.
    ``coef_ptr``: the block's ``(NK, 2, H, N2)`` coefficients; ``d_ptr``: its scalars."""
    hn = H * N2
    n = tl.arange(0, N2P)[None, :]  # (1, N2P)
    m2 = cm[:, None] & (n < N2)  # (BC, N2P)
    off = ch[:, None] * N2 + n  # (BC, N2P)
    sr = tl.load(st_ptr + off, mask=m2, other=0.0)  # (BC, N2P) real part
    si = tl.load(st_ptr + hn + off, mask=m2, other=0.0)  # imaginary part
    p0, p1, p2, p3, p4, p5, p6, p7 = _planes(coef_ptr, off, m2, hn, KIND)
    dd, dl, cc = _scalars(d_ptr, ch, cm, H, KIND)
    nr, ni, y = _ssm_update(p0, p1, p2, p3, p4, p5, p6, p7, sr, si, u[:, None], dl[:, None],
                            cc[:, None], KIND)
    tl.store(st_ptr + off, nr, mask=m2)
    tl.store(st_ptr + hn + off, ni, mask=m2)
    return _gelu(y + dd * u)


#: polls of a split barrier before it gives up (~1 s): a row whose programs are not all resident
#: (fewer free multiprocessors than the host assumed) sets the error flag instead of hanging
MAX_POLLS = tl.constexpr(1 << 20)


@triton.jit
def _sync(cnt_ptr, err_ptr, target, SPLIT: tl.constexpr):
    """Barrier of the CTA, and with ``SPLIT`` of the ``S`` programs of a batch row: each adds
    1 to the row's counter (release) and waits until it reaches ``target`` (acquire). The
    programs of a row must be co-resident (the host keeps ``batch * S`` within half the
    multiprocessors); if they are not, the wait stops after :data:`MAX_POLLS` polls and sets
    ``err_ptr[0] = 1``, which the host turns into an error."""
    tl.debug_barrier()
    if SPLIT:
        tl.atomic_add(cnt_ptr, 1, sem="release", scope="gpu")
        seen = tl.atomic_add(cnt_ptr, 0, sem="acquire", scope="gpu")
        polls = 0
        while (seen < target) & (polls < MAX_POLLS):
            seen = tl.atomic_add(cnt_ptr, 0, sem="acquire", scope="gpu")
            polls += 1
        if seen < target:
            tl.store(err_ptr, 1)
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
def _ssm(coef_ptr, d_ptr, st_ptr, u_ptr, y_ptr, c_start, c_end, H, N2, KIND: tl.constexpr,
         N2P: tl.constexpr, BC: tl.constexpr):
    """:func:`_ssm_chunk` over channels ``c_start .. c_end`` of a row in chunks of ``BC``, the
    normalised input read from ``u_ptr``, the output written to ``y_ptr``."""
    c0 = c_start
    while c0 < c_end:
        ch = c0 + tl.arange(0, BC)  # (BC,)
        cm = ch < c_end
        u = tl.load(u_ptr + ch, mask=cm, other=0.0)  # (BC,)
        y = _ssm_chunk(coef_ptr, d_ptr, st_ptr, ch, cm, u, H, N2, KIND, N2P)
        tl.store(y_ptr + ch, y, mask=cm)
        c0 += BC


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
    rid = tl.arange(0, HP // BC)[:, None]  # (NCH, 1)
    u2 = tl.reshape(u, (HP // BC, BC))
    y2 = tl.zeros((HP // BC, BC), tl.float32)
    c = 0
    while c < HP // BC:
        uc = tl.sum(tl.where(rid == c, u2, 0.0), axis=0)  # (BC,) this chunk of u
        ch = c * BC + tl.arange(0, BC)
        y = _ssm_chunk(coef_ptr, d_ptr, st_ptr, ch, ch < H, uc, H, N2, KIND, N2P)
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
        g = _ssm_regs(coef_ptr + pair * n_coef * H * N2, d_ptr + pair * (1 + 2 * KIND) * H,
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
    """The block's step-coefficient planes ``(HP, N2P)`` each (S4D: 6, the rest zeros; S4: 8)."""
    p0 = tl.load(coef_ptr + off, mask=m2, other=0.0)
    p1 = tl.load(coef_ptr + hn + off, mask=m2, other=0.0)
    p2 = tl.load(coef_ptr + 2 * hn + off, mask=m2, other=0.0)
    p3 = tl.load(coef_ptr + 3 * hn + off, mask=m2, other=0.0)
    p4 = tl.load(coef_ptr + 4 * hn + off, mask=m2, other=0.0)
    p5 = tl.load(coef_ptr + 5 * hn + off, mask=m2, other=0.0)
    if KIND == 0:
        p6, p7 = tl.zeros_like(p0), tl.zeros_like(p0)
    else:
        p6 = tl.load(coef_ptr + 6 * hn + off, mask=m2, other=0.0)
        p7 = tl.load(coef_ptr + 7 * hn + off, mask=m2, other=0.0)
    return p0, p1, p2, p3, p4, p5, p6, p7


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
    p0, p1, p2, p3, p4, p5, p6, p7 = _planes(
        coef_ptr + tl.maximum(tl.minimum(first, last), 0) * n_coef * hn, off, m2, hn, KIND)
    pair = first
    while pair <= last:
        st = state_ptr + (pair * batch + b) * 2 * hn
        sr = tl.load(st + off, mask=m2, other=0.0)  # (HP, N2P)
        si = tl.load(st + hn + off, mask=m2, other=0.0)
        wo = ow_ptr + pair * 2 * hh
        wv = tl.load(wo + rows * H + cols, mask=wmask, other=0.0).to(tl.float32)  # value half
        wg = tl.load(wo + hh + rows * H + cols, mask=wmask, other=0.0).to(tl.float32)  # gate
        bv = tl.load(ob_ptr + pair * 2 * H + offs, mask=hm, other=0.0)
        bg = tl.load(ob_ptr + pair * 2 * H + H + offs, mask=hm, other=0.0)
        dd, dl, cc = _scalars(d_ptr + pair * (1 + 2 * KIND) * H, offs, hm, H, KIND)
        u = _layer_norm(x, hm, ln_ptr + pair * 2 * H, ln_ptr + pair * 2 * H + H, offs, H, eps)
        nr, ni, y = _ssm_update(p0, p1, p2, p3, p4, p5, p6, p7, sr, si, u[:, None], dl[:, None],
                                cc[:, None], KIND)
        tl.store(st + off, nr, mask=m2)
        tl.store(st + hn + off, ni, mask=m2)
        g = _gelu(y + dd * u)  # (HP,)
        if HAS_FF:
            w1 = tl.load(w1_ptr + pair * F * H + fo[:, None] * H + cols,
                         mask=fm[:, None] & (cols < H), other=0.0).to(tl.float32)  # (FP, HP)
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
                         mask=(rows < H) & fm[None, :], other=0.0).to(tl.float32)  # (HP, FP)
            b2 = tl.load(b2_ptr + pair * H + offs, mask=hm, other=0.0)
            p0, p1, p2, p3, p4, p5, p6, p7 = _planes(coef_ptr + nxt * n_coef * hn, off, m2,
                                                     hn, KIND)
            x += tl.sum(w2 * hid[None, :], axis=1) + b2
        else:
            p0, p1, p2, p3, p4, p5, p6, p7 = _planes(coef_ptr + nxt * n_coef * hn, off, m2,
                                                     hn, KIND)
        pair += 1
    return x
