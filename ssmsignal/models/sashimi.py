"""SaShiMi: a multi-scale autoregressive state-space model of raw audio (Goel et al. 2022).

The network works at several time resolutions. A *down-pool* folds ``p`` consecutive steps of
a tier into one (reshape ``(L, H) -> (L / p, p H)`` then a linear map to ``expand * H``), the
next tier runs at ``1 / p`` of the rate, and so on; on the way back an *up-pool* unfolds each
coarse step into ``p`` fine ones. Input is the 8-bit mu-law code of the previous sample (an
embedding), output a 256-way softmax over the next code.

Two arrangements of the residual (SSM + feed-forward) block pairs (``unet``):

* ``unet=False`` (default), the autoregressive SaShiMi of the paper: no blocks on the way
  down. A tier with input ``x`` computes ``v = x + up(inner(down(x)))``, then ``n_layers``
  pairs on ``v``, and returns ``v + pairs(v)`` (the input of its modelling part added again);
  the innermost tier returns ``z + pairs(z)`` of its input ``z``.
* ``unet=True``, a U-Net: every outer tier also runs ``n_layers`` pairs *before* its down-pool,
  ``x' = pairs_down(x)``, ``v = x' + up(inner(down(x')))``, and returns ``pairs_up(v)``; the
  innermost tier returns ``pairs(z)``. Twice the blocks at the outer resolutions, so about
  twice the work per generated sample there. Saved configurations without the key are U-Nets
  (the only arrangement before the parameter existed).

Causality
---------
Coarse step ``j`` of a tier with pool ``p`` sees fine steps ``j p - p + 1 .. j p`` (the input of
the down-pool is shifted right by ``p - 1``, zeros in front), and its output is unfolded onto
fine steps ``j p .. j p + p - 1``. So fine output ``t`` depends on fine inputs ``<= p floor(t/p)
<= t``, and by induction the whole network's output at ``t`` depends only on inputs ``<= t``.
Because the input at ``t`` is the code of sample ``t - 1`` (see :func:`shift_right`), the
logits at ``t`` predict sample ``t`` from samples ``< t``.

Sampling-rate changes
---------------------
Every SSM layer takes ``dt_scale = fs_train / fs_new``. A tier below ``k`` pools of sizes
``p_1 .. p_k`` has a sample period of ``P / fs`` with ``P = p_1 ... p_k``, both at training time
(``P / fs_train``) and at the new rate (``P / fs_new``): the ratio of the two periods is again
``fs_train / fs_new``, so every tier gets the *same* ``dt_scale``. What does not transfer is the
pooling itself: its factors are counted in samples, so at twice the rate a pool of 4 spans half
the duration, and the down/up-pool linear maps (learned filters over ``p`` samples) see a
different local waveform; the output softmax likewise was fit to sample-to-sample changes at the
training rate. These are the reasons generation quality degrades away from the training rate.

Recurrent generation
--------------------
:meth:`SaShiMi.step` advances one audio sample in O(1): each SSM layer uses its own ``step``,
each down-pool keeps a buffer of its last ``p`` inputs, and a tier runs its inner tier once every
``p`` of its own steps (when ``t % p == 0``), caching the ``p`` unfolded outputs it hands back.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Callable, Sequence

import torch
from torch import nn
import torch.nn.functional as F

from ssmsignal.layers.blocks import FeedForwardBlock, ResidualBlock

from ._mulaw import N_CODES, SILENCE_CODE

__all__ = ["SaShiMi", "SaShiMiConfig", "shift_right"]


def shift_right(codes, start=SILENCE_CODE):
    """Model inputs for next-sample prediction: ``codes`` delayed by one, ``start`` in front.

    Parameters
    ----------
    codes : torch.Tensor
        ``(batch, length)`` integer mu-law codes (the targets).
    start : int, default=128
        Code fed at position 0 (128 is silence).

    Returns
    -------
    torch.Tensor
        ``(batch, length)`` inputs with ``inputs[:, t] = codes[:, t - 1]``.
    """
    first = torch.full_like(codes[:, :1], start)  # (B, 1)
    return torch.cat([first, codes[:, :-1]], dim=1)  # (B, L)


def _make_layer(layer, d_model, d_state):
    """Build one SSM layer of width ``d_model`` from a name or a factory callable."""
    if callable(layer):
        return layer(d_model)
    from ssmsignal import layers as _layers

    classes = {"s4": "S4", "s4d": "S4D", "mamba": "Mamba"}
    if layer not in classes:
        raise ValueError(f"layer must be one of {sorted(classes)} or a callable, got {layer!r}")
    return getattr(_layers, classes[layer])(d_model, d_state=d_state)


class _Tier(nn.Module):
    """One resolution: (down blocks), optionally (down-pool, inner tier, up-pool), blocks.

    The innermost tier (no pools left) has ``n_layers`` (SSM + FF) pairs; every other tier has
    ``n_layers`` pairs after its up-pool and, with ``unet``, ``n_layers`` before its down-pool.
    Without ``unet`` the input of the modelling part (the pass after the up-pool) is added to
    its output again (see the module docstring).
    """

    unet = True  # instances pickled before the parameter existed are U-Nets

    def __init__(self, d_model, pools, expand, n_layers, ff, make_layer, dropout, unet):
        super().__init__()

        def pairs(n):
            blocks = []
            for _ in range(n):
                blocks.append(ResidualBlock(make_layer(d_model), d_model, dropout=dropout))
                if ff > 0:
                    blocks.append(FeedForwardBlock(d_model, ff, dropout=dropout))
            return nn.ModuleList(blocks)

        self.unet = bool(unet)
        self.pool = int(pools[0]) if pools else 0
        self.down_blocks = pairs(n_layers if pools and self.unet else 0)
        if pools:
            inner = d_model * expand
            self.down = nn.Linear(self.pool * d_model, inner)
            self.inner = _Tier(inner, pools[1:], expand, n_layers, ff, make_layer, dropout,
                               self.unet)
            self.up = nn.Linear(inner, self.pool * d_model)
        self.up_blocks = pairs(n_layers)

    # ----- convolution mode -------------------------------------------------------------
    def forward(self, x, dt_scale):  # x: (B, L, H), L a multiple of the product of pools
        for block in self.down_blocks:
            x = block(x, dt_scale)
        if self.pool:
            b, length, h = x.shape
            p = self.pool
            shifted = F.pad(x[:, : length - (p - 1)], (0, 0, p - 1, 0))  # (B, L, H)
            z = self.down(shifted.reshape(b, length // p, p * h))  # (B, L/p, expand H)
            z = self.inner(z, dt_scale)  # (B, L/p, expand H)
            x = x + self.up(z).reshape(b, length, h)  # (B, L, H)
        skip = x  # (B, L, H) input of the modelling part
        for block in self.up_blocks:
            x = block(x, dt_scale)
        return x if self.unet else x + skip

    # ----- recurrent mode ---------------------------------------------------------------
    def initial_state(self, batch, like):
        state = {"down": [blk.initial_state(batch) for blk in self.down_blocks],
                 "up": [blk.initial_state(batch) for blk in self.up_blocks]}
        if self.pool:
            h = self.down.in_features // self.pool
            state["buffer"] = like.new_zeros(batch, self.pool, h)  # last p inputs of the pool
            state["unfolded"] = like.new_zeros(batch, self.pool, h)  # cached up-pool output
            state["inner"] = self.inner.initial_state(batch, like)
        return state

    def step(self, x, state, t, dt_scale):  # x: (B, H); t: this tier's step index
        new = {"down": [], "up": []}
        for block, s in zip(self.down_blocks, state["down"]):
            x, s = block.step(x, s, dt_scale)
            new["down"].append(s)
        if self.pool:
            p = self.pool
            buffer = torch.cat([state["buffer"][:, 1:], x[:, None]], dim=1)  # (B, p, H)
            new["buffer"] = buffer
            if t % p == 0:
                z = self.down(buffer.reshape(buffer.shape[0], -1))  # (B, expand H)
                z, new["inner"] = self.inner.step(z, state["inner"], t // p, dt_scale)
                unfolded = self.up(z).reshape(buffer.shape)  # (B, p, H)
            else:
                new["inner"], unfolded = state["inner"], state["unfolded"]
            new["unfolded"] = unfolded
            x = x + unfolded[:, t % p]  # (B, H)
        skip = x  # (B, H)
        for block, s in zip(self.up_blocks, state["up"]):
            x, s = block.step(x, s, dt_scale)
            new["up"].append(s)
        return (x if self.unet else x + skip), new


@dataclass
class SaShiMiConfig:
    """Constructor arguments of :class:`SaShiMi` (``SaShiMi(**config.to_dict())`` rebuilds it)."""

    d_model: int
    n_layers: int
    pool: list
    expand: int
    ff: int
    layer: str | Callable
    d_state: int
    n_classes: int
    n_conditions: int | None
    dropout: float
    unet: bool = True  # a saved configuration without the key is the older U-Net

    def to_dict(self):
        return asdict(self)


class SaShiMi(nn.Module):
    """SaShiMi autoregressive audio model over 8-bit mu-law codes (Goel et al. 2022).

    Parameters
    ----------
    d_model : int, default=64
        Width of the outer (audio-rate) tier; tier ``k`` has width ``d_model * expand**k``.
    n_layers : int, default=8
        (SSM block, feed-forward block) pairs per tier (and, with ``unet``, per direction).
    pool : sequence of int, default=(4, 4)
        Pooling factor of each down-pool, outermost first. Input lengths are padded (at the
        end, which causality makes harmless) to a multiple of their product.
    expand : int, default=2
        Width multiplier of each down-pool.
    ff : int, default=2
        Feed-forward expansion; 0 drops the feed-forward blocks.
    layer : {"s4", "s4d", "mamba"} or callable, default="s4"
        SSM layer of each block, from :mod:`ssmsignal.layers`, or ``factory(d_model) -> module``
        with the layer API (``forward(x, dt_scale)``, ``initial_state``, ``step``).
    d_state : int, default=64
        State size N of every SSM layer (64 suits S4 / S4D; Mamba's own default is 16).
    n_classes : int, default=256
        Number of mu-law codes (input vocabulary and output classes).
    n_conditions : int or None, default=None
        Number of labels for class-conditional generation (a label embedding is added to every
        input step); None for an unconditional model.
    dropout : float, default=0.0
        Dropout on every residual branch and inside the feed-forward blocks (the SSM layers
        themselves are built without dropout).
    unet : bool, default=False
        False: the autoregressive SaShiMi of Goel et al. (2022), blocks only after each
        up-pool and in the innermost tier. True: also ``n_layers`` pairs before every down-pool
        (a U-Net; twice the blocks at the outer tiers, so slower to generate from). See the
        module docstring.

    Notes
    -----
    ``forward(inputs, labels, dt_scale)`` maps ``(batch, length)`` input codes (the targets
    shifted right, :func:`shift_right`) to ``(batch, length, n_classes)`` logits; the logits at
    ``t`` depend only on inputs ``<= t``. ``step`` does the same one sample at a time. See the
    module docstring for pooling, causality and sampling-rate changes.

    Examples
    --------
    >>> import torch
    >>> model = SaShiMi(d_model=8, n_layers=1, pool=(2,), layer="s4d", d_state=4)
    >>> model(torch.zeros(2, 6, dtype=torch.long)).shape
    torch.Size([2, 6, 256])
    """

    def __init__(self, d_model=64, n_layers=8, pool: Sequence[int] = (4, 4), expand=2, ff=2,
                 layer: str | Callable = "s4", d_state=64, n_classes=N_CODES,
                 n_conditions=None, dropout=0.0, unet=False):
        super().__init__()
        # constructor arguments, for saving (ssmsignal.io stores ``config.to_dict()``)
        self.config = SaShiMiConfig(d_model, n_layers, list(pool), expand, ff, layer, d_state,
                                    n_classes, n_conditions, dropout, bool(unet))
        pool = tuple(int(p) for p in pool)
        if any(p < 1 for p in pool):
            raise ValueError(f"pooling factors must be >= 1, got {pool}")
        if d_model < 1 or n_layers < 1 or expand < 1 or ff < 0:
            raise ValueError("d_model, n_layers and expand must be >= 1 and ff >= 0, got "
                             f"{d_model}, {n_layers}, {expand}, {ff}")
        self.pool = pool
        self.n_classes = int(n_classes)
        self.n_conditions = None if n_conditions is None else int(n_conditions)
        self.embed = nn.Embedding(self.n_classes, d_model)
        self.label_embed = (nn.Embedding(self.n_conditions, d_model)
                            if self.n_conditions else None)
        self.tiers = _Tier(d_model, pool, expand, n_layers, ff,
                           lambda h: _make_layer(layer, h, d_state), dropout, unet)
        self.norm = nn.LayerNorm(d_model)
        self.head = nn.Linear(d_model, self.n_classes)

    @property
    def frame(self):
        """Product of the pooling factors: the period at which every tier steps together."""
        return math.prod(self.pool)

    def _embed(self, inputs, labels):  # inputs: (B, ...) codes
        x = self.embed(inputs)  # (B, ..., H)
        if self.label_embed is None:
            if labels is not None:
                raise ValueError("labels given but the model is unconditional (n_conditions=None)")
            return x
        if labels is None:
            raise ValueError("this model is class-conditional: pass labels of shape (batch,)")
        cond = self.label_embed(labels)  # (B, H)
        return x + (cond[:, None] if x.dim() == 3 else cond)

    def forward(self, inputs, labels=None, dt_scale=1.0):
        """Logits ``(batch, length, n_classes)`` for input codes ``(batch, length)``."""
        if inputs.dim() != 2:
            raise ValueError(f"inputs must be (batch, length) codes, got shape "
                             f"{tuple(inputs.shape)}")
        length = inputs.shape[1]
        pad = (-length) % self.frame
        x = self._embed(F.pad(inputs, (0, pad), value=SILENCE_CODE), labels)  # (B, L', H)
        x = self.tiers(x, dt_scale)  # (B, L', H)
        return self.head(self.norm(x[:, :length]))  # (B, L, n_classes)

    def initial_state(self, batch_size):
        """Recurrent state for :meth:`step` at time 0 (a nested dict of tensors)."""
        return self.tiers.initial_state(batch_size, self.head.weight)

    def step(self, inputs_t, state, t, labels=None, dt_scale=1.0):
        """One sample of recurrent decoding.

        Parameters
        ----------
        inputs_t : torch.Tensor
            ``(batch,)`` input codes at time ``t`` (the previous sample's code).
        state : dict
            From :meth:`initial_state` or the previous call.
        t : int
            Time index of this step (0 for the first); it decides which tiers advance.
        labels : torch.Tensor, optional
            ``(batch,)`` labels of a class-conditional model.
        dt_scale : float, default=1.0
            ``fs_train / fs_generate``.

        Returns
        -------
        logits : torch.Tensor
            ``(batch, n_classes)``.
        state : dict
            The next state (new tensors; the old state is not modified).
        """
        x = self._embed(inputs_t, labels)  # (B, H)
        x, state = self.tiers.step(x, state, int(t), dt_scale)  # (B, H)
        return self.head(self.norm(x)), state  # (B, n_classes)
