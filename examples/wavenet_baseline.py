"""A small WaveNet-style causal CNN over mu-law codes: the baseline for SaShiMi's likelihood.

After van den Oord et al. (2016), "WaveNet: A Generative Model for Raw Audio": an embedding of
the previous code, stacks of dilated causal convolutions (kernel 2, dilations 1, 2, ..., 2^k)
with gated ``tanh * sigmoid`` units, residual and skip 1x1 convolutions, and a ReLU -> 1x1 ->
ReLU -> 1x1 head giving 256-way logits. It is not part of the library: the FSDD example
(``sashimi_fsdd.py``) trains it with the library's training loop on the same batches and
reports its test NLL beside SaShiMi's.

Its receptive field is ``1 + n_stacks * (2**n_dilations - 1)`` samples (e.g. 2047 samples,
about 256 ms at 8 kHz, for 2 stacks of 10); SaShiMi's SSMs see the whole past.
"""
from __future__ import annotations

import torch
from torch import nn
import torch.nn.functional as F


class _GatedResidual(nn.Module):
    def __init__(self, channels, skip_channels, dilation):
        super().__init__()
        self.dilation = dilation
        self.conv = nn.Conv1d(channels, 2 * channels, kernel_size=2, dilation=dilation)
        self.res = nn.Conv1d(channels, channels, 1)
        self.skip = nn.Conv1d(channels, skip_channels, 1)

    def forward(self, x):  # x: (B, C, L)
        h = self.conv(F.pad(x, (self.dilation, 0)))  # (B, 2C, L), causal left padding
        filt, gate = h.chunk(2, dim=1)  # (B, C, L) each
        h = torch.tanh(filt) * torch.sigmoid(gate)  # (B, C, L)
        return x + self.res(h), self.skip(h)  # (B, C, L), (B, S, L)


class WaveNet(nn.Module):
    """Causal dilated CNN with the same call signature as :class:`ssmsignal.models.SaShiMi`.

    Parameters
    ----------
    channels : int
        Residual channels.
    skip_channels : int
        Skip / head channels.
    n_dilations : int
        Layers per stack (dilations ``1 .. 2**(n_dilations - 1)``).
    n_stacks : int
        Number of repeated stacks.
    n_classes : int
        Number of mu-law codes.
    """

    def __init__(self, channels=64, skip_channels=128, n_dilations=10, n_stacks=2,
                 n_classes=256):
        super().__init__()
        self.n_classes = n_classes
        self.embed = nn.Embedding(n_classes, channels)
        self.layers = nn.ModuleList(
            _GatedResidual(channels, skip_channels, 2 ** i)
            for _ in range(n_stacks) for i in range(n_dilations))
        self.head = nn.Sequential(nn.ReLU(), nn.Conv1d(skip_channels, skip_channels, 1),
                                  nn.ReLU(), nn.Conv1d(skip_channels, n_classes, 1))

    @property
    def receptive_field(self):
        return 1 + sum(layer.dilation for layer in self.layers)

    def forward(self, inputs, labels=None, dt_scale=1.0):  # inputs: (B, L) codes
        x = self.embed(inputs).transpose(1, 2)  # (B, C, L)
        skips = 0
        for layer in self.layers:
            x, s = layer(x)
            skips = skips + s  # (B, S, L)
        return self.head(skips).transpose(1, 2)  # (B, L, n_classes)
