"""CPU benchmark of the estimators: fit time per epoch and predict throughput.

Run: ``python -m ssmsignal.kernels.bench.bench_estimators`` (or ``ssmsignal bench``), options
``--n 512 --length 1000 --epochs 2 --d-model 64 --n-layers 4 --threads 2``.

Data: ``n`` univariate series of ``length`` samples (C = 1), two classes of noisy sines, float32.
Every estimator uses its default architecture unless ``--d-model`` / ``--n-layers`` say
otherwise, batch size 32, no early stopping. Fit time per epoch is the median of the
``--epochs`` epochs after the first (the first includes one-time set-up); predict throughput
is series per second for ``predict`` on all ``n`` series (median of 3 runs).

The CPU selective scan makes Mamba slow here: ``--mamba-subset 64`` times the Mamba rows on 64
series (2 batches) and scales the epoch time to ``n`` (the row says so).

Baseline measured in the same run: a GRU classifier of the same width and depth, trained by the
same training loop (:mod:`ssmsignal.estimators._training`) and evaluated the same way.
"""
from __future__ import annotations

import argparse
import datetime
import platform
import statistics
import time

import numpy as np
import torch

from ssmsignal import MambaClassifier, MambaRegressor, S4Classifier, S4Regressor
from ssmsignal.estimators._training import TrainConfig, train_module


def make_data(n: int, length: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 2
    t = np.arange(length) / length
    freq = np.where(y == 0, 3.0, 9.0)[:, None]
    X = np.sin(2 * np.pi * freq * t + rng.uniform(0, 6.3, (n, 1))) + 0.3 * rng.normal(
        size=(n, length))
    return X.astype(np.float32), y


class GRUClassifierNet(torch.nn.Module):
    """Baseline: Linear encoder -> GRU (same width/depth) -> mean over time -> head."""

    def __init__(self, d_model: int, n_layers: int, n_classes: int = 2) -> None:
        super().__init__()
        self.encoder = torch.nn.Linear(1, d_model)
        self.gru = torch.nn.GRU(d_model, d_model, num_layers=n_layers, batch_first=True)
        self.head = torch.nn.Linear(d_model, n_classes)

    def forward(self, x):  # x: (B, L)
        h, _ = self.gru(self.encoder(x[:, :, None]))  # (B, L, H)
        return self.head(h.mean(dim=1))  # (B, k)


def _time_predict(fn, repeats: int = 3) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def bench_estimator(name, estimator, X, y, subset=None):
    """Fit and predict; with ``subset``, on the first ``subset`` series only, and the epoch
    time is scaled by ``len(X) / subset`` (marked "extrapolated" in the row's name)."""
    n = len(X)
    if subset is not None and subset < n:
        X, y = X[:subset], y[:subset]
        name = f"{name} (extrapolated from n={subset})"
    estimator.fit(X, y)
    epochs = [row["time"] for row in estimator.history_]
    per_epoch = statistics.median(epochs[1:] if len(epochs) > 1 else epochs) * n / len(X)
    seconds = _time_predict(lambda: estimator.predict(X), repeats=1 if subset else 3)
    return name, per_epoch, len(X) / seconds


def bench_gru(X, y, d_model, n_layers, epochs):
    torch.manual_seed(0)
    net = GRUClassifierNet(d_model, n_layers)
    Xt, yt = torch.from_numpy(X), torch.from_numpy(y.astype(np.int64))

    def batches(generator):
        order = torch.randperm(len(Xt), generator=generator)
        return [(Xt[order[i:i + 32]], yt[order[i:i + 32]]) for i in range(0, len(Xt), 32)]

    def loss(module, batch):
        return torch.nn.functional.cross_entropy(module(batch[0]), batch[1])

    result = train_module(net, loss, batches, TrainConfig(max_epochs=epochs, device="cpu",
                                                          random_state=0))
    times = [row["time"] for row in result.history]
    per_epoch = statistics.median(times[1:] if len(times) > 1 else times)

    def predict():
        with torch.no_grad():
            for i in range(0, len(Xt), 32):
                net(Xt[i:i + 32]).argmax(dim=1)

    return f"GRU baseline (d={d_model}, layers={n_layers})", per_epoch, len(X) / _time_predict(
        predict)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=512)
    parser.add_argument("--length", type=int, default=1000)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--d-model", type=int, default=64)
    parser.add_argument("--n-layers", type=int, default=4)
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    parser.add_argument("--only", default=None, help="comma-separated subset of rows")
    parser.add_argument("--mamba-subset", type=int, default=None,
                        help="time the Mamba rows on this many series and scale the epoch "
                             "time to --n (the CPU selective scan is slow)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    X, y = make_data(args.n, args.length)
    common = dict(d_model=args.d_model, n_layers=args.n_layers, max_epochs=args.epochs,
                  batch_size=32, early_stopping=False, verbose=0, random_state=0,
                  device="cpu")
    target = X.mean(axis=1)
    rows = {
        "S4Classifier(s4d)": lambda: bench_estimator("S4Classifier(layer='s4d')",
                                                     S4Classifier(**common), X, y),
        "S4Classifier(s4)": lambda: bench_estimator("S4Classifier(layer='s4')",
                                                    S4Classifier(layer="s4", **common), X, y),
        "MambaClassifier": lambda: bench_estimator("MambaClassifier",
                                                   MambaClassifier(**common), X, y,
                                                   args.mamba_subset),
        "S4Regressor": lambda: bench_estimator("S4Regressor(layer='s4d')",
                                               S4Regressor(**common), X, target),
        "MambaRegressor": lambda: bench_estimator("MambaRegressor",
                                                  MambaRegressor(**common), X, target,
                                                  args.mamba_subset),
        "GRU": lambda: bench_gru(X, y, args.d_model, args.n_layers, args.epochs),
    }
    chosen = args.only.split(",") if args.only else list(rows)
    unknown = sorted(set(chosen) - set(rows))
    if unknown:
        parser.error(f"--only: unknown row(s) {unknown}; choose from {list(rows)}")
    print(f"# {datetime.date.today()} {platform.processor() or platform.machine()}, "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads; n={args.n}, "
          f"L={args.length}, C=1, float32, batch 32, d_model={args.d_model}, "
          f"n_layers={args.n_layers}, {args.epochs} epochs")
    print("| estimator | fit s/epoch | predict series/s |")
    print("| --- | ---: | ---: |")
    for key in chosen:
        name, per_epoch, throughput = rows[key]()
        print(f"| {name} | {per_epoch:.2f} | {throughput:.0f} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
