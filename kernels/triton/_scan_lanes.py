"""Helpers shared by the selective-scan kernels: per-step math and exchanges between lanes.

Per-step math: ``softplus`` with its derivative, and ``sigmoid``, precise, with the hardware
approximations (GPU only), or with a polynomial ``log1p`` (no second special-function op);
``exp2_fma``: ``2**x`` on the multiply-add units (no special-function unit).

Lane exchanges: in the chunk layout (:mod:`._common`) with 8 channel lanes (axis 0, lane bits
0-2) and 4 state lanes (axis 1, bits 3-4) per warp, sums over a warp's channels or a channel's
states can end spread over the lanes (reduce-scatter: :func:`sum_channels_scatter`,
:func:`sum_states_scatter`), and per-step values held by one state lane each can be handed to
all four (:func:`gather_steps`), with PTX ``shfl.sync`` in inline asm. They assume the layout
in which Triton usually places these tensors; the launcher checks it in each compiled kernel
(``_common.lane_layout_errors``) and falls back to the kernel without them. Under the
interpreter (no PTX) the exchanges are emulated with masked sums (``EMULATE``).
"""

from __future__ import annotations

import triton
import triton.language as tl
from triton.language.extra import libdevice

from ._common import LN2, LOG2E

__all__ = ["exp2_fma", "gather_steps", "sigmoid", "softplus_sigmoid", "sum_channels_scatter",
           "sum_states_scatter"]


@triton.jit
def softplus_sigmoid(x, FAST: tl.constexpr, POLY: tl.constexpr = False):
    """``(softplus(x), sigmoid(x))`` (PyTorch's threshold: ``x`` and 1 above 20), float32.

    One ``exp2``; ``FAST`` (GPU only: the interpreter has no libdevice) takes the hardware
    approximations ``lg2.approx`` (absolute error ~1.6e-7 near 1) and ``div.approx`` (2 ulp),
    with a 6-term series for ``log1p(e)`` below ``e = 1/8`` where the absolute error of
    ``lg2.approx`` would be a large relative one: relative error ~1e-6 everywhere.
    Otherwise the precise ``log`` and division (libdevice polynomial, ~30 instructions).
    ``POLY``: ``max(x, 0) + log1p(e)`` with ``e = exp(-|x|)`` and ``log1p(e) = e p(e)``, ``p`` a
    degree-8 fit (relative error 2.3e-7 in float32 on [0, 1]): ~12 instructions and no second
    special-function op; above 20 it rounds to ``x`` (and the sigmoid to 1) by itself.
    """
    if POLY:
        return _softplus_sigmoid_poly(x, FAST)
    e = tl.exp2(tl.minimum(x, 20.0) * LOG2E)
    ope = 1.0 + e
    if FAST:
        series = e * (1.0 - e * (0.5 - e * (1.0 / 3.0 - e * (0.25 - e * (0.2 - e * (1.0 / 6.0))))))
        sp = tl.where(e < 0.125, series, libdevice.fast_log2f(ope) * LN2)
        sg = libdevice.fast_dividef(e, ope)
    else:
        sp = tl.log(ope)
        sg = e / ope
    return tl.where(x > 20.0, x, sp), tl.where(x > 20.0, 1.0, sg)


@triton.jit
def _softplus_sigmoid_poly(x, FAST: tl.constexpr):
    """:func:`softplus_sigmoid` with ``POLY`` (coefficients: a relative minimax fit of
    ``log1p(e) / e`` on [0, 1], Lawson iterations over Chebyshev polynomials, in float64)."""
    e = tl.exp2(-tl.abs(x) * LOG2E)  # (0, 1]
    p = tl.fma(e, 0.005232447868182808, -0.029503788578386873)
    p = tl.fma(p, e, 0.07822270688871141)
    p = tl.fma(p, e, -0.13662879020776958)
    p = tl.fma(p, e, 0.19105778655814)
    p = tl.fma(p, e, -0.24842903890408335)
    p = tl.fma(p, e, 0.3331908289517701)
    p = tl.fma(p, e, -0.49999492062543494)
    p = tl.fma(p, e, 0.9999999696481187)
    sp = tl.fma(e, p, tl.maximum(x, 0.0))
    if FAST:
        r = libdevice.fast_dividef(1.0, 1.0 + e)
    else:
        r = 1.0 / (1.0 + e)
    return sp, tl.where(x >= 0.0, r, e * r)


@triton.jit
def exp2_fma(x):
    """``2**x`` on the multiply-add units, not the special-function unit (its rate is 1/8 of
    theirs on sm_90): ``x`` clamped to [-126, 126], split as ``j + f`` (``j`` an integer by the
    1.5 * 2**23 rounding trick, ``|f| <= 1/2``), ``2**f`` by a degree-5 fit with ``p(0) = 1``
    (relative error 1.9e-7 in float32, as ``ex2.approx``), ``2**j`` added to the exponent
    bits; ~11 instructions. NaN gives a finite value (the clamp): callers must propagate NaN
    otherwise."""
    x = tl.minimum(tl.maximum(x, -126.0), 126.0)
    t = x + 12582912.0  # 1.5 * 2**23: j in the low mantissa bits of t
    f = x - (t - 12582912.0)  # [-1/2, 1/2]
    p = tl.fma(f, 0.0013264660958608391, 0.009671490577824095)
    p = tl.fma(p, f, 0.05550733703860281)
    p = tl.fma(p, f, 0.24022242430914945)
    p = tl.fma(p, f, 0.6931469777653927)
    p = tl.fma(p, f, 1.0)  # exactly 1 at f = 0: 2**0 = 1, a padded step keeps the state
    bits = p.to(tl.int32, bitcast=True) + (t.to(tl.int32, bitcast=True) << 23)
    return bits.to(tl.float32, bitcast=True)


@triton.jit
def sigmoid(x, FAST: tl.constexpr):
    """``1 / (1 + exp(-x))``; ``FAST``: approximate division (2 ulp)."""
    e = tl.exp2(-x * LOG2E)
    if FAST:
        s = libdevice.fast_dividef(1.0, 1.0 + e)
    else:
        s = 1.0 / (1.0 + e)
    return s


@triton.jit
def _shfl_xor(x, idx, BIT: tl.constexpr, AXIS: tl.constexpr, EMULATE: tl.constexpr):
    """``x`` of the element whose index along ``AXIS`` (0: channel lanes, 1: state lanes) is
    ``idx ^ 2**BIT``. On the GPU the value held by that lane (PTX ``shfl.sync.bfly``): in the
    chunk layout with 8 channel lanes, axis 0 is lane bits 0-2 and axis 1 lane bits 3-4.
    ``EMULATE`` (the interpreter, which runs no PTX): the same exchange as a masked sum."""
    if EMULATE:
        if AXIS == 0:
            src = tl.arange(0, x.shape[0])[:, None, None, None, None, None]
            pick = (src ^ (1 << BIT)) == idx[None, :, :, :, :, :]  # (DL, DL, 1, 1, 1, 1)
            y = tl.sum(tl.where(pick, x[:, None, :, :, :, :], 0.0), axis=0)
        else:
            src = tl.arange(0, x.shape[1])[None, :, None, None, None, None]
            pick = (src ^ (1 << BIT)) == idx[:, None, :, :, :, :]  # (1, NO, NO, 1, 1, 1)
            y = tl.sum(tl.where(pick, x[:, :, None, :, :, :], 0.0), axis=1)
    else:
        y = tl.inline_asm_elementwise("shfl.sync.bfly.b32 $0, $1, $2, 0x1f, 0xffffffff;",
                                      "=r,r,r",
                                      [x, tl.full(x.shape, 1 << (BIT + 3 * AXIS), tl.int32)],
                                      dtype=tl.float32, is_pure=True, pack=1)
    return y


@triton.jit
def _halve_lanes(x, lane, BIT: tl.constexpr, EMULATE: tl.constexpr):
    """One step of a reduce-scatter over axis 0: with the partner ``lane ^ 2**BIT``, each
    lane keeps the even (its bit 0) or odd (bit 1) steps of the last axis and adds the
    partner's values of them; the last axis halves."""
    a, b = tl.split(tl.reshape(x, (x.shape[0], x.shape[1], x.shape[2], x.shape[3],
                                   x.shape[4] // 2, 2)))
    odd = ((lane >> BIT) & 1) == 1  # (DL, 1, 1, 1, 1)
    return tl.where(odd, b, a) + _shfl_xor(tl.where(odd, a, b), lane, BIT, 0, EMULATE)


@triton.jit
def sum_channels_scatter(x, lane, EMULATE: tl.constexpr):
    """Sum over axis 0 (the 8 channel lanes) of a ``(8, NO, W, NI, 8)`` tensor, spread:
    lane ``l`` (``lane``: its (8, 1, 1, 1, 1) index) gets step ``l`` of the last axis, a
    ``(8, NO, W, NI, 1)`` tensor (28 shuffles per thread instead of a butterfly's 96, and no
    exchange through shared memory before the store)."""
    x = _halve_lanes(x, lane, 0, EMULATE)
    return _halve_lanes(_halve_lanes(x, lane, 1, EMULATE), lane, 2, EMULATE)


@triton.jit
def _halves(x):
    """First and second half of the last axis (in registers)."""
    y = tl.reshape(x, (x.shape[0], x.shape[1], x.shape[2], x.shape[3], 2, x.shape[4] // 2))
    return tl.split(tl.permute(y, (0, 1, 2, 3, 5, 4)))


@triton.jit
def sum_states_scatter(x, rep, EMULATE: tl.constexpr):
    """Sum over the states (axis 3 in registers, axis 1 over the 4 state lanes ``rep``) of a
    ``(DL, 4, W, NI, 8)`` tensor, spread: state lane ``j`` gets steps ``2 j, 2 j + 1``, a
    ``(DL, 4, W, 1, 2)`` tensor
    (6 shuffles per thread instead of a butterfly's 16)."""
    x = _halve_states(tl.sum(x, axis=3, keep_dims=True), rep, 1, EMULATE)
    return _halve_states(x, rep, 0, EMULATE)


@triton.jit
def _halve_states(x, rep, BIT: tl.constexpr, EMULATE: tl.constexpr):
    """Reduce-scatter step over the state lanes ``rep ^ 2**BIT``: the first or second half of
    the last axis (``rep`` bit 0 or 1)."""
    a, b = _halves(x)
    odd = ((rep >> BIT) & 1) == 1  # (1, 4, 1, 1, 1)
    return tl.where(odd, b, a) + _shfl_xor(tl.where(odd, a, b), rep, BIT, 1, EMULATE)


@triton.jit
def _from_lane_group(x, rep, J: tl.constexpr, EMULATE: tl.constexpr):
    """``x`` of the same channel on state lane ``J`` (axis 1; lane bits 3-4 in the chunk layout
    with 8 channel lanes): PTX ``shfl.sync.idx``, or emulated as a masked sum."""
    if EMULATE:
        y = tl.sum(tl.where(rep == J, x, 0.0), axis=1, keep_dims=True)
    else:
        y = tl.inline_asm_elementwise(
            "{ .reg .b32 l; mov.u32 l, %laneid; and.b32 l, l, 7; or.b32 l, l, $2; "
            "shfl.sync.idx.b32 $0, $1, l, 0x1f, 0xffffffff; }", "=r,r,r",
            [x, tl.full(x.shape, J * 8, tl.int32)], dtype=tl.float32, is_pure=True, pack=1)
    return y


@triton.jit
def gather_steps(x, rep, EMULATE: tl.constexpr):
    """All ``4 K`` steps on every state lane from a ``(DL, 4, W, 1, K)`` tensor in which state
    lane ``j`` holds steps ``j K .. j K + K - 1`` (16 shuffles per thread for K = 4)."""
    g0 = _from_lane_group(x, rep, 0, EMULATE)
    g1 = _from_lane_group(x, rep, 1, EMULATE)
    g2 = _from_lane_group(x, rep, 2, EMULATE)
    g3 = _from_lane_group(x, rep, 3, EMULATE)
    y = tl.join(tl.join(g0, g1), tl.join(g2, g3))  # (..., K, 2, 2): [r, a, b] = g_(a + 2b)[r]
    y = tl.permute(y, (0, 1, 2, 3, 6, 5, 4))
    return tl.reshape(y, (y.shape[0], y.shape[1], y.shape[2], y.shape[3], 4 * x.shape[4]))
