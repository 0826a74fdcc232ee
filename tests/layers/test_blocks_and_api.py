"""Residual / feed-forward blocks, optimizer groups, and clear errors on bad input."""
import math

import pytest
import torch

from layer_helpers import LAYER_KINDS, build_layer, step_loop

from ssmsignal.layers import (S4, S4D, FeedForwardBlock, Mamba, ResidualBlock,
                              ssm_parameter_groups)


@pytest.mark.parametrize("kind", LAYER_KINDS)
@pytest.mark.parametrize("norm", ["layer", "rms"])
def test_residual_block_forward_equals_steps(kind, norm):
    block = ResidualBlock(build_layer(kind), norm=norm).double().eval()
    ff = FeedForwardBlock(3, norm=norm).double().eval()
    x = torch.randn(2, 25, 3, dtype=torch.float64)
    with torch.no_grad():
        y = ff(block(x, dt_scale=0.5))
        state, ys = block.initial_state(2), []
        for t in range(25):
            h, state = block.step(x[:, t], state, dt_scale=0.5)
            h, _ = ff.step(h, ff.initial_state(2))
            ys.append(h)
    torch.testing.assert_close(y, torch.stack(ys, 1), rtol=1e-9, atol=1e-10)
    # the residual path is really there: the block is not the bare layer
    assert (y - x).abs().max() > 1e-3 and (block(x) - block.layer(x)).abs().max() > 1e-3


def test_ssm_parameter_groups():
    model = torch.nn.Sequential(S4D(4, d_state=4, lr=1e-3), S4(4, d_state=4), Mamba(4))
    groups = ssm_parameter_groups(model, lr=1e-2, weight_decay=0.1, ssm_lr=5e-3)
    by_lr = {g["lr"]: g for g in groups}
    assert set(by_lr) == {1e-2, 1e-3, 5e-3}
    assert by_lr[1e-2]["weight_decay"] == 0.1
    assert by_lr[1e-3]["weight_decay"] == 0.0 and by_lr[5e-3]["weight_decay"] == 0.0
    s4d, s4, mamba = model
    assert {id(p) for p in by_lr[1e-3]["params"]} == {id(p) for p in s4d.ssm_parameters()}
    names = {n for n, p in model.named_parameters() if getattr(p, "_ssm_param", False)}
    assert names == {"0.log_dt", "0.log_A_real", "0.A_imag", "0.B",
                     "1.log_dt", "1.log_A_real", "1.A_imag", "1.P", "1.B",
                     "2.A_log", "2.D", "2.dt_proj.bias"}
    n_total = sum(len(g["params"]) for g in groups)
    assert n_total == len(list(model.parameters()))
    torch.optim.AdamW(groups)  # accepted as is


@pytest.mark.parametrize("kind", LAYER_KINDS)
def test_bad_inputs_raise_clear_errors(kind):
    layer = build_layer(kind)
    x = torch.randn(2, 10, 3, dtype=torch.float64)
    with pytest.raises(ValueError, match="shape"):
        layer(x[..., :2])
    with pytest.raises(ValueError, match="shape"):
        layer(x[0])
    with pytest.raises(ValueError, match="empty"):
        layer(x[:, :0])
    for bad in (0.0, -1.0, math.nan, math.inf, torch.tensor([1.0, -2.0])):
        with pytest.raises(ValueError, match="dt_scale"):
            layer(x, dt_scale=bad)
    with pytest.raises(ValueError, match=r"\(2,\)"):
        layer(x, dt_scale=torch.ones(3))
    with pytest.raises(ValueError, match="shape"):
        layer.step(x[:, 0, :2], layer.initial_state(2))
    with pytest.raises(ValueError, match="state"):
        layer.step(x[:, 0], layer.initial_state(3))


@pytest.mark.parametrize("make", [lambda: S4D(4, d_state=5), lambda: S4(4, d_state=0),
                                  lambda: S4D(4, discretization="euler"),
                                  lambda: S4D(4, init="nope"), lambda: S4D(0),
                                  lambda: Mamba(4, dt_rank=0), lambda: Mamba(4, d_conv=0),
                                  lambda: S4D(4, dt_min=0.1, dt_max=0.01),
                                  lambda: ResidualBlock(S4D(4), norm="batch")])
def test_bad_constructor_arguments(make):
    with pytest.raises(ValueError):
        make()


def test_mamba_step_buffer_grows_for_faster_input():
    """initial_state() sizes the conv buffer for dt_scale=1; a 4x faster input needs 13 taps:
    the buffer is grown with zeros (the past is zero at the start) and still matches."""
    layer = build_layer("mamba").eval()
    x = torch.randn(1, 30, 3, dtype=torch.float64)
    assert layer.initial_state(1).conv.shape[-1] == 4
    assert layer.initial_state(1, dt_scale=0.25).conv.shape[-1] == 13
    with torch.no_grad():
        torch.testing.assert_close(layer(x, dt_scale=0.25), step_loop(layer, x, 0.25))
