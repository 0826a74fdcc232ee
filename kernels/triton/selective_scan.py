"""Selective scan (Mamba's S6 recurrence) in Triton: forward, backward, autograd wrapper.

Same arguments and meaning as :func:`ssmsignal.kernels.reference.selective_scan` (the
specification). One program owns one batch row and a block of channels; the state of all its
channels (``(BD, N)`` float32) stays in registers while a loop walks over the sequence in chunks
of ``T`` steps; inside a chunk the recurrence is a ``tl.associative_scan`` whose axis lies in one
thread's registers (see :mod:`ssmsignal.kernels.triton._common` for the layout), so it compiles to
a plain sequential loop.

The forward pass stores the state at the start of every chunk, ``(b, d, L / T, N)`` float32
(``1 / T`` of the ``(b, d, L, N)`` states), when gradients are needed. The backward pass walks the
chunks in reverse, recomputes the states of a chunk from its checkpoint, runs the adjoint
recurrence as a reverse scan, and writes every gradient without atomics: per-(b, channel)
gradients directly, ``dB``/``dC`` (shared by the channels of a group) as per-block partial sums
and ``dA``/``dD``/``d(delta_bias)`` (shared by the batch) as per-row partial sums, both reduced
afterwards with ``torch.sum``, so two runs give bit-identical gradients.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from ..reference import expand_groups
from ._common import (LN2, LOG2E, adjoint_combine, axis_c, axis_n, axis_t, block_channels,
                      check_device_dtypes, dprepare_dt, dummy, new_buffer, prepare_dt, row,
                      scan_combine, scan_config, sum_channels, sum_states, sum_time)

__all__ = ["selective_scan"]

#: Time steps per chunk of the forward pass without gradients.
CHUNK_FWD = 16
#: Time steps per chunk of the backward pass; with gradients the forward pass runs with this
#: chunk too and stores the state at the start of every chunk. 8 bf16 steps = one 16-byte load.
CHUNK_BWD = 8


@triton.jit
def _fwd_kernel(u_ptr, dt_ptr, A_ptr, B_ptr, C_ptr, D_ptr, z_ptr, bias_ptr, len_ptr,
                out_ptr, last_ptr, ck_ptr,
                L, dim, N, G, ch_per_group, block_ch, n_chunks,
                T: tl.constexpr, NI: tl.constexpr, NO: tl.constexpr, W: tl.constexpr,
                DL: tl.constexpr, HAS_D: tl.constexpr, HAS_Z: tl.constexpr,
                HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr, HAS_LEN: tl.constexpr,
                SAVE_CK: tl.constexpr, SAVE_LAST: tl.constexpr):
    pid_d = tl.program_id(0)
    pid_b = tl.program_id(1).to(tl.int64)
    t = axis_t(T)  # (1, 1, 1, 1, T)
    n = axis_n(NI, NO)  # (1, NO, 1, NI, 1)
    off_c = axis_c(W, DL)  # (DL, 1, W, 1, 1)
    ch = pid_d * block_ch + off_c  # (DL, 1, W, 1, 1)
    ch_ok = (off_c < block_ch) & (ch < dim)
    n_ok = n < N
    # ``(n * N) // N``: an offset whose contiguity the compiler cannot see (see _common)
    A_off = ch * N + (n * N) // N  # (DL, NO, W, NI, 1)
    row_off = (pid_b * dim + ch) * L  # (DL, 1, W, 1, 1): (b, c, 0) in u, dt, z, out
    grp = (pid_d * block_ch) // ch_per_group  # every channel of a block is in one group
    bc_off = ((pid_b * G + grp) * N + n) * L  # (1, NO, 1, NI, 1): (b, g, n, 0) in B, C
    ck_off = (pid_b * dim + ch) * n_chunks * N + n  # (DL, NO, W, NI, 1)
    bias = 0.0
    if HAS_BIAS:
        bias = tl.load(bias_ptr + ch, mask=ch_ok, other=0.0).to(tl.float32)  # (DL, 1, W, 1, 1)
    if HAS_D:
        Dv = tl.load(D_ptr + ch, mask=ch_ok, other=0.0).to(tl.float32)  # (DL, 1, W, 1, 1)
    seq_len = L
    if HAS_LEN:
        seq_len = tl.minimum(tl.load(len_ptr + pid_b).to(tl.int32), L)
    h = tl.zeros((DL, NO, W, NI, 1), dtype=tl.float32)  # state before the chunk
    # chunk 0's inputs; inside the loop the next chunk's loads are issued before the current
    # chunk's arithmetic, so their latency overlaps it. Inputs are read only below seq_len
    # (<= L): padding, whatever it holds (NaN included), enters as 0.
    io0 = (t < seq_len) & ch_ok  # (DL, 1, W, 1, T)
    u_nx = tl.load(u_ptr + row_off + t, mask=io0, other=0.0)
    raw_nx = tl.load(dt_ptr + row_off + t, mask=io0, other=0.0)
    B_nx = tl.load(B_ptr + bc_off + t, mask=(t < seq_len) & n_ok, other=0.0)
    C_nx = tl.load(C_ptr + bc_off + t, mask=(t < seq_len) & n_ok, other=0.0)
    z_nx = u_nx
    if HAS_Z:
        z_nx = tl.load(z_ptr + row_off + t, mask=io0, other=0.0)
    c = 0
    while c < n_chunks:  # (a while loop: Triton 3.6's interpreter cannot range() over an argument)
        if SAVE_CK:
            tl.store(ck_ptr + ck_off + c * N, h, mask=ch_ok & n_ok)
        tt = c * T + t  # (1, 1, 1, 1, T)
        io_mask = (tt < L) & ch_ok  # (DL, 1, W, 1, T)
        valid = tt < seq_len  # (1, 1, 1, 1, T)
        u, raw, Bt, Ct, zz = u_nx, raw_nx, B_nx, C_nx, z_nx
        nx = tt + T  # (1, 1, 1, 1, T) next chunk
        io_nx = (nx < seq_len) & ch_ok
        u_nx = tl.load(u_ptr + row_off + nx, mask=io_nx, other=0.0)
        raw_nx = tl.load(dt_ptr + row_off + nx, mask=io_nx, other=0.0)
        B_nx = tl.load(B_ptr + bc_off + nx, mask=(nx < seq_len) & n_ok, other=0.0)
        C_nx = tl.load(C_ptr + bc_off + nx, mask=(nx < seq_len) & n_ok, other=0.0)
        if HAS_Z:
            z_nx = tl.load(z_ptr + row_off + nx, mask=io_nx, other=0.0)
        u = u.to(tl.float32)
        dt = tl.where(valid, prepare_dt(raw.to(tl.float32), bias, SOFTPLUS), 0.0)  # (DL, 1, W, 1, T)
        # loaded last in the loop body (an L1 hit): its layout becomes the chunk's layout
        A2 = tl.load(A_ptr + A_off, mask=ch_ok & n_ok, other=0.0).to(tl.float32) * LOG2E  # (DL, NO, W, NI, 1)
        a = tl.exp2(dt * A2)  # (DL, NO, W, NI, T)
        b = (dt * u) * Bt.to(tl.float32)  # (DL, NO, W, NI, T)
        b = tl.where(t == 0, b + a * h, b)  # fold the carried state into the first step
        _, hs = tl.associative_scan((a, b), 4, scan_combine)  # states x_t of the chunk
        y = sum_states(hs * Ct.to(tl.float32))  # (DL, 1, W, 1, T)
        h = row(hs, t, T - 1)  # (DL, NO, W, NI, 1) state after the chunk
        if HAS_D:
            y += Dv * u
        if HAS_Z:
            zf = zz.to(tl.float32)
            y *= zf * tl.sigmoid(zf)
        y = tl.where(valid, y, 0.0)
        tl.store(out_ptr + row_off + tt, y.to(out_ptr.dtype.element_ty), mask=io_mask)
        c += 1
    if SAVE_LAST:
        tl.store(last_ptr + (pid_b * dim + ch) * N + n, h, mask=ch_ok & n_ok)


@triton.jit
def _bwd_kernel(u_ptr, dt_ptr, A_ptr, B_ptr, C_ptr, D_ptr, z_ptr, bias_ptr, len_ptr,
                dout_ptr, dlast_ptr, ck_ptr,
                du_ptr, ddt_ptr, dz_ptr, dB_ptr, dC_ptr, dA_ptr, dD_ptr, dbias_ptr,
                L, dim, N, G, ch_per_group, block_ch, n_chunks, n_blocks,
                T: tl.constexpr, NI: tl.constexpr, NO: tl.constexpr, W: tl.constexpr,
                DL: tl.constexpr, HAS_D: tl.constexpr, HAS_Z: tl.constexpr,
                HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr, HAS_LEN: tl.constexpr,
                HAS_DLAST: tl.constexpr):
    # Per-(channel, step) values are loaded, computed and stored as (DL, NO, W, 1, T) tensors,
    # repeated over the NO lanes of a channel: with T * 2 bytes = 16, the coalesced layout of
    # these loads IS the chunk layout, so no full-size layout conversion is needed.
    pid_d = tl.program_id(0)
    pid_b = tl.program_id(1).to(tl.int64)
    t = axis_t(T)  # (1, 1, 1, 1, T)
    n = axis_n(NI, NO)  # (1, NO, 1, NI, 1)
    rep = tl.arange(0, NO)[None, :, None, None, None]  # (1, NO, 1, 1, 1) lane repeat index
    off_c = axis_c(W, DL)  # (DL, 1, W, 1, 1)
    ch = pid_d * block_ch + off_c  # (DL, 1, W, 1, 1)
    ch_ok = (off_c < block_ch) & (ch < dim)
    n_ok = n < N
    state_mask = ch_ok & n_ok  # (DL, NO, W, NI, 1)
    nh = (n * N) // N  # n, contiguity hidden (see _common)
    row_off = (pid_b * dim + ch) * L + rep * 0  # (DL, NO, W, 1, 1)
    grp = (pid_d * block_ch) // ch_per_group
    bc_off = ((pid_b * G + grp) * N + n) * L + off_c * 0  # (DL, NO, W, NI, 1), repeated
    part_off = ((pid_b * n_blocks + pid_d) * N + n) * L  # (1, NO, 1, NI, 1): dB, dC partials
    ck_off = (pid_b * dim + ch) * n_chunks * N + nh  # (DL, NO, W, NI, 1)
    bias = 0.0
    if HAS_BIAS:
        bias = tl.load(bias_ptr + ch, mask=ch_ok, other=0.0).to(tl.float32)  # (DL, 1, W, 1, 1)
    Dv = 0.0
    if HAS_D:
        Dv = tl.load(D_ptr + ch, mask=ch_ok, other=0.0).to(tl.float32)  # (DL, 1, W, 1, 1)
    seq_len = L
    if HAS_LEN:
        seq_len = tl.minimum(tl.load(len_ptr + pid_b).to(tl.int32), L)
    A2 = tl.load(A_ptr + ch * N + nh, mask=state_mask, other=0.0).to(tl.float32) * LOG2E  # (DL, NO, W, NI, 1)
    # p = a_s g_s: what the adjoint g at the first step s of the chunk after the current one
    # sends back to the current chunk's last step (its d loss / d x_{s-1}); starts as d last_state
    p = tl.zeros((DL, NO, W, NI, 1), dtype=tl.float32)
    if HAS_DLAST:
        p += tl.load(dlast_ptr + (pid_b * dim + ch) * N + nh, mask=state_mask, other=0.0)
    dA_acc = tl.zeros((DL, NO, W, NI, 1), dtype=tl.float32)
    dD_acc = tl.zeros((DL, NO, W, 1, 1), dtype=tl.float32)
    dbias_acc = tl.zeros((DL, NO, W, 1, 1), dtype=tl.float32)
    c = n_chunks - 1
    while c >= 0:
        tt = c * T + t  # (1, 1, 1, 1, T)
        t_ok = tt < L
        io_mask = t_ok & ch_ok  # (DL, 1, W, 1, T)
        valid = tt < seq_len  # inputs are read only there (padding enters as 0, see forward)
        in_mask = valid & ch_ok  # (DL, 1, W, 1, T)
        u = tl.load(u_ptr + row_off + tt, mask=in_mask, other=0.0).to(tl.float32)
        raw = tl.load(dt_ptr + row_off + tt, mask=in_mask, other=0.0).to(tl.float32)
        dout = tl.load(dout_ptr + row_off + tt, mask=io_mask, other=0.0).to(tl.float32)
        Bt = tl.load(B_ptr + bc_off + tt, mask=valid & n_ok, other=0.0).to(tl.float32)
        Ct = tl.load(C_ptr + bc_off + tt, mask=valid & n_ok, other=0.0).to(tl.float32)
        h0 = tl.load(ck_ptr + ck_off + c * N, mask=state_mask, other=0.0)  # (DL, NO, W, NI, 1)
        dt = tl.where(valid, prepare_dt(raw, bias, SOFTPLUS), 0.0)  # (DL, NO, W, 1, T)
        # recompute the chunk's states from its checkpoint
        a = tl.exp2(dt * A2)  # (DL, NO, W, NI, T)
        du_B = dt * u  # (DL, NO, W, 1, T)
        b = du_B * Bt  # (DL, NO, W, NI, T)
        _, hs = tl.associative_scan((a, tl.where(t == 0, b + a * h0, b)), 4, scan_combine)
        dy = dout
        if HAS_Z:
            zz = tl.load(z_ptr + row_off + tt, mask=in_mask, other=0.0).to(tl.float32)
            sg = tl.sigmoid(zz)
            y = sum_states(hs * Ct) + Dv * u  # (DL, NO, W, 1, T) after broadcasting
            dz = tl.where(valid, dout * y * sg * (1.0 + zz * (1.0 - sg)), 0.0)
            tl.store(dz_ptr + row_off + tt, dz.to(dz_ptr.dtype.element_ty),
                     mask=io_mask & (rep == 0))
            dy = dout * zz * sg
        dy = tl.where(valid, dy, 0.0)  # (DL, NO, W, 1, T)
        dD_acc += sum_time(dy * u)
        # adjoint g_t = C_t dy_t + a_{t+1} g_{t+1}: a scan over segments (see adjoint_combine)
        # running from the chunk's end, the carry p folded into the last step. (Flipping the
        # in-register time axis is free; Triton 3.6's reverse=True scan costs ~30 shuffles/step.)
        cg = Ct * dy  # (DL, NO, W, NI, T)
        cg = tl.where(t == T - 1, cg + p, cg)
        ones = tl.full(a.shape, 1.0, tl.float32)
        _, gs, _ = tl.associative_scan((tl.flip(a, 4), tl.flip(cg, 4), ones), 4, adjoint_combine)
        gs = tl.flip(gs, 4)  # (DL, NO, W, NI, T)
        p = row(a * gs, t, 0)  # (DL, NO, W, NI, 1)
        gah = gs * (hs - b)  # g_t a_t x_{t-1}, (DL, NO, W, NI, T)
        dA_acc += sum_time(gah * dt)
        gB = sum_states(gs * Bt)  # (DL, 1, W, 1, T)
        ddt = gB * u + sum_states(gah * A2) * LN2  # d loss / d dt (A = A2 * ln 2)
        du = dt * gB + Dv * dy  # (DL, NO, W, 1, T)
        ddt = tl.where(valid, dprepare_dt(raw, bias, ddt, SOFTPLUS), 0.0)
        dbias_acc += sum_time(ddt)
        tl.store(du_ptr + row_off + tt, du.to(du_ptr.dtype.element_ty), mask=io_mask & (rep == 0))
        tl.store(ddt_ptr + row_off + tt, ddt.to(ddt_ptr.dtype.element_ty),
                 mask=io_mask & (rep == 0))
        dB = sum_channels(gs * du_B)  # (1, NO, 1, NI, T)
        dC = sum_channels(hs * dy)  # (1, NO, 1, NI, T)
        tl.store(dB_ptr + part_off + tt, dB, mask=t_ok & n_ok)
        tl.store(dC_ptr + part_off + tt, dC, mask=t_ok & n_ok)
        c -= 1
    tl.store(dA_ptr + (pid_b * dim + ch) * N + n, dA_acc, mask=state_mask)
    out_mask = ch_ok & (rep == 0)  # (DL, NO, W, 1, 1)
    tl.store(dD_ptr + pid_b * dim + ch + rep * 0, dD_acc, mask=out_mask)
    tl.store(dbias_ptr + pid_b * dim + ch + rep * 0, dbias_acc, mask=out_mask)


def _geometry(u, A, B, T, backward=False):
    """Sizes and the block shape of a forward or backward launch."""
    b, d, L = u.shape
    N, G = A.shape[1], B.shape[1]
    NI, NO, W, DL = scan_config(b, d, N, backward)
    block_ch = block_channels(W * DL, d // G, G)
    return dict(b=b, d=d, L=L, N=N, G=G, NI=NI, NO=NO, W=W, DL=DL, block_ch=block_ch,
                n_blocks=triton.cdiv(d, block_ch), n_chunks=triton.cdiv(L, T), T=T)


def _forward(u, delta, A, B, C, D, z, delta_bias, softplus, seq_lengths, save_ck, want_last):
    g = _geometry(u, A, B, CHUNK_BWD if save_ck else CHUNK_FWD)
    b, d, N = g["b"], g["d"], g["N"]
    out = new_buffer(u.shape, u.dtype, u.device)  # (b, d, L)
    f32 = dict(device=u.device, dtype=torch.float32)
    last = new_buffer((b, d, N), **f32) if want_last else dummy(u)  # (b, d, N)
    ck = new_buffer((b, d, g["n_chunks"], N), **f32) if save_ck else dummy(u)  # (b, d, L/T, N)
    _fwd_kernel[(g["n_blocks"], b)](
        u, delta, A, B, C, D if D is not None else dummy(u), z if z is not None else dummy(u),
        delta_bias if delta_bias is not None else dummy(u),
        seq_lengths if seq_lengths is not None else dummy(u), out, last, ck,
        g["L"], d, N, g["G"], d // g["G"], g["block_ch"], g["n_chunks"],
        T=g["T"], NI=g["NI"], NO=g["NO"], W=g["W"], DL=g["DL"], HAS_D=D is not None,
        HAS_Z=z is not None, HAS_BIAS=delta_bias is not None, SOFTPLUS=bool(softplus),
        HAS_LEN=seq_lengths is not None, SAVE_CK=save_ck, SAVE_LAST=want_last, num_warps=g["W"])
    return out, (last if want_last else None), (ck if save_ck else None)


def _backward(dout, dlast, u, delta, A, B, C, D, z, delta_bias, softplus, seq_lengths, ck):
    g = _geometry(u, A, B, CHUNK_BWD, backward=True)
    b, d, L, N, G = g["b"], g["d"], g["L"], g["N"], g["G"]
    f32 = dict(device=u.device, dtype=torch.float32)
    du = new_buffer(u.shape, u.dtype, u.device)  # (b, d, L)
    ddelta = new_buffer(delta.shape, delta.dtype, u.device)  # (b, d, L)
    dz = new_buffer(z.shape, z.dtype, u.device) if z is not None else dummy(u)  # (b, d, L)
    dB_part = new_buffer((b, g["n_blocks"], N, L), **f32)  # per channel block, summed below
    dC_part = new_buffer((b, g["n_blocks"], N, L), **f32)
    dA_part = new_buffer((b, d, N), **f32)  # per batch row, summed below
    dD_part = new_buffer((b, d), **f32)
    dbias_part = new_buffer((b, d), **f32)
    _bwd_kernel[(g["n_blocks"], b)](
        u, delta, A, B, C, D if D is not None else dummy(u), z if z is not None else dummy(u),
        delta_bias if delta_bias is not None else dummy(u),
        seq_lengths if seq_lengths is not None else dummy(u), dout,
        dlast if dlast is not None else dummy(u), ck,
        du, ddelta, dz, dB_part, dC_part, dA_part, dD_part, dbias_part,
        L, d, N, G, d // G, g["block_ch"], g["n_chunks"], g["n_blocks"],
        T=g["T"], NI=g["NI"], NO=g["NO"], W=g["W"], DL=g["DL"], HAS_D=D is not None,
        HAS_Z=z is not None, HAS_BIAS=delta_bias is not None, SOFTPLUS=bool(softplus),
        HAS_LEN=seq_lengths is not None, HAS_DLAST=dlast is not None, num_warps=g["W"])
    # every block lies in one group; blocks of a group are consecutive (not -1: L may be 0)
    per_group = g["n_blocks"] // G
    dB = dB_part.view(b, G, per_group, N, L).sum(2)  # (b, G, N, L)
    dC = dC_part.view(b, G, per_group, N, L).sum(2)  # (b, G, N, L)
    return (du, ddelta, dA_part.sum(0), dB, dC, dD_part.sum(0), dz if z is not None else None,
            dbias_part.sum(0))


class _SelectiveScan(torch.autograd.Function):
    @staticmethod
    def forward(ctx, u, delta, A, B, C, D, z, delta_bias, softplus, seq_lengths, want_last):
        save = any(ctx.needs_input_grad)  # (grad mode is off inside forward)
        out, last, ck = _forward(u, delta, A, B, C, D, z, delta_bias, softplus, seq_lengths,
                                 save, want_last)
        if save:
            ctx.save_for_backward(u, delta, A, B, C, D, z, delta_bias, seq_lengths, ck)
            ctx.softplus = softplus
        return (out, last) if want_last else out

    @staticmethod
    def backward(ctx, dout, dlast=None):
        u, delta, A, B, C, D, z, delta_bias, seq_lengths, ck = ctx.saved_tensors
        grads = _backward(dout.contiguous(), None if dlast is None else dlast.contiguous(),
                          u, delta, A, B, C, D, z, delta_bias, ctx.softplus, seq_lengths, ck)
        du, ddelta, dA, dB, dC, dD, dz, dbias = grads
        return (du, ddelta, dA.to(A.dtype), dB.to(B.dtype), dC.to(C.dtype),
                None if D is None else dD.to(D.dtype), dz,
                None if delta_bias is None else dbias.to(delta_bias.dtype), None, None, None)


def selective_scan(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False,
                   return_last_state=False, seq_lengths=None):
    """Selective scan on the GPU (or on CPU tensors under ``TRITON_INTERPRET=1``).

    Parameters
    ----------
    u, delta : Tensor, shape (b, d, L)
        float16, bfloat16 or float32.
    A : Tensor, shape (d, N)
    B, C : Tensor, shape (b, N, L) or (b, G, N, L)
    D, delta_bias : Tensor, shape (d,), optional
    z : Tensor, shape (b, d, L), optional
    delta_softplus, return_last_state : bool
    seq_lengths : Tensor of int, shape (b,), optional

    Returns
    -------
    out : Tensor, shape (b, d, L), dtype of ``u``
    last_state : Tensor, shape (b, d, N), float32, only with ``return_last_state``

    Notes
    -----
    Same meaning as :func:`ssmsignal.kernels.reference.selective_scan` (the specification);
    arithmetic and state in float32. Differentiable with respect to every floating tensor
    argument, ``last_state`` included; the gradients are bit-identical from run to run.
    """
    check_device_dtypes("selective_scan", u, delta, A, B, C, D, z, delta_bias)
    B, C = (t.contiguous() for t in expand_groups("selective_scan", B, C, 4))  # (b, G, N, L)
    lengths = None if seq_lengths is None else seq_lengths.to(device=u.device, dtype=torch.int32)
    return _SelectiveScan.apply(u.contiguous(), delta.contiguous(), A.contiguous(), B, C,
                                None if D is None else D.contiguous(),
                                None if z is None else z.contiguous(),
                                None if delta_bias is None else delta_bias.contiguous(),
                                bool(delta_softplus), lengths, bool(return_last_state))
