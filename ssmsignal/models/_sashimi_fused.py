"""Fused recurrent decoding of :class:`~ssmsignal.models.SaShiMi` with the Triton tier-pass kernel.

The module-by-module step (:meth:`SaShiMi.step`) launches ~130 small kernels per sample. Here
one launch of :func:`ssmsignal.kernels.triton.sashimi_step.tier_pass` runs all blocks of one
tier pass (plus embedding, pooling maps, head and the Gumbel-max draw in its prologue and
epilogue). With ``unet=False`` a tier's down pass has no blocks and tier 0's runs inside the
previous step's head launch, so a sample of the default (4, 4) pooling costs 1 launch, 3 when
the middle tier runs and 4 when all three run: 1.56 on average (2.56 for the U-Net). The loop
(:func:`~ssmsignal.models._sashimi_decode.sample_codes_fused`) captures a block of steps (64 for
the default model) in one CUDA graph and replays it.

Packing (:func:`packed_model`): each tier's weights and the *discretised* step coefficients of
its SSM layers (they depend on ``dt_scale``) are stacked once into contiguous float32 buffers,
cached per (model, dt_scale, parameter versions). Pooling buffers become ring buffers: the slot
of tier step ``j`` is ``j % p``, and the down-pool weight's column blocks are permuted to match.

At batch 1 (whenever ``batch x programs`` fits the multiprocessors) the passes of the inner
tiers run instead as *dataflow passes* (:mod:`ssmsignal.kernels.triton._sashimi_dataflow`): one
launch per pass as well, but spread over up to 96 programs that load their weights at once
and hand the activations on through global memory (1.6-1.7x for the default model at batch 1
on an H100, docs/benchmarks.md); ``CONFIG["dataflow"] = False`` turns it off, ``True`` also
runs tier 0 that way (faster, but see the note at ``CONFIG``).

Launch configuration: :data:`ssmsignal.kernels.triton.sashimi_step.CONFIG`. Setting its
``split`` to 8 runs the wide tiers of small batches over 8 multiprocessors per sequence (1.3x
for the default model at batch 1 on an H100, see docs/benchmarks.md); it is off by default
because those passes spin on a counter in global memory until all programs of a row arrive
(a wait that gives up after ~1 s raises instead of hanging). ``bf16_weights`` reads the
blocks' dense maps as bfloat16 (lossy opt-in, :func:`packed_model`).

Supported: S4 and S4D layers with LayerNorm residual and feed-forward blocks, exact GELU, any
widths, pools and ``dt_scale`` (a float), class labels, temperature and top-p, in eval mode.
Anything else (Mamba, custom layers, dropout while training, a per-sequence ``dt_scale``) is
reported by :func:`unsupported_reason` and :func:`~ssmsignal.models._sashimi_decode.sample_codes`
falls back to the module path.
"""
from __future__ import annotations

import os
import warnings
import weakref
from dataclasses import dataclass

import torch
from torch import nn

from ._mulaw import SILENCE_CODE

__all__ = ["FusedDecoder", "packed_model", "unsupported_reason"]

_CACHE: "weakref.WeakKeyDictionary[nn.Module, tuple]" = weakref.WeakKeyDictionary()


def _is_exact_gelu(m):
    return isinstance(m, nn.GELU) and m.approximate == "none"


def _is_layer_norm(m, width):
    return (isinstance(m, nn.LayerNorm) and tuple(m.normalized_shape) == (width,)
            and m.weight is not None and m.bias is not None)


def _block_problem(block, width):
    from ssmsignal.layers import S4, S4D
    from ssmsignal.layers.blocks import FeedForwardBlock, ResidualBlock

    # each Dropout's own flag: a model in eval mode may keep some dropout active (MC dropout)
    if any(isinstance(m, nn.Dropout) and m.p > 0 and m.training for m in block.modules()):
        return "dropout in training mode"
    if isinstance(block, ResidualBlock):
        layer = block.layer
        if type(layer) not in (S4, S4D):
            return f"layer {type(layer).__name__} (only S4 and S4D are fused)"
        out = layer.output
        if not (_is_layer_norm(block.norm, width) and _is_exact_gelu(out.activation)
                and out.linear.bias is not None):
            return "residual block other than LayerNorm -> SSM -> GELU -> linear + GLU"
        return None
    if isinstance(block, FeedForwardBlock):
        mlp = block.mlp
        if not (_is_layer_norm(block.norm, width) and len(mlp) == 4 and _is_exact_gelu(mlp[1])
                and mlp[0].bias is not None and mlp[3].bias is not None):
            return "feed-forward block other than LayerNorm -> linear -> GELU -> linear"
        return None
    return f"block {type(block).__name__}"


def _tiers(model):
    tier, tiers = model.tiers, []
    while True:
        tiers.append(tier)
        if not tier.pool:
            return tiers
        tier = tier.inner


def unsupported_reason(model, dt_scale=1.0):
    """Why the fused path cannot run ``model`` (a string), or None when it can."""
    from ssmsignal.models.sashimi import SaShiMi

    if not isinstance(model, SaShiMi):
        return f"not a SaShiMi ({type(model).__name__})"
    if isinstance(dt_scale, torch.Tensor) and dt_scale.dim() > 0:
        return "a per-sequence dt_scale tensor"
    eps = {model.norm.eps}
    if not _is_layer_norm(model.norm, model.head.in_features):
        return "final norm is not a LayerNorm"
    for tier in _tiers(model):
        blocks = list(tier.down_blocks) + list(tier.up_blocks)
        ssm = [b for b in blocks if hasattr(b, "layer")]
        if len({(type(b.layer), b.layer.d_state) for b in ssm}) != 1:
            return "a tier mixes layer kinds or state sizes"
        for block in blocks:
            problem = _block_problem(block, ssm[0].d_model)
            if problem:
                return problem
            eps.add(block.norm.eps)
        is_ssm = [hasattr(b, "layer") for b in blocks]
        if not all(is_ssm) and is_ssm != [True, False] * (len(blocks) // 2):
            return "blocks are not (SSM, feed-forward) pairs"
    if len(eps) != 1:
        return "LayerNorms with different eps"
    if model.head.weight.dtype != torch.float32:  # the kernels compute in float32
        return f"{model.head.weight.dtype} parameters (the fused kernels compute in float32)"
    device = model.head.weight.device
    if device.type != "cuda" and os.environ.get("TRITON_INTERPRET", "") != "1":
        return f"device {device} (the Triton kernel needs CUDA, or TRITON_INTERPRET=1)"
    try:
        import triton  # noqa: F401
    except ImportError:
        return "triton is not installed"
    return None


@dataclass
class _TierPack:
    H: int
    pool: int
    n_down: int  # block pairs before the down-pool (0 unless unet)
    n_up: int
    skip: bool  # the pass after the up-pool adds its input to its output (not unet)
    N2: int
    kind: int
    F: int  # feed-forward hidden width (0: no feed-forward blocks)
    weights: tuple  # (ln, coef, D, out_w, out_b, ff_ln, w1, b1, w2, b2), stacked over pairs
    down: tuple | None  # (W (e H, p H) with ring-ordered columns, b)
    up: tuple | None  # (W (p H, e H), b)


def _f32(t):
    return t.detach().to(torch.float32).contiguous()


def _pack_tier(tier, dt_scale, device):
    from ssmsignal.kernels.triton.sashimi_step import KIND_S4, KIND_S4D
    from ssmsignal.layers import S4

    blocks = list(tier.down_blocks) + list(tier.up_blocks)
    ssm = [b for b in blocks if hasattr(b, "layer")]
    ff = [b for b in blocks if not hasattr(b, "layer")]
    H, N2 = ssm[0].d_model, ssm[0].layer.d_state // 2
    coef, scalars = zip(*[_step_coefficients(b.layer, dt_scale) for b in ssm])
    ln = [torch.stack([b.norm.weight, b.norm.bias]) for b in ssm]  # (2, H) each
    none = torch.zeros(1, device=device)
    weights = [torch.stack(ln), torch.stack(coef), torch.stack(scalars),
               torch.stack([b.layer.output.linear.weight for b in ssm]),
               torch.stack([b.layer.output.linear.bias for b in ssm])]
    if ff:
        weights += [torch.stack([torch.stack([b.norm.weight, b.norm.bias]) for b in ff]),
                    torch.stack([b.mlp[0].weight for b in ff]),
                    torch.stack([b.mlp[0].bias for b in ff]),
                    torch.stack([b.mlp[3].weight for b in ff]),
                    torch.stack([b.mlp[3].bias for b in ff])]
    else:
        weights += [none] * 5
    down = up = None
    step = 2 if ff else 1
    if tier.pool:
        p = tier.pool
        w = tier.down.weight.reshape(-1, p, H)  # (e H, p, H): window position i = time t-p+1+i
        ring = [(s - 1) % p for s in range(p)]  # ring slot s holds window position (s-1) mod p
        down = (_f32(w[:, ring].reshape(-1, p * H)), _f32(tier.down.bias))
        up = (_f32(tier.up.weight), _f32(tier.up.bias))
    kind = KIND_S4 if isinstance(ssm[0].layer, S4) else KIND_S4D
    return _TierPack(H, tier.pool, len(tier.down_blocks) // step, len(tier.up_blocks) // step,
                     not tier.unet, N2,
                     kind, ff[0].mlp[0].out_features if ff else 0,
                     tuple(_f32(w) for w in weights), down, up)


def _step_coefficients(layer, dt_scale):
    """The kernel's step coefficients of one SSM layer: complex planes ``(NK, 2, H, N/2)``
    (real, imaginary) and per-channel scalars.

    S4D: ``dA, dB, 2C`` (``S4D._discretize_step``) and ``(1, H)``: ``D``. S4: ``d, P, Δ B, 2C``
    and ``(3, H)``: ``D, Δ, 2 c``, with ``d = (1 - Δ/2 Λ)^-1`` and ``c = (Δ/2) / (1 + Δ Re
    P* d P)`` of the Woodbury step in ``S4._discretize_step``; the kernel forms that step's other
    coefficients (``a = 2 d - 1``, ``d Δ P``, ``d Δ B``, ``2 c d P``) from these, 4 planes read
    per step instead of 6. Computed in float64, stored in float32.
    """
    from ssmsignal.layers import S4

    dt = layer._dt(float(dt_scale)).detach().double()  # (H,)
    if isinstance(layer, S4):
        Lam, P, B, C = (t.detach().to(torch.complex128) for t in layer._half())  # (H, N/2)
        h = 0.5 * dt[:, None]  # (H, 1)
        d = 1.0 / (1.0 - h * Lam)  # (H, N/2)
        c = h[:, 0] / (1.0 + 2.0 * h[:, 0] * (P.conj() * d * P).sum(-1).real)  # (H,)
        planes = (d, P, dt[:, None] * B, 2.0 * C)
        scalars = torch.stack([layer.D.detach().double(), dt, 2.0 * c])  # (3, H)
    else:
        planes = layer._discretize_step(layer._dt(float(dt_scale)))  # (H, N/2) complex each
        scalars = layer.D.detach()[None]  # (1, H)
    planes = torch.stack([torch.view_as_real(x.resolve_conj().contiguous()) for x in planes])
    return planes.permute(0, 3, 1, 2), scalars  # (NK, 2, H, N/2), (1|3, H)


@torch.no_grad()
def packed_model(model, dt_scale=1.0, bf16_weights=False):
    """Per-tier packed float32 weights of ``model`` for ``dt_scale`` (cached), and the head.

    ``bf16_weights``: the dense maps of the blocks (gated output map, both feed-forward maps)
    rounded to bfloat16 (the kernel computes in float32 from them): a lossy opt-in that reads
    about a third fewer bytes per step (30-43 % by tier and layer kind). Step coefficients,
    norms, biases, pooling maps and the head stay float32.

    Returns ``(tiers, head)`` with ``head = (ln (2, H), [W (C, H) | b (C,)] flat, embed
    (C, H), label_embed or None, eps)``. The cache is keyed by the parameters' storage and
    version counters, as the layers' step cache: in-place updates that do not bump a version
    counter (through ``param.data``, or ``torch.optim`` with ``fused=True``) are not seen.
    """
    device = model.head.weight.device
    key = (float(dt_scale), bool(bf16_weights), device,
           tuple((p.data_ptr(), p._version) for p in model.parameters()))
    hit = _CACHE.get(model)
    if hit is not None and hit[0] == key:
        return hit[1]
    tiers = [_pack_tier(t, dt_scale, device) for t in _tiers(model)]
    if bf16_weights:
        for tp in tiers:  # out_w, w1, w2
            tp.weights = tuple(w.to(torch.bfloat16) if i in (3, 6, 8) else w
                               for i, w in enumerate(tp.weights))
    head = (_f32(torch.stack([model.norm.weight, model.norm.bias])),
            _f32(torch.cat([model.head.weight.reshape(-1), model.head.bias])),
            _f32(model.embed.weight),
            None if model.label_embed is None else _f32(model.label_embed.weight), model.norm.eps)
    _CACHE[model] = (key, (tiers, head))
    return tiers, head


class FusedDecoder:
    """Recurrent state and launch plan of the fused step for one batch.

    ``noise (G, B, C)``, ``forced (G, B)`` (a code >= 0 replaces the drawn one: prompts and
    teacher forcing) and ``codes (G, B)`` are fixed buffers for a block of ``G`` steps (a
    multiple of ``model.frame``); ``next_input (B,)`` holds the code fed at the next step and
    ``logits (B, C)`` the last step's logits. :meth:`run` launches steps ``0 .. n-1`` of a block
    that starts at a multiple of the frame; :meth:`start` comes first (``merge``: then tier 0's
    down pass of step ``t + 1`` runs in step ``t``'s head launch, so :meth:`module_state` is
    one tier-0 down pass ahead).
    """

    def __init__(self, model, batch_size, labels=None, dt_scale=1.0, temperature=1.0,
                 top_p=1.0, block=None, bf16_weights=False):
        self.tiers, self.head = packed_model(model, dt_scale, bf16_weights)
        self.frame, self.batch, self.n_classes = model.frame, batch_size, model.n_classes
        self.block = block or model.frame
        self.temperature, self.top_p = float(temperature), float(top_p)
        device = model.head.weight.device
        B, C = batch_size, model.n_classes
        zeros = lambda *s: torch.zeros(*s, device=device)  # noqa: E731
        self.state = [zeros(sum((t.n_down, t.n_up)), B, 2, t.H, t.N2) for t in self.tiers]
        self.ring = [zeros(B, t.pool, t.H) if t.pool else None for t in self.tiers]
        self.unfolded = [zeros(B, t.pool, t.H) if t.pool else None for t in self.tiers]
        self.z = [zeros(B, t.H) for t in self.tiers]  # input of tier k >= 1
        self.labels = None if labels is None else labels.to(device=device, dtype=torch.long)
        self.next_input = torch.full((B,), SILENCE_CODE, dtype=torch.long, device=device)
        self.noise = zeros(self.block, B, C)  # (G, B, C)
        self.forced = torch.full((self.block, B), -1, dtype=torch.long, device=device)
        self.codes = torch.zeros(self.block, B, dtype=torch.long, device=device)
        self.logits = zeros(B, C)
        from ssmsignal.kernels.triton.sashimi_step import CONFIG, scratch_width

        self.dataflow = [self._dataflow(t, k, device) for k, t in enumerate(self.tiers)]
        self.split = [1 if df else self._split(t, k, device)
                      for k, (t, df) in enumerate(zip(self.tiers, self.dataflow))]
        self.weights = [_split_weights(t, S) for t, S in zip(self.tiers, self.split)]
        width = max(scratch_width(t.H, t.F) for t in self.tiers)
        self.scratch = zeros(B * max(self.split), width)
        # barrier counters of the split launches of one block: one row per launch, zeroed when
        # a block starts (up to 3 split launches per step: two middle-tier passes, the inner)
        self.counters = torch.zeros(4 * self.block, B, dtype=torch.int32, device=device)
        self.error = torch.zeros(1, dtype=torch.int32, device=device)  # a barrier gave up
        if any(self.dataflow):  # hand-off words and per-row launch tags of the dataflow passes
            from ssmsignal.kernels.triton._sashimi_dataflow import buffer_words

            words = max(buffer_words(t.H, t.F, t.n_up) for t in self.tiers)
            self.df_buf = torch.zeros(B, words, dtype=torch.int64, device=device)
            self.df_tag = torch.zeros(B, dtype=torch.int32, device=device)
            self.df_count = torch.zeros(B, dtype=torch.int32, device=device)  # epilogues done
        self._slot = 0
        merge = CONFIG["merge"]
        if merge == "auto":  # an empty down pass (unet=False) is not worth its own launch
            merge = self.tiers[0].n_down == 0
        self.merge = bool(merge) and bool(self.tiers[0].pool) and self.split[0] == 1

    def _split(self, tp, k, device):
        """Programs per row for tier ``k``: 1, or a power of two up to ``CONFIG["split"]``
        that divides every width the tier's launches split and keeps batch * S within half
        the multiprocessors (the split passes spin on a counter until every program of a row
        has arrived, so all of them must be resident at once; the margin leaves room for
        kernels of other streams). One-tile tiers and the CPU interpreter never split."""
        from ssmsignal.kernels.triton.sashimi_step import fits_one_tile, setting

        if device.type != "cuda" or fits_one_tile(tp.H, tp.N2, tp.F, k):
            return 1  # the interpreter runs programs one after the other: no barriers
        sms = torch.cuda.get_device_properties(device).multi_processor_count
        widths = [tp.H, tp.F or tp.H, self.n_classes]
        if tp.pool:
            widths.append(self.tiers[k + 1].H)
        if k:
            widths.append(self.tiers[k - 1].pool * self.tiers[k - 1].H)
        S = int(setting("split", k))
        while S > 1 and (2 * self.batch * S > sms or any(w % S for w in widths)
                         or tp.H // S < 16):
            S //= 2
        return max(S, 1)

    def _dataflow(self, tp, k, device):
        """``(split, ppg, fuse2, epi_split)`` (the :func:`dataflow_pass` settings) when tier
        ``k``'s pass runs as a dataflow pass, else None: with
        ``CONFIG["dataflow"]``, feed-forward blocks, no blocks before the down-pool and the
        whole grid within the multiprocessors (every program resident at once). On the CPU
        interpreter one pair per program group (the order in which it runs programs)."""
        from ssmsignal.kernels.triton._sashimi_dataflow import n_programs
        from ssmsignal.kernels.triton.sashimi_step import KIND_S4, setting

        if not setting("dataflow", k) or not tp.F or tp.n_down or not tp.n_up:
            return None
        S, ppg = int(setting("df_split", k)), int(setting("df_ppg", k))
        fuse2 = bool(setting("df_fuse2", k))
        E = int(setting("df_epi", k)) if k else 1  # up-pool epilogue programs (tiers >= 1)
        if tp.H % S or tp.F % S:
            return None
        if k and (self.tiers[k - 1].pool * self.tiers[k - 1].H) % E:
            E = 1
        if k == 0 and tp.kind == KIND_S4:
            warnings.warn("CONFIG['dataflow'] puts tier 0 of an S4 model on a dataflow pass: "
                          "on the GPU that drifts from the exact step (a known race, "
                          "kernels/NOTES.md); the default [False, True] keeps tier 0 off it",
                          RuntimeWarning, stacklevel=4)
        if device.type != "cuda":
            return S, 1, fuse2, E
        sms = torch.cuda.get_device_properties(device).multi_processor_count
        fits = self.batch * n_programs(tp.n_up, S, ppg, fuse2, E) <= sms
        return (S, ppg, fuse2, E) if fits else None

    def check(self):
        """Raise if a split barrier or a dataflow wait gave up (its row's programs were not all
        resident at once: the results of those launches are wrong). Synchronises."""
        if (max(self.split) > 1 or any(self.dataflow)) and int(self.error.item()):
            raise RuntimeError("a split or dataflow tier pass timed out waiting for the other "
                               "programs of its row (fewer free multiprocessors than assumed); "
                               "set ssmsignal.kernels.triton.sashimi_step.CONFIG['split'] = 1 "
                               "and CONFIG['dataflow'] = False")

    def reset(self):
        """Zero every state and feed silence next (the state of ``SaShiMi.initial_state``)."""
        for buf in self.state + self.ring + self.unfolded + self.z:
            if buf is not None:
                buf.zero_()
        self.next_input.fill_(SILENCE_CODE)

    def run(self, n=None):
        """Launch steps ``0 .. n-1`` (default: the whole block) of the current block."""
        self.counters.zero_()
        self._slot = 0
        for i in range(self.block if n is None else n):
            self.step(i)

    def step(self, t):
        """Launch step ``t``: pooling phase ``t % frame``, buffer row ``t % block``."""
        self._tier(0, t % self.frame, t % self.block)

    def start(self):
        """With ``merge``: launch step 0's tier-0 down pass (every later one runs inside the
        previous step's head launch). Call once before the first step; no-op otherwise."""
        if self.merge:
            self._pass(0, 0, 0, 0, 0, self.tiers[0].n_down, slot=0)

    def _tier(self, k, t_k, i):
        tp = self.tiers[k]
        pro = 0 if k == 0 else 1  # PRO_EMBED, PRO_Z
        if not tp.pool:
            self._pass(k, i, pro, 2 if k == 0 else 1, 0, tp.n_up, skip=tp.skip)
            return
        slot = t_k % tp.pool
        merged = self.merge and k == 0
        if not merged:  # (merged: this down pass ran in the previous step's head launch)
            self._pass(k, i, pro, 0, 0, tp.n_down, slot=slot)  # EPI_RING
        if slot == 0:
            self._tier(k + 1, t_k // tp.pool, i)
        nxt = None
        if merged:
            after = (t_k + 1) % tp.pool
            nxt = (tp.n_down, after, after == 0, tp.down[0], tp.down[1], self.z[1],
                   self.tiers[1].H)
        self._pass(k, i, 2, 2 if k == 0 else 1, tp.n_down, tp.n_up, slot=slot, merge=nxt,
                   skip=tp.skip)

    def _pass(self, k, i, pro, epi, first, n_pairs, slot=0, merge=None, skip=False):
        from ssmsignal.kernels.triton.sashimi_step import tier_pass

        tp = self.tiers[k]
        args = dict(inputs=self.next_input if pro == 0 else self.z[k] if pro == 1 else self.ring[k],
                    unfolded=self.unfolded[k], slot=slot, ek=tp.pool * tp.H, skip=skip)
        if epi == 0:  # ring, then the down-pool map into the inner tier's input
            args.update(out=self.ring[k], pool_now=slot == 0, pool_w=tp.down[0],
                        pool_b=tp.down[1], pool_out=self.z[k + 1], er=self.tiers[k + 1].H)
        elif epi == 1:  # the outer tier's up-pool map into its unfolded rows
            outer = self.tiers[k - 1]
            args.update(pool_w=outer.up[0], pool_b=outer.up[1], pool_out=self.unfolded[k - 1],
                        er=outer.pool * outer.H)
        else:
            args.update(pool_w=self.head[0], pool_b=self.head[1], er=self.n_classes,
                        noise=self.noise[i], forced=self.forced[i], codes=self.codes[i],
                        logits=self.logits, inv_temp=1.0 / self.temperature, top_p=self.top_p,
                        merge=merge)
        if self.dataflow[k] and n_pairs == tp.n_up:
            self._dataflow_pass(k, pro, epi, args)
            return
        S = self.split[k]
        if S > 1:
            if self._slot == self.counters.shape[0]:  # single steps outside run(): start over
                self.counters.zero_()
                self._slot = 0
            args.update(split=S, counters=self.counters[self._slot], error=self.error)
            self._slot += 1
        tier_pass(tier=k, pro=pro, epi=epi, kind=tp.kind, batch=self.batch, H=tp.H, N2=tp.N2,
                  F=tp.F, eps=self.head[4], first=first, n_pairs=n_pairs, weights=self.weights[k],
                  state=self.state[k], scratch=self.scratch, next_codes=self.next_input,
                  emb=self.head[2], labels=self.labels, label_emb=self.head[3], **args)

    def _dataflow_pass(self, k, pro, epi, args):
        from ssmsignal.kernels.triton._sashimi_dataflow import dataflow_pass
        from ssmsignal.kernels.triton.sashimi_step import setting

        tp = self.tiers[k]
        S, ppg, fuse2, E = self.dataflow[k]
        dataflow_pass(pro=pro, epi=epi, kind=tp.kind, batch=self.batch, H=tp.H, N2=tp.N2,
                      F=tp.F, eps=self.head[4], n_pairs=tp.n_up, weights=self.weights[k],
                      state=self.state[k], next_codes=self.next_input, emb=self.head[2],
                      labels=self.labels, label_emb=self.head[3], buf=self.df_buf,
                      ep=self.df_tag, error=self.error, split=S, ppg=ppg, fuse2=fuse2,
                      epi_split=E, counters=self.df_count,
                      max_polls=1 << 18 if self.df_buf.is_cuda else 1,
                      num_warps=setting("df_warps", k), **args)

    def module_state(self, t):
        """The state after step ``t`` in the nested layout of :meth:`SaShiMi.initial_state`."""
        return self._tier_state(0, t)

    def _tier_state(self, k, j):  # j: tier k's last step index
        tp = self.tiers[k]
        s = self.state[k]
        ssm = [torch.complex(s[q, :, 0], s[q, :, 1]) for q in range(s.shape[0])]  # (B, H, N/2)
        per = (lambda q: [ssm[q], None]) if tp.F else (lambda q: [ssm[q]])  # noqa: E731
        out = {"down": [x for q in range(tp.n_down) for x in per(q)],
               "up": [x for q in range(tp.n_down, tp.n_down + tp.n_up) for x in per(q)]}
        if tp.pool:
            p = tp.pool
            out["buffer"] = self.ring[k][:, [(j + 1 + i) % p for i in range(p)]]  # (B, p, H)
            out["unfolded"] = self.unfolded[k].clone()
            out["inner"] = self._tier_state(k + 1, j // p)
        return out


def _split_weights(tp, S):
    """The tier's weights with the gated-output map as ``(pairs, S, 2H, H/S)`` column slices and
    the second feed-forward map as ``(pairs, S, H, F/S)`` (views of the packed ones for S = 1)."""
    ln, coef, D, ow, ob, fln, w1, b1, w2, b2 = tp.weights
    P, H = ow.shape[0], tp.H
    ow = ow.reshape(P, 2 * H, S, H // S).transpose(1, 2).contiguous()  # (P, S, 2H, H/S)
    if tp.F:
        w2 = w2.reshape(P, H, S, tp.F // S).transpose(1, 2).contiguous()  # (P, S, H, F/S)
    return ln, coef, D, ow, ob, fln, w1, b1, w2, b2
