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
#   `--normalize` removes each recording's mean and scales it to unit RMS, at whatever rate
#   the model receives it (after the zero-shot resampling, as a user holding only 4 kHz audio
#   would); FSDD's speakers differ by about 20 dB in level. `--bidirectional` gives every
#   block a backward SSM too.
#
# Hyper-parameters are chosen on the validation split the estimator holds out of the
# TRAINING files (`val_best` in the output rows), never on the test files. `--dev` goes one
# step further on the standard split: recordings 5-9 of every speaker and digit (300 files,
# all from the training side) are held out as a development set and scored at every rate
# like the test set (`dev_*` columns), so that choices about rate transfer can be made
# without the test files.

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


def normalize(x):
    """Remove the mean and scale to unit RMS (one recording, at its own rate)."""
    x = np.asarray(x, dtype=np.float32)
    x = x - x.mean()
    return x / max(float(np.sqrt(np.mean(x ** 2))), 1e-6)


def make_classifier(args):
    common = dict(d_model=args.d_model, n_layers=args.n_layers, max_epochs=args.epochs,
                  batch_size=args.batch_size, lr=args.lr, dropout=args.dropout,
                  weight_decay=args.weight_decay, label_smoothing=args.label_smoothing,
                  augment=json.loads(args.augment), n_iter_no_change=args.patience,
                  random_state=args.seed, verbose=args.verbose, device=args.device,
                  max_time=args.max_time, bidirectional=args.bidirectional)
    if args.layer == "mamba":
        return MambaClassifier(**common)
    return S4Classifier(layer=args.layer, d_state=64, **common)


def probabilities(clf, X_8k, rates, prep):
    """``{rate: (n, 10) probabilities}``: the audio resampled from 8 kHz, Δ rescaled."""
    out = {}
    for rate in rates:
        X = X_8k if rate == FS else [resample(x, FS, rate) for x in X_8k]
        out[int(rate)] = clf.predict_proba([prep(x) for x in X], sampling_rate=rate)
    return out


def accuracies(clf, proba, y, prefix):
    return {f"{prefix}_{rate}": float(np.mean(clf.classes_[p.argmax(1)] == y))
            for rate, p in proba.items()}


def run(args, X, y, train, test, name, dev=None):
    if args.subset:
        rng = np.random.default_rng(0)  # the same test files for every fit (ensembles)
        test = np.sort(rng.permutation(test)[:args.subset])
        train = np.sort(rng.permutation(train)[:args.subset])
        dev = None if dev is None else np.sort(rng.permutation(dev)[:args.subset])
    prep = normalize if args.normalize else (lambda x: x)
    start = time.perf_counter()
    clf = make_classifier(args)
    clf.fit([prep(X[i]) for i in train], y[train], sampling_rate=FS)
    row = {"setting": name, "layer": args.layer, "n_train": int(len(train)),
           "n_test": int(len(test)), "epochs_run": len(clf.history_),
           "fit_seconds": round(time.perf_counter() - start, 1),
           "val_best": max((h.get("val_score", float("nan")) for h in clf.history_),
                           default=None),
           "epoch_seconds": round(float(np.median([h["time"] for h in clf.history_])), 2),
           "augment": args.augment, "dropout": args.dropout,
           "label_smoothing": args.label_smoothing, "weight_decay": args.weight_decay,
           "d_model": args.d_model, "n_layers": args.n_layers, "seed": args.seed,
           "normalize": args.normalize, "bidirectional": args.bidirectional, "tag": args.tag,
           "n_dev": 0 if dev is None else int(len(dev))}
    rates = [float(r) for r in args.rates.split(",")]
    proba = probabilities(clf, [X[i] for i in test], rates, prep)  # rate -> (n_test, 10)
    row.update(accuracies(clf, proba, y[test], "acc"))
    arrays = {f"proba_{r}": p for r, p in proba.items()}
    if dev is not None:
        dev_proba = probabilities(clf, [X[i] for i in dev], rates, prep)
        row.update(accuracies(clf, dev_proba, y[dev], "dev"))
        arrays.update({f"dev_proba_{r}": p for r, p in dev_proba.items()}, dev=dev,
                      y_dev=y[dev])
    if args.proba_dir:  # test (and dev) probabilities at every rate, for ensembles
        tag = name.replace(" ", "_")  # (examples/loso_ensemble.py)
        fit = f"s{args.seed}" + ("-dev" if dev is not None else "")  # trained without dev
        np.savez(f"{args.proba_dir}/{tag}__{args.tag or args.layer}__{fit}.npz",
                 test=test, classes=clf.classes_, y=y[test], **arrays)
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
    parser.add_argument("--normalize", action="store_true",
                        help="remove each recording's mean, scale it to unit RMS")
    parser.add_argument("--bidirectional", action="store_true")
    parser.add_argument("--dev", action="store_true",
                        help="standard split: hold out recordings 5-9 as a development set")
    parser.add_argument("--tag", default=None, help="recipe name in rows and .npz file names")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--cuda-memory-fraction", type=float, default=None,
                        help="cap this process's share of the GPU memory (parallel lanes)")
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
                        help="save each fit's test (and dev) probabilities at every rate "
                             "here (.npz)")
    args = parser.parse_args(argv)
    if args.cuda_memory_fraction:
        import torch

        if torch.cuda.is_available():  # the caching allocator frees and retries at the cap
            torch.cuda.set_per_process_memory_fraction(args.cuda_memory_fraction)
    started = time.perf_counter()
    X, y, speaker, recording = load(args)
    if not args.skip_standard:
        first = 10 if args.dev else 5  # the first training recording
        dev = np.flatnonzero((recording >= 5) & (recording < 10)) if args.dev else None
        run(args, X, y, np.flatnonzero(recording >= first), np.flatnonzero(recording < 5),
            "standard split", dev)
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
