"""Common body of the convolutional SSM layers (S4, S4D): Δ handling, FFT conv, gated output.

A subclass supplies three things:

- ``_kernel(dt, L)``: the real convolution kernel ``(M, L)`` for step sizes ``dt`` of shape
  ``(M,)``, ``M = reps * H`` (channel ``m`` uses the SSM of channel ``m % H``);
- ``_discretize_step(dt)``: the coefficients of one recurrent step (a tuple of tensors) for
  step sizes ``dt`` of shape ``(H,)`` or ``(batch, H)``;
- ``_step_ssm(x_t, state, coefficients)``: one recurrent step without the D skip, returning
  ``(y (batch, H) real, new_state)``; the state is complex ``(batch, H, N/2)`` (conjugate modes
  implicit, as in the kernels).

Everything else (input checks, Δ = exp(log_dt) · dt_scale, the D skip, GELU + GLU output, the
state layout, caching the step coefficients while decoding) lives here, identical in both
modes, so the convolution and the step loop cannot drift apart.
"""
from __future__ import annotations

import torch
from torch import nn

from ssmsignal.kernels import fft_conv

from ._common import GatedOutput, check_sequence, check_step, dt_scale_tensor, mark_ssm_parameter
from .hippo import log_uniform_dt

__all__ = ["ConvSSM"]


class ConvSSM(nn.Module):
    """Base class: H independent SSMs, convolution mode and step mode, gated output.

    Parameters
    ----------
    d_model : int
        Number of channels H (each has its own SSM).
    d_state : int
        Real state size N per channel (even; ``N/2`` complex modes are stored).
    dt_min, dt_max : float
        Range of the log-uniform Δ initialisation, in training sample periods.
    dropout : float
        Dropout after the activation.
    lr : float, optional
        Learning rate hint for the SSM parameters (see :func:`ssm_parameter_groups`).
    """

    def __init__(self, d_model: int, d_state: int, dt_min: float, dt_max: float,
                 dropout: float, lr: float | None) -> None:
        super().__init__()
        if not isinstance(d_model, int) or d_model < 1:
            raise ValueError(f"d_model must be a positive int, got {d_model!r}")
        if not isinstance(d_state, int) or d_state < 2 or d_state % 2:
            raise ValueError(f"d_state must be an even int >= 2, got {d_state!r}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        self.d_model, self.d_state, self.lr = d_model, d_state, lr
        log_dt = log_uniform_dt(d_model, dt_min, dt_max).float()  # (H,)
        self.log_dt = mark_ssm_parameter(nn.Parameter(log_dt), lr)
        self.D = nn.Parameter(torch.randn(d_model))  # (H,) skip connection
        self.output = GatedOutput(d_model, dropout)
        self._step_cache: tuple | None = None  # (key, coefficients), see _step_coefficients

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_step_cache"] = None  # derived tensors: not worth pickling or copying
        return state

    def _ssm_param(self, value: torch.Tensor) -> nn.Parameter:
        """Register-ready SSM parameter; complex values are stored as a real ``(..., 2)`` view."""
        if value.is_complex():
            value = torch.view_as_real(value.to(torch.complex64).contiguous())  # (..., 2)
        value = value.to(torch.float32).clone(memory_format=torch.contiguous_format)
        return mark_ssm_parameter(nn.Parameter(value), self.lr)

    def ssm_parameters(self) -> list[nn.Parameter]:
        """The parameters marked ``_ssm_param`` (state matrix, B, log Δ, ...)."""
        return [p for p in self.parameters() if getattr(p, "_ssm_param", False)]

    def _dt(self, scale: float | torch.Tensor) -> torch.Tensor:
        """Δ · dt_scale: ``(H,)`` for a float scale, ``(batch, H)`` for a ``(batch,)`` one."""
        dt = torch.exp(self.log_dt)  # (H,)
        return dt * scale if isinstance(scale, float) else scale[:, None] * dt  # (H,) | (b, H)

    def forward(self, x: torch.Tensor, dt_scale: float | torch.Tensor = 1.0) -> torch.Tensor:
        """Convolution mode.

        Parameters
        ----------
        x : torch.Tensor
            ``(batch, length, d_model)`` input.
        dt_scale : float or torch.Tensor
            ``fs_train / fs_input`` (float, or ``(batch,)`` for one value per sequence).

        Returns
        -------
        torch.Tensor
            ``(batch, length, d_model)`` output.
        """
        name = type(self).__name__
        check_sequence(x, self.d_model, name)
        scale = dt_scale_tensor(dt_scale, x.shape[0], x)
        return self.output(self._convolve(x, scale))  # (b, L, H)

    def _convolve(self, x: torch.Tensor, scale: float | torch.Tensor) -> torch.Tensor:
        """SSM convolution plus D skip, ``(b, L, H) -> (b, L, H)``: kernel, then FFT."""
        b, L, H = x.shape
        u = x.transpose(1, 2)  # (b, H, L)
        dt = self._dt(scale)  # (H,) or (b, H)
        k = self._kernel(dt.reshape(-1), L)  # (H, L) or (b*H, L)
        if dt.dim() == 1:
            y = fft_conv(u, k, self.D)  # (b, H, L)
        else:  # one kernel per sequence: fold the batch into the channels
            y = fft_conv(u.reshape(1, b * H, L), k, self.D.repeat(b)).reshape(b, H, L)
        return y.transpose(1, 2)  # (b, L, H)

    def step(self, x_t: torch.Tensor, state, dt_scale: float | torch.Tensor = 1.0):
        """Recurrent mode: one time step, same discretisation and Δ · dt_scale as ``forward``.

        Parameters
        ----------
        x_t : torch.Tensor
            ``(batch, d_model)`` input at one time step.
        state : torch.Tensor
            From :meth:`initial_state` or the previous call (not modified in place).
        dt_scale : float or torch.Tensor
            As in :meth:`forward`.

        Returns
        -------
        y_t : torch.Tensor
            ``(batch, d_model)`` output.
        state : torch.Tensor
            The new state.

        Notes
        -----
        While autograd is off and ``dt_scale`` is a float (generation), the step coefficients
        are computed once and reused, keyed by dt_scale and the parameters' storage, dtype,
        device and version counters (in-place updates through ``param.data`` are not seen).
        """
        name = type(self).__name__
        check_step(x_t, self.d_model, name)
        expected = (x_t.shape[0], self.d_model, self.d_state // 2)
        if not isinstance(state, torch.Tensor) or tuple(state.shape) != expected:
            got = tuple(state.shape) if isinstance(state, torch.Tensor) else type(state).__name__
            raise ValueError(f"{name}.step: state must have shape {expected} "
                             f"(use initial_state(batch_size)), got {got}")
        scale = dt_scale_tensor(dt_scale, x_t.shape[0], x_t)
        y, state = self._step_ssm(x_t, state, self._step_coefficients(scale))  # (b, H)
        return self.output(torch.addcmul(y, self.D, x_t)), state  # (b, H): y + D u

    def _step_coefficients(self, scale: float | torch.Tensor) -> tuple:
        """``_discretize_step(Δ · scale)``, cached while autograd is off and scale is a float."""
        if torch.is_grad_enabled() or not isinstance(scale, float):
            return self._discretize_step(self._dt(scale))
        key = (scale, *((p.data_ptr(), p._version, p.dtype, p.device)
                        for p in self._parameters.values()))
        if self._step_cache is None or self._step_cache[0] != key:
            self._step_cache = (key, self._discretize_step(self._dt(scale)))
        return self._step_cache[1]

    def initial_state(self, batch_size: int) -> torch.Tensor:
        """Zero state ``(batch_size, d_model, d_state // 2)`` (complex, the layer's device)."""
        dtype = torch.complex128 if self.log_dt.dtype == torch.float64 else torch.complex64
        return torch.zeros(batch_size, self.d_model, self.d_state // 2, dtype=dtype,
                           device=self.log_dt.device)
