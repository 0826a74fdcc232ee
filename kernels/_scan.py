"""Chunked evaluation of the diagonal linear recurrence behind the selective scan.

The recurrence, per batch ``b``, channel ``c`` and state index ``n``::

    x_t = a_t x_{t-1} + q_t,   a_t = exp(dt_t A[c, n]),   q_t = dt_t u_t B_t[n]
    y_t = sum_n C_t[n] x_t[n]

is linear in the state, so a sequence cut into chunks of ``T`` steps can be solved in two
passes (a two-level blocked scan):

1. *Local pass, all chunks at once.* Each chunk is scanned from a zero state, and the product
   of its decays ``P_t = a_1 ... a_t`` is accumulated alongside. This is a Python loop over the
   ``T`` positions of a chunk, each iteration one fused multiply-add over every chunk of the
   segment (tensors of shape ``(b, G, n_chunks, d/G, N)``), never over single time steps.
2. *Carry pass.* The state entering chunk ``k + 1`` is ``P_T^k x_in^k + local_T^k``: a loop
   over the ``n_chunks`` chunks on ``(b, d, N)`` tensors. Then every state is corrected with
   ``x_t = local_t + P_t x_in`` in one whole-segment operation, and ``y`` is one batched
   matrix product with ``C``.

Only products of decays ``a <= 1`` appear (no ``exp(-S)`` factors), so the result is as
stable as the step-by-step loop for any ``dt`` and ``A``. The sequence is processed in segments
of at most :data:`SEGMENT_ELEMENTS` state elements, so inference memory is bounded regardless
of ``L``; with autograd the intermediate states of the whole sequence are kept for the backward
pass, as for any differentiable scan that does not recompute.
"""

from __future__ import annotations

import torch

#: Time steps per chunk (tuned on a 2-core CPU, see ``kernels/bench/bench_cpu.py``).
SCAN_CHUNK = 32

#: Size, in state elements ``b * d * N * steps``, of the largest temporary of one segment.
SEGMENT_ELEMENTS = 1 << 21


def _local_scan(decay, inject, inplace):
    """Scan every chunk from a zero state along dim 3 (time inside the chunk).

    ``decay, inject``: (b, G, n_chunks, T, N, dg). Returns the local states and the cumulative
    decays, same shape; with ``inplace`` they overwrite ``inject`` and ``decay``.
    """
    decays, injects = decay.unbind(3), inject.unbind(3)  # T views of (b, G, nc, N, dg)
    if inplace:
        for t in range(1, len(decays)):
            injects[t].addcmul_(decays[t], injects[t - 1])
            decays[t].mul_(decays[t - 1])
        return inject, decay
    states, prods = [injects[0]], [decays[0]]
    for t in range(1, len(decays)):
        states.append(torch.addcmul(injects[t], decays[t], states[-1]))
        prods.append(decays[t] * prods[-1])
    return torch.stack(states, dim=3), torch.stack(prods, dim=3)


def _segment(state, dt, w, A, B, C, T, inplace):
    """Outputs and final state of one segment of ``n_chunks * T`` steps.

    Parameters
    ----------
    state : (b, G, N, dg) state before the segment.
    dt, w : (b, G, S, dg) step sizes and ``dt * u`` (S = n_chunks * T steps).
    A : (G, N, dg).
    B, C : (b, G, S, N).

    Returns
    -------
    y : (b, G, S, dg) and the state after the segment, (b, G, N, dg).
    """
    b, G, S, dg = dt.shape
    N = B.shape[-1]
    nc = S // T
    shape = (b, G, nc, T, N, dg)
    dt_c = dt.reshape(b, G, nc, T, 1, dg)
    w_c = w.reshape(b, G, nc, T, 1, dg)
    B_c = B.reshape(b, G, nc, T, N, 1)
    A_c = A.reshape(G, 1, 1, N, dg)
    if inplace:
        decay = torch.mul(dt_c, A_c, out=dt.new_empty(shape)).exp_()  # (b, G, nc, T, N, dg)
        inject = torch.mul(w_c, B_c, out=dt.new_empty(shape))  # (b, G, nc, T, N, dg)
    else:
        decay = torch.exp(dt_c * A_c)  # (b, G, nc, T, N, dg)
        inject = w_c * B_c  # (b, G, nc, T, N, dg)
    local, prod = _local_scan(decay, inject, inplace)  # (b, G, nc, T, N, dg) each
    starts = []
    ends, totals = local[:, :, :, -1].unbind(2), prod[:, :, :, -1].unbind(2)  # (b, G, N, dg)
    for k in range(nc):  # carry the state across chunks
        starts.append(state)
        state = torch.addcmul(ends[k], totals[k], state)  # (b, G, N, dg)
    starts = torch.stack(starts, dim=2)[:, :, :, None]  # (b, G, nc, 1, N, dg)
    if inplace:
        states = local.addcmul_(prod, starts)
    else:
        states = torch.addcmul(local, prod, starts)  # (b, G, nc, T, N, dg)
    y = torch.matmul(C.reshape(b, G, nc, T, 1, N), states)  # (b, G, nc, T, 1, dg)
    return y.reshape(b, G, S, dg), state


def scan_chunked(u, dt, A, B, C, chunk=None):
    """Evaluate the recurrence over a whole sequence.

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
    T = chunk or SCAN_CHUNK
    b, d, L = u.shape
    G, N = B.shape[1], B.shape[2]
    dg = d // G
    inplace = not (torch.is_grad_enabled() and any(t.requires_grad for t in (u, dt, A, B, C)))
    dt_l = dt.reshape(b, G, dg, L).transpose(2, 3).contiguous()  # (b, G, L, dg)
    w_l = (dt * u).reshape(b, G, dg, L).transpose(2, 3).contiguous()  # (b, G, L, dg)
    B_l = B.transpose(2, 3).contiguous()  # (b, G, L, N)
    C_l = C.transpose(2, 3).contiguous()  # (b, G, L, N)
    A_g = A.reshape(G, dg, N).transpose(1, 2).contiguous()  # (G, N, dg)
    seg_len = max(T, SEGMENT_ELEMENTS // max(1, b * d * N) // T * T)
    state = u.new_zeros(b, G, N, dg)  # (b, G, N, dg)
    ys, s = [], 0
    while s < L:
        n = min(seg_len, L - s)
        n, T_seg = (n // T * T, T) if n >= T else (n, n)  # the tail is one short chunk
        sl = slice(s, s + n)
        y, state = _segment(state, dt_l[:, :, sl], w_l[:, :, sl], A_g, B_l[:, :, sl],
                            C_l[:, :, sl], T_seg, inplace)
        ys.append(y)
        s += n
    y = torch.cat(ys, dim=2) if ys else u.new_zeros(b, G, 0, dg)  # (b, G, L, dg)
    return y.transpose(2, 3).reshape(b, d, L), state.transpose(2, 3).reshape(b, d, N)


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
