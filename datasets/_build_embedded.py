"""Rebuild the embedded samples in ``_embedded/`` from full local copies (maintainers only).

Run ``python -m ssmsignal.datasets._build_embedded /path/to/data`` where the folder holds
``mitdb/`` (PhysioNet MIT-BIH Arrhythmia Database), ``bidmc_csv/`` (BIDMC PPG and Respiration,
CSV release) and ``fsdd/recordings/`` (Free Spoken Digit Dataset). What is taken and how it is
cropped is listed in ``_embedded/LICENSES.md``; the constants below are the single source.
Never called by the loaders.
"""
from __future__ import annotations

import gzip
import os
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import wfdb

from ._base import EMBEDDED_DIR

#: MIT-BIH records kept (two from de Chazal's DS1, two from DS2) and the minutes kept of each.
MITDB_RECORDS = ("208", "209", "213", "232")
MITDB_MINUTES = 10
#: BIDMC subjects and signals kept, and the seconds kept of each.
BIDMC_SUBJECTS = ("01", "02")
BIDMC_SIGNALS = ("PLETH", "II", "RESP")
BIDMC_SECONDS = 240
#: FSDD speakers and recording indices kept (0-1 are in the standard test split, 5-7 in train).
FSDD_SPEAKERS = ("jackson", "theo")
FSDD_INDICES = (0, 1, 5, 6, 7)


def _build_mitdb(src, dst):
    dst.mkdir(parents=True, exist_ok=True)
    for name in MITDB_RECORDS:
        n = int(MITDB_MINUTES * 60 * 360)
        rec = wfdb.rdrecord(str(src / name), sampto=n, physical=False)
        ann = wfdb.rdann(str(src / name), "atr", sampto=n)
        comments = list(rec.comments) + [
            f"ssmsignal embedded excerpt: first {MITDB_MINUTES} min ({n} samples) of mitdb "
            f"record {name}, digital samples unchanged"]
        wfdb.wrsamp(name, fs=rec.fs, units=rec.units, sig_name=rec.sig_name,
                    d_signal=rec.d_signal, fmt=rec.fmt, adc_gain=rec.adc_gain,
                    baseline=rec.baseline, comments=comments, write_dir=str(dst))
        keep = ann.sample < n
        aux = [a.rstrip("\x00") for a, k in zip(ann.aux_note, keep) if k]
        wfdb.wrann(name, "atr", ann.sample[keep], symbol=list(np.asarray(ann.symbol)[keep]),
                   subtype=ann.subtype[keep], chan=ann.chan[keep], num=ann.num[keep],
                   aux_note=aux, fs=rec.fs, write_dir=str(dst))
    (dst / "RECORDS").write_text("\n".join(MITDB_RECORDS) + "\n")


def _build_bidmc(src, dst):
    dst.mkdir(parents=True, exist_ok=True)
    for subj in BIDMC_SUBJECTS:
        sig = pd.read_csv(src / f"bidmc_{subj}_Signals.csv", skipinitialspace=True)
        num = pd.read_csv(src / f"bidmc_{subj}_Numerics.csv", skipinitialspace=True)
        sig = sig.loc[sig["Time [s]"] < BIDMC_SECONDS, ["Time [s]", *BIDMC_SIGNALS]]
        num = num.loc[num["Time [s]"] < BIDMC_SECONDS]
        for frame, kind in ((sig, "Signals"), (num, "Numerics")):
            with gzip.open(dst / f"bidmc_{subj}_{kind}.csv.gz", "wt", compresslevel=9,
                           newline="") as fh:
                frame.to_csv(fh, index=False)
        shutil.copyfile(src / f"bidmc_{subj}_Fix.txt", dst / f"bidmc_{subj}_Fix.txt")


def _build_fsdd(src, dst):
    dst.mkdir(parents=True, exist_ok=True)
    for speaker in FSDD_SPEAKERS:
        for digit in range(10):
            for index in FSDD_INDICES:
                name = f"{digit}_{speaker}_{index}.wav"
                shutil.copyfile(src / name, dst / name)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        raise SystemExit("usage: python -m ssmsignal.datasets._build_embedded DATA_ROOT")
    data = Path(argv[0])
    for name, build, src in (("mitdb", _build_mitdb, data / "mitdb"),
                             ("bidmc", _build_bidmc, data / "bidmc_csv"),
                             ("fsdd", _build_fsdd, data / "fsdd" / "recordings")):
        # build next to the target, then swap in: a failed build leaves the old sample intact
        tmp = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=EMBEDDED_DIR))
        aside = None
        try:
            build(src, tmp)
            os.chmod(tmp, 0o755)  # mkdtemp creates 0700
            target = EMBEDDED_DIR / name
            if target.exists():  # renamed aside, not deleted first: never a moment without it
                aside = Path(tempfile.mkdtemp(prefix=f".{name}-old-", dir=EMBEDDED_DIR))
                os.replace(target, aside / name)
            os.replace(tmp, target)
        finally:
            for leftover in (tmp, aside):
                if leftover is not None and leftover.exists():
                    shutil.rmtree(leftover)


if __name__ == "__main__":
    main()
