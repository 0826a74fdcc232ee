"""WFDB records (PhysioNet ``.hea`` + ``.dat``/``.mat``) and annotations, with clear errors.

The ``wfdb`` package does the decoding; this module checks what it cannot report well (a
truncated signal file, a corrupt header, an annotation past the end of its record) and turns
its exceptions into messages that name the file.
"""
from __future__ import annotations

import contextlib
import math
import warnings
from pathlib import Path

import numpy as np
import wfdb

from ._base import (Bunch, DatasetError, EMBEDDED_DIR, Skipper, optional_rate,
                    stack_if_equal)
from ssmsignal.functional import resample

# Bytes per sample of the WFDB storage formats whose size is fixed (FLAC formats 508/516/524
# are compressed and not checked). Source: the WFDB header format specification (signal.5).
_BYTES_PER_SAMPLE = {8: 1.0, 16: 2.0, 61: 2.0, 80: 1.0, 160: 2.0, 212: 1.5, 24: 3.0,
                     32: 4.0, 310: 4.0 / 3.0, 311: 4.0 / 3.0}


@contextlib.contextmanager
def _quiet_wfdb():
    """Hide wfdb's internal deprecation chatter (e.g. pandas' inplace notice) from users."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", module=r"wfdb(\.|$)")
        yield


def record_path(path):
    """Normalise ``dir/100``, ``dir/100.hea`` or ``dir/100.dat`` to ``dir/100`` (a Path)."""
    path = Path(path).expanduser()
    if path.suffix.lower() in (".hea", ".dat", ".mat"):
        path = path.with_suffix("")
    return path


def read_header(path):
    """Read and sanity-check a WFDB header; raise FileNotFoundError / DatasetError."""
    path = record_path(path)
    hea = path.with_name(path.name + ".hea")
    if not hea.is_file():
        raise FileNotFoundError(f"WFDB record not found: {hea} does not exist")
    try:
        with _quiet_wfdb():
            header = wfdb.rdheader(str(path))
    except Exception as exc:  # wfdb raises HeaderSyntaxError, IndexError, ValueError, ...
        raise DatasetError(f"corrupt WFDB header {hea}: {type(exc).__name__}: {exc}") from None
    if not header.fs or not math.isfinite(header.fs) or header.fs <= 0:
        raise DatasetError(f"corrupt WFDB header {hea}: sampling rate must be > 0, "
                           f"got {header.fs!r}")
    if not header.n_sig or not header.file_name:
        raise DatasetError(f"WFDB header {hea} declares no signals")
    if header.sig_len is None or header.sig_len <= 0:
        raise DatasetError(f"WFDB header {hea} declares no samples (sig_len={header.sig_len!r})")
    _check_signal_files(path, header)
    return header


def _check_signal_files(path, header):
    """Every signal file exists and holds at least ``sig_len`` samples per signal."""
    per_file = {}
    for name, fmt, offset in zip(header.file_name, header.fmt, header.byte_offset or
                                 [None] * header.n_sig):
        entry = per_file.setdefault(name, [0, fmt, offset or 0])
        entry[0] += 1
    for name, (n_sig, fmt, offset) in per_file.items():
        dat = path.parent / name
        if not dat.is_file():
            raise FileNotFoundError(f"signal file {dat} named in {path}.hea does not exist")
        bps = _BYTES_PER_SAMPLE.get(int(fmt)) if str(fmt).isdigit() else None
        if bps is None:
            continue
        need = int(offset) + math.ceil(header.sig_len * n_sig * bps)
        have = dat.stat().st_size
        if have < need:
            raise DatasetError(f"truncated WFDB signal file {dat}: {have} bytes, but the header "
                               f"declares {header.sig_len} samples x {n_sig} signals in format "
                               f"{fmt} ({need} bytes)")


def channel_indices(sig_name, channels, where):
    """Indices of ``channels`` (names or ints) in ``sig_name``; None means all."""
    if channels is None:
        return list(range(len(sig_name)))
    if isinstance(channels, (str, int)):
        channels = [channels]
    idx = []
    for ch in channels:
        if isinstance(ch, (int, np.integer)):
            if not -len(sig_name) <= ch < len(sig_name):
                raise DatasetError(f"{where}: channel index {ch} out of range for "
                                   f"{len(sig_name)} channels {sig_name}")
            idx.append(int(ch) % len(sig_name))
        elif ch in sig_name:
            idx.append(sig_name.index(ch))
        else:
            raise DatasetError(f"{where}: no channel named {ch!r} (has {sig_name})")
    return idx


def read_record(path, channels=None):
    """Read one record in physical units.

    Returns
    -------
    Bunch
        ``signal`` (n_channels, n) float32, ``fs``, ``sig_name``, ``units``, ``comments``,
        ``name``.
    """
    path = record_path(path)
    header = read_header(path)
    idx = channel_indices(list(header.sig_name), channels, f"{path}.hea")
    try:
        with _quiet_wfdb():
            rec = wfdb.rdrecord(str(path), channels=idx, physical=True, return_res=32)
    except Exception as exc:
        raise DatasetError(f"cannot decode WFDB record {path}: {type(exc).__name__}: {exc}"
                           ) from None
    signal = np.ascontiguousarray(rec.p_signal.T, dtype=np.float32)  # (n_channels, n)
    if signal.shape[1] != header.sig_len:
        raise DatasetError(f"WFDB record {path}: read {signal.shape[1]} samples, header "
                           f"declares {header.sig_len}")
    return Bunch(signal=signal, fs=float(rec.fs), sig_name=list(rec.sig_name),
                 units=list(rec.units), comments=list(rec.comments or []), name=path.name)


def read_annotation(path, extension, sig_len, fs=None):
    """Read annotation file ``path.extension``; every mark must lie inside ``[0, sig_len)``
    and, when the file stores a sampling rate and ``fs`` is given, that rate must be ``fs``.

    Returns
    -------
    sample : ndarray of int64, symbol : ndarray of str
    """
    path = record_path(path)
    ann_file = path.with_name(f"{path.name}.{extension}")
    if not ann_file.is_file():
        raise FileNotFoundError(f"annotation file not found: {ann_file}")
    try:
        with _quiet_wfdb():
            ann = wfdb.rdann(str(path), extension)
    except Exception as exc:
        raise DatasetError(f"cannot decode annotation file {ann_file}: "
                           f"{type(exc).__name__}: {exc}") from None
    if fs is not None and ann.fs is not None and not np.isclose(float(ann.fs), fs):
        raise DatasetError(f"annotation {ann_file} does not match its record: written at "
                           f"{ann.fs} Hz, the record is sampled at {fs} Hz")
    sample = np.asarray(ann.sample, dtype=np.int64)
    symbol = np.asarray(ann.symbol, dtype=object)
    if sample.size and (sample.min() < 0 or sample.max() >= sig_len):
        bad = int(sample[(sample < 0) | (sample >= sig_len)][0])
        raise DatasetError(f"annotation {ann_file} does not match its record: mark at sample "
                           f"{bad} lies outside the signal's {sig_len} samples")
    if sample.size > 1 and np.any(np.diff(sample) < 0):
        raise DatasetError(f"annotation {ann_file} is corrupt: sample positions decrease")
    return sample, symbol


def list_records(folder):
    """Record paths of a folder: those in its ``RECORDS`` file, else every ``*.hea``."""
    folder = Path(folder)
    listing = folder / "RECORDS"
    if listing.is_file():
        names = [ln.strip() for ln in listing.read_text().splitlines() if ln.strip()]
    else:
        names = sorted(p.stem for p in folder.glob("*.hea"))
    return [folder / n for n in names]


def load_wfdb(path_or_records=None, channels=None, sampling_rate=None, on_error="raise"):
    """Load WFDB records (PhysioNet format) in physical units.

    Parameters
    ----------
    path_or_records : str, Path or list of them, default=None
        A folder (its ``RECORDS`` listing, else every ``.hea`` in it), one record path
        (``dir/100`` or ``dir/100.hea``) or a list of record paths. None loads the embedded
        MIT-BIH excerpts.
    channels : list of str or int, optional
        Channel names (or indices) to keep, in this order; default all channels.
    sampling_rate : float, optional
        Resample every record to this rate (Hz, > 0) with :func:`ssmsignal.functional.resample`
        (polyphase, anti-aliased).
    on_error : {"raise", "warn"}, default="raise"
        What to do with a bad record (missing, truncated, corrupt): raise, or skip it and emit
        one warning listing every skipped record.

    Returns
    -------
    Bunch
        ``data``: (n_records, n_channels, n) float32 when all records have the same shape, else
        a list of (n_channels, n_i) float32 arrays; ``sampling_rate`` (float, or a list when
        records differ and no ``sampling_rate`` was given); ``channel_names`` and ``units``
        (lists per record); ``record_names``; ``comments`` (header comment lines per record);
        ``skipped``; ``DESCR``. Records carry no target, so there is no ``return_X_y``.

    Examples
    --------
    >>> from ssmsignal.datasets import load_wfdb
    >>> b = load_wfdb(channels=["MLII"], sampling_rate=180)
    >>> b.data.shape[1], b.sampling_rate
    (1, 180.0)
    """
    target_fs = optional_rate(sampling_rate)
    if path_or_records is None:
        path_or_records = EMBEDDED_DIR / "mitdb"
    if isinstance(path_or_records, (list, tuple)):
        paths = [record_path(p) for p in path_or_records]
    else:
        p = Path(path_or_records).expanduser()
        if p.is_dir():
            paths = list_records(p)
            if not paths:
                raise FileNotFoundError(f"no WFDB records (*.hea) in folder {p}")
        elif p.parent.is_dir():
            paths = [record_path(p)]
        else:
            raise FileNotFoundError(f"WFDB folder not found: {p.parent}")
    skipper = Skipper(on_error)
    records = []
    for p in paths:
        rec = skipper.call(p, read_record, p, channels)
        if rec is None:
            continue
        if target_fs is not None and rec.fs != target_fs:
            rec.signal = resample(rec.signal, rec.fs, target_fs, axis=-1).astype(np.float32)
            rec.fs = target_fs
        records.append(rec)
    skipped = skipper.finish("WFDB records")
    if not records:
        raise FileNotFoundError(f"no readable WFDB record among {len(paths)} requested")
    rates = [r.fs for r in records]
    fs = rates[0] if len(set(rates)) == 1 else rates
    descr = (f"{len(records)} WFDB record(s) loaded in physical units from "
             f"{Path(paths[0]).parent}; sampling rate {fs} Hz; {len(skipped)} skipped.")
    return Bunch(data=stack_if_equal([r.signal for r in records]), sampling_rate=fs,
                 channel_names=[r.sig_name for r in records], units=[r.units for r in records],
                 record_names=[r.name for r in records], comments=[r.comments for r in records],
                 skipped=skipped, DESCR=descr)
