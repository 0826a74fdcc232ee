"""Mamba: the selective state-space block (Gu & Dao 2023), continuous-time aware.

Data flow for ``x`` of shape ``(b, L, d_model)``, ``E = expand * d_model``::

    in_proj -> (x, z)            each (b, E, L)
    x -> short causal depthwise conv (rate-aware, see ``_conv``) -> SiLU
    x_proj(x) -> (dt_low (R), B (N), C (N)) per step
    Δ = softplus(dt_proj(dt_low) + bias) · dt_scale
    y = selective_scan(x, Δ, A = -exp(A_log), B, C, D, z)    (SiLU(z) gate inside)
    out_proj(y)                  (b, L, d_model)

Continuous time: Δ is in training sample periods and is multiplied by ``dt_scale =
fs_train / fs_input`` after the softplus (in forward and in step). The short conv is read as a
continuous-time filter sampled on the training grid and is resampled to the input rate (taps at
``τ = j · dt_scale`` training periods, trapezoid weights, same DC gain; ``ceil((d_conv - 1) /
dt_scale) + 1`` taps), so both time-dependent parts follow the rate. Everything else is
position-wise.
"""
from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from ssmsignal.kernels import selective_scan, selective_state_update

from ._common import check_sequence, check_step, dt_scale_tensor, mark_ssm_parameter
from ._conv import causal_depthwise_conv, conv_length, resampled_taps
from .hippo import log_uniform_dt

__all__ = ["Mamba", "MambaState"]


class MambaState(NamedTuple):
    """Recurrent state of :class:`Mamba`.

    Attributes
    ----------
    conv : torch.Tensor
        ``(batch, E, K)`` the last K conv inputs, oldest first (K >= taps at the used rate).
    ssm : torch.Tensor
        ``(batch, E, N)`` selective-SSM state (float32, or float64 for a float64 layer).
    """

    conv: torch.Tensor
    ssm: torch.Tensor


class Mamba(nn.Module):
    """Selective SSM block with ``forward(x, dt_scale)``, ``initial_state`` and ``step``.

    Parameters
    ----------
    d_model : int
        Input and output channels.
    d_state : int
        State size N per inner channel.
    d_conv : int
        Taps of the short causal conv on the training grid.
    expand : int
        Inner width ``E = expand * d_model``.
    dt_rank : int or "auto"
        Rank R of the Δ projection; "auto" is ``ceil(d_model / 16)``.
    dt_min, dt_max : float
        ``softplus(dt_proj.bias)`` is log-uniform in this range (training sample periods).
    dt_init_floor : float
        Lower clamp of the initial Δ.
    bias : bool
        Biases of ``in_proj`` and ``out_proj``.
    conv_bias : bool
        Bias of the short conv.
    lr : float, optional
        Learning rate hint for ``A_log``, ``D`` and ``dt_proj.bias``; these are always marked
        ``param._ssm_param = True`` (no weight decay; see ``ssm_parameter_groups``).

    Examples
    --------
    >>> layer = Mamba(16, d_state=8)
    >>> y = layer(torch.randn(2, 40, 16), dt_scale=0.5)   # input at twice the training rate
    >>> y.shape
    torch.Size([2, 40, 16])
    """

    def __init__(self, d_model: int, d_state: int = 16, d_conv: int = 4, expand: int = 2,
                 dt_rank: int | str = "auto", dt_min: float = 1e-3, dt_max: float = 1e-1,
                 dt_init_floor: float = 1e-4, bias: bool = False, conv_bias: bool = True,
                 lr: float | None = None) -> None:
        super().__init__()
        for name, val in (("d_model", d_model), ("d_state", d_state), ("d_conv", d_conv),
                          ("expand", expand)):
            if not isinstance(val, int) or val < 1:
                raise ValueError(f"{name} must be a positive int, got {val!r}")
        if dt_rank == "auto":
            dt_rank = math.ceil(d_model / 16)
        if not isinstance(dt_rank, int) or dt_rank < 1:
            raise ValueError(f"dt_rank must be a positive int or 'auto', got {dt_rank!r}")
        E = expand * d_model
        self.d_model, self.d_state, self.d_conv, self.d_inner, self.dt_rank = (
            d_model, d_state, d_conv, E, dt_rank)
        self.in_proj = nn.Linear(d_model, 2 * E, bias=bias)
        # Storage as in mamba_ssm (weight (E, 1, d_conv), last tap = lag 0); the module is
        # never called directly: forward resamples its taps to the input rate.
        self.conv1d = nn.Conv1d(E, E, d_conv, groups=E, bias=conv_bias)
        self.x_proj = nn.Linear(E, dt_rank + 2 * d_state, bias=False)
        self.dt_proj = nn.Linear(dt_rank, E, bias=True)
        # dt_proj weight: uniform with std-like bound R^-1/2 so the initial Δ variance does not
        # depend on R; bias: inverse softplus of a log-uniform Δ, so softplus(bias) starts in
        # [dt_min, dt_max] (clamped below at dt_init_floor).
        nn.init.uniform_(self.dt_proj.weight, -dt_rank ** -0.5, dt_rank ** -0.5)
        dt = torch.exp(log_uniform_dt(E, dt_min, dt_max)).clamp(min=dt_init_floor)  # (E,)
        with torch.no_grad():
            self.dt_proj.bias.copy_(dt + torch.log(-torch.expm1(-dt)))  # softplus^-1(dt)
        mark_ssm_parameter(self.dt_proj.bias, lr)
        # S4D-real initialisation A_n = -(n + 1), stored as log(-A) so A stays negative.
        A = torch.arange(1, d_state + 1, dtype=torch.float32).repeat(E, 1)  # (E, N)
        self.A_log = mark_ssm_parameter(nn.Parameter(torch.log(A)), lr)  # (E, N)
        self.D = mark_ssm_parameter(nn.Parameter(torch.ones(E)), lr)  # (E,) skip
        self.out_proj = nn.Linear(E, d_model, bias=bias)

    def ssm_parameters(self) -> list[nn.Parameter]:
        """The parameters marked ``_ssm_param`` (``A_log``, ``D``, ``dt_proj.bias``)."""
        return [p for p in self.parameters() if getattr(p, "_ssm_param", False)]

    def _taps(self, scale: float | torch.Tensor) -> torch.Tensor:
        """Lag-ordered conv taps at the input rate: ``(E, K)`` or ``(b, E, K_max)``."""
        w = self.conv1d.weight[:, 0, :].flip(-1)  # (E, d_conv), lag-ordered
        if isinstance(scale, float):
            return resampled_taps(w, scale)  # (E, K)
        values = scale.tolist()
        K = max(conv_length(self.d_conv, s) for s in values)
        cache = {s: resampled_taps(w, s) for s in set(values)}  # (E, K_s) each
        return torch.stack([F.pad(cache[s], (0, K - cache[s].shape[-1])) for s in values])

    def _ssm_inputs(self, x: torch.Tensor, scale):
        """Shared by both modes: ``x (..., E)`` -> Δ (..., E), B (..., N), C (..., N)."""
        x_dbl = self.x_proj(x)  # (..., R + 2N)
        dt_low, B, C = torch.split(x_dbl, [self.dt_rank, self.d_state, self.d_state], dim=-1)
        dt = F.softplus(self.dt_proj(dt_low))  # (..., E), bias included
        if isinstance(scale, float):
            return dt * scale, B, C
        return dt * scale.reshape(-1, *([1] * (dt.dim() - 1))), B, C  # per sequence

    def forward(self, x: torch.Tensor, dt_scale: float | torch.Tensor = 1.0) -> torch.Tensor:
        """Scan mode.

        Parameters
        ----------
        x : torch.Tensor
            ``(batch, length, d_model)``.
        dt_scale : float or torch.Tensor
            ``fs_train / fs_input`` (float, or ``(batch,)``).

        Returns
        -------
        torch.Tensor
            ``(batch, length, d_model)``.
        """
        check_sequence(x, self.d_model, "Mamba")
        scale = dt_scale_tensor(dt_scale, x.shape[0], x)
        xz = self.in_proj(x).transpose(1, 2)  # (b, 2E, L)
        u, z = xz.chunk(2, dim=1)  # (b, E, L) each
        u = F.silu(causal_depthwise_conv(u, self._taps(scale), self.conv1d.bias))  # (b, E, L)
        delta, B, C = self._ssm_inputs(u.transpose(1, 2), scale)  # (b, L, E), (b, L, N) x2
        A = -torch.exp(self.A_log)  # (E, N)
        y = selective_scan(u, delta.transpose(1, 2), A, B.transpose(1, 2).contiguous(),
                           C.transpose(1, 2).contiguous(), self.D, z=z)  # (b, E, L)
        return self.out_proj(y.transpose(1, 2))  # (b, L, d_model)

    def initial_state(self, batch_size: int, dt_scale: float = 1.0) -> MambaState:
        """Zero state; the conv buffer holds the taps needed at ``dt_scale`` (grown in step
        when a smaller dt_scale arrives, with zeros as the older history)."""
        w = self.conv1d.weight
        scale = dt_scale_tensor(dt_scale, batch_size, w)
        K = conv_length(self.d_conv, scale if isinstance(scale, float) else float(scale.min()))
        ssm_dtype = torch.promote_types(w.dtype, torch.float32)
        return MambaState(
            conv=torch.zeros(batch_size, self.d_inner, K, dtype=w.dtype, device=w.device),
            ssm=torch.zeros(batch_size, self.d_inner, self.d_state, dtype=ssm_dtype,
                            device=w.device))

    def step(self, x_t: torch.Tensor, state: MambaState, dt_scale: float | torch.Tensor = 1.0):
        """One recurrent step with the same taps and Δ · dt_scale as :meth:`forward`.

        Parameters
        ----------
        x_t : torch.Tensor
            ``(batch, d_model)``.
        state : MambaState
            From :meth:`initial_state` or the previous step (not modified in place).
        dt_scale : float or torch.Tensor
            As in :meth:`forward`.

        Returns
        -------
        y_t : torch.Tensor
            ``(batch, d_model)``.
        state : MambaState
            The new state.
        """
        check_step(x_t, self.d_model, "Mamba")
        b = x_t.shape[0]
        if not isinstance(state, MambaState) or state.ssm.shape != (b, self.d_inner, self.d_state):
            raise ValueError("Mamba.step: state must be the MambaState from "
                             f"initial_state({b}) or a previous step")
        scale = dt_scale_tensor(dt_scale, b, x_t)
        u, z = self.in_proj(x_t).chunk(2, dim=-1)  # (b, E) each
        taps = self._taps(scale)  # (E, K) or (b, E, K)
        K = taps.shape[-1]
        buf = state.conv
        if buf.shape[-1] < K:  # a smaller dt_scale than the buffer was made for
            buf = F.pad(buf, (K - buf.shape[-1], 0))
        buf = torch.cat([buf[..., 1:], u[..., None]], dim=-1)  # (b, E, K_buf), newest last
        u = (buf[..., -K:] * taps.flip(-1)).sum(-1)  # (b, E)
        if self.conv1d.bias is not None:
            u = u + self.conv1d.bias
        u = F.silu(u)  # (b, E)
        delta, B, C = self._ssm_inputs(u, scale)  # (b, E), (b, N), (b, N)
        A = -torch.exp(self.A_log)  # (E, N)
        if torch.is_grad_enabled():
            # selective_state_update writes into its state, which autograd may have saved;
            # with gradients on, the same one-step formula runs out of place.
            ssm = (torch.exp(delta[..., None] * A) * state.ssm
                   + (delta * u)[..., None] * B[:, None, :])  # (b, E, N)
            y = (ssm * C[:, None, :]).sum(-1) + self.D * u  # (b, E)
            y = (y * F.silu(z)).to(x_t.dtype)  # (b, E)
        else:
            ssm = state.ssm.clone()  # (b, E, N); the kernel updates it in place
            y = selective_state_update(ssm, u, delta, A, B, C, self.D, z=z)  # (b, E)
        return self.out_proj(y), MambaState(conv=buf, ssm=ssm)  # (b, d_model)
