"""S4D: a diagonal complex state-space layer (Gu, Gupta, Goel, Ré 2022).

Each of the H channels runs its own SSM ``x' = A x + B u, y = 2 Re(C x) + D u`` with a
diagonal complex ``A`` of ``N/2`` modes (their conjugates are implicit, so the real state size
is N). ``A = -exp(log_A_real) + i A_imag`` keeps ``Re A < 0`` (stable for any parameter value).
"""
from __future__ import annotations

import torch
from torch import nn

from ssmsignal.kernels import s4d_conv, s4d_kernel, uses_triton
from ssmsignal.kernels.reference import s4d_coefficients

from ._base import ConvSSM
from .hippo import s4d_init

__all__ = ["S4D", "discretize_diagonal"]

#: Convolution mode on the Triton path (CUDA): run the fused recurrence kernel ``s4d_conv``
#: instead of ``s4d_kernel`` + ``fft_conv``. Benchmarks set it to False to time the old path.
FUSED_CONV = True


def discretize_diagonal(A: torch.Tensor, B: torch.Tensor, dt: torch.Tensor,
                        method: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Discrete ``(Ā, B̄)`` of a diagonal SSM, the same formulas as ``s4d_kernel``.

    Parameters
    ----------
    A, B : torch.Tensor
        ``(H, N)`` complex.
    dt : torch.Tensor
        ``(H,)`` or ``(batch, H)`` positive step sizes (already times dt_scale).
    method : {"zoh", "bilinear"}
        Zero-order hold ``Ā = exp(ΔA), B̄ = (Ā - 1)/A B`` or bilinear
        ``Ā = (1 + ΔA/2)/(1 - ΔA/2), B̄ = Δ B/(1 - ΔA/2)``.

    Returns
    -------
    tuple of torch.Tensor
        ``Ā, B̄`` of shape ``(H, N)`` or ``(batch, H, N)``.
    """
    dtA = dt[..., None] * A  # (..., H, N)
    if method == "zoh":
        dA = torch.exp(dtA)  # (..., H, N)
        return dA, (dA - 1.0) / A * B
    if method == "bilinear":
        den = 1.0 - 0.5 * dtA  # (..., H, N)
        return (1.0 + 0.5 * dtA) / den, dt[..., None] * B / den
    raise ValueError(f"discretization must be 'zoh' or 'bilinear', got {method!r}")


class S4D(ConvSSM):
    """Diagonal state-space layer with convolution and recurrent modes.

    Convolution mode builds the length-L kernel with :func:`ssmsignal.kernels.s4d_kernel`
    (Vandermonde, never an ``(H, N, L)`` tensor) and applies it with
    :func:`ssmsignal.kernels.fft_conv` (O(L log L)); where the kernel dispatch picks Triton
    (CUDA) it runs :func:`ssmsignal.kernels.s4d_conv` instead, the same convolution computed as
    the diagonal recurrence directly on the ``(batch, length, d_model)`` input. Step mode runs
    the same discretisation as a recurrence. Both use Δ · dt_scale, where Δ = exp(log_dt) is
    learned in training sample periods and ``dt_scale = fs_train / fs_input``. The SSM output
    goes through D skip, GELU, dropout and a linear map + GLU ("gated output", S4 papers).

    Parameters
    ----------
    d_model : int
        Channels H.
    d_state : int
        Real state size N (even); ``N/2`` complex modes per channel.
    dt_min, dt_max : float
        Log-uniform Δ initialisation range, in training sample periods.
    init : {"legs", "inv", "lin"}
        Initialisation of A (and B), see :func:`ssmsignal.layers.hippo.s4d_init`.
    discretization : {"zoh", "bilinear"}
        Discretisation used in both modes.
    dropout : float
        Dropout after the activation.
    lr : float, optional
        Learning rate for the SSM parameters ``log_dt, log_A_real, A_imag, B`` (all marked
        ``param._ssm_param = True`` and get no weight decay; see ``ssm_parameter_groups``).

    Examples
    --------
    >>> layer = S4D(16, d_state=8)
    >>> x = torch.randn(2, 100, 16)
    >>> layer(x).shape, layer(x, dt_scale=0.5).shape   # second: input sampled twice as fast
    (torch.Size([2, 100, 16]), torch.Size([2, 100, 16]))
    """

    def __init__(self, d_model: int, d_state: int = 64, dt_min: float = 1e-3,
                 dt_max: float = 1e-1, init: str = "legs", discretization: str = "zoh",
                 dropout: float = 0.0, lr: float | None = None) -> None:
        super().__init__(d_model, d_state, dt_min, dt_max, dropout, lr)
        if discretization not in ("zoh", "bilinear"):
            raise ValueError(f"discretization must be 'zoh' or 'bilinear', got {discretization!r}")
        self.discretization = discretization
        A, B = s4d_init(d_state, init)  # (N/2,), (N/2,) complex128
        n2 = d_state // 2
        self.log_A_real = self._ssm_param(torch.log(-A.real).expand(d_model, n2))  # (H, N/2)
        self.A_imag = self._ssm_param(A.imag.expand(d_model, n2))  # (H, N/2)
        self.B = self._ssm_param(B.expand(d_model, n2))  # (H, N/2, 2)
        # C ~ complex standard normal (variance 1/2 per part); C is an ordinary parameter.
        C = torch.randn(d_model, n2, dtype=torch.complex64)  # (H, N/2)
        self.C = nn.Parameter(torch.view_as_real(C).clone())  # (H, N/2, 2)

    def _abc(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        A = torch.complex(-torch.exp(self.log_A_real), self.A_imag)  # (H, N/2)
        return A, torch.view_as_complex(self.B), torch.view_as_complex(self.C)  # (H, N/2) x3

    def _kernel(self, dt: torch.Tensor, L: int) -> torch.Tensor:
        reps = dt.shape[0] // self.d_model
        A, B, C = (t.repeat(reps, 1) for t in self._abc())  # (M, N/2) each
        return s4d_kernel(A, B, C, dt, L, discretization=self.discretization)  # (M, L)

    def _convolve(self, x, scale):
        fits = x.shape[1] * x.shape[2] < 2 ** 30  # the fused kernel indexes (L, H) in int32
        if not (FUSED_CONV and fits and uses_triton("s4d_conv", x, self.log_dt)):
            return super()._convolve(x, scale)  # (b, L, H): kernel + FFT
        A, B, C = self._abc()  # (H, N/2) each
        dt = self._dt(scale)  # (H,) or (b, H)
        if dt.dim() == 1:
            coef, log_z = s4d_coefficients(A, B, C, dt, self.discretization)  # (H, N/2) each
        else:  # one set per sequence
            b, H = dt.shape
            coef, log_z = (t.reshape(b, H, -1) for t in s4d_coefficients(
                A.repeat(b, 1), B.repeat(b, 1), C.repeat(b, 1), dt.reshape(-1),
                self.discretization))  # (b, H, N/2) each
        return s4d_conv(x, log_z, coef, self.D)  # (b, L, H)

    def _discretize_step(self, dt):
        A, B, C = self._abc()  # (H, N/2) each
        dA, dB = discretize_diagonal(A, B, dt, self.discretization)  # (H|b,H, N/2) each
        return dA, dB, 2.0 * C  # 2 Re(C x) sums the conjugate modes too

    def _step_ssm(self, x_t, state, coefficients):
        dA, dB, C2 = coefficients  # (H|b,H, N/2), (H|b,H, N/2), (H, N/2)
        state = torch.addcmul(dA * state, dB, x_t[..., None])  # (b, H, N/2)
        return torch.einsum("hn,bhn->bh", C2, state).real, state  # (b, H)
