"""PhysioNet/CinC challenge folders: WFDB records plus labels (a CSV table or header comments)."""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from ._base import Bunch, DatasetError, finish_bunch, resolve_root
from ._wfdb import list_records, load_wfdb


def header_labels(comments, key="Dx"):
    """Codes of a ``# Dx: code,code`` style header comment line (CinC 2020/2021), or []."""
    prefix = key.lower() + ":"
    for line in comments:
        text = line.strip().lstrip("#").strip()
        if text.lower().startswith(prefix):
            return [c.strip() for c in text[len(prefix):].split(",") if c.strip()]
    return []


def _read_label_table(path, names, record_column, label_column):
    """{record name: label string} from a CSV (with or without a header row)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"label table not found: {path}")
    try:
        table = pd.read_csv(path, header=None, dtype=str, skipinitialspace=True)
    except Exception as exc:
        raise DatasetError(f"cannot parse label table {path}: {type(exc).__name__}: {exc}"
                           ) from None
    first = (table.iloc[0, record_column]
             if isinstance(record_column, int) and record_column < table.shape[1] else None)
    if first not in names:
        table = pd.read_csv(path, dtype=str, skipinitialspace=True)  # first row is a header
    for col in (record_column, label_column):
        ok = col < table.shape[1] if isinstance(col, int) else col in table.columns
        if not ok:
            raise DatasetError(f"label table {path} has no column {col!r} "
                               f"(columns: {list(table.columns)})")
    rec = table.iloc[:, record_column] if isinstance(record_column, int) else table[record_column]
    lab = table.iloc[:, label_column] if isinstance(label_column, int) else table[label_column]
    if rec.duplicated().any():
        raise DatasetError(f"label table {path} lists record(s) "
                           f"{sorted(set(rec[rec.duplicated()]))} more than once")
    return {str(r).strip(): str(v).strip() for r, v in zip(rec, lab) if pd.notna(v)}


def load_physionet_challenge(root, labels="header", header_key="Dx", record_column=0,
                             label_column=1, channels=None, sampling_rate=None,
                             on_error="raise", return_X_y=False):
    """Load a PhysioNet/CinC challenge folder as ``(X, y)``.

    Parameters
    ----------
    root : str or Path
        Folder of WFDB records (``.hea`` + ``.dat``/``.mat``; its ``RECORDS`` listing when
        present, else every ``.hea``).
    labels : "header" or path to a CSV file, default="header"
        ``"header"``: multi-label codes from the header comment ``# <header_key>: a,b,...``
        (CinC 2020/2021, SNOMED-CT codes). A path: a label table read with pandas, e.g. the
        CinC 2017 ``REFERENCE.csv`` (``A00001,N`` rows, no header) or any CSV with a header;
        a label cell holding commas is treated as several labels.
    header_key : str, default="Dx"
        Header comment key read when ``labels="header"``.
    record_column, label_column : int or str, default=0, 1
        Columns of the table with the record name and the label (position or header name).
    channels : list of str or int, optional
        Leads to keep (default all). Records lacking one fail under ``on_error``.
    sampling_rate : float, optional
        Resample every record to this rate (Hz, > 0).
    on_error : {"raise", "warn"}, default="raise"
        A bad or missing record: raise, or skip with one warning listing all skipped.
    return_X_y : bool, default=False
        Return ``(data, target)`` instead of the Bunch.

    Returns
    -------
    Bunch
        ``data``: (n_records, n_channels, n) float32 when shapes agree, else a list;
        ``target``: (n_records, n_labels) int64 indicator matrix when multi-label, else
        (n_records,) int64; ``target_names``; ``labels`` (label list per record);
        ``record_names``; ``channel_names``; ``sampling_rate``; ``comments``; ``unlabelled``
        (records without a label, not loaded: a warning names them); ``skipped``; ``DESCR``.

    Examples
    --------
    >>> X, y = load_physionet_challenge("training/cinc2021", return_X_y=True)  # doctest: +SKIP
    """
    if root is None:
        raise TypeError("load_physionet_challenge needs the challenge folder as root")
    folder, _ = resolve_root(root, None)
    paths = list_records(folder)
    if not paths:
        raise FileNotFoundError(f"no WFDB records (*.hea) in {folder}")
    names = [p.name for p in paths]
    table = None
    if not (isinstance(labels, str) and labels == "header"):
        table = _read_label_table(labels, set(names), record_column, label_column)
        not_on_disk = sorted(set(table) - set(names))
        if not_on_disk:  # labelled but absent: a missing record, under the on_error policy
            paths += [folder / n for n in not_on_disk]
    unlabelled = [n for n in names if table is not None and n not in table]
    if unlabelled:
        warnings.warn(f"{len(unlabelled)} record(s) in {folder} have no label in {labels} and "
                      f"are not loaded: {unlabelled}", UserWarning, stacklevel=2)
        paths = [p for p in paths if p.name not in unlabelled]
    records = load_wfdb(paths, channels=channels, sampling_rate=sampling_rate,
                        on_error=on_error)
    if table is None:
        per_record = [header_labels(c, header_key) for c in records.comments]
        multilabel = True
        no_label = [n for n, lab in zip(records.record_names, per_record) if not lab]
        if len(no_label) == len(per_record):
            raise DatasetError(f"no '# {header_key}:' header comment in any record of {folder}")
    else:
        raw = [table[n] for n in records.record_names]
        multilabel = any("," in v for v in raw)
        per_record = [[c.strip() for c in v.split(",") if c.strip()] if multilabel else [v]
                      for v in raw]
    target_names = np.array(sorted({c for lab in per_record for c in lab}))
    if multilabel:
        target = np.zeros((len(per_record), len(target_names)), dtype=np.int64)
        for i, lab in enumerate(per_record):
            target[i, np.searchsorted(target_names, lab)] = 1
    else:
        target = np.searchsorted(target_names, [lab[0] for lab in per_record]).astype(np.int64)
    source = "header comments" if table is None else f"table {labels}"
    descr = (f"PhysioNet challenge folder {folder}: {len(per_record)} records, labels from "
             f"{source} ({len(target_names)} {'codes, multi-label' if multilabel else 'classes'})"
             f"; sampling rate {records.sampling_rate} Hz; {len(records.skipped)} skipped, "
             f"{len(unlabelled)} unlabelled.")
    bunch = Bunch(data=records.data, target=target, target_names=target_names,
                  labels=per_record, record_names=records.record_names,
                  channel_names=records.channel_names, sampling_rate=records.sampling_rate,
                  comments=records.comments, unlabelled=unlabelled, skipped=records.skipped,
                  DESCR=descr)
    return finish_bunch(bunch, return_X_y)
