"""Average two classifiers' test probabilities per leave-one-speaker-out fold.

Reads the ``.npz`` files that ``fsdd_digits.py --proba-dir DIR`` writes (one per fit, named
``LOSO_<speaker>_<layer>.npz``) and prints, per fold and on average, the accuracy of each
model and of their mean probability (a two-model ensemble; no weights are tuned).

Run: ``python examples/loso_ensemble.py DIR``
"""
import json
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np


def main(folder):
    fits = defaultdict(dict)  # speaker -> layer -> arrays
    for path in sorted(Path(folder).glob("LOSO_*.npz")):
        speaker, layer = path.stem[len("LOSO_"):].rsplit("_", 1)
        fits[speaker][layer] = dict(np.load(path, allow_pickle=False))
    rows = []
    for speaker, by_layer in sorted(fits.items()):
        row = {"speaker": speaker}
        for layer, f in by_layer.items():
            row[layer] = float(np.mean(f["classes"][f["proba"].argmax(1)] == f["y"]))
        if len(by_layer) == 2:
            a, b = by_layer.values()
            if not (np.array_equal(a["test"], b["test"]) and np.array_equal(a["classes"],
                                                                            b["classes"])):
                raise ValueError(f"fold {speaker}: the two fits saw different test sets")
            mean = (a["proba"] + b["proba"]) / 2  # (n_test, n_classes)
            row["ensemble"] = float(np.mean(a["classes"][mean.argmax(1)] == a["y"]))
        rows.append(row)
        print(json.dumps(row))
    for key in ("s4d", "mamba", "ensemble"):
        accs = [r[key] for r in rows if key in r]
        if accs:
            print(f"LOSO {key}: mean {np.mean(accs):.3f} over {len(accs)} folds")


if __name__ == "__main__":
    main(sys.argv[1])
