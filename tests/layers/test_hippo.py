"""HiPPO-LegS matrices, the NPLR decomposition and the S4D initialisations."""
import math

import pytest
import torch

from ssmsignal.layers.hippo import hippo_legs, log_uniform_dt, nplr_legs, s4d_init


def test_legs_matrix_matches_closed_form():
    n = 7
    A, B = hippo_legs(n)
    for i in range(n):
        assert B[i] == pytest.approx(math.sqrt(2 * i + 1))
        for k in range(n):
            if i > k:
                expected = -math.sqrt(2 * i + 1) * math.sqrt(2 * k + 1)
            elif i == k:
                expected = -(i + 1.0)
            else:
                expected = 0.0
            assert A[i, k].item() == pytest.approx(expected, abs=1e-12), (i, k)


@pytest.mark.parametrize("n", [2, 8, 64])
def test_nplr_reconstructs_legs(n):
    A, B = hippo_legs(n)
    nplr = nplr_legs(n)
    Lam, P, Bp, V = nplr.full()  # (n,), (n,), (n,), (n, n)
    assert torch.allclose(V.conj().T @ V, torch.eye(n, dtype=V.dtype), atol=1e-10)
    A_rec = V @ (torch.diag(Lam) - P[:, None] * P.conj()[None, :]) @ V.conj().T  # (n, n)
    assert (A_rec.imag.abs().max() < 1e-9) and torch.allclose(A_rec.real, A, atol=1e-5)
    assert torch.allclose((V @ Bp).real, B, atol=1e-8)
    assert torch.allclose(nplr.Lambda.real, torch.full((n // 2,), -0.5, dtype=torch.float64))
    assert bool((nplr.Lambda.imag > 0).all())
    # eigenvalues of the normal part are those of A + P P^T
    S = A + torch.outer(torch.sqrt(torch.arange(n) + 0.5), torch.sqrt(torch.arange(n) + 0.5)).double()
    eig = torch.linalg.eigvals(S)
    assert torch.allclose(torch.sort(eig.imag).values, torch.sort(Lam.imag).values, atol=1e-6)


def test_s4d_inv_and_lin_formulas():
    N = 16
    A, B = s4d_init(N, "inv")
    for n in range(N // 2):
        assert A[n].real.item() == pytest.approx(-0.5)
        assert A[n].imag.item() == pytest.approx(N / math.pi * (N / (2 * n + 1) - 1))
    A, B = s4d_init(N, "lin")
    assert torch.allclose(A, torch.complex(torch.full((8,), -0.5, dtype=torch.float64),
                                           math.pi * torch.arange(8, dtype=torch.float64)))
    assert torch.allclose(B, torch.ones(8, dtype=torch.complex128))
    A, B = s4d_init(N, "legs")
    assert torch.allclose(A, nplr_legs(N).Lambda)


def test_log_uniform_dt_range_and_spread():
    torch.manual_seed(0)
    log_dt = log_uniform_dt(4000, 1e-3, 1e-1)
    assert log_dt.min() >= math.log(1e-3) and log_dt.max() <= math.log(1e-1)
    # uniform in log space: mean in the middle, quartiles near 1/4 and 3/4
    mid = 0.5 * (math.log(1e-3) + math.log(1e-1))
    assert abs(log_dt.mean().item() - mid) < 0.05
    q = torch.quantile(log_dt, torch.tensor([0.25, 0.75], dtype=torch.float64))
    assert abs(q[0].item() - (mid - 0.25 * math.log(100))) < 0.1


@pytest.mark.parametrize("call", [lambda: s4d_init(7, "legs"), lambda: s4d_init(8, "foo"),
                                  lambda: nplr_legs(3), lambda: log_uniform_dt(3, 0.1, 0.01),
                                  lambda: log_uniform_dt(3, 0.0, 0.01), lambda: hippo_legs(0)])
def test_bad_arguments_raise(call):
    with pytest.raises(ValueError):
        call()
