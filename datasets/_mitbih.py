"""MIT-BIH Arrhythmia Database: beat windows with AAMI classes and the inter-patient split."""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from ._base import (Bunch, DatasetError, Skipper, cached_arrays, file_signature,
                    finish_bunch, freeze, optional_rate, resolve_root)
from ._wfdb import list_records, read_annotation, read_record, record_path
from ssmsignal.functional import resample

logger = logging.getLogger(__name__)

#: AAMI EC57 beat classes and the MIT-BIH beat symbols mapped to each (as in de Chazal 2004).
AAMI_CLASSES = {"N": "NLRej", "S": "AaJS", "V": "VE", "F": "F", "Q": "/fQ"}
AAMI_NAMES = tuple(AAMI_CLASSES)
_SYMBOL_TO_AAMI = {sym: cls for cls, syms in AAMI_CLASSES.items() for sym in syms}
#: Every beat symbol of the MIT-BIH annotations (everything else marks rhythm, noise, etc.).
BEAT_SYMBOLS = tuple(sorted(_SYMBOL_TO_AAMI))

#: Inter-patient split of de Chazal, O'Dwyer & Reilly (2004), IEEE TBME 51(7):1196-1206; the
#: four paced records (102, 104, 107, 217) are in neither half.
DS1 = ("101", "106", "108", "109", "112", "114", "115", "116", "118", "119", "122", "124",
       "201", "203", "205", "207", "208", "209", "215", "220", "223", "230")
DS2 = ("100", "103", "105", "111", "113", "117", "121", "123", "200", "202", "210", "212",
       "213", "214", "219", "221", "222", "228", "231", "232", "233", "234")
SPLITS = {"DS1": DS1, "DS2": DS2, "all": tuple(sorted(DS1 + DS2))}
FS = 360.0


def _window_pair(window_seconds):
    """Validated (before, after) seconds around the R peak."""
    if np.isscalar(window_seconds):
        before = after = float(window_seconds) / 2
    else:
        if len(window_seconds) != 2:
            raise ValueError("window_seconds must be a total length or a (before, after) pair, "
                             f"got {window_seconds!r}")
        before, after = (float(v) for v in window_seconds)
    if not (before >= 0 and after >= 0 and before + after > 0):
        raise ValueError(f"window_seconds must be non-negative with a positive total, "
                         f"got {window_seconds!r}")
    return before, after


@cached_arrays()
def _record_beats(signature, path, channels, before_s, after_s, fs_out):
    """Beat windows of one record: (windows (n, c, w), symbols (n,), n_edge). Cached per file."""
    rec = read_record(path, list(channels))
    sample, symbol = read_annotation(path, "atr", rec.signal.shape[1], rec.fs)
    signal, fs = rec.signal, rec.fs
    if fs_out is not None and fs_out != fs:
        signal = resample(signal, fs, fs_out, axis=-1).astype(np.float32)
        sample = np.round(sample * (fs_out / fs)).astype(np.int64)
        fs = fs_out
    before, after = int(round(before_s * fs)), int(round(after_s * fs))
    is_beat = np.isin(symbol, BEAT_SYMBOLS)
    sample, symbol = sample[is_beat], symbol[is_beat]
    inside = (sample - before >= 0) & (sample + after <= signal.shape[1])
    starts = sample[inside] - before
    idx = starts[:, None] + np.arange(before + after)  # (n_beats, window)
    windows = signal[:, idx].transpose(1, 0, 2)  # (n_beats, n_channels, window)
    windows = np.ascontiguousarray(windows, dtype=np.float32)
    if not np.isfinite(windows).all():
        raise DatasetError(f"MIT-BIH record {path}: beat windows contain NaN/inf samples")
    return (freeze(windows), freeze(symbol[inside].astype(str)), freeze(sample[inside]),
            int((~inside).sum()), fs)


def _split_records(root, split):
    """Record paths of ``split`` that ``root`` holds (or lists), and those it does not."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {sorted(SPLITS)}, got {split!r}")
    wanted = SPLITS[split]
    # A RECORDS listing says what the folder holds: a listed record whose files are missing is
    # a damaged copy, so it stays in the list and fails (or is skipped with a warning) when read.
    held = {p.name for p in list_records(root)}
    use = [r for r in wanted if r in held]
    not_here = [r for r in wanted if r not in held]
    if not use:
        raise FileNotFoundError(f"no MIT-BIH record of split {split!r} found in {root} "
                                f"(expected some of {list(wanted)})")
    if not_here:
        logger.info("MIT-BIH %s: %d of %d records not in %s: %s", split, len(not_here),
                    len(wanted), root, not_here)
    return [root / r for r in use], not_here


def load_mitbih(root=None, split="all", window_seconds=(0.25, 0.45), classes="aami",
                channels=("MLII",), sampling_rate=None, on_error="raise", return_X_y=False):
    """Load MIT-BIH Arrhythmia beats as fixed windows around the annotated R peaks.

    Parameters
    ----------
    root : str or Path, optional
        Folder of MIT-BIH WFDB records (``NNN.hea``, ``NNN.dat``, ``NNN.atr``). None uses the
        embedded excerpt: the first 10 minutes of records 208, 209 (DS1), 213 and 232 (DS2).
    split : {"DS1", "DS2", "all"}, default="all"
        de Chazal et al. (2004) inter-patient split (22 records each; paced records excluded).
        Only the records present in ``root`` are used; ``missing_records`` lists the others.
        If ``root`` has a ``RECORDS`` listing that names records whose files are missing, a
        warning names them (and ``on_error="raise"`` raises on the first one).
    window_seconds : float or (float, float), default=(0.25, 0.45)
        Seconds before and after the R peak (a single number is split evenly). The default
        covers the P wave, QRS complex and T wave of a normal beat: 90 + 162 = 252 samples
        at 360 Hz. Beats whose window runs past the record's ends are left out and counted in
        ``n_edge_beats``.
    classes : {"aami", "symbols"}, default="aami"
        ``"aami"``: N={N,L,R,e,j}, S={A,a,J,S}, V={V,E}, F={F}, Q={/,f,Q}, target codes index
        ``target_names = ["N", "S", "V", "F", "Q"]`` for every split. ``"symbols"``: the raw
        beat symbols (codes index the sorted symbols found). Non-beat annotations (rhythm
        changes, noise, artefacts) are never windows.
    channels : sequence of str or int, default=("MLII",)
        Leads to keep. MLII is in every DS1/DS2 record; the second lead differs between records
        (V1, V2, V4 or V5), so ``(0, 1)`` gives two channels whose meaning varies.
    sampling_rate : float, optional
        Resample the records (polyphase, anti-aliased) before windowing; R-peak positions are
        scaled. Default: the native 360 Hz.
    on_error : {"raise", "warn"}, default="raise"
        Bad record (truncated, corrupt header, annotation past the signal): raise, or skip it
        with one warning listing every skipped record.
    return_X_y : bool, default=False
        Return ``(data, target)`` instead of the Bunch.

    Returns
    -------
    Bunch
        ``data`` (n_beats, n_channels, n_timesteps) float32 in mV; ``target`` (n_beats,) int64;
        ``target_names``; ``groups`` (n_beats,) record name per beat (one patient per record,
        except that records 201 and 202 come from the same patient); ``r_peak`` (n_beats,)
        sample index of the R peak in its record; ``sampling_rate``; ``records``;
        ``missing_records``; ``skipped``; ``n_edge_beats``; ``DESCR``.

    Examples
    --------
    >>> from ssmsignal.datasets import load_mitbih
    >>> X, y = load_mitbih(split="DS1", return_X_y=True)
    >>> X.shape[1:]
    (1, 252)
    """
    if classes not in ("aami", "symbols"):
        raise ValueError(f"classes must be 'aami' or 'symbols', got {classes!r}")
    fs_out = optional_rate(sampling_rate)
    before_s, after_s = _window_pair(window_seconds)
    channels = (channels,) if isinstance(channels, (str, int)) else tuple(channels)
    folder, is_embedded = resolve_root(root, "mitdb")
    paths, not_here = _split_records(folder, split)
    skipper = Skipper(on_error)
    parts, groups, peaks, n_edge, fs = [], [], [], 0, fs_out or FS
    for path in paths:
        out = skipper.call(path, _load_one, path, channels, before_s, after_s, fs_out)
        if out is None:
            continue
        windows, symbols, r_peak, edge, fs = out
        parts.append((windows, symbols))
        peaks.append(r_peak)
        groups.append(np.full(len(symbols), record_path(path).name))
        n_edge += edge
    skipped = skipper.finish("MIT-BIH records")
    if not parts:
        raise FileNotFoundError(f"no readable MIT-BIH record for split {split!r} in {folder}")
    data = np.concatenate([w for w, _ in parts])  # (n_beats, n_channels, window)
    symbols = np.concatenate([s for _, s in parts])
    if classes == "aami":  # fixed order N, S, V, F, Q: the same codes for every split
        target_names = np.array(AAMI_NAMES)
        target = np.array([AAMI_NAMES.index(_SYMBOL_TO_AAMI[s]) for s in symbols], np.int64)
    else:
        target_names = np.unique(symbols)
        target = np.searchsorted(target_names, symbols).astype(np.int64)
    counts = {str(n): int((target == i).sum()) for i, n in enumerate(target_names)}
    used = [record_path(p).name for p in paths if str(p) not in skipped]
    source = "embedded 10-min excerpts" if is_embedded else folder
    descr = (f"MIT-BIH Arrhythmia Database beats ({source}); "
             f"split {split}: records {used}; {len(data)} beats, class counts {counts}; window "
             f"{before_s} s before + {after_s} s after the R peak at {fs} Hz "
             f"({data.shape[-1]} samples), channels {list(channels)}, physical units (mV). "
             f"{n_edge} beats too close to a record end left out. Source: PhysioNet mitdb, "
             "ODC-By 1.0; cite Moody & Mark (2001) and Goldberger et al. (2000).")
    bunch = Bunch(data=data, target=target, target_names=target_names,
                  groups=np.concatenate(groups), r_peak=np.concatenate(peaks),
                  sampling_rate=float(fs), records=used, missing_records=not_here,
                  skipped=skipped, n_edge_beats=n_edge, channel_names=list(channels),
                  DESCR=descr)
    return finish_bunch(bunch, return_X_y)


def _load_one(path, channels, before_s, after_s, fs_out):
    path = Path(path)
    files = [path.with_name(path.name + ext) for ext in (".hea", ".dat", ".atr")]
    for f in files:
        if not f.is_file():
            raise FileNotFoundError(f"MIT-BIH record {path.name}: {f} does not exist")
    windows, symbols, r_peak, edge, fs = _record_beats(file_signature(*files), path, channels,
                                                       before_s, after_s, fs_out)
    return windows.copy(), symbols, r_peak.copy(), edge, fs
