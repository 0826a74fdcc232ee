"""Triton Vandermonde product (S4D kernel) against float64 references, forward and gradients.

Three layers of checks:

* ``@pytest.mark.interpret`` cases run the real kernels on the CPU under ``TRITON_INTERPRET=1``.
  That variable must be set before triton is imported, so the CI test
  :func:`test_interpreter_subset` re-runs this file's ``interpret`` cases in a subprocess.
* ``@pytest.mark.cuda`` cases run the full set on the GPU (``pytest -m cuda``).
* Argument errors are checked directly (no kernel launch).

Tolerances (float32 kernel vs float64 truth, relative Frobenius norm): forward and gradients
2e-5; the largest per-element error must also stay under 2e-5 of the largest reference entry,
so a wrong tail cannot hide under a large head. Measured errors are ~3e-7 (see NOTES.md).
Outputs and partial-sum buffers are filled with NaN before each launch, so an element that the
kernel fails to write makes the check fail.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys

import pytest
import torch

from ssmsignal.kernels import reference

TOL = 2e-5
SHAPES = [(3, 5, 1), (2, 7, 17), (3, 33, 1000), (2, 20, 4097)]  # (H, N, L): N, H off the blocks
INTERPRET = os.environ.get("TRITON_INTERPRET", "") == "1"
needs_interpreter = pytest.mark.skipif(not INTERPRET, reason="needs TRITON_INTERPRET=1 at start")
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def direct_vandermonde(coef, log_z, L):
    """Backstop float64 formula, ``(H, N, L)`` in memory: ``2 Re sum_n coef z^l``."""
    l = torch.arange(L, dtype=torch.float64, device=coef.device)  # (L,)
    powers = torch.exp(log_z.to(torch.complex128)[:, :, None] * l)  # (H, N, L)
    return 2.0 * (coef.to(torch.complex128)[:, :, None] * powers).sum(1).real  # (H, L)


def s4d_inputs(H, N, device, generator):
    """Random S4D-like nodes: Re log_z = -dt/2 (decay), Im log_z = dt * pi * n (S4D-Lin)."""
    dt = torch.exp(torch.rand(H, generator=generator, dtype=torch.float64)
                   * math.log(100.0) + math.log(1e-3))  # (H,) log-uniform in [1e-3, 1e-1]
    n = torch.arange(N, dtype=torch.float64)
    log_z = torch.complex(-0.5 * dt[:, None].expand(H, N),
                          math.pi * dt[:, None] * n)  # (H, N)
    coef = torch.complex(torch.randn(H, N, generator=generator, dtype=torch.float64),
                         torch.randn(H, N, generator=generator, dtype=torch.float64))
    return coef.to(torch.complex64).to(device), log_z.to(torch.complex64).to(device)


def random_inputs(H, N, device, generator):
    """Generic nodes: decays up to 0.05 per step, phases in [-3, 3] rad per step."""
    re = -0.05 * torch.rand(H, N, generator=generator)
    im = 6.0 * torch.rand(H, N, generator=generator) - 3.0
    coef = torch.complex(torch.randn(H, N, generator=generator),
                         torch.randn(H, N, generator=generator))
    return coef.to(device), torch.complex(re, im).to(device)


def poison(monkeypatch):
    """Make every buffer that the Triton kernels allocate start as NaN (``_common.new_buffer``)."""
    from ssmsignal.kernels.triton import _common

    monkeypatch.setattr(_common, "POISON_OUTPUTS", True)


def assert_close(name, got, want):
    """Relative-norm and relative-max error under TOL; NaN/inf never pass."""
    assert got.shape == want.shape, f"{name}: shape {tuple(got.shape)} != {tuple(want.shape)}"
    assert torch.isfinite(torch.view_as_real(got) if got.is_complex() else got).all(), \
        f"{name}: non-finite values (unwritten or broken output)"
    diff = (got.to(want.dtype) - want).abs()
    scale = want.abs().max().item()
    if scale == 0.0:
        assert diff.max().item() <= TOL, f"{name}: expected zeros, max |got| {diff.max().item()}"
        return
    rel = (diff.norm() / want.norm()).item()
    rel_max = diff.max().item() / scale
    assert rel <= TOL and rel_max <= TOL, f"{name}: rel err {rel:.2e}, rel max err {rel_max:.2e}"


def check_against_float64(coef, log_z, L, generator):
    """Forward and both gradients of the Triton op vs the float64 direct formula and reference."""
    from ssmsignal.kernels.triton.vandermonde import vandermonde

    coef = coef.clone().requires_grad_()
    log_z = log_z.clone().requires_grad_()
    K = vandermonde(coef, log_z, L)  # (H, L)
    assert K.dtype == torch.float32
    grad_k = torch.randn(K.shape, generator=generator).to(K.device)  # (H, L)
    gc, gz = torch.autograd.grad(K, (coef, log_z), grad_k)

    c64 = coef.detach().to(torch.complex128).requires_grad_()
    z64 = log_z.detach().to(torch.complex128).requires_grad_()
    want = direct_vandermonde(c64, z64, L)  # (H, L) float64
    want_gc, want_gz = torch.autograd.grad(want, (c64, z64), grad_k.double())
    assert_close("K vs direct", K.detach(), want.detach())
    assert_close("K vs reference", K.detach(),
                 reference.vandermonde(c64.detach(), z64.detach(), L))
    assert_close("dcoef", gc, want_gc)
    assert_close("dlog_z", gz, want_gz)


def _device():
    return "cuda" if torch.cuda.is_available() and not INTERPRET else "cpu"


# ---- interpreter subset (CPU; run in a subprocess by test_interpreter_subset) ---------------

@pytest.mark.interpret
@needs_interpreter
@pytest.mark.parametrize("H,N,L", SHAPES)
def test_interpret_random(H, N, L, monkeypatch):
    poison(monkeypatch)
    gen = torch.Generator().manual_seed(1000 * H + 10 * N + L)
    check_against_float64(*random_inputs(H, N, "cpu", gen), L, gen)


@pytest.mark.interpret
@needs_interpreter
def test_interpret_long_phase(monkeypatch):
    """L = 65536 with S4D-Lin phases up to ~1e5 rad: the fixed-point phase keeps fp32 accuracy."""
    poison(monkeypatch)
    gen = torch.Generator().manual_seed(7)
    check_against_float64(*s4d_inputs(2, 64, "cpu", gen), 65536, gen)


@pytest.mark.interpret
@needs_interpreter
def test_interpret_dispatch():
    """The public op with backend='triton' reaches this kernel and agrees with backend='torch'."""
    from ssmsignal.kernels import vandermonde

    gen = torch.Generator().manual_seed(3)
    coef, log_z = random_inputs(4, 9, "cpu", gen)
    got = vandermonde(coef, log_z, 100, backend="triton")
    want = reference.vandermonde(coef.to(torch.complex128), log_z.to(torch.complex128), 100)
    assert_close("dispatched", got, want)


def run_interpreter_subset(path):
    """Run the ``interpret``-marked tests of ``path`` in a fresh process with TRITON_INTERPRET=1."""
    env = dict(os.environ, TRITON_INTERPRET="1")
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-m", "interpret", path]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert " passed" in proc.stdout and "skipped" not in proc.stdout, proc.stdout[-2000:]


def test_interpreter_subset():
    """CI entry: the ``interpret`` cases above, in a fresh process with TRITON_INTERPRET=1."""
    run_interpreter_subset(__file__)


# ---- argument errors (no launch) --------------------------------------------------------------

def test_rejects_bad_arguments():
    from ssmsignal.kernels.triton.vandermonde import vandermonde

    c = torch.zeros(2, 3, dtype=torch.complex64)
    with pytest.raises(TypeError, match="complex"):
        vandermonde(c.real, c, 5)
    with pytest.raises(ValueError, match=r"\(H, N\)"):
        vandermonde(c, c[:, :2], 5)
    with pytest.raises(ValueError, match="L must be"):
        vandermonde(c, c, -1)


@pytest.mark.parametrize("H,N,L", [(3, 0, 5), (0, 4, 5), (3, 4, 0)])
def test_empty_sizes(H, N, L):
    """Empty H, N or L: correct shapes and zeros, forward and backward, without a launch."""
    from ssmsignal.kernels.triton.vandermonde import vandermonde

    coef = torch.randn(H, N, dtype=torch.complex64, requires_grad=True)
    log_z = torch.randn(H, N, dtype=torch.complex64, requires_grad=True)
    K = vandermonde(coef, log_z, L)
    assert K.shape == (H, L) and bool((K == 0).all())
    K.sum().backward()
    assert coef.grad.shape == (H, N) and bool((coef.grad == 0).all())
    assert log_z.grad.shape == (H, N) and bool((log_z.grad == 0).all())


# ---- full set on the GPU -----------------------------------------------------------------------

@pytest.mark.cuda
@needs_cuda
@pytest.mark.parametrize("H,N,L", SHAPES + [(37, 64, 16384), (5, 100, 65536)])
@pytest.mark.parametrize("kind", ["random", "s4d"])
def test_cuda_against_float64(H, N, L, kind, monkeypatch):
    poison(monkeypatch)
    gen = torch.Generator().manual_seed(17 * H + N + L + (kind == "s4d"))
    make = s4d_inputs if kind == "s4d" else random_inputs
    check_against_float64(*make(H, N, "cuda", gen), L, gen)


@pytest.mark.cuda
@needs_cuda
@pytest.mark.parametrize("H,N,L", [(2, 20, 4097), (37, 64, 16384), (5, 100, 65536)])
@pytest.mark.parametrize("precision", ["ieee", "tf32x3"])
def test_cuda_product_precisions(H, N, L, precision, monkeypatch):
    """Both product precisions, in both passes, keep float32-level accuracy on full chunks."""
    from ssmsignal.kernels.triton import vandermonde as module

    poison(monkeypatch)
    monkeypatch.setattr(module, "DOT_PRECISION", precision)
    monkeypatch.setattr(module, "BWD_PRECISION", precision)
    gen = torch.Generator().manual_seed(H + N + L)
    check_against_float64(*s4d_inputs(H, N, "cuda", gen), L, gen)


@pytest.mark.cuda
@needs_cuda
def test_cuda_complex128_and_dispatch():
    """complex128 inputs give float64 output (float32 accuracy); auto picks Triton on CUDA."""
    from ssmsignal.kernels import s4d_kernel, vandermonde

    gen = torch.Generator().manual_seed(11)
    coef, log_z = random_inputs(6, 24, "cuda", gen)
    K = vandermonde(coef.to(torch.complex128), log_z.to(torch.complex128), 3000, backend="triton")
    assert K.dtype == torch.float64
    assert_close("complex128", K, direct_vandermonde(coef, log_z, 3000))
    A = torch.complex(-0.5 * torch.ones(6, 24), math.pi * torch.arange(24.0).expand(6, 24)).cuda()
    B = torch.randn(6, 24, generator=gen, dtype=torch.complex64).cuda()
    C = torch.randn(6, 24, generator=gen, dtype=torch.complex64).cuda()
    dt = torch.full((6,), 0.01, device="cuda")
    got = s4d_kernel(A, B, C, dt, 5000)  # backend auto -> Triton on CUDA
    want = s4d_kernel(*(t.to(torch.complex128) for t in (A, B, C)), dt.double(), 5000,
                      backend="torch")
    assert_close("s4d_kernel auto", got, want)
