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
# Run: `python examples/mitbih_interpatient.py --data .devdata/results/mitbih.npz`
# (the .npz comes from `prepare_results_data.py`).

# %%
import argparse
import json
import time

import numpy as np
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, recall_score

from ssmsignal import S4Classifier


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
    parser.add_argument("--out", default=None, help="append a JSON line here")
    args = parser.parse_args(argv)

    d = np.load(args.data)
    keep = d["y"] != "Q"
    X, y, split = d["X"][keep].astype(np.float32), d["y"][keep], d["split"][keep]
    fs = float(d["sampling_rate"])
    train, test = split == "DS1", split == "DS2"
    start = time.perf_counter()
    clf = S4Classifier(d_model=args.d_model, n_layers=args.n_layers, d_state=64,
                       max_epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                       dropout=0.1, class_weight="balanced", random_state=args.seed,
                       verbose=args.verbose)
    clf.fit(X[train], y[train], sampling_rate=fs)
    pred = clf.predict(X[test])
    labels = ["N", "S", "V", "F"]
    row = {
        "setting": "MIT-BIH DS1->DS2 (22-record subset)", "n_train": int(train.sum()),
        "n_test": int(test.sum()), "epochs_run": len(clf.history_),
        "fit_seconds": round(time.perf_counter() - start, 1),
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
