"""Pure-PyTorch reference implementations: the specification of every kernel op.

Each function here defines what its Triton counterpart in ``ssmsignal.kernels.triton`` must
compute; tests compare the two. The module never imports triton. Arguments are NOT validated
here (except the B/C group rule, in :func:`expand_groups`, which both backends use): the public
ops in :mod:`ssmsignal.kernels` check shapes and then dispatch.

Conventions shared by all ops

* Internal arithmetic is float32, or float64 when the main input is float64 (so gradcheck can run
  in float64 end to end); complex ops use complex64 / complex128 accordingly.
* Outputs come back in the dtype of the main input (``u`` / ``x``), as mamba_ssm does.
* Everything is differentiable by autograd, and memory stays bounded for long sequences: the
  scan works chunk by chunk, the Vandermonde product never builds ``(H, N, L)``, and the Cauchy
  kernel recomputes its chunks in the backward pass.

References: S4 (Gu et al. 2022), S4D (Gu et al. 2022, "On the Parameterization and
Initialization of Diagonal SSMs"), Mamba (Gu & Dao 2023).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ._scan import scan_chunked, scan_step

__all__ = [
    "cauchy",
    "fft_conv",
    "s4d_coefficients",
    "s4d_conv",
    "s4d_kernel",
    "selective_scan",
    "selective_state_update",
    "vandermonde",
]

#: Positions per block in :func:`cauchy` (memory is ``batch * N * CAUCHY_CHUNK`` complex).
CAUCHY_CHUNK = 256


def compute_dtype(x: torch.Tensor) -> torch.dtype:
    """Real dtype used for internal arithmetic: float64 for float64 input, else float32."""
    return torch.float64 if x.dtype in (torch.float64, torch.complex128) else torch.float32


def _complex_dtype(x: torch.Tensor) -> torch.dtype:
    return torch.complex128 if x.dtype in (torch.float64, torch.complex128) else torch.complex64


def _prepare_delta(delta, delta_bias, delta_softplus, dtype):
    """Apply ``delta + delta_bias[:, None]`` then the optional softplus, in ``dtype``."""
    delta = delta.to(dtype)  # (b, d, L) or (b, d)
    if delta_bias is not None:
        bias = delta_bias.to(dtype)  # (d,)
        delta = delta + (bias[:, None] if delta.dim() == 3 else bias)
    if delta_softplus:
        delta = F.softplus(delta)
    return delta


def _finish_output(y, x, D, z):
    """``y + D * x``, then ``y * silu(z)``, in ``y``'s dtype (x, z broadcast like y)."""
    if D is not None:
        d_skip = D.to(y.dtype)  # (d,)
        y = y + (d_skip[:, None] if y.dim() == 3 else d_skip) * x.to(y.dtype)
    if z is not None:
        y = y * F.silu(z.to(y.dtype))
    return y


def _zero_padding(t, valid):
    """``t (b, ..., L)`` with zeros where ``valid (b, L)`` is False (``where``, so NaN goes too)."""
    mask = valid.view(valid.shape[0], *([1] * (t.dim() - 2)), valid.shape[1])  # (b, 1.., L)
    return torch.where(mask, t, 0)


def expand_groups(op, B, C, ndim):
    """``B``, ``C`` as views with a group axis (dim 1) and one common number of groups.

    ``ndim`` is the rank with that axis (4 for the scan, 3 for a step). A tensor without it, or
    with one group, is shared by every channel and expanded to the other's count; two different
    counts above one raise ``ValueError`` naming ``op``.
    """
    B = B if B.dim() == ndim else B.unsqueeze(1)  # (b, G_B, N, ...)
    C = C if C.dim() == ndim else C.unsqueeze(1)  # (b, G_C, N, ...)
    G = max(B.shape[1], C.shape[1])
    if min(B.shape[1], C.shape[1]) not in (1, G):
        raise ValueError(f"{op}: B and C have {B.shape[1]} and {C.shape[1]} groups; they must "
                         "match (or one of them have a single group)")
    return B.expand(-1, G, *B.shape[2:]), C.expand(-1, G, *C.shape[2:])


def selective_scan(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False,
                   return_last_state=False, seq_lengths=None):
    """Selective scan (Mamba's S6 recurrence, real diagonal ``A``).

    Parameters
    ----------
    u : Tensor, shape (b, d, L)
        Input sequence; float16, bfloat16, float32 or float64.
    delta : Tensor, shape (b, d, L)
        Step sizes before bias/softplus.
    A : Tensor, shape (d, N)
        Real diagonal state matrix (normally negative).
    B, C : Tensor, shape (b, N, L) or (b, G, N, L)
        Input-dependent projections; with groups, channel ``c`` uses group ``c // (d // G)``.
        One of them may have a single group (or none) while the other has ``G``.
    D : Tensor, shape (d,), optional
        Skip connection, ``y += D * u``.
    z : Tensor, shape (b, d, L), optional
        Gate, ``y *= silu(z)``.
    delta_bias : Tensor, shape (d,), optional
        Added to ``delta`` before the softplus.
    delta_softplus : bool
        Apply ``softplus`` to ``delta + delta_bias``.
    return_last_state : bool
        Also return the state after the last (valid) position.
    seq_lengths : Tensor of int, shape (b,), optional
        Valid length of each sequence; positions ``t >= seq_lengths[i]`` are padding, whatever
        they hold (NaN included): their output and input gradients are 0, the state is frozen.

    Returns
    -------
    out : Tensor, shape (b, d, L), dtype of ``u``
    last_state : Tensor, shape (b, d, N), float32 (float64 for float64 ``u``)
        Only with ``return_last_state``.

    Notes
    -----
    With ``dt = softplus(delta + delta_bias)`` (or without softplus/bias as requested)::

        x_t = exp(dt_t * A) * x_{t-1} + dt_t * B_t * u_t        (x_{-1} = 0, shape (b, d, N))
        y_t = sum_n C_t[n] * x_t[n] + D * u_t;   y_t *= silu(z_t)

    Padding sets ``dt = 0`` there (so ``x`` is unchanged and ``u`` contributes nothing) and
    zeroes the output. The recurrence is a two-level blocked scan (``kernels/_scan.py``): Python
    loops run over the positions of a chunk and over chunks, each iteration one whole-tensor
    operation on all chunks of a segment, never over the sequence's time steps. Memory is
    bounded by segment workspaces; gradients come from an adjoint scan that recomputes the
    states segment by segment (no ``(b, d, L, N)`` tensor in either pass).
    """
    dtype = compute_dtype(u)
    b, d, L = u.shape  # (b, d, L)
    valid = None
    if seq_lengths is not None:
        positions = torch.arange(L, device=u.device)  # (L,)
        valid = positions[None, :] < seq_lengths.to(u.device)[:, None]  # (b, L) bool
        # padding may hold anything, NaN included: zero every per-step input there so that no
        # output, state or gradient can see it
        u, delta, B, C, z = (None if t is None else _zero_padding(t, valid)
                             for t in (u, delta, B, C, z))
    dt = _prepare_delta(delta, delta_bias, delta_softplus, dtype)  # (b, d, L)
    if valid is not None:
        dt = dt * valid[:, None, :]  # (b, d, L): frozen state on padding
    B, C = expand_groups("selective_scan", B, C, 4)  # (b, G, N, L) each
    y, last = scan_chunked(u.to(dtype), dt, A.to(dtype), B.to(dtype), C.to(dtype))
    out = _finish_output(y, u, D, z)  # (b, d, L)
    if valid is not None:
        out = out * valid[:, None, :]
    out = out.to(u.dtype)
    return (out, last) if return_last_state else out


def selective_state_update(state, x, dt, A, B, C, D=None, z=None, dt_bias=None, dt_softplus=False):
    """One step of the selective scan (decoding), updating ``state`` in place.

    Parameters
    ----------
    state : Tensor, shape (b, d, N), float32 (or float64)
        Recurrent state ``x_{t-1}``; overwritten with ``x_t``.
    x, dt : Tensor, shape (b, d)
        Input ``u_t`` and raw step size ``delta_t``.
    A : Tensor, shape (d, N)
    B, C : Tensor, shape (b, N) or (b, G, N)
        Groups as in :func:`selective_scan`.
    D : Tensor, shape (d,), optional
    z : Tensor, shape (b, d), optional
    dt_bias : Tensor, shape (d,), optional
    dt_softplus : bool

    Returns
    -------
    y : Tensor, shape (b, d), dtype of ``x``
        Exactly one step of :func:`selective_scan` with the same parameters.
    """
    dtype = state.dtype
    step = _prepare_delta(dt, dt_bias, dt_softplus, dtype)  # (b, d)
    B, C = expand_groups("selective_state_update", B, C, 3)  # (b, G, N) each
    new_state, y = scan_step(state, x.to(dtype), step, A.to(dtype), B.to(dtype), C.to(dtype))
    state.copy_(new_state)
    return _finish_output(y, x, D, z).to(x.dtype)


def vandermonde(coef, log_z, L):
    """Vandermonde product behind the S4D convolution kernel.

    Parameters
    ----------
    coef, log_z : Tensor, shape (H, N), complex
        Coefficients and logarithms of the nodes ``z = exp(log_z)``. ``N`` is half the real state
        size: conjugate pairs are implicit in the factor 2.
    L : int
        Kernel length.

    Returns
    -------
    K : Tensor, shape (H, L), real (float32 for complex64, float64 for complex128)
        ``K[h, l] = 2 * Re(sum_n coef[h, n] * exp(log_z[h, n] * l))``.

    Notes
    -----
    Write ``l = j * T + i`` with block size ``T ~ sqrt(L)``. Then ``z^l = z^(jT) * z^i``, so
    ``K[h, jT + i] = 2 Re(sum_n (coef z^(jT))[h, j, n] * (z^i)[h, n, i])`` is one real matrix
    product per channel, ``(L/T, 2N) @ (2N, T)``. Both powers are computed as
    ``exp(log_z * l)`` (never by repeated multiplication), so accuracy matches the direct
    formula. Memory is ``O(H N sqrt(L))``, forward and backward; ``(H, N, L)`` is never built.
    """
    H, N = coef.shape  # (H, N)
    real_dtype = compute_dtype(coef)
    cdtype = _complex_dtype(coef)
    coef = coef.to(cdtype)
    log_z = log_z.to(cdtype)
    if L == 0:
        return coef.real.new_zeros(H, 0)
    T = max(1, int(L ** 0.5))
    n_blocks = -(-L // T)
    inner = torch.arange(T, device=coef.device, dtype=real_dtype)  # (T,)
    outer = torch.arange(n_blocks, device=coef.device, dtype=real_dtype) * T  # (n_blocks,)
    z_re, z_im = _polar_power(log_z[:, :, None], inner)  # z^i, (H, N, T) each
    p_re, p_im = _polar_power(log_z[:, None, :], outer[:, None])  # z^(jT), (H, n_blocks, N)
    c_re, c_im = coef.real[:, None, :], coef.imag[:, None, :]  # (H, 1, N)
    left = torch.cat([c_re * p_re - c_im * p_im,
                      -(c_re * p_im + c_im * p_re)], dim=-1)  # (H, n_blocks, 2N)
    right = torch.cat([z_re, z_im], dim=-2)  # (H, 2N, T)
    K = 2.0 * torch.bmm(left, right)  # (H, n_blocks, T)
    return K.reshape(H, n_blocks * T)[:, :L]


def _polar_power(log_z, l):
    """Real and imaginary parts of ``exp(log_z * l)`` for real ``l`` (broadcasting).

    Same value as ``torch.exp`` of the complex product, computed with real ``exp``, ``cos`` and
    ``sin``, which PyTorch vectorises on the CPU (its complex ``exp`` is ~50x slower).
    """
    magnitude = torch.exp(log_z.real * l)
    angle = log_z.imag * l
    return magnitude * torch.cos(angle), magnitude * torch.sin(angle)


def s4d_coefficients(A, B, C, dt, discretization="zoh"):
    """Discretise a diagonal complex SSM: the O(H N) prologue of :func:`s4d_kernel`.

    Parameters
    ----------
    A, B, C : Tensor, shape (H, N), complex
        Continuous-time diagonal state matrix (``Re A < 0``), input and output vectors.
    dt : Tensor, shape (H,), real positive
        Step size per channel, already multiplied by ``dt_scale``.
    discretization : {"zoh", "bilinear"}

    Returns
    -------
    coef, log_z : Tensor, shape (H, N), complex
        Inputs of :func:`vandermonde`:

        * ZOH: ``log_z = dt A``, ``coef = C B (exp(dt A) - 1) / A``;
        * bilinear: ``z = (1 + dt A / 2) / (1 - dt A / 2)``, ``log_z = log z``,
          ``coef = C B dt / (1 - dt A / 2)``.
    """
    cdtype = _complex_dtype(A) if A.is_complex() else _complex_dtype(dt)
    A, B, C = A.to(cdtype), B.to(cdtype), C.to(cdtype)
    dtA = dt.to(cdtype)[:, None] * A  # (H, N)
    if discretization == "zoh":
        log_z = dtA
        coef = C * B * torch.expm1(dtA) / A  # (H, N)
    elif discretization == "bilinear":
        denom = 1.0 - dtA / 2.0  # (H, N)
        log_z = torch.log((1.0 + dtA / 2.0) / denom)
        coef = C * B * dt.to(cdtype)[:, None] / denom  # (H, N)
    else:
        raise ValueError(f"discretization must be 'zoh' or 'bilinear', got {discretization!r}")
    return coef, log_z


def s4d_kernel(A, B, C, dt, L, discretization="zoh"):
    """S4D convolution kernel ``K (H, L)``: :func:`s4d_coefficients` then :func:`vandermonde`.

    ``K[h, l] = 2 Re(sum_n coef[h, n] z[h, n]^l)`` is the impulse response of the discretised
    diagonal system ``x_l = z x_{l-1} + dB u_l``, ``y_l = 2 Re(C x_l)`` (S4D, Gu et al. 2022).
    """
    coef, log_z = s4d_coefficients(A, B, C, dt, discretization)
    return vandermonde(coef, log_z, L)


def s4d_conv(u, log_z, coef, D=None):
    """S4D convolution in the layers' layout: ``u (b, L, H)`` real -> ``y (b, L, H)``.

    ``log_z, coef`` are ``(H, N)`` complex as in :func:`vandermonde`, or ``(b, H, N)`` (one set
    per sequence); ``D (H,)`` optional. ``y[b, t, h] = sum_{j <= t} K[h, j] u[b, t - j, h] +
    D[h] u[b, t, h]``, ``K = vandermonde(coef, log_z, L)``: the output of the recurrence
    ``x_t = z x_{t-1} + u_t``, ``y_t = 2 Re(sum_n coef_n x_t) + D u_t``. Computed here as the
    S4D layer's FFT path does it (the Triton kernel runs the recurrence).
    """
    b, L, H = u.shape  # (b, L, H)
    x = u.transpose(1, 2)  # (b, H, L)
    if log_z.dim() == 2:
        y = fft_conv(x, vandermonde(coef, log_z, L), D)  # (b, H, L)
    else:  # one kernel per sequence: fold the batch into the channels
        N = log_z.shape[-1]
        k = vandermonde(coef.reshape(b * H, N), log_z.reshape(b * H, N), L)  # (b*H, L)
        y = fft_conv(x.reshape(1, b * H, L), k, None if D is None else D.repeat(b))
    return y.reshape(b, H, L).transpose(1, 2)  # (b, L, H)


def _cauchy_block(v, z, w):
    """``sum_n v[..., n] / (z[l] - w[..., n])`` for one block of ``z`` (all in memory)."""
    return (v[..., None, :] / (z[:, None] - w[..., None, :])).sum(-1)  # (..., T)


class _ChunkedCauchy(torch.autograd.Function):
    """Cauchy kernel evaluated in blocks of ``z``; the backward pass recomputes each block.

    Saving the blocks for autograd would keep a ``(..., L, N)`` tensor alive; recomputing them
    keeps both passes at ``(..., CAUCHY_CHUNK, N)``.
    """

    @staticmethod
    def forward(ctx, v, z, w):
        ctx.save_for_backward(v, z, w)
        blocks = [_cauchy_block(v, z[s:s + CAUCHY_CHUNK], w)
                  for s in range(0, z.shape[0], CAUCHY_CHUNK)]
        return torch.cat(blocks, dim=-1) if blocks else v.new_zeros(*v.shape[:-1], 0)  # (..., L)

    @staticmethod
    def backward(ctx, grad_out):
        v, z, w = ctx.saved_tensors
        grad_v, grad_w = torch.zeros_like(v), torch.zeros_like(w)
        grad_z = torch.zeros_like(z)
        for s in range(0, z.shape[0], CAUCHY_CHUNK):
            with torch.enable_grad():
                vb, zb, wb = (t.detach().requires_grad_() for t in (v, z[s:s + CAUCHY_CHUNK], w))
                block = _cauchy_block(vb, zb, wb)
                gv, gz, gw = torch.autograd.grad(block, (vb, zb, wb),
                                                 grad_out[..., s:s + CAUCHY_CHUNK])
            grad_v += gv
            grad_w += gw
            grad_z[s:s + CAUCHY_CHUNK] = gz
        return grad_v, grad_z, grad_w


def cauchy(v, z, w):
    """Cauchy kernel of DPLR S4.

    Parameters
    ----------
    v, w : Tensor, shape (..., N), complex
    z : Tensor, shape (L,), complex

    Returns
    -------
    Tensor, shape (..., L), complex (complex128 if any input is complex128, else complex64)
        ``out[..., l] = sum_n v[..., n] / (z[l] - w[..., n])``.

    Notes
    -----
    Evaluated in blocks of ``CAUCHY_CHUNK`` values of ``z`` so memory is ``(..., chunk, N)``
    in both the forward and the backward pass (no ``(..., L, N)`` tensor).
    """
    wide = any(t.dtype in (torch.complex128, torch.float64) for t in (v, z, w))
    cdtype = torch.complex128 if wide else torch.complex64
    v, w = torch.broadcast_tensors(v.to(cdtype), w.to(cdtype))  # (..., N)
    return _ChunkedCauchy.apply(v, z.to(cdtype), w)


def _fast_fft_size(n: int) -> int:
    """Smallest integer ``>= n`` whose only prime factors are 2, 3 and 5."""
    best = 1 << max(0, (n - 1).bit_length())
    p5 = 1
    while p5 < best:
        p35 = p5
        while p35 < best:
            m = p35
            while m < n:
                m *= 2
            best = min(best, m)
            p35 *= 3
        p5 *= 5
    return best


def fft_conv(u, k, D=None):
    """Causal linear convolution of each channel with its kernel, via the real FFT.

    Parameters
    ----------
    u : Tensor, shape (B, H, L), real
    k : Tensor, shape (H, Lk), real, ``Lk <= L`` (zero-padded to ``L``)
    D : Tensor, shape (H,), optional

    Returns
    -------
    Tensor, shape (B, H, L), dtype of ``u``
        ``y[b, h, t] = sum_{j <= t} k[h, j] u[b, h, t - j] + D[h] u[b, h, t]``.

    Notes
    -----
    The FFT length is the smallest 2-3-5-smooth size ``>= 2L``, so the circular convolution
    equals the linear one on the first ``L`` outputs (no wrap-around).
    """
    dtype = compute_dtype(u)
    L = u.shape[-1]
    n = _fast_fft_size(2 * L)
    u_f = torch.fft.rfft(u.to(dtype), n=n)  # (B, H, n // 2 + 1)
    k_f = torch.fft.rfft(k.to(dtype), n=n)  # (H, n // 2 + 1)
    y = torch.fft.irfft(u_f * k_f, n=n)[..., :L]  # (B, H, L)
    if D is not None:
        y = y + D.to(dtype)[:, None] * u.to(dtype)
    return y.to(u.dtype)
