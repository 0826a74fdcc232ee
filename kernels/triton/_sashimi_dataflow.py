"""Dataflow tier pass of the fused SaShiMi step: one pass spread over many programs (SMs).

The shipped tier pass (:mod:`ssmsignal.kernels.triton.sashimi_step`) runs a tier's block pairs
on one program per batch row, so every weight byte streams through one multiprocessor on the
critical path. Weights do not depend on the activations, so here each pair is cut into four
*stages*, each split into ``S`` slices, one program per (pair group, stage, slice):

* ``A`` (SSM): LayerNorm of the full residual ``x``, S4/S4D step of channels ``j H/S ..``
  (this program owns that state slice), ``g = GELU(y + D u)`` of those channels;
* ``B`` (GLU): rows ``j H/S ..`` of the gated output map from the full ``g``:
  ``xm = x + (W_v g + b_v) sigmoid(W_g g + b_g)``;
* ``C`` (FF1): LayerNorm of the full ``xm``, rows ``j F/S ..`` of ``GELU(W_1 u + b_1)``;
* ``D`` (FF2): rows ``j H/S ..`` of ``xo = xm + W_2 hid + b_2``, the next pair's ``x``.

A program loads its weights, step coefficients and state slice first, then waits for its
inputs, so those loads run on all programs at once, off the critical path; the path is one
hand-off per stage (:mod:`._dataflow_protocol`: tagged 64-bit words). The tag is a per-row
launch counter in device memory (``ep``) that the epilogue (ring / up-pool map / head and draw,
as in the shipped kernel) advances once every other program of the row has read it (they all
feed it).

Programs are numbered pair-group major, stage, slice; a program waits only on lower-numbered
programs of its row or on earlier pairs. Under ``TRITON_INTERPRET=1`` programs run one after
another in grid order, so with one pair per group (``ppg = 1``) the interpreter runs this exact
code without ever waiting. With ``ppg > 1`` a program loops over the pairs of its group (its
next pair's loads overlap the other stages of the current one), and waits on higher-numbered
programs: GPU only, where every program of the launch must be resident at once (the host keeps
the grid within the multiprocessor count); a wait that gives up after ``max_polls`` polls sets
``err[0] = 1`` instead of hanging.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from ._dataflow_protocol import _get, _get2, _put
from ._sashimi_blocks import _gelu, _linear_to, _planes, _scalars, _ssm_update
from .sashimi_step import _draw, _embed, _pass_input, _ring

__all__ = ["dataflow_pass", "n_programs", "buffer_words"]


@triton.jit
def _norm(v, x, hm, w, b, H, eps):
    """LayerNorm statistics of the full ``x (HP,)`` applied to ``v`` (all or a slice of x)."""
    mean = tl.sum(x, axis=0) / H
    d = tl.where(hm, x - mean, 0.0)
    var = tl.sum(d * d, axis=0) / H
    return (v - mean) / tl.sqrt(var + eps) * w + b


@triton.jit
def _pick(x, idx, offs):
    """``x[idx]`` for the register vector ``x (HP,)`` at positions ``offs`` (one-hot sum)."""
    return tl.sum(tl.where(idx[:, None] == offs[None, :], x[None, :], 0.0), axis=1)


@triton.jit
def _ff2_load(w2_ptr, b2_ptr, q, offs, hm, fo, fom, H, F, ok):
    """Pair ``q``'s whole second feed-forward map ``(HP, FP)`` and bias (nothing unless ok)."""
    w2 = tl.load(w2_ptr + q * H * F + offs[:, None] * F + fo[None, :],
                 mask=hm[:, None] & fom[None, :] & ok, other=0.0).to(tl.float32)
    return w2, tl.load(b2_ptr + q * H + offs, mask=hm & ok, other=0.0)


@triton.jit
def _ff2_wait(w2, b2, prev, tag, err_ptr, max_polls, offs, hm, fo, fom,
              HP: tl.constexpr):
    """``xm + W_2 hid + b_2`` (whole) of the pair whose words start at ``prev``."""
    hid, xm = _get2(prev + 2 * HP, fo, fom, prev + HP, offs, hm, tag, err_ptr,
                    max_polls)  # (FP,), (HP,)
    return xm + tl.sum(w2 * hid[None, :], axis=1) + b2


@triton.jit
def _stage_ssm(q, q1, j, S, buf, R, tag, err_ptr, max_polls, ln_ptr, coef_ptr,
               d_ptr, w2_ptr, b2_ptr, state_ptr, in_ptr, next_ptr, emb_ptr, label_ptr,
               label_emb_ptr, unf_ptr, slot, b, batch, H, N2, F, n_coef, ek, eps,
               KIND: tl.constexpr, PRO: tl.constexpr, HAS_LABEL: tl.constexpr, FUSE2: tl.constexpr,
               HP: tl.constexpr, FP: tl.constexpr, N2P: tl.constexpr, HSP: tl.constexpr):
    """Stage A of pairs ``q .. q1`` (slice ``j``): LayerNorm + SSM step of channels ``r``. With
    ``FUSE2`` it first forms the pair input itself from the previous pair's ``xm`` and
    ``hid`` (its whole second feed-forward map, stage D) and publishes its slice of it."""
    offs = tl.arange(0, HP)
    hm = offs < H
    HS = H // S
    hs = tl.arange(0, HSP)
    rm = hs < HS
    r = j * HS + hs  # (HSP,) this slice's channels
    n = tl.arange(0, N2P)[None, :]
    m2 = rm[:, None] & (n < N2)  # (HSP, N2P)
    off = r[:, None] * N2 + n
    hn = H * N2
    fo = tl.arange(0, FP)
    fom = fo < F
    while q < q1:
        st = state_ptr + (q * batch + b) * 2 * hn
        sr = tl.load(st + off, mask=m2, other=0.0)  # (HSP, N2P)
        si = tl.load(st + hn + off, mask=m2, other=0.0)
        p0, p1, p2, p3, p4, p5, p6, p7 = _planes(coef_ptr + q * n_coef * hn, off, m2, hn, KIND)
        dd, dl, cc = _scalars(d_ptr + q * (1 + 2 * KIND) * H, r, rm, H, KIND)
        lw = tl.load(ln_ptr + q * 2 * H + r, mask=rm, other=0.0)
        lb = tl.load(ln_ptr + q * 2 * H + H + r, mask=rm, other=0.0)
        if FUSE2:
            w2, b2 = _ff2_load(w2_ptr, b2_ptr, q - 1, offs, hm, fo, fom, H, F, q > 0)
        if q == 0:
            x = _pass_input(in_ptr, next_ptr, emb_ptr, label_ptr, label_emb_ptr, unf_ptr, slot,
                            b, offs, hm, H, ek, PRO, HAS_LABEL)
        else:
            if FUSE2:
                x = _ff2_wait(w2, b2, buf + (q - 1) * R, tag, err_ptr, max_polls, offs,
                              hm, fo, fom, HP)
            else:
                x = _get(buf + (q - 1) * R + 2 * HP + FP, offs, hm, tag, err_ptr, max_polls)
        xs = _pick(x, r, offs)  # (HSP,)
        if FUSE2:  # the pair input, for stage B
            _put(buf + q * R + 2 * HP + FP, r, rm, xs, tag)
        u = _norm(xs, x, hm, lw, lb, H, eps)
        nr, ni, y = _ssm_update(p0, p1, p2, p3, p4, p5, p6, p7, sr, si, u[:, None],
                                dl[:, None], cc[:, None], KIND)
        tl.store(st + off, nr, mask=m2)
        tl.store(st + hn + off, ni, mask=m2)
        _put(buf + q * R, r, rm, _gelu(y + dd * u), tag)
        tl.debug_barrier()  # shared memory of this pair's reductions
        q += 1


@triton.jit
def _stage_glu(q, q1, j, S, buf, R, tag, err_ptr, max_polls, ow_ptr, ob_ptr,
               fln_ptr, w1_ptr, b1_ptr, in_ptr, next_ptr, emb_ptr, label_ptr, label_emb_ptr,
               unf_ptr, slot, b, H, F, ek, eps, PRO: tl.constexpr, HAS_LABEL: tl.constexpr,
               FUSE2: tl.constexpr, HP: tl.constexpr, FP: tl.constexpr, HSP: tl.constexpr,
               FSP: tl.constexpr, RP: tl.constexpr):
    """Stage B of pairs ``q .. q1``: rows ``r`` of the gated output map and the residual
    (``xm``). With ``FUSE2`` all rows (``RP = HP``), then stage C of slice ``j`` (LayerNorm,
    rows of the first feed-forward map)."""
    offs = tl.arange(0, HP)
    hm = offs < H
    HS = H // S
    hs = tl.arange(0, HSP)
    ro = tl.arange(0, RP)
    if FUSE2:
        rows = ro
        rmask = ro < H
    else:
        rows = j * HS + ro
        rmask = ro < HS
    FS = F // S
    fs = tl.arange(0, FSP)
    fm = fs < FS
    f = j * FS + fs
    hh = H * H
    while q < q1:
        wo = ow_ptr + q * 2 * hh + rows[:, None] * H + offs[None, :]
        wmask = rmask[:, None] & hm[None, :]
        wv = tl.load(wo, mask=wmask, other=0.0).to(tl.float32)  # (RP, HP)
        wg = tl.load(wo + hh, mask=wmask, other=0.0).to(tl.float32)
        bv = tl.load(ob_ptr + q * 2 * H + rows, mask=rmask, other=0.0)
        bg = tl.load(ob_ptr + q * 2 * H + H + rows, mask=rmask, other=0.0)
        if FUSE2:
            w1 = tl.load(w1_ptr + q * F * H + f[:, None] * H + offs[None, :],
                         mask=fm[:, None] & hm[None, :], other=0.0).to(tl.float32)  # (FSP, HP)
            b1 = tl.load(b1_ptr + q * F + f, mask=fm, other=0.0)
            lw = tl.load(fln_ptr + q * 2 * H + offs, mask=hm, other=0.0)
            lb = tl.load(fln_ptr + q * 2 * H + H + offs, mask=hm, other=0.0)
            x, g = _get2(buf + q * R + 2 * HP + FP, offs, hm, buf + q * R, offs, hm, tag,
                         err_ptr, max_polls)  # (HP,) each
        elif q == 0:
            x = _pass_input(in_ptr, next_ptr, emb_ptr, label_ptr, label_emb_ptr, unf_ptr, slot,
                            b, rows, rmask, H, ek, PRO, HAS_LABEL)
            g = _get(buf + q * R, offs, hm, tag, err_ptr, max_polls)  # (HP,)
        else:
            x, g = _get2(buf + (q - 1) * R + 2 * HP + FP, rows, rmask, buf + q * R, offs, hm,
                         tag, err_ptr, max_polls)  # (RP,), (HP,)
        val = tl.sum(wv * g[None, :], axis=1) + bv
        gate = tl.sum(wg * g[None, :], axis=1) + bg
        xm = x + val * tl.sigmoid(gate)  # (RP,)
        if FUSE2:
            r = j * HS + hs
            _put(buf + q * R + HP, r, hs < HS, _pick(xm, r, ro), tag)
            u = _norm(xm, xm, hm, lw, lb, H, eps)
            _put(buf + q * R + 2 * HP, f, fm, _gelu(tl.sum(w1 * u[None, :], axis=1) + b1), tag)
        else:
            _put(buf + q * R + HP, rows, rmask, xm, tag)
        tl.debug_barrier()  # shared memory of this pair's reductions
        q += 1


@triton.jit
def _stage_ff(q, q1, j, S, buf, R, tag, err_ptr, max_polls, fln_ptr, w1_ptr,
              b1_ptr, w2_ptr, b2_ptr, H, F, eps, FIRST: tl.constexpr, HP: tl.constexpr,
              FP: tl.constexpr, HSP: tl.constexpr, FSP: tl.constexpr):
    """Stage C (``FIRST``: LayerNorm of ``xm``, rows ``j F/S ..`` of the first feed-forward
    map) or D (rows ``j H/S ..`` of the second and the residual: ``xo``) of pairs ``q .. q1``."""
    offs = tl.arange(0, HP)
    hm = offs < H
    if FIRST:
        FS = F // S
        fs = tl.arange(0, FSP)
        fm = fs < FS
        f = j * FS + fs
        while q < q1:
            w1 = tl.load(w1_ptr + q * F * H + f[:, None] * H + offs[None, :],
                         mask=fm[:, None] & hm[None, :], other=0.0).to(tl.float32)
            b1 = tl.load(b1_ptr + q * F + f, mask=fm, other=0.0)
            lw = tl.load(fln_ptr + q * 2 * H + offs, mask=hm, other=0.0)
            lb = tl.load(fln_ptr + q * 2 * H + H + offs, mask=hm, other=0.0)
            xm = _get(buf + q * R + HP, offs, hm, tag, err_ptr, max_polls)  # (HP,)
            u = _norm(xm, xm, hm, lw, lb, H, eps)
            _put(buf + q * R + 2 * HP, f, fm, _gelu(tl.sum(w1 * u[None, :], axis=1) + b1), tag)
            tl.debug_barrier()  # shared memory of this pair's reductions
            q += 1
    else:
        HS = H // S
        hs = tl.arange(0, HSP)
        rm = hs < HS
        r = j * HS + hs
        fo = tl.arange(0, FP)
        fom = fo < F
        while q < q1:
            w2 = tl.load(w2_ptr + q * H * F + r[:, None] * F + fo[None, :],
                         mask=rm[:, None] & fom[None, :], other=0.0).to(tl.float32)
            b2 = tl.load(b2_ptr + q * H + r, mask=rm, other=0.0)
            hid, xm = _get2(buf + q * R + 2 * HP, fo, fom, buf + q * R + HP, r, rm, tag,
                            err_ptr, max_polls)  # (FP,), (HSP,)
            xo = xm + tl.sum(w2 * hid[None, :], axis=1) + b2
            _put(buf + q * R + 2 * HP + FP, r, rm, xo, tag)
            tl.debug_barrier()  # shared memory of this pair's reductions
            q += 1


@triton.jit(do_not_specialize=["slot", "n_pairs", "pool_now", "batch", "slot2", "pool_now2",
                               "ppg", "S"])
def _dataflow_kernel(
        in_ptr, next_ptr, emb_ptr, label_ptr, label_emb_ptr, unf_ptr, slot,
        n_pairs, ln_ptr, coef_ptr, d_ptr, ow_ptr, ob_ptr, fln_ptr, w1_ptr, b1_ptr, w2_ptr,
        b2_ptr, state_ptr, eps,
        out_ptr, pool_now, pw_ptr, pb_ptr, pz_ptr, ek, er,
        noise_ptr, forced_ptr, codes_ptr, logits_ptr, inv_temp, top_p,
        slot2, pool_now2, dpw_ptr, dpb_ptr, dpz_ptr, der,
        buf_ptr, buf_stride, ep_ptr, err_ptr, max_polls, ppg, S, batch, H, N2, F, n_coef,
        n_epi, cnt_ptr, PRO: tl.constexpr, EPI: tl.constexpr, SKIP: tl.constexpr,
        KIND: tl.constexpr, HAS_LABEL: tl.constexpr, TOP_P: tl.constexpr, MERGE: tl.constexpr,
        FUSE2: tl.constexpr, HP: tl.constexpr, FP: tl.constexpr, N2P: tl.constexpr,
        HSP: tl.constexpr, FSP: tl.constexpr, EKP: tl.constexpr, DKP: tl.constexpr,
        BME: tl.constexpr, BMD: tl.constexpr, UPT: tl.constexpr, RSP: tl.constexpr):
    pid = tl.program_id(0)
    b = tl.program_id(1).to(tl.int64)
    tag = tl.load(ep_ptr + b, volatile=True) + 1  # this launch's tag for the row
    buf = buf_ptr + b * buf_stride
    R = 3 * HP + FP  # words per pair: g (HP), xm (HP), hid (FP), xo (HP)
    offs = tl.arange(0, HP)
    hm = offs < H
    NT: tl.constexpr = 2 if FUSE2 else 4  # stages per pair
    n_stage = tl.cdiv(n_pairs, ppg) * NT * S
    if pid < n_stage:
        typ = (pid // S) % NT
        j = pid % S
        q = pid // (NT * S) * ppg
        q1 = tl.minimum(q + ppg, n_pairs)
        if typ == 0:
            _stage_ssm(q, q1, j, S, buf, R, tag, err_ptr, max_polls, ln_ptr, coef_ptr, d_ptr,
                       w2_ptr, b2_ptr, state_ptr, in_ptr, next_ptr, emb_ptr, label_ptr,
                       label_emb_ptr, unf_ptr, slot, b, batch, H, N2, F, n_coef, ek, eps, KIND,
                       PRO, HAS_LABEL, FUSE2, HP, FP, N2P, HSP)
        elif typ == 1:
            _stage_glu(q, q1, j, S, buf, R, tag, err_ptr, max_polls, ow_ptr, ob_ptr, fln_ptr,
                       w1_ptr, b1_ptr, in_ptr, next_ptr, emb_ptr, label_ptr, label_emb_ptr,
                       unf_ptr, slot, b, H, F, ek, eps, PRO, HAS_LABEL, FUSE2, HP, FP, HSP, FSP,
                       HP if FUSE2 else HSP)
        elif not FUSE2:
            if typ == 2:
                _stage_ff(q, q1, j, S, buf, R, tag, err_ptr, max_polls, fln_ptr, w1_ptr,
                          b1_ptr, w2_ptr, b2_ptr, H, F, eps, True, HP, FP, HSP, FSP)
            else:
                _stage_ff(q, q1, j, S, buf, R, tag, err_ptr, max_polls, fln_ptr, w1_ptr,
                          b1_ptr, w2_ptr, b2_ptr, H, F, eps, False, HP, FP, HSP, FSP)
    else:  # the epilogue program(s) of the row: the output of the last pair, then as tier_pass
        last = buf + (n_pairs - 1) * R
        if UPT:  # program e of n_epi: rows e er/n_epi .. of the up-pool map, loaded first
            rs = er // n_epi
            ro = tl.arange(0, RSP)
            rmk = ro < rs
            r0 = (pid - n_stage) * rs
            wu = tl.load(pw_ptr + (r0 + ro)[:, None] * H + offs[None, :],
                         mask=rmk[:, None] & hm[None, :], other=0.0)  # (RSP, HP)
            bu = tl.load(pb_ptr + r0 + ro, mask=rmk, other=0.0)
        fo = tl.arange(0, FP)
        if FUSE2:  # the last pair's second feed-forward map, whole
            w2, b2 = _ff2_load(w2_ptr, b2_ptr, n_pairs - 1, offs, hm, fo, fo < F, H, F, True)
        if EPI == 2:  # head weights loaded before the wait
            co = tl.arange(0, EKP)
            cm = co < er
            hw = tl.load(pb_ptr + co[:, None] * H + offs[None, :],
                         mask=cm[:, None] & hm[None, :], other=0.0)  # (EKP, HP)
            hb = tl.load(pb_ptr + er * H + co, mask=cm, other=0.0)
            lw = tl.load(pw_ptr + offs, mask=hm, other=0.0)
            lb = tl.load(pw_ptr + H + offs, mask=hm, other=0.0)
        if FUSE2:
            x = _ff2_wait(w2, b2, last, tag, err_ptr, max_polls, offs, hm, fo, fo < F, HP)
        else:
            x = _get(last + 2 * HP + FP, offs, hm, tag, err_ptr, max_polls)
        if SKIP:  # the input of the modelling part added to its output (unet=False)
            x += _pass_input(in_ptr, next_ptr, emb_ptr, label_ptr, label_emb_ptr, unf_ptr, slot,
                             b, offs, hm, H, ek, PRO, HAS_LABEL)
        if EPI == 0:
            _ring(x, out_ptr, slot, pool_now, pw_ptr, pb_ptr, pz_ptr, b, 0, offs, hm, H, ek, er,
                  1, EKP, BME, True)
        elif UPT:
            tl.store(pz_ptr + b * er + r0 + ro, tl.sum(wu * x[None, :], axis=1) + bu, mask=rmk)
        elif EPI == 1:
            _linear_to(pw_ptr, pb_ptr, x, offs, hm, H, er, pz_ptr + b * er, BME, True, False,
                       True)
        else:
            z = tl.sum(hw * _norm(x, x, hm, lw, lb, H, eps)[None, :], axis=1) + hb  # (EKP,)
            tl.store(logits_ptr + b * er + co, z, mask=cm)
            _draw(z, co, b, er, noise_ptr, forced_ptr, codes_ptr, next_ptr, inv_temp, top_p,
                  TOP_P)
            if MERGE:  # the next step's (block-less) down pass of this tier
                tl.debug_barrier()
                x = _embed(next_ptr, emb_ptr, label_ptr, label_emb_ptr, b, offs, hm, H,
                           HAS_LABEL)
                _ring(x, in_ptr, slot2, pool_now2, dpw_ptr, dpb_ptr, dpz_ptr, b, 0, offs, hm,
                      H, ek, der, 1, DKP, BMD, True)
        tl.debug_barrier()
        if UPT:  # the last epilogue program to finish advances the tag
            if tl.atomic_add(cnt_ptr + b, 1, sem="acq_rel", scope="gpu") == n_epi - 1:
                tl.store(cnt_ptr + b, 0)
                tl.store(ep_ptr + b, tag)
        else:
            tl.store(ep_ptr + b, tag)  # every program of the row has read the old value


def n_programs(n_pairs, split, ppg, fuse2=False, epi_split=1):
    """Programs per batch row of a dataflow pass: 4 stages (2 with ``fuse2``) x ``split``
    slices per pair group of ``ppg`` pairs, plus the ``epi_split`` epilogue programs."""
    return -(-n_pairs // ppg) * (2 if fuse2 else 4) * split + epi_split


def buffer_words(H, F, n_pairs):
    """64-bit hand-off words per batch row for a tier of width ``H``, feed-forward ``F``."""
    HP, FP = triton.next_power_of_2(H), triton.next_power_of_2(F)
    return n_pairs * (3 * HP + FP)


def dataflow_pass(*, pro, epi, kind, batch, H, N2, F, eps, n_pairs, weights, state, inputs,
                  next_codes, buf, ep, error, split, ppg, max_polls, fuse2=False,
                  epi_split=1, counters=None, num_warps=4, emb=None,
                  labels=None, label_emb=None, unfolded=None, slot=0, skip=False, out=None,
                  pool_now=False, pool_w=None, pool_b=None, pool_out=None, ek=0, er=0,
                  noise=None, forced=None, codes=None, logits=None, inv_temp=1.0, top_p=1.0,
                  merge=None):
    """Launch one tier pass as a dataflow pass (grid ``(n_programs, batch)``).

    Arguments as :func:`ssmsignal.kernels.triton.sashimi_step.tier_pass` (the pass runs all
    ``n_pairs`` pairs of the tier's packed ``weights``, which need feed-forward blocks, with the
    dense maps unsplit), plus ``buf`` (``(batch, >= buffer_words)`` int64, zeros at first),
    ``ep`` (``(batch,)`` int32 launch counters, zeros at first), ``error`` (``(1,)`` int32),
    ``split`` slices per stage (dividing ``H`` and ``F``), ``ppg`` pairs per program group and
    ``max_polls`` (the bound of every wait); ``fuse2``: two stages per pair, ``A`` after
    the whole ``D`` of the previous pair and ``B`` (whole) before ``C`` in each program (the
    dense maps computed redundantly by the ``split`` programs: for narrow tiers);
    ``epi_split``: an up-pool epilogue over that many programs (dividing ``er``; the last one
    to finish advances the tag, counting in ``counters``, ``(batch,)`` int32 zeros). ``merge``:
    as ``tier_pass``, with no blocks in the merged down pass. Every program of the launch must be
    resident at once when ``ppg > 1`` or on a GPU at all: the caller keeps ``batch *
    n_programs`` within the multiprocessors.
    """
    ln, coef, D, ow, ob, fln, w1, b1, w2, b2 = weights
    S, ppg = int(split), int(ppg)
    if F <= 0 or n_pairs < 1 or H % S or F % S:
        raise ValueError(f"dataflow pass needs feed-forward blocks, >= 1 pair and split {S} "
                         f"dividing H {H} and F {F}")
    if buf.dtype != torch.int64 or buf.shape[0] < batch or \
            buf.shape[1] < buffer_words(H, F, n_pairs):
        raise ValueError(f"hand-off buffer {tuple(buf.shape)} {buf.dtype} too small")
    some = ln
    slot2, now2, dpw, dpb, dpz, der = (0, 0, some, some, some, 0)
    if merge is not None:
        n2, slot2, now2, dpw, dpb, dpz, der = merge
        if n2 or epi != 2:
            raise ValueError("merge in a dataflow pass: head pass, block-less down pass only")
    HP, FP = triton.next_power_of_2(H), triton.next_power_of_2(F)
    EKP = triton.next_power_of_2(max(ek if epi == 0 else H, er if epi == 2 else 1))
    if epi == 1:
        EKP = max(EKP, HP)
    DKP = triton.next_power_of_2(max(ek, 1))
    tile = 8192
    E = int(epi_split)
    if E > 1 and (epi != 1 or er % E or counters is None):
        raise ValueError(f"epi_split {E}: an up-pool pass, dividing {er}, with counters")
    grid = (n_programs(n_pairs, S, ppg, fuse2, E), batch)
    _dataflow_kernel[grid](
        inputs, next_codes, some if emb is None else emb, some if labels is None else labels,
        some if label_emb is None else label_emb, some if unfolded is None else unfolded, slot,
        n_pairs, ln, coef, D, ow, ob, fln, w1, b1, w2, b2, state, eps,
        some if out is None else out, int(bool(pool_now)), some if pool_w is None else pool_w,
        some if pool_b is None else pool_b, some if pool_out is None else pool_out, ek, er,
        some if noise is None else noise, some if forced is None else forced,
        some if codes is None else codes, some if logits is None else logits,
        float(inv_temp), float(top_p), slot2, int(bool(now2)), dpw, dpb, dpz, der,
        buf, buf.stride(0), ep, error, int(max_polls), ppg, S, batch, H, N2, F,
        6 if kind == 0 else 8, E, ep if counters is None else counters,
        PRO=pro, EPI=epi, SKIP=bool(skip), KIND=kind, HAS_LABEL=labels is not None,
        TOP_P=top_p < 1.0, MERGE=merge is not None, FUSE2=bool(fuse2), HP=HP, FP=FP,
        N2P=triton.next_power_of_2(N2), HSP=triton.next_power_of_2(H // S),
        FSP=triton.next_power_of_2(F // S), EKP=EKP, DKP=DKP,
        BME=max(1, min(triton.next_power_of_2(max(er, 1)), tile // (EKP if epi == 0 else HP))),
        BMD=max(1, min(triton.next_power_of_2(max(der, 1)), tile // DKP)),
        UPT=E > 1, RSP=triton.next_power_of_2(max(er // E, 1)), num_warps=num_warps)


