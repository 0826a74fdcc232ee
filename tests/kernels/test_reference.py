"""The PyTorch reference ops against naive formulas, in float64, with gradients.

Each naive formula here is written independently of ``kernels/reference.py``: a per-step loop for
the scan, the materialised ``(H, N, L)`` Vandermonde matrix, explicit recurrences for the S4D
discretisations, the direct Cauchy sum and a direct causal convolution.
"""

import pytest
import torch
import torch.nn.functional as F
from torch.autograd import gradcheck

from ssmsignal.kernels import (cauchy, fft_conv, reference, s4d_kernel, selective_scan,
                               selective_state_update, vandermonde)
from ssmsignal.kernels import _scan

F64 = torch.float64
C128 = torch.complex128


def naive_selective_scan(u, delta, A, B, C, D=None, z=None, delta_bias=None,
                         delta_softplus=False):
    """One Python step per time step; B, C of shape (b, G, N, L). Returns (out, last_state)."""
    b, d, L = u.shape
    G = B.shape[1]
    if delta_bias is not None:
        delta = delta + delta_bias[:, None]
    if delta_softplus:
        delta = F.softplus(delta)
    B_c = B.repeat_interleave(d // G, dim=1)  # channel c uses group c // (d // G)
    C_c = C.repeat_interleave(d // G, dim=1)
    x = torch.zeros(b, d, A.shape[1], dtype=F64)
    ys = []
    for t in range(L):
        x = torch.exp(delta[:, :, t, None] * A) * x + delta[:, :, t, None] * B_c[..., t] * u[:, :, t, None]
        ys.append((C_c[..., t] * x).sum(-1))
    out = torch.stack(ys, -1) if ys else torch.zeros(b, d, 0, dtype=F64)
    if D is not None:
        out = out + D[:, None] * u
    if z is not None:
        out = out * z * torch.sigmoid(z)
    return out, x


def assert_scan_matches_loop(args, loop_args=None):
    """``selective_scan(**args)`` (softplus) vs the step loop on ``loop_args`` (default: the same
    arguments), output and last state at 1e-10; returns ``(out, last_state, loop output)``."""
    want, want_last = naive_selective_scan(**(args if loop_args is None else loop_args),
                                           delta_softplus=True)
    got, last = selective_scan(**args, delta_softplus=True, return_last_state=True)
    torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(last, want_last, rtol=1e-10, atol=1e-10)
    return got, last, want


def scan_inputs(b, d, L, N, G, seed, dtype=F64, decay_scale=1.0):
    gen = torch.Generator().manual_seed(seed)

    def rnd(*shape):
        return torch.randn(*shape, generator=gen, dtype=dtype)

    return dict(u=rnd(b, d, L), delta=0.5 * rnd(b, d, L),
                A=-decay_scale * torch.rand(d, N, generator=gen, dtype=dtype) * 4,
                B=rnd(b, G, N, L), C=rnd(b, G, N, L), D=rnd(d), z=rnd(b, d, L),
                delta_bias=0.3 * rnd(d))


@pytest.mark.parametrize("L", [1, 7, 1000])
@pytest.mark.parametrize("G", [1, 2])
def test_selective_scan_matches_step_loop(L, G):
    x = scan_inputs(b=2, d=6, L=L, N=5, G=G, seed=L + G)
    got, last, _ = assert_scan_matches_loop(x)
    assert got.dtype == F64 and last.dtype == F64


def test_selective_scan_plain_and_ungrouped_bc():
    """No optional arguments; B and C given as (b, N, L)."""
    x = scan_inputs(b=3, d=5, L=130, N=4, G=1, seed=3)
    delta = x["delta"].abs()  # raw (positive) step sizes, no softplus
    want, _ = naive_selective_scan(x["u"], delta, x["A"], x["B"], x["C"])
    got = selective_scan(x["u"], delta, x["A"], x["B"][:, 0], x["C"][:, 0])
    torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("dtype,tol", [(F64, 1e-9), (torch.float32, 2e-4)])
def test_selective_scan_strong_decay_stays_finite(dtype, tol):
    """Large dt*A (single-step decays underflow to 0): outputs stay finite and match the loop."""
    x = scan_inputs(b=2, d=3, L=300, N=4, G=1, seed=5, decay_scale=200.0)
    x["delta"], x["delta_bias"] = x["delta"].abs() * 3, x["delta_bias"].abs()  # dt > 0
    want, want_last = naive_selective_scan(**x)
    got, last = selective_scan(**{k: v.to(dtype) for k, v in x.items()}, return_last_state=True)
    assert torch.isfinite(got).all() and got.dtype == dtype and last.dtype == dtype
    torch.testing.assert_close(got.double(), want, rtol=tol, atol=tol)
    torch.testing.assert_close(last.double(), want_last, rtol=tol, atol=tol)


@pytest.mark.parametrize("chunk,segment_steps", [(1, 5), (3, 7), (16, 1000), (4, 8)])
def test_selective_scan_chunk_and_segment_sizes_do_not_matter(monkeypatch, chunk, segment_steps):
    b, d, N = 2, 4, 3
    x = scan_inputs(b=b, d=d, L=37, N=N, G=2, seed=chunk)
    monkeypatch.setattr(_scan, "SCAN_CHUNK", chunk)
    monkeypatch.setattr(_scan, "SEGMENT_ELEMENTS", b * d * N * segment_steps)
    assert_scan_matches_loop(x)


def test_selective_scan_scratch_memory_does_not_grow_with_length(monkeypatch):
    """The segment workspaces (the only state-sized tensors) have the same size for any L."""
    sizes = []
    real_workspace = _scan._workspace

    def recording(like, plan, d, N, count):
        work = real_workspace(like, plan, d, N, count)
        sizes.append(sum(w.numel() for w in work))
        return work

    monkeypatch.setattr(_scan, "_workspace", recording)
    monkeypatch.setattr(_scan, "SEGMENT_ELEMENTS", 2 * 4 * 3 * 64)  # 64 steps per segment
    for L in (640, 6400):
        x = scan_inputs(b=2, d=4, L=L, N=3, G=1, seed=L, dtype=torch.float32)
        selective_scan(**x, delta_softplus=True)
        args = {k: v.clone().requires_grad_() for k, v in x.items()}
        selective_scan(**args, delta_softplus=True).sum().backward()
    assert len(sizes) == 8  # per length: forward without grad, forward + 2 in backward
    assert set(sizes) == {2 * 2 * 4 * 3 * 64}  # two segment-sized buffers, whatever L is


@pytest.mark.parametrize("garbage", [1e3, float("nan"), float("inf")])
def test_selective_scan_padding_does_not_leak(garbage):
    lengths = [9, 4, 0]
    x = scan_inputs(b=3, d=4, L=9, N=3, G=2, seed=11)
    for i, n in enumerate(lengths):  # garbage after the end of each sequence
        for key in ("u", "delta", "B", "C", "z"):
            x[key][i, ..., n:] = garbage
    leaves = {k: v.clone().requires_grad_() for k, v in x.items()}
    got, last = selective_scan(**leaves, delta_softplus=True, return_last_state=True,
                               seq_lengths=torch.tensor(lengths))
    (got.sum() + last.sum()).backward()
    for key, leaf in leaves.items():  # gradients: finite, and 0 on the padding
        assert torch.isfinite(leaf.grad).all(), key
        if key in ("u", "delta", "B", "C", "z"):
            for i, n in enumerate(lengths):
                assert (leaf.grad[i, ..., n:] == 0).all(), key
    got, last = got.detach(), last.detach()
    for i, n in enumerate(lengths):
        one = {k: (v[i:i + 1, ..., :n] if v.dim() >= 3 else v) for k, v in x.items()}
        want, want_last = naive_selective_scan(**one, delta_softplus=True)
        torch.testing.assert_close(got[i:i + 1, :, :n], want, rtol=1e-10, atol=1e-10)
        torch.testing.assert_close(last[i:i + 1], want_last, rtol=1e-10, atol=1e-10)
        assert (got[i, :, n:] == 0).all()


@pytest.mark.parametrize("B_groups,C_groups", [(0, 2), (2, 0), (1, 3), (3, 1)])
def test_single_group_b_or_c_is_shared(B_groups, C_groups):
    """B or C without groups (0: no group axis) or with one group serves every channel while
    the other has G groups: scan and step equal the loop with that tensor repeated G times."""
    b, d, L, N = 2, 6, 9, 3
    G = max(B_groups, C_groups)
    x = scan_inputs(b=b, d=d, L=L, N=N, G=G, seed=40 + B_groups)
    full = dict(x)
    for key, groups in (("B", B_groups), ("C", C_groups)):
        if groups <= 1:
            shared = x[key][:, :1]  # (b, 1, N, L)
            x[key] = shared if groups else shared[:, 0]
            full[key] = shared.expand(-1, G, -1, -1)
    _, _, want = assert_scan_matches_loop(x, full)
    state = torch.zeros(b, d, N, dtype=F64)
    y = selective_state_update(state, x["u"][..., 0], x["delta"][..., 0], x["A"],
                               x["B"][..., 0], x["C"][..., 0], D=x["D"], z=x["z"][..., 0],
                               dt_bias=x["delta_bias"], dt_softplus=True)
    torch.testing.assert_close(y, want[..., 0], rtol=1e-10, atol=1e-10)


def test_selective_scan_low_precision_in_and_out():
    x = scan_inputs(b=1, d=4, L=20, N=3, G=1, seed=2)
    want = selective_scan(**x, delta_softplus=True)
    args = {k: (v.to(torch.bfloat16) if k in ("u", "delta", "z") else v.float())
            for k, v in x.items()}
    got, last = selective_scan(**args, delta_softplus=True, return_last_state=True)
    assert got.dtype == torch.bfloat16 and last.dtype == torch.float32
    torch.testing.assert_close(got.double(), want, rtol=0.05, atol=0.05)


@pytest.mark.parametrize("chunk,segment_steps,padded", [(4, 1000, False), (2, 4, True)])
def test_selective_scan_gradcheck(monkeypatch, chunk, segment_steps, padded):
    """Gradients cross chunks, segments (recomputed backwards) and the short tail chunk."""
    b, d, N = 2, 4, 3
    monkeypatch.setattr(_scan, "SCAN_CHUNK", chunk)
    monkeypatch.setattr(_scan, "SEGMENT_ELEMENTS", b * d * N * segment_steps)
    x = scan_inputs(b=b, d=d, L=9, N=N, G=2, seed=7 + chunk)
    names = list(x)
    lengths = torch.tensor([9, 6]) if padded else None

    def fn(*tensors):
        return selective_scan(**dict(zip(names, tensors)), delta_softplus=True,
                              return_last_state=True, seq_lengths=lengths)

    inputs = tuple(v.clone().requires_grad_() for v in x.values())
    assert gradcheck(fn, inputs)


def test_selective_scan_backward_matches_autograd_of_step_loop():
    """Analytic backward vs autograd through the naive loop, float32 groups=1 (B as (b, N, L))."""
    x = scan_inputs(b=2, d=3, L=70, N=4, G=1, seed=21)
    x["B"], x["C"] = x["B"][:, 0], x["C"][:, 0]
    weights = torch.randn(2, 3, 70, dtype=F64)
    grads = []
    for fn in (selective_scan, naive_selective_scan):
        leaves = {k: v.clone().requires_grad_() for k, v in x.items()}
        if fn is naive_selective_scan:
            args = dict(leaves, B=leaves["B"][:, None], C=leaves["C"][:, None])
            out, last = fn(**args, delta_softplus=True)
        else:
            out, last = fn(**leaves, delta_softplus=True, return_last_state=True)
        ((out * weights).sum() + last.square().sum()).backward()
        grads.append({k: v.grad for k, v in leaves.items()})
    for k in x:
        torch.testing.assert_close(grads[0][k], grads[1][k], rtol=1e-9, atol=1e-9, msg=k)


def test_selective_state_update_steps_equal_scan():
    b, d, L, N, G = 2, 6, 7, 4, 2
    x = scan_inputs(b=b, d=d, L=L, N=N, G=G, seed=13)
    want, want_last = selective_scan(**x, delta_softplus=True, return_last_state=True)
    state = torch.zeros(b, d, N, dtype=F64)
    steps = []
    for t in range(L):
        y = selective_state_update(state, x["u"][..., t], x["delta"][..., t], x["A"],
                                   x["B"][..., t], x["C"][..., t], D=x["D"], z=x["z"][..., t],
                                   dt_bias=x["delta_bias"], dt_softplus=True)
        steps.append(y)
    torch.testing.assert_close(torch.stack(steps, -1), want, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(state, want_last, rtol=1e-10, atol=1e-10)  # updated in place


def test_selective_state_update_float32_state_and_ungrouped():
    gen = torch.Generator().manual_seed(0)
    state = torch.randn(2, 3, 4, generator=gen)
    x, dt, B, C = (torch.randn(*s, generator=gen) for s in [(2, 3), (2, 3), (2, 4), (2, 4)])
    A = -torch.rand(3, 4, generator=gen)
    expected_state = torch.exp(dt[..., None] * A) * state + (dt * x)[..., None] * B[:, None]
    y = selective_state_update(state, x.half(), dt, A, B, C)
    assert y.dtype == torch.float16 and state.dtype == torch.float32
    torch.testing.assert_close(state, expected_state, rtol=1e-3, atol=1e-3)
    torch.testing.assert_close(y.float(), (expected_state * C[:, None]).sum(-1), rtol=1e-2,
                               atol=1e-2)


def complex_randn(gen, *shape):
    return torch.complex(torch.randn(*shape, generator=gen, dtype=F64),
                         torch.randn(*shape, generator=gen, dtype=F64))


def s4d_params(H, N, seed):
    gen = torch.Generator().manual_seed(seed)
    A = torch.complex(-0.05 - torch.rand(H, N, generator=gen, dtype=F64),
                      3 * torch.randn(H, N, generator=gen, dtype=F64))
    dt = 0.01 + 0.1 * torch.rand(H, generator=gen, dtype=F64)
    return A, complex_randn(gen, H, N), complex_randn(gen, H, N), dt


@pytest.mark.parametrize("L", [1, 7, 1000])
def test_vandermonde_matches_materialised(L):
    A, coef, _, dt = s4d_params(H=3, N=5, seed=L)
    log_z = dt[:, None] * A  # (H, N)
    powers = torch.exp(log_z[:, :, None] * torch.arange(L, dtype=F64))  # (H, N, L)
    want = 2 * torch.einsum("hn,hnl->hl", coef, powers).real
    got = vandermonde(coef, log_z, L)
    assert got.shape == (3, L) and got.dtype == F64
    torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-10)
    assert vandermonde(coef.to(torch.complex64), log_z.to(torch.complex64), L).dtype == torch.float32


@pytest.mark.parametrize("disc", ["zoh", "bilinear"])
@pytest.mark.parametrize("L", [1, 7, 1000])
def test_s4d_kernel_is_impulse_response_of_recurrence(disc, L):
    A, B, C, dt = s4d_params(H=3, N=4, seed=len(disc) + L)
    dtA = dt[:, None] * A
    if disc == "zoh":
        dA, dB = torch.exp(dtA), (torch.exp(dtA) - 1) / A * B
    else:
        dA, dB = (1 + dtA / 2) / (1 - dtA / 2), dt[:, None] * B / (1 - dtA / 2)
    x, want = dB.clone(), []
    for _ in range(L):  # impulse at l = 0: x_l = dA^l dB, K_l = 2 Re(C x_l)
        want.append(2 * (C * x).sum(-1).real)
        x = dA * x
    got = s4d_kernel(A, B, C, dt, L, discretization=disc)
    torch.testing.assert_close(got, torch.stack(want, -1), rtol=1e-9, atol=1e-9)


def test_vandermonde_and_s4d_gradcheck():
    A, B, C, dt = s4d_params(H=2, N=3, seed=1)
    inputs = tuple(t.clone().requires_grad_() for t in (A, B, C, dt))
    assert gradcheck(lambda *a: s4d_kernel(*a, 11), inputs)
    assert gradcheck(lambda *a: s4d_kernel(*a, 11, discretization="bilinear"), inputs)
    coef, log_z = (t.clone().requires_grad_() for t in (B, dt[:, None] * A))
    assert gradcheck(lambda c, z: vandermonde(c, z, 26), (coef, log_z))


@pytest.mark.parametrize("L", [0, 1, 7, 600])
def test_cauchy_matches_direct_sum(L):
    gen = torch.Generator().manual_seed(L)
    v, w = complex_randn(gen, 2, 3, 5), complex_randn(gen, 3, 5)
    z = complex_randn(gen, L)
    want = torch.zeros(2, 3, L, dtype=C128)
    for n in range(5):
        want += v[..., n, None] / (z - w[..., n, None])
    got = cauchy(v, z, w)
    assert got.shape == (2, 3, L) and got.dtype == C128
    torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-10)


def test_cauchy_gradcheck(monkeypatch):
    monkeypatch.setattr(reference, "CAUCHY_CHUNK", 4)  # backward recomputes several blocks
    gen = torch.Generator().manual_seed(0)
    inputs = (complex_randn(gen, 2, 3), complex_randn(gen, 9), complex_randn(gen, 2, 3))
    assert gradcheck(cauchy, tuple(t.requires_grad_() for t in inputs))


def direct_causal_conv(u, k, D):
    Bn, H, L = u.shape
    y = torch.zeros_like(u)
    for t in range(L):
        for j in range(min(t + 1, k.shape[1])):
            y[..., t] += k[:, j] * u[..., t - j]
    return y + D[:, None] * u


@pytest.mark.parametrize("L,Lk", [(1, 1), (7, 7), (7, 3), (1000, 37)])
def test_fft_conv_matches_direct_convolution(L, Lk):
    gen = torch.Generator().manual_seed(L + Lk)
    u, k = torch.randn(2, 3, L, generator=gen, dtype=F64), torch.randn(3, Lk, generator=gen, dtype=F64)
    D = torch.randn(3, generator=gen, dtype=F64)
    if L > 100:  # direct loop only on the prefix; the FFT convolution sees the whole signal
        want = direct_causal_conv(u[..., :120], k, D)
        got = fft_conv(u, k, D)[..., :120]
    else:
        want, got = direct_causal_conv(u, k, D), fft_conv(u, k, D)
    torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-10)
    assert fft_conv(u.float(), k.float()).dtype == torch.float32


def test_fft_conv_is_causal_and_does_not_wrap():
    gen = torch.Generator().manual_seed(1)
    u, k = torch.randn(1, 2, 64, generator=gen, dtype=F64), torch.randn(2, 64, generator=gen, dtype=F64)
    y = fft_conv(u, k)
    u2 = u.clone()
    u2[..., 40:] = torch.randn(1, 2, 24, generator=gen, dtype=F64)  # change only the future
    torch.testing.assert_close(fft_conv(u2, k)[..., :40], y[..., :40], rtol=0, atol=1e-12)
    assert (fft_conv(u2, k)[..., 40:] - y[..., 40:]).abs().max() > 1e-3


def test_fft_conv_gradcheck():
    gen = torch.Generator().manual_seed(2)
    inputs = (torch.randn(2, 2, 10, generator=gen, dtype=F64), torch.randn(2, 6, generator=gen, dtype=F64),
              torch.randn(2, generator=gen, dtype=F64))
    assert gradcheck(fft_conv, tuple(t.requires_grad_() for t in inputs))


@pytest.mark.parametrize("n", [1, 2, 7, 97, 1000, 4097])
def test_fast_fft_size_is_smallest_5_smooth(n):
    def smooth(m):
        for p in (2, 3, 5):
            while m % p == 0:
                m //= p
        return m == 1
    size = reference._fast_fft_size(n)
    assert size >= n and smooth(size)
    assert not any(smooth(m) for m in range(n, size))
