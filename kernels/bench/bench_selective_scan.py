"""Side-by-side timings of the selective scan on one GPU, all in one process.

Compared: ours (``ssmsignal.kernels.triton.selective_scan``), mamba_ssm 2.3.2.post1's CUDA
``selective_scan_fn`` (built on the spot by ``.anchors/mamba_anchor.py``), its PyTorch
``selective_scan_ref`` (first shape only: it is slow), and Mamba-2's Triton SSD scan
``mamba_chunk_scan_combined``, what a user would pick instead. SSD solves a different (cheaper)
problem: one scalar ``A`` and one ``dt`` per head, shared by the head's ``headdim`` channels;
we map ``d`` channels to ``d / 64`` heads of 64 channels, ``N`` to its ``dstate``, one group.

Floors: bytes that must move (each input read once, each output written once) over the copy
bandwidth, and the ``exp2`` count over the exp2 rate of a register-only Triton kernel, both
measured in the same run. On the GPU machine: ``python -m
ssmsignal.kernels.bench.bench_selective_scan [--json F]``; ``--variants a,b,...`` checks each
candidate of :data:`ssmsignal.kernels.bench.scan_variants.VARIANTS` against float64 and times
it beside mamba_ssm's CUDA kernel; ``--warm NAME`` only compiles one, ``--profile NAME`` runs it
for Nsight Compute (``kernels/bench/gpu_scan.sh`` runs a whole round).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import torch
import triton
import triton.language as tl
from triton.testing import do_bench

from ssmsignal.kernels.triton import selective_scan as ours_mod

SHAPES = [(8, 1536, 4096, 16), (16, 256, 16000, 16), (4, 1024, 65536, 16)]


@triton.jit
def _exp2_rate_kernel(out_ptr, K: tl.constexpr):
    x = tl.arange(0, 128).to(tl.float32) * 1e-3 + tl.program_id(0) * 1e-6
    acc = tl.zeros((128,), dtype=tl.float32)
    for _ in range(K):
        x = tl.exp2(x) * -0.5  # dependent chain; 4 warps x many programs hide latency
        acc += x
    tl.store(out_ptr + tl.program_id(0) * 128 + tl.arange(0, 128), acc)


def measure_ceilings():
    """Copy bandwidth (bytes read + written per second) and exp2 rate (per second)."""
    src = torch.randn(1 << 29, device="cuda")  # 2 GiB
    dst = torch.empty_like(src)
    ms = do_bench(lambda: dst.copy_(src), warmup=50, rep=300, return_mode="median")
    bw = 2 * src.numel() * 4 / (ms * 1e-3)
    del src, dst
    programs, K = 132 * 64, 4096
    out = torch.empty(programs * 128, device="cuda")
    ms = do_bench(lambda: _exp2_rate_kernel[(programs,)](out, K=K, num_warps=4),
                  warmup=20, rep=200, return_mode="median")
    return bw, programs * 128 * K / (ms * 1e-3)


def make_inputs(b, d, L, N, grad):
    g = torch.Generator(device="cuda").manual_seed(0)
    bf = dict(device="cuda", dtype=torch.bfloat16)
    u = torch.randn(b, d, L, generator=g, **bf)
    delta = (torch.randn(b, d, L, generator=g, **bf) * 0.5 - 1.0)
    z = torch.randn(b, d, L, generator=g, **bf)
    B = torch.randn(b, N, L, generator=g, **bf)
    C = torch.randn(b, N, L, generator=g, **bf)
    A = -(torch.rand(d, N, generator=g, device="cuda") * 3 + 0.05)
    D = torch.randn(d, generator=g, device="cuda")
    bias = torch.randn(d, generator=g, device="cuda") * 0.3
    ins = [u, delta, A, B, C, D, z, bias]
    return [t.requires_grad_(grad) for t in ins]


def ssd_inputs(b, d, L, N, grad):
    """Mamba-2 SSD layout: x, z (b, L, h, 64), dt (b, L, h), A (h,), B, C (b, L, 1, N)."""
    g = torch.Generator(device="cuda").manual_seed(0)
    h, bf = d // 64, dict(device="cuda", dtype=torch.bfloat16)
    x = torch.randn(b, L, h, 64, generator=g, **bf)
    z = torch.randn(b, L, h, 64, generator=g, **bf)
    dt = torch.randn(b, L, h, generator=g, **bf) * 0.5 - 1.0
    A = -(torch.rand(h, generator=g, device="cuda") * 3 + 0.05)
    B = torch.randn(b, L, 1, N, generator=g, **bf)
    C = torch.randn(b, L, 1, N, generator=g, **bf)
    D = torch.randn(h, generator=g, device="cuda")
    bias = torch.randn(h, generator=g, device="cuda") * 0.3
    return [t.requires_grad_(grad) for t in (x, dt, A, B, C, D, z, bias)]


def timed(fn, grad, reps):
    """Median ms of ``fn`` (forward) or of forward + backward."""
    if grad:
        out = fn()
        dout = torch.randn_like(out)

        def step():
            fn().backward(dout)
        call = step
    else:
        def call():
            with torch.no_grad():
                fn()
    try:
        return do_bench(call, warmup=reps[0], rep=reps[1], return_mode="median")
    except torch.OutOfMemoryError:
        torch.cuda.empty_cache()
        return float("nan")
    except Exception as e:  # noqa: BLE001  (a failing candidate must not end the run)
        print(f"timing failed: {str(e)[:300]}", flush=True)
        return float("nan")


def floors(b, d, L, N, grad, bw, exp_rate):
    """(byte floor ms, exp2 floor ms) for bf16 u, delta, z, B, C (and gradients)."""
    per_ch = b * d * L * 2  # one (b, d, L) bf16 tensor
    per_bc = b * N * L * 2
    bytes_fwd = 4 * per_ch + 2 * per_bc  # u, delta, z in; out
    # backward: u, delta, z, dout, B, C in; du, ddelta, dz, dB, dC out
    bytes_all = bytes_fwd + 7 * per_ch + 4 * per_bc
    exps = b * d * L * N * (2 if grad else 1)  # forward + one recomputation in the backward
    return (bytes_all if grad else bytes_fwd) / bw * 1e3, exps / exp_rate * 1e3


HEADER = (f"{'shape':>22} {'mode':>8} {'ours':>8} {'mamba':>8} {'x mamba':>8} "
          f"{'SSD':>8} {'torch ref':>9} {'floorB':>7} {'floorX':>7} {'%floor':>6}")


def format_row(r):
    """One table line: ms, speed-up over mamba_ssm, floors (ms) and best time's % of floor."""
    best = r["ours"]
    floor = max(r["floor_bytes"], r["floor_exp2"])
    return (f"{str(r['shape']):>22} {r['mode']:>8} {best:8.3f} "
            f"{r['mamba_cuda']:8.3f} {r['mamba_cuda'] / best:8.2f} {r['mamba2_ssd']:8.3f} "
            f"{r.get('mamba_torch_ref', float('nan')):9.1f} {r['floor_bytes']:7.3f} "
            f"{r['floor_exp2']:7.3f} {100 * floor / best:5.0f}%")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--json", default=None)
    ap.add_argument("--anchors", default=".anchors")
    ap.add_argument("--shapes", type=int, default=len(SHAPES))
    ap.add_argument("--variants", default=None, help="VARIANTS names, comma-separated")
    ap.add_argument("--no-mamba", action="store_true", help="--variants: ours only, no checks")
    ap.add_argument("--warm", default=None, help="one VARIANTS name: only compile its kernels")
    ap.add_argument("--profile", default=None, help="one VARIANTS name: run it for a profiler")
    args = ap.parse_args()
    from ssmsignal.kernels.bench.scan_variants import (profile_variant, run_variants,
                                                       warm_variant)
    if args.warm:
        return warm_variant(args.warm, check=not args.no_mamba)
    if args.profile:
        return profile_variant(args.profile)
    if args.variants and args.no_mamba:
        return run_variants(args.variants.split(","), None, args.json, args.shapes, check=False)
    sys.path.insert(0, args.anchors)
    from mamba_anchor import load_mamba  # noqa: E402  (carried, git-ignored)
    mamba = load_mamba(args.anchors)
    if args.variants:
        return run_variants(args.variants.split(","), mamba, args.json, args.shapes)
    bw, exp_rate = measure_ceilings()
    dev = torch.cuda.get_device_name()
    print(f"device {dev}; copy {bw / 1e12:.2f} TB/s; exp2 {exp_rate / 1e12:.2f} T/s; "
          f"torch {torch.__version__}, triton {triton.__version__}")
    meta = dict(date=time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), device=dev,
                copy_bw=bw, exp2_rate=exp_rate, torch=torch.__version__,
                triton=triton.__version__, command=" ".join(sys.argv))
    rows = []
    print(HEADER, flush=True)
    for i, (b, d, L, N) in enumerate(SHAPES[:args.shapes]):
        for grad in (False, True):
            ins = make_inputs(b, d, L, N, grad)
            ssd = ssd_inputs(b, d, L, N, grad)
            reps = (10, 100) if L * b * d < 2e9 else (3, 30)
            r = dict(shape=(b, d, L, N), mode="fwd+bwd" if grad else "fwd")

            def run_ours():
                return ours_mod.selective_scan(*ins[:5], ins[5], ins[6], ins[7], True)
            r["ours"] = timed(run_ours, grad, reps)  # default chunks and block shapes
            r["mamba_cuda"] = float("nan") if mamba is None else timed(
                lambda: mamba.selective_scan_fn(*ins[:5], ins[5], ins[6], ins[7], True), grad,
                reps)
            r["mamba2_ssd"] = timed(lambda: mamba.mamba_chunk_scan_combined(
                ssd[0], ssd[1], ssd[2], ssd[3], ssd[4], 256, D=ssd[5], z=ssd[6], dt_bias=ssd[7],
                dt_softplus=True), grad, reps)
            if i == 0 and not grad:
                r["mamba_torch_ref"] = timed(lambda: mamba.selective_scan_ref(
                    *ins[:5], ins[5], ins[6], ins[7], True), grad, (1, 3))
            r["floor_bytes"], r["floor_exp2"] = floors(b, d, L, N, grad, bw, exp_rate)
            rows.append(r)
            print(format_row(r), flush=True)
            if args.json:  # after every row, so a run cut short keeps what it measured
                save_json(args.json, dict(meta=meta, rows=rows))
            del ins, ssd
            torch.cuda.empty_cache()


def save_json(path, data):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(data, f, indent=1)
    os.replace(tmp, path)


if __name__ == "__main__":
    main()
