"""Generation speed of SaShiMi: recurrent step (eager, CUDA graphs) against the naive way.

The naive way regenerates with the convolution mode: to draw sample ``t`` it runs the whole
network on the ``t`` samples drawn so far and keeps the last logits, O(t log t) per sample. The
recurrent way costs one :meth:`SaShiMi.step` per sample whatever ``t``. Weights do not change
the speed, so the models here are freshly initialised.

Run::

    python -m ssmsignal.kernels.bench.bench_generation --device cuda --json out.json

and read ``samples/s`` (per second of wall clock, all sequences of the batch together) and the
real-time factor at 16 kHz (samples/s per sequence / 16000; > 1 is faster than real time).

``--compare`` times, in one process, the fused Triton step (:mod:`ssmsignal.models._sashimi_fused`,
CUDA graphs; shipped: dataflow passes at batch 1, and the one-program passes), the
module-by-module step with CUDA graphs and the naive way, at batch 1 and 64, for S4 and S4D at
the default depth (8 pairs per tier) and the 2-pair S4 model, plus the time of each fused
tier-pass kernel at batch 1 (``--json`` keeps every row); ``--probe`` adds the hand-off probe.
"""
from __future__ import annotations

import argparse
import itertools
import json
import time

import torch

from ssmsignal.models import SaShiMi
from ssmsignal.models._mulaw import SILENCE_CODE
from ssmsignal.models._sashimi_decode import sample_codes
from ssmsignal.models._sashimi_fused import unsupported_reason

__all__ = ["recurrent_speed", "naive_speed", "steady_rate", "pass_times", "compare", "main"]


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def recurrent_speed(model, batch_size, n_steps, cuda_graphs, dt_scale=1.0, fused=None):
    """Samples per second (whole batch) of :func:`sample_codes`, warm-up excluded.

    The setup (packing, graph capture: one graph per pooling phase, or per 64-step block
    on the fused path) is part of every call of ``sample_codes``; it is timed separately by
    timing a call of zero steps (a one-step call would replay a whole 64-step block of the
    fused path and count it as setup). The fused path runs whole blocks: with graphs,
    ``n_steps`` should be a multiple of 64.
    """
    device = model.head.weight.device
    gen = torch.Generator(device=device).manual_seed(0)
    kw = dict(generator=gen, cuda_graphs=cuda_graphs, dt_scale=dt_scale, fused=fused,
              labels=_labels(model, batch_size))
    sample_codes(model, model.frame * 2, batch_size, **kw)  # warm-up: allocator, Triton JIT
    _sync(device)
    started = time.perf_counter()
    sample_codes(model, 0, batch_size, **kw)
    _sync(device)
    setup = time.perf_counter() - started
    started = time.perf_counter()
    sample_codes(model, n_steps, batch_size, **kw)
    _sync(device)
    elapsed = time.perf_counter() - started - setup
    if fused is None:  # what sample_codes picks by itself
        fused = device.type == "cuda" and unsupported_reason(model, dt_scale) is None
    mode = ("fused step" if fused else "step") + (
        "+graphs" if cuda_graphs and device.type == "cuda" else "")
    return {"mode": mode,
            "batch": batch_size, "steps": n_steps, "seconds": elapsed, "setup_s": setup,
            "samples_per_s": batch_size * n_steps / elapsed,
            "rtf_16k_per_stream": n_steps / elapsed / 16000.0}


def _labels(model, batch_size):
    """One label per row for a class-conditional model (0, 1, ..), else None."""
    if not model.n_conditions:
        return None
    return torch.arange(batch_size, device=model.head.weight.device) % model.n_conditions


@torch.no_grad()
def naive_speed(model, n_steps, batch_size=1):
    """Samples per second when each new sample reruns the convolution mode on the prefix."""
    device = model.head.weight.device
    labels = _labels(model, batch_size)
    codes = torch.full((batch_size, 1), SILENCE_CODE, dtype=torch.long, device=device)
    model(codes, labels)  # warm-up
    _sync(device)
    started = time.perf_counter()
    for _ in range(n_steps):
        logits = model(codes, labels)[:, -1]  # (B, C): everything recomputed from scratch
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
    labels = _labels(model, batch_size)
    model(codes, labels)
    _sync(device)
    started = time.perf_counter()
    for _ in range(repeats):
        model(codes, labels)
    _sync(device)
    return (time.perf_counter() - started) / repeats


def steady_rate(model, batch_size, n_steps, seconds=0.4, **kwargs):
    """Samples/s of :func:`sample_codes` from the difference of an ``n``- and a ``2n``-step call.

    Setup (packing, allocation, graph warm-up and capture) is the same in both calls and
    cancels, up to its jitter (10-30 ms on the H100 machine): ``n`` starts at ``n_steps`` and
    doubles until the difference of the two calls is at least ``seconds`` (GPU round 2 took
    one probe call instead, which left 16-step windows for the slowest rows, inside the jitter:
    a negative rate). Returns ``(samples_per_s, setup_seconds, n)``.
    """
    device = model.head.weight.device
    kwargs.setdefault("labels", _labels(model, batch_size))

    def timed(n):
        gen = torch.Generator(device=device).manual_seed(0)
        _sync(device)
        started = time.perf_counter()
        sample_codes(model, n, batch_size, generator=gen, **kwargs)
        _sync(device)
        return time.perf_counter() - started

    timed(model.frame)  # JIT and allocator warm-up
    n = max(model.frame, n_steps - n_steps % model.frame)
    while True:
        t1, t2 = timed(n), timed(2 * n)
        if t2 - t1 >= seconds or n >= 1 << 20:
            break
        n *= 2
    per_step = (t2 - t1) / n
    return batch_size / per_step, t1 - n * per_step, n


#: fused rows of :func:`compare`: (name, ``sashimi_step.CONFIG`` overrides, sample_codes
#: keywords, models: "all", "8" (default depth) or "first" (the first model only), batches);
#: "fused" is the shipped default (dataflow passes for tiers 1-2 where the grid fits: batch 1),
#: "fused one-program" the one-program passes everywhere (the default before session 4), "fused
#: all tiers" tier 0 on a dataflow pass too (S4 drifted on the GPU now and then: NOTES). The other
#: configurations (split, bf16, mix, dataflow variants df4/df2/df32/spin): earlier rounds, NOTES.
ONE_PROGRAM = {"dataflow": False}
FUSED_ROWS = [("fused", {}, {}, "all", (1, 64)),
              ("fused one-program", ONE_PROGRAM, {}, "all", (1, 64)),
              ("fused all tiers", {"dataflow": True}, {}, "8", (1,))]
#: ``--candidates`` (GPU round 3): the S4 dataflow settings of
#: tests/models/test_sashimi_dataflow.py S4_CONFIGS, batch 1, default depth only
CANDIDATES = {"tier0": {"dataflow": [True, False]}, "tiers12": {"dataflow": [False, True]},
              "tier0-4stage": {"dataflow": [True, False], "df_fuse2": False, "df_split": 4,
                               "df_warps": 4},
              "tier1-ppg1": {"dataflow": [False, True, False], "df_split": [8, 4], "df_ppg": 1,
                             "df_epi": 4}}
CANDIDATE_ROWS = [(mode, config, {}, "all", (1,)) for mode, config, *_ in FUSED_ROWS[:2]] + [
    (f"fused {name}", config, {}, "first", (1,)) for name, config in CANDIDATES.items()]
#: per-pass timing configurations: ``sashimi_step.CONFIG`` overrides and bf16_weights
PASS_CONFIGS = [(ONE_PROGRAM, False), ({}, False)]


def _config_name(c):
    def show(v):
        return "/".join(map(str, v)) if isinstance(v, (list, tuple)) else str(v)

    if c["dataflow"]:
        return (f"df{show(c['dataflow'])} S{show(c['df_split'])} ppg{show(c['df_ppg'])} "
                f"f{show(c['df_fuse2'])} w{show(c['df_warps'])} e{show(c['df_epi'])}")
    return (f"w{show(c['num_warps'])}|{show(c['num_warps_wide'])} "
            + ("pipe" if c["single"] is True else "regs" if c["regs"] else "scratch")
            + f" t{c['tile_wide']} S{show(c['split'])}")


def pass_times(model, batch_size=1, configs=PASS_CONFIGS):
    """Time (us; ``triton.testing.do_bench`` median of a CUDA graph of 10 launches, / 10) and
    weight bytes of every fused tier pass that the all-tiers step (phase 0) launches, for each
    ``(CONFIG overrides, bf16_weights)`` of ``configs``."""
    import triton.testing

    from ssmsignal.kernels.triton import sashimi_step
    from ssmsignal.models._sashimi_fused import FusedDecoder

    rows, default = [], dict(sashimi_step.CONFIG)
    for overrides, bf16 in configs:
        sashimi_step.CONFIG.update(overrides)
        config = dict(sashimi_step.CONFIG)
        try:
            dec = FusedDecoder(model, batch_size, _labels(model, batch_size), bf16_weights=bf16)
            calls, launch = [], dec._pass
            dec._pass = lambda *a, **k: calls.append((a, k))
            dec.step(0)
            dec._pass = launch
            for args, kwargs in calls:
                k, _, pro, epi, first, n_pairs = args
                tp = dec.tiers[k]
                per_pair = sum(w[0].numel() * w.element_size()
                               for w in tp.weights if w.dim() > 1)  # bytes

                def once():
                    if dec.split[k] > 1:  # split launches count their barriers from zero
                        dec.counters.zero_()
                        dec._slot = 0
                    launch(*args, **kwargs)

                once()  # compile, then 10 launches in one CUDA graph: no host overhead
                graph = torch.cuda.CUDAGraph()
                with torch.cuda.graph(graph):
                    for _ in range(10):
                        once()
                ms = triton.testing.do_bench(graph.replay, warmup=20, rep=60,
                                             return_mode="median") / 10
                rows.append({"config": _config_name(config) + (" bf16" if bf16 else ""),
                             "tier": k, "H": tp.H,
                             "split": dec.split[k], "dataflow": bool(dec.dataflow[k]),
                             "pairs": n_pairs, "prologue": pro,
                             "epilogue": epi, "us": ms * 1e3,
                             "weight_MB": per_pair * n_pairs / 1e6,
                             "GB_per_s": per_pair * n_pairs / (ms * 1e-3) / 1e9})
        finally:
            sashimi_step.CONFIG.clear()
            sashimi_step.CONFIG.update(default)
    return rows


#: models of :func:`compare`: (layer, pairs per tier, unet, with the module and naive baselines)
COMPARE_MODELS = [("s4", 8, False, True), ("s4d", 8, False, True), ("s4", 2, False, False)]


def compare(device, steps=2000, naive_steps=30, models=COMPARE_MODELS, json_path=None,
            probe=False, fused_rows=FUSED_ROWS, passes=True):
    """Fused vs module-by-module (both with CUDA graphs) vs naive, batch 1 and 64 (rows also
    written to ``json_path`` as they come, so a run cut short keeps them)."""
    from ssmsignal.kernels.triton import sashimi_step

    rows = []
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"

    def add(row):  # printed as it comes, so a run cut short still reports
        rows.append({**row, "device": name})
        print("  ", {k: (round(v, 4) if isinstance(v, float) else v) for k, v in row.items()},
              flush=True)
        if json_path:
            with open(json_path, "w") as f:
                json.dump(rows, f, indent=1)

    for r in handoff_times(device) if probe else []:
        add({"layer": "-", "n_layers": 0, "unet": None, "mode": "probe", **r})
    for layer, n_layers, unet, full in models:
        torch.manual_seed(0)
        model = SaShiMi(d_model=64, n_layers=n_layers, layer=layer, n_conditions=10, unet=unet)
        model = model.to(device).eval()  # class-conditional (10 digits), as AudioGenerator
        tag = {"layer": layer, "n_layers": n_layers, "unet": unet,
               "params": sum(p.numel() for p in model.parameters())}
        first = (layer, n_layers, unet) == models[0][:3]
        runs = [(mode, kw, config, steps, batches if full else (1,))
                for mode, config, kw, which, batches in fused_rows
                if which == "all" or which == "8" and full or which == "first" and first]
        if full:  # the baseline of the same run: batch 1 for each, batch 64 for the first
            runs.append(("module+graphs", dict(fused=False), {}, steps // (4 * n_layers),
                         (1, 64) if first else (1,)))
        for mode, kw, config, n, batches in runs:
            for batch in batches:
                default = dict(sashimi_step.CONFIG)
                sashimi_step.CONFIG.update(config)
                try:
                    rate, setup, n_timed = steady_rate(model, batch, n, fused=True, **kw) \
                        if "fused" in mode else steady_rate(model, batch, n, **kw)
                except RuntimeError as err:  # e.g. a dataflow wait gave up: report, go on
                    add({**tag, "mode": mode, "batch": batch, "error": str(err)[:300]})
                    continue
                finally:
                    sashimi_step.CONFIG.clear()
                    sashimi_step.CONFIG.update(default)
                add({**tag, "mode": mode, "batch": batch, "steps": n_timed, "samples_per_s": rate,
                     "setup_s": setup, "rtf_16k_per_stream": rate / batch / 16000.0})
        if full:
            add({**tag, **naive_speed(model, naive_steps)})
        if first and passes:
            for r in pass_times(model, configs=PASS_CONFIGS):
                add({**tag, "mode": "pass", **r})
    return rows


def handoff_times(device, lengths=(2, 17, 65, 129), widths=(64, 512), warps=(1, 4, 8)):
    """Time of a chain of ``n`` dependent programs handing ``width`` floats on through global
    memory (``_dataflow_protocol.handoff_probe``; do_bench median of a CUDA graph of 10 launches
    / 10, us), per chain length: the slope over the length is the cost of one hand-off."""
    if device.type != "cuda":
        return []
    import triton.testing

    from ssmsignal.kernels.triton._dataflow_protocol import handoff_probe

    rows = []
    for width, nw in itertools.product(widths, warps):
        for n in lengths:
            buf = torch.zeros(n * 512, dtype=torch.int64, device=device)
            ep, err = (torch.zeros(1, dtype=torch.int32, device=device) for _ in range(2))
            handoff_probe(n, width, buf, ep, err, 1 << 18, nw)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                for _ in range(10):
                    handoff_probe(n, width, buf, ep, err, 1 << 18, nw)
            ms = triton.testing.do_bench(graph.replay, warmup=10, rep=50,
                                         return_mode="median") / 10
            wp = 1 << (width - 1).bit_length()  # the probe's row stride
            last = buf[(n - 1) * wp:(n - 1) * wp + width] & 0xFFFFFFFF
            ok = int(err.item()) == 0 and torch.equal(
                last.to(torch.int32).view(torch.float32).cpu(),
                torch.arange(width, dtype=torch.float32) + n)
            rows.append({"programs": n, "width": width, "warps": nw, "us": ms * 1e3,
                         "ok": ok})
        first, last_row = rows[-len(lengths)], rows[-1]
        last_row["us_per_handoff"] = (last_row["us"] - first["us"]) / (lengths[-1] - lengths[0])
    return rows


def print_compare(rows):
    print(f"{'layer':5s} {'pairs':>5s} {'mode':22s} {'batch':>5s} {'samples/s':>11s} "
          f"{'RTF@16k/str':>11s} {'x module':>8s}")
    ref = {(r["layer"], r["n_layers"], r["unet"], r["batch"]): r["samples_per_s"] for r in rows
           if r["mode"] == "module+graphs"}
    for r in rows:
        if r["mode"] == "probe":
            print(f"hand-off chain: {r['programs']:3d} programs x {r['warps']} warps, "
                  f"{r['width']} floats: {r['us']:8.2f} us, ok {r['ok']}"
                  + (f"; {r['us_per_handoff']:.3f} us per hand-off"
                     if "us_per_handoff" in r else ""))
        if r["mode"] in ("pass", "probe"):
            continue
        if "error" in r:
            print(f"{r['layer']:5s} {r['n_layers']:5d} {r['mode']:22s} {r['batch']:5d} "
                  f"ERROR {r['error']}")
            continue
        base = ref.get((r["layer"], r["n_layers"], r["unet"], r["batch"]))
        unet = "U" if r["unet"] else ""
        print(f"{r['layer'] + unet:5s} {r['n_layers']:5d} {r['mode']:22s} {r['batch']:5d} "
              f"{r['samples_per_s']:11.1f} {r['rtf_16k_per_stream']:11.4f} "
              f"{r['samples_per_s'] / base if base else float('nan'):8.2f}")
    print(f"{'layer':5s} {'pairs':>5s} {'config':34s} tier    H  S df pairs pro epi "
          f"{'us':>8s} {'MB':>7s} {'GB/s':>7s}")
    for r in rows:
        if r["mode"] == "pass":
            print(f"{r['layer']:5s} {r['n_layers']:5d} {r['config']:34s} {r['tier']:4d} "
                  f"{r['H']:4d} {r['split']:2d} {int(r['dataflow']):2d} {r['pairs']:5d} "
                  f"{r['prologue']:3d} {r['epilogue']:3d} {r['us']:8.1f} {r['weight_MB']:7.3f} "
                  f"{r['GB_per_s']:7.1f}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--d-model", type=int, default=64)
    parser.add_argument("--n-layers", type=int, default=2)
    parser.add_argument("--layer", default="s4")
    parser.add_argument("--steps", type=int, default=4000)
    parser.add_argument("--naive-steps", type=int, default=200)
    parser.add_argument("--json", default=None)
    parser.add_argument("--compare", action="store_true",
                        help="fused vs module (graphs) vs naive, default and 2-pair models")
    parser.add_argument("--probe", action="store_true",
                        help="with --compare: the hand-off probe of the dataflow passes first")
    parser.add_argument("--candidates", action="store_true",
                        help="with --compare: batch-1 rows of CANDIDATES only (S4, S4D)")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    if args.compare:
        extra = dict(fused_rows=CANDIDATE_ROWS, passes=False, models=[
            ("s4", 8, False, True), ("s4d", 8, False, False)]) if args.candidates else {}
        rows = compare(device, 512, min(args.naive_steps, 10), json_path=args.json,
                       probe=args.probe, **extra)
        print_compare(rows)
        return rows
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
