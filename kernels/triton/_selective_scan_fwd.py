"""Forward kernel of the selective scan (see :mod:`ssmsignal.kernels.triton.selective_scan`).

One program owns one batch row, a block of channels and a time segment, for all states; the
state stays in registers while a loop walks over the segment in chunks of ``T`` steps, each a
``tl.associative_scan`` along the in-thread time axis (layout: :mod:`._common`). The next
chunk's inputs are loaded before the current chunk's arithmetic. With gradients it also stores
the state every ``CK`` steps (the backward's checkpoints) and ``y`` before the ``z`` gate.
"""

from __future__ import annotations

import triton
import triton.language as tl

from ._common import (LOG2E, axis_t, ck_states, load_or_zero, row, row_params, scan_combine,
                      scan_combine_mul, scan_program, store_masked, sum_states)
from ._scan_lanes import exp2_fma, gather_steps, sigmoid, softplus_sigmoid, sum_states_scatter

__all__ = ["fwd_kernel"]


@triton.jit
def fwd_kernel(u_ptr, dt_ptr, A_ptr, B_ptr, C_ptr, D_ptr, z_ptr, bias_ptr, len_ptr,
                out_ptr, last_ptr, ck_ptr, y_ptr, h0_ptr, sdt_ptr,
                L, dim, N, G, ch_per_group, block_ch, n_chunks, n_ck, seg_chunks, n_seg,
                T: tl.constexpr, NI: tl.constexpr, NO: tl.constexpr, W: tl.constexpr,
                DL: tl.constexpr, HAS_D: tl.constexpr, HAS_Z: tl.constexpr,
                HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr, HAS_LEN: tl.constexpr,
                SAVE_CK: tl.constexpr, CK: tl.constexpr, SAVE_LAST: tl.constexpr,
                EVEN: tl.constexpr, SEG: tl.constexpr, LOCAL: tl.constexpr,
                FAST: tl.constexpr, FAST_GATE: tl.constexpr, FMA: tl.constexpr,
                CK_V4: tl.constexpr,
                XCH: tl.constexpr, PIPE: tl.constexpr, SP_POLY: tl.constexpr = False,
                EXP_FMA: tl.constexpr = 0, CKL: tl.constexpr = 0, GRID_SWAP: tl.constexpr = False,
                LD_CACHE: tl.constexpr = "", LD_POLICY: tl.constexpr = "",
                ST_CACHE: tl.constexpr = "", ST_POLICY: tl.constexpr = "",
                AHOIST: tl.constexpr = 0):
    # Program (block, row, segment) runs chunks [s * seg_chunks, (s + 1) * seg_chunks).
    # SEG: the state before the segment comes from h0 (b, d, n_seg, N). LOCAL (pass 1 of a
    # segmented forward): start from 0, write nothing but the state after the segment (to h0)
    # and its sum of steps (to sdt (b, d, n_seg)). SAVE_CK: the state before every CK steps goes
    # to ck (b, d, n_ck, N) (CK divides T); with z, y before the gate goes to y_ptr too (the
    # backward pass reads it). EVEN: L % T == 0, the channel blocks tile ``dim``, N is a power
    # of two and no seq_lengths: no masks. SP_POLY: softplus with a polynomial log1p;
    # EXP_FMA: the decays of the first EXP_FMA half-rows (state, half chunk) by exp2_fma.
    # GRID_SWAP: grid (row, block, segment): the programs resident on one multiprocessor share
    # fewer rows of B, C (more L1 hits). LD_*: cache modifier and eviction policy of the u,
    # delta, z loads; ST_*: of the out stores. AHOIST (1: PTX, 2: emulated): A loaded once
    # before the loop; the load in the loop stays only as the layout anchor, its value passed
    # to an inline-asm move that ignores it, so ptxas drops it (no 4 scattered loads, 32 L1
    # wavefronts, per chunk).
    pid_d, pid_b, pid_s, c0, c1, off_c, ch, ch_ok, n, n_ok = scan_program(
        block_ch, dim, N, seg_chunks, n_chunks, NI, NO, W, DL, GRID_SWAP)
    t = axis_t(T)  # (1, 1, 1, 1, T)
    tc = t  # the steps of its channel's per-step values that a lane holds
    rep = tl.arange(0, NO)[None, :, None, None, None]  # (1, NO, 1, 1, 1)
    if XCH:  # (NO = 4, 8 channel lanes, not LOCAL; 1: shuffles, 2: emulated): state lane j
        # holds steps j T/4 .. (j+1) T/4 of u, delta, z, out (no exchange through shared memory)
        tc = rep * (T // NO) + tl.arange(0, T // NO)[None, None, None, None, :]
    # ``(n * N) // N``: an offset whose contiguity the compiler cannot see (see _common)
    A_off = ch * N + (n * N) // N  # (DL, NO, W, NI, 1)
    row_off = (pid_b * dim + ch) * L  # (DL, 1, W, 1, 1): (b, c, 0) in u, dt, z, out
    grp = (pid_d * block_ch) // ch_per_group  # every channel of a block is in one group
    bc_off = ((pid_b * G + grp) * N + n) * L  # (1, NO, 1, NI, 1): (b, g, n, 0) in B, C
    ck_stride = N
    if CKL:  # checkpoints (b, d, n_ck, NP) laid out for the backward's CKL state lanes
        ck_stride = NI * NO
        ck_off = (pid_b * dim + ch) * n_ck * ck_stride + ck_states(NI, NO, CKL)
    elif CK_V4:  # stored from the chunk's own layout (no exchange through shared memory)
        ck_off = (pid_b * dim + ch) * n_ck * N + (n * N) // N  # (DL, NO, W, NI, 1)
    else:
        ck_off = (pid_b * dim + ch) * n_ck * N + n  # (DL, NO, W, NI, 1)
    bias, seq_len = row_params(bias_ptr, len_ptr, ch, ch_ok, pid_b, L, HAS_BIAS, HAS_LEN, EVEN)
    if HAS_D:
        Dv = load_or_zero(D_ptr + ch, ch_ok, EVEN).to(tl.float32)  # (DL, 1, W, 1, 1)
    h = tl.zeros((DL, NO, W, NI, 1), dtype=tl.float32)  # state before the chunk
    seg_off = ((pid_b * dim + ch) * n_seg + pid_s) * N + n  # (DL, NO, W, NI, 1) in h0
    if SEG and not LOCAL:
        h += load_or_zero(h0_ptr + seg_off, ch_ok & n_ok, EVEN)
    sdt = tl.zeros((DL, 1, W, 1, 1), dtype=tl.float32)
    # the first chunk's inputs; inside the loop the next chunk's loads are issued before the
    # current chunk's arithmetic, so their latency overlaps it. Inputs are read only below
    # seq_len (<= L): padding, whatever it holds (NaN included), enters as 0.
    u_nx, raw_nx, B_nx, C_nx, z_nx = _fwd_inputs(c0, t, tc, row_off, bc_off, u_ptr, dt_ptr, z_ptr,
                                                 B_ptr, C_ptr, seq_len, ch_ok, n_ok, T,
                                                 HAS_Z and not LOCAL, EVEN, LOCAL)
    if PIPE:  # (not LOCAL) the exp2 of chunk c + 1 are computed during chunk c, from delta
        # loaded two chunks ahead: the MUFU work overlaps the scan's multiply-adds
        dt_nx = _fwd_dt(raw_nx, bias, c0 * T + tc < seq_len, SOFTPLUS, FAST, EVEN, SP_POLY)
        A2 = load_or_zero(A_ptr + A_off, ch_ok & n_ok, EVEN).to(tl.float32) * LOG2E
        a_nx = tl.exp2(_all_steps(dt_nx, rep, XCH) * A2)
        raw_n2 = load_or_zero(dt_ptr + row_off + tl.minimum(c0 + 1, c1 - 1) * T + tc,
                              ((c0 + 1) * T + tc < seq_len) & ch_ok, EVEN)
    if AHOIST:
        A2h = load_or_zero(A_ptr + A_off, ch_ok & n_ok, EVEN).to(tl.float32) * LOG2E
    c = c0
    while c < c1:  # (a while loop: Triton 3.6's interpreter cannot range() over an argument)
        if SAVE_CK:
            store_masked(ck_ptr + ck_off + c * (T // CK) * ck_stride, h, ch_ok & n_ok, EVEN)
        tt = c * T + tc  # (1, 1, 1, 1, T) or (XCH) (1, NO, 1, 1, T / NO)
        io_mask = (tt < L) & ch_ok  # (DL, 1, W, 1, T)
        valid = tt < seq_len  # (1, 1, 1, 1, T)
        u, raw, Bt, Ct, zz = u_nx, raw_nx, B_nx, C_nx, z_nx
        # the next chunk's loads go out now (the last chunk re-reads itself)
        u_nx, raw_nx, B_nx, C_nx, z_nx = _fwd_inputs(
            tl.minimum(c + 1, c1 - 1), t, tc, row_off, bc_off, u_ptr, dt_ptr, z_ptr, B_ptr, C_ptr,
            seq_len, ch_ok, n_ok, T, HAS_Z and not LOCAL, EVEN, LOCAL, LD_CACHE, LD_POLICY)
        u = u.to(tl.float32)
        if PIPE:
            dt, a, raw1 = dt_nx, a_nx, raw_n2
            raw_n2 = load_or_zero(dt_ptr + row_off + tl.minimum(c + 2, c1 - 1) * T + tc,
                                  ((c + 2) * T + tc < seq_len) & ch_ok, EVEN)
            dt_nx = _fwd_dt(raw1, bias, (c + 1) * T + tc < seq_len, SOFTPLUS, FAST, EVEN,
                            SP_POLY)
        else:
            dt = _fwd_dt(raw, bias, valid, SOFTPLUS, FAST, EVEN, SP_POLY)  # (DL, 1, W, 1, T)
        # loaded last in the loop body (an L1 hit): its layout becomes the chunk's layout
        if AHOIST:
            A2 = _anchored(A2h, load_or_zero(A_ptr + A_off, ch_ok & n_ok, EVEN), AHOIST == 2)
        else:
            A2 = load_or_zero(A_ptr + A_off, ch_ok & n_ok, EVEN).to(tl.float32) * LOG2E
        # A2: (DL, NO, W, NI, 1)
        if PIPE:
            a_nx = tl.exp2(_all_steps(dt_nx, rep, XCH) * A2)
        else:
            a = _decay(_all_steps(dt, rep, XCH) * A2, EXP_FMA)  # (DL, NO, W, NI, T)
        b = _all_steps(dt * u, rep, XCH) * Bt.to(tl.float32)  # (DL, NO, W, NI, T)
        b = tl.where(t == 0, b + a * h, b)  # fold the carried state into the first step
        if FMA:
            _, hs = tl.associative_scan((a, b), 4, scan_combine)  # states x_t of the chunk
        else:
            _, hs = tl.associative_scan((a, b), 4, scan_combine_mul)
        h = row(hs, t, T - 1)  # (DL, NO, W, NI, 1) state after the chunk
        if LOCAL:
            sdt += tl.sum(dt, axis=4, keep_dims=True)
        else:
            if XCH:  # summed and spread back: lane j gets its own steps
                y = sum_states_scatter(hs * Ct.to(tl.float32), rep, XCH == 2)  # (.., T/NO)
            else:
                y = sum_states(hs * Ct.to(tl.float32))  # (DL, 1, W, 1, T)
            if SAVE_CK:
                for s in tl.static_range(1, T // CK):  # states inside the chunk, every CK steps
                    store_masked(ck_ptr + ck_off + (c * (T // CK) + s) * ck_stride,
                                 row(hs, t, s * CK - 1),
                                 ch_ok & n_ok, EVEN)
            if HAS_D:
                y += Dv * u
            if HAS_Z:
                if SAVE_CK and CK_V4:
                    # the gate multiplies the stored (rounded) y: then the gate is computed in
                    # the store's layout, 4 steps per thread (unrounded, the compiler moved it
                    # into the chunk layout: 16 steps per thread, 4 lanes repeating each step)
                    y = y.to(y_ptr.dtype.element_ty)
                    store_masked(y_ptr + row_off + tt, y, io_mask, EVEN)
                    y = y.to(tl.float32)
                elif SAVE_CK:
                    store_masked(y_ptr + row_off + tt, y.to(y_ptr.dtype.element_ty), io_mask, EVEN)
                zf = zz.to(tl.float32)
                y *= zf * sigmoid(zf, FAST or FAST_GATE)
            if HAS_LEN:
                y = tl.where(valid, y, 0.0)
            store_masked(out_ptr + row_off + tt, y.to(out_ptr.dtype.element_ty), io_mask, EVEN,
                         ST_CACHE, ST_POLICY)
        c += 1
    if LOCAL:
        tl.store(h0_ptr + seg_off, h, mask=ch_ok & n_ok)
        tl.store(sdt_ptr + (pid_b * dim + ch) * n_seg + pid_s, sdt, mask=ch_ok)
    if SAVE_LAST:
        tl.store(last_ptr + (pid_b * dim + ch) * N + n, h, mask=ch_ok & n_ok & (pid_s == n_seg - 1))


@triton.jit
def _anchored(x, anchor, EMULATE: tl.constexpr):
    """``x`` (float32), through an inline-asm move that also takes ``anchor`` and ignores it:
    ``anchor``'s load still fixes the layout Triton gives the loop body, but nothing reads its
    value, so ptxas removes the load. ``EMULATE`` (the interpreter runs no PTX): ``x``."""
    if EMULATE:
        y = x
    else:
        y = tl.inline_asm_elementwise("mov.b32 $0, $1;", "=r,r,r", [x, anchor.to(tl.float32)],
                                      dtype=tl.float32, is_pure=True, pack=1)
    return y


@triton.jit
def _fwd_dt(raw, bias, valid, SOFTPLUS: tl.constexpr, FAST: tl.constexpr, EVEN: tl.constexpr,
            POLY: tl.constexpr):
    """The step ``softplus(delta + bias)`` (or without softplus), 0 where not ``valid``."""
    dt = raw.to(tl.float32) + bias
    if SOFTPLUS:
        dt, _ = softplus_sigmoid(dt, FAST, POLY)
    if not EVEN:
        dt = tl.where(valid, dt, 0.0)
    return dt


@triton.jit
def _decay(x, K: tl.constexpr):
    """``exp2(x)`` of a (DL, NO, W, NI, T) tensor, the first ``K`` half-rows (state ``ni``,
    steps ``[0, T/2)`` or ``[T/2, T)``: half-row ``2 ni + (t >= T/2)``) on the multiply-add
    units (:func:`exp2_fma`), the others on the special-function unit (indices along these
    in-thread axes are constants: each element is computed one way only). The clamp of
    exp2_fma loses a NaN ``x``; the step's ``b`` (dt u B) still carries it into the state."""
    if K == 0:
        a = tl.exp2(x)
    else:
        ni = tl.arange(0, x.shape[3])[None, None, None, :, None]  # (1, 1, 1, NI, 1)
        half = tl.arange(0, x.shape[4])[None, None, None, None, :] >= x.shape[4] // 2
        a = tl.where(ni * 2 + half.to(tl.int32) < K, exp2_fma(x), tl.exp2(x))
    return a


@triton.jit
def _all_steps(x, rep, XCH: tl.constexpr):
    """Every step of a per-(channel, step) value on every lane (with XCH gathered from the
    state lanes that hold them)."""
    if XCH:
        x = gather_steps(x, rep, XCH == 2)
    return x


@triton.jit
def _fwd_inputs(c, t, tc, row_off, bc_off, u_ptr, dt_ptr, z_ptr, B_ptr, C_ptr, seq_len, ch_ok,
                n_ok, T: tl.constexpr, HAS_Z: tl.constexpr, EVEN: tl.constexpr,
                NO_C: tl.constexpr, CACHE: tl.constexpr = tl.constexpr(""),
                POLICY: tl.constexpr = tl.constexpr("")):
    """Forward inputs of chunk ``c`` (raw dtypes), read only below ``seq_len`` (<= L):
    padding, whatever it holds (NaN included), enters as 0. u, delta, z: steps ``tc``, loaded
    with ``CACHE`` and ``POLICY`` (streamed data)."""
    tt = c * T + t  # (1, 1, 1, 1, T)
    tq = c * T + tc
    io = (tq < seq_len) & ch_ok  # (DL, 1, W, 1, T)
    u = load_or_zero(u_ptr + row_off + tq, io, EVEN, CACHE, POLICY)
    raw = load_or_zero(dt_ptr + row_off + tq, io, EVEN, CACHE, POLICY)
    Bt = load_or_zero(B_ptr + bc_off + tt, (tt < seq_len) & n_ok, EVEN)
    Ct = Bt
    if not NO_C:
        Ct = load_or_zero(C_ptr + bc_off + tt, (tt < seq_len) & n_ok, EVEN)
    zz = u
    if HAS_Z:
        zz = load_or_zero(z_ptr + row_off + tq, io, EVEN, CACHE, POLICY)
    return u, raw, Bt, Ct, zz
