"""Hand-off protocol of the dataflow tier passes (:mod:`._sashimi_dataflow`) and its probe.

A program publishes float32 values as 64-bit words ``(tag << 32) | bits(value)`` (the
low-latency protocol of NCCL): data and flag arrive together in one single-copy-atomic store,
so a reader needs no fence, flag or counter: it polls the words it needs (``volatile`` loads,
which bypass L1) until every one carries the tag it expects. Tags are launch counters kept in
device memory by the caller, so old words never look new and nothing is reset between
launches or CUDA-graph replays. Every wait is bounded: after ``max_polls`` polls it sets an
error flag and returns what it has, instead of hanging.
"""
from __future__ import annotations

import triton
import triton.language as tl

__all__ = ["handoff_probe"]


@triton.jit
def _put(ptr, idx, mask, val, tag):
    """Store ``val`` at words ``idx`` as ``(tag << 32) | bits(val)``."""
    bits = val.to(tl.uint32, bitcast=True).to(tl.int64)  # zero-extended
    tl.store(ptr + idx, (tag.to(tl.int64) << 32) | bits, mask=mask)


@triton.jit
def _missing(w, mask, tag):
    """How many of the words ``w`` (mask ``mask``) do not carry ``tag`` yet (whole program)."""
    return tl.sum(tl.where(mask & ((w >> 32).to(tl.int32) != tag), 1, 0), axis=0)


@triton.jit
def _value(w, mask):
    """The float32 values of the words ``w`` (0 where masked)."""
    return tl.where(mask, w.to(tl.uint32).to(tl.float32, bitcast=True), 0.0)


@triton.jit
def _get(ptr, idx, mask, tag, err_ptr, max_polls):
    """Poll words ``idx`` until all carry ``tag`` (at most ``max_polls`` times; then the error
    flag is set); returns their float32 values (0 where masked)."""
    tl.debug_barrier()  # see _get2
    w = tl.load(ptr + idx, mask=mask, other=0, volatile=True)
    bad = _missing(w, mask, tag)
    polls = 0
    while (bad > 0) & (polls < max_polls):
        w = tl.load(ptr + idx, mask=mask, other=0, volatile=True)
        bad = _missing(w, mask, tag)
        polls += 1
    tl.debug_barrier()
    if bad > 0:
        tl.store(err_ptr, 1)
    return _value(w, mask)


@triton.jit
def _get2(pa, ia, ma, pb, ib, mb, tag, err_ptr, max_polls):
    """:func:`_get` of two vectors at once: both loads in flight together (one L2 round trip
    once the data is there, where two :func:`_get` calls take two). Explicit CTA barriers
    before and after the poll loop (whose reductions use shared memory): GPU rounds 2-4 saw
    intermittent drifts of S4 with tier 0's two-stage passes that the interpreter never shows;
    a shared-memory hazard across the loop boundary is one explanation these barriers rule
    out."""
    tl.debug_barrier()
    wa = tl.load(pa + ia, mask=ma, other=0, volatile=True)
    wb = tl.load(pb + ib, mask=mb, other=0, volatile=True)
    bad = _missing(wa, ma, tag) + _missing(wb, mb, tag)
    polls = 0
    while (bad > 0) & (polls < max_polls):
        wa = tl.load(pa + ia, mask=ma, other=0, volatile=True)
        wb = tl.load(pb + ib, mask=mb, other=0, volatile=True)
        bad = _missing(wa, ma, tag) + _missing(wb, mb, tag)
        polls += 1
    tl.debug_barrier()
    if bad > 0:
        tl.store(err_ptr, 1)
    return _value(wa, ma), _value(wb, mb)


@triton.jit
def _probe_kernel(buf_ptr, ep_ptr, err_ptr, max_polls, W, WP: tl.constexpr):
    """Hand-off chain: program ``i`` waits for the ``W`` words of program ``i - 1``, adds 1,
    and writes its own; the last program advances the tag."""
    i = tl.program_id(0)
    tag = tl.load(ep_ptr, volatile=True) + 1
    offs = tl.arange(0, WP)
    m = offs < W
    if i == 0:
        v = offs.to(tl.float32)
    else:
        v = _get(buf_ptr + (i - 1) * WP, offs, m, tag, err_ptr, max_polls)
    _put(buf_ptr + i * WP, offs, m, v + 1.0, tag)
    if i == tl.num_programs(0) - 1:
        tl.debug_barrier()
        tl.store(ep_ptr, tag)


def handoff_probe(n_programs, width, buf, ep, error, max_polls, num_warps=4):
    """Launch a chain of ``n_programs`` hand-offs of ``width`` floats (``buf``: int64 with at
    least ``n_programs * next_power_of_2(width)`` words; ``ep``, ``error``: ``(1,)`` int32).
    Program ``i`` writes ``arange(width) + i + 1``. The time per hand-off is the slope of the
    launch time over ``n_programs`` (all programs resident at once on a GPU)."""
    WP = triton.next_power_of_2(width)
    if buf.numel() < n_programs * WP:
        raise ValueError(f"probe buffer of {buf.numel()} words < {n_programs} x {WP}")
    _probe_kernel[(n_programs,)](buf, ep, error, int(max_polls), width, WP=WP,
                                 num_warps=num_warps)
