"""BIDMC PPG and Respiration Dataset (CSV release): signal windows with monitor numerics as
regression targets, in the layout of the BIDMC32 tasks of the Monash regression archive."""
from __future__ import annotations

import re
import warnings

import numpy as np
import pandas as pd

from ._base import (Bunch, DatasetError, Skipper, cached_arrays, file_signature,
                    finish_bunch, freeze, optional_rate, resolve_root)
from ssmsignal.functional import resample

#: Regression targets and the column of ``bidmc_NN_Numerics.csv`` they are read from.
TARGETS = {"HR": "HR", "RR": "RESP", "SpO2": "SpO2", "PULSE": "PULSE"}
_FILE = re.compile(r"^bidmc_(\d+)_Signals\.csv(\.gz)?$")
FS = 125.0


def _subject_files(folder):
    """{subject id: (signals file, numerics file)} for every subject in ``folder``."""
    found = {}
    for path in sorted(folder.iterdir()):
        m = _FILE.match(path.name)
        if m:
            numerics = path.with_name(path.name.replace("_Signals.", "_Numerics."))
            found[m.group(1)] = (path, numerics)
    return found


def _read_csv(path):
    if not path.is_file():
        raise FileNotFoundError(f"BIDMC file not found: {path}")
    try:
        frame = pd.read_csv(path, skipinitialspace=True)
    except Exception as exc:  # ParserError, EOFError/BadGzipFile of a cut .gz, UnicodeError
        raise DatasetError(f"cannot parse BIDMC file {path}: {type(exc).__name__}: {exc}"
                           ) from None
    if "Time [s]" not in frame.columns:
        raise DatasetError(f"BIDMC file {path} has no 'Time [s]' column "
                           f"(columns: {list(frame.columns)})")
    return frame


@cached_arrays()
def _read_subject(signature, sig_path, num_path, channels, numeric_columns):
    """Signals (n_channels, n) float32, their rate, and numerics {column: (n_seconds,)}."""
    signals = _read_csv(sig_path)
    missing = [c for c in channels if c not in signals.columns]
    if missing:
        raise DatasetError(f"BIDMC file {sig_path} lacks channel(s) {missing} "
                           f"(has {[c for c in signals.columns if c != 'Time [s]']})")
    # The export prints times with 5 significant digits (0.008 s steps become 0.01 s after
    # 100 s), so the rate comes from the whole span and each row is checked against it.
    time = signals["Time [s]"].to_numpy(np.float64)  # (n,)
    span = time[-1] - time[0] if time.size > 1 else 0.0
    if not np.isfinite(span) or span <= 0:
        raise DatasetError(f"BIDMC file {sig_path}: time column does not increase")
    fs = round((time.size - 1) / span, 2)
    if np.abs(time - time[0] - np.arange(time.size) / fs).max() > 0.011:
        raise DatasetError(f"BIDMC file {sig_path}: rows are not uniformly spaced in time "
                           f"(expected {fs} Hz throughout); rows missing?")
    values = signals[list(channels)].to_numpy(np.float32).T  # (n_channels, n)
    if not np.isfinite(values).all():
        raise DatasetError(f"BIDMC file {sig_path}: signal columns contain empty cells or NaN "
                           "(is the file truncated?)")
    numerics = _read_csv(num_path)
    missing = [c for c in numeric_columns if c not in numerics.columns]
    if missing:
        raise DatasetError(f"BIDMC file {num_path} lacks column(s) {missing} "
                           f"(has {list(numerics.columns)})")
    nums = {c: numerics[c].to_numpy(np.float64) for c in numerics.columns}
    return freeze(values), float(fs), nums


def load_bidmc(root=None, target="HR", window_seconds=32.0, stride_seconds=None,
               channels=("PLETH", "II", "RESP"), sampling_rate=None, on_error="raise",
               return_X_y=False):
    """Load BIDMC windows of PPG, ECG and respiration with a monitor numeric as target.

    The BIDMC32HR/RR/SpO2 tasks of the Monash regression archive (Tan et al. 2021), which the
    S4 paper (Gu et al. 2022) reports on, use 32 s windows (4000 samples at 125 Hz) of these
    recordings with the mean heart rate, respiratory rate or SpO2 of the window as target. The
    defaults give that layout: three channels PPG (``PLETH``), ECG lead ``II`` and impedance
    respiration (``RESP``), 4000 samples, non-overlapping windows from the start of each
    recording. The archive's exact window positions and train/test subjects are not
    reproduced: split by ``groups`` (subject) instead.

    Parameters
    ----------
    root : str or Path, optional
        Folder with ``bidmc_NN_Signals.csv`` and ``bidmc_NN_Numerics.csv`` (``.csv.gz`` also
        read). None uses the embedded excerpt: subjects 01 and 02, first 240 s.
    target : {"HR", "RR", "SpO2", "PULSE"} or list of them, default="HR"
        Numeric(s) averaged over each window (1 Hz monitor values, NaN seconds ignored).
        ``"RR"`` is the monitor's respiratory rate (column ``RESP`` of the numerics file).
    window_seconds : float, default=32.0
        Window length in seconds (32 s = 4000 samples at 125 Hz).
    stride_seconds : float, optional
        Step between window starts; default ``window_seconds`` (no overlap).
    channels : sequence of str, default=("PLETH", "II", "RESP")
        Signal columns, selected by name (their order in the files differs between subjects).
    sampling_rate : float, optional
        Resample the signals to this rate (Hz, > 0) before windowing. Default 125 Hz.
    on_error : {"raise", "warn"}, default="raise"
        Bad subject file (missing, truncated, unparsable, lacking a channel): raise, or skip
        the subject with one warning listing every skipped one.
    return_X_y : bool, default=False
        Return ``(data, target)`` instead of the Bunch.

    Returns
    -------
    Bunch
        ``data`` (n_windows, n_channels, n_timesteps) float32 (normalised units of the
        PhysioNet export); ``target`` (n_windows,) float64, or (n_windows, n_targets) for a
        list; ``target_names``; ``groups`` (subject id per window); ``window_start`` (s);
        ``sampling_rate``; ``channel_names``; ``subjects``; ``skipped``; ``DESCR``. Windows
        whose target is missing for every second are left out with a warning.

    Examples
    --------
    >>> from ssmsignal.datasets import load_bidmc
    >>> X, y = load_bidmc(target="RR", return_X_y=True)
    >>> X.shape[1:]
    (3, 4000)
    """
    targets = [target] if isinstance(target, str) else list(target)
    bad = [t for t in targets if t not in TARGETS]
    if bad or not targets:
        raise ValueError(f"target must be one of {sorted(TARGETS)} (or a list), got {target!r}")
    fs_out = optional_rate(sampling_rate)
    stride = window_seconds if stride_seconds is None else stride_seconds
    for name, value in (("window_seconds", window_seconds), ("stride_seconds", stride)):
        if not np.isfinite(float(value)) or float(value) <= 0:
            raise ValueError(f"{name} must be a positive number of seconds, got {value!r}")
    channels = (channels,) if isinstance(channels, str) else tuple(channels)
    folder, is_embedded = resolve_root(root, "bidmc")
    subjects = _subject_files(folder)
    if not subjects:
        raise FileNotFoundError(f"no BIDMC subject files (bidmc_NN_Signals.csv) in {folder}")
    skipper = Skipper(on_error)
    xs, ys, groups, starts, n_no_target, fs = [], [], [], [], 0, fs_out or FS
    for sid, (sig_path, num_path) in subjects.items():
        read = skipper.call(sig_path, _read_subject, _signature(sig_path, num_path), sig_path,
                            num_path, channels, tuple(TARGETS[t] for t in targets))
        if read is None:
            continue
        values, fs_in, nums = read
        if fs_out is not None and fs_out != fs_in:
            values = resample(values, fs_in, fs_out, axis=-1).astype(np.float32)
        fs = fs_out or fs_in
        width, step = int(round(window_seconds * fs)), int(round(stride * fs))
        n_win = (values.shape[1] - width) // step + 1 if values.shape[1] >= width else 0
        for k in range(n_win):
            t0 = k * step / fs
            in_win = (nums["Time [s]"] >= t0) & (nums["Time [s]"] < t0 + window_seconds)
            y = [np.nanmean(nums[TARGETS[t]][in_win]) if np.isfinite(nums[TARGETS[t]][in_win]
                 ).any() else np.nan for t in targets]
            if np.isnan(y).any():
                n_no_target += 1
                continue
            xs.append(values[:, k * step:k * step + width])  # (n_channels, width)
            ys.append(y)
            groups.append(sid)
            starts.append(t0)
    skipped = skipper.finish("BIDMC subjects")
    if n_no_target:
        warnings.warn(f"{n_no_target} BIDMC window(s) left out: no {targets} value in the "
                      "window's seconds", UserWarning, stacklevel=2)
    if not xs:
        raise DatasetError(f"no complete {window_seconds} s window with targets in {folder}")
    y = np.asarray(ys, dtype=np.float64)  # (n_windows, n_targets)
    used = sorted(set(groups))
    source = "embedded 240 s excerpts" if is_embedded else folder
    descr = (f"BIDMC PPG and Respiration windows ({source}): "
             f"subjects {used}; {len(xs)} windows of {window_seconds} s every {stride} s at "
             f"{fs} Hz, channels {list(channels)}; target {targets} = mean monitor value over "
             "the window. Source: PhysioNet bidmc, ODC-By 1.0; cite Pimentel et al. (2016) and "
             "Goldberger et al. (2000).")
    bunch = Bunch(data=np.stack(xs).astype(np.float32, copy=False),
                  target=y[:, 0] if isinstance(target, str) else y,
                  target_names=np.array(targets), groups=np.array(groups),
                  window_start=np.array(starts), sampling_rate=float(fs),
                  channel_names=list(channels), subjects=used, skipped=skipped,
                  n_windows_without_target=n_no_target, DESCR=descr)
    return finish_bunch(bunch, return_X_y)


def _signature(sig_path, num_path):
    """File signature, or a placeholder when a file is missing (the reader then raises)."""
    try:
        return file_signature(sig_path, num_path)
    except FileNotFoundError:
        return (str(sig_path), str(num_path), "missing")
