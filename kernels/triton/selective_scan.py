"""Selective scan (Mamba's S6 recurrence) in Triton: forward, backward, autograd wrapper.

Same arguments and meaning as :func:`ssmsignal.kernels.reference.selective_scan` (the
specification). One program owns one batch row, a block of channels and a time segment; the
state of all its channels (``(BD, N)`` float32) stays in registers while a loop walks over the
segment in chunks of ``T`` steps; inside a chunk the recurrence is a ``tl.associative_scan``
whose axis lies in one thread's registers (see :mod:`ssmsignal.kernels.triton._common` for the
layout), so it compiles to a plain sequential loop (kernel: :mod:`._selective_scan_fwd`). The
sequence is one segment unless rows x
channel blocks leave the GPU short of warps (small ``b * d``); then an extra pass gives the
state entering each segment (forward) or the adjoint entering it (backward), chained on the
host (:func:`_link_segments`).

When gradients are needed the forward pass stores the state before every ``CHUNK_BWD`` steps,
``(b, d, L / CHUNK_BWD, N)`` float32 (never the ``(b, d, L, N)`` states), and, with ``z``, the
output before the gate. The backward kernel (:mod:`._selective_scan_bwd`) walks the chunks in
reverse, recomputes their states from the checkpoints, runs the adjoint recurrence as a scan
over the time-flipped chunk, and writes every gradient without atomics: per-(b, channel)
gradients directly, ``dB``/``dC`` (shared by the channels of a group) as per-program (or warp)
partial sums and ``dA``/``dD``/``d(delta_bias)`` (shared by the batch) as per-row (and segment)
partial sums, all reduced afterwards with ``torch.sum`` in a fixed order, so two runs give
bit-identical gradients. Some sums and exchanges between the lanes of a warp are PTX shuffles
(inline asm) that assume a layout Triton chooses itself; :func:`_launch` checks each compiled
kernel's layouts and falls back to the kernel without them. Launch settings (chunks, register
caps, math, segments, shuffles) are the module constants below;
``kernels/bench/bench_selective_scan.py --variants`` times alternatives side by side.
"""

from __future__ import annotations

import logging
import os

import torch
import triton

from ..reference import expand_groups
from . import _common
from ._common import (block_channels, check_device_dtypes, dummy, lane_layout_errors,
                      new_buffer, scan_config)
from ._scan_partials import sum_partials, torch_sum_partials, triton_sums_fit
from ._selective_scan_bwd import adjoint_local_kernel, bwd_kernel
from ._selective_scan_fwd import fwd_kernel

__all__ = ["selective_scan"]

_LOG = logging.getLogger(__name__)

#: Time steps per chunk of the forward pass without gradients.
CHUNK_FWD = 16
#: Time steps per chunk of the forward pass when gradients are needed (a multiple of CHUNK_BWD).
CHUNK_CK = 16
#: Time steps per chunk of the backward pass; the forward pass stores the state before every
#: CHUNK_BWD steps. 8 bf16 steps = one 16-byte load.
CHUNK_BWD = 8
#: Hardware approximations (``lg2.approx``, ``div.approx``) for the per-step softplus and
#: sigmoids of both passes (see ``_scan_lanes.softplus_sigmoid``); never under
#: ``TRITON_INTERPRET=1`` (no libdevice there).
FAST_MATH = True


#: The forward kernel's own switches: fast math (with FAST_MATH; measured slower in the forward,
#: 0.498 vs 0.469 ms at (8, 1536, 4096, 16), so off) and the ``tl.fma`` scan step.
FWD_FAST_MATH = False
FMA_SCAN = True
#: Only the gate's sigmoid with the approximate division: no gain at (8, 1536, 4096, 16), 2%
#: slower forward at the other two shapes (session 3, round 4), so off.
FWD_FAST_GATE = False
#: The forward with gradients rounds ``y`` to the output dtype before the gate (the gate then
#: stays in the 4-steps-per-thread store layout) and stores checkpoints from the chunk layout.
FWD_CK_V4 = True
#: The forward's per-(channel, step) values spread over the 4 state lanes of a channel (T/4
#: steps each) and exchanged by shuffles (``gather_steps``, ``sum_states_scatter``); measured
#: with 1-warp programs: 0.449 ms against 0.468 at (8, 1536, 4096, 16) (kernels/NOTES.md).
FWD_XCH = True
#: The forward computes the next chunk's ``exp2`` during the current chunk (delta loaded two
#: chunks ahead), so that the MUFU work overlaps the scan's multiply-adds.
FWD_PIPE = False
#: The forward without gradients (not the one that stores checkpoints: its time went 0.583 ->
#: 0.677 ms with all four at (8, 1536, 4096, 16), session 5): grid as (row, channel block,
#: segment) (``fwd_kernel``'s GRID_SWAP: the programs on one multiprocessor share fewer rows of
#: B and C, more L1 hits); cache hints, FWD_HINT for the u, delta, z loads and FWD_STORE_HINT
#: for the out stores (indices into LOAD_HINTS / STORE_HINTS); A loaded once before the loop (AHOIST: the
#: loop's load of A stays only as Triton's layout anchor and ptxas drops it). Nsight Compute
#: found that forward bound by the L1 data pipe (83% of its wavefronts busy; the 4 scattered
#: loads of A per chunk were 32 of ~230 wavefronts per warp and chunk). Measured at (8, 1536,
#: 4096, 16) (session 5, same run): 0.449 ms without them, 0.430 with all four, 0.440 without
#: AHOIST, 0.441 with AHOIST alone.
FWD_GRID_SWAP = True
FWD_HINT = 1
FWD_STORE_HINT = 2
FWD_A_HOIST = True
#: (cache modifier, eviction policy) of each FWD_HINT: none; evicted first (PTX
#: ``L1::evict_first`` with an L2 evict-first policy); not cached in L1 (``.cg``; PTX allows no
#: policy with it). Of each FWD_STORE_HINT: none; evicted first; streamed (``.cs``).
LOAD_HINTS = (("", ""), ("", "evict_first"), (".cg", ""))
STORE_HINTS = (("", ""), ("", "evict_first"), (".cs", ""))


def _interpreted():
    """Under ``TRITON_INTERPRET=1`` (no PTX: inline asm is emulated or left out)."""
    return os.environ.get("TRITON_INTERPRET", "") == "1"


def _hints(plain):
    """The forward kernel's cache-hint constexprs (the session-5 hints without gradients)."""
    (lc, lp), (sc, sp) = ((LOAD_HINTS[FWD_HINT], STORE_HINTS[FWD_STORE_HINT]) if plain
                          else (LOAD_HINTS[0], STORE_HINTS[0]))
    return dict(LD_CACHE=lc, LD_POLICY=lp, ST_CACHE=sc, ST_POLICY=sp)


def _fast():
    return FAST_MATH and not _interpreted()
#: Time segments: when the (rows x channel blocks) programs give fewer warps than this, the
#: sequence is split into segments run in parallel (an extra pass computes the state, or the
#: adjoint, entering each segment; see _link_segments). None: never split.
SEGMENT_WARPS = 132 * 12
#: Shortest segment (steps).
SEGMENT_MIN_STEPS = 1024
#: Lanes per channel (NO) the forward pass may take before it splits the sequence (the backward
#: takes 4): measured on the H100, NO = 8 without segments beat NO = 4 with segments at
#: (16, 256, 16000, 16) and (4, 1024, 65536, 16) (kernels/NOTES.md, round 3).
FWD_MAX_LANES = 8
#: Register caps (``maxnreg``) of the forward and backward kernels on the GPU; None: the
#: compiler's choice. Fewer registers, more warps per multiprocessor (65536 registers each):
#: the forward kernel needs 174 without a cap, i.e. two 4-warp programs per multiprocessor
#: instead of three at 168 (5 spilled registers, sm_90 SASS).
FWD_MAXNREG = 168
BWD_MAXNREG = 168
#: Warps per program of the forward pass (one program: W x 32 / NO channels), and with
#: FWD_XCH in use (1 warp: 0.449 ms against 0.465 with 4, and worse where XCH is off).
FWD_WARPS = 4
FWD_WARPS_XCH = 1
#: dB, dC partial sums per warp instead of per program (no cross-warp reduction in the
#: backward kernel; W times the partial buffers, summed by torch): 3.77 against 4.12 ms
#: fwd+bwd at (8, 1536, 4096, 16) in session 3's round 2.
WARP_PARTIALS = True
#: With per-warp partials, 8 channels per warp and 8-step chunks: the sum over a warp's channels
#: as a reduce-scatter of shuffles (``_scan_lanes.sum_channels_scatter``).
BWD_SCATTER = True
#: With BWD_SCATTER: u, delta, dout, y, z loaded and their per-step work done on 2 steps per
#: lane (as FWD_XCH), dt, dt u and the gated dout gathered to every lane by shuffles for the
#: scans, their sums over states reduce-scattered back (round 2: backward 2.46 against 3.19 ms).
BWD_XCH = True
#: dB, dC partial sums stored in bfloat16 when B and C are bfloat16 (half the partial bytes;
#: summed in float32): slower in the old (N, L) layout (2-byte stores; backward 2.90 against
#: 2.34 ms, session 3), faster with PARTIALS_TN (8-byte stores: backward 1.74 against 1.95 ms,
#: session 4, round 1). Rounding the partials to bfloat16 about doubles dB / dC's error
#: against float64 (interpreter, bf16 (2, 20, 37, 16): 1.5e-3 -> 3.3e-3), about one more
#: bfloat16 rounding of the output; well inside the tests' 2e-2.
BF16_PARTIALS = True
#: Softplus as ``max(x, 0) + e p(e)``, ``e = exp(-|x|)``, ``p`` a polynomial
#: (``_scan_lanes.softplus_sigmoid``), in the forward / backward kernel. Forward: its loop 711 ->
#: 649 instructions per chunk, yet measured slower (0.454 against 0.450 ms at (8, 1536, 4096,
#: 16), +9% at the other two shapes; session 4, round 1), so off; backward: part of the shipped
#: backward (its fast path's ``lg2.approx`` goes).
FWD_SOFTPLUS_POLY = False
BWD_SOFTPLUS_POLY = True
#: The forward computes the decays ``exp2(dt A)`` of this many half-rows (one of a lane's NI
#: states over half a chunk) on the multiply-add units (``_scan_lanes.exp2_fma``, ~10
#: instructions each) instead of the special-function unit (8x slower per element on sm_90):
#: per 16-step chunk 2 half-rows = +162 instructions, -16 MUFU ops (session 4 candidate).
FWD_EXP_FMA = 0
#: The backward loads B and C at the start of each chunk instead of one chunk ahead (32 fewer
#: registers live through the loop: spill loads 29 -> 20 per chunk). With PARTIALS_TN (16 spill
#: loads): backward 1.95 against 2.34 ms (session 4, round 1; Nsight Compute: 62% of the shipped
#: backward's stall samples were address arithmetic waiting on spilled pointers).
BWD_BC_LATE = True
#: dB, dC partials laid out ``(b, n_parts, L, NO, NI)`` instead of ``(b, n_parts, N, L)``: each
#: lane's NI states side by side, one 16-byte store per tensor and chunk (8 bytes with
#: BF16_PARTIALS) instead of NI scalar ones, and a warp's chunk one contiguous 512-byte block
#: (session 4, round 1: with BWD_BC_LATE, see there).
PARTIALS_TN = True
#: dB and dC summed over their partials by one Triton kernel (``_scan_partials``: several
#: partials in flight per loop step, both tensors in one launch, bfloat16 partials read as
#: such) instead of two ``torch.sum`` calls: 0.146 against 0.165 ms for bfloat16 partials at
#: (8, 1536, 4096, 16) (session 4, round 1).
TRITON_SUMS = True
#: Checkpoints laid out ``(b, d, n_ck, NO, NI)`` for the backward's NO state lanes: one 16-byte
#: store per lane and checkpoint in the forward (4 scalar ones, half sectors, before: Nsight
#: Compute counted 29% excess sectors in the forward with checkpoints) and one 16-byte load in
#: the backward: fwd+bwd 2.548 against 2.608 ms at (8, 1536, 4096, 16), faster at the other
#: two shapes too (session 4, round 2).
CKPT_TN = True


def _scatter(g):
    """The backward's SCATTER mode: 0 off, 1 shuffles, 2 emulated (interpreter)."""
    if not (BWD_SCATTER and g["T"] == 8 and g["DL"] == 8):
        return 0
    return 2 if _interpreted() else 1


def _xch(g):
    """The forward's XCH mode: 0 off, 1 shuffles, 2 emulated (interpreter)."""
    if not (FWD_XCH and g["NO"] == 4 and g["DL"] == 8):
        return 0
    return 2 if _interpreted() else 1


#: Compiled kernels whose lane exchanges were checked (``id`` -> layouts as assumed or not).
_LANES_CHECKED = {}
#: Settings whose compiled kernel fell back to the one without shuffles (one entry each), and
#: the number of launches that did (benchmarks report both).
LANE_FALLBACKS = []
LANE_FALLBACK_LAUNCHES = 0


def _launch(kernel, grid, args, kwargs, lanes):
    """Launch ``kernel``; if the switches named in ``lanes`` turn on GPU shuffles (value 1) and
    the compiled kernel's layouts are not the ones the shuffles assume (``lane_layout_errors``,
    checked once per compiled kernel), launch again with them off: the second launch rewrites
    every output, so results never depend on the compiler's layout choices."""
    global LANE_FALLBACK_LAUNCHES
    k = kernel[grid](*args, **kwargs)
    if any(type(kwargs[n]) is int and kwargs[n] == 1 for n in lanes):  # (2: emulation)
        ok = _LANES_CHECKED.get(id(k))
        if ok is None:
            errors = lane_layout_errors(k.asm["ttgir"])
            ok = _LANES_CHECKED[id(k)] = not errors
            if errors:
                LANE_FALLBACKS.append({n: v for n, v in kwargs.items() if n != "num_warps"})
                _LOG.warning("%s: compiled layouts do not fit its lane exchanges (%s); using "
                             "the kernel without them for these settings", kernel.fn.__name__,
                             errors[0][1][:120])
        if not ok:
            LANE_FALLBACK_LAUNCHES += 1
            kernel[grid](*args, **{**kwargs, **{n: 0 for n in lanes}})


def _cap(maxnreg):
    """Launch option capping the registers (not under the interpreter)."""
    if maxnreg is None or _interpreted():
        return {}
    return dict(maxnreg=maxnreg)


def _geometry(u, A, B, T, seq_lengths, backward=False):
    """Sizes, block shape and time segments of a forward or backward launch."""
    b, d, L = u.shape
    N, G = A.shape[1], B.shape[1]
    seg = SEGMENT_WARPS is not None
    lanes = (4 if backward else FWD_MAX_LANES) if seg else 16
    NI, NO, W, DL = scan_config(b, d, N, backward, max_lanes=lanes)
    if not backward and _common.SCAN_CONFIG_OVERRIDE is None:
        W = FWD_WARPS_XCH if FWD_XCH and NO == 4 else FWD_WARPS
    block_ch = block_channels(W * DL, d // G, G)
    even = (L % T == 0 and L > 0 and block_ch == W * DL and d % block_ch == 0 and N == NI * NO
            and seq_lengths is None)
    n_chunks = triton.cdiv(L, T)
    n_seg = 1
    if seg:  # split the sequence when (rows x channels x states) alone leave the GPU idle
        warps = b * triton.cdiv(d, block_ch) * W
        n_seg = max(1, min(SEGMENT_WARPS // max(warps, 1), L // SEGMENT_MIN_STEPS))
    seg_chunks = triton.cdiv(n_chunks, n_seg)
    return dict(b=b, d=d, L=L, N=N, G=G, NI=NI, NO=NO, W=W, DL=DL, block_ch=block_ch,
                n_blocks=triton.cdiv(d, block_ch), n_chunks=n_chunks, T=T, EVEN=even,
                seg_chunks=seg_chunks, n_seg=triton.cdiv(n_chunks, seg_chunks) if L else 1)


def _flags(D, z, delta_bias, softplus, seq_lengths):
    return dict(HAS_D=D is not None, HAS_Z=z is not None, HAS_BIAS=delta_bias is not None,
                SOFTPLUS=bool(softplus), HAS_LEN=seq_lengths is not None)


def _opt(t, ref):
    return t if t is not None else dummy(ref)


def _link_segments(A, local, sdt, first, reverse):
    """Carries between time segments: ``x[s] = exp(A sdt[s']) x[s'] + local[s']`` with
    ``s' = s - 1`` (forward states) or ``s + 1`` (``reverse``: backward adjoints), ``x`` at the
    first segment = ``first``. local: (b, d, n_seg, N), sdt: (b, d, n_seg); returns x."""
    x = torch.empty_like(local)  # (b, d, n_seg, N)
    n_seg = local.shape[2]
    order = range(n_seg - 1, -1, -1) if reverse else range(n_seg)
    prev = None
    for s in order:
        if prev is None:
            x[:, :, s] = first
        else:
            x[:, :, s] = torch.exp(A * sdt[:, :, prev, None]) * x[:, :, prev] + local[:, :, prev]
        prev = s
    return x


def _forward(u, delta, A, B, C, D, z, delta_bias, softplus, seq_lengths, save_ck, want_last):
    g = _geometry(u, A, B, CHUNK_CK if save_ck else CHUNK_FWD, seq_lengths)
    b, d, N, n_seg = g["b"], g["d"], g["N"], g["n_seg"]
    out = new_buffer(u.shape, u.dtype, u.device)  # (b, d, L)
    f32 = dict(device=u.device, dtype=torch.float32)
    last = new_buffer((b, d, N), **f32) if want_last else dummy(u)  # (b, d, N)
    n_ck = g["n_chunks"] * (g["T"] // CHUNK_BWD)  # checkpoints: every CHUNK_BWD steps
    ckl = 0  # CKPT_TN: the backward's state lanes (its layout of the checkpoints)
    if save_ck and CKPT_TN:
        ckl = _geometry(u, A, B, CHUNK_BWD, seq_lengths, backward=True)["NO"]
    ck_n = g["NI"] * g["NO"] if ckl else N
    ck = new_buffer((b, d, n_ck, ck_n), **f32) if save_ck else dummy(u)  # (b, d, L/T, N or NP)
    y = new_buffer(u.shape, u.dtype, u.device) if save_ck and z is not None else dummy(u)
    args = (u, delta, A, B, C, _opt(D, u), _opt(z, u), _opt(delta_bias, u), _opt(seq_lengths, u))
    sizes = (g["L"], d, N, g["G"], d // g["G"], g["block_ch"], g["n_chunks"], n_ck,
             g["seg_chunks"], n_seg)
    meta = dict(T=g["T"], NI=g["NI"], NO=g["NO"], W=g["W"], DL=g["DL"], CK=CHUNK_BWD,
                **_flags(D, z, delta_bias, softplus, seq_lengths), EVEN=g["EVEN"],
                FAST=_fast() and FWD_FAST_MATH, FAST_GATE=_fast() and FWD_FAST_GATE, FMA=FMA_SCAN,
                CK_V4=FWD_CK_V4, SP_POLY=FWD_SOFTPLUS_POLY, num_warps=g["W"],
                **_cap(FWD_MAXNREG))
    h0 = sdt = dummy(u)
    if n_seg > 1:  # pass 1: each segment's end state from a zero start, and its sum of steps
        h0 = torch.empty((b, d, n_seg, N), **f32)  # (b, d, n_seg, N)
        sdt = torch.empty((b, d, n_seg), **f32)
        fwd_kernel[(g["n_blocks"], b, n_seg - 1)](
            *args, out, last, ck, y, h0, sdt, *sizes, SAVE_CK=False, SAVE_LAST=False,
            SEG=True, LOCAL=True, XCH=0, PIPE=False, **meta)
        h0 = _link_segments(A, h0, sdt, 0.0, reverse=False)  # state before each segment
    plain = not save_ck  # (the session-5 settings are for the forward without gradients)
    swap = FWD_GRID_SWAP and plain and g["n_blocks"] <= 65535  # (grid axis 1's limit)
    grid = (b, g["n_blocks"], n_seg) if swap else (g["n_blocks"], b, n_seg)
    _launch(fwd_kernel, grid, (*args, out, last, ck, y, h0, sdt, *sizes),
            dict(SAVE_CK=save_ck, SAVE_LAST=want_last, SEG=n_seg > 1, LOCAL=False, XCH=_xch(g),
                 PIPE=FWD_PIPE, EXP_FMA=min(FWD_EXP_FMA, 2 * g["NI"]), CKL=ckl,
                 GRID_SWAP=swap, **_hints(plain),
                 AHOIST=(2 if _interpreted() else 1) if FWD_A_HOIST and plain else 0, **meta),
            ("XCH",))
    return (out, last if want_last else None, ck if save_ck else None,
            y if save_ck and z is not None else None)


def _backward(dout, dlast, u, delta, A, B, C, D, z, delta_bias, softplus, seq_lengths, ck, y,
              ck_tn=False):
    g = _geometry(u, A, B, CHUNK_BWD, seq_lengths, backward=True)
    b, d, L, N, G, n_seg = g["b"], g["d"], g["L"], g["N"], g["G"], g["n_seg"]
    f32 = dict(device=u.device, dtype=torch.float32)
    du = new_buffer(u.shape, u.dtype, u.device)  # (b, d, L)
    ddelta = new_buffer(delta.shape, delta.dtype, u.device)  # (b, d, L)
    dz = new_buffer(z.shape, z.dtype, u.device) if z is not None else dummy(u)  # (b, d, L)
    n_parts = g["n_blocks"] * (g["W"] if WARP_PARTIALS else 1)
    part = dict(device=u.device, dtype=torch.bfloat16 if B.dtype == torch.bfloat16
                and BF16_PARTIALS else torch.float32)
    NP = g["NI"] * g["NO"]  # N padded to a power of two
    part_shape = (b, n_parts, L, NP) if PARTIALS_TN else (b, n_parts, N, L)
    parts = new_buffer((2, *part_shape), **part)  # dB's, dC's: per block (or warp), summed below
    dB_part, dC_part = parts[0], parts[1]
    dA_part = new_buffer((b * n_seg, d, N), **f32)  # per batch row and segment, summed below
    dD_part = new_buffer((b * n_seg, d), **f32)
    dbias_part = new_buffer((b * n_seg, d), **f32)
    meta = dict(T=g["T"], NI=g["NI"], NO=g["NO"], W=g["W"], DL=g["DL"],
                **_flags(D, z, delta_bias, softplus, seq_lengths), EVEN=g["EVEN"], FAST=_fast(),
                SP_POLY=BWD_SOFTPLUS_POLY, num_warps=g["W"])
    sizes = (L, d, N, G, d // G, g["block_ch"], g["n_chunks"])
    seg = (g["seg_chunks"], n_seg)
    carry = dlast
    if n_seg > 1:  # pass 1: what each segment sends back from a zero carry, and its sum of steps
        pl = torch.empty((b, d, n_seg, N), **f32)  # (b, d, n_seg, N)
        sdt = torch.empty((b, d, n_seg), **f32)
        meta1 = {k: v for k, v in meta.items() if k != "HAS_D"}
        adjoint_local_kernel[(g["n_blocks"], b, n_seg)](
            delta, A, C, _opt(z, u), _opt(delta_bias, u), _opt(seq_lengths, u), dout, pl, sdt,
            *sizes, *seg, **meta1)
        first = dlast if dlast is not None else 0.0
        carry = _link_segments(A, pl, sdt, first, reverse=True)  # entering each segment's end
    _launch(bwd_kernel, (g["n_blocks"], b, n_seg),
            (u, delta, A, B, C, _opt(D, u), _opt(z, u), _opt(y, u), _opt(delta_bias, u),
             _opt(seq_lengths, u), dout, _opt(carry, u), ck,
             du, ddelta, dz, dB_part, dC_part, dA_part, dD_part, dbias_part,
             *sizes, ck.shape[2], n_parts, *seg),
            dict(HAS_DLAST=dlast is not None, SEG=n_seg > 1, WARP_PARTS=WARP_PARTIALS,
                 SCATTER=_scatter(g),
                 XCH=_scatter(g) if BWD_XCH else 0, BC_LATE=BWD_BC_LATE, PART_TN=PARTIALS_TN,
                 CK_TN=ck_tn, **meta, **_cap(BWD_MAXNREG)),
            ("SCATTER", "XCH"))
    # every block lies in one group; blocks of a group are consecutive (not -1: L may be 0)
    if TRITON_SUMS and triton_sums_fit(parts.shape, G):
        dB, dC = sum_partials(parts, G, N, g["NO"], g["NI"], PARTIALS_TN)  # (b, G, N, L) each
    else:
        dB = torch_sum_partials(dB_part, G, N, g["NO"], g["NI"], PARTIALS_TN)  # (b, G, N, L)
        dC = torch_sum_partials(dC_part, G, N, g["NO"], g["NI"], PARTIALS_TN)  # (b, G, N, L)
    return (du, ddelta, dA_part.sum(0), dB, dC, dD_part.sum(0), dz if z is not None else None,
            dbias_part.sum(0))


class _SelectiveScan(torch.autograd.Function):
    @staticmethod
    def forward(ctx, u, delta, A, B, C, D, z, delta_bias, softplus, seq_lengths, want_last):
        save = any(ctx.needs_input_grad)  # (grad mode is off inside forward)
        out, last, ck, y = _forward(u, delta, A, B, C, D, z, delta_bias, softplus, seq_lengths,
                                    save, want_last)
        if save:
            ctx.save_for_backward(u, delta, A, B, C, D, z, delta_bias, seq_lengths, ck, y)
            ctx.softplus, ctx.ck_tn = softplus, CKPT_TN  # (the checkpoints' layout)
        return (out, last) if want_last else out

    @staticmethod
    def backward(ctx, dout, dlast=None):
        u, delta, A, B, C, D, z, delta_bias, seq_lengths, ck, y = ctx.saved_tensors
        grads = _backward(dout.contiguous(), None if dlast is None else dlast.contiguous(),
                          u, delta, A, B, C, D, z, delta_bias, ctx.softplus, seq_lengths, ck, y,
                          ctx.ck_tn)
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
