"""Fused SaShiMi step (Triton tier passes) against the module step, float64 reference.

CPU (CI): small models under ``TRITON_INTERPRET=1`` in a subprocess (the variable must be set
before triton is first imported). GPU: ``-m cuda`` (default sizes, CUDA graphs).
Tolerance: the kernel computes in float32 from float32-rounded weights and step coefficients;
over a few steps the relative error of logits and states stays near 1e-6, so 1e-4 is the
bound (a wrong index, phase or coefficient gives O(1)).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch

from ssmsignal.models import SaShiMi
from ssmsignal.models._sashimi_decode import sample_codes

TOL = 1e-4


def _model(layer, n_conditions, d_model=8, n_layers=1, pool=(2, 2), d_state=8, seed=0,
           unet=False):
    torch.manual_seed(seed)
    model = SaShiMi(d_model=d_model, n_layers=n_layers, pool=pool, layer=layer, d_state=d_state,
                    n_conditions=n_conditions, unet=unet)
    with torch.no_grad():  # fresh values for the parameters that start as constants
        for name, p in model.named_parameters():
            if "norm" in name or name.endswith("bias") or "log_dt" in name:
                p.add_(0.1 * torch.randn_like(p))
    return model


def _flat(tree):
    if isinstance(tree, torch.Tensor):
        return [tree]
    if isinstance(tree, dict):
        return [x for k in sorted(tree) for x in _flat(tree[k])]
    if isinstance(tree, (list, tuple)):
        return [x for v in tree for x in _flat(v)]
    return []


def _rel(a, ref):
    a, ref = a.detach().to(ref.dtype), ref.detach()
    assert torch.isfinite(a).all(), "non-finite output"
    return float((a - ref).norm() / ref.norm().clamp_min(1e-30))


def step_errors(layer, dt_scale, conditional, n_steps, device="cpu", seed=0, bf16_weights=False,
                batch=3,
                **sizes):
    """Max relative errors (logits, states) of the fused step over ``n_steps`` teacher-forced
    steps, against :meth:`SaShiMi.step` in float64."""
    from ssmsignal.models._sashimi_fused import FusedDecoder

    model = _model(layer, 3 if conditional else None, seed=seed, **sizes).to(device).eval()
    B = batch
    gen = torch.Generator().manual_seed(seed)
    inputs = torch.randint(0, 256, (B, n_steps + 1), generator=gen).to(device)
    labels = torch.randint(0, 3, (B,), generator=gen).to(device) if conditional else None
    ref = model.double()
    state = ref.initial_state(B)
    dec = FusedDecoder(model, B, labels, dt_scale,
                       bf16_weights=bf16_weights)  # packs float32 copies of the weights
    dec.next_input.copy_(inputs[:, 0])
    dec.start()
    err = {"logits": 0.0, "state": 0.0}
    for t in range(n_steps):
        logits, state = ref.step(inputs[:, t], state, t, labels=labels, dt_scale=dt_scale)
        dec.forced[t % dec.block] = inputs[:, t + 1]  # teacher forcing: next input
        dec.step(t)
        err["logits"] = max(err["logits"], _rel(dec.logits, logits))
        if dec.merge:  # tier 0's down pass of step t + 1 already ran: logits only
            continue
        mine, theirs = _flat(dec.module_state(t)), _flat(state)
        assert len(mine) == len(theirs)
        err["state"] = max(err["state"], max(_rel(a, b) for a, b in zip(mine, theirs)))
        assert torch.equal(dec.codes[t % dec.block], inputs[:, t + 1])
    err["split"] = max(dec.split)  # programs per row used by the widest split tier
    err["dataflow"] = sum(bool(d) for d in dec.dataflow)  # tiers run as dataflow passes
    dec.check()  # no split barrier or dataflow wait gave up
    return err


def sampling_agreement(layer, device="cpu", n_steps=4, batch=2, **kwargs):
    """Codes of sample_codes on the fused path and on the module path, same generator."""
    model = _model(layer, 3, seed=4).to(device).eval()
    labels = torch.tensor([0, 2][:batch], device=device)
    out = []
    for fused in (True, False):
        gen = torch.Generator(device=device).manual_seed(7)
        out.append(sample_codes(model, n_steps, batch, labels=labels, generator=gen,
                                fused=fused, **kwargs))
    return out


#: (layer, dt_scale, conditional, unet): covers S4 and S4D, dt_scale 1 and 2, with/without
#: labels, both arrangements of the blocks, and both block paths of the kernel for each layer
CASES = [("s4", 1.0, True, False), ("s4", 2.0, False, True), ("s4d", 1.0, False, True),
         ("s4d", 2.0, True, False)]
N_STEPS = 5  # pool (2, 2): frame 4, so steps 0..4 cover every phase and a second frame start


def _interpret_main():
    from ssmsignal.kernels.triton import sashimi_step

    out = []
    for i, case in enumerate(CASES):
        # 0: tier 0 on the one-tile pipelined path, the inner tiers (16 and 32 wide) assembled
        # in registers (a per-tier setting); 1: tiles small enough for several chunks per
        # stage, through scratch memory (the split path with one program per row); 2: the
        # one-tile path everywhere; 3: several chunks per stage assembled in registers. 0 and 2
        # merge tier 0's head pass with the next step's down pass (0: an empty one,
        # unet=False); 3 runs that empty down pass as a launch of its own. All on the
        # one-program passes (dataflow passes: test_sashimi_dataflow.py).
        config = dict(dataflow=False, tile=8192, ssm_tile=2048, single=True, prefetch=True,
                      regs=True, tile_wide=8192, ssm_tile_wide=2048)
        if i == 0:
            config.update(single=[True, False])
        if i == 1:
            config.update(tile=256, ssm_tile=16, single=False, prefetch=False, regs=False)
        if i == 3:
            config.update(tile_wide=128, ssm_tile_wide=16, single=False)
        sashimi_step.CONFIG.update(config, merge=i in (0, 2))
        layer, dt_scale, conditional, unet = case
        out.append(step_errors(layer, dt_scale, conditional, N_STEPS, seed=i, unet=unet))
    sashimi_step.CONFIG.update(dataflow=False, tile=8192, ssm_tile=2048, single=True,
                               merge="auto", tile_wide=8192, ssm_tile_wide=2048)
    out.append(step_errors("s4", 0.5, False, N_STEPS, seed=5, bf16_weights=True))
    prompt = torch.tensor([[3, 250], [128, 7]])
    sashimi_step.CONFIG.update(merge=True)
    codes = [sampling_agreement("s4", temperature=0.7, top_p=0.8, prompt=prompt, dt_scale=0.5)]
    out.append({"codes_equal": [bool(torch.equal(a, b)) for a, b in codes],
                "codes_shape": [list(a.shape) for a, _ in codes]})
    print(json.dumps(out))


def run_interpreted(path):
    """Run ``path --interpret`` under ``TRITON_INTERPRET=1`` (the variable must be set before
    triton is first imported); its last stdout line, parsed as JSON."""
    env = dict(os.environ, TRITON_INTERPRET="1", SSMSIGNAL_BACKEND="")
    proc = subprocess.run([sys.executable, path, "--interpret"], env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.slow  # 19-33 s on the 2-core CPU (the interpreter), depending on load
@pytest.mark.interpret
def test_interpreter_fused_step_matches_float64_module_step():
    results = run_interpreted(__file__)
    for case, errs in zip(CASES, results[:-2]):
        assert errs.pop("split") == 1 and max(errs.values()) < TOL, (case, errs)
    bf16 = results[-2]  # dense maps rounded to bfloat16: visibly lossy, but only by ~1e-3
    assert 1e-5 < bf16["logits"] < 1e-2, bf16
    assert results[-1]["codes_equal"] == [True], results[-1]
    assert results[-1]["codes_shape"] == [[2, 4]]


def test_unsupported_models_fall_back_to_the_module_path():
    from ssmsignal.models._sashimi_decode import sample_codes_fused
    from ssmsignal.models._sashimi_fused import unsupported_reason

    mamba = _model("mamba", None).eval()
    assert "Mamba" in unsupported_reason(mamba)
    s4 = _model("s4", None).eval()
    if os.environ.get("TRITON_INTERPRET", "") != "1":
        assert "device cpu" in unsupported_reason(s4)
    s4.train()
    assert unsupported_reason(s4) in (None, f"device cpu (the Triton kernel needs CUDA, or "
                                            f"TRITON_INTERPRET=1)")  # dropout 0: no problem
    gen = torch.Generator().manual_seed(0)
    codes = sample_codes(mamba.eval(), 3, 2, generator=gen)  # auto: module path, no error
    assert codes.shape == (2, 3)
    with pytest.raises(RuntimeError, match="Mamba"):
        sample_codes_fused(mamba, 3, 2, generator=gen)


def test_float64_models_are_not_fused():
    from ssmsignal.models._sashimi_fused import unsupported_reason

    model = SaShiMi(d_model=8, n_layers=1, pool=(2,), layer="s4d", d_state=4).eval()
    assert "float64" not in (unsupported_reason(model) or "")
    assert "torch.float64 parameters" in unsupported_reason(model.double())


def test_active_dropout_in_an_eval_model_is_not_fused():
    from ssmsignal.models._sashimi_fused import unsupported_reason

    model = SaShiMi(d_model=8, n_layers=1, pool=(2,), layer="s4d", d_state=4, dropout=0.1).eval()
    assert "dropout" not in (unsupported_reason(model) or "")
    model.tiers.up_blocks[1].mlp[2].train()  # MC dropout: one Dropout active, the model in eval
    assert "dropout in training mode" == unsupported_reason(model)


def test_packed_weights_follow_optimizer_steps_and_loaded_weights():
    pytest.importorskip("triton")
    from ssmsignal.models._sashimi_fused import packed_model

    torch.manual_seed(0)
    model = SaShiMi(d_model=8, n_layers=1, pool=(2,), layer="s4d", d_state=4)
    first = packed_model(model, 1.0)[0]
    assert packed_model(model, 1.0)[0] is first  # cached
    assert packed_model(model, 2.0)[0] is not first  # other step coefficients

    def head_bias_and_dt_coefficients():
        tiers, head = packed_model(model, 1.0)
        return head[1][-model.n_classes:], tiers[0].weights[1]  # (C,), (pairs, NK, 2, H, N/2)

    opt = torch.optim.AdamW(model.parameters(), lr=0.1)  # the fit() optimizer
    model(torch.randint(0, 256, (2, 8))).logsumexp(-1).mean().backward()
    _, coef = head_bias_and_dt_coefficients()
    opt.step()
    bias, new_coef = head_bias_and_dt_coefficients()
    assert torch.equal(bias, model.head.bias) and not torch.equal(coef, new_coef)
    fresh = SaShiMi(d_model=8, n_layers=1, pool=(2,), layer="s4d", d_state=4)
    model.load_state_dict(fresh.state_dict())
    assert torch.equal(head_bias_and_dt_coefficients()[0], fresh.head.bias)


def test_a_split_barrier_that_gave_up_raises():
    pytest.importorskip("triton")
    from ssmsignal.models._sashimi_fused import FusedDecoder

    dec = _with_config({"dataflow": False}, FusedDecoder, _model("s4d", None, pool=(2,)).eval(),
                       1)
    dec.error.fill_(1)
    dec.check()  # no split or dataflow launch ran: the flag cannot come from one
    dec.split = [1, 8]  # (the interpreter never splits; as on a GPU)
    with pytest.raises(RuntimeError, match="timed out"):
        dec.check()
    dec.error.zero_()
    dec.check()


def test_bad_temperature_or_top_p_is_refused_on_both_paths():
    from ssmsignal.models._sashimi_decode import sample_codes_fused

    model = _model("s4d", None, pool=(2,)).eval()
    for fn in (sample_codes, sample_codes_fused):
        with pytest.raises(ValueError, match="temperature"):
            fn(model, 2, 1, temperature=0.0)
        with pytest.raises(ValueError, match="top_p"):
            fn(model, 2, 1, top_p=0.0)


# ----------------------------------------------------------------------------------- GPU
cuda = pytest.mark.cuda


def _with_config(config, fn, *args, **kwargs):
    """``fn(*args, **kwargs)`` with ``sashimi_step.CONFIG`` updated by ``config``."""
    from ssmsignal.kernels.triton import sashimi_step

    before = dict(sashimi_step.CONFIG)
    sashimi_step.CONFIG.update(config)
    try:
        return fn(*args, **kwargs)
    finally:
        sashimi_step.CONFIG.update(before)


#: launch configurations of the benchmark (kernels/bench/bench_generation.py FUSED_CONFIGS);
#: the shipped default (sashimi_step.CONFIG) runs the wide tiers at 16 warps, unsplit
BASE = {"split": 1, "num_warps_wide": 8, "merge": False}
WIDE16_MERGE = {"split": 1, "num_warps_wide": 16, "merge": True}
#: every tier on the register-assembled path, tier 0 at 32 warps (bench: "fused mix")
MIX = {"single": False, "num_warps_wide": [32, 16], "tile_wide": 4096, "ssm_tile_wide": 1024}


@cuda
@pytest.mark.parametrize("layer,dt_scale,config,unet", [
    ("s4", 0.5, BASE, True), ("s4d", 1.0, BASE, False), ("s4", 1.0, WIDE16_MERGE, False),
    ("s4d", 0.5, MIX, False)], ids=["s4-base-unet", "s4d-base", "s4-w16merge", "s4d-mix"])
def test_gpu_default_model_step_matches_float64(layer, dt_scale, config, unet):
    errs = _with_config(config, step_errors, layer, dt_scale, True, 40, device="cuda",
                        d_model=64, n_layers=8, pool=(4, 4), d_state=64, unet=unet)
    assert errs.pop("split") == 1 and max(errs.values()) < TOL, errs


@cuda
def test_gpu_graphs_equal_eager_fused_and_module_path():
    model = _model("s4", 3, d_model=64, n_layers=2, pool=(4, 4), d_state=64).cuda().eval()
    labels = torch.tensor([1, 2], device="cuda")
    runs = {}
    for name, kw in {"graphs": dict(fused=True), "eager": dict(fused=True, cuda_graphs=False),
                     "module": dict(fused=False)}.items():
        gen = torch.Generator(device="cuda").manual_seed(3)
        runs[name] = sample_codes(model, 150, 2, labels=labels, generator=gen, top_p=0.95, **kw)
    assert torch.equal(runs["graphs"], runs["eager"])  # same kernels, same noise
    # float32 both ways: logits differ by rounding only; Gumbel near-ties are rare
    assert (runs["graphs"] == runs["module"]).float().mean() > 0.9


@cuda
def test_gpu_bf16_weights_stay_close_to_float64():
    errs = step_errors("s4", 1.0, True, 20, device="cuda", bf16_weights=True, d_model=64,
                       n_layers=8, pool=(4, 4), d_state=64)
    assert errs.pop("split") == 1 and 1e-5 < errs["logits"] < 1e-2, errs


@cuda
def test_gpu_split_tiers_match_float64():
    # last in the file: a split launch that hung would stop the tests after it
    errs = _with_config({**MIX, "split": [1, 8]}, step_errors, "s4", 0.5, True, 20,
                        device="cuda",
                        d_model=64, n_layers=2, pool=(4, 4), d_state=64)
    assert errs.pop("split") == 8 and max(errs.values()) < TOL, errs  # tiers 1, 2: 8 per row


if __name__ == "__main__" and "--interpret" in sys.argv:
    _interpret_main()
