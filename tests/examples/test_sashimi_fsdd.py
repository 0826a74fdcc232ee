"""The FSDD generation example (examples/sashimi_fsdd.py): a CPU smoke run on the embedded
slice through every lane, and the WaveNet baseline's causality."""
import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def _module(name):
    sys.path.insert(0, str(EXAMPLES))
    try:
        spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module
    finally:
        sys.path.remove(str(EXAMPLES))


@pytest.mark.slow
def test_quick_run_through_every_lane(tmp_path):
    script = _module("sashimi_fsdd")
    script.main(["--quick", "--layer", "s4d", "--out", str(tmp_path),
                 "--stage", "uncond,cond,wavenet,clf,profile,judge"])
    res = json.loads((tmp_path / "results.json").read_text())
    lanes = res["lanes"]
    assert not [lane for lane, r in lanes.items() if "error" in r]
    assert lanes["uncond"]["arrangement"]["unet"] is False  # the library's default flows
    assert lanes["cond"]["arrangement"]["n_conditions"] == 10
    for lane in ("uncond", "cond", "wavenet"):
        r = lanes[lane]
        assert r["epochs"] == 2 and len(r["history"]) == 2  # --quick caps the plan
        assert 0 < r["test_bits"] < 9 and np.isfinite(r["best_val_bits"])
    assert np.isfinite(lanes["uncond"]["test_16k_bits_dt_rescaled"])
    assert set(lanes["profile"]["seconds_per_step"]) == {"sashimi_2pairs", "sashimi_8pairs",
                                                         "wavenet"}
    assert 1.0 <= res["judge"]["uncond"]["inception_score"] <= 10.0
    assert len(res["judge"]["cond"]["confusion"]) == 10
    with np.load(tmp_path / "samples.npz") as data:
        assert data["cond"].shape == (10, 160) and list(data["cond_asked"]) == list(range(10))
        assert data["uncond_16k"].shape == (1, 320)
        assert np.abs(data["uncond"]).max() <= 1.0
    pytest.importorskip("matplotlib")
    written = script.main(["--render", str(tmp_path / "samples.npz"),
                           "--out", str(tmp_path / "render")])
    assert written is None and (tmp_path / "render" / "sashimi_cond_digit3.png").exists()
    assert (tmp_path / "render" / "sashimi_uncond_16k_0.wav").exists()


def test_wavenet_is_causal_and_inception_score_bounds():
    wavenet = _module("wavenet_baseline")
    torch.manual_seed(0)
    net = wavenet.WaveNet(channels=8, skip_channels=8, n_dilations=3, n_stacks=2).eval()
    assert net.receptive_field == 1 + 2 * (1 + 2 + 4)
    x = torch.randint(0, 256, (2, 40))
    y = x.clone()
    y[:, 25:] = torch.randint(0, 256, (2, 15))  # change the future of t = 24
    out_x, out_y = net(x), net(y)
    assert torch.equal(out_x[:, :25], out_y[:, :25])
    assert not torch.allclose(out_x[:, 25:], out_y[:, 25:])
    report = _module("sashimi_fsdd_report")
    assert report.inception_score(np.eye(10)) == pytest.approx(10.0)
    assert report.inception_score(np.full((5, 10), 0.1)) == pytest.approx(1.0)
    train, val = wavenet.split_like_generator(50, 0.2, seed=3)
    assert len(val) == 10 and sorted(np.concatenate([train, val])) == list(range(50))
