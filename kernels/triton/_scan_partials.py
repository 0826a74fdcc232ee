"""Sums of the selective-scan backward's dB / dC partials: both tensors in one Triton launch
(:func:`sum_partials`, the default), or one ``torch.sum`` each (:func:`torch_sum_partials`).

The backward kernel (:mod:`._selective_scan_bwd`) writes one partial sum of dB and of dC per
channel block (or warp), ``(b, n_parts, N, L)``, or ``(b, n_parts, L, NO, NI)`` with
``PARTIALS_TN`` (state ``n = ni * NO + no``). :func:`sum_partials` adds them over the blocks of
each group in a fixed order (deterministic: every run adds the same numbers in the same order)
and writes ``(b, G, N, L)`` float32, the ``PARTIALS_TN`` layout turned back on the way. It reads
several partials per loop step (independent loads in flight) and takes float32 or bfloat16
partials, accumulating in float32.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

__all__ = ["sum_partials", "torch_sum_partials"]

#: Elements of a partial row per program, and partials read per loop step.
BLOCK = 1024
UNROLL = 4


@triton.jit
def _sum_kernel(src_ptr, dst_ptr, per_group, M, N, L, TN: tl.constexpr, NO: tl.constexpr,
                NI: tl.constexpr, BLOCK: tl.constexpr, UNROLL: tl.constexpr):
    # program (block of M, row = b * G + g, tensor 0 / 1): src (2, b * G, per_group, M),
    # dst (2, b * G, N, L) float32; M = N * L or (TN) L * NI * NO
    pid_m = tl.program_id(0)
    row = tl.program_id(1).to(tl.int64)
    which = tl.program_id(2).to(tl.int64)
    rows = tl.num_programs(1).to(tl.int64)
    offs = pid_m * BLOCK + tl.arange(0, BLOCK)  # (BLOCK,)
    ok = offs < M
    src = src_ptr + ((which * rows + row) * per_group) * M + offs
    acc = tl.zeros((BLOCK,), dtype=tl.float32)
    p = 0
    while p < per_group:  # (a while loop: the interpreter cannot range() over an argument)
        for k in tl.static_range(UNROLL):  # independent loads, added in order p, p + 1, ...
            x = tl.load(src + (p + k) * M, mask=ok & (p + k < per_group), other=0.0)
            acc += x.to(tl.float32)
        p += UNROLL
    if TN:  # offs = (t * NO + no) * NI + ni -> n = ni * NO + no, at n * L + t
        t = offs // (NI * NO)
        j = offs % (NI * NO)
        n = (j % NI) * NO + j // NI
        out = n * L + t
        ok = ok & (n < N)
    else:
        out = offs
    tl.store(dst_ptr + (which * rows + row) * N * L + out, acc, mask=ok)


def sum_partials(parts, G, N, NO, NI, tn):
    """``(dB, dC)``, each ``(b, G, N, L)`` float32, from ``parts`` ``(2, b, n_parts, ...)``
    (dB's partials, then dC's; the blocks of a group consecutive)."""
    _, b, n_parts = parts.shape[:3]
    L = parts.shape[3] if tn else parts.shape[4]
    M = parts.shape[3] * parts.shape[4]
    out = torch.empty((2, b, G, N, L), device=parts.device, dtype=torch.float32)
    if out.numel():
        _sum_kernel[(triton.cdiv(M, BLOCK), b * G, 2)](
            parts, out, n_parts // G, M, N, L, TN=tn, NO=NO, NI=NI, BLOCK=BLOCK,
            UNROLL=UNROLL, num_warps=4)
    return out[0], out[1]


def triton_sums_fit(parts_shape, G):
    """Whether ``sum_partials`` may take partials of ``parts_shape`` ``(2, b, n_parts, ., .)``:
    its loop offsets ``(p + k) * M`` (``p`` < ``n_parts // G``, ``M`` = the last two sizes) are
    int32, so their product must stay below 2**31; larger cases take ``torch_sum_partials``."""
    return (parts_shape[2] // G) * parts_shape[3] * parts_shape[4] < 2**31


def torch_sum_partials(part, G, N, NO, NI, tn):
    """dB or dC ``(b, G, N, L)`` from one tensor's partials by ``torch.sum`` (the path without
    ``TRITON_SUMS``): ``(b, n_parts, N, L)``, or with ``tn`` ``(b, n_parts, L, NP)`` (state
    ``n = ni * NO + no`` at ``no * NI + ni``). No -1 in the views: L may be 0."""
    b, n_parts = part.shape[:2]
    if not tn:
        return part.view(b, G, n_parts // G, N, part.shape[3]).sum(2)  # (b, G, N, L)
    L = part.shape[2]
    s = part.view(b, G, n_parts // G, L, NO, NI).sum(2)  # (b, G, L, NO, NI)
    return s.permute(0, 1, 4, 3, 2).reshape(b, G, NI * NO, L)[:, :, :N]
