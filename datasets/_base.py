"""Helpers shared by the loaders: embedded data, root folders, error policy, caching, Bunch."""
from __future__ import annotations

import functools
import os
import warnings
from collections import OrderedDict
from pathlib import Path

import numpy as np
from sklearn.utils import Bunch

from ssmsignal.functional import check_sampling_rate

EMBEDDED_DIR = Path(__file__).resolve().parent / "_embedded"
ON_ERROR_CHOICES = ("raise", "warn")


class DatasetError(ValueError):
    """A data file exists but cannot be used (corrupt, truncated, inconsistent)."""


def embedded_path(name):
    """Folder of the embedded sample ``name`` (``"mitdb"``, ``"bidmc"``, ``"fsdd"``)."""
    path = EMBEDDED_DIR / name
    if not path.is_dir():
        raise FileNotFoundError(f"embedded sample {name!r} is missing from the installed package "
                                f"(looked in {path}); reinstall ssmsignal")
    return path


def resolve_root(root, embedded_name):
    """Return the data folder: the embedded sample when ``root`` is None, else ``root``."""
    if root is None:
        return embedded_path(embedded_name), True
    path = Path(root).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"data folder not found: {path}")
    if not path.is_dir():
        raise NotADirectoryError(f"expected a data folder, got a file: {path}")
    return path, False


def check_on_error(on_error):
    if on_error not in ON_ERROR_CHOICES:
        raise ValueError(f"on_error must be one of {ON_ERROR_CHOICES}, got {on_error!r}")
    return on_error


def optional_rate(sampling_rate):
    """``None`` or a validated positive float."""
    return None if sampling_rate is None else check_sampling_rate(sampling_rate)


class Skipper:
    """Applies the ``on_error`` policy over a folder: raise at once, or collect and warn once.

    Use :meth:`call` around each file's work; call :meth:`finish` after the loop so that one
    warning lists every skipped file (data is never dropped silently).
    """

    #: errors that mean "this file is bad" (anything else is a bug and always propagates)
    FILE_ERRORS = (OSError, ValueError, RuntimeError, EOFError)

    def __init__(self, on_error):
        self.on_error = check_on_error(on_error)
        self.skipped = []  # [(path, message)]

    def call(self, path, func, *args, **kwargs):
        """Return ``func(*args, **kwargs)``, or None after recording a bad file."""
        try:
            return func(*args, **kwargs)
        except self.FILE_ERRORS as exc:
            if self.on_error == "raise":
                raise
            self.skipped.append((str(path), f"{type(exc).__name__}: {exc}"))
            return None

    def finish(self, what):
        if self.skipped:
            lines = "\n".join(f"  {p}: {m}" for p, m in self.skipped)
            warnings.warn(f"skipped {len(self.skipped)} unreadable {what} (on_error='warn'):\n"
                          f"{lines}", UserWarning, stacklevel=3)
        return [p for p, _ in self.skipped]


def file_signature(*paths):
    """Hashable (path, mtime_ns, size) tuple; changes when any file changes on disk."""
    sig = []
    for p in paths:
        st = os.stat(p)
        sig.append((os.path.abspath(p), st.st_mtime_ns, st.st_size))
    return tuple(sig)


def cached_arrays(max_bytes=256 * 2**20):
    """Decorator: in-process LRU cache of a reader, bounded by the bytes of the numpy arrays
    it returns (an lru_cache bounded by count could hold gigabytes of long audio files).

    The reader's first argument should be a :func:`file_signature`, so that an edited file is
    read again. Arrays in the cache are read-only (see :func:`freeze`); exceptions are not
    cached. The wrapper has ``cache_clear()``.
    """

    def decorate(func):
        store = OrderedDict()  # key -> (value, nbytes), oldest first
        used = [0]

        @functools.wraps(func)
        def wrapper(*args):
            if args in store:
                store.move_to_end(args)
                return store[args][0]
            value = func(*args)
            items = value if isinstance(value, tuple) else (value,)
            nbytes = sum(v.nbytes for v in items if isinstance(v, np.ndarray))
            if nbytes <= max_bytes:
                store[args] = (value, nbytes)
                used[0] += nbytes
                while used[0] > max_bytes:
                    used[0] -= store.popitem(last=False)[1][1]
            return value

        def cache_clear():
            store.clear()
            used[0] = 0

        wrapper.cache_clear = cache_clear
        return wrapper

    return decorate


def freeze(*arrays):
    """Mark arrays read-only (for values kept in a cache)."""
    for a in arrays:
        if isinstance(a, np.ndarray):
            a.flags.writeable = False
    return arrays[0] if len(arrays) == 1 else arrays


def stack_if_equal(arrays):
    """Stack same-shape arrays into one float32 array; keep a list when lengths differ."""
    if arrays and all(a.shape == arrays[0].shape for a in arrays):
        return np.stack(arrays).astype(np.float32, copy=False)
    return [np.asarray(a, dtype=np.float32) for a in arrays]


def pad_to_longest(arrays):
    """Zero-pad 1-D or (channels, n) arrays at the end to the longest; returns (data, lengths)."""
    lengths = np.array([a.shape[-1] for a in arrays], dtype=np.int64)
    if not arrays:
        return np.zeros((0, 0), np.float32), lengths
    longest = int(lengths.max())
    out = np.zeros((len(arrays),) + arrays[0].shape[:-1] + (longest,), np.float32)
    for i, a in enumerate(arrays):
        out[i, ..., : a.shape[-1]] = a  # (..., n_i) into (..., longest)
    return out, lengths


def finish_bunch(bunch, return_X_y):
    """Return ``(data, target)`` when asked, else the Bunch itself."""
    if return_X_y:
        return bunch.data, bunch.target
    return bunch


__all__ = ["Bunch", "DatasetError", "EMBEDDED_DIR", "Skipper", "cached_arrays",
           "check_on_error", "embedded_path", "file_signature", "finish_bunch", "freeze",
           "optional_rate", "pad_to_longest", "resolve_root", "stack_if_equal"]
