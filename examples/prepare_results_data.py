# %% [markdown]
# # Compact copies of FSDD and the MIT-BIH DS1/DS2 beats for the results runs
#
# The GPU machine gets at most 64 MiB of carried data, so this script packs what
# `fsdd_digits.py` and `mitbih_interpatient.py` need into two `.npz` files:
#
# * `fsdd.npz`: all 3000 FSDD recordings at 8 kHz as int16 (FSDD's own 16-bit samples, so the
#   packing is lossless), concatenated, with offsets, digits, speakers and recording indices;
# * `mitbih.npz`: the beat windows of the 22-record subset (0.25 s before to 0.45 s after each
#   R peak, 360 Hz, MLII, AAMI classes) as float16 millivolts, with record ids, DS1/DS2 split
#   and the R-peak sample index of every beat (for the RR-interval features).
#
# Run: `python examples/prepare_results_data.py --fsdd .devdata/fsdd
#       --mitdb /work/shared/data/mitdb --out .devdata/results`

# %%
import argparse
import os
from pathlib import Path

import numpy as np

from ssmsignal.datasets import load_fsdd, load_mitbih


def save_npz(out, **arrays):
    """``np.savez_compressed`` to a temporary file in the same folder, then ``os.replace``."""
    out = Path(out)
    tmp = out.with_name(f".{out.name}.tmp")
    try:
        with open(tmp, "wb") as fh:  # a file object: numpy adds no ".npz" to the name
            np.savez_compressed(fh, **arrays)
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)


def pack_fsdd(root, out):
    bunch = load_fsdd(root=root, sampling_rate=8000)
    audio = [np.round(np.asarray(x, dtype=np.float64) * 32768).astype(np.int16)
             for x in bunch.data]
    lengths = np.array([len(a) for a in audio], dtype=np.int64)
    save_npz(out, audio=np.concatenate(audio), lengths=lengths,
             digit=np.asarray(bunch.target), speaker=np.asarray(bunch.groups),
             recording=np.asarray(bunch.recording_index), sampling_rate=8000.0)
    print(f"{out}: {len(audio)} recordings, {lengths.sum()} samples")


def pack_mitbih(root, out):
    parts = {split: load_mitbih(root=root, split=split) for split in ("DS1", "DS2")}
    X = np.concatenate([b.data for b in parts.values()]).astype(np.float16)
    names = np.asarray(parts["DS1"].target_names)
    y = np.concatenate([names[b.target] for b in parts.values()])
    split = np.concatenate([np.full(len(b.target), s) for s, b in parts.items()])
    groups = np.concatenate([np.asarray(b.groups) for b in parts.values()])
    r_peak = np.concatenate([np.asarray(b.r_peak, dtype=np.int64) for b in parts.values()])
    save_npz(out, X=X, y=y, split=split, record=groups, r_peak=r_peak,
             sampling_rate=float(parts["DS1"].sampling_rate))
    print(f"{out}: {X.shape} beats; DS1 {np.sum(split == 'DS1')}, DS2 {np.sum(split == 'DS2')}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--fsdd", default=".devdata/fsdd")
    parser.add_argument("--mitdb", default="/work/shared/data/mitdb")
    parser.add_argument("--out", default=".devdata/results")
    parser.add_argument("--only", choices=["fsdd", "mitbih"], default=None)
    args = parser.parse_args()
    Path(args.out).mkdir(parents=True, exist_ok=True)
    if args.only != "mitbih":
        pack_fsdd(args.fsdd, Path(args.out) / "fsdd.npz")
    if args.only != "fsdd":
        pack_mitbih(args.mitdb, Path(args.out) / "mitbih.npz")
