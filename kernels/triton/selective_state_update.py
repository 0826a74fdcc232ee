"""One selective-scan step for decoding, in Triton: updates the state in place.

Same arguments and meaning as :func:`ssmsignal.kernels.reference.selective_state_update`. One
program owns one batch row and a block of channels with all their states: it reads the state
once, writes it once, and writes ``y``. Any strides are accepted (the state is updated where it
lies, so it is never copied).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from ..reference import expand_groups
from ._common import LOG2E, check_device_dtypes, dummy, new_buffer, prepare_dt

__all__ = ["selective_state_update"]


@triton.jit
def _step_kernel(state_ptr, x_ptr, dt_ptr, A_ptr, B_ptr, C_ptr, D_ptr, z_ptr, bias_ptr, y_ptr,
                 dim, N, ch_per_group,
                 s_hb, s_hd, s_hn, s_xb, s_xd, s_tb, s_td, s_ad, s_an, s_bb, s_bg, s_bn,
                 s_cb, s_cg, s_cn, s_zb, s_zd,
                 BD: tl.constexpr, BN: tl.constexpr, HAS_D: tl.constexpr, HAS_Z: tl.constexpr,
                 HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr):
    pid_d = tl.program_id(0)
    b = tl.program_id(1).to(tl.int64)
    ch = pid_d * BD + tl.arange(0, BD)[:, None]  # (BD, 1)
    n = tl.arange(0, BN)[None, :]  # (1, BN)
    ch_ok = ch < dim
    mask = ch_ok & (n < N)  # (BD, BN)
    grp = ch // ch_per_group  # (BD, 1)
    x = tl.load(x_ptr + b * s_xb + ch * s_xd, mask=ch_ok, other=0.0).to(tl.float32)  # (BD, 1)
    raw = tl.load(dt_ptr + b * s_tb + ch * s_td, mask=ch_ok, other=0.0).to(tl.float32)
    bias = 0.0
    if HAS_BIAS:
        bias = tl.load(bias_ptr + ch, mask=ch_ok, other=0.0).to(tl.float32)  # (BD, 1)
    dt = prepare_dt(raw, bias, SOFTPLUS)  # (BD, 1)
    A = tl.load(A_ptr + ch * s_ad + n * s_an, mask=mask, other=0.0).to(tl.float32)  # (BD, BN)
    Bv = tl.load(B_ptr + b * s_bb + grp * s_bg + n * s_bn, mask=mask, other=0.0).to(tl.float32)
    Cv = tl.load(C_ptr + b * s_cb + grp * s_cg + n * s_cn, mask=mask, other=0.0).to(tl.float32)
    h_ptrs = state_ptr + b * s_hb + ch * s_hd + n * s_hn  # (BD, BN)
    h = tl.load(h_ptrs, mask=mask, other=0.0)
    h = tl.exp2(dt * A * LOG2E) * h.to(tl.float32) + (dt * x) * Bv  # (BD, BN)
    tl.store(h_ptrs, h.to(state_ptr.dtype.element_ty), mask=mask)
    y = tl.sum(h * Cv, axis=1, keep_dims=True)  # (BD, 1)
    if HAS_D:
        y += tl.load(D_ptr + ch, mask=ch_ok, other=0.0).to(tl.float32) * x
    if HAS_Z:
        zz = tl.load(z_ptr + b * s_zb + ch * s_zd, mask=ch_ok, other=0.0).to(tl.float32)
        y *= zz * tl.sigmoid(zz)
    tl.store(y_ptr + b * dim + ch, y.to(y_ptr.dtype.element_ty), mask=ch_ok)


def selective_state_update(state, x, dt, A, B, C, D=None, z=None, dt_bias=None, dt_softplus=False):
    """One decoding step of the selective scan; updates ``state (b, d, N)`` float32 in place.

    Parameters and returns as :func:`ssmsignal.kernels.reference.selective_state_update`:
    returns ``y (b, d)`` in ``x``'s dtype. Not differentiable (decoding only).
    """
    check_device_dtypes("selective_state_update", x, dt, A, B, C, D, z, dt_bias)
    if state.dtype != torch.float32:
        raise TypeError("selective_state_update: the Triton kernel keeps a float32 state, got "
                        f"{state.dtype} (use backend='torch' for float64)")
    b, d, N = state.shape
    B3, C3 = expand_groups("selective_state_update", B, C, 3)  # (b, G, N) each
    y = new_buffer((b, d), x.dtype, x.device)  # (b, d)
    BN = triton.next_power_of_2(N)
    BD = max(1, min(triton.next_power_of_2(d), 4096 // BN, 64))
    zz = z if z is not None else x
    _step_kernel[(triton.cdiv(d, BD), b)](
        state, x, dt, A, B3, C3, D.contiguous() if D is not None else dummy(x), zz,
        dt_bias.contiguous() if dt_bias is not None else dummy(x), y,
        d, N, d // B3.shape[1], *state.stride(), *x.stride(), *dt.stride(), *A.stride(),
        *B3.stride(), *C3.stride(), *zz.stride(),
        BD=BD, BN=BN, HAS_D=D is not None, HAS_Z=z is not None, HAS_BIAS=dt_bias is not None,
        SOFTPLUS=bool(dt_softplus), num_warps=4)
    return y
