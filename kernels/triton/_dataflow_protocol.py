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
def _spin(ptr, idx, mask, tag, max_polls):
    """Per-thread wait (GPU only, inline PTX): each thread reloads each of its words until it
    carries ``tag`` (at most ``max_polls`` loads; masked words are not loaded), no reduction
    or barrier between the threads. Returns the words as loaded last."""
    return tl.inline_asm_elementwise(
        asm="""{
        .reg .pred %pw, %pm;
        .reg .b32 %lo, %hi, %n;
        mov.u32 %n, 0;
        mov.b64 $0, 0;
        setp.eq.u32 %pm, $3, 0;
        @%pm bra DONE${:uid};
        LOOP${:uid}:
        ld.volatile.global.b64 $0, [$1];
        mov.b64 {%lo, %hi}, $0;
        add.u32 %n, %n, 1;
        setp.ne.u32 %pw, %hi, $2;
        setp.lt.u32 %pm, %n, $4;
        and.pred %pw, %pw, %pm;
        @%pw bra LOOP${:uid};
        DONE${:uid}:
        }""",
        constraints="=l,l,r,r,r",
        args=[(ptr + idx).to(tl.int64, bitcast=True), tag + 0 * idx, mask.to(tl.int32),
              max_polls + 0 * idx],
        dtype=tl.int64, is_pure=False, pack=1)


@triton.jit
def _get(ptr, idx, mask, tag, err_ptr, max_polls, SPIN: tl.constexpr):
    """Poll words ``idx`` until all carry ``tag`` (at most ``max_polls`` times; then the error
    flag is set); returns their float32 values (0 where masked). All words are loaded at once;
    then either the whole program polls again until none is missing (a reduction and barrier
    per poll) or, with ``SPIN``, each thread waits for its own missing words (:func:`_spin`)."""
    w = tl.load(ptr + idx, mask=mask, other=0, volatile=True)
    if SPIN:
        miss = mask & ((w >> 32).to(tl.int32) != tag)
        w = tl.where(miss, _spin(ptr, idx, miss, tag, max_polls), w)
        tl.store(err_ptr + 0 * idx, 1, mask=mask & ((w >> 32).to(tl.int32) != tag))
    else:
        bad = tl.sum(tl.where(mask & ((w >> 32).to(tl.int32) != tag), 1, 0), axis=0)
        polls = 0
        while (bad > 0) & (polls < max_polls):
            w = tl.load(ptr + idx, mask=mask, other=0, volatile=True)
            bad = tl.sum(tl.where(mask & ((w >> 32).to(tl.int32) != tag), 1, 0), axis=0)
            polls += 1
        if bad > 0:
            tl.store(err_ptr, 1)
    return tl.where(mask, w.to(tl.uint32).to(tl.float32, bitcast=True), 0.0)


@triton.jit
def _probe_kernel(buf_ptr, ep_ptr, err_ptr, max_polls, W, WP: tl.constexpr,
                  SPIN: tl.constexpr):
    """Hand-off chain: program ``i`` waits for the ``W`` words of program ``i - 1``, adds 1,
    and writes its own; the last program advances the tag."""
    i = tl.program_id(0)
    tag = tl.load(ep_ptr, volatile=True) + 1
    offs = tl.arange(0, WP)
    m = offs < W
    if i == 0:
        v = offs.to(tl.float32)
    else:
        v = _get(buf_ptr + (i - 1) * WP, offs, m, tag, err_ptr, max_polls, SPIN)
    _put(buf_ptr + i * WP, offs, m, v + 1.0, tag)
    if i == tl.num_programs(0) - 1:
        tl.debug_barrier()
        tl.store(ep_ptr, tag)


def handoff_probe(n_programs, width, buf, ep, error, max_polls, num_warps=4, spin=False):
    """Launch a chain of ``n_programs`` hand-offs of ``width`` floats (``buf``: int64 with at
    least ``n_programs * next_power_of_2(width)`` words; ``ep``, ``error``: ``(1,)`` int32).
    Program ``i`` writes ``arange(width) + i + 1``. The time per hand-off is the slope of the
    launch time over ``n_programs`` (all programs resident at once on a GPU). ``spin``: the
    per-thread wait (:func:`_spin`, GPU only)."""
    WP = triton.next_power_of_2(width)
    if buf.numel() < n_programs * WP:
        raise ValueError(f"probe buffer of {buf.numel()} words < {n_programs} x {WP}")
    _probe_kernel[(n_programs,)](buf, ep, error, int(max_polls), width, WP=WP, SPIN=bool(spin),
                                 num_warps=num_warps)
