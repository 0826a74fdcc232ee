# %% [markdown]
# # Spoken digits from the raw waveform, and zero-shot at other sampling rates
#
# Free Spoken Digit Dataset (FSDD, CC BY-SA 4.0): 3000 recordings of the digits 0-9 by six
# speakers at 8 kHz. Standard split: recordings 0-4 of every speaker and digit are the test set
# (300), the rest train (2700). The classifier sees the raw 8 kHz waveform. Zero-shot: the test
# audio is resampled to 4 kHz and 16 kHz and predicted with `sampling_rate=` set, so every SSM
# rescales its step Δ (no retraining). `--loso` adds leave-one-speaker-out (6 folds).
#
# Run (GPU recommended): `python examples/fsdd_digits.py --data .devdata/results/fsdd.npz
#   --layer s4d --out results.jsonl` (the .npz comes from `prepare_results_data.py`;
#   `--root .devdata/fsdd` reads the wav files instead). `--augment '{"speed": 0.1, ...}'`
#   turns on the estimators' training-time augmentation (a JSON dict, or `true` for the
#   default set); `--subset 40` trains and tests on 40 files each (a quick CPU smoke run).
#
# Hyper-parameters are chosen on the validation split the estimator holds out of the
# TRAINING files (`val_best` in the output rows), never on the test files.

# %%
import argparse
import json
import time

import numpy as np

from ssmsignal import MambaClassifier, S4Classifier
from ssmsignal.functional import resample

FS = 8000.0


def load(args):
    """List of float32 waveforms, digits, speakers, recording indices."""
    if args.root:
        from ssmsignal.datasets import load_fsdd

        b = load_fsdd(root=args.root, sampling_rate=FS)
        return list(b.data), np.asarray(b.target), np.asarray(b.groups), np.asarray(
            b.recording_index)
    d = np.load(args.data)
    cuts = np.cumsum(d["lengths"])[:-1]
    audio = [a.astype(np.float32) / 32768.0 for a in np.split(d["audio"], cuts)]
    return audio, d["digit"], d["speaker"], d["recording"]


def make_classifier(args):
    common = dict(d_model=args.d_model, n_layers=args.n_layers, max_epochs=args.epochs,
                  batch_size=args.batch_size, lr=args.lr, dropout=args.dropout,
                  weight_decay=args.weight_decay, label_smoothing=args.label_smoothing,
                  augment=json.loads(args.augment), n_iter_no_change=args.patience,
                  random_state=args.seed, verbose=args.verbose, device=args.device,
                  max_time=args.max_time)
    if args.layer == "mamba":
        return MambaClassifier(**common)
    return S4Classifier(layer=args.layer, d_state=64, **common)


def evaluate(clf, X_test, y_test, rates=(8000.0, 4000.0, 16000.0)):
    """Accuracy at each rate (test audio resampled from 8 kHz, Δ rescaled)."""
    out = {}
    for rate in rates:
        X = X_test if rate == FS else [resample(x, FS, rate) for x in X_test]
        out[f"acc_{int(rate)}"] = float(clf.score(X, y_test, sampling_rate=rate))
    return out


def run(args, X, y, train, test, name):
    if args.subset:
        rng = np.random.default_rng(args.seed)
        train = np.sort(rng.permutation(train)[:args.subset])
        test = np.sort(rng.permutation(test)[:args.subset])
    start = time.perf_counter()
    clf = make_classifier(args)
    clf.fit([X[i] for i in train], y[train], sampling_rate=FS)
    row = {"setting": name, "layer": args.layer, "n_train": int(len(train)),
           "n_test": int(len(test)), "epochs_run": len(clf.history_),
           "fit_seconds": round(time.perf_counter() - start, 1),
           "val_best": max((h.get("val_score", float("nan")) for h in clf.history_),
                           default=None),
           "epoch_seconds": round(float(np.median([h["time"] for h in clf.history_])), 2),
           "augment": args.augment, "dropout": args.dropout,
           "label_smoothing": args.label_smoothing, "weight_decay": args.weight_decay}
    rates = [float(r) for r in args.rates.split(",")]
    row.update(evaluate(clf, [X[i] for i in test], y[test], rates))
    if args.proba_dir:  # 8 kHz test probabilities, for ensembles (examples/loso_ensemble.py)
        proba = clf.predict_proba([X[i] for i in test])  # (n_test, 10)
        tag = name.replace(" ", "_")
        np.savez(f"{args.proba_dir}/{tag}_{args.layer}.npz", proba=proba, test=test,
                 classes=clf.classes_, y=y[test])
    print(json.dumps(row), flush=True)
    if args.out:
        with open(args.out, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(row) + "\n")
    return row


def main(argv=None):
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", default=".devdata/results/fsdd.npz")
    parser.add_argument("--root", default=None, help="FSDD folder (instead of --data)")
    parser.add_argument("--layer", choices=["s4d", "s4", "mamba"], default="s4d")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--d-model", type=int, default=96)
    parser.add_argument("--n-layers", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=4e-3)
    parser.add_argument("--dropout", type=float, default=0.1)
    parser.add_argument("--patience", type=int, default=8)
    parser.add_argument("--weight-decay", type=float, default=0.01)
    parser.add_argument("--label-smoothing", type=float, default=0.0)
    parser.add_argument("--augment", default="null",
                        help='JSON: null, true, or a dict such as {"speed": 0.1, "crop": 0.1}')
    parser.add_argument("--device", default="auto")
    parser.add_argument("--rates", default="8000,4000,16000",
                        help="comma-separated test rates in Hz (the audio is resampled)")
    parser.add_argument("--max-time", type=float, default=None,
                        help="training budget in seconds for each fit (estimators' max_time)")
    parser.add_argument("--subset", type=int, default=None,
                        help="use only this many random train and test files (smoke runs)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--verbose", type=int, default=0)
    parser.add_argument("--loso", action="store_true", help="leave-one-speaker-out folds too")
    parser.add_argument("--speakers", default=None,
                        help="comma-separated LOSO folds to run (default: all six)")
    parser.add_argument("--skip-standard", action="store_true")
    parser.add_argument("--budget-seconds", type=float, default=None,
                        help="start no new LOSO fold after this many seconds")
    parser.add_argument("--out", default=None, help="append JSON lines here")
    parser.add_argument("--proba-dir", default=None,
                        help="save each fit's 8 kHz test probabilities here (.npz)")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    X, y, speaker, recording = load(args)
    if not args.skip_standard:
        run(args, X, y, np.flatnonzero(recording >= 5), np.flatnonzero(recording < 5),
            "standard split")
    if args.loso:
        folds = args.speakers.split(",") if args.speakers else np.unique(speaker)
        for who in folds:
            if args.budget_seconds and time.perf_counter() - started > args.budget_seconds:
                print(json.dumps({"setting": f"LOSO {who}", "skipped": "time budget"}))
                continue
            run(args, X, y, np.flatnonzero(speaker != who), np.flatnonzero(speaker == who),
                f"LOSO {who}")


if __name__ == "__main__":
    main()
