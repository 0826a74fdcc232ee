"""Triton Cauchy kernel (DPLR S4) against float64 references, forward and all three gradients.

Same structure and tolerances as ``test_triton_vandermonde.py`` (whose helpers this file
reuses): ``interpret`` cases run on the CPU under ``TRITON_INTERPRET=1`` in a subprocess,
``cuda`` cases run the full set on the GPU, every kernel buffer starts as NaN.
"""

from __future__ import annotations

import math

import pytest
import torch

from ssmsignal.kernels import reference
from test_triton_vandermonde import (assert_close, needs_cuda, needs_interpreter, poison,
                                     run_interpreter_subset)

# (leading shape of v, leading shape of w, N, L): broadcasting, B and N off the tile sizes
SHAPES = [((3,), (3,), 5, 1), ((2, 3), (3,), 7, 17), ((5,), (5,), 33, 1000),
          ((3,), (1,), 9, 4097)]


def direct_cauchy(v, z, w):
    """Backstop float64 formula with ``(..., L, N)`` in memory."""
    v, z, w = (t.to(torch.complex128) for t in (v, z, w))
    return (v[..., None, :] / (z[:, None] - w[..., None, :])).sum(-1)  # (..., L)


def make_inputs(lead_v, lead_w, N, L, device, generator):
    """S4-like inputs: ``w`` in the left half plane, ``z`` on the imaginary axis near 0 and on the
    unit circle (both occur in S4's frequency-domain kernel), ``v`` arbitrary."""
    def cplx(*shape):
        return torch.complex(torch.randn(*shape, generator=generator),
                             torch.randn(*shape, generator=generator))

    v = cplx(*lead_v, N)
    w = torch.complex(-0.1 - torch.rand(*lead_w, N, generator=generator),
                      3.0 * torch.randn(*lead_w, N, generator=generator))
    theta = 2 * math.pi * torch.rand(L, generator=generator)
    z = torch.where(torch.arange(L) % 2 == 0, torch.exp(1j * theta),
                    1j * torch.tan((theta - math.pi) / 3)).to(torch.complex64)
    return v.to(device), z.to(device), w.to(device)


def check_against_float64(v, z, w, generator):
    from ssmsignal.kernels.triton.cauchy import cauchy

    v, z, w = (t.clone().requires_grad_() for t in (v, z, w))
    out = cauchy(v, z, w)  # (..., L)
    assert out.dtype == torch.complex64
    grad_out = torch.complex(torch.randn(out.shape, generator=generator),
                             torch.randn(out.shape, generator=generator)).to(out.device)
    got = torch.autograd.grad(out, (v, z, w), grad_out)

    wide = [t.detach().to(torch.complex128).requires_grad_() for t in (v, z, w)]
    want = direct_cauchy(*wide)
    want_grads = torch.autograd.grad(want, wide, grad_out.to(torch.complex128))
    assert_close("out vs direct", out.detach(), want.detach())
    assert_close("out vs reference", out.detach(), reference.cauchy(*(t.detach() for t in wide)))
    for name, g, wg in zip(("dv", "dz", "dw"), got, want_grads):
        assert_close(name, g, wg)


@pytest.mark.interpret
@needs_interpreter
@pytest.mark.parametrize("lead_v,lead_w,N,L", SHAPES)
def test_interpret_random(lead_v, lead_w, N, L, monkeypatch):
    poison(monkeypatch)
    gen = torch.Generator().manual_seed(N * 1000 + L)
    check_against_float64(*make_inputs(lead_v, lead_w, N, L, "cpu", gen), gen)


@pytest.mark.interpret
@needs_interpreter
def test_interpret_dispatch():
    from ssmsignal.kernels import cauchy

    gen = torch.Generator().manual_seed(5)
    v, z, w = make_inputs((2, 4), (4,), 6, 50, "cpu", gen)
    got = cauchy(v, z, w, backend="triton")
    assert_close("dispatched", got, direct_cauchy(v, z, w))


def test_interpreter_subset():
    """CI entry: the ``interpret`` cases above, in a fresh process with TRITON_INTERPRET=1."""
    run_interpreter_subset(__file__)


def test_rejects_bad_arguments():
    from ssmsignal.kernels.triton.cauchy import cauchy

    v = torch.zeros(2, 3, dtype=torch.complex64)
    z = torch.zeros(4, dtype=torch.complex64)
    with pytest.raises(TypeError, match="complex"):
        cauchy(v.real, z, v)
    with pytest.raises(ValueError, match="1-D"):
        cauchy(v, z[None], v)
    with pytest.raises(ValueError, match="same N"):
        cauchy(v, z, v[:, :2])


@pytest.mark.parametrize("B,N,L", [(3, 0, 5), (0, 4, 5), (3, 4, 0)])
def test_empty_sizes(B, N, L):
    """Empty rows, N or L: correct shapes and zeros, forward and backward, without a launch."""
    from ssmsignal.kernels.triton.cauchy import cauchy

    v, w = (torch.randn(B, N, dtype=torch.complex64, requires_grad=True) for _ in range(2))
    z = torch.randn(L, dtype=torch.complex64, requires_grad=True)
    out = cauchy(v, z, w)
    assert out.shape == (B, L) and bool((out == 0).all())
    out.real.sum().backward()
    for t, shape in ((v, (B, N)), (w, (B, N)), (z, (L,))):
        assert t.grad.shape == shape and bool((t.grad == 0).all())


@pytest.mark.cuda
@needs_cuda
@pytest.mark.parametrize("lead_v,lead_w,N,L", SHAPES + [((4, 2, 37), (37,), 64, 8193),
                                                        ((300,), (300,), 32, 2049)])
def test_cuda_against_float64(lead_v, lead_w, N, L, monkeypatch):
    poison(monkeypatch)
    gen = torch.Generator().manual_seed(N * 1000 + L + 1)
    check_against_float64(*make_inputs(lead_v, lead_w, N, L, "cuda", gen), gen)


@pytest.mark.cuda
@needs_cuda
def test_cuda_complex128_and_auto():
    """complex128 in -> complex128 out (float32 accuracy); backend auto picks Triton on CUDA."""
    from ssmsignal.kernels import cauchy

    gen = torch.Generator().manual_seed(9)
    v, z, w = make_inputs((8,), (8,), 16, 300, "cuda", gen)
    got = cauchy(v.to(torch.complex128), z, w)
    assert got.dtype == torch.complex128
    assert_close("complex128", got, direct_cauchy(v, z, w))
