"""S4: the diagonal-plus-low-rank state-space layer (Gu, Goel, Ré 2022, Sec. 3, Alg. 1).

Per channel, in the eigenbasis of the HiPPO-LegS normal part, ``A = diag(Λ) - P P*`` (rank 1,
Q = P as in the NPLR form of LegS, which keeps ``A + A* = 2 Re Λ - 2 P P*`` negative
definite). Only ``N/2`` entries of Λ, P, B, C are stored; the full complex basis is their
concatenation with the conjugates, so the system is real.

Convolution mode (bilinear discretisation with Δ · dt_scale, kernel length L = input length):

1. ``Ā = (I - Δ/2 A)^-1 (I + Δ/2 A)`` densely (``N x N`` per channel) and
   ``C̃ = C (I - Ā^L)`` by repeated squaring; ``C`` stays the true output matrix, so changing
   L or dt_scale needs nothing but a new forward call.
2. The truncated generating function ``K̂(z) = Σ_{l<L} K[l] z^l = C̃ (I - Ā z)^-1 B̄`` at the L
   roots of unity ``z = exp(-2πik/L)``, which equals ``2/(1+z) C̃ (g(z) - A)^-1 B`` with
   ``g = (2/Δ)(1-z)/(1+z)``. Woodbury reduces ``(g - Λ + P P*)^-1`` to four Cauchy sums
   ``Σ_n v_n / (g - Λ_n)`` (:func:`ssmsignal.kernels.cauchy`). At ``z = -1`` the closed form
   ``K̂(-1) = (Δ/2) C̃ B`` replaces the 0·∞ expression.
3. ``K = irfft(K̂)``, then :func:`ssmsignal.kernels.fft_conv`.

Step mode runs the same bilinear recurrence ``x ← (I - Δ/2 A)^-1 ((I + Δ/2 A) x + Δ B u)``,
``y = Re(C x) + D u`` in O(N) per step and channel, never forming Ā: ``(I + Δ/2 A) x`` is a
diagonal product and a rank-1 update, and ``(I - Δ/2 A)^-1`` is a diagonal solve plus a
rank-1 Woodbury correction (S4 paper, Sec. 3.3). The state is conjugate-symmetric (the system
is real), so only its ``N/2`` stored modes are kept; sums over the full basis are ``2 Re`` of
sums over them.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from ssmsignal.kernels import cauchy

from ._base import ConvSSM
from .hippo import nplr_legs

__all__ = ["S4"]


def _conj_full(t: torch.Tensor) -> torch.Tensor:
    """``(..., N/2)`` -> ``(..., N)``: append the conjugates."""
    return torch.cat([t, t.conj()], dim=-1)


class S4(ConvSSM):
    """Structured state-space layer (DPLR, HiPPO-LegS initialisation), conv and step modes.

    Parameters
    ----------
    d_model : int
        Channels H.
    d_state : int
        Real state size N (even, keep it <= 64: convolution mode forms dense ``N x N``
        matrices per channel).
    dt_min, dt_max : float
        Log-uniform Δ initialisation range, in training sample periods.
    dropout : float
        Dropout after the activation.
    lr : float, optional
        Learning rate for the SSM parameters ``log_dt, log_A_real, A_imag, P, B`` (marked
        ``param._ssm_param = True``, no weight decay; see ``ssm_parameter_groups``).

    Notes
    -----
    Step mode costs O(N) per channel (Woodbury, see the module docstring); its coefficients
    are cached while autograd is off (generation), see :meth:`ConvSSM.step`.

    Examples
    --------
    >>> layer = S4(8, d_state=16)
    >>> layer(torch.randn(3, 50, 8), dt_scale=2.0).shape   # input sampled at half the rate
    torch.Size([3, 50, 8])
    """

    def __init__(self, d_model: int, d_state: int = 64, dt_min: float = 1e-3,
                 dt_max: float = 1e-1, dropout: float = 0.0, lr: float | None = None) -> None:
        super().__init__(d_model, d_state, dt_min, dt_max, dropout, lr)
        nplr = nplr_legs(d_state)
        n2 = d_state // 2
        each = lambda t: t.expand(d_model, n2)  # noqa: E731 (same init for every channel)
        self.log_A_real = self._ssm_param(each(torch.log(-nplr.Lambda.real)))  # (H, N/2)
        self.A_imag = self._ssm_param(each(nplr.Lambda.imag))  # (H, N/2)
        self.P = self._ssm_param(each(nplr.P))  # (H, N/2, 2)
        self.B = self._ssm_param(each(nplr.B))  # (H, N/2, 2)
        C = torch.randn(d_model, n2, dtype=torch.complex64)  # (H, N/2), output matrix
        self.C = nn.Parameter(torch.view_as_real(C).clone())  # (H, N/2, 2)

    def _half(self):
        """Stored ``Λ, P, B, C``, each ``(H, N/2)`` complex (one mode of each conjugate pair)."""
        Lam = torch.complex(-torch.exp(self.log_A_real), self.A_imag)  # (H, N/2)
        return (Lam, torch.view_as_complex(self.P), torch.view_as_complex(self.B),
                torch.view_as_complex(self.C))

    def _kernel(self, dt: torch.Tensor, L: int) -> torch.Tensor:
        reps = dt.shape[0] // self.d_model
        Lam, P, B, C = (_conj_full(t).repeat(reps, 1) for t in self._half())  # (M, N) each
        # dense bilinear Ā = (I - Δ/2 A)^-1 (I + Δ/2 A), A = diag(Λ) - P P*
        A = torch.diag_embed(Lam) - P[:, :, None] * P.conj()[:, None, :]  # (M, N, N)
        eye = torch.eye(Lam.shape[-1], dtype=A.dtype, device=A.device)  # (N, N)
        half = (0.5 * dt)[:, None, None]  # (M, 1, 1)
        dA = torch.linalg.solve(eye - half * A, eye + half * A)  # (M, N, N)
        dA_L = torch.linalg.matrix_power(dA, L)  # (M, N, N), repeated squaring
        Ct = C - (C[:, None, :] @ dA_L)[:, 0, :]  # (M, N): C (I - Ā^L)
        # Roots of unity z_k = exp(-2πik/L), k = 0..L//2 (rfft frequencies), in float64:
        # (1 - z)/(1 + z) = i tan(πk/L) and 2/(1 + z) = exp(iπk/L) / cos(πk/L).
        theta = math.pi * torch.arange(L // 2 + 1, dtype=torch.float64, device=dt.device) / L
        nyquist = L % 2 == 0 and L > 1  # z = -1 is among the roots
        tan, cos = torch.tan(theta), torch.cos(theta)  # (K,), (K,)
        if nyquist:  # placeholders at z = -1, replaced by the closed form below
            tan[-1], cos[-1] = 0.0, 1.0
        omega = torch.complex(torch.zeros_like(tan), tan).to(Lam.dtype)  # (K,)
        pre = torch.polar(1.0 / cos, theta).to(Lam.dtype)  # (K,) 2/(1+z)
        # g(z) - Λ = (2/Δ)(ω - Δ/2 Λ): Cauchy sums over w = Δ/2 Λ with weights Δ/2 v.
        h = (0.5 * dt)[:, None]  # (M, 1)
        Pc = P.conj()
        v = torch.stack([Ct * B, Ct * P, Pc * B, Pc * P]) * h  # (4, M, N)
        w = (h * Lam).expand(4, -1, -1).contiguous()  # (4, M, N)
        r = cauchy(v, omega, w)  # (4, M, K)
        k_hat = pre * (r[0] - r[1] * r[2] / (1.0 + r[3]))  # (M, K)
        if nyquist:
            k_nyq = (h[:, 0] * (Ct * B).sum(-1)).to(k_hat.dtype)  # (M,): K̂(-1) = Δ/2 C̃ B
            k_hat = torch.cat([k_hat[:, :-1], k_nyq[:, None]], dim=-1)  # (M, K)
        return torch.fft.irfft(k_hat, n=L)  # (M, L) real

    def _discretize_step(self, dt):
        Lam, P, B, C = self._half()  # (H, N/2) each
        h = (0.5 * dt)[..., None]  # (H|b,H, 1)
        d = 1.0 / (1.0 - h * Lam)  # (..., N/2): (I - Δ/2 Λ)^-1, the diagonal part
        # Woodbury: (I - Δ/2 A)^-1 = D - c (D P)(P* D) with c = (Δ/2) / (1 + (Δ/2) P* D P);
        # sums over the full basis are 2 Re of sums over the stored modes (factors 2 folded in).
        Pc = P.conj()  # (H, N/2)
        c = h[..., 0] / (1.0 + 2.0 * h[..., 0] * (Pc * d * P).sum(-1).real)  # (H|b,H)
        a = d * (1.0 + h * Lam)  # (..., N/2): D (I + Δ/2 Λ)
        g = 2.0 * d * h * P  # (..., N/2): D (Δ/2) P, times 2 for the full-basis sum
        e = d * dt[..., None] * B  # (..., N/2): D Δ B
        qc = 2.0 * c[..., None] * d * P  # (..., N/2)
        return Pc, a, g, e, qc, 2.0 * C

    def _step_ssm(self, x_t, state, coefficients):
        # r = D ((I + Δ/2 A) x + Δ B u) with A x = Λ x - P (P* x); x_new = r - c D P (P* r)
        Pc, a, g, e, qc, C2 = coefficients  # (H, N/2), (H|b,H, N/2) x4, (H, N/2)
        s = torch.einsum("hn,bhn->bh", Pc, state).real  # (b, H): Re sum conj(P) x
        r = torch.addcmul(a * state, g, s[..., None], value=-1.0)  # (b, H, N/2)
        r = torch.addcmul(r, e, x_t[..., None])  # (b, H, N/2)
        t = torch.einsum("hn,bhn->bh", Pc, r).real  # (b, H)
        state = torch.addcmul(r, qc, t[..., None], value=-1.0)  # (b, H, N/2)
        return torch.einsum("hn,bhn->bh", C2, state).real, state  # (b, H): Re(C x) full basis
