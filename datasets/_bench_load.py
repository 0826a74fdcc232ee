"""Load-time benchmark of the dataset loaders (prints a Markdown table).

``python -m ssmsignal.datasets._bench_load [DATA_ROOT]`` times each loader on the embedded
samples and, when ``DATA_ROOT`` is given, on full copies in ``DATA_ROOT/{mitdb, bidmc_csv,
fsdd, cinc2021_sample}``. "cold" clears the loaders' in-process caches first (the OS file cache
stays warm: the files were read once before timing); "cached" repeats the call. The baseline
is the bare reading loop with the underlying library (wfdb / pandas / soundfile) in the same
run, without checks, windowing or labels.
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

import pandas as pd
import soundfile as sf
import wfdb

from . import _audio, _bidmc, _mitbih, load_bidmc, load_fsdd, load_mitbih
from . import load_physionet_challenge


def _best_of(func, repeat=3, clear=None):
    times = []
    for _ in range(repeat):
        if clear is not None:
            clear()
        t0 = time.perf_counter()
        out = func()
        times.append(time.perf_counter() - t0)
    return min(times), out


def _clear():
    _mitbih._record_beats.cache_clear()
    _bidmc._read_subject.cache_clear()
    _audio._read_cached.cache_clear()


def _baseline_mitdb(root):
    for rec in (root / "RECORDS").read_text().split():
        wfdb.rdrecord(str(root / rec))
        wfdb.rdann(str(root / rec), "atr")


def _baseline_bidmc(root):
    for f in sorted(root.glob("bidmc_*_Signals.csv*")):
        pd.read_csv(f, skipinitialspace=True)
        pd.read_csv(str(f).replace("_Signals", "_Numerics"), skipinitialspace=True)


def _baseline_wavs(root):
    for f in sorted(root.glob("*.wav")):
        sf.read(f, dtype="float32")


def _baseline_wfdb_folder(root):
    for f in sorted(root.glob("*.hea")):
        wfdb.rdrecord(str(f.with_suffix("")))


def _bench_resample():
    """scipy vs torchaudio on the CPU for numpy input (the reason for ``backend="auto"``)."""
    import numpy as np

    from ssmsignal.functional import resample

    rng = np.random.default_rng(0)
    cases = [("one FSDD-sized clip (4000,) 8 kHz -> 16 kHz", rng.standard_normal(4000), 8000,
              16000),
             ("one MIT-BIH record (2, 650000) 360 Hz -> 250 Hz",
              rng.standard_normal((2, 650000)), 360, 250)]
    print("| resample, float64 numpy input | scipy (ms) | torchaudio (ms) |")
    print("| --- | --- | --- |")
    for name, x, a, b in cases:
        row = []
        for backend in ("scipy", "torchaudio"):
            t, _ = _best_of(lambda: resample(x, a, b, backend=backend), repeat=5)
            row.append(f"{1e3 * t:.2f}")
        print(f"| {name} | {row[0]} | {row[1]} |")
    print()


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    data = Path(argv[0]) if argv else None
    cases = [
        ("embedded MIT-BIH, split=all", lambda: load_mitbih(), None),
        ("embedded BIDMC, target=HR", lambda: load_bidmc(), None),
        ("embedded FSDD, 100 wav", lambda: load_fsdd(), None),
    ]
    if data is not None:
        fsdd = data / "fsdd" / "recordings"
        cases += [
            ("mitdb 22 records, split=all", lambda: load_mitbih(data / "mitdb"),
             lambda: _baseline_mitdb(data / "mitdb")),
            ("bidmc_csv 10 subjects, target=HR", lambda: load_bidmc(data / "bidmc_csv"),
             lambda: _baseline_bidmc(data / "bidmc_csv")),
            ("fsdd 3000 wav, 8 kHz", lambda: load_fsdd(data / "fsdd"),
             lambda: _baseline_wavs(fsdd)),
            ("fsdd 3000 wav, resampled to 16 kHz",
             lambda: load_fsdd(data / "fsdd", sampling_rate=16000), None),
            ("cinc2021_sample 50 records, header Dx",
             lambda: load_physionet_challenge(data / "cinc2021_sample"),
             lambda: _baseline_wfdb_folder(data / "cinc2021_sample")),
        ]
    _bench_resample()
    print("| data | output | cold (s) | cached (s) | baseline (s) |")
    print("| --- | --- | --- | --- | --- |")
    for name, func, baseline in cases:
        func()  # warm the OS file cache
        cold, out = _best_of(func, clear=_clear)
        cached, _ = _best_of(func)
        base = f"{_best_of(baseline)[0]:.3f}" if baseline else "–"
        shape = (f"{tuple(out.data.shape)}" if hasattr(out.data, "shape")
                 else f"list of {len(out.data)}")
        print(f"| {name} | {shape} | {cold:.3f} | {cached:.3f} | {base} |")


if __name__ == "__main__":
    main()
