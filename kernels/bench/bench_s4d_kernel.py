"""Side-by-side GPU benchmark of the S4D Vandermonde kernel, the Cauchy kernel and an S4D layer.

Times, in one process with ``triton.testing.do_bench`` (median of repeated runs):

1. ``s4d_kernel`` fp32, forward and forward+backward, three ways: our Triton Vandermonde
   (``backend="triton"``), the chunked PyTorch reference (``backend="torch"``) and the
   materialised einsum that builds ``(H, N, L)`` (what a user would write first);
   plus peak memory above the inputs (``torch.cuda.max_memory_allocated``).
2. ``cauchy`` forward and forward+backward, Triton vs the PyTorch reference.
3. ``ssmsignal.layers.S4D`` forward and forward+backward three ways: the Triton path with the
   fused recurrence ``s4d_conv``, the old Triton path (``s4d_kernel`` + ``fft_conv``) and
   ``SSMSIGNAL_BACKEND=torch``.
4. ``s4d_conv`` alone (fused recurrence) vs what it replaces (Triton Vandermonde + transposes +
   ``fft_conv``) and ``fft_conv`` alone on a ready kernel, plus a block-shape sweep of the fused
   kernels (``--s4d-conv`` runs only 3 and 4).

Also prints the accuracy of every timed ``s4d_kernel`` variant against float64, the floors
(bytes over measured copy bandwidth, special-function count over the SFU rate, FMA count over
the fp32 rate) and a profiler breakdown of our kernels' GPU time (small shapes are bound by
launches, so wall time and GPU time differ). Run on the GPU machine::

    python -m ssmsignal.kernels.bench.bench_s4d_kernel [--quick] [--json out.json] [--profile-layer]
        [--s4d-conv]
"""

from __future__ import annotations

import argparse
import json
import math
import os

import torch
import triton
import triton.testing

from ssmsignal.kernels import cauchy, fft_conv, reference, s4d_conv, s4d_kernel, vandermonde
from ssmsignal.kernels.triton import cauchy as cmod
from ssmsignal.kernels.triton import s4d_conv as convmod
from ssmsignal.kernels.triton import vandermonde as vmod

S4D_SHAPES = [(256, 64, 16384), (512, 64, 65536)]  # (H, N complex, L)
CAUCHY_SHAPE = (256, 32, 8192)  # (rows, N, L)
LAYER_SHAPE = (16, 256, 16384)  # (batch, H, L)
#: H100 SXM: 132 SMs x 16 MUFU ops/clk x ~1.755 GHz; 128 fp32 FMA/clk/SM.
SFU_PER_S = 132 * 16 * 1.755e9
FMA_PER_S = 132 * 128 * 1.755e9


def median_ms(fn, rep=200):
    return triton.testing.do_bench(fn, warmup=25, rep=rep, return_mode="median")


def peak_bytes(fn):
    """Peak allocated bytes above what was allocated before ``fn`` ran."""
    torch.cuda.synchronize()
    base = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    fn()
    torch.cuda.synchronize()
    return torch.cuda.max_memory_allocated() - base


def measure(fn, rep=200):
    """``(median ms, peak bytes, None)``, or ``(None, None, reason)`` on out-of-memory."""
    try:
        return median_ms(fn, rep), peak_bytes(fn), None
    except torch.cuda.OutOfMemoryError as exc:
        torch.cuda.empty_cache()
        return None, None, f"OOM ({str(exc).splitlines()[0][:80]})"


def copy_bandwidth():
    """Measured device-to-device copy bandwidth (bytes read + written per second)."""
    x = torch.empty(2 ** 28, device="cuda", dtype=torch.float32)  # 1 GiB
    y = torch.empty_like(x)
    ms = median_ms(lambda: y.copy_(x), rep=100)
    return 2 * x.numel() * 4 / (ms * 1e-3)


def s4d_params(H, N, seed=0):
    """S4D-Lin-like leaf parameters: A = -1/2 + i pi n, dt log-uniform in [1e-3, 1e-1]."""
    g = torch.Generator().manual_seed(seed)
    A = torch.complex(-0.5 * torch.ones(H, N), math.pi * torch.arange(N).float().expand(H, N))
    B = torch.randn(H, N, generator=g, dtype=torch.complex64)
    C = torch.randn(H, N, generator=g, dtype=torch.complex64)
    dt = torch.exp(torch.rand(H, generator=g) * math.log(100.0) + math.log(1e-3))
    return [t.cuda().requires_grad_() for t in (A, B, C, dt)]


def einsum_kernel(A, B, C, dt, L):
    """The materialised formula: builds ``exp(log_z * l)`` as an (H, N, L) complex tensor."""
    coef, log_z = reference.s4d_coefficients(A, B, C, dt)
    l = torch.arange(L, device=A.device, dtype=torch.float32)  # (L,)
    return 2.0 * torch.einsum("hn,hnl->hl", coef, torch.exp(log_z[:, :, None] * l)).real  # (H, L)


def fwd_bwd(make, params, grad):
    def run():
        for p in params:
            p.grad = None
        make().backward(grad)
    return run


#: Triton variants timed in full mode: name -> overrides of module attributes of
#: ``ssmsignal.kernels.triton.vandermonde`` (the first entry is the shipped configuration).
TRITON_VARIANTS = {
    "triton (shipped)": {},
    "triton tf32x3 fwd+bwd": {"DOT_PRECISION": "tf32x3", "BWD_PRECISION": "tf32x3"},
    "triton tf32x3 bwd": {"BWD_PRECISION": "tf32x3"},
    "triton tf32x3 bwd 32x16": {"BWD_PRECISION": "tf32x3", "BWD_SLICES": {"tf32x3": (32, 16)}},
    "triton tf32x3 bwd 64x16": {"BWD_PRECISION": "tf32x3", "BWD_SLICES": {"tf32x3": (64, 16)}},
    "triton P128": {"_blocks": lambda N, L: (16, 128, 64)},
}


def with_overrides(module, overrides):
    """Set ``module``'s attributes from ``overrides``; returns the old values (to restore)."""
    saved = {key: getattr(module, key) for key in overrides}
    for key, value in overrides.items():
        setattr(module, key, value)
    return saved


def patched(module, overrides, fn):
    """``fn`` run with ``module``'s attributes temporarily replaced by ``overrides``."""
    def run():
        saved = with_overrides(module, overrides)
        try:
            return fn()
        finally:
            with_overrides(module, saved)
    return run


def s4d_rows(H, N, L, bw, quick):
    params = s4d_params(H, N)
    grad = torch.randn(H, L, device="cuda")
    with torch.no_grad():
        truth = reference.s4d_kernel(*(p.detach().to(torch.complex128) for p in params[:3]),
                                     params[3].detach().double(), L)  # (H, L) float64
    ours = lambda: s4d_kernel(*params, L, backend="triton")  # noqa: E731
    variants = [(name, patched(vmod, overrides, ours), params)
                for name, overrides in list(TRITON_VARIANTS.items())[:1 if quick else None]]
    variants += [("torch chunked", lambda: s4d_kernel(*params, L, backend="torch"), params),
                 ("einsum (H,N,L)", lambda: einsum_kernel(*params, L), params)]
    # The Vandermonde product alone (no discretisation prologue and its autograd).
    with torch.no_grad():
        leaves = [t.detach().requires_grad_() for t in reference.s4d_coefficients(*params)]
    for backend in ("triton", "torch"):
        variants.append((f"vandermonde only, {backend}",
                         lambda b=backend: vandermonde(*leaves, L, backend=b), leaves))
    rows = []
    for name, make, leaf in variants:
        with torch.no_grad():
            ms_f, mem_f, err_f = measure(make)
            err = None
            if err_f is None and not name.startswith("vandermonde"):
                err = ((make().double() - truth).norm() / truth.norm()).item()
        ms_b, mem_b, err_b = measure(fwd_bwd(make, leaf, grad), rep=100)
        rows.append(dict(op="s4d_kernel", shape=f"H{H} N{N} L{L}", impl=name,
                         fwd_ms=ms_f, fwd_peak_MB=_mb(mem_f), fwdbwd_ms=ms_b,
                         fwdbwd_peak_MB=_mb(mem_b), rel_err=err, note=err_f or err_b))
        torch.cuda.empty_cache()
    # Floors: bytes (K written once; backward reads dK), direct-formula SFU count, dot FMAs.
    bytes_fwd = H * L * 4
    block_n, block_p, block_q = vmod._blocks(N, L)
    sfu_ours = H * N * (block_p + block_q + triton.cdiv(L, block_p * block_q)) * 3  # tables
    rows.append(dict(op="s4d_kernel floor", shape=f"H{H} N{N} L{L}", impl="-",
                     fwd_ms=max(bytes_fwd / bw, 2 * H * N * L / FMA_PER_S) * 1e3,
                     note=(f"bytes {bytes_fwd / 1e6:.1f} MB -> {bytes_fwd / bw * 1e3:.4f} ms; "
                           f"direct formula 3HNL={3 * H * N * L:.3g} SFU ops -> "
                           f"{3 * H * N * L / SFU_PER_S * 1e3:.3f} ms; ours {sfu_ours:.3g} SFU "
                           f"-> {sfu_ours / SFU_PER_S * 1e3:.4f} ms; dot 2HNL FMA -> "
                           f"{2 * H * N * L / FMA_PER_S * 1e3:.4f} ms")))
    return rows


def cauchy_rows(M, N, L, quick):
    g = torch.Generator().manual_seed(1)
    v = torch.randn(M, N, generator=g, dtype=torch.complex64).cuda().requires_grad_()
    w = torch.complex(-0.1 - torch.rand(M, N, generator=g),
                      3.0 * torch.randn(M, N, generator=g)).cuda().requires_grad_()
    z = torch.exp(2j * math.pi * torch.rand(L, generator=g)).to(torch.complex64).cuda()
    grad = torch.randn(M, L, generator=g, dtype=torch.complex64).cuda()
    with torch.no_grad():
        truth = reference.cauchy(v.detach().to(torch.complex128), z.to(torch.complex128),
                                 w.detach().to(torch.complex128))
    variants = [("triton (shipped)", {}, "triton")]
    if not quick:
        variants.append(("triton bwd tile 16x256", {"_bwd_tiles": lambda N, L: (16, 256)},
                         "triton"))
    variants.append(("torch", {}, "torch"))
    rows = []
    for name, overrides, backend in variants:
        make = patched(cmod, overrides, lambda b=backend: cauchy(v, z, w, backend=b))
        with torch.no_grad():
            ms_f, mem_f, _ = measure(make)
            err = ((make().to(torch.complex128) - truth).norm() / truth.norm()).item()
        ms_b, mem_b, note = measure(fwd_bwd(lambda: make().real, [v, w], grad.real), rep=100)
        rows.append(dict(op="cauchy", shape=f"M{M} N{N} L{L}", impl=name, fwd_ms=ms_f,
                         fwd_peak_MB=_mb(mem_f), fwdbwd_ms=ms_b, fwdbwd_peak_MB=_mb(mem_b),
                         rel_err=err, note=note))
    terms = M * N * L
    rows.append(dict(op="cauchy floor", shape=f"M{M} N{N} L{L}", impl="-",
                     fwd_ms=max(terms / SFU_PER_S, 8 * terms / FMA_PER_S) * 1e3,
                     note=f"{terms:.3g} terms: 1 reciprocal (SFU) + ~8 FMA-pipe ops each"))
    return rows


def layer_rows(batch, H, L, overrides=None, only_fused=False):
    """The S4D layer three ways (or only the fused path); the fused path with ``overrides`` of
    the fused kernels' settings (the fastest variant of :func:`conv_rows` in the same run)."""
    try:
        from ssmsignal.layers import S4D, s4d
    except ImportError as exc:
        return [dict(op="S4D layer", impl="-", note=f"not available: {exc}")]
    torch.manual_seed(0)
    layer = S4D(H).cuda()
    x = torch.randn(batch, L, H, device="cuda", requires_grad=True)  # (batch, L, H)
    grad = torch.randn(batch, L, H, device="cuda")
    rows = []
    paths = [("triton", True, "Triton path, fused s4d_conv"),
             ("triton", False, "Triton path, kernel + FFT"),
             ("torch", True, "SSMSIGNAL_BACKEND=torch")]
    for backend, fused, name in paths[:1] if only_fused else paths:
        os.environ["SSMSIGNAL_BACKEND"] = backend
        s4d.FUSED_CONV = fused
        saved = with_overrides(convmod, overrides or {})
        params = [x, *layer.parameters()]
        ms_b, mem_b, note = measure(fwd_bwd(lambda: layer(x), params, grad), rep=100)
        with torch.no_grad():
            ms_f, mem_f, _ = measure(lambda: layer(x))
        with_overrides(convmod, saved)
        if fused and backend == "triton" and overrides:
            name += " " + " ".join(f"{k}={v}" for k, v in overrides.items())
        rows.append(dict(op="S4D layer", shape=f"b{batch} H{H} L{L} d_state{layer.d_state}",
                         impl=name, fwd_ms=ms_f, fwd_peak_MB=_mb(mem_f),
                         fwdbwd_ms=ms_b, fwdbwd_peak_MB=_mb(mem_b), note=note))
    s4d.FUSED_CONV = True
    os.environ.pop("SSMSIGNAL_BACKEND")
    if only_fused:
        return rows
    base = rows[-1]
    for r in rows[:-1]:
        r["note"] = (r["note"] or "") + (f"vs torch: fwd {base['fwd_ms'] / r['fwd_ms']:.2f}x, "
                                         f"fwd+bwd {base['fwdbwd_ms'] / r['fwdbwd_ms']:.2f}x")
    return rows


def old_conv(u, log_z, coef, D):
    """What ``s4d_conv`` replaces on the Triton path: Vandermonde kernel, transposes, FFT."""
    k = vandermonde(coef, log_z, u.shape[1], backend="triton")  # (H, L)
    return fft_conv(u.transpose(1, 2), k, D).transpose(1, 2)  # (b, L, H)


#: Variants of the fused convolution timed after the shipped one: overrides of module attributes
#: of ``ssmsignal.kernels.triton.s4d_conv`` (block shapes ``(NO, W)``, chunk lengths).
CONV_SWEEP = [{"CONFIG": {"fwd": (4, 4), "bwd": (4, 4)}},
              {"CONFIG": {"fwd": (4, 1), "bwd": (8, 1)}},
              {"CONFIG": {"fwd": (4, 1), "bwd": (16, 2)}},
              {"CHUNK_FWD": 8, "CHUNK_BWD": 16}]


def conv_rows(batch, H, L, N, bw, quick):
    """``s4d_conv`` alone at the layer's shape: fused kernels vs the FFT path, and a sweep."""
    params = s4d_params(H, N)
    with torch.no_grad():
        coef, log_z = reference.s4d_coefficients(*params)  # (H, N) each
    g = torch.Generator().manual_seed(2)
    u = torch.randn(batch, L, H, generator=g).cuda()  # (b, L, H)
    D = torch.randn(H, generator=g).cuda()
    grad = torch.randn(batch, L, H, generator=g).cuda()
    leaves = [t.detach().clone().requires_grad_() for t in (u, log_z, coef, D)]
    wide = [t.detach().to(torch.complex128 if t.is_complex() else torch.float64).requires_grad_()
            for t in (u, log_z, coef, D)]
    truth = reference.s4d_conv(*wide)  # (b, L, H) float64
    truth_grads = torch.autograd.grad(truth, wide, grad.double())
    truth = truth.detach()
    k = vandermonde(coef, log_z, L).detach()  # (H, L)
    ut = u.transpose(1, 2).contiguous().requires_grad_()  # (b, H, L)
    fused = lambda: s4d_conv(*leaves, backend="triton")  # noqa: E731
    # (name, function, leaves, output gradient, overrides of the fused kernels' settings)
    variants = [("fused s4d_conv (shipped)", fused, leaves, grad, {})]
    variants += [("fused " + " ".join(f"{k}={v}" for k, v in o.items()), fused, leaves, grad, o)
                 for o in ([] if quick else CONV_SWEEP)]
    variants += [("vandermonde + fft_conv (old)", lambda: old_conv(*leaves), leaves, grad, {}),
                 ("fft_conv alone, (b,H,L) in", lambda: fft_conv(ut, k, D), [ut],
                  grad.transpose(1, 2), {})]
    rows = []
    for name, make, leaf, out_grad, overrides in variants:
        saved = with_overrides(convmod, overrides)
        with torch.no_grad():
            ms_f, mem_f, err_f = measure(make)
            err = None
            if err_f is None and "alone" not in name:
                err = ((make().double() - truth).norm() / truth.norm()).item()
        ms_b, mem_b, err_b = measure(fwd_bwd(make, leaf, out_grad), rep=100)
        grad_err = None
        if err_b is None and "alone" not in name:  # worst gradient (u, log_z, coef, D)
            grads = torch.autograd.grad(make(), leaf, out_grad)
            grad_err = max(_rel(gr, want) for gr, want in zip(grads, truth_grads))
        with_overrides(convmod, saved)
        rows.append(dict(op="s4d_conv", shape=f"b{batch} L{L} H{H} N{N}", impl=name,
                         fwd_ms=ms_f, fwd_peak_MB=_mb(mem_f), fwdbwd_ms=ms_b,
                         fwdbwd_peak_MB=_mb(mem_b), rel_err=err, grad_err=grad_err,
                         note=err_f or err_b or (None if grad_err is None else
                                                 f"grads rel err <= {grad_err:.1e}"),
                         overrides=overrides if name.startswith("fused") else None))
        torch.cuda.empty_cache()
    steps = batch * L * H * N  # complex mode-steps
    io = batch * L * H * 4
    rows.append(dict(op="s4d_conv floor", shape=f"b{batch} L{L} H{H} N{N}", impl="-",
                     fwd_ms=max(2 * io / bw, 6 * steps / FMA_PER_S) * 1e3,
                     fwdbwd_ms=max(6 * io / bw, 20 * steps / FMA_PER_S) * 1e3,
                     note=(f"fwd: u in, y out {2 * io / 1e6:.0f} MB -> {2 * io / bw * 1e3:.3f} ms; "
                           f"6 FP32 ops per mode-step -> {6 * steps / FMA_PER_S * 1e3:.3f} ms; "
                           f"bwd adds 14 ops per mode-step, u, dy in, du out")))
    return rows


def _rel(got, want):
    """Relative Frobenius error of ``got`` against ``want`` (complex as real pairs)."""
    got = torch.view_as_real(got) if got.is_complex() else got
    want = torch.view_as_real(want) if want.is_complex() else want
    return ((got.to(want.dtype) - want).norm() / want.norm()).item()


def best_fused(rows):
    """Fastest forward settings and fastest backward settings (fwd+bwd minus fwd) among the
    timed fused variants, combined into one set of overrides of the fused kernels' module."""
    timed = [r for r in rows if r.get("overrides") is not None and r["fwd_ms"] is not None
             and r["fwdbwd_ms"] is not None]
    if not timed:
        return {}
    fwd = min(timed, key=lambda r: r["fwd_ms"])["overrides"]
    bwd = min(timed, key=lambda r: r["fwdbwd_ms"] - r["fwd_ms"])["overrides"]
    config = lambda o: o.get("CONFIG", convmod.CONFIG)  # noqa: E731
    return {"CONFIG": {"fwd": config(fwd)["fwd"], "bwd": config(bwd)["bwd"]},
            "CHUNK_FWD": fwd.get("CHUNK_FWD", convmod.CHUNK_FWD),
            "CHUNK_BWD": bwd.get("CHUNK_BWD", convmod.CHUNK_BWD)}


def profile(label, fn, steps=10):
    """Print the CUDA kernels behind ``fn`` (ms per call), to split GPU work from launch cost."""
    fn()
    torch.cuda.synchronize()
    acts = [torch.profiler.ProfilerActivity.CPU, torch.profiler.ProfilerActivity.CUDA]
    with torch.profiler.profile(activities=acts) as prof:
        for _ in range(steps):
            fn()
        torch.cuda.synchronize()
    kernels = [e for e in prof.key_averages() if e.device_time_total > 0]
    kernels.sort(key=lambda e: e.self_device_time_total, reverse=True)
    total = sum(e.self_device_time_total for e in kernels) / steps / 1e3
    print(f"profile {label}: GPU kernel time {total:.4f} ms per call")
    for e in kernels[:6]:
        print(f"    {e.self_device_time_total / steps / 1e3:9.4f} ms  x{e.count // steps:<3} "
              f"{e.key[:70]}")


def layer_profile(batch, H, L):
    """Kernel breakdown of one S4D layer forward+backward on the Triton path (fused conv)."""
    from ssmsignal.layers import S4D
    layer = S4D(H).cuda()
    x = torch.randn(batch, L, H, device="cuda", requires_grad=True)  # (batch, L, H)
    profile(f"S4D layer fwd+bwd b{batch} H{H} L{L}",
            fwd_bwd(lambda: layer(x), [x, *layer.parameters()], torch.randn_like(x)), steps=3)


def _mb(b):
    return None if b is None else b / 2 ** 20


def _fmt(x, spec):
    return "-" if x is None else format(x, spec)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small shapes, one variant")
    parser.add_argument("--json", help="write all rows to this file")
    parser.add_argument("--profile-layer", action="store_true",
                        help="also print the kernel breakdown of the S4D layer")
    parser.add_argument("--s4d-conv", action="store_true",
                        help="only the fused convolution and S4D layer rows")
    args = parser.parse_args()
    assert torch.cuda.is_available(), "this benchmark needs a CUDA GPU"
    bw = copy_bandwidth()
    print(f"device: {torch.cuda.get_device_name()}  torch {torch.__version__}  "
          f"triton {triton.__version__}  copy bandwidth {bw / 1e12:.2f} TB/s")
    shapes = [(64, 64, 4096)] if args.quick else S4D_SHAPES
    rows = []
    if not args.s4d_conv:
        for H, N, L in shapes:
            rows += s4d_rows(H, N, L, bw, args.quick)
        rows += cauchy_rows(*((64, 32, 2048) if args.quick else CAUCHY_SHAPE), args.quick)
    layer_shape = (2, 64, 2048) if args.quick else LAYER_SHAPE
    conv = conv_rows(*layer_shape, 32, bw, args.quick)
    best = best_fused(conv)
    print(f"fastest fused settings (fwd from the best forward, bwd from the best backward): {best}")
    rows += conv + layer_rows(*layer_shape, best)
    if args.s4d_conv:  # the shipped settings once more, after everything else (spread)
        rows += layer_rows(*layer_shape, only_fused=True)
        rows[-1]["impl"] += " (shipped, again)"
    if args.s4d_conv and args.profile_layer:
        saved = with_overrides(convmod, best)
        layer_profile(*layer_shape)
        with_overrides(convmod, saved)
    if not args.quick and not args.s4d_conv:
        H, N, L = S4D_SHAPES[0]
        params = s4d_params(H, N)
        grad = torch.randn(H, L, device="cuda")
        for backend in ("triton",):
            profile(f"s4d_kernel fwd+bwd {backend} H{H} N{N} L{L}",
                    fwd_bwd(lambda b=backend: s4d_kernel(*params, L, backend=b), params, grad))
        M, N, L = CAUCHY_SHAPE
        v, w = (torch.randn(M, N, dtype=torch.complex64, device="cuda", requires_grad=True)
                for _ in range(2))
        z = torch.exp(2j * math.pi * torch.rand(L, device="cuda")).to(torch.complex64)
        profile(f"cauchy fwd+bwd triton M{M} N{N} L{L}",
                fwd_bwd(lambda: cauchy(v, z, w, backend="triton").real, [v, w],
                        torch.randn(M, L, device="cuda")))
        if args.profile_layer:
            layer_profile(*LAYER_SHAPE)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)
    print(f"{'op':18} {'shape':26} {'impl':44} {'fwd ms':>9} {'fwd MB':>9} {'f+b ms':>9} "
          f"{'f+b MB':>9} {'rel err':>8}  note")
    for r in rows:
        print(f"{r['op']:18} {r.get('shape', ''):26} {r['impl']:44} "
              f"{_fmt(r.get('fwd_ms'), '9.4f')} {_fmt(r.get('fwd_peak_MB'), '9.1f')} "
              f"{_fmt(r.get('fwdbwd_ms'), '9.4f')} {_fmt(r.get('fwdbwd_peak_MB'), '9.1f')} "
              f"{_fmt(r.get('rel_err'), '8.1e')}  {r.get('note') or ''}")


if __name__ == "__main__":
    main()
