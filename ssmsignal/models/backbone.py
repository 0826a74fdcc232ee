"""SequenceModel: the network behind the estimators.

::

    x (B, C, L) --standardise per channel--> Linear encoder (C -> H)
      --> n_layers residual SSM blocks (S4, S4D or Mamba; pre-norm, causal or bidirectional)
      --> LayerNorm
      --> masked mean over the valid time steps  --> Linear head   (per-series output)
      or  Linear head at every step                                (per-step output, causal)

Resolution awareness
--------------------
Every SSM layer receives ``dt_scale = fs_train / fs_input`` (DESIGN.md's continuous-time rule).
The encoder, norms and head act on one time step at a time, so they do not depend on the rate.
The pooling is a *mean* over time, i.e. a time average that is the same at any rate (a sum or a
strided pooling would not be). So the whole backbone is resolution-aware, up to what the layers
themselves do (see the Mamba layer's documentation for its short convolution).

Padding
-------
Series shorter than the batch's longest are zero-padded at the END. All blocks are causal, so
outputs at valid positions never see the padding; the mean pooling uses ``lengths`` to skip it.

Bidirectional blocks (``bidirectional=True``, per-series output only) add a second SSM that
reads each series backwards: :func:`reverse_valid` reverses the valid steps of every row in
place (padding stays at the end), the second layer runs causally on that, and its output is
reversed back and added to the forward layer's. Every position then sees the whole series, as
in the bidirectional S4 models of Gu et al. 2022; both directions take the same ``dt_scale``.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn

from ssmsignal.layers.blocks import ResidualBlock

__all__ = ["BackboneConfig", "BidirectionalBlock", "SequenceModel", "masked_mean",
           "reverse_valid"]

_LAYERS = ("s4", "s4d", "mamba")


@dataclass
class BackboneConfig:
    """Hyper-parameters of :class:`SequenceModel` (a plain dataclass, saved as JSON).

    Parameters
    ----------
    n_channels : int
        Input channels C.
    n_outputs : int
        Outputs per series (classes, or regression targets), or per step when ``per_step``.
    layer : {"s4d", "s4", "mamba"}
        SSM layer of every block.
    d_model : int
        Width H of the residual stream.
    n_layers : int
        Number of residual blocks.
    d_state : int
        State size N of each SSM.
    dropout : float
        Dropout inside the S4 / S4D layers (Mamba has none) and on each block's residual
        branch.
    dt_min, dt_max : float
        Δ initialisation range in TRAINING sample periods (see the estimators' ``timescale_*``).
    per_step : bool
        Head at every time step (causal sequence output) instead of after pooling.
    d_conv, expand : int
        Mamba only: short-convolution width and inner expansion factor.
    bidirectional : bool
        Blocks with a forward and a backward SSM (:class:`BidirectionalBlock`); only for
        per-series output (a per-step head must stay causal).
    """

    n_channels: int
    n_outputs: int
    layer: str = "s4d"
    d_model: int = 64
    n_layers: int = 4
    d_state: int = 64
    dropout: float = 0.0
    dt_min: float = 1e-3
    dt_max: float = 1e-1
    per_step: bool = False
    d_conv: int = 4
    expand: int = 2
    bidirectional: bool = False

    def to_dict(self) -> dict:
        return asdict(self)


def masked_mean(h: torch.Tensor, lengths: torch.Tensor | None) -> torch.Tensor:
    """Mean of ``h`` ``(B, L, H)`` over the first ``lengths[b]`` steps of each row -> ``(B, H)``."""
    if lengths is None:
        return h.mean(dim=1)  # (B, H)
    steps = torch.arange(h.shape[1], device=h.device)  # (L,)
    mask = (steps[None, :] < lengths[:, None]).to(h.dtype)  # (B, L)
    total = torch.einsum("blh,bl->bh", h, mask)  # (B, H)
    return total / lengths.clamp(min=1).to(h.dtype)[:, None]  # (B, H)


def reverse_valid(h: torch.Tensor, lengths: torch.Tensor | None) -> torch.Tensor:
    """Reverse each row of ``h`` ``(B, L, H)`` within its first ``lengths[b]`` steps.

    Padding positions stay where they are, so the result is again padded at the end, and
    applying the function twice gives ``h`` back. None means every row is ``L`` long.
    """
    if lengths is None:
        return h.flip(1)  # (B, L, H)
    steps = torch.arange(h.shape[1], device=h.device)[None, :]  # (1, L)
    lengths = lengths.to(h.device)[:, None]  # (B, 1)
    index = torch.where(steps < lengths, lengths - 1 - steps, steps)  # (B, L)
    return torch.gather(h, 1, index[:, :, None].expand(-1, -1, h.shape[2]))  # (B, L, H)


class BidirectionalBlock(nn.Module):
    """Pre-norm residual block ``x + dropout(f(n(x)) + R(g(R(n(x)))))``, R = :func:`reverse_valid`.

    Parameters
    ----------
    forward_layer, backward_layer : torch.nn.Module
        Two SSM layers of the same kind and width (the layer API: ``layer(x, dt_scale=)``).
    d_model : int
        Channels.
    dropout : float
        Dropout on the residual branch.
    """

    def __init__(self, forward_layer: nn.Module, backward_layer: nn.Module, d_model: int,
                 dropout: float = 0.0) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(d_model)
        self.forward_layer = forward_layer
        self.backward_layer = backward_layer
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()

    def forward(self, x: torch.Tensor, dt_scale: float | torch.Tensor = 1.0,
                lengths: torch.Tensor | None = None) -> torch.Tensor:
        """``(B, L, H)`` -> same shape; ``lengths`` ``(B,)`` marks where the padding starts."""
        z = self.norm(x)  # (B, L, H)
        ahead = self.forward_layer(z, dt_scale=dt_scale)  # (B, L, H)
        back = self.backward_layer(reverse_valid(z, lengths), dt_scale=dt_scale)  # (B, L, H)
        return x + self.dropout(ahead + reverse_valid(back, lengths))  # (B, L, H)


def _make_layer(cfg: BackboneConfig) -> nn.Module:
    from ssmsignal import layers

    if cfg.layer == "s4d":
        return layers.S4D(cfg.d_model, d_state=cfg.d_state, dt_min=cfg.dt_min,
                          dt_max=cfg.dt_max, dropout=cfg.dropout)
    if cfg.layer == "s4":
        return layers.S4(cfg.d_model, d_state=cfg.d_state, dt_min=cfg.dt_min,
                         dt_max=cfg.dt_max, dropout=cfg.dropout)
    return layers.Mamba(cfg.d_model, d_state=cfg.d_state, d_conv=cfg.d_conv,
                        expand=cfg.expand, dt_min=cfg.dt_min, dt_max=cfg.dt_max)


class SequenceModel(nn.Module):
    """Encoder -> residual SSM blocks -> (masked mean pooling) -> linear head.

    Parameters
    ----------
    config : BackboneConfig
        Architecture. Input standardisation statistics (``input_mean``, ``input_std``, shape
        ``(C,)``) and output scaling (``output_mean``, ``output_std``, shape ``(n_outputs,)``)
        are buffers, so they travel with ``state_dict`` (and safetensors files).

    Examples
    --------
    >>> import torch
    >>> from ssmsignal.models import BackboneConfig, SequenceModel
    >>> net = SequenceModel(BackboneConfig(n_channels=2, n_outputs=3, d_model=8, n_layers=1,
    ...                                    d_state=4))
    >>> net(torch.randn(5, 2, 100)).shape
    torch.Size([5, 3])
    >>> net(torch.randn(5, 2, 50), dt_scale=2.0).shape   # the same signals at half the rate
    torch.Size([5, 3])
    """

    def __init__(self, config: BackboneConfig) -> None:
        super().__init__()
        if config.layer not in _LAYERS:
            raise ValueError(f"layer must be one of {_LAYERS}, got {config.layer!r}")
        if config.bidirectional and config.per_step:
            raise ValueError("bidirectional blocks read the future, so they cannot feed a "
                             "per-step (causal) head; use bidirectional=False")
        self.config = config
        c, h, k = config.n_channels, config.d_model, config.n_outputs
        self.register_buffer("input_mean", torch.zeros(c))
        self.register_buffer("input_std", torch.ones(c))
        self.register_buffer("output_mean", torch.zeros(k))
        self.register_buffer("output_std", torch.ones(k))
        self.encoder = nn.Linear(c, h)
        if config.bidirectional:
            self.blocks = nn.ModuleList(
                BidirectionalBlock(_make_layer(config), _make_layer(config), h, config.dropout)
                for _ in range(config.n_layers))
        else:
            self.blocks = nn.ModuleList(
                ResidualBlock(_make_layer(config), h, norm="layer", dropout=config.dropout)
                for _ in range(config.n_layers))
        self.norm = nn.LayerNorm(h)
        self.head = nn.Linear(h, k)

    def set_standardisation(self, mean, std, output_mean=None, output_std=None) -> None:
        """Store input (and optionally output) statistics learned from the training data."""
        self.input_mean.copy_(torch.as_tensor(mean, dtype=torch.float32))
        self.input_std.copy_(torch.as_tensor(std, dtype=torch.float32))
        if output_mean is not None:
            self.output_mean.copy_(torch.as_tensor(output_mean, dtype=torch.float32))
            self.output_std.copy_(torch.as_tensor(output_std, dtype=torch.float32))

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None,
                dt_scale: float | torch.Tensor = 1.0, normalised: bool = False) -> torch.Tensor:
        """Apply the model.

        Parameters
        ----------
        x : torch.Tensor
            ``(B, C, L)`` raw (unstandardised) series, zero-padded after ``lengths``.
        lengths : torch.Tensor, optional
            ``(B,)`` valid lengths; None means all ``L`` steps are valid.
        dt_scale : float or torch.Tensor
            ``fs_train / fs_input`` handed to every SSM layer.
        normalised : bool
            Return the head output before the output scaling (for losses in standard units).

        Returns
        -------
        torch.Tensor
            ``(B, n_outputs)``, or ``(B, L, n_outputs)`` when ``config.per_step``.
        """
        if x.dim() != 3 or x.shape[1] != self.config.n_channels:
            raise ValueError(f"SequenceModel expects (batch, {self.config.n_channels}, length) "
                             f"input, got {tuple(x.shape)}")
        z = (x - self.input_mean[:, None]) / self.input_std[:, None]  # (B, C, L)
        h = self.encoder(z.transpose(1, 2))  # (B, L, H)
        for block in self.blocks:
            if self.config.bidirectional:
                h = block(h, dt_scale, lengths)  # (B, L, H)
            else:
                h = block(h, dt_scale)  # (B, L, H)
        h = self.norm(h)  # (B, L, H)
        if not self.config.per_step:
            h = masked_mean(h, lengths)  # (B, H)
        out = self.head(h)  # (B, k) or (B, L, k)
        if normalised:
            return out
        return out * self.output_std + self.output_mean  # (B, k) or (B, L, k)
