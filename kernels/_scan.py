"""Chunked evaluation (and gradient) of the diagonal linear recurrence of the selective scan.

The recurrence, per batch ``b``, channel ``c`` and state index ``n``::

    x_t = a_t x_{t-1} + q_t,   a_t = exp(dt_t A[c, n]),   q_t = w_t B_t[n],  w_t = dt_t u_t
    y_t = sum_n C_t[n] x_t[n]

is linear in the state, so a sequence cut into chunks of ``T`` steps is solved in three passes
over a segment of many chunks (a two-level blocked scan):

1. *Chunk ends.* Every chunk is run from a zero state, all chunks at once, keeping only the
   running state: a Python loop over the ``T`` positions of a chunk, each iteration one fused
   multiply-add on ``(b, G, n_chunks, N, d/G)`` tensors.
2. *Carry.* The state entering chunk ``k + 1`` is ``exp(A sum_chunk dt) x_in^k + end^k``: a loop
   over the chunks on ``(b, d, N)`` tensors.
3. *States.* The recurrence again, all chunks at once, each from its true entering state; the
   states are written in place and ``y`` is one batched matrix product with ``C``.

No Python loop runs over the sequence's steps. Inside a chunk, pass 3 performs the operations of
the step-by-step loop in its order; only the state entering a chunk comes through the chunk's
total decay ``exp(A sum dt)`` instead of a product of single-step decays (a rounding-level
difference). Only decays multiply states (no growing ``exp(-A t)`` factors), so the result is
as stable as that loop for any ``dt`` and ``A``. The sequence is
processed in segments of at most :data:`SEGMENT_ELEMENTS` state elements, so memory is bounded
whatever ``L`` is.

Gradients (:class:`_ScanFunction`) use the adjoint recurrence, itself the same kind of scan run
backwards in time: ``lam_t = C_t gy_t + a_{t+1} lam_{t+1}`` (``lam_{L-1}`` starts from the
gradient of the last state). Segment by segment, from the last, the forward states are
recomputed from the saved segment-start states, and::

    dC_t[n] = sum_c gy_t[c] x_t[c, n]      dB_t[n] = sum_c lam_t[c, n] w_t[c]
    dw_t[c] = sum_n lam_t[c, n] B_t[n]     g_t[c, n] = lam_t[c, n] x_{t-1}[c, n] a_t[c, n]
    ddt_t[c] = sum_n g_t[c, n] A[c, n] + dw_t[c] u_t[c]     du_t = dw_t dt_t
    dA[c, n] = sum_{b, t} g_t[c, n] dt_t[c]

so the backward pass needs neither stored states for the whole sequence nor more memory than a
few segments.
"""

from __future__ import annotations

import math

import torch

#: Time steps per chunk (tuned on a 2-core CPU, see ``kernels/bench/bench_cpu.py``).
SCAN_CHUNK = 32

#: Size, in state elements ``b * d * N * steps``, of one segment's temporaries.
SEGMENT_ELEMENTS = 1 << 21


def _workspace(like, plan, d, N, count):
    """Flat scratch memory for ``count`` segment-sized tensors, reused by every segment.

    Fresh multi-megabyte tensors are page-faulted in on first touch, which costs as much as the
    arithmetic; reusing one buffer avoids it.
    """
    biggest = max((n for _, n, _ in plan), default=0) * like.shape[0] * d * N
    return [like.new_empty(biggest) for _ in range(count)]


def _view(flat, shape):
    return flat[:math.prod(shape)].view(shape)


def _segment_states(state, dt, A, left, right, T, work, reverse=False):
    """All states of one segment of ``x_t = exp(dt_t A) x_{t-1} + right_t (outer) left_t``.

    Parameters
    ----------
    state : (b, G, N, dg) state before the segment.
    dt, left : (b, G, S, dg) with ``S`` a multiple of ``T``.
    A : (G, N, dg).
    right : (b, G, S, N).
    T : int, steps per chunk.
    work : two flat tensors from :func:`_workspace` (overwritten).
    reverse : bool
        Run backwards in time, ``x_t = exp(dt_t A) x_{t+1} + right_t left_t`` with ``state``
        entering after the last step (used by the adjoint pass).

    Returns
    -------
    states : (b, G, S, N, dg), a view of ``work[1]``, and the final state (b, G, N, dg).
    """
    b, G, S, dg = dt.shape
    N = right.shape[-1]
    nc = S // T
    shape = (b, G, nc, T, N, dg)
    dt_c = dt.reshape(b, G, nc, T, 1, dg)
    A_c = A.reshape(G, 1, 1, N, dg)
    decay = torch.mul(dt_c, A_c, out=_view(work[0], shape)).exp_()  # a_t
    inject = torch.mul(left.reshape(b, G, nc, T, 1, dg), right.reshape(b, G, nc, T, N, 1),
                       out=_view(work[1], shape))  # (b, G, nc, T, N, dg)
    decays, injects = decay.unbind(3), inject.unbind(3)  # T views of (b, G, nc, N, dg)
    order = range(T - 1, -1, -1) if reverse else range(T)
    first, last = order[0], order[-1]
    # 1. the state at the end of every chunk, if the chunk started from zero (running sum only)
    h = injects[first].clone()  # (b, G, nc, N, dg)
    for t in order[1:]:
        torch.addcmul(injects[t], decays[t], h, out=h)
    # 2. carry across chunks with the chunk's total decay exp(A sum(dt))
    total = torch.exp(dt_c.sum(3) * A.reshape(G, 1, N, dg))  # (b, G, nc, N, dg)
    starts = [None] * nc
    for k in (range(nc - 1, -1, -1) if reverse else range(nc)):
        starts[k] = state
        state = torch.addcmul(h[:, :, k], total[:, :, k], state)  # (b, G, N, dg)
    # 3. the recurrence itself, every chunk from its true starting state at once
    injects[first].addcmul_(decays[first], torch.stack(starts, dim=2))
    for prev, t in zip(order, order[1:]):
        injects[t].addcmul_(decays[t], injects[prev])
    state = injects[last][:, :, 0 if reverse else -1].clone()  # (b, G, N, dg)
    return inject.reshape(b, G, S, N, dg), state


def _plan(L, T, batch_elements):
    """Segments ``(start, length, chunk)``: lengths are multiples of ``T`` except a short tail."""
    seg_len = max(T, SEGMENT_ELEMENTS // max(1, batch_elements) // T * T)
    plan, s = [], 0
    while s < L:
        n = min(seg_len, L - s)
        n, T_seg = (n // T * T, T) if n >= T else (n, n)
        plan.append((s, n, T_seg))
        s += n
    return plan


def _time_major(x, G):
    """(b, d, L) -> (b, G, L, d/G), contiguous."""
    b, d, L = x.shape
    return x.reshape(b, G, d // G, L).transpose(2, 3).contiguous()


def _layouts(u, dt, A, B, C):
    """Time-major layouts: dt, w = dt u (b, G, L, dg); A (G, N, dg); B, C (b, G, L, N)."""
    G, N = B.shape[1], B.shape[2]
    dg = u.shape[1] // G
    return (_time_major(dt, G), _time_major(dt * u, G),
            A.reshape(G, dg, N).transpose(1, 2).contiguous(),
            B.transpose(2, 3).contiguous(), C.transpose(2, 3).contiguous())


def _channel_major(x, sl):
    """Write destination for one segment: ``x[..., sl]`` of a (b, G, dg, L) tensor, seen as
    (b, G, n, dg). Segment-sized transposed copies stay in cache; transposing a whole
    (L, dg) tensor at once is several times slower."""
    return x[..., sl].transpose(2, 3)


def _forward(u, dt, A, B, C):
    b, d, L = u.shape
    G, N = B.shape[1], B.shape[2]
    dt_l, w_l, A_g, B_l, C_l = _layouts(u, dt, A, B, C)
    plan = _plan(L, SCAN_CHUNK, b * d * N)
    state = u.new_zeros(b, G, N, d // G)  # (b, G, N, dg)
    y = u.new_empty(b, G, d // G, L)  # (b, G, dg, L)
    starts, work = [], _workspace(u, plan, d, N, 2)
    for s, n, T in plan:
        sl = slice(s, s + n)
        starts.append(state)
        states, state = _segment_states(state, dt_l[:, :, sl], A_g, w_l[:, :, sl], B_l[:, :, sl],
                                        T, work)
        y[..., sl] = torch.einsum("bgtnd,bgtn->bgdt", states, C_l[:, :, sl])  # (b, G, dg, n)
    last = state.transpose(2, 3).reshape(b, d, N)  # (b, d, N)
    return y.reshape(b, d, L), last, starts


class _ScanFunction(torch.autograd.Function):
    """``(y, last_state)`` of the recurrence with a segment-wise recomputing backward pass."""

    @staticmethod
    def forward(ctx, u, dt, A, B, C):
        y, last, starts = _forward(u, dt, A, B, C)
        ctx.save_for_backward(u, dt, A, B, C, *starts)
        return y, last

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, gy, g_last):
        u, dt, A, B, C, *starts = ctx.saved_tensors
        b, d, L = u.shape
        G, N = B.shape[1], B.shape[2]
        dg = d // G
        dt_l, w_l, A_g, B_l, C_l = _layouts(u, dt, A, B, C)
        u_l, gy_l = _time_major(u, G), _time_major(gy, G)  # (b, G, L, dg)
        lam = g_last.reshape(b, G, dg, N).transpose(2, 3).contiguous()  # (b, G, N, dg)
        g_u, g_dt = u.new_empty(b, G, dg, L), u.new_empty(b, G, dg, L)  # (b, G, dg, L)
        g_B, g_C = torch.empty_like(B_l), torch.empty_like(C_l)  # (b, G, L, N)
        g_A = torch.zeros_like(A_g)  # (G, N, dg)
        plan = _plan(L, SCAN_CHUNK, b * d * N)
        work_x, work_lam = _workspace(u, plan, d, N, 2), _workspace(u, plan, d, N, 2)
        for (s, n, T), x0 in zip(reversed(plan), reversed(starts)):
            sl = slice(s, s + n)
            dt_s, w_s, gy_s = dt_l[:, :, sl], w_l[:, :, sl], gy_l[:, :, sl]  # (b, G, n, dg)
            X, _ = _segment_states(x0, dt_s, A_g, w_s, B_l[:, :, sl], T, work_x)  # (b, G, n, N, dg)
            # adjoint, backwards in time: lam_t = a_{t+1} lam_{t+1} + C_t gy_t
            dt_next = dt_l[:, :, s + n:s + n + 1] if s + n < L else torch.zeros_like(dt_s[:, :, :1])
            dt_shift = torch.cat([dt_s[:, :, 1:], dt_next], dim=2)  # dt_{t+1}, (b, G, n, dg)
            Lam, lam = _segment_states(lam, dt_shift, A_g, gy_s, C_l[:, :, sl], T, work_lam,
                                       reverse=True)  # (b, G, n, N, dg)
            g_C[:, :, sl] = torch.matmul(X, gy_s[..., None])[..., 0]  # (b, G, n, N)
            g_B[:, :, sl] = torch.matmul(Lam, w_s[..., None])[..., 0]  # (b, G, n, N)
            g_w = torch.matmul(B_l[:, :, sl, None], Lam)[..., 0, :]  # (b, G, n, dg)
            # g_t = lam_t x_{t-1} a_t, the gradient w.r.t. dt_t A
            g = torch.mul(dt_s[:, :, :, None], A_g[:, None], out=_view(work_x[0], X.shape))
            g.exp_().mul_(Lam)  # (b, G, n, N, dg)
            g[:, :, 1:].mul_(X[:, :, :-1])
            g[:, :, 0].mul_(x0)
            g_dt_s = torch.mul(g, A_g[:, None], out=X).sum(3)  # (b, G, n, dg)
            g_A += torch.mul(g, dt_s[:, :, :, None], out=X).sum((0, 2))  # (G, N, dg)
            _channel_major(g_dt, sl).copy_(g_dt_s.addcmul_(g_w, u_l[:, :, sl]))  # w = dt u
            _channel_major(g_u, sl).copy_(g_w.mul_(dt_s))
        g_A = g_A.transpose(1, 2).reshape(d, N)  # (d, N)
        return (g_u.reshape(b, d, L), g_dt.reshape(b, d, L), g_A, g_B.transpose(2, 3),
                g_C.transpose(2, 3))


def scan_chunked(u, dt, A, B, C):
    """Evaluate the recurrence over a whole sequence (differentiable).

    Parameters
    ----------
    u, dt : Tensor, shape (b, d, L)
        Input and (already biased / softplus-ed / masked) step sizes, compute dtype.
    A : Tensor, shape (d, N)
    B, C : Tensor, shape (b, G, N, L)

    Returns
    -------
    y : Tensor, shape (b, d, L)
        ``sum_n C_t[n] x_t[n]`` (no ``D`` skip, no gate).
    last_state : Tensor, shape (b, d, N)
    """
    if torch.is_grad_enabled() and any(t.requires_grad for t in (u, dt, A, B, C)):
        return _ScanFunction.apply(u, dt, A, B, C)
    y, last, _ = _forward(u, dt, A, B, C)
    return y, last


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
