"""Causality, gradients to every parameter, float32/float64, S4 kernel vs. dense LegS."""
import pytest
import torch

from layer_helpers import LAYER_KINDS, build_layer, step_loop

from ssmsignal.layers.hippo import hippo_legs, nplr_legs


@pytest.mark.parametrize("kind", LAYER_KINDS)
@pytest.mark.parametrize("dt_scale", [1.0, 0.5])
def test_output_before_t0_ignores_later_input(kind, dt_scale):
    layer = build_layer(kind).eval()
    torch.manual_seed(1)
    x = torch.randn(2, 64, 3, dtype=torch.float64)
    t0 = 37
    x2 = x.clone()
    x2[:, t0:] += torch.randn_like(x2[:, t0:])
    with torch.no_grad():
        y, y2 = layer(x, dt_scale=dt_scale), layer(x2, dt_scale=dt_scale)
    torch.testing.assert_close(y[:, :t0], y2[:, :t0], rtol=1e-10, atol=1e-12)
    assert (y[:, t0] - y2[:, t0]).abs().max() > 1e-6  # and the perturbation does show at t0


@pytest.mark.parametrize("kind", LAYER_KINDS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_gradients_reach_every_parameter(kind, dtype):
    layer = build_layer(kind, dtype=dtype).train()
    x = torch.randn(2, 33, 3, dtype=dtype, requires_grad=True)
    y = layer(x, dt_scale=torch.tensor([0.5, 2.0]))
    assert y.dtype == dtype and torch.isfinite(y).all()
    (y ** 2).mean().backward()
    for name, p in layer.named_parameters():
        assert p.grad is not None, name
        assert torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


@pytest.mark.parametrize("kind", LAYER_KINDS)
def test_float32_matches_float64(kind):
    x = torch.randn(2, 300, 3, dtype=torch.float64)
    y64 = build_layer(kind)(x, dt_scale=0.5)
    y32 = build_layer(kind, dtype=torch.float32)(x.float(), dt_scale=0.5)
    assert y32.dtype == torch.float32
    torch.testing.assert_close(y32.double(), y64, rtol=1e-3, atol=1e-4)


@pytest.mark.parametrize("kind", LAYER_KINDS)
def test_gradcheck_tiny(kind):
    """Analytic gradients of the whole layer (kernels included) equal finite differences."""
    layer = build_layer(kind, d_model=2, d_state=4)
    x = torch.randn(1, 6, 2, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda inp: layer(inp, dt_scale=0.8), (x,))
    # and with respect to the SSM parameters: perturb log_dt through a functional call
    name, p0 = ("log_dt", layer.log_dt) if hasattr(layer, "log_dt") else ("A_log", layer.A_log)
    f = lambda p: torch.func.functional_call(layer, {name: p}, (x.detach(), 0.8))  # noqa: E731
    assert torch.autograd.gradcheck(f, (p0.detach().clone().requires_grad_(),))


@pytest.mark.parametrize("L", [1, 6, 9])
@pytest.mark.parametrize("dt", [0.3, 1.7])
def test_s4_kernel_equals_dense_legs_system(L, dt):
    """At initialisation S4 is the real HiPPO-LegS system with C_real = 2 Re(c V*): its kernel
    (Cauchy + Woodbury + truncation, incl. the z = -1 closed form) equals a dense bilinear
    power loop built from scratch."""
    n = 8
    layer = build_layer("s4", d_model=2, d_state=n)
    A, B = hippo_legs(n)  # (n, n), (n,)
    V = nplr_legs(n).V  # (n, n/2)
    c = torch.view_as_complex(layer.C.detach())  # (H, n/2)
    C_real = 2.0 * (c @ V.conj().T).real  # (H, n)
    eye = torch.eye(n, dtype=torch.float64)
    dA = torch.linalg.solve(eye - dt / 2 * A, eye + dt / 2 * A)
    dB = torch.linalg.solve(eye - dt / 2 * A, dt * B)
    expected, v = [], dB
    for _ in range(L):
        expected.append(C_real @ v)  # (H,)
        v = dA @ v
    expected = torch.stack(expected, dim=-1)  # (H, L)
    with torch.no_grad():
        got = layer._kernel(torch.full((2,), dt, dtype=torch.float64), L)
    # the layer stores its initial values in float32, hence 1e-5 rather than 1e-12
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)
