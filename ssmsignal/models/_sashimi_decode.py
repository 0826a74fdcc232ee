"""Autoregressive sampling from :class:`~ssmsignal.models.SaShiMi` in recurrent mode.

One audio sample costs one :meth:`SaShiMi.step` (O(1) in the length). Sampling uses the
Gumbel-max trick: ``argmax(logits / T + g)`` with ``g = -log(-log U)`` draws from
``softmax(logits / T)``, and nucleus (top-p) filtering sets the logits outside the smallest set
of codes whose probability reaches ``top_p`` to ``-inf`` first. Drawing the noise in chunks
outside the step keeps every step a fixed sequence of tensor operations, which lets the GPU
path capture one step per pooling phase in a CUDA graph (``torch.cuda.CUDAGraph``) and replay it:
a tier with pool ``p`` runs its inner tier only when ``t % p == 0``, so the work of step ``t``
depends only on ``t % frame`` (``frame`` = product of the pools), and ``frame`` graphs cover
every step.

On CUDA, :func:`sample_codes` runs the fused Triton step instead (:mod:`._sashimi_fused`: one
kernel launch per tier pass, 1.6-2.6 per sample instead of ~130) whenever the model is supported
(S4/S4D layers, see :func:`~ssmsignal.models._sashimi_fused.unsupported_reason`); this
module-by-module path stays the reference and the fallback (CPU, Mamba, ``fused=False``,
``SSMSIGNAL_BACKEND=torch``).
"""
from __future__ import annotations

import math
import os
import warnings

import torch
import torch.nn.functional as F

from ssmsignal.layers._common import dt_scale_tensor

from ._mulaw import SILENCE_CODE
from ._sashimi_fused import unsupported_reason

__all__ = ["sample_codes", "sample_codes_fused", "gumbel_noise", "graph_state", "pick_codes"]

_CHUNK = 512  # steps of noise drawn at once: (chunk, batch, n_classes) floats
_GRAPH_STEPS = 64  # fused path: steps per CUDA graph (rounded to a multiple of the frame)


def gumbel_noise(shape, generator, device):
    """Standard Gumbel noise of ``shape`` drawn from ``generator``."""
    u = torch.rand(shape, generator=generator, device=device)  # (..., C) in [0, 1)
    return -torch.log(-torch.log(u.clamp_(1e-10, 1.0 - 1e-7)))


def pick_codes(logits, noise, temperature, top_p):
    """Codes ``(batch,)`` drawn from ``softmax(logits / temperature)`` restricted to top-p."""
    logits = logits.float() / temperature  # (B, C)
    if top_p < 1.0:
        sorted_logits, order = torch.sort(logits, dim=-1, descending=True)  # (B, C)
        probs = torch.softmax(sorted_logits, dim=-1)  # (B, C)
        drop_sorted = (probs.cumsum(dim=-1) - probs) >= top_p  # (B, C): mass before >= p
        drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)  # (B, C)
        logits = logits.masked_fill(drop, float("-inf"))
    return torch.argmax(logits + noise, dim=-1)  # (B,)


def _tree_copy_(dst, src):
    """Copy a nested dict/list/tuple of tensors ``src`` into ``dst`` in place."""
    if isinstance(dst, torch.Tensor):
        if dst is not src:
            dst.copy_(src)
    elif isinstance(dst, dict):
        for key in dst:
            _tree_copy_(dst[key], src[key])
    elif isinstance(dst, (list, tuple)):
        for d, s in zip(dst, src):
            _tree_copy_(d, s)
    elif dst is not None:
        raise TypeError(f"cannot copy recurrent state of type {type(dst).__name__} in place")


@torch.no_grad()
def sample_codes(model, n_steps, batch_size, *, labels=None, prompt=None, dt_scale=1.0,
                 temperature=1.0, top_p=1.0, generator=None, cuda_graphs=True, fused=None,
                 bf16_weights=False):
    """Generate ``n_steps`` mu-law codes after an optional prompt.

    Parameters
    ----------
    model : SaShiMi
        In eval mode; its device and dtype are used.
    n_steps : int
        Number of new codes per sequence.
    batch_size : int
    labels : torch.Tensor, optional
        ``(batch,)`` label indices of a class-conditional model.
    prompt : torch.Tensor, optional
        ``(batch, P)`` codes the sequences must start with (teacher-forced, not returned).
    dt_scale : float
        ``fs_train / fs_generate`` for every SSM layer.
    temperature, top_p : float
        Softmax temperature (> 0) and nucleus mass (0 < top_p <= 1).
    generator : torch.Generator, optional
        On the model's device; seeds the noise.
    cuda_graphs : bool
        Replay captured CUDA graphs of the step when the model is on a GPU.
    fused : bool or None
        Use the fused Triton step (:func:`~ssmsignal.models._sashimi_fused.sample_codes_fused`).
        None (default): when the model is on CUDA, supported, and ``SSMSIGNAL_BACKEND`` is not
        ``torch``; True: always (raises where it cannot run); False: the module path.
    bf16_weights : bool
        Fused path only (a warning elsewhere): read the blocks' dense maps as bfloat16, a lossy
        opt-in for speed (see :func:`~ssmsignal.models._sashimi_fused.packed_model`).

    Returns
    -------
    torch.Tensor
        ``(batch, n_steps)`` int64 codes.
    """
    _check_sampling(temperature, top_p)
    param = model.head.weight
    if fused is None:
        fused = (param.device.type == "cuda" and unsupported_reason(model, dt_scale) is None
                 and os.environ.get("SSMSIGNAL_BACKEND", "").strip().lower() != "torch")
    if fused:
        return sample_codes_fused(model, n_steps, batch_size, labels=labels, prompt=prompt,
                                  dt_scale=dt_scale, temperature=temperature, top_p=top_p,
                                  generator=generator, cuda_graphs=cuda_graphs,
                                  bf16_weights=bf16_weights)
    if bf16_weights:
        warnings.warn("bf16_weights applies to the fused CUDA step only; the module-by-module "
                      "step runs in the model's own dtype", stacklevel=2)
    if param.device.type == "cpu":
        # Per-step tensors are tiny: intra-op threads only add synchronisation (10-100x slower
        # on a busy machine), so the CPU loop runs single-threaded.
        before = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            return _sample(model, n_steps, batch_size, labels, prompt, dt_scale, temperature,
                           top_p, generator, False)
        finally:
            torch.set_num_threads(before)
    return _sample(model, n_steps, batch_size, labels, prompt, dt_scale, temperature, top_p,
                   generator, cuda_graphs)


def _sample(model, n_steps, batch_size, labels, prompt, dt_scale, temperature, top_p,
            generator, cuda_graphs):
    param = model.head.weight
    device = param.device
    n_prompt = 0 if prompt is None else prompt.shape[1]
    total = n_prompt + n_steps
    out = torch.empty(batch_size, total, dtype=torch.long, device=device)  # (B, P + n)
    x = torch.full((batch_size,), SILENCE_CODE, dtype=torch.long, device=device)  # (B,)
    noise = torch.empty(0, batch_size, model.n_classes, device=device)
    use_graphs = cuda_graphs and device.type == "cuda"
    stepper = _GraphedStep(model, x, labels, dt_scale, temperature, top_p) if use_graphs else None
    state = None if use_graphs else model.initial_state(batch_size)
    for t in range(total):
        if t % _CHUNK == 0:
            noise = gumbel_noise((min(_CHUNK, total - t), batch_size, model.n_classes),
                                 generator, device)  # (chunk, B, C)
        if use_graphs:
            code = stepper(t, noise[t % _CHUNK])  # (B,), also fed back as the next input
        else:
            logits, state = model.step(x, state, t, labels=labels, dt_scale=dt_scale)
            code = pick_codes(logits, noise[t % _CHUNK], temperature, top_p)  # (B,)
            x = code
        if t < n_prompt:  # teacher forcing: the prompt overrides the drawn code
            code = prompt[:, t]
            if use_graphs:
                stepper.next_input.copy_(code)
            else:
                x = code
        out[:, t] = code
    return out[:, n_prompt:]


class _GraphedStep:
    """One CUDA graph per pooling phase; each reads ``next_input`` and a noise row, runs
    :meth:`SaShiMi.step`, writes the state back in place and the drawn code to ``next_input``."""

    def __init__(self, model, first_input, labels, dt_scale, temperature, top_p):
        self.next_input = first_input.clone()  # (B,) static input buffer
        self.noise = torch.zeros(first_input.shape[0], model.n_classes,
                                 device=first_input.device)  # (B, C) static noise buffer
        self.state = graph_state(model, first_input, labels, dt_scale)
        initial = _clone_tree(self.state)
        self.graphs = []

        def body(phase):
            logits, new_state = model.step(self.next_input, self.state, phase, labels=labels,
                                           dt_scale=dt_scale)
            code = pick_codes(logits, self.noise, temperature, top_p)
            _tree_copy_(self.state, new_state)
            self.next_input.copy_(code)

        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):  # warm-up (allocator, lazy inits) off the capture
            for phase in range(model.frame):
                body(phase)
        torch.cuda.current_stream().wait_stream(side)
        pool = None
        for phase in range(model.frame):
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph, pool=pool):
                body(phase)
            pool = graph.pool()
            self.graphs.append(graph)
        _tree_copy_(self.state, initial)  # warm-up and capture advanced it: reset
        self.next_input.copy_(first_input)

    def __call__(self, t, noise_row):
        self.noise.copy_(noise_row)
        self.graphs[t % len(self.graphs)].replay()
        return self.next_input.clone()


def graph_state(model, first_input, labels, dt_scale):
    """Initial state whose tensors already have the shapes that :meth:`SaShiMi.step` returns.

    The graph path copies every step's state into fixed buffers, so a state must not change
    shape. One can on the first step: Mamba grows its conv buffer at ``dt_scale < 1`` (more
    taps at the faster rate), with zeros as the older history. A probe step gives the final
    shapes, and the initial state is left-padded with zeros to them, as ``Mamba.step`` does.
    """
    initial = model.initial_state(first_input.shape[0])
    _, probe = model.step(first_input, initial, 0, labels=labels, dt_scale=dt_scale)
    return _map_tree(_left_pad_to, initial, probe)


def _left_pad_to(t, like):
    """``t`` zero-padded on the left of its last dim to ``like``'s shape (a copy)."""
    if t.shape[:-1] != like.shape[:-1] or t.shape[-1] > like.shape[-1]:
        raise ValueError(f"recurrent state changed shape from {tuple(t.shape)} to "
                         f"{tuple(like.shape)} in one step; cannot capture it in a CUDA graph")
    return F.pad(t, (like.shape[-1] - t.shape[-1], 0))


def _clone_tree(tree):
    return _map_tree(lambda t, _: t.clone(), tree, tree)


def _map_tree(fn, tree, other):
    """``fn(leaf, other_leaf)`` over a nested dict/list/tuple/NamedTuple of tensors."""
    if isinstance(tree, torch.Tensor):
        return fn(tree, other)
    if isinstance(tree, dict):
        return {k: _map_tree(fn, v, other[k]) for k, v in tree.items()}
    if isinstance(tree, tuple) and hasattr(tree, "_fields"):  # a NamedTuple (MambaState)
        return type(tree)(*(_map_tree(fn, v, o) for v, o in zip(tree, other)))
    if isinstance(tree, (list, tuple)):
        return type(tree)(_map_tree(fn, v, o) for v, o in zip(tree, other))
    return tree


class _NoiseStream:
    """Gumbel noise for steps ``0 .. total-1``, drawn in the same chunks as the module path."""

    def __init__(self, total, batch, n_classes, generator, device):
        self.draw = lambda n: gumbel_noise((n, batch, n_classes), generator, device)
        self.total, self.start, self.chunk = total, -1, None

    def fill(self, buf, t0, n):
        """``buf[:n]`` <- noise of steps ``t0 .. t0+n-1``."""
        done = 0
        while done < n:
            t = t0 + done
            start = t - t % _CHUNK
            if start != self.start:
                self.start, self.chunk = start, self.draw(min(_CHUNK, self.total - start))
            m = min(n - done, self.chunk.shape[0] - (t - start))
            buf[done:done + m].copy_(self.chunk[t - start:t - start + m])
            done += m


@torch.no_grad()
def sample_codes_fused(model, n_steps, batch_size, *, labels=None, prompt=None, dt_scale=1.0,
                       temperature=1.0, top_p=1.0, generator=None, cuda_graphs=True,
                       bf16_weights=False):
    """:func:`~ssmsignal.models._sashimi_decode.sample_codes` on the fused kernel.

    Same arguments and result (the same noise draws, so the same codes up to float rounding
    of the logits). Raises ``RuntimeError`` when :func:`unsupported_reason` names a problem.
    """
    from ._sashimi_fused import FusedDecoder

    _check_sampling(temperature, top_p)
    reason = unsupported_reason(model, dt_scale)
    if reason:
        raise RuntimeError(f"the fused SaShiMi step cannot run this model: {reason}")
    device = model.head.weight.device
    dt_scale = dt_scale_tensor(dt_scale, batch_size, model.head.weight)  # a float > 0
    _check_codes(model, batch_size, labels, prompt)
    graphs = cuda_graphs and device.type == "cuda"
    block = model.frame * max(1, _GRAPH_STEPS // model.frame) if graphs else model.frame
    dec = FusedDecoder(model, batch_size, labels, dt_scale, temperature, top_p, block,
                       bf16_weights)
    n_prompt = 0 if prompt is None else prompt.shape[1]
    total = n_prompt + n_steps
    noise = _NoiseStream(total, batch_size, model.n_classes, generator, device)
    run = _capture(dec) if graphs else dec.run
    dec.start()
    out = torch.empty(batch_size, math.ceil(total / block) * block, dtype=torch.long,
                      device=device)  # (B, steps rounded up to whole blocks)
    for t0 in range(0, total, block):
        n = min(block, total - t0)
        noise.fill(dec.noise, t0, n)
        dec.forced.fill_(-1)
        if t0 < n_prompt:
            m = min(n, n_prompt - t0)
            dec.forced[:m] = prompt[:, t0:t0 + m].T
        run() if graphs else run(n)
        out[:, t0:t0 + block] = dec.codes.T
    dec.check()
    return out[:, n_prompt:total]


def _check_sampling(temperature, top_p):
    """Unchecked, temperature 0 gives inf/NaN logits and top_p <= 0 masks every code: the
    module path would return arbitrary codes without an error."""
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature!r}")
    if not 0 < top_p <= 1:
        raise ValueError(f"top_p must lie in (0, 1], got {top_p!r}")


def _check_codes(model, batch_size, labels, prompt):
    """The errors the module path raises for labels, and a range check that it leaves to
    ``nn.Embedding`` (the kernel would read outside the tables)."""
    if model.label_embed is None and labels is not None:
        raise ValueError("labels given but the model is unconditional (n_conditions=None)")
    if model.label_embed is not None:
        if labels is None:
            raise ValueError("this model is class-conditional: pass labels of shape (batch,)")
        if tuple(labels.shape) != (batch_size,) or labels.dtype.is_floating_point:
            raise ValueError(f"labels must be ({batch_size},) integers, got "
                             f"{tuple(labels.shape)} {labels.dtype}")
        if bool(((labels < 0) | (labels >= model.n_conditions)).any()):
            raise ValueError(f"labels must lie in 0..{model.n_conditions - 1}")
    if prompt is not None and prompt.numel():
        if prompt.dim() != 2 or prompt.shape[0] != batch_size:
            raise ValueError(f"prompt must be ({batch_size}, P) codes, got {tuple(prompt.shape)}")
        if bool(((prompt < 0) | (prompt >= model.n_classes)).any()):
            raise ValueError(f"prompt codes must lie in 0..{model.n_classes - 1}")


def _capture(dec):
    """One CUDA graph of a whole block of steps; returns its ``replay``."""
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):  # warm-up off the capture: Triton JIT, allocator
        dec.run()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        dec.run()
    dec.reset()  # the warm-up advanced the state
    return graph.replay
