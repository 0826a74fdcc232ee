"""Convolution / scan mode equals a Python loop of ``step`` (float64), with dt_scale != 1."""
import pytest
import torch

from layer_helpers import LAYER_KINDS, build_layer, step_loop


@pytest.mark.parametrize("kind", LAYER_KINDS)
@pytest.mark.parametrize("length", [1, 7, 1000])
@pytest.mark.parametrize("dt_scale", [1.0, 0.5, 2.0])
def test_forward_equals_step_loop(kind, length, dt_scale):
    d_model = 2 if length == 1000 else 3
    layer = build_layer(kind, d_model=d_model).eval()
    torch.manual_seed(length)
    x = torch.randn(2, length, d_model, dtype=torch.float64)
    with torch.no_grad():
        y_conv = layer(x, dt_scale=dt_scale)
        y_step = step_loop(layer, x, dt_scale)
    assert y_conv.shape == x.shape and y_conv.dtype == torch.float64
    assert torch.isfinite(y_conv).all()
    torch.testing.assert_close(y_conv, y_step, rtol=1e-9, atol=1e-10)
    # dt_scale must change something (else the test above says nothing about rescaling)
    if dt_scale != 1.0 and length > 1:
        with torch.no_grad():
            assert (layer(x) - y_conv).abs().max() > 1e-4


@pytest.mark.parametrize("kind", LAYER_KINDS)
def test_per_sequence_dt_scale(kind):
    """A (batch,) dt_scale equals running each sequence with its own float."""
    layer = build_layer(kind).eval()
    x = torch.randn(3, 20, 3, dtype=torch.float64)
    scales = torch.tensor([0.5, 1.0, 3.0], dtype=torch.float64)
    with torch.no_grad():
        y = layer(x, dt_scale=scales)
        y_loop = step_loop(layer, x, scales)
        for i, s in enumerate(scales.tolist()):
            torch.testing.assert_close(y[i:i + 1], layer(x[i:i + 1], dt_scale=s))
    torch.testing.assert_close(y, y_loop, rtol=1e-9, atol=1e-10)


@pytest.mark.parametrize("kind", LAYER_KINDS)
def test_step_with_gradients_matches(kind):
    """Step mode also works (and agrees) with autograd on: no stale cached matrices."""
    layer = build_layer(kind, d_model=2).eval()
    x = torch.randn(1, 5, 2, dtype=torch.float64)
    y_step = step_loop(layer, x, 0.7)
    y_step.sum().backward()
    assert all(p.grad is not None for p in layer.parameters())
    with torch.no_grad():
        torch.testing.assert_close(layer(x, dt_scale=0.7), y_step.detach())


@pytest.mark.parametrize("kind", ["s4", "s4d-zoh"])
def test_cached_step_coefficients_follow_parameter_updates(kind):
    """Without autograd the step coefficients are cached; an optimizer step, a loaded state
    dict or a dtype round trip must invalidate them (the step loop still equals forward)."""
    layer = build_layer(kind, d_model=2).eval()
    fresh = build_layer(kind, d_model=2, seed=1).eval()
    x = torch.randn(1, 6, 2, dtype=torch.float64)
    opt = torch.optim.SGD(layer.parameters(), lr=0.1)
    for change in ("optimizer", "load_state_dict", "dtype"):
        with torch.no_grad():
            step_loop(layer, x, 0.7)  # fills the cache
        if change == "optimizer":
            layer(x).square().sum().backward()
            opt.step()
        elif change == "load_state_dict":
            layer.load_state_dict(fresh.state_dict())
        else:
            layer.float()
            with torch.no_grad():
                layer.log_dt.mul_(1.5)
            layer.double()
        with torch.no_grad():
            torch.testing.assert_close(step_loop(layer, x, 0.7), layer(x, dt_scale=0.7),
                                       rtol=1e-9, atol=1e-10)
