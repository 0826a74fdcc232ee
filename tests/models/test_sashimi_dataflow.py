"""Dataflow tier passes of the fused SaShiMi step (``CONFIG["dataflow"]``) against the float64
module step, and the hand-off protocol.

CPU (CI): under ``TRITON_INTERPRET=1`` in a subprocess; the interpreter runs the programs of a
launch one after another in grid order and a program waits only on lower-numbered ones (one
pair per program group), so the real kernel runs and no wait ever spins. GPU (``-m cuda``):
the default model with the pair loops (``ppg > 1``), CUDA graphs (tags carried across
replays), batch 64 falling back to the shipped passes. Tolerance as test_sashimi_fused.
"""
from __future__ import annotations

import json
import os
import sys

import pytest
import torch

sys.path.insert(0, os.path.dirname(__file__))
from test_sashimi_fused import (TOL, _model, _with_config, run_interpreted,  # noqa: E402
                                sampling_agreement, step_errors)

#: four stages per pair on every tier (an opt-in); the shipped default (sashimi_step.CONFIG)
#: runs tiers 1-2 on 16 slices with 8 pairs per program group and the up-pool map over 32
#: programs, tier 0 on its one-program pass (``dataflow=True``: tier 0 too, in two stages per
#: pair (df_fuse2) on 8 slices)
DF4 = {"dataflow": True, "df_split": [4, 32], "df_ppg": [1, 8], "df_fuse2": False,
       "df_warps": 4, "df_epi": 1}
#: small models on the interpreter: (layer, dt_scale, conditional, config, merge)
CASES = [("s4", 1.0, True, {**DF4, "df_split": [2, 4]}, False),
         ("s4d", 0.5, False, {"dataflow": True, "df_split": [2, 4], "df_epi": 4}, "auto")]


def _interpret_main():
    from ssmsignal.kernels.triton._dataflow_protocol import handoff_probe

    out = {"cases": []}
    for i, (layer, dt_scale, conditional, config, merge) in enumerate(CASES):
        out["cases"].append(_with_config({**config, "merge": merge}, step_errors, layer,
                                         dt_scale, conditional, 5, seed=i, n_layers=2))
    prompt = torch.tensor([[3, 250], [128, 7]])
    codes = _with_config({"dataflow": True, "df_split": [2, 4], "merge": True},
                         sampling_agreement, "s4",
                         temperature=0.7, top_p=0.8, prompt=prompt, dt_scale=0.5)
    out["codes_equal"] = bool(torch.equal(*codes))
    buf = torch.zeros(5 * 8, dtype=torch.int64)
    ep, err = torch.zeros(1, dtype=torch.int32), torch.zeros(1, dtype=torch.int32)
    probe = []
    for _ in range(2):  # the second launch finds the first one's words (older tag)
        handoff_probe(5, 6, buf, ep, err, 1)
        words = buf.view(5, 8)
        probe.append({"tags": (words >> 32).tolist(), "values": (words & 0xFFFFFFFF).to(
            torch.int32).view(torch.float32).tolist(), "ep": int(ep), "err": int(err)})
    out["probe"] = probe
    print(json.dumps(out))


@pytest.mark.slow  # ~20 s on the 2-core CPU (the interpreter)
@pytest.mark.interpret
def test_interpreter_dataflow_passes_match_float64_module_step():
    out = run_interpreted(__file__)
    for case, errs in zip(CASES, out["cases"]):  # every tier of the small models: dataflow
        assert errs.pop("dataflow") == 3 and errs.pop("split") == 1, (case, errs)
        assert max(errs.values()) < TOL, (case, errs)
    assert out["codes_equal"]
    for launch, probe in enumerate(out["probe"], 1):
        assert probe["ep"] == launch and probe["err"] == 0
        for i in range(5):  # program i: arange(6) + i + 1 under this launch's tag
            assert probe["tags"][i] == [launch] * 6 + [0, 0]
            assert probe["values"][i][:6] == [float(v + i + 1) for v in range(6)]


def test_a_dataflow_wait_that_gave_up_raises():
    pytest.importorskip("triton")
    from ssmsignal.models._sashimi_fused import FusedDecoder

    model = _model("s4d", None, pool=(2,)).eval()
    dec = _with_config({**DF4, "df_split": 2}, FusedDecoder, model, 1)
    assert all(dec.dataflow)  # (on the CPU device: always, with one pair per group)
    dec.error.fill_(1)
    with pytest.raises(RuntimeError, match="gave up|timed out"):
        dec.check()
    assert not any(_with_config({**DF4, "dataflow": False}, FusedDecoder, model, 1).dataflow)
    assert _with_config(DF4, FusedDecoder, model, 1).dataflow[1] is None  # 32 slices of 16


def test_tier0_dataflow_on_an_s4_model_warns_of_the_gpu_drift():
    pytest.importorskip("triton")
    import warnings

    from ssmsignal.models._sashimi_fused import FusedDecoder

    with pytest.warns(RuntimeWarning, match="drifts"):
        _with_config(DF4, FusedDecoder, _model("s4", None, pool=(2,)).eval(), 1)
    for layer, config in (("s4d", DF4), ("s4", {"dataflow": [False, True]})):
        with warnings.catch_warnings():
            warnings.simplefilter("error", RuntimeWarning)
            _with_config(config, FusedDecoder, _model(layer, None, pool=(2,)).eval(), 1)


# ----------------------------------------------------------------------------------- GPU
cuda = pytest.mark.cuda


@cuda
@pytest.mark.parametrize("layer,dt_scale,merge", [("s4", 1.0, False), ("s4d", 0.5, False),
                                                  ("s4", 0.5, "auto")],
                         ids=["s4", "s4d", "s4-merged"])
def test_gpu_dataflow_default_model_matches_float64(layer, dt_scale, merge):
    # the shipped configuration at batch 1 (tiers 1-2 on dataflow passes; merged: tier 0's head
    # and the next down pass in one launch, logits only); pair loops (ppg 8): GPU only
    errs = _with_config({"merge": merge}, step_errors, layer, dt_scale, True, 40,
                        device="cuda", batch=1, d_model=64, n_layers=8, pool=(4, 4),
                        d_state=64)
    assert errs.pop("dataflow") == 2 and errs.pop("split") == 1, errs  # tiers 1 and 2
    assert max(errs.values()) < TOL, errs


@cuda
def test_gpu_dataflow_graphs_equal_eager_and_batch_64_falls_back():
    from ssmsignal.models._sashimi_decode import sample_codes
    from ssmsignal.models._sashimi_fused import FusedDecoder

    model = _model("s4", 3, d_model=64, n_layers=8, pool=(4, 4), d_state=64).cuda().eval()
    labels = torch.tensor([1], device="cuda")
    runs = {}
    for name, config, kw in [("graphs", {}, {}), ("eager", {}, dict(cuda_graphs=False)),
                             ("one-program", {"dataflow": False}, {})]:
        gen = torch.Generator(device="cuda").manual_seed(3)
        runs[name] = _with_config(config, sample_codes, model, 300, 1, labels=labels,
                                  generator=gen, top_p=0.95, fused=True, **kw)
    assert torch.equal(runs["graphs"], runs["eager"])  # tags carried across graph replays
    assert (runs["graphs"] == runs["one-program"]).float().mean() > 0.9  # rounding only
    assert [bool(d) for d in FusedDecoder(model, 1).dataflow] == [False, True, True]
    assert not any(FusedDecoder(model, 64).dataflow)  # the grid would not fit: one-program


#: GPU rounds 2-4: with tier 0 on a dataflow pass S4 drifted from the float64 step now and then
#: (1e-3 to 2e-2; S4D always passed; the interpreter agrees to 2e-7), so the default keeps tier 0
#: on its one-program pass. Diagnosis (SSMSIGNAL_DIAG=1), after the explicit barriers around the
#: waits: S4 runs with tier 0 on a dataflow pass: name -> (config, dt_scale, seed)
ALL = {"dataflow": True}
S4_CONFIGS = {"all-seed0": (ALL, 1.0, 0), "all-seed1": (ALL, 1.0, 1), "all-seed2": (ALL, 0.5, 2),
              "all-seed3": (ALL, 1.0, 3), "tiers02": ({"dataflow": [True, False, True]}, 1.0, 0)}


@cuda
@pytest.mark.skipif(not os.environ.get("SSMSIGNAL_DIAG"), reason="diagnosis: SSMSIGNAL_DIAG=1")
@pytest.mark.parametrize("name", list(S4_CONFIGS))
def test_gpu_s4_dataflow_settings_match_float64(name):
    config, dt_scale, seed = S4_CONFIGS[name]
    errs = _with_config({**config, "merge": False}, step_errors, "s4", dt_scale, True, 40,
                        device="cuda", seed=seed, batch=1, d_model=64, n_layers=8,
                        pool=(4, 4), d_state=64)
    print(name, errs)
    errs.pop("dataflow"), errs.pop("split")
    assert max(errs.values()) < TOL, (name, errs)


if __name__ == "__main__" and "--interpret" in sys.argv:
    _interpret_main()
