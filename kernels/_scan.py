"""Chunked evaluation of the diagonal linear recurrence used by the selective scan.

The recurrence, per batch ``b``, channel ``c`` and state index ``n``::

    x_t = exp(dt_t A_n) x_{t-1} + dt_t u_t B_t[n],      y_t = sum_n C_t[n] x_t[n]

Within a chunk of ``T`` steps starting from state ``x_0`` let ``c_t = sum_{s <= t} dt_s`` and
``S_t = A_n c_t`` (so ``exp(S_t - S_s)`` is the decay from step ``s`` to step ``t``). Then::

    x_t = exp(S_t) * (x_0 + sum_{s <= t} exp(-S_s) dt_s u_s B_s[n])

which is a handful of whole-chunk tensor operations (an outer product, ``exp``, a cumulative
sum). ``exp(-S_s)`` can overflow when the decay inside a chunk is large, so a chunk whose
``max |S|`` exceeds a safe bound for the dtype is split in two, recursively (down to a single
step, where the formula is the plain recurrence). Each term ``exp(S_t) exp(-S_s)`` then has the
relative accuracy of ``exp(S_t - S_s)``, and the rounding error of the cumulative sum is bounded
by the same sum of decayed magnitudes that bounds the step-by-step loop. The state is carried
between chunks by a Python loop over chunks (``L / T`` iterations).
"""

from __future__ import annotations

import torch

#: Time steps per chunk (tuned on a 2-core CPU, see ``kernels/bench/bench_cpu.py``).
SCAN_CHUNK = 64

#: Largest ``|A c_t|`` allowed inside a chunk before it is split: ``exp`` of it (times the
#: input) must stay far from overflow, with room for the cumulative sum.
_LOG_LIMIT = {torch.float32: 40.0, torch.float64: 300.0}


def _chunk(x0, dt, w, A, B, C):
    """States and outputs of one chunk.

    Parameters
    ----------
    x0 : (b, G, dg, N) state before the chunk.
    dt, w : (b, G, dg, T) step sizes and ``dt * u``.
    A : (G, dg, N).
    B, C : (b, G, T, N).

    Returns
    -------
    y : (b, G, dg, T) and the state after the chunk, (b, G, dg, N).
    """
    T = dt.shape[-1]
    if T == 1:  # the plain recurrence: safe for any decay
        state = torch.exp(dt * A) * x0 + w * B[:, :, 0, None]  # (b, G, dg, N)
        return torch.einsum("bgdn,bgn->bgd", state, C[:, :, 0])[..., None], state
    c = dt.cumsum(-1)  # (b, G, dg, T)
    bound = float((c.detach().abs().amax(-1) * A.detach().abs().amax(-1)).amax())
    if bound > _LOG_LIMIT[dt.dtype]:
        h = T // 2
        y1, x_mid = _chunk(x0, dt[..., :h], w[..., :h], A, B[:, :, :h], C[:, :, :h])
        y2, x_end = _chunk(x_mid, dt[..., h:], w[..., h:], A, B[:, :, h:], C[:, :, h:])
        return torch.cat([y1, y2], dim=-1), x_end
    S = c[..., None] * A[:, :, None, :]  # (b, G, dg, T, N)
    decay = torch.exp(S)  # (b, G, dg, T, N)
    inject = w[..., None] * B[:, :, None]  # (b, G, dg, T, N)
    states = (inject / decay).cumsum(-2) + x0[..., None, :]  # (b, G, dg, T, N)
    states = states * decay  # (b, G, dg, T, N)
    y = torch.einsum("bgdtn,bgtn->bgdt", states, C)  # (b, G, dg, T)
    return y, states[..., -1, :]


def scan_chunked(u, dt, A, B, C, chunk=None):
    """Evaluate the recurrence over a whole sequence, chunk by chunk.

    Parameters
    ----------
    u, dt : Tensor, shape (b, d, L)
        Input and (already biased / softplus-ed / masked) step sizes, compute dtype.
    A : Tensor, shape (d, N)
    B, C : Tensor, shape (b, G, N, L)
    chunk : int, optional
        Steps per chunk (default :data:`SCAN_CHUNK`).

    Returns
    -------
    y : Tensor, shape (b, d, L)
        ``sum_n C_t[n] x_t[n]`` (no ``D`` skip, no gate).
    last_state : Tensor, shape (b, d, N)
    """
    chunk = chunk or SCAN_CHUNK
    b, d, L = u.shape
    G, N = B.shape[1], B.shape[2]
    dg = d // G
    dt_g = dt.reshape(b, G, dg, L)  # (b, G, dg, L)
    w_g = (dt * u).reshape(b, G, dg, L)  # (b, G, dg, L)
    A_g = A.reshape(G, dg, N)  # (G, dg, N)
    B_t = B.transpose(-1, -2).contiguous()  # (b, G, L, N)
    C_t = C.transpose(-1, -2).contiguous()  # (b, G, L, N)
    state = u.new_zeros(b, G, dg, N)  # (b, G, dg, N)
    ys = []
    for s in range(0, L, chunk):
        e = min(L, s + chunk)
        y, state = _chunk(state, dt_g[..., s:e], w_g[..., s:e], A_g, B_t[:, :, s:e], C_t[:, :, s:e])
        ys.append(y)
    y = torch.cat(ys, dim=-1) if ys else u.new_zeros(b, G, dg, 0)  # (b, G, dg, L)
    return y.reshape(b, d, L), state.reshape(b, d, N)


def scan_step(state, x, dt, A, B, C):
    """One step of the recurrence.

    Parameters
    ----------
    state : (b, d, N); x, dt : (b, d); A : (d, N); B, C : (b, G, N).

    Returns
    -------
    new_state : (b, d, N) and y : (b, d) (no ``D`` skip, no gate).
    """
    b, d, N = state.shape
    G = B.shape[1]
    B_c = B.repeat_interleave(d // G, dim=1)  # (b, d, N)
    C_c = C.repeat_interleave(d // G, dim=1)  # (b, d, N)
    new_state = torch.exp(dt[..., None] * A) * state + (dt * x)[..., None] * B_c  # (b, d, N)
    y = (new_state * C_c).sum(-1)  # (b, d)
    return new_state, y
