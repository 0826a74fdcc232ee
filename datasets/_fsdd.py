"""Free Spoken Digit Dataset (FSDD): spoken digits 0-9, 8 kHz wav files."""
from __future__ import annotations

import re

import numpy as np

from ._base import Bunch, DatasetError, Skipper, finish_bunch, optional_rate, resolve_root
from ._audio import audio_output, read_many

_NAME = re.compile(r"^(\d)_([A-Za-z]+)_(\d+)\.wav$")
#: Standard split of the FSDD README: recordings 0-4 of every speaker and digit are the test set.
N_TEST_INDICES = 5


def _parse_name(path):
    """(digit, speaker, recording index) from ``{digit}_{speaker}_{index}.wav``."""
    m = _NAME.match(path.name)
    if m is None:
        raise DatasetError(f"FSDD file {path} is not named {{digit}}_{{speaker}}_{{index}}.wav")
    return int(m.group(1)), m.group(2), int(m.group(3))


def load_fsdd(root=None, sampling_rate=8000, split="all", pad=False, on_error="raise",
              return_X_y=False):
    """Load the Free Spoken Digit Dataset.

    Parameters
    ----------
    root : str or Path, optional
        FSDD checkout (with ``recordings/``) or the folder of ``{digit}_{speaker}_{index}.wav``
        files. None uses the embedded slice: speakers jackson and theo, every digit,
        recordings 0, 1 (test) and 5, 6, 7 (train): 100 files.
    sampling_rate : float, default=8000
        Output rate in Hz (> 0); files are resampled with
        :func:`ssmsignal.functional.resample` when it differs from theirs (FSDD is 8 kHz).
    split : {"all", "train", "test"}, default="all"
        The standard split: recording index 0-4 is test, the rest train.
    pad : bool, default=False
        False: ``data`` is a list of 1-D float32 arrays (lengths differ). True: a
        (n_files, longest) float32 array zero-padded at the end; ``lengths`` always given.
    on_error : {"raise", "warn"}, default="raise"
        Unreadable or misnamed wav file: raise, or skip it with one warning listing all.
    return_X_y : bool, default=False
        Return ``(data, target)`` instead of the Bunch.

    Returns
    -------
    Bunch
        ``data``; ``lengths``; ``target`` (int64 digit); ``target_names`` ("0".."9");
        ``groups`` (speaker); ``recording_index``; ``filenames``; ``sampling_rate``;
        ``skipped``; ``DESCR``.

    Examples
    --------
    >>> from ssmsignal.datasets import load_fsdd
    >>> b = load_fsdd(split="test", pad=True)
    >>> b.data.shape[0], b.sampling_rate
    (40, 8000.0)
    """
    if split not in ("all", "train", "test"):
        raise ValueError(f"split must be 'all', 'train' or 'test', got {split!r}")
    fs = optional_rate(sampling_rate)
    folder, is_embedded = resolve_root(root, "fsdd")
    if (folder / "recordings").is_dir():
        folder = folder / "recordings"
    wavs = sorted(p for p in folder.iterdir() if p.suffix.lower() == ".wav")
    if not wavs:
        raise FileNotFoundError(f"no FSDD wav files in {folder}")
    skipper = Skipper(on_error)
    paths, meta = [], []
    for p in wavs:
        # a misnamed file cannot be labelled: it goes through on_error like an unreadable one
        parsed = skipper.call(p, _parse_name, p)
        in_test = parsed is not None and parsed[2] < N_TEST_INDICES
        if parsed is not None and (split == "all" or (split == "test") == in_test):
            paths.append(p)
            meta.append(parsed)
    if not paths:
        skipper.finish("FSDD files")
        raise FileNotFoundError(f"no FSDD recording of split {split!r} in {folder}")
    arrays, rate, kept = read_many(paths, fs, skipper, "FSDD files")
    skipped = skipper.finish("FSDD files")
    meta = [meta[i] for i in kept]
    data, lengths = audio_output(arrays, pad)
    speakers = sorted({s for _, s, _ in meta})
    descr = (f"Free Spoken Digit Dataset ({'embedded slice' if is_embedded else folder}), "
             f"split {split}: {len(meta)} recordings of digits 0-9 by {speakers}, {rate} Hz "
             f"mono float32{' zero-padded' if pad else ''}; test = recordings 0-4. "
             "Licence CC BY-SA 4.0 (Jackson et al., FSDD).")
    bunch = Bunch(data=data, lengths=lengths,
                  target=np.array([d for d, _, _ in meta], dtype=np.int64),
                  target_names=np.array([str(d) for d in range(10)]),
                  groups=np.array([s for _, s, _ in meta]),
                  recording_index=np.array([i for _, _, i in meta], dtype=np.int64),
                  filenames=[str(paths[i]) for i in kept], sampling_rate=rate,
                  skipped=skipped, DESCR=descr)
    return finish_bunch(bunch, return_X_y)
