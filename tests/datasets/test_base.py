"""The loaders' shared helpers: byte-bounded cache, file signatures, on_error policy."""
import os
import warnings

import numpy as np
import pytest
import soundfile as sf

from ssmsignal.datasets import load_fsdd
from ssmsignal.datasets._base import Skipper, cached_arrays, file_signature


def test_cache_is_bounded_by_bytes_and_does_not_cache_errors():
    calls = []

    @cached_arrays(max_bytes=3 * 800)
    def read(key):
        calls.append(key)
        if key == "bad":
            raise ValueError("bad file")
        return np.zeros(100)  # 800 bytes

    for key in ("a", "b", "c", "a"):
        read(key)
    assert calls == ["a", "b", "c"]
    read("d")  # evicts the least recently used: "b"
    read("a")
    read("b")
    assert calls == ["a", "b", "c", "d", "b"]
    for _ in range(2):
        with pytest.raises(ValueError):
            read("bad")
    assert calls.count("bad") == 2
    read.cache_clear()
    read("a")
    assert calls[-1] == "a"


def test_edited_file_is_read_again(fsdd_copy):
    first = load_fsdd(fsdd_copy, split="test")
    f = fsdd_copy / "0_jackson_0.wav"
    sig = file_signature(f)
    sf.write(f, np.full(800, 0.5), 8000, subtype="PCM_16")
    os.utime(f, ns=(sig[0][1] + 10**9, sig[0][1] + 10**9))
    second = load_fsdd(fsdd_copy, split="test")
    i = second.filenames.index(str(f))
    assert len(first.data[i]) != 800 and len(second.data[i]) == 800


def test_skipper_policy():
    def fail():
        raise OSError("disk says no")

    with pytest.raises(OSError):
        Skipper("raise").call("x", fail)
    sk = Skipper("warn")
    assert sk.call("x", fail) is None and sk.call("y", lambda: 3) == 3
    with pytest.warns(UserWarning, match="(?s)skipped 1 unreadable things.*x: OSError"):
        assert sk.finish("things") == ["x"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert Skipper("warn").finish("things") == []
    with pytest.raises(TypeError):  # a bug is not a bad file: it always propagates
        Skipper("warn").call("z", lambda: None + 1)
    with pytest.raises(ValueError, match="on_error"):
        Skipper("ignore")
