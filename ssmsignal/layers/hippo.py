"""HiPPO-LegS matrices, their normal-plus-low-rank form and the S4D initialisations.

References
----------
- Gu, Dao, Ermon, Rudra, Ré (2020), "HiPPO: Recurrent Memory with Optimal Polynomial
  Projections" -- the LegS matrices.
- Gu, Goel, Ré (2022), "Efficiently Modeling Long Sequences with Structured State Spaces" (S4)
  -- the normal-plus-low-rank (NPLR) decomposition A = V (Λ - P Q*) V*.
- Gu, Gupta, Goel, Ré (2022), "On the Parameterization and Initialization of Diagonal State
  Space Models" (S4D) -- the S4D-LegS, S4D-Inv and S4D-Lin initialisations.

All functions here are plain tensor maths (no modules); the layers call them once at
construction time. Work in float64 and cast afterwards: the eigendecomposition loses digits in
float32.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

__all__ = [
    "NPLR",
    "hippo_legs",
    "log_uniform_dt",
    "nplr_legs",
    "s4d_init",
]


def _check_state_size(n: int, *, even: bool = False) -> None:
    if not isinstance(n, int) or n < 1:
        raise ValueError(f"state size must be a positive int, got {n!r}")
    if even and n % 2:
        raise ValueError(f"state size must be even (complex modes come in conjugate pairs), got {n}")


def hippo_legs(n: int, dtype: torch.dtype = torch.float64) -> tuple[torch.Tensor, torch.Tensor]:
    """HiPPO-LegS state matrix and input vector (Gu et al. 2020, Theorem 2).

    ``A[i, k] = -sqrt(2i+1) sqrt(2k+1)`` below the diagonal, ``-(i+1)`` on it, 0 above;
    ``B[i] = sqrt(2i+1)``. The system ``x' = A x + B u`` is the time-invariant LegS memory used
    by S4.

    Parameters
    ----------
    n : int
        State size N.
    dtype : torch.dtype
        Real dtype of the result.

    Returns
    -------
    A : torch.Tensor
        ``(n, n)`` state matrix.
    B : torch.Tensor
        ``(n,)`` input vector.
    """
    _check_state_size(n)
    r = torch.sqrt(2.0 * torch.arange(n, dtype=torch.float64) + 1.0)  # (n,)
    A = -torch.tril(r[:, None] * r[None, :], diagonal=-1)  # (n, n) strictly lower part
    A = A - torch.diag(torch.arange(1, n + 1, dtype=torch.float64))  # diagonal -(i+1)
    return A.to(dtype), r.to(dtype)


@dataclass(frozen=True)
class NPLR:
    """Normal-plus-low-rank form ``A = V (diag(Λ) - P P*) V*`` of HiPPO-LegS.

    Only one eigenvalue of every conjugate pair is stored (``N/2`` modes); the full basis is
    ``V_full = [V, conj(V)]``, ``Λ_full = [Λ, conj(Λ)]``, ``P_full = [P, conj(P)]``, and the
    same for ``B``. ``P`` and ``B`` are already projected into the eigenbasis (``V* P``, ``V* B``).

    Attributes
    ----------
    Lambda : torch.Tensor
        ``(N/2,)`` complex eigenvalues of the normal part, ``Re = -1/2``, ``Im > 0``.
    P : torch.Tensor
        ``(N/2,)`` complex low-rank factor ``V* P`` (rank 1; here Q = P).
    B : torch.Tensor
        ``(N/2,)`` complex input vector ``V* B``.
    V : torch.Tensor
        ``(N, N/2)`` complex eigenvectors (orthonormal columns).
    """

    Lambda: torch.Tensor
    P: torch.Tensor
    B: torch.Tensor
    V: torch.Tensor

    def full(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Conjugate-completed ``(Λ, P, B, V)`` with ``N`` entries / columns."""
        cat = lambda t: torch.cat([t, t.conj()], dim=-1)  # noqa: E731 (tiny local helper)
        return cat(self.Lambda), cat(self.P), cat(self.B), cat(self.V)


def nplr_legs(n: int) -> NPLR:
    """Normal-plus-low-rank decomposition of HiPPO-LegS (S4 paper, Sec. 3.3).

    With ``P[i] = sqrt(i + 1/2)``, ``S = A + P P^T`` equals ``-I/2`` plus a real skew-symmetric
    matrix, hence normal. Its eigenvectors come from the Hermitian matrix ``-i (S + I/2)``
    (computed numerically in float64); the eigenvalues are ``-1/2 ± i ω``. One of each
    conjugate pair (``ω > 0``) is kept.

    Parameters
    ----------
    n : int
        Even state size N.

    Returns
    -------
    NPLR
        Eigenvalues, projected low-rank factor and input vector, eigenvectors (complex128).
    """
    _check_state_size(n, even=True)
    A, B = hippo_legs(n)  # (n, n), (n,)
    P = torch.sqrt(torch.arange(n, dtype=torch.float64) + 0.5)  # (n,)
    S = A + P[:, None] * P[None, :]  # (n, n) normal part
    skew = S + 0.5 * torch.eye(n, dtype=torch.float64)  # (n, n), skew-symmetric
    omega, U = torch.linalg.eigh(-1j * skew.to(torch.complex128))  # (n,), (n, n) ascending
    V = U[:, n // 2:]  # (n, n/2) eigenvectors with omega > 0
    Lambda = torch.complex(torch.full((n // 2,), -0.5, dtype=torch.float64), omega[n // 2:])
    Vh = V.conj().T  # (n/2, n)
    return NPLR(Lambda=Lambda, P=Vh @ P.to(torch.complex128), B=Vh @ B.to(torch.complex128), V=V)


def s4d_init(n: int, init: str = "legs") -> tuple[torch.Tensor, torch.Tensor]:
    """Diagonal state matrix and input vector for S4D (Gu et al. 2022, S4D paper, Sec. 4).

    Parameters
    ----------
    n : int
        Even (real) state size N; ``N/2`` complex modes are returned.
    init : {"legs", "inv", "lin"}
        ``"legs"``: the eigenvalues of the NPLR normal part of HiPPO-LegS (S4D-LegS) with the
        projected HiPPO input vector ``V* B``.
        ``"inv"``: ``A_n = -1/2 + i (N/π) (N/(2n+1) - 1)`` (S4D-Inv), ``B = 1``.
        ``"lin"``: ``A_n = -1/2 + i π n`` (S4D-Lin), ``B = 1``.

    Returns
    -------
    A : torch.Tensor
        ``(N/2,)`` complex128 eigenvalues with ``Re A < 0``.
    B : torch.Tensor
        ``(N/2,)`` complex128 input vector.
    """
    _check_state_size(n, even=True)
    idx = torch.arange(n // 2, dtype=torch.float64)  # (N/2,)
    half = torch.full_like(idx, -0.5)
    ones = torch.ones(n // 2, dtype=torch.complex128)
    if init == "legs":
        nplr = nplr_legs(n)
        return nplr.Lambda, nplr.B
    if init == "inv":
        return torch.complex(half, n / math.pi * (n / (2.0 * idx + 1.0) - 1.0)), ones
    if init == "lin":
        return torch.complex(half, math.pi * idx), ones
    raise ValueError(f"init must be 'legs', 'inv' or 'lin', got {init!r}")


def log_uniform_dt(size: int, dt_min: float, dt_max: float,
                   generator: torch.Generator | None = None) -> torch.Tensor:
    """Log Δ drawn so that Δ is log-uniform in ``[dt_min, dt_max]`` (S4, S4D, Mamba).

    Δ is in units of the training sample period (see :mod:`ssmsignal.layers`).

    Parameters
    ----------
    size : int
        Number of values (one per channel).
    dt_min, dt_max : float
        Positive bounds with ``dt_min <= dt_max``.
    generator : torch.Generator, optional
        Random source.

    Returns
    -------
    torch.Tensor
        ``(size,)`` float64 values of ``log Δ``.
    """
    if not (0.0 < dt_min <= dt_max) or not math.isfinite(dt_max):
        raise ValueError(f"need 0 < dt_min <= dt_max < inf, got dt_min={dt_min}, dt_max={dt_max}")
    u = torch.rand(size, dtype=torch.float64, generator=generator)  # (size,)
    return math.log(dt_min) + u * (math.log(dt_max) - math.log(dt_min))
