"""Fused recurrent step of SaShiMi: one launch runs one *tier pass* for one audio sample.

A tier pass is everything a tier of :class:`ssmsignal.models.SaShiMi` does between two pooling
points: its residual SSM blocks (LayerNorm -> S4 or S4D step on the state -> + D u -> GELU ->
linear to ``2 H`` -> GLU -> residual add) and feed-forward blocks (LayerNorm -> linear -> GELU
-> linear -> residual add), with a prologue that forms the pass input and an epilogue that
hands the result on:

* prologue ``PRO_EMBED``: code embedding (+ label embedding) of the previous sample;
  ``PRO_Z``: the inner tier's input written by the outer down-pool;
  ``PRO_UNFOLD``: the tier's own value after its down blocks (ring slot) plus the cached
  up-pool row of this phase;
* epilogue ``EPI_RING``: store into the pooling ring buffer and, on pooling steps, apply the
  down-pool linear map (input of the inner tier); ``EPI_UP``: apply the outer tier's up-pool
  linear map (the ``p`` unfolded rows it adds over its next ``p`` steps); ``EPI_HEAD``:
  final LayerNorm, output linear map, temperature, optional nucleus (top-p) mask and the
  Gumbel-max draw, so the sampled code is written back for the next step's embedding.

Grid ``(batch, S)``: ``S`` programs share one batch row (``S = 1`` unless the host splits a
wide tier over several multiprocessors, an opt-in for small batches). The residual stream ``x``
stays in registers, the same in all ``S`` programs. Of the three ways to run the blocks
(:func:`_blocks` picks one), the one-program ones are in :mod:`._sashimi_blocks`; the
``S``-program one, :func:`_pairs_chunked`, is here. Weights and the discretised step
coefficients are read from global memory every step (they stay in L2).

The math of each block is that of :mod:`ssmsignal.layers.s4`, :mod:`ssmsignal.layers.s4d`,
:mod:`ssmsignal.layers.blocks` and :meth:`ssmsignal.models.SaShiMi.step`; the host side
(packing, launch plan) is :mod:`ssmsignal.models._sashimi_fused`.
"""

from __future__ import annotations

import triton
import triton.language as tl

from ._sashimi_blocks import (_layer_norm, _linear_to, _pairs_regs, _pairs_single, _partials,
                              _ssm, _sync)

__all__ = ["tier_pass", "scratch_width", "fits_one_tile", "setting", "PRO_EMBED", "PRO_Z",
           "PRO_UNFOLD", "EPI_RING", "EPI_UP", "EPI_HEAD", "KIND_S4D", "KIND_S4", "CONFIG"]

PRO_EMBED, PRO_Z, PRO_UNFOLD = 0, 1, 2
EPI_RING, EPI_UP, EPI_HEAD = 0, 1, 2
KIND_S4D, KIND_S4 = 0, 1
#: Launch configuration: warps per program, weight elements per matrix-vector chunk (32 fp32
#: registers per thread at 8 warps), complex state elements per SSM chunk, the one-tile
#: pipelined block path where a tier fits (``single``), and loading the next chunk before the
#: current one's arithmetic (``prefetch``). Register counts: kernels/NOTES.md; the benchmark
#: sweeps these. ``split``: the most programs per batch row the host may use for a wide tier
#: (a power of two; only while ``batch * split`` is at most half the multiprocessors; 8 made
#: the default model 1.3x faster at batch 1 in the GPU run, but the split passes spin on a
#: counter in global memory, so it is off by default). ``merge``: the host
#: runs tier 0's head pass and the next step's down pass as one launch (True, False, or
#: "auto": when that down pass has no blocks, as with ``unet=False``). ``regs``: wide tiers
#: with one program per row assemble chunk outputs in registers instead of scratch memory;
#: ``num_warps_wide``, ``tile_wide``, ``ssm_tile_wide``: warps and chunk sizes of the passes
#: that assemble chunks in registers (one program per row, no one-tile path). Every value may
#: be a list with one entry per tier (outermost first), see :func:`setting`.
#: ``dataflow``: run a tier's (block-less-down, unet=False) pass as a dataflow pass over many
#: programs (:mod:`._sashimi_dataflow`) when ``batch x programs`` fits the multiprocessors,
#: with ``df_split`` slices per stage, ``df_ppg`` pairs per program group, ``df_fuse2`` (two
#: stages per pair, dense maps whole in every program: narrow tiers), ``df_warps`` and
#: ``df_epi`` (programs of the up-pool epilogue of tiers >= 1). Larger batches keep the
#: one-program passes. Default: tiers 1-2 only (batch 1 on an H100: 1.6-1.7x the one-program
#: passes for the default model). With tier 0 too (``True``: ~2x) S4 drifts from the float64
#: step on the GPU (1e-3..6e-2 relative after 40 steps, in 10 of 15 checks of GPU rounds 2-5 of
#: session 4; S4D and the interpreter never did): a timing-dependent race, cause not found, see
#: kernels/NOTES.md. Do not use it for S4 models.
CONFIG = {"num_warps": 8, "tile": 8192, "ssm_tile": 2048, "single": True, "prefetch": True,
          "split": 1, "merge": "auto", "regs": True, "num_warps_wide": 16,
          "tile_wide": 8192, "ssm_tile_wide": 2048, "dataflow": [False, True], "df_split": [8, 16],
          "df_ppg": [1, 8], "df_fuse2": [True, False], "df_warps": [8, 4], "df_epi": 32}


@triton.jit
def _pairs_chunked(x, first, n_pairs, ln_ptr, coef_ptr, d_ptr, ow_ptr, ob_ptr, fln_ptr, w1_ptr,
                   b1_ptr, w2_ptr, b2_ptr, state_ptr, batch, b, j, S, H, N2, F, n_coef, eps,
                   scr, row_scr, scr_stride, cnt_ptr, err_ptr, KIND: tl.constexpr,
                   HAS_FF: tl.constexpr,
                   SPLIT: tl.constexpr, HP: tl.constexpr, N2P: tl.constexpr, YS: tl.constexpr,
                   SP: tl.constexpr, HSP: tl.constexpr, FSP: tl.constexpr, BC: tl.constexpr,
                   BMG: tl.constexpr, BM1: tl.constexpr, BM2: tl.constexpr,
                   PREFETCH: tl.constexpr):
    """The blocks of a pass in chunks, program ``j`` of the ``S`` of its row: SSM of channels
    ``j H/S ..``, products with column slice ``j`` of the gated-output map ``(S, 2H, H/S)`` and
    of the second feed-forward map ``(S, H, F/S)``, rows ``j F/S ..`` of the first; partial sums
    go to two alternating regions of the scratch area (a region is rewritten only after the
    next barrier, when every program has read it)."""
    offs = tl.arange(0, HP)
    hm = offs < H
    HS = H // S
    FS = F // S
    hs = tl.arange(0, HSP)
    hsm = hs < HS
    fs = tl.arange(0, FSP)
    fsm = fs < FS
    jj = tl.arange(0, SP)[:, None]
    jm = jj < S
    u_scr = scr  # (HP,) normalised input
    y_scr = scr + HP  # (YS,) SSM output / feed-forward hidden
    p_off = HP + YS  # two regions of 2 HP partial sums
    k = 0  # barriers passed in this launch
    pair = first
    while pair < first + n_pairs:
        # residual SSM block: x += GLU(W GELU(SSM(LN x) + D LN x) + b)
        u = _layer_norm(x, hm, ln_ptr + pair * 2 * H, ln_ptr + pair * 2 * H + H, offs, H, eps)
        tl.store(u_scr + offs, u, mask=hm)
        tl.debug_barrier()
        _ssm(coef_ptr + pair * n_coef * H * N2, d_ptr + pair * (1 + 2 * KIND) * H,
             state_ptr + (pair * batch + b) * 2 * H * N2, u_scr, y_scr, j * HS, j * HS + HS, H,
             N2, KIND, N2P, BC)
        tl.debug_barrier()
        g = tl.load(y_scr + j * HS + hs, mask=hsm, other=0.0)  # (HSP,) this slice
        region = p_off + (k % 2) * 2 * HP
        _linear_to(ow_ptr + (pair * S + j) * 2 * H * HS, ob_ptr, g, hs, hsm, HS, 2 * H,
                   scr + region, BMG, False, False, PREFETCH)
        k += 1
        _sync(cnt_ptr, err_ptr, S * k, SPLIT)
        val = _partials(row_scr + region, scr_stride, jj, jm, offs, hm, SPLIT)
        gate = _partials(row_scr + region + H, scr_stride, jj, jm, offs, hm, SPLIT)
        val += tl.load(ob_ptr + pair * 2 * H + offs, mask=hm, other=0.0)
        gate += tl.load(ob_ptr + pair * 2 * H + H + offs, mask=hm, other=0.0)
        x += val * tl.sigmoid(gate)
        if HAS_FF:  # feed-forward block: x += W2 GELU(W1 LN x + b1) + b2
            u = _layer_norm(x, hm, fln_ptr + pair * 2 * H, fln_ptr + pair * 2 * H + H, offs,
                            H, eps)
            _linear_to(w1_ptr + pair * F * H + j * FS * H, b1_ptr + pair * F + j * FS, u, offs,
                       hm, H, FS, y_scr, BM1, True, True, PREFETCH)
            tl.debug_barrier()
            hv = tl.load(y_scr + fs, mask=fsm, other=0.0)  # (FSP,) this slice of the hidden
            region = p_off + (k % 2) * 2 * HP
            _linear_to(w2_ptr + (pair * S + j) * H * FS, b2_ptr, hv, fs, fsm, FS, H,
                       scr + region, BM2, False, False, PREFETCH)
            k += 1
            _sync(cnt_ptr, err_ptr, S * k, SPLIT)
            x += _partials(row_scr + region, scr_stride, jj, jm, offs, hm, SPLIT)
            x += tl.load(b2_ptr + pair * H + offs, mask=hm, other=0.0)
        pair += 1
    return x


@triton.jit
def _blocks(x, first, n_pairs, ln_ptr, coef_ptr, d_ptr, ow_ptr, ob_ptr, fln_ptr, w1_ptr, b1_ptr,
            w2_ptr, b2_ptr, state_ptr, batch, b, j, S, H, N2, F, n_coef, eps, row_scr,
            scr_stride, cnt_ptr, err_ptr, KIND: tl.constexpr, HAS_FF: tl.constexpr,
            SINGLE: tl.constexpr, SPLIT: tl.constexpr, REGS: tl.constexpr, HP: tl.constexpr,
            N2P: tl.constexpr, FP: tl.constexpr, YS: tl.constexpr, SP: tl.constexpr,
            HSP: tl.constexpr,
            FSP: tl.constexpr, BC: tl.constexpr, BMG: tl.constexpr, BM1: tl.constexpr,
            BM2: tl.constexpr, PREFETCH: tl.constexpr):
    if SINGLE:
        x = _pairs_single(x, first, n_pairs, ln_ptr, coef_ptr, d_ptr, ow_ptr, ob_ptr, fln_ptr,
                          w1_ptr, b1_ptr, w2_ptr, b2_ptr, state_ptr, batch, b, H, N2, F, n_coef,
                          eps, KIND, HAS_FF, HP, N2P, FP)
    elif not SPLIT and REGS:
        x = _pairs_regs(x, first, n_pairs, ln_ptr, coef_ptr, d_ptr, ow_ptr, ob_ptr, fln_ptr,
                        w1_ptr, b1_ptr, w2_ptr, b2_ptr, state_ptr, batch, b, H, N2, F, n_coef,
                        eps, KIND, HAS_FF, HP, N2P, FP, BC, BMG, BM1, BM2, PREFETCH)
    else:
        x = _pairs_chunked(x, first, n_pairs, ln_ptr, coef_ptr, d_ptr, ow_ptr, ob_ptr, fln_ptr,
                           w1_ptr, b1_ptr, w2_ptr, b2_ptr, state_ptr, batch, b, j, S, H, N2, F,
                           n_coef, eps, row_scr + j * scr_stride, row_scr, scr_stride,
                           cnt_ptr + b, err_ptr, KIND, HAS_FF, SPLIT, HP, N2P, YS, SP, HSP, FSP,
                           BC, BMG,
                           BM1, BM2, PREFETCH)
    return x


@triton.jit
def _embed(next_ptr, emb_ptr, label_ptr, label_emb_ptr, b, offs, hm, H,
           HAS_LABEL: tl.constexpr):
    """Embedding of the row's next input code (+ its label embedding)."""
    code = tl.load(next_ptr + b)
    x = tl.load(emb_ptr + code * H + offs, mask=hm, other=0.0)
    if HAS_LABEL:
        lab = tl.load(label_ptr + b)
        x += tl.load(label_emb_ptr + lab * H + offs, mask=hm, other=0.0)
    return x


@triton.jit
def _pass_input(in_ptr, next_ptr, emb_ptr, label_ptr, label_emb_ptr, unf_ptr, slot, b, idx,
                mask, H, ek, PRO: tl.constexpr, HAS_LABEL: tl.constexpr):
    """Entries ``idx`` (mask ``mask``) of the pass input: ``PRO_EMBED`` code (+ label)
    embedding, ``PRO_Z`` the inner tier's input, ``PRO_UNFOLD`` ring slot + unfolded row."""
    if PRO == 0:
        x = _embed(next_ptr, emb_ptr, label_ptr, label_emb_ptr, b, idx, mask, H, HAS_LABEL)
    elif PRO == 1:
        x = tl.load(in_ptr + b * H + idx, mask=mask, other=0.0)
    else:
        row = b * ek + slot * H  # ek = p H here: the ring and unfolded rows are (p, H)
        x = tl.load(in_ptr + row + idx, mask=mask, other=0.0)
        x += tl.load(unf_ptr + row + idx, mask=mask, other=0.0)
    return x


@triton.jit
def _ring(x, ring_ptr, slot, pool_now, pw_ptr, pb_ptr, pz_ptr, b, j, offs, hm, H, ek, er, S,
          EKP: tl.constexpr, BME: tl.constexpr, PREFETCH: tl.constexpr):
    """Ring slot <- x (the same value from every program of the row); on pooling steps the
    down-pool map of the whole ring (program j: rows j er/S ..) into the inner tier's input."""
    tl.store(ring_ptr + b * ek + slot * H + offs, x, mask=hm)
    if pool_now != 0:
        tl.debug_barrier()
        rs = er // S
        ko = tl.arange(0, EKP)
        km = ko < ek
        v = tl.load(ring_ptr + b * ek + ko, mask=km, other=0.0)  # (EKP,) the p slots
        _linear_to(pw_ptr + j * rs * ek, pb_ptr + j * rs, v, ko, km, ek, rs,
                   pz_ptr + b * er + j * rs, BME, True, False, PREFETCH)


@triton.jit
def _draw(z, co, b, er, noise_ptr, forced_ptr, codes_ptr, next_ptr, inv_temp, top_p,
          TOP_P: tl.constexpr):
    """Sampling from the logits ``z (EKP,)`` (codes ``co``, ``er`` valid): temperature, optional
    nucleus (top-p) mask, Gumbel-max with the row's noise; a forced code (>= 0) replaces the
    draw; the code is written to ``codes`` and, as the next step's input, to ``next``."""
    cmask = co < er
    z = tl.where(cmask, z, float("-inf")) * inv_temp
    if TOP_P:  # keep the smallest set of codes whose probability reaches top_p
        zs = tl.sort(z, 0, descending=True)
        p = tl.exp(zs - tl.max(zs, axis=0))
        p = p / tl.sum(p, axis=0)
        before = tl.cumsum(p, 0) - p  # mass of the codes ranked above
        cut = tl.min(tl.where(before < top_p, zs, float("inf")), axis=0)
        z = tl.where(z >= cut, z, float("-inf"))
    noise = tl.load(noise_ptr + b * er + co, mask=cmask, other=0.0)
    code = tl.argmax(tl.where(cmask, z + noise, float("-inf")), axis=0).to(tl.int64)
    forced = tl.load(forced_ptr + b)
    code = tl.where(forced >= 0, forced, code)
    tl.store(codes_ptr + b, code)
    tl.store(next_ptr + b, code)  # the next step's input


@triton.jit(do_not_specialize=["slot", "first", "n_pairs", "pool_now", "batch", "slot2",
                               "pool_now2", "n_pairs2"])
def _tier_pass_kernel(
        # prologue
        in_ptr, next_ptr, emb_ptr, label_ptr, label_emb_ptr, unf_ptr, slot,
        # blocks: pairs [first, first + n_pairs) of the tier's packed weights
        first, n_pairs, ln_ptr, coef_ptr, d_ptr, ow_ptr, ob_ptr,
        fln_ptr, w1_ptr, b1_ptr, w2_ptr, b2_ptr, state_ptr, eps,
        # epilogue
        out_ptr, pool_now, pw_ptr, pb_ptr, pz_ptr, ek, er,
        noise_ptr, forced_ptr, codes_ptr, logits_ptr, inv_temp, top_p,
        # MERGE: after the head, the next step's down pass (pairs [0, n_pairs2), ring slot2)
        n_pairs2, slot2, pool_now2, dpw_ptr, dpb_ptr, dpz_ptr, der,
        # sizes, splitting
        batch, H, N2, F, n_coef, scr_ptr, scr_stride, S, cnt_ptr, err_ptr,
        PRO: tl.constexpr, EPI: tl.constexpr, BLOCKS: tl.constexpr, SKIP: tl.constexpr,
        BLOCKS2: tl.constexpr, KIND: tl.constexpr, HAS_FF: tl.constexpr,
        HAS_LABEL: tl.constexpr, TOP_P: tl.constexpr, SINGLE: tl.constexpr,
        PREFETCH: tl.constexpr, SPLIT: tl.constexpr, MERGE: tl.constexpr, REGS: tl.constexpr,
        HP: tl.constexpr, N2P: tl.constexpr, FP: tl.constexpr, EKP: tl.constexpr,
        DKP: tl.constexpr, YS: tl.constexpr, SP: tl.constexpr, HSP: tl.constexpr,
        FSP: tl.constexpr, BC: tl.constexpr, BMG: tl.constexpr, BM1: tl.constexpr,
        BM2: tl.constexpr, BME: tl.constexpr, BMD: tl.constexpr):
    b = tl.program_id(0).to(tl.int64)
    j = tl.program_id(1)  # which of the S programs of this row
    offs = tl.arange(0, HP)  # (HP,)
    hm = offs < H
    row_scr = scr_ptr + b * S * scr_stride

    # ---- prologue: the pass input x (HP,) in registers
    x = _pass_input(in_ptr, next_ptr, emb_ptr, label_ptr, label_emb_ptr, unf_ptr, slot, b, offs,
                    hm, H, ek, PRO, HAS_LABEL)

    if BLOCKS:  # (a down pass of the autoregressive arrangement has none)
        x_in = x
        x = _blocks(x, first, n_pairs, ln_ptr, coef_ptr, d_ptr, ow_ptr, ob_ptr, fln_ptr,
                    w1_ptr, b1_ptr, w2_ptr, b2_ptr, state_ptr, batch, b, j, S, H, N2, F, n_coef,
                    eps, row_scr, scr_stride, cnt_ptr, err_ptr, KIND, HAS_FF, SINGLE, SPLIT,
                    REGS, HP, N2P, FP, YS, SP, HSP, FSP, BC, BMG, BM1, BM2, PREFETCH)
        if SKIP:  # the input of the modelling part added to its output (unet=False)
            x += x_in

    # ---- epilogue (the pooling maps: program j computes rows j er/S .. of er)
    if EPI == 0:
        _ring(x, out_ptr, slot, pool_now, pw_ptr, pb_ptr, pz_ptr, b, j, offs, hm, H, ek, er, S,
              EKP, BME, PREFETCH)
    elif EPI == 1:  # outer tier's up-pool map: its p unfolded rows
        rs = er // S
        _linear_to(pw_ptr + j * rs * H, pb_ptr + j * rs, x, offs, hm, H, rs,
                   pz_ptr + b * er + j * rs, BME, True, False, PREFETCH)
    elif j == 0:  # head and sampling (one program of the row)
        u = _layer_norm(x, hm, pw_ptr, pw_ptr + H, offs, H, eps)
        lrow = logits_ptr + b * er
        _linear_to(pb_ptr, pb_ptr + er * H, u, offs, hm, H, er, lrow, BME, True, False, False)
        tl.debug_barrier()
        co = tl.arange(0, EKP)
        z = tl.load(lrow + co, mask=co < er, other=float("-inf"))  # (EKP,)
        _draw(z, co, b, er, noise_ptr, forced_ptr, codes_ptr, next_ptr, inv_temp, top_p, TOP_P)
        if MERGE:  # S == 1: the next step's down pass of this tier, in the same launch
            tl.debug_barrier()
            x = _embed(next_ptr, emb_ptr, label_ptr, label_emb_ptr, b, offs, hm, H, HAS_LABEL)
            if BLOCKS2:
                x = _blocks(x, 0, n_pairs2, ln_ptr, coef_ptr, d_ptr, ow_ptr, ob_ptr, fln_ptr,
                            w1_ptr, b1_ptr, w2_ptr, b2_ptr, state_ptr, batch, b, j, S, H, N2,
                            F, n_coef, eps, row_scr, scr_stride, cnt_ptr, err_ptr, KIND, HAS_FF,
                            SINGLE,
                            SPLIT, REGS, HP, N2P, FP, YS, SP, HSP, FSP, BC, BMG, BM1, BM2,
                            PREFETCH)
            _ring(x, in_ptr, slot2, pool_now2, dpw_ptr, dpb_ptr, dpz_ptr, b, j, offs, hm, H, ek,
                  der, S, DKP, BMD, PREFETCH)


def setting(name, tier=0):
    """``CONFIG[name]``, or its entry for ``tier`` where it is a list (the last entry serves the
    deeper tiers): e.g. ``CONFIG["split"] = [1, 8]`` splits every tier but the outer one."""
    value = CONFIG[name]
    if isinstance(value, (list, tuple)):
        return value[min(tier, len(value) - 1)]
    return value


def fits_one_tile(H, N2, F, tier=0):
    """Whether a tier's blocks take the one-tile pipelined path (with ``CONFIG["single"]``)."""
    HP, N2P = triton.next_power_of_2(H), triton.next_power_of_2(N2)
    FP = triton.next_power_of_2(max(F, 1))
    tile = setting("tile", tier)
    return (bool(setting("single", tier)) and HP * N2P <= setting("ssm_tile", tier)
            and 2 * HP * HP <= tile
            and FP * HP <= tile)


def scratch_width(H, F):
    """Floats of scratch per program for a tier of width ``H`` and feed-forward width ``F``."""
    HP, FP = triton.next_power_of_2(H), triton.next_power_of_2(max(F, 1))
    return 5 * HP + max(FP, HP)  # u (HP), y (max(FP, HP)), two partial regions (2 HP each)


def tier_pass(*, pro, epi, kind, batch, H, N2, F, eps, first, n_pairs, weights, state, scratch,
              inputs, next_codes, split=1, counters=None, error=None, emb=None, labels=None,
              label_emb=None, unfolded=None, slot=0, skip=False, out=None, pool_now=False,
              pool_w=None, pool_b=None, pool_out=None, ek=0, er=0, noise=None, forced=None,
              codes=None, logits=None, inv_temp=1.0, top_p=1.0, merge=None, tier=0):
    """Launch one tier pass for every batch row (grid ``(batch,)``); see the module docstring.

    ``weights`` is the tier's packed tuple ``(ln, coef, D, out_w, out_b, ff_ln, w1, b1, w2,
    b2)`` (float32, contiguous, stacked over block pairs); the head epilogue takes the final
    LayerNorm ``(2, H)`` as ``pool_w`` and the output map ``[W (C, H) | b (C,)]`` flattened as
    ``pool_b``. Unused pointers may be any tensor of the right device. Tensors are used in
    place: the launch has fixed arguments, so it can be captured in a CUDA graph.

    ``split = S > 1`` runs ``S`` programs per row (``H``, ``F`` and the pooling output widths
    divisible by ``S``; ``out_w`` packed ``(pairs, S, 2H, H/S)``, ``w2`` ``(pairs, S, H, F/S)``;
    ``scratch`` has ``batch * S`` rows; ``error`` a ``(1,)`` int32 flag that a barrier which
    waited too long sets to 1; ``counters`` ``(batch,)`` int32 zeros, counting the
    barriers of this launch; ``batch * S`` programs must fit on the GPU at once).

    ``tier``: which tier's launch configuration (:func:`setting`) applies.

    ``skip``: add the pass input (after the prologue) to the output of its blocks, the skip
    connection around the modelling part of the autoregressive arrangement (``unet=False``).

    ``merge = (n_pairs2, slot2, pool_now2, down_w, down_b, down_out, down_rows)`` (head passes
    of a pooled tier 0 with ``S = 1``): after the draw, the next step's down pass (pairs
    ``0 .. n_pairs2``) with the drawn code, its ring slot and down-pool map, in this launch.
    """
    ln, coef, D, ow, ob, fln, w1, b1, w2, b2 = weights
    n_coef = 6 if kind == KIND_S4D else 8
    HP = triton.next_power_of_2(H)
    N2P = triton.next_power_of_2(N2)
    FP = triton.next_power_of_2(max(F, 1))
    EKP = triton.next_power_of_2(max(ek if epi == EPI_RING else H, er if epi == EPI_HEAD else 1))
    if epi == EPI_UP:
        EKP = max(EKP, HP)
    S = int(split)
    single = S == 1 and fits_one_tile(H, N2, F, tier)
    regs = S == 1 and bool(setting("regs", tier))
    wide = regs and not single  # the register-assembled chunked path: its own chunk sizes
    tile = setting("tile_wide" if wide else "tile", tier)
    ssm_tile = setting("ssm_tile_wide" if wide else "ssm_tile", tier)
    HSP, FSP = triton.next_power_of_2(max(H // S, 1)), triton.next_power_of_2(max(F // S, 1))
    YS = max(FP, HP)
    if scratch.shape[0] < batch * S or scratch.shape[1] < scratch_width(H, F):
        raise ValueError(f"scratch {tuple(scratch.shape)} too small for batch {batch} x split {S}")
    if S > 1 and (H % S or F % S or er % S or counters is None or error is None):
        raise ValueError(f"split {S} must divide H {H}, F {F} and {er} and needs counters and "
                         "an error flag")
    some = ln
    n2, slot2, now2, dpw, dpb, dpz, der = merge or (0, 0, 0, some, some, some, 0)
    if skip and n_pairs < 1:
        raise ValueError("skip needs at least one block pair in the pass")
    if merge is not None and (S != 1 or epi != EPI_HEAD or pro != PRO_UNFOLD):
        raise ValueError("merge needs a head pass (PRO_UNFOLD, EPI_HEAD) with split 1")
    DKP = triton.next_power_of_2(max(ek, 1))
    _tier_pass_kernel[(batch, S)](
        inputs, next_codes, some if emb is None else emb, some if labels is None else labels,
        some if label_emb is None else label_emb, some if unfolded is None else unfolded, slot,
        first, n_pairs, ln, coef, D, ow, ob, fln, w1, b1, w2, b2, state, eps,
        some if out is None else out, int(bool(pool_now)), some if pool_w is None else pool_w,
        some if pool_b is None else pool_b, some if pool_out is None else pool_out, ek, er,
        some if noise is None else noise, some if forced is None else forced,
        some if codes is None else codes, some if logits is None else logits,
        float(inv_temp), float(top_p), n2, slot2, int(bool(now2)), dpw, dpb, dpz, der,
        batch, H, N2, F, n_coef, scratch, scratch.stride(0), S,
        some if counters is None else counters, some if error is None else error,
        PRO=pro, EPI=epi, BLOCKS=n_pairs > 0, SKIP=bool(skip),
        BLOCKS2=n2 > 0, KIND=kind, HAS_FF=F > 0, HAS_LABEL=labels is not None,
        TOP_P=top_p < 1.0, HP=HP,
        PREFETCH=bool(setting("prefetch", tier)), SINGLE=single,
        SPLIT=S > 1, MERGE=merge is not None,
        N2P=N2P, FP=FP, EKP=EKP, DKP=DKP, BMD=max(1, min(triton.next_power_of_2(max(der, 1)),
                                                       tile // DKP)),
        YS=YS, SP=triton.next_power_of_2(S), HSP=HSP, FSP=FSP,
        REGS=regs, BC=max(1, min(HSP, ssm_tile // N2P)),
        BMG=max(1, min(HP if regs else 2 * HP, tile // HSP)),
        BM1=max(1, min(FSP, tile // HP)), BM2=max(1, min(HP, tile // FSP)),
        BME=max(1, min(triton.next_power_of_2(max(er // S, 1)),
                       tile // (EKP if epi == EPI_RING else HP))),
        num_warps=setting("num_warps_wide" if wide else "num_warps", tier))
