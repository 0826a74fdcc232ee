"""Generation speed of SaShiMi: recurrent step (eager, CUDA graphs) against the naive way.

The naive way regenerates with the convolution mode: to draw sample ``t`` it runs the whole
network on the ``t`` samples drawn so far and keeps the last logits, O(t log t) per sample. The
recurrent way costs one :meth:`SaShiMi.step` per sample whatever ``t``. Weights do not change
the speed, so the models here are freshly initialised.

Run::

    python -m ssmsignal.kernels.bench.bench_generation --device cuda --json out.json

and read ``samples/s`` (per second of wall clock, all sequences of the batch together) and the
real-time factor at 16 kHz (samples/s per sequence / 16000; > 1 is faster than real time).
"""
from __future__ import annotations

import argparse
import json
import time

import torch

from ssmsignal.models import SaShiMi
from ssmsignal.models._mulaw import SILENCE_CODE
from ssmsignal.models._sashimi_decode import sample_codes

__all__ = ["recurrent_speed", "naive_speed", "main"]


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def recurrent_speed(model, batch_size, n_steps, cuda_graphs, dt_scale=1.0):
    """Samples per second (whole batch) of :func:`sample_codes`, warm-up excluded.

    The graph capture (one graph per pooling phase) is part of every call of
    ``sample_codes``; it is timed separately by timing a call of one step.
    """
    device = model.head.weight.device
    gen = torch.Generator(device=device).manual_seed(0)
    sample_codes(model, model.frame * 2, batch_size, generator=gen, cuda_graphs=cuda_graphs,
                 dt_scale=dt_scale)  # warm-up: allocator, lazy inits, Triton JIT
    _sync(device)
    started = time.perf_counter()
    sample_codes(model, 1, batch_size, generator=gen, cuda_graphs=cuda_graphs,
                 dt_scale=dt_scale)
    _sync(device)
    setup = time.perf_counter() - started
    started = time.perf_counter()
    sample_codes(model, n_steps, batch_size, generator=gen, cuda_graphs=cuda_graphs,
                 dt_scale=dt_scale)
    _sync(device)
    elapsed = time.perf_counter() - started - setup
    return {"mode": "step+graphs" if cuda_graphs and device.type == "cuda" else "step",
            "batch": batch_size, "steps": n_steps, "seconds": elapsed, "setup_s": setup,
            "samples_per_s": batch_size * n_steps / elapsed,
            "rtf_16k_per_stream": n_steps / elapsed / 16000.0}


@torch.no_grad()
def naive_speed(model, n_steps, batch_size=1):
    """Samples per second when each new sample reruns the convolution mode on the prefix."""
    device = model.head.weight.device
    codes = torch.full((batch_size, 1), SILENCE_CODE, dtype=torch.long, device=device)
    model(codes)  # warm-up
    _sync(device)
    started = time.perf_counter()
    for _ in range(n_steps):
        logits = model(codes)[:, -1]  # (B, C): everything recomputed from scratch
        nxt = torch.distributions.Categorical(logits=logits.float()).sample()  # (B,)
        codes = torch.cat([codes, nxt[:, None]], dim=1)  # (B, t + 1)
    _sync(device)
    elapsed = time.perf_counter() - started
    return {"mode": "naive conv", "batch": batch_size, "steps": n_steps, "seconds": elapsed,
            "samples_per_s": batch_size * n_steps / elapsed,
            "rtf_16k_per_stream": n_steps / elapsed / 16000.0}


@torch.no_grad()
def naive_at_length(model, length, batch_size=1, repeats=3):
    """Seconds for ONE naive sample when the prefix is ``length`` long (end of a clip)."""
    device = model.head.weight.device
    codes = torch.full((batch_size, length), SILENCE_CODE, dtype=torch.long, device=device)
    model(codes)
    _sync(device)
    started = time.perf_counter()
    for _ in range(repeats):
        model(codes)
    _sync(device)
    return (time.perf_counter() - started) / repeats


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--d-model", type=int, default=64)
    parser.add_argument("--n-layers", type=int, default=2)
    parser.add_argument("--layer", default="s4")
    parser.add_argument("--steps", type=int, default=4000)
    parser.add_argument("--naive-steps", type=int, default=200)
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    torch.manual_seed(0)
    model = SaShiMi(d_model=args.d_model, n_layers=args.n_layers, layer=args.layer)
    model = model.to(device).eval()
    rows = run_all(model, device, args.steps, args.naive_steps)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)
    print_table(rows)
    return rows


def run_all(model, device, steps, naive_steps):
    """Every variant on ``model``: graphs (GPU), eager step, naive; batch 1 and 64."""
    rows = []
    for batch in (1, 64):
        if device.type == "cuda":
            rows.append(recurrent_speed(model, batch, steps, cuda_graphs=True))
        rows.append(recurrent_speed(model, batch, max(steps // 10, model.frame),
                                    cuda_graphs=False))
    rows.append(naive_speed(model, naive_steps))
    seconds = naive_at_length(model, 16000)  # one measurement for the whole row
    rows.append({"mode": "naive conv, one sample at t=16000", "batch": 1, "steps": 1,
                 "seconds": seconds, "samples_per_s": 1.0 / seconds,
                 "rtf_16k_per_stream": 1.0 / seconds / 16000.0})
    for row in rows:
        row["device"] = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
        row["params"] = sum(p.numel() for p in model.parameters())
    return rows


def print_table(rows):
    print(f"{'mode':38s} {'batch':>5s} {'steps':>6s} {'samples/s':>12s} {'RTF@16k/stream':>14s}")
    for r in rows:
        print(f"{r['mode']:38s} {r['batch']:5d} {r['steps']:6d} {r['samples_per_s']:12.1f} "
              f"{r['rtf_16k_per_stream']:14.4f}")


if __name__ == "__main__":
    main()
