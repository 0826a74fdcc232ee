# %% [markdown]
# # Heartbeat classification across patients (MIT-BIH, DS1 -> DS2)
#
# The inter-patient protocol of de Chazal et al. (2004): train on the beats of the DS1 records,
# test on the beats of DIFFERENT patients (DS2). Here on the 22-record subset in
# `shared/data/mitdb` (11 records of each half). Beats are 0.7 s windows (0.25 s before to
# 0.45 s after the R peak) of lead MLII at 360 Hz; AAMI classes N, S, V, F (Q, 13 beats in the
# subset, is left out). Class weights "balanced" against the strong imbalance (N is ~85 %).
# Reports accuracy, macro-F1 and per-class recall on DS2.
#
# `--rr` adds the RR-interval context that published inter-patient systems rely on (de Chazal
# et al. 2004 use the pre-, post-, local and average RR intervals): four more input channels,
# each constant over the beat's window, computed from the annotated R-peak positions of the
# record (no labels): previous RR / local RR, next RR / local RR, previous RR / the record's
# mean RR, local RR / the record's mean RR, where "local" is the mean RR of the 20 beats around
# the beat. Dividing by the patient's own averages makes the features comparable across
# patients (normalised RR intervals, as in Lin & Yang 2014).
#
# Run: `python examples/mitbih_interpatient.py --data .devdata/results/mitbih.npz --rr`
# (the .npz comes from `prepare_results_data.py`).

# %%
import argparse
import json
import time

import numpy as np
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, recall_score

from ssmsignal import S4Classifier


def rr_features(r_peak, record, local=10):
    """``(n_beats, 4)`` normalised RR features (see the module notes), record by record."""
    feats = np.empty((len(r_peak), 4), dtype=np.float64)
    for name in np.unique(record):
        rows = np.flatnonzero(record == name)
        rows = rows[np.argsort(r_peak[rows], kind="stable")]
        rr = np.diff(r_peak[rows]).astype(np.float64)  # (m - 1,) samples between beats
        pre = np.concatenate([rr[:1], rr])  # the first beat borrows its next interval
        post = np.concatenate([rr, rr[-1:]])
        kernel = np.ones(2 * local)
        count = np.convolve(np.ones_like(pre), kernel, mode="same")
        local_rr = np.convolve(pre, kernel, mode="same") / count  # mean of ~20 neighbours
        mean_rr = pre.mean()
        feats[rows] = np.stack([pre / local_rr, post / local_rr, pre / mean_rr,
                                local_rr / mean_rr], axis=1)
    return feats


def main(argv=None):
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", default=".devdata/results/mitbih.npz")
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--d-model", type=int, default=64)
    parser.add_argument("--n-layers", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--lr", type=float, default=4e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--verbose", type=int, default=0)
    parser.add_argument("--rr", action="store_true", help="add the RR-interval channels")
    parser.add_argument("--class-weight", choices=["balanced", "sqrt", "none"],
                        default="balanced",
                        help="sqrt: the square root of the balanced weights (milder)")
    parser.add_argument("--rr-logistic", action="store_true",
                        help="reference: logistic regression on the four RR features alone")
    parser.add_argument("--baseline", action="store_true",
                        help="subtract each beat window's median from the ECG channel")
    parser.add_argument("--dropout", type=float, default=0.1)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--max-time", type=float, default=None,
                        help="training budget in seconds (the estimator's max_time)")
    parser.add_argument("--subset", type=int, default=None,
                        help="use only this many random train and test beats (smoke runs)")
    parser.add_argument("--out", default=None, help="append a JSON line here")
    args = parser.parse_args(argv)

    d = np.load(args.data)
    X = d["X"].astype(np.float32)  # (n, 1, 252)
    if args.baseline:  # per-beat baseline (wander, electrode offset) removed, label-free
        X = X - np.median(X, axis=2, keepdims=True)
    if args.rr or args.rr_logistic:  # over all beats (Q included), before Q is left out
        rr = rr_features(d["r_peak"], d["record"]).astype(np.float32)  # (n, 4)
        X = np.concatenate([X, np.repeat(rr[:, :, None], X.shape[2], axis=2)], axis=1)
    keep = d["y"] != "Q"
    X, y, split = X[keep], d["y"][keep], d["split"][keep]
    fs = float(d["sampling_rate"])
    train, test = split == "DS1", split == "DS2"
    if args.subset:
        rng = np.random.default_rng(args.seed)
        for mask in (train, test):
            mask[rng.permutation(np.flatnonzero(mask))[args.subset:]] = False
    weight = None if args.class_weight == "none" else "balanced"
    if args.class_weight == "sqrt":
        labels, counts = np.unique(y[train], return_counts=True)
        weight = dict(zip(labels, np.sqrt(counts.sum() / (len(labels) * counts))))
    start = time.perf_counter()
    if args.rr_logistic:  # the RR channels are constant over the window: one value each
        from sklearn.linear_model import LogisticRegression

        clf = LogisticRegression(class_weight=weight, max_iter=2000)
        clf.fit(X[train, -4:, 0], y[train])
        pred = clf.predict(X[test, -4:, 0])
    else:
        clf = S4Classifier(d_model=args.d_model, n_layers=args.n_layers, d_state=64,
                           max_epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                           dropout=args.dropout, class_weight=weight,
                           random_state=args.seed, verbose=args.verbose, device=args.device,
                           max_time=args.max_time)
        clf.fit(X[train], y[train], sampling_rate=fs)
        pred = clf.predict(X[test])
    history = getattr(clf, "history_", [])
    labels = ["N", "S", "V", "F"]
    row = {
        "setting": "MIT-BIH DS1->DS2 (22-record subset)",
        "rr_features": bool(args.rr or args.rr_logistic),
        "model": "RR-only logistic regression" if args.rr_logistic else "S4Classifier",
        "n_channels": int(X.shape[1]), "class_weight": args.class_weight,
        "baseline_removed": bool(args.baseline), "n_train": int(train.sum()),
        "n_test": int(test.sum()), "epochs_run": len(history),
        "fit_seconds": round(time.perf_counter() - start, 1),
        "val_best": max((h.get("val_score", float("nan")) for h in history), default=None),
        "accuracy": float(accuracy_score(y[test], pred)),
        "macro_f1": float(f1_score(y[test], pred, labels=labels, average="macro")),
        "recall": dict(zip(labels, map(float, recall_score(y[test], pred, labels=labels,
                                                           average=None)))),
        "majority_baseline": float(np.mean(y[test] == "N")),
        "confusion(rows=true N,S,V,F)": confusion_matrix(y[test], pred, labels=labels).tolist(),
    }
    print(json.dumps(row), flush=True)
    if args.out:
        with open(args.out, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
