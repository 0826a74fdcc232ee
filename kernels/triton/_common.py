"""Helpers shared by the Triton kernels: the selective-scan layout and math (forward, backward,
decoding step), argument checks, and output buffers (:func:`new_buffer`, used by every kernel).

Layout used by the scan kernels
-------------------------------
A program owns one batch row and a block of ``BD = W * DL`` channels, for all ``N`` states.
Every per-chunk tensor is 5-D, ``(DL, NO, W, NI, T)``:

* axes 0 and 2: the channel ``c = d0 + w * DL + l``,
* axes 1 and 3: the state index ``n = ni * NO + no`` (``NP = NI * NO`` states, ``N`` padded to a
  power of two),
* axis 4: the ``T`` time steps of the chunk.

We want the 32 lanes of a warp along ``(DL, NO)``, the warps along ``W``, and all ``T`` steps and
``NI`` states of a channel inside one thread: the scan along axis 4 is then a sequential loop in
registers, and the sum over states is ``NI`` register adds plus ``log2(NO)`` shuffles (``NO``
trades parallelism against shuffles). Triton picks layouts itself; the kernels steer it by
loading ``A`` through an offset whose contiguity the compiler cannot see, so that load gets a
layout that fills lanes from axis 0 on, and by making it the anchor that the chunk computation
inherits (checked in the generated TTGIR: ``kernels/NOTES.md``).
"""

from __future__ import annotations

import os
import re

import torch
import triton
import triton.language as tl

LOG2E = tl.constexpr(1.4426950408889634)
LN2 = tl.constexpr(0.6931471805599453)


@triton.jit
def scan_combine(a1, b1, a2, b2):
    """Compose two steps ``x -> a x + b`` (first ``(a1, b1)``, then ``(a2, b2)``).

    ``tl.fma(a2, b1, b2)``: the product with the running value goes into the fused multiply-add,
    so each step of the in-register scan costs one dependent instruction (left to itself the
    compiler fused the other product, ``b2 = dt u B``, and put a multiply plus a multiply-add on
    the dependency chain)."""
    return a1 * a2, tl.fma(a2, b1, b2)


@triton.jit
def scan_combine_mul(a1, b1, a2, b2):
    """:func:`scan_combine` written ``a2 * b1 + b2``: the compiler picks which product to fuse
    (it fused ``b2``'s, a multiply plus a multiply-add per step on the dependency chain). Kept
    for the side-by-side benchmark (``selective_scan.FMA_SCAN``)."""
    return a1 * a2, a2 * b1 + b2


@triton.jit
def adjoint_combine(a_late, k_late, m_late, a_early, k_early, m_early):
    """Compose segments of the adjoint recurrence ``g_t = c_t + a_{t+1} g_{t+1}`` (reverse scan).

    A segment ``[s, e]`` is ``(a_s, K, M)`` with ``g_s = K + M * (a_{e+1} g_{e+1})``; one step is
    ``(a_t, c_t, 1)``. Keeping the segment's first ``a`` lets the composition multiply by
    ``a_{t+1}`` without shifting the chunk by one step. The scan runs over the time-flipped chunk,
    so the accumulated (later) segment comes first.
    """
    m = m_early * a_late
    return a_early, tl.fma(m, k_late, k_early), m * m_late


@triton.jit
def softplus(x):
    """``log(1 + exp(x))`` with PyTorch's threshold (identity above 20), float32."""
    return tl.where(x > 20.0, x, tl.log(1.0 + tl.exp(x)))


@triton.jit
def axis_t(T: tl.constexpr):
    """Time index as a (1, 1, 1, 1, T) tensor."""
    return tl.arange(0, T)[None, None, None, None, :]


@triton.jit
def axis_n(NI: tl.constexpr, NO: tl.constexpr):
    """State index ``ni * NO + no`` as a (1, NO, 1, NI, 1) tensor."""
    no = tl.arange(0, NO)[None, :, None, None, None]
    ni = tl.arange(0, NI)[None, None, None, :, None]
    return ni * NO + no


@triton.jit
def axis_c(W: tl.constexpr, DL: tl.constexpr):
    """Channel offset inside the block, ``w * DL + l``, as a (DL, 1, W, 1, 1) tensor."""
    lane = tl.arange(0, DL)[:, None, None, None, None]
    w = tl.arange(0, W)[None, None, :, None, None]
    return w * DL + lane


@triton.jit
def lane_states(NI: tl.constexpr, NO: tl.constexpr):
    """``no * NI + ni``, a (1, NO, 1, NI, 1) tensor: where state ``n = ni * NO + no`` lies in a
    buffer laid out ``(NO, NI)`` (one lane's NI states side by side: 16-byte accesses)."""
    return (tl.arange(0, NO)[None, :, None, None, None] * NI
            + tl.arange(0, NI)[None, None, None, :, None])


@triton.jit
def ck_states(NI: tl.constexpr, NO: tl.constexpr, CKL: tl.constexpr):
    """Where state ``n = ni * NO + no`` lies in a checkpoint laid out for ``CKL`` state lanes
    (``(n % CKL) * (NP / CKL) + n // CKL``, the backward's :func:`lane_states`), as a
    (1, NO, 1, NI, 1) tensor; written as ``lane_states`` when ``NO == CKL`` (contiguity seen)."""
    if NO == CKL:
        pos = lane_states(NI, NO)
    else:
        n = axis_n(NI, NO)
        pos = (n % CKL) * (NI * NO // CKL) + n // CKL
    return pos


@triton.jit
def load_or_zero(ptr, mask, EVEN: tl.constexpr, CACHE: tl.constexpr = tl.constexpr(""),
                 POLICY: tl.constexpr = tl.constexpr("")):
    """``tl.load`` with ``mask`` (0 elsewhere), or unmasked when ``EVEN`` says every index is
    in range (no bounds arithmetic then); ``CACHE``, ``POLICY``: ``tl.load``'s cache modifier
    and eviction policy."""
    if EVEN:
        x = tl.load(ptr, cache_modifier=CACHE, eviction_policy=POLICY)
    else:
        x = tl.load(ptr, mask=mask, other=0.0, cache_modifier=CACHE, eviction_policy=POLICY)
    return x


@triton.jit
def store_masked(ptr, x, mask, EVEN: tl.constexpr, CACHE: tl.constexpr = tl.constexpr(""),
                 POLICY: tl.constexpr = tl.constexpr("")):
    """``tl.store`` with ``mask``, or unmasked under ``EVEN``; ``CACHE``, ``POLICY``: its cache
    modifier and eviction policy."""
    if EVEN:
        tl.store(ptr, x, cache_modifier=CACHE, eviction_policy=POLICY)
    else:
        tl.store(ptr, x, mask=mask, cache_modifier=CACHE, eviction_policy=POLICY)


@triton.jit
def scan_program(block_ch, dim, N, seg_chunks, n_chunks, NI: tl.constexpr, NO: tl.constexpr,
                 W: tl.constexpr, DL: tl.constexpr, SWAP: tl.constexpr = False):
    """Where a scan program works: grid axes (channel block, batch row, time segment; with
    ``SWAP`` row and channel block swapped) give
    ``pid_d``, ``pid_b`` (int64), ``pid_s`` and its chunks ``[c0, c1)``; with the channel offset
    in the block ``off_c`` and channel ``ch`` (DL, 1, W, 1, 1), the state ``n`` (1, NO, 1, NI, 1)
    and their masks ``ch_ok``, ``n_ok``."""
    if SWAP:  # grid (row, channel block, segment)
        pid_d = tl.program_id(1)
        pid_b = tl.program_id(0).to(tl.int64)
    else:
        pid_d = tl.program_id(0)
        pid_b = tl.program_id(1).to(tl.int64)
    pid_s = tl.program_id(2)
    c0 = pid_s * seg_chunks
    c1 = tl.minimum(c0 + seg_chunks, n_chunks)
    n = axis_n(NI, NO)  # (1, NO, 1, NI, 1)
    off_c = axis_c(W, DL)  # (DL, 1, W, 1, 1)
    ch = pid_d * block_ch + off_c  # (DL, 1, W, 1, 1)
    ch_ok = (off_c < block_ch) & (ch < dim)
    return pid_d, pid_b, pid_s, c0, c1, off_c, ch, ch_ok, n, n < N


@triton.jit
def row_params(bias_ptr, len_ptr, ch, ch_ok, pid_b, L, HAS_BIAS: tl.constexpr,
               HAS_LEN: tl.constexpr, EVEN: tl.constexpr):
    """The channels' ``delta_bias`` (float32, (DL, 1, W, 1, 1), or 0.0) and the row's length
    (``seq_lengths`` clipped to L, or L)."""
    bias = 0.0
    if HAS_BIAS:
        bias = load_or_zero(bias_ptr + ch, ch_ok, EVEN).to(tl.float32)  # (DL, 1, W, 1, 1)
    seq_len = L
    if HAS_LEN:
        seq_len = tl.minimum(tl.load(len_ptr + pid_b).to(tl.int32), L)
    return bias, seq_len


@triton.jit
def sum_states(x):
    """Sum over the state axes (3, in registers, then 1, across lanes), keeping dims."""
    return tl.sum(tl.sum(x, axis=3, keep_dims=True), axis=1, keep_dims=True)


@triton.jit
def sum_channels(x):
    """Sum over the channel axes (0 then 2) of a 5-D tensor, keeping dims."""
    return tl.sum(tl.sum(x, axis=0, keep_dims=True), axis=2, keep_dims=True)


@triton.jit
def sum_time(x):
    """Sum over the time axis (4), keeping dims."""
    return tl.sum(x, axis=4, keep_dims=True)


@triton.jit
def row(x, t, i):
    """Step ``i`` of the time axis (``t`` is the (..., T) time index), keeping dims."""
    return tl.sum(tl.where(t == i, x, 0.0), axis=4, keep_dims=True)


@triton.jit
def prepare_dt(raw, bias, SOFTPLUS: tl.constexpr):
    """``softplus(raw + bias)`` (or without softplus) in float32."""
    x = raw + bias
    if SOFTPLUS:
        x = softplus(x)
    return x


@triton.jit
def dprepare_dt(raw, bias, grad, SOFTPLUS: tl.constexpr):
    """Gradient of :func:`prepare_dt` w.r.t. its input, given the gradient of its output."""
    if SOFTPLUS:
        x = raw + bias
        grad = tl.where(x > 20.0, grad, grad * tl.sigmoid(x))
    return grad


#: ``(NO, W)`` forced by the benchmark's configuration sweep; None: the heuristic below.
SCAN_CONFIG_OVERRIDE = None
#: ``(NO, W)`` of the backward pass only (benchmark variants); None: as the forward pass.
SCAN_CONFIG_OVERRIDE_BWD = None


def scan_config(batch, dim, N, backward=False, max_lanes=16):
    """Block shape ``(NI, NO, W, DL)`` for a problem of this size.

    ``NO`` (lanes per channel along the states) grows from 4 while there are few channels, so
    that the GPU still gets about 8 warps per multiprocessor (H100: 132 of them); capped at 16.
    ``W`` (warps per program): 4 for the forward pass, 2 for the register-heavy backward pass.
    Chosen from block-shape sweeps (``kernels/bench/bench_selective_scan.py --variants``;
    ``kernels/NOTES.md``). ``max_lanes`` caps ``NO`` (the selective scan splits the sequence
    into segments instead of going further).
    """
    NP = max(1, triton.next_power_of_2(N))
    if backward and SCAN_CONFIG_OVERRIDE_BWD is not None:
        NO, W = SCAN_CONFIG_OVERRIDE_BWD
    elif SCAN_CONFIG_OVERRIDE is not None:
        NO, W = SCAN_CONFIG_OVERRIDE
    else:
        NO = 4
        while NO < max_lanes and batch * dim * NO < 132 * 8 * 32:
            NO *= 2
        W = 2 if backward else 4
    NO = min(NO, NP)
    return NP // NO, NO, W, 32 // NO


def block_channels(width, ch_per_group, groups):
    """Channels per program: ``width``, or a power of two dividing ``ch_per_group`` (so that
    a block never straddles two groups of ``B``/``C``) when there are several groups."""
    if groups == 1:
        return width
    block = 1
    while block * 2 <= width and ch_per_group % (block * 2) == 0:
        block *= 2
    return block


_DTYPES = (torch.float16, torch.bfloat16, torch.float32)


def check_device_dtypes(op, *tensors):
    """Raise unless every given tensor is float16/bfloat16/float32 on one device that Triton can
    use (CUDA, or any device under ``TRITON_INTERPRET=1``)."""
    given = [t for t in tensors if t is not None]
    for t in given:
        if t.dtype not in _DTYPES:
            raise TypeError(f"{op}: the Triton kernel takes float16, bfloat16 or float32 tensors, "
                            f"got {t.dtype} (use backend='torch' for float64)")
    devices = {t.device for t in given}
    if len(devices) > 1:
        raise ValueError(f"{op}: all tensors must be on one device, got {sorted(map(str, devices))}")
    if os.environ.get("TRITON_INTERPRET", "") != "1" and given[0].device.type != "cuda":
        raise RuntimeError(f"{op}: the Triton kernel needs CUDA tensors (or TRITON_INTERPRET=1), "
                           f"got {given[0].device}")


#: Tests set this to True: every output buffer then starts as NaN, so an element that a kernel
#: forgets to write shows up as NaN instead of as stale memory.
POISON_OUTPUTS = False


def new_buffer(shape, dtype, device):
    """An uninitialised output buffer (NaN-filled when :data:`POISON_OUTPUTS` is set)."""
    if POISON_OUTPUTS:
        return torch.full(shape, float("nan"), dtype=dtype, device=device)
    return torch.empty(shape, dtype=dtype, device=device)


def dummy(ref):
    """A one-element tensor standing in for an absent optional pointer argument."""
    return torch.empty(1, device=ref.device, dtype=torch.float32)


def lane_layout_errors(ttgir):
    """Inline-asm lane exchanges whose operands are not in the layout they assume.

    The selective scan's shuffles (``tl.inline_asm_elementwise`` with ``shfl.sync``) assume that
    axis 0 of their 5-D operands lies on lane bits 0-2 and axis 1 on lane bits 3-4 (one element
    per lane along them, no warps along them). Triton picks layouts itself, and they change with
    the launch's specialization (an argument equal to 1, divisibility, dtypes), so the launcher
    checks the compiled kernel's TTGIR (``kernel.asm["ttgir"]``) with this function and falls
    back to the kernel without shuffles when it returns anything. Returns a list of
    ``(layout name, layout)`` for every asm operand layout that is not the assumed one.
    """
    layouts = dict(re.findall(r"^(#[\w]+) = (.*)$", ttgir, flags=re.M))
    bad = []
    for line in ttgir.splitlines():
        if "elementwise_inline_asm" not in line or "shfl.sync" not in line:
            continue  # (other inline asm, e.g. the forward's anchored move of A, works in
            # any layout)
        for name in set(re.findall(r"tensor<[^>]*, (#[\w]+)>", line)):
            spec = layouts.get(name, "")
            if _lane_bases(spec) != [[1, 0], [2, 0], [4, 0], [0, 1], [0, 2]]:
                bad.append((name, spec))
    return bad


def _lane_bases(spec):
    """Lane bases of a ``#ttg.blocked`` or ``#ttg.linear`` layout, restricted to axes 0 and 1
    (None when warps or other axes share them, or for any other layout)."""
    if spec.startswith("#ttg.blocked"):
        f = {k: [int(v) for v in vals.split(",")]
             for k, vals in re.findall(r"(\w+) = \[([\d, ]*)\]", spec)}
        if f["warpsPerCTA"][0] != 1 or f["warpsPerCTA"][1] != 1:
            return None
        bases = []
        for ax in f["order"]:
            size, step = f["threadsPerWarp"][ax], f["sizePerThread"][ax]
            while size > 1:
                bases.append([step if a == ax else 0 for a in range(len(f["order"]))])
                step, size = step * 2, size // 2
    elif spec.startswith("#ttg.linear"):
        lane = re.search(r"lane = \[(.*?)\]\], warp = \[(.*?)\]\]?,", spec + ",")
        if lane is None:
            return None
        bases = [[int(x) for x in v.split(",")] for v in re.findall(r"\[([-\d, ]+)\]",
                                                                   lane.group(1) + "]")]
        warps = [[int(x) for x in v.split(",")] for v in re.findall(r"\[([-\d, ]+)\]",
                                                                   lane.group(2) + "]")]
        if any(w[0] or w[1] for w in warps):
            return None
    else:
        return None
    if any(any(b[2:]) for b in bases):
        return None
    return [b[:2] for b in bases]
