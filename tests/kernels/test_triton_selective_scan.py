"""Triton selective scan against float64 references: forward, every gradient, determinism.

Two references: ``ssmsignal.kernels.reference.selective_scan`` (chunked, float64) and, as a
backstop, the plain per-step float64 loop below (checked against each other too). Kernel outputs
start as NaN (``_common.POISON_OUTPUTS``), so an unwritten element fails the finiteness check.

* ``-m cuda``: the full set on the GPU (fp32/bf16/fp16; L = 1, 17, 1000, 4097; d not a multiple
  of the channel block; groups; padding by ``seq_lengths``; gradients of ``last_state``).
* CI: a few tiny cases on the CPU under ``TRITON_INTERPRET=1``, run in a subprocess (the variable
  must be set before triton is first imported, which other tests in the session may do).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch

from ssmsignal.kernels import reference

#: Relative error bounds (||kernel - ref|| / ||ref||), forward and gradients, per input dtype.
#: fp32: float32 arithmetic over up to 4097 steps; bf16/fp16: rounding of inputs is shared with
#: the reference (it gets the same rounded values), so the error is the output rounding.
TOL = {torch.float32: (2e-5, 2e-4), torch.bfloat16: (1e-2, 2e-2), torch.float16: (2e-3, 5e-3)}
GRAD_NAMES = ("u", "delta", "A", "B", "C", "D", "z", "delta_bias")


def naive_scan(u, delta, A, B, C, D, z, delta_bias, softplus, seq_lengths):
    """Per-step float64 loop: the textbook recurrence, written independently of both kernels."""
    u, delta, A = u.double(), delta.double(), A.double()
    b, d, L = u.shape
    if delta_bias is not None:
        delta = delta + delta_bias.double()[:, None]
    if softplus:
        delta = torch.nn.functional.softplus(delta)
    Bg = B.double() if B.dim() == 4 else B.double()[:, None]  # (b, G, N, L)
    Cg = C.double() if C.dim() == 4 else C.double()[:, None]
    rep = d // Bg.shape[1]
    Bc = Bg.repeat_interleave(rep, dim=1)  # (b, d, N, L)
    Cc = Cg.repeat_interleave(rep, dim=1)
    lengths = torch.full((b,), L) if seq_lengths is None else seq_lengths.cpu()
    x = u.new_zeros(b, d, A.shape[1])  # (b, d, N)
    ys = []
    for t in range(L):
        live = (t < lengths).to(u.device, torch.float64)[:, None]  # (b, 1)
        dt = delta[:, :, t] * live  # (b, d)
        x = torch.exp(dt[..., None] * A) * x + (dt * u[:, :, t])[..., None] * Bc[..., t]
        y = (x * Cc[..., t]).sum(-1)  # (b, d)
        if D is not None:
            y = y + D.double() * u[:, :, t]
        if z is not None:
            y = y * torch.nn.functional.silu(z[:, :, t].double())
        ys.append(y * live)
    return torch.stack(ys, -1), x


def make_case(b, d, L, N, G, dtype, device, seed, full=True, lengths=False, softplus=True):
    """Fresh random inputs in a realistic range (positive step sizes, negative A)."""
    gen = torch.Generator().manual_seed(seed)

    def rnd(*shape, scale=1.0):
        return (torch.randn(*shape, generator=gen) * scale).to(device)

    bc_shape = (b, N, L) if G == 0 else (b, G, N, L)
    raw = rnd(b, d, L, scale=0.5) - 1.0  # softplus(raw) ~ 0.1 .. 1
    bias = rnd(d, scale=0.3) if full else None
    if softplus:
        delta = raw
    else:
        # the step used is delta + bias: keep it positive (softplus(raw)), as a Mamba layer
        # that applies softplus itself does; a negative step makes the state grow like
        # exp(|dt A| L), past float32's range (seen: 1e66 at L = 300)
        delta = torch.nn.functional.softplus(raw)
        if bias is not None:
            delta = delta - bias[:, None]
    case = dict(u=rnd(b, d, L).to(dtype), delta=delta.to(dtype),
                A=-(torch.rand(d, N, generator=gen) * 3 + 0.05).to(device),
                B=rnd(*bc_shape).to(dtype), C=rnd(*bc_shape).to(dtype),
                D=rnd(d) if full else None, z=rnd(b, d, L).to(dtype) if full else None,
                delta_bias=bias)
    seq = None
    if lengths:
        seq = torch.randint(0, L + 1, (b,), generator=gen)
        seq[0] = L
        seq = seq.to(device)
    return case, seq


def rel_err(x, ref):
    """``||x - ref|| / ||ref||``; the denominator is at least ``1e-3 sqrt(numel)`` so that an
    exactly-zero reference (``dA`` at L = 1) compares absolutely, at ~1e-3 of unit scale."""
    x, ref = x.detach().double(), ref.detach().double()
    assert torch.isfinite(x).all(), "non-finite values (NaN marks an unwritten element)"
    return float((x - ref).norm() / ref.norm().clamp_min(1e-3 * ref.numel() ** 0.5))


def run_triton(case, seq, softplus, grads_out):
    """Forward + backward of the Triton op; returns out, last_state and the input gradients."""
    from ssmsignal.kernels.triton import _common
    from ssmsignal.kernels.triton.selective_scan import selective_scan as tri

    _common.POISON_OUTPUTS = True
    leaves = {k: (v.detach().clone().requires_grad_(True) if v is not None else None)
              for k, v in case.items()}
    out, last = tri(**leaves, delta_softplus=softplus, return_last_state=True, seq_lengths=seq)
    torch.autograd.backward([out, last], [grads_out[0].to(out.dtype), grads_out[1]])
    return out, last, {k: v.grad for k, v in leaves.items() if v is not None}


def run_triton_plain(case, seq, softplus):
    """The Triton op without gradients: a launch of its own (no checkpoints; the grid order,
    cache hints and hoisted A of ``selective_scan.FWD_*``)."""
    from ssmsignal.kernels.triton import _common
    from ssmsignal.kernels.triton.selective_scan import selective_scan as tri

    _common.POISON_OUTPUTS = True
    with torch.no_grad():
        return tri(**case, delta_softplus=softplus, return_last_state=True, seq_lengths=seq)


def run_reference(case, seq, softplus, grads_out):
    leaves = {k: (v.detach().double().requires_grad_(True) if v is not None else None)
              for k, v in case.items()}
    out, last = reference.selective_scan(**leaves, delta_softplus=softplus,
                                         return_last_state=True, seq_lengths=seq)
    torch.autograd.backward([out, last], list(grads_out))
    return out, last, {k: v.grad for k, v in leaves.items() if v is not None}


def compare(b, d, L, N, G, dtype, device, seed, full=True, lengths=False, softplus=True,
            pad_value=None):
    """Relative errors of the Triton op against the float64 reference, as a dict: the
    forward with gradients (``out``, ``last_state``) and every gradient, and the forward
    without them (``*_plain``, its own kernel settings).

    ``pad_value``: written into every per-step input after each sequence's end (needs
    ``lengths``); padding must not reach any output or gradient, even as NaN.
    """
    case, seq = make_case(b, d, L, N, G, dtype, device, seed, full, lengths, softplus)
    if pad_value is not None:
        for i, n in enumerate(seq.tolist()):
            for key in ("u", "delta", "B", "C", "z"):
                if case[key] is not None:
                    case[key][i, ..., n:] = pad_value
    gen = torch.Generator().manual_seed(seed + 1)
    dout = torch.randn(b, d, L, generator=gen).to(dtype)  # the kernel's dout is in u's dtype;
    grads_out = (dout.double().to(device),  # the reference gets the same rounded values
                 torch.randn(b, d, N, generator=gen, dtype=torch.float64).to(device))
    out, last, grads = run_triton(case, seq, softplus, grads_out)
    r_out, r_last, r_grads = run_reference(case, seq, softplus, grads_out)
    errs = {"out": rel_err(out, r_out), "last_state": rel_err(last, r_last)}
    p_out, p_last = run_triton_plain(case, seq, softplus)  # the forward without gradients
    errs["out_plain"], errs["last_state_plain"] = rel_err(p_out, r_out), rel_err(p_last, r_last)
    assert p_out.dtype == case["u"].dtype
    for k in r_grads:
        errs["d" + k] = rel_err(grads[k], r_grads[k])
    assert out.dtype == case["u"].dtype and last.dtype == torch.float32
    for k, g in grads.items():
        assert g.shape == case[k].shape and g.dtype == case[k].dtype, k
    return errs


def check_errors(errs, dtype):
    fwd_tol, grad_tol = TOL[dtype]
    bad = {k: v for k, v in errs.items()
           if not v <= (fwd_tol if k.startswith(("out", "last_state")) else grad_tol)}
    assert not bad, f"errors over tolerance ({fwd_tol}, {grad_tol}): {bad} (all: {errs})"


def test_naive_loop_agrees_with_reference():
    """The two float64 references agree (so the backstop is a real second opinion)."""
    case, seq = make_case(2, 6, 40, 5, 2, torch.float64, "cpu", seed=3, lengths=True)
    out, last = naive_scan(**case, softplus=True, seq_lengths=seq)
    r_out, r_last = reference.selective_scan(**case, delta_softplus=True, return_last_state=True,
                                             seq_lengths=seq)
    assert rel_err(out, r_out) < 1e-12 and rel_err(last, r_last) < 1e-12


# ----------------------------------------------------------------------------------- CPU (CI)
#: Tiny cases for the interpreter: (b, d, L, N, G, full, lengths, softplus, block shape or None);
#: G = 0 means 3-D B/C; the block shape (NO, W) forces 4 states per thread as on the GPU.
INTERPRET_CASES = [(2, 5, 1, 4, 0, True, False, True, None),
                   (2, 37, 17, 6, 1, True, True, True, None),
                   (1, 8, 33, 16, 2, False, False, False, None),
                   (3, 4, 20, 3, 2, True, True, True, None),
                   (1, 8, 20, 16, 0, True, True, True, (4, 2))]


#: Tiny cases split into time segments (each segment's start state and adjoint carry from an
#: extra pass): (b, d, L, N, G, lengths, block shape); segments of at least 16 steps. The
#: first has no masks at all (EVEN: L % 16 == 0, d fills the block, N a power of two).
SEGMENT_CASES = [(1, 16, 48, 16, 0, False, (4, 2)), (1, 4, 40, 3, 2, True, None)]


def _interpret_main():
    """Subprocess body (TRITON_INTERPRET=1): every tiny case, errors as JSON on stdout."""
    from ssmsignal.kernels.triton import _common
    from ssmsignal.kernels.triton import selective_scan as mod
    from ssmsignal.kernels.triton.selective_scan import selective_scan as tri

    results = []
    for i, (b, d, L, N, G, full, lengths, softplus, config) in enumerate(INTERPRET_CASES):
        _common.SCAN_CONFIG_OVERRIDE = config
        errs = compare(b, d, L, N, G, torch.float32, "cpu", 100 + i, full, lengths, softplus)
        case, seq = make_case(b, d, L, N, G, torch.float32, "cpu", 200 + i, full, lengths,
                              softplus)
        out, last = tri(**case, delta_softplus=softplus, return_last_state=True, seq_lengths=seq)
        n_out, n_last = naive_scan(**case, softplus=softplus, seq_lengths=seq)
        errs["out_vs_naive"] = rel_err(out, n_out)
        errs["last_vs_naive"] = rel_err(last, n_last)
        results.append(errs)
    mod.SEGMENT_MIN_STEPS, mod.SEGMENT_WARPS = 16, 10 ** 6  # split even tiny problems
    for i, (b, d, L, N, G, lengths, config) in enumerate(SEGMENT_CASES):
        _common.SCAN_CONFIG_OVERRIDE = config
        geo = mod._geometry(torch.empty(b, d, L), torch.empty(d, N), torch.empty(b, 1, N, L),
                            mod.CHUNK_BWD, None, backward=True)
        assert geo["n_seg"] > 1, geo
        results.append(compare(b, d, L, N, G, torch.float32, "cpu", 400 + i, lengths=lengths))
    mod.SEGMENT_MIN_STEPS, mod.SEGMENT_WARPS = 1024, 132 * 12
    _common.SCAN_CONFIG_OVERRIDE = None
    # the other side of every session-4 switch (the default side runs above): forward with the
    # polynomial softplus, decays on the FMA units and checkpoints laid out (N,); backward
    # with the libdevice softplus, B/C prefetched, partials (N, L) summed by torch; one case
    # without masks and one with padding and N = 6 (NI = 2: 3 of 4 half-rows of decays by
    # exp2_fma; the defaults above have 2 of 8 padded states in checkpoints and partials)
    knobs = dict(FWD_SOFTPLUS_POLY=True, FWD_EXP_FMA=3, CKPT_TN=False, BWD_SOFTPLUS_POLY=False,
                 BWD_BC_LATE=False, PARTIALS_TN=False, TRITON_SUMS=False)
    saved = {k: getattr(mod, k) for k in knobs}
    for k, v in knobs.items():
        setattr(mod, k, v)
    try:
        for i, (b, d, L, N, lengths, config) in enumerate([(1, 16, 48, 16, False, (4, 2)),
                                                           (2, 9, 23, 6, True, (4, 1))]):
            _common.SCAN_CONFIG_OVERRIDE = config
            results.append(compare(b, d, L, N, 0, torch.float32, "cpu", 500 + i, lengths=lengths))
    finally:
        for k, v in saved.items():
            setattr(mod, k, v)
        _common.SCAN_CONFIG_OVERRIDE = None
    # NaN in the padding (last entry of the results)
    results.append(compare(3, 6, 21, 4, 2, torch.float32, "cpu", 300, lengths=True,
                           pad_value=float("nan")))
    check_empty_length(tri)
    check_math_helpers()
    print(json.dumps(results))


def check_math_helpers():
    """The polynomial softplus (and its sigmoid) and ``exp2_fma`` against float64, over ranges
    wider than the scan feeds them (interpreter: the same arithmetic in float32)."""
    helpers = _math_helpers_kernel()
    ints = torch.arange(-4.0, 4.0)  # exact 2**(6 i) from exp2_fma; 0 -> exactly 1
    x = torch.cat([torch.linspace(-25, 25, 4000), torch.randn(88) * 8, ints])  # (4096,)
    sp, sg, e2 = (torch.empty_like(x) for _ in range(3))
    helpers[(4,)](x, sp, sg, e2, BLOCK=1024)
    # softplus, sigmoid: 3e-6 (from rounding x log2(e) to float32 before the exp2, as in the
    # precise path); exp2_fma against the exp2 of its float32 argument: the fit's 2.3e-7
    x64, x6 = x.double(), (x * 6).double()
    assert rel_max(sp, torch.nn.functional.softplus(x64)) < 3e-6
    assert rel_max(sg, torch.sigmoid(x64)) < 3e-6
    inside = x6.abs() <= 126  # clamped outside: 2**126 / 2**-126
    assert rel_max(e2[inside], torch.exp2(x6[inside])) < 5e-7
    assert bool((e2[x6 < -126] == 2.0 ** -126).all())
    assert torch.equal(e2[-8:].double(), torch.exp2(6 * ints.double())) and e2[-4] == 1


def _math_helpers_kernel():
    """A Triton kernel storing ``softplus_sigmoid(x, POLY=True)`` and ``exp2_fma(6 x)``
    (built here: triton is imported only where the test runs)."""
    import triton
    import triton.language as tl

    from ssmsignal.kernels.triton._scan_lanes import exp2_fma, softplus_sigmoid

    def helpers(x_ptr, sp_ptr, sg_ptr, e2_ptr, BLOCK: tl.constexpr):
        offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
        x = tl.load(x_ptr + offs)
        sp, sg = softplus_sigmoid(x, False, True)
        tl.store(sp_ptr + offs, sp)
        tl.store(sg_ptr + offs, sg)
        tl.store(e2_ptr + offs, exp2_fma(x * 6.0))

    helpers.__globals__.update(tl=tl, exp2_fma=exp2_fma, softplus_sigmoid=softplus_sigmoid)
    return triton.jit(helpers)


def rel_max(x, ref):
    """Largest elementwise relative error (NaN fails every comparison made with it)."""
    err = ((x.double() - ref) / ref.abs()).abs()
    assert torch.isfinite(err).all()
    return float(err.max())


def check_empty_length(tri):
    """L = 0 with groups: empty output, zero last state, zero gradients of the right shapes."""
    case, _ = make_case(2, 4, 0, 3, 2, torch.float32, "cpu", seed=0)
    leaves = {k: v.clone().requires_grad_(True) for k, v in case.items()}
    out, last = tri(**leaves, delta_softplus=True, return_last_state=True)
    assert out.shape == (2, 4, 0) and bool((last == 0).all())
    (out.sum() + last.sum()).backward()
    for k, v in leaves.items():
        assert v.grad.shape == v.shape and bool((v.grad == 0).all()), k


def run_interpreted(path):
    """Run ``python path --interpret`` with ``TRITON_INTERPRET=1``; its last stdout line (JSON)."""
    env = dict(os.environ, TRITON_INTERPRET="1", SSMSIGNAL_BACKEND="")
    proc = subprocess.run([sys.executable, path, "--interpret"], env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.interpret
@pytest.mark.slow
def test_interpreter_matches_float64_references():
    results = run_interpreted(__file__)
    # + the candidate switches' two cases and NaN padding
    assert len(results) == len(INTERPRET_CASES) + len(SEGMENT_CASES) + 3
    for errs in results[:len(INTERPRET_CASES)]:
        errs["out"] = max(errs["out"], errs.pop("out_vs_naive"))
        errs["last_state"] = max(errs["last_state"], errs.pop("last_vs_naive"))
    for errs in results:
        check_errors(errs, torch.float32)


# ----------------------------------------------------------------------------------- GPU
cuda = pytest.mark.cuda
DTYPES = [torch.float32, torch.bfloat16, torch.float16]


@cuda
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("L", [1, 17, 1000, 4097])
def test_gpu_all_features(dtype, L):
    errs = compare(2, 37, L, 16, 0, dtype, "cuda", seed=L, full=True, lengths=True)
    check_errors(errs, dtype)


@cuda
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("b,d,L,N,G", [(3, 300, 1000, 16, 1), (2, 96, 513, 5, 3),
                                       (1, 64, 300, 64, 4), (4, 20, 257, 1, 0)])
def test_gpu_shapes_and_groups(dtype, b, d, L, N, G):
    errs = compare(b, d, L, N, G, dtype, "cuda", seed=b * d + L, full=(N != 5), softplus=(G != 4))
    check_errors(errs, dtype)


@cuda
@pytest.mark.parametrize("NO,W", [(4, 4), (4, 2), (8, 4), (8, 2), (16, 2), (2, 1)])
def test_gpu_every_block_shape(NO, W):
    """Block shapes the heuristic or the benchmark can pick (lanes per channel NO, warps W)."""
    from ssmsignal.kernels.triton import _common
    _common.SCAN_CONFIG_OVERRIDE = (NO, W)
    try:
        errs = compare(3, 150, 700, 16, 3, torch.bfloat16, "cuda", seed=NO * 10 + W, lengths=True)
    finally:
        _common.SCAN_CONFIG_OVERRIDE = None
    check_errors(errs, torch.bfloat16)


@cuda
def test_gpu_naive_backstop_and_padding_leaks_nothing():
    case, seq = make_case(3, 50, 300, 16, 0, torch.float32, "cuda", seed=7, lengths=True)
    from ssmsignal.kernels.triton.selective_scan import selective_scan as tri
    out, last = tri(**case, delta_softplus=True, return_last_state=True, seq_lengths=seq)
    n_out, n_last = naive_scan(**case, softplus=True, seq_lengths=seq)
    assert rel_err(out, n_out) < 2e-5 and rel_err(last, n_last) < 2e-5
    for i, n in enumerate(seq.tolist()):  # padding: output exactly 0, state = state at n - 1
        assert (out[i, :, n:] == 0).all()
        short = {k: (v[i:i + 1, ..., :n] if k in ("u", "delta", "z", "B", "C") else v)
                 for k, v in case.items()}
        if n:  # the same sequence cut to its length, alone in its batch
            o2, l2 = tri(**short, delta_softplus=True, return_last_state=True)
            assert rel_err(o2[0], out[i, :, :n]) < 1e-6 and rel_err(l2[0], last[i]) < 1e-6


@cuda
def test_gpu_backward_is_deterministic():
    case, seq = make_case(2, 300, 3000, 16, 2, torch.bfloat16, "cuda", seed=11, lengths=True)
    grads_out = (torch.randn(2, 300, 3000, device="cuda"), torch.randn(2, 300, 16, device="cuda"))
    first = run_triton(case, seq, True, grads_out)
    second = run_triton(case, seq, True, grads_out)
    for a, b in zip(first[:2], second[:2]):
        assert torch.equal(a, b)
    for k in first[2]:
        assert torch.equal(first[2][k], second[2][k]), k


@cuda
def test_gpu_shuffles_used_at_benchmark_layouts():
    """At a benchmark-like configuration (bf16, 4 lanes per channel, blocks tiling d, L a
    multiple of 16) the compiled layouts are those the lane shuffles assume: no launch falls
    back to the kernels without them (a Triton update that changes layouts shows up here)."""
    from ssmsignal.kernels.triton import selective_scan as mod
    before = mod.LANE_FALLBACK_LAUNCHES
    errs = compare(2, 4352, 256, 16, 0, torch.bfloat16, "cuda", seed=3)
    check_errors(errs, torch.bfloat16)
    assert mod.LANE_FALLBACK_LAUNCHES == before, mod.LANE_FALLBACKS


@cuda
def test_gpu_dispatch_picks_triton():
    from ssmsignal.kernels import _dispatch
    from ssmsignal.kernels.triton.selective_scan import selective_scan as tri
    case, _ = make_case(1, 8, 16, 4, 0, torch.float32, "cuda", seed=1)
    fn = _dispatch.resolve("selective_scan", "auto", *case.values())
    assert fn is tri or os.environ.get("SSMSIGNAL_BACKEND") == "torch"


if __name__ == "__main__" and "--interpret" in sys.argv:
    _interpret_main()
