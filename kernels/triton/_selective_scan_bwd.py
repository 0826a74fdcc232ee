"""Backward kernel of the selective scan (see :mod:`ssmsignal.kernels.triton.selective_scan`).

One program owns one batch row and a block of channels, for all states, and walks the
sequence backwards in chunks of ``T`` steps (the forward pass stored the state at the start of
every chunk). Per chunk: the states are recomputed from the checkpoint (one ``exp2`` per
(channel, step, state)), the adjoint ``g_t = C_t dy_t + a_{t+1} g_{t+1}`` runs as a scan over the
time-flipped chunk, and every gradient is written without atomics. The next chunk's inputs are
loaded before the current chunk's arithmetic (their latency hides behind it), and the forward
pass saves ``y`` before the ``z`` gate, so the gate's gradient needs no sum over states.

The per-step math and the exchanges between lanes are in :mod:`._scan_lanes`.
"""

from __future__ import annotations

import triton
import triton.language as tl

from ._common import (LN2, LOG2E, adjoint_combine, axis_t, lane_states, load_or_zero, row,
                      row_params, scan_combine, scan_program, store_masked, sum_channels,
                      sum_states, sum_time)
from ._scan_lanes import (gather_steps, sigmoid, softplus_sigmoid, sum_channels_scatter,
                          sum_states_scatter)


@triton.jit
def _chunk_inputs(c, t, tc, row_off, bc_off, ck_off, u_ptr, dt_ptr, dout_ptr, y_ptr, z_ptr,
                  B_ptr, C_ptr, ck_ptr, L, ck_stride, seq_len, ch_ok, n_ok, state_mask,
                  T: tl.constexpr,
                  HAS_Z: tl.constexpr, EVEN: tl.constexpr):
    """Inputs of chunk ``c`` (raw dtypes): u, delta, dout, y, z (per channel, steps ``tc``),
    B, C (per state and step) and the checkpointed state at the chunk's start."""
    tt = c * T + t  # (1, 1, 1, 1, T)
    tq = c * T + tc
    in_mask = (tq < seq_len) & ch_ok  # inputs only below seq_len: padding enters as 0
    u = load_or_zero(u_ptr + row_off + tq, in_mask, EVEN)
    raw = load_or_zero(dt_ptr + row_off + tq, in_mask, EVEN)
    dout = load_or_zero(dout_ptr + row_off + tq, (tq < L) & ch_ok, EVEN)
    yv = u
    zz = u
    if HAS_Z:
        yv = load_or_zero(y_ptr + row_off + tq, in_mask, EVEN)
        zz = load_or_zero(z_ptr + row_off + tq, in_mask, EVEN)
    Bt, Ct = _bc_inputs(c, t, bc_off, B_ptr, C_ptr, seq_len, n_ok, T, EVEN)
    h0 = load_or_zero(ck_ptr + ck_off + c * ck_stride, state_mask & (c * T < L), EVEN)
    return u, raw, dout, yv, zz, Bt, Ct, h0


@triton.jit
def _bc_inputs(c, t, bc_off, B_ptr, C_ptr, seq_len, n_ok, T: tl.constexpr, EVEN: tl.constexpr):
    """B and C of chunk ``c`` (raw dtype, per state and step; 0 from ``seq_len`` on)."""
    tt = c * T + t  # (1, 1, 1, 1, T)
    Bt = load_or_zero(B_ptr + bc_off + tt, (tt < seq_len) & n_ok, EVEN)
    Ct = load_or_zero(C_ptr + bc_off + tt, (tt < seq_len) & n_ok, EVEN)
    return Bt, Ct


@triton.jit
def bwd_kernel(u_ptr, dt_ptr, A_ptr, B_ptr, C_ptr, D_ptr, z_ptr, y_ptr, bias_ptr, len_ptr,
               dout_ptr, dlast_ptr, ck_ptr,
               du_ptr, ddt_ptr, dz_ptr, dB_ptr, dC_ptr, dA_ptr, dD_ptr, dbias_ptr,
               L, dim, N, G, ch_per_group, block_ch, n_chunks, n_ck, n_parts, seg_chunks, n_seg,
               T: tl.constexpr, NI: tl.constexpr, NO: tl.constexpr, W: tl.constexpr,
               DL: tl.constexpr, HAS_D: tl.constexpr, HAS_Z: tl.constexpr,
               HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr, HAS_LEN: tl.constexpr,
               HAS_DLAST: tl.constexpr, EVEN: tl.constexpr, FAST: tl.constexpr,
               SEG: tl.constexpr, WARP_PARTS: tl.constexpr, SCATTER: tl.constexpr,
               XCH: tl.constexpr, SP_POLY: tl.constexpr = False, BC_LATE: tl.constexpr = False,
               PART_TN: tl.constexpr = False, CK_TN: tl.constexpr = False):
    # Per-(channel, step) values are (DL, NO, W, 1, T) tensors repeated over the NO lanes of a
    # channel: with T * 2 bytes = 16 their coalesced load layout IS the chunk layout.
    # EVEN: L % T == 0, the channel blocks tile ``dim`` and no seq_lengths: no masks at all.
    # Program (block, row, segment) runs chunks [s * seg_chunks, (s + 1) * seg_chunks) backwards;
    # SEG: the adjoint carry entering the segment's last step is dlast_ptr (b, d, n_seg, N).
    # dA, dD, d(bias) partials are per (row, segment): (b * n_seg, d, ...). dB, dC partials
    # (b, n_parts, N, L): one per program, or one per warp (WARP_PARTS: the sum over channels
    # stays inside each warp, no exchange through shared memory and its barriers).
    pid_d, pid_b, pid_s, c0, c1, off_c, ch, ch_ok, n, n_ok = scan_program(
        block_ch, dim, N, seg_chunks, n_chunks, NI, NO, W, DL)
    prow = pid_b * n_seg + pid_s  # row of the dA, dD, d(bias) partials
    t = axis_t(T)  # (1, 1, 1, 1, T)
    rep = tl.arange(0, NO)[None, :, None, None, None]  # (1, NO, 1, 1, 1) lane repeat index
    state_mask = ch_ok & n_ok  # (DL, NO, W, NI, 1)
    nh = (n * N) // N  # n, contiguity hidden (see _common)
    row_off = (pid_b * dim + ch) * L + rep * 0  # (DL, NO, W, 1, 1)
    grp = (pid_d * block_ch) // ch_per_group
    bc_off = ((pid_b * G + grp) * N + n) * L + off_c * 0  # (DL, NO, W, NI, 1), repeated
    part = pid_b * n_parts + pid_d  # (b, part) of this program's dB/dC partials
    if WARP_PARTS:
        part = pid_b * n_parts + pid_d * W + tl.arange(0, W)[None, None, :, None, None]
    if PART_TN:  # partials (b, n_parts, L, NO, NI): a lane's NI states side by side
        t_stride = NI * NO
        part_off = part * L * (NI * NO) + lane_states(NI, NO)  # (1, NO, W or 1, NI, 1)
    else:  # (b, n_parts, N, L)
        t_stride = 1
        part_off = (part * N + n) * L  # (1, NO, W or 1, NI, 1)
    if CK_TN:  # checkpoints (b, d, n_ck, NO, NI): a lane's NI states side by side
        ck_stride = NI * NO
        ck_off = (pid_b * dim + ch) * n_ck * ck_stride + lane_states(NI, NO)  # (DL, NO, W, NI, 1)
    else:  # (b, d, n_ck, N); checkpoint every T steps
        ck_stride = N
        ck_off = (pid_b * dim + ch) * n_ck * N + nh  # (DL, NO, W, NI, 1)
    bias, seq_len = row_params(bias_ptr, len_ptr, ch, ch_ok, pid_b, L, HAS_BIAS, HAS_LEN, EVEN)
    Dv = 0.0
    if HAS_D:
        Dv = load_or_zero(D_ptr + ch, ch_ok, EVEN).to(tl.float32)  # (DL, 1, W, 1, 1)
    A2 = load_or_zero(A_ptr + ch * N + nh, state_mask, EVEN).to(tl.float32) * LOG2E
    # A2: (DL, NO, W, NI, 1)
    # p = a_s g_s: what the adjoint g at the first step s of the chunk after the current one
    # sends back to the current chunk's last step (its d loss / d x_{s-1}); starts as d last_state
    p = tl.zeros((DL, NO, W, NI, 1), dtype=tl.float32)
    if SEG:
        p += load_or_zero(dlast_ptr + ((pid_b * dim + ch) * n_seg + pid_s) * N + nh, state_mask,
                          EVEN)
    elif HAS_DLAST:
        p += load_or_zero(dlast_ptr + (pid_b * dim + ch) * N + nh, state_mask, EVEN)
    dA_acc = tl.zeros((DL, NO, W, NI, 1), dtype=tl.float32)
    dD_acc = tl.zeros((DL, NO, W, 1, 1), dtype=tl.float32)
    dbias_acc = tl.zeros((DL, NO, W, 1, 1), dtype=tl.float32)
    c = c1 - 1
    tc = t  # the steps of its channel's per-step values that a lane holds
    if XCH:  # (with SCATTER) state lane j holds steps j T/4 .. (j+1) T/4 - 1 of them
        tc = rep * (T // NO) + tl.arange(0, T // NO)[None, None, None, None, :]
    u_nx, raw_nx, do_nx, y_nx, z_nx, B_nx, C_nx, h0_nx = _chunk_inputs(
        tl.maximum(c, 0), t, tc, row_off, bc_off, ck_off, u_ptr, dt_ptr, dout_ptr, y_ptr, z_ptr,
        B_ptr, C_ptr, ck_ptr, L, ck_stride, seq_len, ch_ok, n_ok, state_mask, T, HAS_Z, EVEN)
    while c >= c0:
        u, raw, dout, yv, zz, Bt, Ct, h0 = u_nx, raw_nx, do_nx, y_nx, z_nx, B_nx, C_nx, h0_nx
        # the next (earlier) chunk's loads go out now; the first chunk re-reads itself at the end
        u_nx, raw_nx, do_nx, y_nx, z_nx, B_nx, C_nx, h0_nx = _chunk_inputs(
            tl.maximum(c - 1, c0), t, tc, row_off, bc_off, ck_off, u_ptr, dt_ptr, dout_ptr, y_ptr,
            z_ptr, B_ptr, C_ptr, ck_ptr, L, ck_stride, seq_len, ch_ok, n_ok, state_mask, T, HAS_Z,
            EVEN)
        if BC_LATE:  # B, C of this chunk loaded now, not one chunk ahead (32 fewer live
            # registers through the loop; their prefetched copies above are then dead code)
            Bt, Ct = _bc_inputs(c, t, bc_off, B_ptr, C_ptr, seq_len, n_ok, T, EVEN)
        tt = c * T + tc  # (1, 1, 1, 1, T), or (XCH) (1, NO, 1, 1, T / NO)
        valid = tt < seq_len  # steps past the end (or padding) have dt = 0: state unchanged
        io_mask = rep == 0  # one lane of the NO that hold a channel's value writes it
        if not EVEN:
            io_mask = io_mask & (tt < L) & ch_ok
        u = u.to(tl.float32)
        raw = raw.to(tl.float32)
        if SOFTPLUS:
            dt, dsp = softplus_sigmoid(raw + bias, FAST, SP_POLY)  # (DL, NO, W, 1, T), d dt/d raw
        else:
            dt = raw + bias
        if not EVEN:
            dt = tl.where(valid, dt, 0.0)
        Bt = Bt.to(tl.float32)
        Ct = Ct.to(tl.float32)
        # recompute the chunk's states from its checkpoint
        dtf = dt  # every step of dt and dt u on every lane
        dtu = dt * u  # (DL, NO, W, 1, T)
        if XCH:
            dtf = gather_steps(dt, rep, XCH == 2)
            dtu = gather_steps(dtu, rep, XCH == 2)
        a = tl.exp2(dtf * A2)  # (DL, NO, W, NI, T)
        b = dtu * Bt  # (DL, NO, W, NI, T)
        _, hs = tl.associative_scan((a, tl.where(t == 0, b + a * h0, b)), 4, scan_combine)
        dy = dout.to(tl.float32)
        if HAS_Z:
            zf = zz.to(tl.float32)
            sg = sigmoid(zf, FAST)
            if not XCH:
                dz = dy * yv.to(tl.float32) * sg * (1.0 + zf * (1.0 - sg))
                if not EVEN:
                    dz = tl.where(valid, dz, 0.0)
                tl.store(dz_ptr + row_off + tt, dz.to(dz_ptr.dtype.element_ty), mask=io_mask)
            dy = dy * zf * sg
        if not EVEN:
            dy = tl.where(valid, dy, 0.0)  # (DL, NO, W, 1, T)
        if not XCH:
            dD_acc += sum_time(dy * u)
        dyf = dy
        if XCH:
            dyf = gather_steps(dy, rep, XCH == 2)
        # adjoint g_t = C_t dy_t + a_{t+1} g_{t+1}: a scan over segments (see adjoint_combine)
        # running from the chunk's end, the carry p folded into the last step. (Flipping the
        # in-register time axis is free; Triton 3.6's reverse=True scan costs ~30 shuffles/step.)
        cg = Ct * dyf  # (DL, NO, W, NI, T)
        cg = tl.where(t == T - 1, cg + p, cg)
        ones = tl.full(a.shape, 1.0, tl.float32)
        _, gs, _ = tl.associative_scan((tl.flip(a, 4), tl.flip(cg, 4), ones), 4, adjoint_combine)
        gs = tl.flip(gs, 4)  # (DL, NO, W, NI, T)
        p = row(a, t, 0) * row(gs, t, 0)  # (DL, NO, W, NI, 1)
        gah = gs * (hs - b)  # g_t a_t x_{t-1}, (DL, NO, W, NI, T)
        dA_acc += sum_time(gah * dtf)
        if XCH:  # per-(channel, step) work on 2 steps per lane, not 8 repeated on 4 lanes
            gB = sum_states_scatter(gs * Bt, rep, SCATTER == 2)  # (DL, NO, W, 1, 2)
            gA = sum_states_scatter(gah * A2, rep, SCATTER == 2)
            dz = dy  # (unused without z)
            dsp_ = dt  # (unused without softplus)
            if HAS_Z:
                dz = dout.to(tl.float32) * yv.to(tl.float32) * sg * (1.0 + zf * (1.0 - sg))
            if SOFTPLUS:
                dsp_ = dsp
            dD_c, dbias_c = _epilogue(tt + rep * 0, row_off, gB, gA, u, dt, dy, dz, dsp_, Dv,
                                      du_ptr, ddt_ptr, dz_ptr, seq_len, L, ch_ok, HAS_Z,
                                      SOFTPLUS, EVEN)
            dD_acc += dD_c
            dbias_acc += dbias_c
        else:
            gB = sum_states(gs * Bt)  # (DL, 1, W, 1, T)
            ddt = gB * u + sum_states(gah * A2) * LN2  # d loss / d dt (A = A2 * ln 2)
            du = dt * gB + Dv * dy  # (DL, NO, W, 1, T)
            if SOFTPLUS:
                ddt = ddt * dsp
            if not EVEN:
                ddt = tl.where(valid, ddt, 0.0)
            dbias_acc += sum_time(ddt)
            tl.store(du_ptr + row_off + tt, du.to(du_ptr.dtype.element_ty), mask=io_mask)
            tl.store(ddt_ptr + row_off + tt, ddt.to(ddt_ptr.dtype.element_ty), mask=io_mask)
        if SCATTER:  # (T = DL = 8): lane l holds the channel sum of step l
            # (1: shuffles, 2: emulated for the interpreter)
            lane = tl.arange(0, DL)[:, None, None, None, None]  # (DL, 1, 1, 1, 1)
            # contiguity hidden (see _common): a coalesced store layout would become the chunk's
            ts = c * T + (lane * N) // N
            dB = sum_channels_scatter(gs * dtu, lane, SCATTER == 2)  # (DL, NO, W, NI, 1)
            dC = sum_channels_scatter(hs * dyf, lane, SCATTER == 2)
            if not WARP_PARTS:  # and over the program's warps (one exchange through shared
                # memory for both)
                dB, dC = tl.split(tl.sum(tl.join(dB, dC), axis=2, keep_dims=True))
            store_masked(dB_ptr + part_off + ts * t_stride, dB.to(dB_ptr.dtype.element_ty),
                         (ts < L) & n_ok, EVEN)
            store_masked(dC_ptr + part_off + ts * t_stride, dC.to(dC_ptr.dtype.element_ty),
                         (ts < L) & n_ok, EVEN)
        else:
            if WARP_PARTS:
                dB = tl.sum(gs * dtu, axis=0, keep_dims=True)  # (1, NO, W, NI, T)
                dC = tl.sum(hs * dy, axis=0, keep_dims=True)
            else:
                dB = sum_channels(gs * dtu)  # (1, NO, 1, NI, T)
                dC = sum_channels(hs * dy)
            store_masked(dB_ptr + part_off + tt * t_stride, dB.to(dB_ptr.dtype.element_ty),
                         (tt < L) & n_ok, EVEN)
            store_masked(dC_ptr + part_off + tt * t_stride, dC.to(dC_ptr.dtype.element_ty),
                         (tt < L) & n_ok, EVEN)
        c -= 1
    if XCH:  # each state lane summed its own steps
        dD_acc = tl.sum(dD_acc, axis=1, keep_dims=True)
        dbias_acc = tl.sum(dbias_acc, axis=1, keep_dims=True)
    store_masked(dA_ptr + (prow * dim + ch) * N + n, dA_acc, state_mask, EVEN)
    out_mask = ch_ok & (rep == 0)  # (DL, NO, W, 1, 1)
    tl.store(dD_ptr + prow * dim + ch + rep * 0, dD_acc, mask=out_mask)
    tl.store(dbias_ptr + prow * dim + ch + rep * 0, dbias_acc, mask=out_mask)


@triton.jit
def _epilogue(ts, row_off, gB, gA, u, dt, dy, dz, dsp, Dv, du_ptr, ddt_ptr, dz_ptr, seq_len, L,
              ch_ok, HAS_Z: tl.constexpr, SOFTPLUS: tl.constexpr, EVEN: tl.constexpr):
    """du, d delta and dz of steps ``ts`` (one lane's own steps, ``XCH``) from the
    state sums ``gB`` (of g B) and ``gA`` (of g a x A2); returns the steps' parts of dD and
    d(delta_bias). ``dy``: the gated output gradient (0 past the end), ``dsp``: d dt / d raw."""
    ddt = gB * u + gA * LN2  # (DL, NO, W, 1, 2) d loss / d dt (A = A2 * ln 2)
    du = dt * gB + Dv * dy
    if SOFTPLUS:
        ddt = ddt * dsp
    mask = ch_ok & (ts < L)
    if not EVEN:
        ddt = tl.where(ts < seq_len, ddt, 0.0)
        dz = tl.where(ts < seq_len, dz, 0.0)
    store_masked(du_ptr + row_off + ts, du.to(du_ptr.dtype.element_ty), mask, EVEN)
    store_masked(ddt_ptr + row_off + ts, ddt.to(ddt_ptr.dtype.element_ty), mask, EVEN)
    if HAS_Z:
        store_masked(dz_ptr + row_off + ts, dz.to(dz_ptr.dtype.element_ty), mask, EVEN)
    return sum_time(dy * u), sum_time(ddt)


@triton.jit
def adjoint_local_kernel(dt_ptr, A_ptr, C_ptr, z_ptr, bias_ptr, len_ptr, dout_ptr, pl_ptr, sdt_ptr,
                         L, dim, N, G, ch_per_group, block_ch, n_chunks, seg_chunks, n_seg,
                         T: tl.constexpr, NI: tl.constexpr, NO: tl.constexpr, W: tl.constexpr,
                         DL: tl.constexpr, HAS_Z: tl.constexpr, HAS_BIAS: tl.constexpr,
                         SOFTPLUS: tl.constexpr, HAS_LEN: tl.constexpr, EVEN: tl.constexpr,
                         FAST: tl.constexpr, SP_POLY: tl.constexpr = False):
    """Pass 1 of a segmented backward: for segment s, what its first step sends back (``a g``
    at that step) when nothing enters its last step, to pl (b, d, n_seg, N), and the segment's
    sum of steps to sdt (b, d, n_seg). The carry entering segment s - 1 is then
    ``pl[s] + exp(A sdt[s]) * carry[s]`` (combined on the host)."""
    pid_d, pid_b, pid_s, c0, c1, off_c, ch, ch_ok, n, n_ok = scan_program(
        block_ch, dim, N, seg_chunks, n_chunks, NI, NO, W, DL)
    t = axis_t(T)  # (1, 1, 1, 1, T)
    rep = tl.arange(0, NO)[None, :, None, None, None]  # (1, NO, 1, 1, 1)
    nh = (n * N) // N  # n, contiguity hidden (see _common)
    row_off = (pid_b * dim + ch) * L + rep * 0  # (DL, NO, W, 1, 1)
    grp = (pid_d * block_ch) // ch_per_group
    bc_off = ((pid_b * G + grp) * N + n) * L + off_c * 0  # (DL, NO, W, NI, 1), repeated
    bias, seq_len = row_params(bias_ptr, len_ptr, ch, ch_ok, pid_b, L, HAS_BIAS, HAS_LEN, EVEN)
    A2 = load_or_zero(A_ptr + ch * N + nh, ch_ok & n_ok, EVEN).to(tl.float32) * LOG2E
    # A2: (DL, NO, W, NI, 1)
    p = tl.zeros((DL, NO, W, NI, 1), dtype=tl.float32)
    sdt = tl.zeros((DL, NO, W, 1, 1), dtype=tl.float32)
    c = c1 - 1
    while c >= c0:
        tt = c * T + t  # (1, 1, 1, 1, T)
        valid = tt < seq_len
        in_mask = valid & ch_ok
        raw = load_or_zero(dt_ptr + row_off + tt, in_mask, EVEN).to(tl.float32)
        dy = load_or_zero(dout_ptr + row_off + tt, (tt < L) & ch_ok, EVEN).to(tl.float32)
        Ct = load_or_zero(C_ptr + bc_off + tt, valid & n_ok, EVEN).to(tl.float32)
        if SOFTPLUS:
            dt, _ = softplus_sigmoid(raw + bias, FAST, SP_POLY)  # (DL, NO, W, 1, T)
        else:
            dt = raw + bias
        if HAS_Z:
            zf = load_or_zero(z_ptr + row_off + tt, in_mask, EVEN).to(tl.float32)
            dy = dy * zf * sigmoid(zf, FAST)
        if not EVEN:
            dt = tl.where(valid, dt, 0.0)
            dy = tl.where(valid, dy, 0.0)
        sdt += tl.sum(dt, axis=4, keep_dims=True)
        a = tl.exp2(dt * A2)  # (DL, NO, W, NI, T)
        cg = Ct * dy  # (DL, NO, W, NI, T)
        cg = tl.where(t == T - 1, cg + p, cg)
        ones = tl.full(a.shape, 1.0, tl.float32)
        _, gs, _ = tl.associative_scan((tl.flip(a, 4), tl.flip(cg, 4), ones), 4, adjoint_combine)
        p = row(a, t, 0) * row(tl.flip(gs, 4), t, 0)  # (DL, NO, W, NI, 1)
        c -= 1
    seg_off = ((pid_b * dim + ch) * n_seg + pid_s) * N + n  # (DL, NO, W, NI, 1)
    tl.store(pl_ptr + seg_off, p, mask=ch_ok & n_ok)
    tl.store(sdt_ptr + (pid_b * dim + ch) * n_seg + pid_s + rep * 0, sdt, mask=ch_ok & (rep == 0))
