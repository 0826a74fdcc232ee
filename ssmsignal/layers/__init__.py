"""Continuous-time state-space layers: :class:`S4`, :class:`S4D`, :class:`Mamba`, and blocks.

All layers take ``(batch, length, d_model)`` tensors and share one API::

    y = layer(x, dt_scale=1.0)                          # convolution / scan mode
    state = layer.initial_state(batch_size)
    y_t, state = layer.step(x_t, state, dt_scale=1.0)   # x_t: (batch, d_model)

A loop of ``step`` equals ``forward`` (tested in float64).

Continuous time
---------------
Every SSM learns its step Δ in units of the TRAINING sample period. At call time
``dt_scale = fs_train / fs_input`` (a float, or a ``(batch,)`` tensor for one rate per
sequence) and the layer uses Δ · dt_scale, in convolution and in step mode alike. For S4 and
S4D that is all: the rest is position-wise. Mamba also has a short causal depthwise conv
(``d_conv`` taps); its taps are read as samples, on the training grid, of a continuous-time
impulse response (piecewise linear between taps, plus half-tap end masses so that the
trapezoid rule reproduces the trained taps exactly). At another rate the filter is re-sampled
at ``τ = j · dt_scale`` training periods, ``j = 0 .. ceil((d_conv - 1) / dt_scale)``, with
trapezoid weights: the same filter at ``dt_scale = 1``, the same DC gain at every rate, and
``ceil((d_conv - 1) / dt_scale) + 1`` taps (longer for faster input). Step mode uses the same
taps with a buffer of that length. See :mod:`ssmsignal.layers._conv`.

Optimizer groups
----------------
SSM parameters (A, B, log Δ; for Mamba ``A_log``, ``D``, ``dt_proj.bias``) carry
``param._ssm_param = True`` and ``param._optim = {"weight_decay": 0.0[, "lr": lr]}`` (``lr``
from the layer's ``lr=`` argument). :func:`ssm_parameter_groups` builds AdamW groups from
those marks; each layer also has ``ssm_parameters()``.
"""
from ._common import ssm_parameter_groups
from .blocks import FeedForwardBlock, ResidualBlock
from .hippo import hippo_legs, log_uniform_dt, nplr_legs, s4d_init
from .mamba import Mamba, MambaState
from .s4 import S4
from .s4d import S4D

__all__ = [
    "FeedForwardBlock",
    "Mamba",
    "MambaState",
    "ResidualBlock",
    "S4",
    "S4D",
    "hippo_legs",
    "log_uniform_dt",
    "nplr_legs",
    "s4d_init",
    "ssm_parameter_groups",
]
