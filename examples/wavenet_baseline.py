"""A small WaveNet-style causal CNN over mu-law codes: the baseline for SaShiMi's likelihood.

After van den Oord et al. (2016), "WaveNet: A Generative Model for Raw Audio": an embedding of
the previous code, stacks of dilated causal convolutions (kernel 2, dilations 1, 2, ..., 2^k)
with gated ``tanh * sigmoid`` units, residual and skip 1x1 convolutions, and a ReLU -> 1x1 ->
ReLU -> 1x1 head giving 256-way logits. It is not part of the library: the FSDD example
(``sashimi_fsdd.py``) trains it with :func:`train_wavenet` (the library's training loop, the
same crops, batches, validation recordings and time budget as ``AudioGenerator.fit``) and
reports its test NLL beside SaShiMi's.

Its receptive field is ``1 + n_stacks * (2**n_dilations - 1)`` samples (e.g. 2047 samples,
about 256 ms at 8 kHz, for 2 stacks of 10); SaShiMi's SSMs see the whole past.
"""
from __future__ import annotations

import math

import numpy as np
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


def split_like_generator(n, fraction, seed):
    """The (train, validation) recording indices ``AudioGenerator.fit`` uses (same rng calls)."""
    perm = np.random.default_rng(seed).permutation(n)
    n_val = int(round(fraction * n))
    return perm[n_val:], perm[:n_val]


def train_wavenet(net, train, test, cfg, device, seed):
    """Train ``net`` on waveforms as ``AudioGenerator.fit`` would train SaShiMi; test bits.

    ``cfg`` holds ``segment_length``, ``batch_size``, ``validation_fraction``, ``wavenet_lr``,
    ``max_epochs`` and ``budget`` (seconds, ``TrainConfig.max_time``). Returns the training
    history and the test NLL in bits per sample (best-validation weights).
    """
    from ssmsignal.estimators._audio_data import (eval_batches, masked_nll, mean_nll_bits,
                                                  recording_codes, train_batches)
    from ssmsignal.estimators._training import TrainConfig, train_module

    codes = recording_codes(train)
    tr, va = split_like_generator(len(codes), cfg["validation_fraction"], seed)
    tr_codes = [codes[i] for i in tr]
    val_batches = eval_batches([codes[i] for i in va], None, cfg["batch_size"])

    def validate(module):
        bits = mean_nll_bits(module, val_batches, device)
        return {"val_loss": bits * math.log(2), "val_score": -bits}

    config = TrainConfig(max_epochs=cfg["max_epochs"], lr=cfg["wavenet_lr"], weight_decay=0.0,
                         device=device, random_state=seed, verbose=0, max_time=cfg["budget"])
    result = train_module(net, masked_nll,
                          lambda g: train_batches(tr_codes, None, cfg["segment_length"],
                                                  cfg["batch_size"], g), config, validate)
    test_bits = mean_nll_bits(net, eval_batches(recording_codes(test), None,
                                                cfg["batch_size"]), device)
    return result.history, test_bits
