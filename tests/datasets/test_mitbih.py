"""load_mitbih on the embedded excerpt, on damaged copies, and on the full copy when present."""
import os
import warnings

import numpy as np
import pytest
import wfdb

from ssmsignal.datasets import AAMI_CLASSES, DS1, DS2, load_mitbih
from ssmsignal.datasets._base import EMBEDDED_DIR


def test_embedded_splits_shapes_classes_groups():
    ds1 = load_mitbih(split="DS1")
    ds2 = load_mitbih(split="DS2")
    for b, records in ((ds1, {"208", "209"}), (ds2, {"213", "232"})):
        assert b.data.dtype == np.float32 and b.data.ndim == 3
        assert b.data.shape[1:] == (1, 252)  # MLII, 90 + 162 samples at 360 Hz
        assert b.target.dtype == np.int64 and b.target.shape == (len(b.data),)
        assert list(b.target_names) == ["N", "S", "V", "F", "Q"]
        assert b.sampling_rate == 360.0
        assert set(b.groups) == records and len(b.groups) == len(b.data)
        counts = np.bincount(b.target, minlength=5)
        assert counts[:4].min() >= 60, counts  # N, S, V and F all present in both halves
        assert np.isfinite(b.data).all()
    assert not set(ds1.groups) & set(ds2.groups)  # inter-patient: no record in both
    assert 3000 <= len(ds1.data) + len(ds2.data) <= 6000
    both = load_mitbih(split="all")
    assert len(both.data) == len(ds1.data) + len(ds2.data)


def test_windows_are_centred_on_annotated_r_peaks():
    b = load_mitbih(split="DS2", channels=("MLII", 1))
    rec = wfdb.rdrecord(str(EMBEDDED_DIR / "mitdb" / "232"))
    ann = wfdb.rdann(str(EMBEDDED_DIR / "mitdb" / "232"), "atr")
    sel = np.flatnonzero(b.groups == "232")
    rng = np.random.default_rng(0)
    for i in rng.choice(sel, 20, replace=False):
        r = b.r_peak[i]
        assert r in ann.sample
        expect = rec.p_signal[r - 90:r + 162].T  # (2, 252) in mV
        np.testing.assert_allclose(b.data[i], expect, rtol=0, atol=1e-6)
        symbol = ann.symbol[int(np.flatnonzero(ann.sample == r)[0])]
        assert symbol in AAMI_CLASSES[b.target_names[b.target[i]]]


def test_symbol_classes_agree_with_aami_mapping():
    aami = load_mitbih(split="DS1")
    raw = load_mitbih(split="DS1", classes="symbols")
    symbols = raw.target_names[raw.target]
    mapped = [next(c for c, s in AAMI_CLASSES.items() if sym in s) for sym in symbols]
    assert mapped == list(aami.target_names[aami.target])
    assert "A" in raw.target_names and "+" not in raw.target_names  # rhythm marks skipped


def test_window_resampling_and_return_X_y():
    X, y = load_mitbih(split="DS1", window_seconds=0.5, sampling_rate=180, return_X_y=True)
    assert X.shape[1:] == (1, 90) and len(X) == len(y)
    b = load_mitbih(split="DS1", window_seconds=0.5, sampling_rate=180)
    assert b.sampling_rate == 180.0
    assert np.all(b.r_peak % 1 == 0) and b.r_peak.max() < 10 * 60 * 180


def test_output_is_a_copy_of_the_cache():
    a = load_mitbih(split="DS1")
    a.data[:] = np.nan
    b = load_mitbih(split="DS1")
    assert np.isfinite(b.data).all()


@pytest.mark.parametrize("kwargs, match", [
    ({"split": "DS3"}, "split"), ({"sampling_rate": 0}, "sampling"),
    ({"sampling_rate": -360}, "sampling"), ({"window_seconds": (-0.1, 0.2)}, "window"),
    ({"classes": "abc"}, "classes"), ({"channels": ("V9",)}, "V9"),
    ({"on_error": "ignore"}, "on_error")])
def test_bad_arguments_raise_clear_errors(kwargs, match):
    with pytest.raises((ValueError, TypeError), match=match):
        load_mitbih(**kwargs)


def test_missing_folder_and_no_split_records(tmp_path):
    with pytest.raises(FileNotFoundError, match="not found"):
        load_mitbih(tmp_path / "nope")
    with pytest.raises(FileNotFoundError, match="no MIT-BIH record"):
        load_mitbih(tmp_path)


def test_truncated_dat_raises_or_is_skipped_with_warning(mitdb_copy):
    os.truncate(mitdb_copy / "209.dat", 100_000)
    with pytest.raises(ValueError, match=r"truncated WFDB signal file .*209\.dat"):
        load_mitbih(mitdb_copy, split="DS1")
    with pytest.warns(UserWarning, match=r"(?s)skipped 1 .*209") as rec:
        b = load_mitbih(mitdb_copy, split="DS1", on_error="warn")
    assert len(rec) == 1 and set(b.groups) == {"208"} and b.skipped[0].endswith("209")


def test_corrupt_header(mitdb_copy):
    (mitdb_copy / "208.hea").write_text("208 two 360 abc\nnonsense\n")
    with pytest.raises(ValueError, match=r"corrupt WFDB header .*208\.hea"):
        load_mitbih(mitdb_copy, split="DS1")


def test_header_with_zero_sampling_rate(mitdb_copy):
    hea = mitdb_copy / "208.hea"
    hea.write_text(hea.read_text().replace("208 2 360 216000", "208 2 0 216000", 1))
    with pytest.raises(ValueError, match="sampling rate"):
        load_mitbih(mitdb_copy, split="DS1")


def test_missing_listed_record_raises_and_warn_names_it(mitdb_copy):
    for ext in (".hea", ".dat", ".atr"):
        (mitdb_copy / f"213{ext}").unlink()
    with pytest.raises(FileNotFoundError, match="213"):
        load_mitbih(mitdb_copy, split="DS2")
    with pytest.warns(UserWarning, match="213"):
        b = load_mitbih(mitdb_copy, split="DS2", on_error="warn")
    assert set(b.groups) == {"232"}


def test_unlisted_split_records_are_not_an_error(mitdb_copy):
    (mitdb_copy / "RECORDS").unlink()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        b = load_mitbih(mitdb_copy, split="DS1")
    assert set(b.groups) == {"208", "209"} and "101" in b.missing_records


def test_annotation_beyond_signal(mitdb_copy):
    ann = wfdb.rdann(str(mitdb_copy / "209"), "atr")
    sample = np.append(ann.sample, 216000 + 500)  # the excerpt has 216000 samples
    wfdb.wrann("209", "atr", sample, symbol=list(ann.symbol) + ["N"], fs=360,
               write_dir=str(mitdb_copy))
    with pytest.raises(ValueError, match=r"does not match its record: mark at sample 216500"):
        load_mitbih(mitdb_copy, split="DS1")


def test_annotation_written_at_another_rate(mitdb_copy):
    ann = wfdb.rdann(str(mitdb_copy / "208"), "atr")
    wfdb.wrann("208", "atr", ann.sample, symbol=ann.symbol, fs=250, write_dir=str(mitdb_copy))
    with pytest.raises(ValueError, match="250.* Hz, the record is sampled at 360"):
        load_mitbih(mitdb_copy, split="DS1")


def test_full_copy_counts_match_the_published_table(shared_data):
    root = shared_data("mitdb")
    b = load_mitbih(root, split="all")
    counts = np.bincount(b.target, minlength=5)
    published = np.array([44204, 2527, 6003, 784, 13])  # /work/shared/data/mitdb/SOURCE.md
    assert np.all(counts <= published) and np.all(published - counts <= 25), counts
    assert len(set(b.groups)) == 22
    assert b.missing_records and set(b.missing_records) <= set(DS1 + DS2)
