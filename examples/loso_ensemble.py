"""Ensembles of saved FSDD fits: mean class probabilities, per setting, at every rate.

Reads the ``.npz`` files that ``fsdd_digits.py --proba-dir DIR`` writes, one per fit, named
``<setting>__<recipe>__s<seed>[-dev].npz`` (setting: ``standard_split`` or
``LOSO_<speaker>``; ``-dev``: trained without the development files),
from one or more folders. For each setting it prints the accuracy of every fit, of each
recipe's seed ensemble, and of the ensemble of ALL fits given (``--recipes`` restricts which
recipes count), at every rate saved, on the test files (``acc``) and, where the fits held one
out, on the development files (``dev``). Ensembles average probabilities with equal weights;
nothing is tuned. Then the mean over the LOSO folds of every column.

Run: ``python examples/loso_ensemble.py DIR [DIR ...] [--recipes a,b]``
"""
import argparse
import json
from collections import defaultdict
from pathlib import Path

import numpy as np


def load_fits(folders, recipes=None):
    """``{setting: {(recipe, seed): arrays}}`` from the ``.npz`` files in ``folders``."""
    fits = defaultdict(dict)
    for folder in folders:
        for path in sorted(Path(folder).glob("*__*__s*.npz")):
            setting, recipe, seed = path.stem.split("__")
            seed = seed[1:]
            if recipes and recipe not in recipes:
                continue
            fits[setting][(recipe, seed)] = dict(np.load(path, allow_pickle=False))
    return fits


def _accuracy(members, key, labels):
    """Accuracy of the mean of ``members[i][key]`` (probabilities) against ``labels``."""
    first = members[0]
    for m in members[1:]:
        if not np.array_equal(m["classes"], first["classes"]) or m[key].shape != first[key].shape:
            raise ValueError("the fits of one setting saw different classes or files")
    mean = np.mean([m[key] for m in members], axis=0)  # (n, n_classes)
    return float(np.mean(first["classes"][mean.argmax(1)] == labels))


def scores(members):
    """``{"acc_<rate>" / "dev_<rate>": accuracy}`` of the ensemble of ``members``."""
    out = {}
    for key in sorted(members[0]):
        if key.startswith("proba_"):
            if not all(np.array_equal(m["test"], members[0]["test"]) for m in members):
                raise ValueError("the fits of one setting were tested on different files")
            out["acc_" + key[len("proba_"):]] = _accuracy(members, key, members[0]["y"])
        elif key.startswith("dev_proba_") and all(key in m for m in members):
            out["dev_" + key[len("dev_proba_"):]] = _accuracy(members, key,
                                                              members[0]["y_dev"])
    return out


def main(argv=None):
    parser = argparse.ArgumentParser()
    parser.add_argument("folders", nargs="+")
    parser.add_argument("--recipes", default=None, help="comma-separated recipes to use")
    args = parser.parse_args(argv)
    recipes = set(args.recipes.split(",")) if args.recipes else None
    fits = load_fits(args.folders, recipes)
    loso = defaultdict(list)  # column name -> per-fold values
    for setting, by_fit in sorted(fits.items()):
        rows = {f"{recipe} s{seed}": scores([f]) for (recipe, seed), f in sorted(by_fit.items())}
        for recipe in sorted({r for r, _ in by_fit}):
            members = [f for (r, _), f in sorted(by_fit.items()) if r == recipe]
            if len(members) > 1:
                rows[f"{recipe} ({len(members)} fits)"] = scores(members)
        if len(rows) > 1:
            rows[f"all {len(by_fit)} fits"] = scores(list(by_fit.values()))
        for name, row in rows.items():
            print(json.dumps({"setting": setting, "fits": name, **row}))
            if setting.startswith("LOSO_"):
                for key, value in row.items():
                    loso[(name, key)].append(value)
    for name in sorted({name for name, _ in loso}):
        means = " ".join(f"{key} {np.mean(v):.3f}" for (n, key), v in sorted(loso.items())
                         if n == name)
        folds = len(loso[(name, "acc_8000")]) if (name, "acc_8000") in loso else "?"
        print(f"LOSO mean over {folds} folds, {name}: {means}")


if __name__ == "__main__":
    main()
