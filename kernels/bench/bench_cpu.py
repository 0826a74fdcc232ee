"""CPU benchmark of the reference ops against their naive formulations.

Run: ``python -m ssmsignal.kernels.bench.bench_cpu [--repeats 5] [--chunks 16,32,64] [--threads 2]``

1. ``selective_scan`` (reference, chunked) vs a per-step Python loop, batch 4, d 64, L 16384,
   N 16, float32, Mamba-like parameters (S4D-real ``A``, ``dt`` log-uniform in [1e-3, 1e-1]).
2. ``s4d_kernel`` (blocked Vandermonde) vs the materialised ``(H, N, L)`` einsum, H 256, N 64,
   L 16384, complex64.

Times are the median and the minimum over ``--repeats`` runs after one warm-up (the minimum is
the better estimate on a shared machine). Memory: the scan's scratch space is given
analytically (two segment workspaces, independent of ``L``) and as the growth of the process's
max RSS (``resource.getrusage``) while the reference ran, measured before anything else.
"""

from __future__ import annotations

import argparse
import math
import os
import resource
import statistics
import time

import torch

from ssmsignal.kernels import _scan, reference


def naive_selective_scan(u, delta, A, B, C, readout="bmm"):
    """Per-step loop: ``x_t = exp(dt_t A) x_{t-1} + dt_t B_t u_t``, ``y_t = C_t . x_t``.

    ``readout="bmm"`` is the fastest plain loop we found; ``"einsum"`` (one ``einsum`` per step)
    is the loop behind the issue's 0.7 s figure.
    """
    b, d, L = u.shape
    x = u.new_zeros(b, d, A.shape[1])  # (b, d, N)
    ys = []
    for t in range(L):
        dt = delta[:, :, t, None]  # (b, d, 1)
        x = torch.exp(dt * A) * x + dt * u[:, :, t, None] * B[:, None, :, t]  # (b, d, N)
        if readout == "bmm":
            ys.append(torch.bmm(x, C[:, :, t, None])[..., 0])  # (b, d)
        else:
            ys.append(torch.einsum("bdn,bn->bd", x, C[:, :, t]))  # (b, d)
    return torch.stack(ys, dim=-1)  # (b, d, L)


def naive_s4d_kernel(coef, log_z, L):
    """Materialised Vandermonde matrix ``(H, N, L)``."""
    powers = torch.exp(log_z[:, :, None] * torch.arange(L, dtype=torch.float32))  # (H, N, L)
    return 2.0 * torch.einsum("hn,hnl->hl", coef, powers).real


def timed(fn, repeats, warmup=True):
    """(median wall, min wall, min process CPU) seconds over ``repeats`` runs.

    On a shared machine the CPU time of a single-threaded run is the most stable measure of the
    work done; wall times are what a user sees.
    """
    if warmup:
        fn()
    walls, cpus = [], []
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        fn()
        walls.append(time.perf_counter() - t0)
        cpus.append(time.process_time() - c0)
    return statistics.median(walls), min(walls), min(cpus)


def max_rss_mib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def bench_scan(repeats, chunks):
    torch.manual_seed(0)
    b, d, L, N = 4, 64, 16384, 16
    u = torch.randn(b, d, L)
    log_dt = torch.empty(b, d, L).uniform_(math.log(1e-3), math.log(1e-1))
    delta = torch.exp(log_dt)  # (b, d, L)
    A = -torch.arange(1, N + 1, dtype=torch.float32).repeat(d, 1)  # (d, N) S4D-real
    B = torch.randn(b, N, L)
    C = torch.randn(b, N, L)
    print(f"selective_scan  b={b} d={d} L={L} N={N} float32, "
          f"torch threads={torch.get_num_threads()}")
    work_mib = 2 * _scan.SEGMENT_ELEMENTS * 4 / 2**20
    rss0 = max_rss_mib()
    results = {}
    with torch.no_grad():
        for chunk in chunks:  # the reference first, so that the RSS growth is its own
            _scan.SCAN_CHUNK = chunk
            results[chunk] = timed(lambda: reference.selective_scan(u, delta, A, B, C), repeats)
        rss_ref = max_rss_mib() - rss0
        naive = timed(lambda: naive_selective_scan(u, delta, A, B, C), repeats)
        slow = timed(lambda: naive_selective_scan(u, delta, A, B, C, "einsum"), repeats)
        want = naive_selective_scan(u, delta, A, B, C)
        for name, (med, best, cpu) in (("bmm", naive), ("einsum", slow)):
            print(f"  naive per-step loop ({name:6s}) wall median {med * 1e3:8.1f} ms  "
                  f"min {best * 1e3:8.1f} ms  CPU {cpu * 1e3:8.1f} ms")
        for chunk, (med, best, cpu) in results.items():
            _scan.SCAN_CHUNK = chunk
            err = (reference.selective_scan(u, delta, A, B, C) - want).abs().max().item()
            print(f"  reference, chunk {chunk:3d}       wall median {med * 1e3:8.1f} ms  "
                  f"min {best * 1e3:8.1f} ms  CPU {cpu * 1e3:8.1f} ms  max|diff| {err:.1e}")
            print(f"    speed-up vs bmm loop: {naive[1] / best:5.1f}x (min wall) "
                  f"{naive[2] / cpu:5.1f}x (CPU); vs einsum loop: {slow[1] / best:5.1f}x (min "
                  f"wall) {slow[2] / cpu:5.1f}x (CPU)")
    print(f"  reference scratch memory: 2 x {_scan.SEGMENT_ELEMENTS} float32 = {work_mib:.0f} MiB "
          f"(analytic, independent of L); max RSS grew {rss_ref:.0f} MiB while it ran "
          f"(inputs {5 * b * d * L * 4 / 2**20:.0f} MiB)")
    x = [t.clone().requires_grad_() for t in (u, delta, A, B, C)]
    fwd_bwd = timed(lambda: reference.selective_scan(*x).sum().backward(), max(1, repeats // 2))
    print(f"  reference forward+backward   median {fwd_bwd[0] * 1e3:8.1f} ms")


def bench_s4d(repeats):
    torch.manual_seed(0)
    H, N, L = 256, 64, 16384
    A = torch.complex(-0.5 * torch.ones(H, N), math.pi * torch.arange(N).float().repeat(H, 1))
    B = torch.ones(H, N, dtype=torch.complex64)
    C = torch.randn(H, N, dtype=torch.complex64)
    dt = torch.exp(torch.empty(H).uniform_(math.log(1e-3), math.log(1e-1)))
    coef, log_z = reference.s4d_coefficients(A, B, C, dt)
    print(f"s4d_kernel  H={H} N={N} L={L} complex64 (ZOH)")
    with torch.no_grad():
        t = timed(lambda: reference.vandermonde(coef, log_z, L), repeats)[0]
        t_naive = timed(lambda: naive_s4d_kernel(coef, log_z, L), 1, warmup=False)[0]  # ~2 GiB
        ref = naive_s4d_kernel(coef, log_z, L)
        err = (reference.vandermonde(coef, log_z, L) - ref).abs().max().item()
    T = int(L ** 0.5)
    print(f"  materialised einsum (H, N, L) {t_naive * 1e3:9.1f} ms   largest temporary "
          f"{H * N * L * 8 / 2**20:.0f} MiB")
    print(f"  reference (blocked)           {t * 1e3:9.1f} ms   speed-up {t_naive / t:5.1f}x   "
          f"max|diff| {err:.1e} (scale {ref.abs().max().item():.1e})   largest temporary "
          f"{H * 2 * N * T * 4 / 2**20:.0f} MiB")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--chunks", default=str(_scan.SCAN_CHUNK),
                        help="comma-separated scan chunk sizes to time")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1,
                        help="torch threads (default: all cores)")
    parser.add_argument("--skip-s4d", action="store_true")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {os.cpu_count()} CPU cores")
    bench_scan(args.repeats, [int(c) for c in args.chunks.split(",")])
    if not args.skip_s4d:
        bench_s4d(args.repeats)


if __name__ == "__main__":
    main()
