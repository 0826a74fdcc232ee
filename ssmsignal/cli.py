"""Command line: ``ssmsignal demo | fit | predict | generate | bench`` (also ``python -m ssmsignal``).

* ``demo``: trains an S4Classifier on the embedded MIT-BIH heartbeats (a few minutes on a
  2-core CPU), prints the accuracy at 360 Hz, zero-shot at 180 Hz and 720 Hz (test beats
  resampled, Δ rescaled) and the majority-class baseline, and saves the model.
* ``fit``: trains an estimator on a ``.npz`` file holding ``X``, ``y`` and optionally
  ``sampling_rate``, and saves it (a directory, see :mod:`ssmsignal.io`).
* ``predict``: loads a saved model and predicts ``X`` of a ``.npz`` file, at its own
  ``sampling_rate`` (or ``--sampling-rate``); prints or writes a ``.npy`` file.
* ``generate``: audio from a saved :class:`~ssmsignal.AudioGenerator` (see its module).
* ``bench``: the CPU estimator benchmark (``kernels/bench/bench_estimators.py``).
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

# numpy, torch and the estimators are imported inside the commands: ``--help`` stays cheap.

_ESTIMATORS = {
    ("classify", "s4d"): ("S4Classifier", {"layer": "s4d"}),
    ("classify", "s4"): ("S4Classifier", {"layer": "s4"}),
    ("classify", "mamba"): ("MambaClassifier", {}),
    ("regress", "s4d"): ("S4Regressor", {"layer": "s4d"}),
    ("regress", "s4"): ("S4Regressor", {"layer": "s4"}),
    ("regress", "mamba"): ("MambaRegressor", {}),
}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ssmsignal", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    demo = sub.add_parser("demo", help="train on embedded MIT-BIH beats, zero-shot at 180/720 Hz")
    demo.add_argument("--out", default="ssmsignal-demo-model", help="where to save the model")
    demo.add_argument("--epochs", type=int, default=10)
    demo.add_argument("--n-train", type=int, default=None,
                      help="training beats (default 70%% of the embedded beats)")
    demo.add_argument("--n-test", type=int, default=None,
                      help="test beats (default the other 30%%)")
    demo.add_argument("--random-state", type=int, default=0)
    demo.add_argument("--quiet", action="store_true", help="no progress bar")

    fit = sub.add_parser("fit", help="train on a .npz file with X, y[, sampling_rate]")
    fit.add_argument("data", help=".npz file with arrays X, y and optionally sampling_rate")
    fit.add_argument("--model", required=True, help="output directory of the saved model")
    fit.add_argument("--task", choices=["classify", "regress"], default="classify")
    fit.add_argument("--layer", choices=["s4d", "s4", "mamba"], default="s4d")
    fit.add_argument("--sampling-rate", type=float, default=None)
    fit.add_argument("--epochs", type=int, default=30)
    fit.add_argument("--d-model", type=int, default=64)
    fit.add_argument("--n-layers", type=int, default=4)
    fit.add_argument("--lr", type=float, default=3e-3)
    fit.add_argument("--device", default="auto")
    fit.add_argument("--random-state", type=int, default=0)

    predict = sub.add_parser("predict", help="predict X of a .npz file with a saved model")
    predict.add_argument("data", help=".npz file with array X and optionally sampling_rate")
    predict.add_argument("--model", required=True, help="directory written by fit or demo")
    predict.add_argument("--sampling-rate", type=float, default=None)
    predict.add_argument("--out", default=None, help=".npy file for the predictions")
    predict.add_argument("--proba", action="store_true", help="class probabilities")

    gen = sub.add_parser("generate", help="sample audio from a saved AudioGenerator")
    gen.add_argument("--model", required=True)
    gen.add_argument("--seconds", type=float, default=1.0)
    gen.add_argument("--n", type=int, default=4)
    gen.add_argument("--out", default="generated")
    gen.add_argument("--random-state", type=int, default=0)

    bench = sub.add_parser("bench", help="CPU benchmark of the estimators")
    bench.add_argument("rest", nargs=argparse.REMAINDER, help="arguments of the benchmark")
    return parser


def _load_npz(path, need_y: bool):
    import numpy as np

    path = Path(path)
    if not path.is_file():
        raise SystemExit(f"error: data file {path} not found")
    with np.load(path, allow_pickle=False) as data:
        missing = [k for k in (("X", "y") if need_y else ("X",)) if k not in data.files]
        if missing:
            raise SystemExit(f"error: {path} lacks array(s) {missing} (has {data.files})")
        X = data["X"]
        y = data["y"] if need_y else None
        rate = float(data["sampling_rate"]) if "sampling_rate" in data.files else None
    return X, y, rate


def _save_npy_atomic(array, path) -> None:
    import numpy as np

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            np.save(fh, array)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _demo(args) -> int:
    import numpy as np
    from sklearn.model_selection import train_test_split

    from ssmsignal import S4Classifier
    from ssmsignal.datasets import load_mitbih
    from ssmsignal.functional import resample

    bunch = load_mitbih()
    fs = float(bunch.sampling_rate)
    labels = np.asarray(bunch.target_names)[bunch.target]
    X_train, X_test, y_train, y_test = train_test_split(
        bunch.data, labels, test_size=0.3, stratify=labels, random_state=args.random_state)
    if args.n_train is not None:
        X_train, y_train = X_train[: args.n_train], y_train[: args.n_train]
    if args.n_test is not None:
        X_test, y_test = X_test[: args.n_test], y_test[: args.n_test]
    print(f"MIT-BIH beats (embedded excerpt): {len(X_train)} train / {len(X_test)} test, "
          f"{X_train.shape[-1]} samples at {fs:g} Hz, classes {sorted(set(labels.tolist()))}")
    clf = S4Classifier(d_model=32, n_layers=2, d_state=16, max_epochs=args.epochs, lr=1e-2,
                       early_stopping=False, random_state=args.random_state,
                       verbose=0 if args.quiet else 1)
    clf.fit(X_train, y_train, sampling_rate=fs)
    values, counts = np.unique(y_test, return_counts=True)
    print(f"majority-class baseline ({values[np.argmax(counts)]}): "
          f"{counts.max() / len(y_test):.3f}")
    print(f"accuracy at {fs:g} Hz: {clf.score(X_test, y_test):.3f}")
    for rate in (fs / 2, 2 * fs):
        X_rate = resample(X_test, fs, rate)
        print(f"zero-shot accuracy at {rate:g} Hz (test beats resampled, dt rescaled): "
              f"{clf.score(X_rate, y_test, sampling_rate=rate):.3f}  "
              f"[without rescaling dt: {clf.score(X_rate, y_test, sampling_rate=fs):.3f}]")
    clf.save(args.out)
    print(f"model saved to {args.out} (load with S4Classifier.load({str(args.out)!r}))")
    return 0


def _fit(args) -> int:
    import ssmsignal

    X, y, rate = _load_npz(args.data, need_y=True)
    name, extra = _ESTIMATORS[(args.task, args.layer)]
    estimator = getattr(ssmsignal, name)(
        d_model=args.d_model, n_layers=args.n_layers, max_epochs=args.epochs, lr=args.lr,
        device=args.device, random_state=args.random_state, **extra)
    estimator.fit(X, y, sampling_rate=rate if args.sampling_rate is None else args.sampling_rate)
    estimator.save(args.model)
    last = estimator.history_[-1]
    print(f"{name} trained for {len(estimator.history_)} epochs (last train_loss "
          f"{last['train_loss']:.4g}); saved to {args.model}")
    return 0


def _predict(args) -> int:
    import numpy as np

    from ssmsignal.io import load_estimator

    X, _, rate = _load_npz(args.data, need_y=False)
    estimator = load_estimator(args.model)
    method = "predict_proba" if args.proba else "predict"
    if not hasattr(estimator, method):
        raise ValueError(f"{args.model} holds a {type(estimator).__name__}, which has no "
                         f"{method}")
    rate = rate if args.sampling_rate is None else args.sampling_rate
    out = getattr(estimator, method)(X, sampling_rate=rate)
    if args.out:
        _save_npy_atomic(np.asarray(out), args.out)
        print(f"{len(out)} predictions written to {args.out}")
    else:
        for row in np.asarray(out):
            print(row)
    return 0


def _generate(args) -> int:
    from ssmsignal.estimators._generator import generate_cli

    return int(generate_cli(args) or 0)


def _bench(args) -> int:
    from ssmsignal.kernels.bench import bench_estimators

    return int(bench_estimators.main(args.rest) or 0)


def main(argv=None) -> int:
    """Entry point of the ``ssmsignal`` command; returns the exit status."""
    args = _parser().parse_args(argv)
    handlers = {"demo": _demo, "fit": _fit, "predict": _predict, "generate": _generate,
                "bench": _bench}
    try:
        return handlers[args.command](args)
    except (ValueError, FileNotFoundError, FileExistsError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
