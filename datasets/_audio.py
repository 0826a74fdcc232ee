"""Audio files read with soundfile, resampled through the library's one ``resample``."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf

from ._base import (Bunch, DatasetError, Skipper, cached_arrays, file_signature,
                    finish_bunch, freeze, optional_rate, pad_to_longest, resolve_root)
from ssmsignal.functional import resample

#: File name endings read as audio (formats of libsndfile that hold audio in common use).
AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".aiff", ".aif", ".au", ".mp3", ".w64", ".caf")


@cached_arrays()
def _read_cached(signature, path, target_fs):
    try:
        with sf.SoundFile(path) as fh:
            fs = float(fh.samplerate)
            audio = fh.read(dtype="float32", always_2d=True)  # (n, channels)
    except (sf.LibsndfileError, RuntimeError, TypeError) as exc:
        raise DatasetError(f"unreadable audio file {path}: {exc}") from None
    if fs <= 0:
        raise DatasetError(f"audio file {path} declares sampling rate {fs}")
    if audio.shape[0] == 0:
        raise DatasetError(f"audio file {path} holds no samples")
    mono = audio.mean(axis=1) if audio.shape[1] > 1 else audio[:, 0]  # (n,)
    if not np.isfinite(mono).all():
        raise DatasetError(f"audio file {path} contains NaN/inf samples")
    if target_fs is not None and target_fs != fs:
        mono = resample(mono, fs, target_fs).astype(np.float32)
        fs = target_fs
    return freeze(np.ascontiguousarray(mono)), fs


def read_audio(path, sampling_rate=None):
    """Read one audio file as mono float32 in [-1, 1] (channels averaged).

    Parameters
    ----------
    path : str or Path
        Audio file in any format libsndfile reads (wav, flac, ogg, ...).
    sampling_rate : float, optional
        Resample to this rate (Hz, > 0); default keep the file's rate.

    Returns
    -------
    audio : ndarray of float32, shape (n,)
    sampling_rate : float
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"audio file not found: {path}")
    audio, fs = _read_cached(file_signature(path), str(path), optional_rate(sampling_rate))
    return audio.copy(), fs


def read_many(paths, sampling_rate, skipper, what):
    """Read audio files under a :class:`Skipper`'s policy (the caller calls ``finish``).

    Returns (arrays, rate, kept indices); raises when no file is readable or when the files'
    rates differ and no ``sampling_rate`` was asked for.
    """
    target_fs = optional_rate(sampling_rate)
    arrays, rates, kept = [], [], []
    for i, path in enumerate(paths):
        out = skipper.call(path, read_audio, path, target_fs)
        if out is not None:
            arrays.append(out[0])
            rates.append(out[1])
            kept.append(i)
    if not arrays:
        skipper.finish(what)
        raise DatasetError(f"no readable audio file among {len(paths)} {what}")
    if len(set(rates)) > 1:
        raise DatasetError(f"{what} have different sampling rates {sorted(set(rates))}; pass "
                           "sampling_rate=... to resample them to one rate")
    return arrays, rates[0], kept


def audio_output(arrays, pad):
    """List of 1-D arrays, or (n_files, longest) zero-padded with lengths when ``pad``."""
    if pad:
        return pad_to_longest(arrays)
    return arrays, np.array([len(a) for a in arrays], dtype=np.int64)


def load_audio_folder(root, sampling_rate=None, pad=False, on_error="raise",
                      return_X_y=False):
    """Load a folder of class sub-folders of audio files (Speech Commands layout).

    ``root/<class name>/<file>.wav``: the sub-folder names are the classes. Files whose names
    do not end in an audio extension (see ``AUDIO_EXTENSIONS``) are listed in ``ignored``, not
    read; files directly in ``root`` are ignored too (Speech Commands keeps its lists there).

    Parameters
    ----------
    root : str or Path
        The folder.
    sampling_rate : float, optional
        Resample every file to this rate (Hz, > 0) with
        :func:`ssmsignal.functional.resample`. Required when the files' rates differ.
    pad : bool, default=False
        False: ``data`` is a list of 1-D float32 arrays of unequal length. True: a
        (n_files, longest) float32 array, zero-padded at the end.
    on_error : {"raise", "warn"}, default="raise"
        An unreadable file raises, or is skipped with one warning listing every skipped file.
    return_X_y : bool, default=False
        Return ``(data, target)`` instead of the Bunch.

    Returns
    -------
    Bunch
        ``data``; ``lengths`` (samples per file); ``target`` (int64 index into
        ``target_names``); ``target_names`` (sorted sub-folder names); ``groups`` (speaker id
        from Speech Commands names ``{speaker}_nohash_{n}.wav``, else None); ``filenames``;
        ``sampling_rate``; ``skipped``; ``ignored``; ``DESCR``.
    """
    if root is None:
        raise TypeError("load_audio_folder needs a root folder (there is no embedded default; "
                        "see load_fsdd for embedded audio)")
    folder, _ = resolve_root(root, None)
    classes = sorted(p.name for p in folder.iterdir() if p.is_dir() and not
                     p.name.startswith((".", "_")))
    if not classes:
        raise FileNotFoundError(f"no class sub-folders in {folder}")
    paths, labels, ignored = [], [], []
    for k, name in enumerate(classes):
        for f in sorted((folder / name).iterdir()):
            if f.is_file() and f.suffix.lower() in AUDIO_EXTENSIONS:
                paths.append(f)
                labels.append(k)
            elif not f.name.startswith("."):
                ignored.append(str(f))
    if not paths:
        raise FileNotFoundError(f"no audio files ({', '.join(AUDIO_EXTENSIONS)}) in the class "
                                f"sub-folders of {folder}")
    skipper = Skipper(on_error)
    arrays, fs, kept = read_many(paths, sampling_rate, skipper, "audio files")
    skipped = skipper.finish("audio files")
    data, lengths = audio_output(arrays, pad)
    names = [paths[i].name for i in kept]
    groups = (np.array([n.split("_nohash_")[0] for n in names])
              if all("_nohash_" in n for n in names) else None)
    target = np.array([labels[i] for i in kept], dtype=np.int64)
    descr = (f"Audio folder {folder}: {len(arrays)} files in {len(classes)} classes "
             f"{classes}, {fs} Hz mono float32{' zero-padded' if pad else ''}; "
             f"{len(skipped)} unreadable skipped, {len(ignored)} non-audio ignored.")
    bunch = Bunch(data=data, lengths=lengths, target=target, target_names=np.array(classes),
                  groups=groups, filenames=[str(paths[i]) for i in kept], sampling_rate=fs,
                  skipped=skipped, ignored=ignored, DESCR=descr)
    return finish_bunch(bunch, return_X_y)
