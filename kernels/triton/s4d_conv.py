"""Fused S4D convolution in Triton: the layer's convolution as a diagonal recurrence.

Same arguments and meaning as :func:`ssmsignal.kernels.reference.s4d_conv` (the
specification): ``u (b, L, H)`` real, ``log_z, coef (H, N)`` or ``(b, H, N)`` complex,
``y = K * u + D u`` with ``K[h, l] = 2 Re(sum_n coef[h, n] z[h, n]^l)`` (S4D, Gu et al. 2022).
That convolution is exactly the output of the time-invariant diagonal recurrence::

    x_t = z x_{t-1} + u_t,   y_t = 2 Re(sum_n coef_n x_{t,n}) + D u_t      (x_{-1} = 0)

so the kernels read ``u`` once in the layer's own ``(b, L, H)`` layout (coalesced along ``H``)
and write ``y`` once: no transposes, no FFT buffers, ~N complex multiply-adds per output.

Layout: one program owns one batch row and ``BH = W * DL`` channels; per-channel values are
``(DL, NO, W, NI)`` tensors: lanes along (channel ``DL``, mode group ``NO``), warps along ``W``,
and ``NI`` modes per thread (mode ``n = ni * NO + no``). The parameter tables are loaded through
an offset whose contiguity the compiler cannot see, so that their layout (lanes from axis 0 on)
is the one every tensor of the loop shares (the trick of ``selective_scan.py``). A loop walks the
sequence in chunks of ``T`` steps: the next chunk's inputs ``(DL, NO, W, T)`` are loaded before
the current chunk's ``T`` unrolled steps; a step's column is picked out of the chunk with
:func:`_column` (folded to a register move by the compiler).

Accuracy: ``z`` is rounded once to float32 and raised to the ``t``-th power by the recurrence,
which would cost a relative error ``~ t * 6e-8`` on ``z^t`` (1e-4 on slowly decaying modes).
Every ``S = RHO_SPAN`` steps (at the start of every ``S / T``-th chunk) the carried state is
multiplied by ``rho = z^S / fl(z)^S`` (computed in float64), so after those ``S`` steps it has
been carried by ``z^S`` itself, and the error stays at ``S`` roundings.

Backward (PyTorch's complex convention, ``grad = dL/dRe + i dL/dIm``), from ``dy (b, L, H)``,
with the reverse recurrences ``r_t = dy_t + z r_{t+1}`` and ``R_t = r_t + z R_{t+1}``::

    du_t   = 2 Re(sum_n coef_n r_{t,n}) + D dy_t
    S1     = sum_t u_t r_t,  S2 = sum_t u_t R_{t+1}   (per batch row, channel, mode)
    dcoef  = 2 conj(S1),     dlog_z = 2 conj(coef z S2),    dD = sum_t dy_t u_t

(``S2 = sum_t r_t x_{t-1}`` rewritten so that one reverse pass gives everything: no state
checkpoints, no recomputation). Per-row partial sums ``(b, H, N)`` are reduced with
``torch.sum``: deterministic, no atomics.
"""

from __future__ import annotations

import math

import torch
import triton
import triton.language as tl

from ._common import check_device_dtypes, dummy, new_buffer

__all__ = ["s4d_conv"]

#: Time steps per chunk, forward and backward; the backward halves its chunk when a thread
#: holds more than 4 modes (16 steps x 8 modes spill registers in the loop).
CHUNK_FWD = 16
CHUNK_BWD = 16
#: Steps between two rho corrections of the carried state (a multiple of both chunks).
RHO_SPAN = 32
#: ``(NO, W)`` (lanes per channel along the modes, warps per program) of the forward and the
#: backward kernel; NO grows for more modes (:data:`MAX_MODES`) and for small problems.
#: Measured on the H100 at b16 H256 L16384 N32 (NOTES.md, rounds 2 and 3): forward (4, 1)
#: 1.12 ms (NO = 8: 1.28), backward (8, 2) 2.09 ms with 8-step chunks, 1.94 ms with 16
#: (NO = 4: 2.6; 255 registers, one warp per scheduler).
CONFIG = {"fwd": (4, 1), "bwd": (8, 2)}
#: Most modes per thread: 8 (at most 168 registers forward; the backward reaches 255 but
#: spills only outside its loop: sm_90 report in NOTES.md).
MAX_MODES = {"fwd": 8, "bwd": 8}


@triton.jit
def _column(tile, tt, i: tl.constexpr):
    """Step ``i`` of a ``(..., T)`` chunk held in registers, as ``(..., 1)``.

    The other entries become -0.0 (the additive identity), so after unrolling the selects and
    adds fold away and this is a register move.
    """
    return tl.sum(tl.where(tt == i, tile, -0.0), axis=3, keep_dims=True)


@triton.jit
def _sum_modes(x):
    """Sum over the modes: axis 3 in registers, then axis 1 across the ``NO`` lanes."""
    return tl.sum(tl.sum(x, axis=3, keep_dims=True), axis=1, keep_dims=True)


@triton.jit
def _program(tab_ptr, D_ptr, L, H, N, tab_b, tab_plane, NI: tl.constexpr, NO: tl.constexpr,
             W: tl.constexpr, DL: tl.constexpr, HAS_D: tl.constexpr):
    """What both kernels set up: indices and masks of the program's channels and modes, the
    parameters from the tables ``(6, P, H, N)`` (Re/Im of z, 2 coef, rho) and D."""
    pid_b = tl.program_id(1).to(tl.int64)
    lane = tl.arange(0, DL)[:, None, None, None]
    rep = tl.arange(0, NO)[None, :, None, None]  # (1, NO, 1, 1)
    ch = tl.program_id(0) * (W * DL) + tl.arange(0, W)[None, None, :, None] * DL + lane
    n = tl.arange(0, NI)[None, None, None, :] * NO + rep  # (1, NO, 1, NI)
    ch_ok = ch < H  # (DL, 1, W, 1)
    p_ok = ch_ok & (n < N)  # (DL, NO, W, NI)
    nh = (n * N) // N  # n with its contiguity hidden (see the module docstring)
    p_off = pid_b * tab_b + ch * N + nh  # (DL, NO, W, NI)
    zr = tl.load(tab_ptr + p_off, mask=p_ok, other=0.0)
    zi = tl.load(tab_ptr + tab_plane + p_off, mask=p_ok, other=0.0)
    cr = tl.load(tab_ptr + 2 * tab_plane + p_off, mask=p_ok, other=0.0)
    ci = tl.load(tab_ptr + 3 * tab_plane + p_off, mask=p_ok, other=0.0)
    hr = tl.load(tab_ptr + 4 * tab_plane + p_off, mask=p_ok, other=0.0)
    hi = tl.load(tab_ptr + 5 * tab_plane + p_off, mask=p_ok, other=0.0)
    # the channel index with its contiguity hidden too: otherwise (H, L and the pointers
    # divisible by 16, as Triton specialises them) the sequence loads get a vectorised layout
    # of their own and every chunk goes through shared-memory layout conversions
    chh = (ch * H) // H  # (DL, 1, W, 1)
    Dv = 0.0
    if HAS_D:
        Dv = tl.load(D_ptr + chh, mask=ch_ok, other=0.0).to(tl.float32)  # (DL, 1, W, 1)
    io_off = pid_b * L * H + chh + rep * 0  # (DL, NO, W, 1): (b, 0, h) in u, y, dy, du
    return pid_b, ch, ch_ok, rep, nh, p_ok, io_off, zr, zi, cr, ci, hr, hi, Dv


@triton.jit
def _fwd_kernel(u_ptr, tab_ptr, D_ptr, y_ptr, L, H, N, tab_b, tab_plane, n_chunks,
                T: tl.constexpr, NI: tl.constexpr, NO: tl.constexpr, W: tl.constexpr,
                DL: tl.constexpr, HAS_D: tl.constexpr, EVEN: tl.constexpr,
                RHO_EVERY: tl.constexpr):
    pid_b, ch, ch_ok, rep, nh, p_ok, io_off, zr, zi, cr, ci, hr, hi, Dv = _program(
        tab_ptr, D_ptr, L, H, N, tab_b, tab_plane, NI, NO, W, DL, HAS_D)
    tt = tl.arange(0, T)[None, None, None, :]  # (1, 1, 1, T)
    xr = tl.zeros((DL, NO, W, NI), dtype=tl.float32)
    xi = tl.zeros((DL, NO, W, NI), dtype=tl.float32)
    if EVEN:  # L a multiple of T, H of the channel block: no masks on the sequence
        u_nx = tl.load(u_ptr + io_off + tt * H)
    else:
        u_nx = tl.load(u_ptr + io_off + tt * H, mask=ch_ok & (tt < L), other=0.0)
    c = 0
    while c < n_chunks:  # (a while loop: Triton 3.6's interpreter cannot range() over an argument)
        t = c * T + tt  # (1, 1, 1, T)
        u_tile = u_nx.to(tl.float32)  # (DL, NO, W, T)
        if EVEN:  # after the last chunk, reload the last one (unused)
            u_nx = tl.load(u_ptr + io_off + (tl.minimum(c * T + T, L - T) + tt) * H)
        else:
            u_nx = tl.load(u_ptr + io_off + (t + T) * H, mask=ch_ok & (t + T < L), other=0.0)
        if c % RHO_EVERY == 0:  # x *= rho: the next RHO_SPAN steps with fl(z) carry it by z^S
            xr, xi = hr * xr - hi * xi, tl.fma(hr, xi, hi * xr)
        y_tile = tl.zeros((DL, NO, W, T), dtype=tl.float32)
        for i in tl.static_range(T):
            ui = _column(u_tile, tt, i)  # (DL, NO, W, 1)
            xr, xi = tl.fma(zr, xr, tl.fma(-zi, xi, ui)), tl.fma(zr, xi, zi * xr)
            yi = _sum_modes(tl.fma(cr, xr, -ci * xi)) + Dv * ui  # (DL, NO, W, 1)
            y_tile = tl.where(tt == i, yi, y_tile)
        if EVEN:
            tl.store(y_ptr + io_off + t * H, y_tile.to(y_ptr.dtype.element_ty), mask=rep == 0)
        else:
            tl.store(y_ptr + io_off + t * H, y_tile.to(y_ptr.dtype.element_ty),
                     mask=ch_ok & (t < L) & (rep == 0))
        c += 1


@triton.jit
def _bwd_kernel(u_ptr, dy_ptr, tab_ptr, D_ptr, du_ptr, s_ptr, dD_ptr,
                L, H, N, tab_b, tab_plane, s_plane, n_chunks,
                T: tl.constexpr, NI: tl.constexpr, NO: tl.constexpr, W: tl.constexpr,
                DL: tl.constexpr, HAS_D: tl.constexpr, EVEN: tl.constexpr,
                RHO_EVERY: tl.constexpr):
    pid_b, ch, ch_ok, rep, nh, p_ok, io_off, zr, zi, cr, ci, hr, hi, Dv = _program(
        tab_ptr, D_ptr, L, H, N, tab_b, tab_plane, NI, NO, W, DL, HAS_D)
    tt = tl.arange(0, T)[None, None, None, :]  # (1, 1, 1, T)
    zero = tl.zeros((DL, NO, W, NI), dtype=tl.float32)
    rr, ri, qr, qi = zero, zero, zero, zero  # r_t and R_t (the second reverse recurrence)
    s1r, s1i, s2r, s2i = zero, zero, zero, zero
    dD = tl.zeros((DL, NO, W, 1), dtype=tl.float32)
    c = n_chunks - 1
    t_nx = c * T + tt  # (1, 1, 1, T)
    if EVEN:  # L a multiple of T, H of the channel block: no masks on the sequence
        u_nx = tl.load(u_ptr + io_off + t_nx * H)
        g_nx = tl.load(dy_ptr + io_off + t_nx * H)
    else:
        u_nx = tl.load(u_ptr + io_off + t_nx * H, mask=ch_ok & (t_nx < L), other=0.0)
        g_nx = tl.load(dy_ptr + io_off + t_nx * H, mask=ch_ok & (t_nx < L), other=0.0)
    while c >= 0:
        t = c * T + tt  # (1, 1, 1, T)
        u_tile = u_nx.to(tl.float32)  # (DL, NO, W, T)
        g_tile = g_nx.to(tl.float32)
        if EVEN:  # before the first chunk, reload the first one (unused)
            t_nx = tl.maximum(c * T - T, 0) + tt
            u_nx = tl.load(u_ptr + io_off + t_nx * H)
            g_nx = tl.load(dy_ptr + io_off + t_nx * H)
        else:
            t_nx = t - T
            nx_ok = ch_ok & (t_nx >= 0)
            u_nx = tl.load(u_ptr + io_off + t_nx * H, mask=nx_ok, other=0.0)
            g_nx = tl.load(dy_ptr + io_off + t_nx * H, mask=nx_ok, other=0.0)
        # r, R *= rho at the start of a span (its last step): the next RHO_SPAN steps with
        # fl(z) then carry them by exactly z^S (R's double pole S z^S r included)
        if (n_chunks - 1 - c) % RHO_EVERY == 0:
            rr, ri = hr * rr - hi * ri, tl.fma(hr, ri, hi * rr)
            qr, qi = hr * qr - hi * qi, tl.fma(hr, qi, hi * qr)
        du_tile = tl.zeros((DL, NO, W, T), dtype=tl.float32)
        for j in tl.static_range(T):
            ui = _column(u_tile, tt, T - 1 - j)  # (DL, NO, W, 1)
            gi = _column(g_tile, tt, T - 1 - j)
            s2r = tl.fma(ui, qr, s2r)  # u_t R_{t+1}
            s2i = tl.fma(ui, qi, s2i)
            rr, ri = tl.fma(zr, rr, tl.fma(-zi, ri, gi)), tl.fma(zr, ri, zi * rr)  # r_t
            s1r = tl.fma(ui, rr, s1r)
            s1i = tl.fma(ui, ri, s1i)
            qr, qi = tl.fma(zr, qr, tl.fma(-zi, qi, rr)), tl.fma(zr, qi, tl.fma(zi, qr, ri))
            dui = _sum_modes(tl.fma(cr, rr, -ci * ri)) + Dv * gi  # (DL, NO, W, 1)
            du_tile = tl.where(tt == T - 1 - j, dui, du_tile)
        dD += tl.sum(u_tile * g_tile, axis=3, keep_dims=True)
        if EVEN:
            tl.store(du_ptr + io_off + t * H, du_tile.to(du_ptr.dtype.element_ty), mask=rep == 0)
        else:
            tl.store(du_ptr + io_off + t * H, du_tile.to(du_ptr.dtype.element_ty),
                     mask=ch_ok & (t < L) & (rep == 0))
        c -= 1
    s_off = (pid_b * H + ch) * N + nh  # (DL, NO, W, NI) in (b, H, N)
    tl.store(s_ptr + s_off, s1r, mask=p_ok)
    tl.store(s_ptr + s_plane + s_off, s1i, mask=p_ok)
    tl.store(s_ptr + 2 * s_plane + s_off, s2r, mask=p_ok)
    tl.store(s_ptr + 3 * s_plane + s_off, s2i, mask=p_ok)
    tl.store(dD_ptr + pid_b * H + ch + rep * 0, dD, mask=ch_ok & (rep == 0))


def _config(b, H, N, kind):
    """``(NI, NO, W, DL)`` of a launch: ``NO`` lanes per channel hold ``NI`` modes each.

    ``NO`` starts from :data:`CONFIG`, grows until a thread holds at most :data:`MAX_MODES`
    modes, and doubles while there are too few threads to give each of an H100's 132
    multiprocessors one warp (few sequences and channels).
    """
    NP = max(1, triton.next_power_of_2(N))
    NO, W = CONFIG[kind]
    while NO < 32 and (NP // NO > MAX_MODES[kind] or b * H * NO < 132 * 32):
        NO *= 2
    NO = min(NO, NP)
    return NP // NO, NO, W, 32 // NO


def _tables(log_z, coef, T):
    """``(6, P, H, N)`` float32 planes: Re/Im of ``z = exp(log_z)``, ``2 coef`` and ``rho``.

    ``rho = z^T / fl(z)^T = exp(T (log_z - log fl(z)))`` (float64; 1 where ``fl(z)`` underflows
    to 0) makes ``T`` recurrence steps with the rounded ``fl(z)`` multiply a chunk's carried
    state by exactly ``z^T``.
    """
    lz = log_z.to(torch.complex128)  # (P, H, N)
    z32 = torch.exp(lz).to(torch.complex64)
    d = lz - torch.log(z32.to(torch.complex128))  # ~1e-8; its phase modulo 2 pi
    d = torch.complex(d.real, torch.remainder(d.imag + math.pi, 2 * math.pi) - math.pi)
    rho = torch.where(z32 == 0, torch.ones_like(d), torch.exp(T * d)).to(torch.complex64)
    planes = [z32, 2.0 * coef.to(torch.complex64), rho]  # 2 coef: the read-out is 2 Re(...)
    return torch.stack([p for t in planes for p in (t.real, t.imag)]).contiguous()


def _rho_every(T):
    """Chunks of ``T`` steps between two rho corrections (``RHO_SPAN // T``, at least 1)."""
    return max(1, RHO_SPAN // T)


def _forward(u, tab, D):
    b, L, H = u.shape
    _, P, _, N = tab.shape
    NI, NO, W, DL = _config(b, H, N, "fwd")
    every = _rho_every(CHUNK_FWD)
    y = new_buffer(u.shape, u.dtype, u.device)  # (b, L, H)
    _fwd_kernel[(triton.cdiv(H, W * DL), b)](
        u, tab, D if D is not None else dummy(u), y, L, H, N, H * N if P > 1 else 0, P * H * N,
        triton.cdiv(L, CHUNK_FWD), T=CHUNK_FWD, NI=NI, NO=NO, W=W, DL=DL,
        HAS_D=D is not None, EVEN=L % CHUNK_FWD == 0 and H % (W * DL) == 0, RHO_EVERY=every,
        num_warps=W)
    return y


def _backward(dy, u, tab, log_z, coef, D):
    b, L, H = u.shape
    P, _, N = log_z.shape
    NI, NO, W, DL = _config(b, H, N, "bwd")
    T = CHUNK_BWD if NI <= 4 else max(1, CHUNK_BWD // 2)
    every = _rho_every(T)
    if every * T != _rho_every(CHUNK_FWD) * CHUNK_FWD:  # other span: other rho
        tab = _tables(log_z, coef, every * T)  # (6, P, H, N)
    du = new_buffer(u.shape, u.dtype, u.device)  # (b, L, H)
    sums = new_buffer((4, b, H, N), torch.float32, u.device)  # Re/Im of S1, S2 per row
    dD = new_buffer((b, H), torch.float32, u.device)  # per row
    _bwd_kernel[(triton.cdiv(H, W * DL), b)](
        u, dy, tab, D if D is not None else dummy(u), du, sums, dD, L, H, N,
        H * N if P > 1 else 0, P * H * N, b * H * N, triton.cdiv(L, T),
        T=T, NI=NI, NO=NO, W=W, DL=DL, HAS_D=D is not None,
        EVEN=L % T == 0 and H % (W * DL) == 0, RHO_EVERY=every, num_warps=W)
    if P == 1:  # parameters shared by the batch: reduce the per-row sums
        sums = sums.sum(1, keepdim=True)  # (4, 1, H, N)
    s1 = torch.complex(sums[0], sums[1])  # (P, H, N)
    s2 = torch.complex(sums[2], sums[3])
    cdtype = coef.dtype
    z = torch.exp(log_z.to(cdtype))
    dcoef = 2.0 * s1.to(cdtype).conj()
    dlog_z = 2.0 * (coef * z * s2.to(cdtype)).conj()
    return du, dlog_z, dcoef, dD.sum(0)


class _S4DConv(torch.autograd.Function):
    @staticmethod
    def forward(ctx, u, log_z, coef, D):
        tab = _tables(log_z, coef, _rho_every(CHUNK_FWD) * CHUNK_FWD)  # (6, P, H, N)
        ctx.save_for_backward(u, tab, log_z, coef, D)
        return _forward(u, tab, D)

    @staticmethod
    def backward(ctx, dy):
        u, tab, log_z, coef, D = ctx.saved_tensors
        du, dlog_z, dcoef, dD = _backward(dy.contiguous(), u, tab, log_z, coef, D)
        return du, dlog_z, dcoef, None if D is None else dD.to(D.dtype)


def s4d_conv(u, log_z, coef, D=None):
    """Fused S4D convolution on the GPU (or on CPU tensors under ``TRITON_INTERPRET=1``).

    Parameters
    ----------
    u : Tensor, shape (b, L, H)
        float16, bfloat16 or float32 input.
    log_z, coef : Tensor, shape (H, N) or (b, H, N), complex64 (or complex128)
        Discretised nodes (logarithms) and coefficients; with a batch axis, one set per sequence.
    D : Tensor, shape (H,), optional
        Skip connection.

    Returns
    -------
    Tensor, shape (b, L, H), dtype of ``u``
        ``y[b, t, h] = sum_{j <= t} K[h, j] u[b, t - j, h] + D[h] u[b, t, h]``.

    Notes
    -----
    Arithmetic in float32 (the tables are prepared in float64); differentiable with respect to
    ``u``, ``log_z``, ``coef`` and ``D``, with bit-identical gradients from run to run.
    """
    if not (log_z.is_complex() and coef.is_complex()):
        raise TypeError(f"s4d_conv: log_z and coef must be complex, got {log_z.dtype} and "
                        f"{coef.dtype}")
    b, L, H = u.shape
    if log_z.shape != coef.shape or log_z.dim() not in (2, 3) or log_z.shape[-2] != H or (
            log_z.dim() == 3 and log_z.shape[0] != b):
        raise ValueError(f"s4d_conv: log_z and coef must both have shape (H={H}, N) or "
                         f"(b={b}, H={H}, N), got {tuple(log_z.shape)} and {tuple(coef.shape)}")
    check_device_dtypes("s4d_conv", u, D)
    if (L + CHUNK_FWD) * H >= 2 ** 31:  # in-kernel offsets along the sequence are int32
        raise ValueError(f"s4d_conv: the Triton kernel needs (L + {CHUNK_FWD}) * H < 2^31, got "
                         f"L={L}, H={H} (use backend='torch')")
    batched = log_z.dim() == 3
    lz = log_z if batched else log_z.unsqueeze(0)  # (P, H, N)
    cf = coef if batched else coef.unsqueeze(0)
    if lz.shape[-1] == 0 or H == 0 or b == 0:  # no modes: K = 0, y = D u
        return u * D if D is not None else torch.zeros_like(u)
    y = _S4DConv.apply(u.contiguous(), lz.contiguous(), cf.contiguous(),
                       None if D is None else D.contiguous())
    return y
