"""Candidates of the selective scan timed side by side in one GPU round (``--variants`` of
:mod:`ssmsignal.kernels.bench.bench_selective_scan`, run by ``kernels/bench/gpu_scan.sh``):
the module knobs each candidate changes, its float64 checks, compilation ahead of the round
(``--warm``), a run for Nsight Compute (``--profile``), the timing table beside mamba_ssm, and
the breakdown of forward with checkpoints, backward and partial sums at the first shape.
"""

from __future__ import annotations

import os
import re
import sys
import time

import torch
from triton.testing import do_bench

from ssmsignal.kernels.bench.bench_selective_scan import (SHAPES, make_inputs, measure_ceilings,
                                                          save_json, timed)
from ssmsignal.kernels.triton import _common
from ssmsignal.kernels.triton import selective_scan as ours_mod

#: Module knobs of ``selective_scan`` a variant may change, with the shipped defaults.
KNOBS = ("CHUNK_FWD", "CHUNK_CK", "FWD_CK_V4", "FWD_XCH", "FWD_PIPE", "FWD_WARPS",
         "FWD_WARPS_XCH", "FAST_MATH", "FWD_FAST_MATH", "FWD_FAST_GATE", "FMA_SCAN",
         "SEGMENT_WARPS", "FWD_MAXNREG", "BWD_MAXNREG", "WARP_PARTIALS", "BWD_SCATTER",
         "BWD_XCH", "BF16_PARTIALS", "FWD_MAX_LANES", "FWD_SOFTPLUS_POLY",
         "BWD_SOFTPLUS_POLY", "FWD_EXP_FMA",
         "BWD_BC_LATE", "PARTIALS_TN", "TRITON_SUMS", "CKPT_TN",
         "FWD_GRID_SWAP", "FWD_HINT", "FWD_STORE_HINT", "FWD_A_HOIST")
DEFAULTS = {k: getattr(ours_mod, k) for k in KNOBS}

#: Candidates timed side by side (``--variants``): knob overrides, and ``fwd_only`` (time the
#: forward only). Earlier rounds' candidates and outcomes: kernels/NOTES.md (selective_scan).
#: prev = the defaults before session 4 (its rounds 1 and 2 measured the new switches: sp, L,
#: T, T16, s, ck); old = session 2's kernels; nock = checkpoints laid out (N,) as before;
#: E1 = 16 of each 64 forward decays on the FMA units (slower in round 1).
_SESSION3 = dict(BWD_SOFTPLUS_POLY=False, BF16_PARTIALS=False, BWD_BC_LATE=False,
                 PARTIALS_TN=False, TRITON_SUMS=False, CKPT_TN=False)
VARIANTS = {
    "base": {},
    "again": {},  # base timed a second time in the same run: the spread between identical code
    "prev": dict(_SESSION3),
    "nock": dict(CKPT_TN=False),
    "E1": dict(FWD_EXP_FMA=2, fwd_only=True),
    # the forward without gradients as in session 4 (no grid swap, hints or hoisted A); other
    # combinations: made-up names on top of the defaults (e.g. ng-h0-s0-a: A hoisted alone)
    "s4": dict(FWD_GRID_SWAP=False, FWD_HINT=0, FWD_STORE_HINT=0, FWD_A_HOIST=False,
               fwd_only=True),
    "old": dict(BWD_SCATTER=False, FWD_CK_V4=False, FWD_XCH=False, BWD_XCH=False, **_SESSION3),
}


#: Tokens of made-up forward variants (``--variants g-h1-r160``): each sets one knob.
_TOKENS = {"g": ("FWD_GRID_SWAP", True), "a": ("FWD_A_HOIST", True),
           "ng": ("FWD_GRID_SWAP", False), "na": ("FWD_A_HOIST", False),
           "sp": ("FWD_SOFTPLUS_POLY", True),
           "mul": ("FMA_SCAN", False), "fg": ("FWD_FAST_GATE", True)}
_NUM_TOKENS = {"h": "FWD_HINT", "s": "FWD_STORE_HINT", "r": "FWD_MAXNREG"}
_NUM_LIMITS = {"h": len(ours_mod.LOAD_HINTS), "s": len(ours_mod.STORE_HINTS), "r": 256}


class _Variants(dict):
    """VARIANTS, plus forward-only variants made up on request from ``-``-joined tokens: ``g``
    (FWD_GRID_SWAP), ``a`` (FWD_A_HOIST), ``ng`` / ``na`` (either off), ``h<n>`` (FWD_HINT,
    0-2), ``s<n>`` (FWD_STORE_HINT, 0-2), ``r<n>`` (FWD_MAXNREG, 24-255), ``sp`` (polynomial
    softplus), ``mul`` (scan step ``a2 * b1 + b2``), ``fg`` (fast gate), on top of the
    defaults; e.g. ``ng-h0-s0-na`` is session 4's forward, ``r160`` a lower register cap."""

    def __missing__(self, name):
        v = dict(fwd_only=True)
        for tok in name.split("-"):
            m = re.fullmatch(r"([hsr])(\d+)", tok)
            if tok in _TOKENS:
                v[_TOKENS[tok][0]] = _TOKENS[tok][1]
            elif m and int(m.group(2)) < _NUM_LIMITS[m.group(1)] and (m.group(1) != "r"
                                                                     or int(m.group(2)) >= 24):
                v[_NUM_TOKENS[m.group(1)]] = int(m.group(2))
            else:  # (a hint the kernels do not know would silently time no hint)
                raise KeyError(name)
        if len(v) == 1:
            raise KeyError(name)
        return v

    def __contains__(self, name):
        try:
            self[name]
        except KeyError:
            return False
        return True


VARIANTS = _Variants(VARIANTS)


def apply_variant(v):
    """Set the module-level knobs of variant ``v``."""
    for k in KNOBS:
        setattr(ours_mod, k, v.get(k, DEFAULTS[k]))
    _common.SCAN_CONFIG_OVERRIDE = _common.SCAN_CONFIG_OVERRIDE_BWD = None


def check_variant(v, test_mod):
    """Max relative error of each case (forward and all gradients) against float64; raises if
    any case is over the test suite's tolerance."""
    worst = 0.0
    try:
        # masks and padding; time segments without masks; float16 with groups and N = 5 (the
        # GPU tests add segments with padding, every dtype and L, for the default settings); then
        # enough channels for the forward's NO = 4 (its layouts at the first benchmark shape)
        for (b, d, L, N, G, dtype, lengths) in [(2, 37, 1000, 16, 0, torch.float32, True),
                                                 (2, 128, 2048, 16, 0, torch.bfloat16, False),
                                                 (3, 64, 600, 5, 2, torch.float16, False),
                                                 (2, 4352, 256, 16, 0, torch.bfloat16, False),
                                                 (2, 4352, 250, 16, 0, torch.float32, True)]:
            apply_variant(v)
            errs = test_mod.compare(b, d, L, N, G, dtype, "cuda", seed=L + d, lengths=lengths)
            test_mod.check_errors(errs, dtype)
            worst = max(worst, max(errs.values()))
    finally:  # (a failing case must not leave later timings filling NaN buffers)
        _common.POISON_OUTPUTS = False
    return worst


def load_test_module():
    """tests/kernels/test_triton_selective_scan.py (its compare() and tolerances)."""
    import importlib.util
    path = os.path.join(os.path.dirname(__file__), "..", "..", "tests", "kernels",
                        "test_triton_selective_scan.py")
    spec = importlib.util.spec_from_file_location("scan_tests", path)
    test_mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(test_mod)
    return test_mod


def warm_variant(name, check=True):
    """Compile variant ``name``'s kernels (as the checks and timings will use them)."""
    v = VARIANTS[name]
    try:
        if check:
            worst = check_variant(v, load_test_module())
            print(f"warm {name}: max rel err {worst:.2e}", flush=True)
    except Exception as e:  # noqa: BLE001  (the main run reports it again)
        print(f"warm {name}: check FAILED {str(e)[:200]}", flush=True)
    for b, d, L in ((8, 1536, 256), (4, 1024, 2048)):  # as SHAPES: whole rows, and segments
        for grad in (False,) if v.get("fwd_only") else (False, True):
            ins = make_inputs(b, d, L, 16, grad)
            apply_variant(v)
            out = ours_mod.selective_scan(*ins[:5], ins[5], ins[6], ins[7], True)
            if grad:
                out.backward(torch.randn_like(out))
    torch.cuda.synchronize()


def profile_variant(name, rounds=2):
    """Forward alone, then forward + backward, at the first shape, ``rounds`` times: under
    ``ncu --launch-skip 3 --launch-count 3`` the second round's three scan kernels (forward,
    forward with checkpoints, backward) are profiled, the first round compiled them."""
    apply_variant(VARIANTS[name])
    b, d, L, N = SHAPES[0]
    ins = make_inputs(b, d, L, N, True)
    plain = [t.detach() for t in ins]  # (inputs that require gradients: checkpoints saved)
    dout = torch.randn(b, d, L, device="cuda", dtype=torch.bfloat16)
    for _ in range(rounds):
        ours_mod.selective_scan(*plain[:5], plain[5], plain[6], plain[7], True)
        ours_mod.selective_scan(*ins[:5], ins[5], ins[6], ins[7], True).backward(dout)
        torch.cuda.synchronize()


def run_variants(names, mamba, json_path, n_shapes, check=True):
    """Correctness of every variant first, then fwd and fwd+bwd times of each and mamba_ssm
    (``mamba`` None: ours only; ``check`` False: no float64 checks)."""
    test_mod = load_test_module()
    meta = dict(date=time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                device=torch.cuda.get_device_name(), command=" ".join(sys.argv))
    try:  # the two ceilings of the floors, measured in this run
        meta["copy_bw"], meta["exp2_rate"] = measure_ceilings()
        print(f"copy {meta['copy_bw'] / 1e12:.2f} TB/s; exp2 {meta['exp2_rate'] / 1e12:.2f} T/s",
              flush=True)
    except Exception as e:  # noqa: BLE001
        print(f"ceilings failed: {str(e)[:200]}", flush=True)
    res = dict(meta=meta, check={}, rows=[])
    print("(a * after a name: that timing fell back to the kernel without shuffles)")
    ok = [] if check else list(names)
    for name in names if check else ():
        try:
            res["check"][name] = check_variant(VARIANTS[name], test_mod)
            ok.append(name)
            print(f"check {name}: ok (max rel err {res['check'][name]:.2e})", flush=True)
        except Exception as e:  # noqa: BLE001  (report and skip the variant)
            res["check"][name] = f"FAILED: {str(e)[:300]}"
            print(f"check {name}: FAILED {str(e)[:300]}", flush=True)
    for (b, d, L, N) in SHAPES[:n_shapes]:
        for grad in (False, True):
            ins = make_inputs(b, d, L, N, grad)
            reps = (10, 100) if L * b * d < 2e9 else (3, 30)
            r = dict(shape=(b, d, L, N), mode="fwd+bwd" if grad else "fwd")
            r["mamba_cuda"] = float("nan") if mamba is None else timed(
                lambda: mamba.selective_scan_fn(*ins[:5], ins[5], ins[6], ins[7], True), grad,
                reps)
            for name in ok:
                if grad and VARIANTS[name].get("fwd_only"):
                    continue
                apply_variant(VARIANTS[name])
                falls = ours_mod.LANE_FALLBACK_LAUNCHES
                r[name] = timed(lambda: ours_mod.selective_scan(*ins[:5], ins[5], ins[6], ins[7],
                                                                True), grad, reps)
                if ours_mod.LANE_FALLBACK_LAUNCHES != falls:  # timed without its shuffles
                    r.setdefault("fallback", []).append(name)
            apply_variant({})
            res["rows"].append(r)
            cells = [f"{k}{'*' if k in r.get('fallback', ()) else ''} {v:.3f} "
                     f"({r['mamba_cuda'] / v:.2f}x)" for k, v in r.items()
                     if k not in ("shape", "mode", "mamba_cuda", "fallback")]
            print(f"{str(r['shape']):>22} {r['mode']:>8} mamba {r['mamba_cuda']:7.3f} | "
                  + " ".join(cells), flush=True)
            if json_path:
                save_json(json_path, res)
            del ins
            torch.cuda.empty_cache()
    first = next((r for r in res["rows"] if r["mode"] == "fwd+bwd"), {})  # first shape
    fastest = sorted((v, k) for k, v in first.items() if k in ok and v == v)
    try:
        breakdown(["base"] + [k for _, k in fastest if k != "base"], res, json_path)
        if mamba is not None:
            grad_only(mamba, ["base"] + [k for _, k in fastest if k != "base"][:1], res,
                      json_path)
    except Exception as e:  # noqa: BLE001  (the table above is what matters)
        print(f"breakdown failed: {str(e)[:300]}", flush=True)


def grad_only(mamba, names, res, json_path):
    """Forward + backward at the first shape through ``torch.autograd.grad``, for mamba_ssm and
    the variants named: the main table's ``.backward()`` also adds every gradient into the
    inputs' ``.grad`` (about 0.3 ms of elementwise adds at this shape, for both ops alike)."""
    b, d, L, N = SHAPES[0]
    ins = make_inputs(b, d, L, N, True)
    dout = torch.randn(b, d, L, device="cuda", dtype=torch.bfloat16)
    ops = {"mamba_cuda": mamba.selective_scan_fn, **{n: ours_mod.selective_scan for n in names}}
    for name, op in ops.items():
        apply_variant(VARIANTS.get(name, {}))
        ms = do_bench(lambda: torch.autograd.grad(op(*ins[:5], ins[5], ins[6], ins[7], True),
                                                  ins, dout), warmup=10, rep=100,
                      return_mode="median")
        res.setdefault("grad_only", {})[name] = ms
        print(f"fwd+bwd by autograd.grad (no .grad adds) {SHAPES[0]}: {name} {ms:.3f} ms",
              flush=True)
    apply_variant({})
    if json_path:
        save_json(json_path, res)


def breakdown(names, res, json_path):
    """Forward with checkpoints, backward kernel(s) and the whole step, separately, at the first
    shape (ms), for the variants named (the autograd step also holds the torch sums)."""
    b, d, L, N = SHAPES[0]
    for name in names:
        if name not in VARIANTS:
            continue
        apply_variant(VARIANTS[name])
        u, delta, A, B, C, D, z, bias = [t.detach() for t in make_inputs(b, d, L, N, False)]
        B4, C4 = B[:, None].contiguous(), C[:, None].contiguous()
        args = (u, delta, A, B4, C4, D, z, bias, True, None)
        _, _, ck, y = ours_mod._forward(*args, True, False)
        dout = torch.randn_like(u)
        t_f = do_bench(lambda: ours_mod._forward(*args, True, False), warmup=10, rep=100,
                       return_mode="median")
        t_b = do_bench(lambda: ours_mod._backward(dout, None, *args, ck, y, ours_mod.CKPT_TN),
                       warmup=10, rep=100, return_mode="median")
        t_s = time_partial_sums(b, d, L, N)
        res.setdefault("breakdown", {})[name] = dict(fwd_ck=t_f, bwd=t_b, sums=t_s)
        print(f"breakdown {name} {SHAPES[0]}: forward with checkpoints {t_f:.3f} ms, backward "
              f"(kernels + torch sums) {t_b:.3f} ms, of which the dB + dC sums {t_s:.3f}",
              flush=True)
        if json_path:
            save_json(json_path, res)
        del ck, y
        torch.cuda.empty_cache()
    apply_variant({})


def time_partial_sums(b, d, L, N):
    """ms of the two partial sums (dB and dC) of the backward under the current knobs."""
    NO, NI, W = 4, N // 4, 2  # the backward's block shape at the first shape
    n_parts = d // 8 if ours_mod.WARP_PARTIALS else d // (8 * W)
    dtype = torch.bfloat16 if ours_mod.BF16_PARTIALS else torch.float32
    shape = (b, n_parts, L, N) if ours_mod.PARTIALS_TN else (b, n_parts, N, L)
    parts = torch.randn((2, *shape), device="cuda").to(dtype)
    if ours_mod.TRITON_SUMS:
        return do_bench(lambda: ours_mod.sum_partials(parts, 1, N, NO, NI, ours_mod.PARTIALS_TN),
                        warmup=10, rep=100, return_mode="median")
    return do_bench(lambda: [ours_mod.torch_sum_partials(p, 1, N, NO, NI, ours_mod.PARTIALS_TN)
                             for p in parts], warmup=10, rep=100, return_mode="median")
