"""Residual wrappers around the SSM layers, with the same three-method API.

Every block has ``forward(x, dt_scale)``, ``initial_state(batch_size)`` and
``step(x_t, state, dt_scale)``, so blocks stack like layers in both modes.
"""
from __future__ import annotations

import torch
from torch import nn

from ._common import check_sequence, check_step

__all__ = ["FeedForwardBlock", "ResidualBlock", "make_norm"]


def make_norm(kind: str, d_model: int) -> nn.Module:
    """``"layer"`` -> :class:`torch.nn.LayerNorm`, ``"rms"`` -> :class:`torch.nn.RMSNorm`."""
    if kind == "layer":
        return nn.LayerNorm(d_model)
    if kind == "rms":
        return nn.RMSNorm(d_model)
    raise ValueError(f"norm must be 'layer' or 'rms', got {kind!r}")


def _dropout(p: float) -> nn.Module:
    if not 0.0 <= p < 1.0:
        raise ValueError(f"dropout must be in [0, 1), got {p}")
    return nn.Dropout(p) if p > 0 else nn.Identity()


class ResidualBlock(nn.Module):
    """Pre-norm residual block ``x + dropout(layer(norm(x), dt_scale))``.

    Parameters
    ----------
    layer : torch.nn.Module
        An :class:`S4`, :class:`S4D` or :class:`Mamba` (anything with the layer API).
    d_model : int, optional
        Channels; read from ``layer.d_model`` when omitted.
    norm : {"layer", "rms"}
        Normalisation applied before the layer.
    dropout : float
        Dropout on the residual branch.

    Examples
    --------
    >>> from ssmsignal.layers import S4D
    >>> block = ResidualBlock(S4D(8, d_state=4), norm="rms")
    >>> block(torch.randn(2, 30, 8), dt_scale=0.5).shape
    torch.Size([2, 30, 8])
    """

    def __init__(self, layer: nn.Module, d_model: int | None = None, norm: str = "layer",
                 dropout: float = 0.0) -> None:
        super().__init__()
        self.d_model = int(d_model if d_model is not None else layer.d_model)
        self.norm = make_norm(norm, self.d_model)
        self.layer = layer
        self.dropout = _dropout(dropout)

    def forward(self, x: torch.Tensor, dt_scale: float | torch.Tensor = 1.0) -> torch.Tensor:
        """``(batch, length, d_model)`` -> same shape."""
        check_sequence(x, self.d_model, "ResidualBlock")
        return x + self.dropout(self.layer(self.norm(x), dt_scale=dt_scale))  # (b, L, H)

    def initial_state(self, batch_size: int):
        """The wrapped layer's initial state."""
        return self.layer.initial_state(batch_size)

    def step(self, x_t: torch.Tensor, state, dt_scale: float | torch.Tensor = 1.0):
        """One step: ``(batch, d_model)`` -> ``(y_t, state)``."""
        check_step(x_t, self.d_model, "ResidualBlock")
        y, state = self.layer.step(self.norm(x_t), state, dt_scale=dt_scale)  # (b, H)
        return x_t + self.dropout(y), state


class FeedForwardBlock(nn.Module):
    """Pre-norm position-wise MLP ``x + dropout(W2 GELU(W1 norm(x)))``; stateless in time.

    Parameters
    ----------
    d_model : int
        Channels.
    expand : int
        Hidden width ``expand * d_model``.
    norm : {"layer", "rms"}
        Normalisation applied first.
    dropout : float
        Dropout after the activation and on the residual branch.
    """

    def __init__(self, d_model: int, expand: int = 2, norm: str = "layer",
                 dropout: float = 0.0) -> None:
        super().__init__()
        self.d_model = d_model
        self.norm = make_norm(norm, d_model)
        self.mlp = nn.Sequential(nn.Linear(d_model, expand * d_model), nn.GELU(),
                                 _dropout(dropout), nn.Linear(expand * d_model, d_model))
        self.dropout = _dropout(dropout)

    def forward(self, x: torch.Tensor, dt_scale: float | torch.Tensor = 1.0) -> torch.Tensor:
        """``(..., d_model)`` -> same shape; ``dt_scale`` is accepted and unused (no time)."""
        if x.shape[-1] != self.d_model:
            raise ValueError(f"FeedForwardBlock expects (..., {self.d_model}) input, "
                             f"got {tuple(x.shape)}")
        return x + self.dropout(self.mlp(self.norm(x)))  # (..., H)

    def initial_state(self, batch_size: int) -> None:
        """No state (position-wise)."""
        return None

    def step(self, x_t: torch.Tensor, state=None, dt_scale: float | torch.Tensor = 1.0):
        """``(batch, d_model)`` -> ``(y_t, None)``."""
        return self.forward(x_t), None
