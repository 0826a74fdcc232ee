"""load_bidmc on the embedded excerpt, damaged copies and (when present) the full CSV copy."""
import gzip

import numpy as np
import pandas as pd
import pytest

from ssmsignal.datasets import load_bidmc
from ssmsignal.datasets._base import EMBEDDED_DIR


def test_embedded_layout_targets_and_groups():
    b = load_bidmc(target="HR")
    assert b.data.dtype == np.float32 and b.data.shape == (14, 3, 4000)  # 2 subjects x 7
    assert b.sampling_rate == 125.0 and b.channel_names == ["PLETH", "II", "RESP"]
    assert b.target.shape == (14,) and b.target.dtype == np.float64
    assert list(np.unique(b.groups)) == ["01", "02"]
    assert 40 < b.target.min() and b.target.max() < 180
    assert np.isfinite(b.data).all()
    rr = load_bidmc(target="RR").target
    spo2 = load_bidmc(target="SpO2").target
    assert 3 < rr.min() and rr.max() < 60 and 80 < spo2.min() and spo2.max() <= 100


def test_window_content_and_target_match_the_csv():
    b = load_bidmc(target=["HR", "SpO2"], window_seconds=10, stride_seconds=5)
    sig = pd.read_csv(EMBEDDED_DIR / "bidmc" / "bidmc_02_Signals.csv.gz")
    num = pd.read_csv(EMBEDDED_DIR / "bidmc" / "bidmc_02_Numerics.csv.gz")
    i = int(np.flatnonzero(b.groups == "02")[3])  # 4th window of subject 02: 15 s to 25 s
    assert b.window_start[i] == 15.0 and b.data.shape[2] == 1250
    np.testing.assert_array_equal(b.data[i, 1], sig["II"].to_numpy(np.float32)[1875:3125])
    secs = (num["Time [s]"] >= 15) & (num["Time [s]"] < 25)
    np.testing.assert_allclose(b.target[i], [num.loc[secs, "HR"].mean(),
                                             num.loc[secs, "SpO2"].mean()])
    assert b.target.shape == (len(b.data), 2) and list(b.target_names) == ["HR", "SpO2"]


def test_resampling_and_return_X_y():
    X, y = load_bidmc(target="RR", sampling_rate=62.5, channels=["PLETH"], return_X_y=True)
    assert X.shape == (14, 1, 2000) and y.shape == (14,)


@pytest.mark.parametrize("kwargs, match", [
    ({"target": "BP"}, "target"), ({"sampling_rate": 0}, "sampling"),
    ({"window_seconds": -1}, "window_seconds"), ({"stride_seconds": 0}, "stride"),
    ({"channels": ["ABP"]}, "ABP"), ({"on_error": "skip"}, "on_error")])
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        load_bidmc(**kwargs)


def test_missing_folder_and_empty_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="not found"):
        load_bidmc(tmp_path / "absent")
    with pytest.raises(FileNotFoundError, match="no BIDMC subject"):
        load_bidmc(tmp_path)


def test_truncated_gzip_raises_or_warns(bidmc_copy):
    f = bidmc_copy / "bidmc_01_Signals.csv.gz"
    f.write_bytes(f.read_bytes()[:50_000])
    with pytest.raises(ValueError, match=r"cannot parse BIDMC file .*bidmc_01_Signals"):
        load_bidmc(bidmc_copy)
    with pytest.warns(UserWarning, match=r"(?s)skipped 1 .*bidmc_01_Signals"):
        b = load_bidmc(bidmc_copy, on_error="warn")
    assert set(b.groups) == {"02"} and len(b.skipped) == 1


def test_cut_rows_and_missing_numerics(bidmc_copy):
    f = bidmc_copy / "bidmc_02_Signals.csv.gz"
    lines = gzip.decompress(f.read_bytes()).decode().splitlines()
    del lines[5000:5100]  # 100 rows gone from the middle
    f.write_bytes(gzip.compress(("\n".join(lines) + "\n").encode()))
    with pytest.raises(ValueError, match="not uniformly spaced"):
        load_bidmc(bidmc_copy)
    (bidmc_copy / "bidmc_01_Numerics.csv.gz").unlink()
    with pytest.warns(UserWarning, match=r"(?s)skipped 2 .*Numerics"):
        with pytest.raises(ValueError, match="no complete"):
            load_bidmc(bidmc_copy, on_error="warn")


def test_windows_without_target_are_reported(bidmc_copy):
    f = bidmc_copy / "bidmc_01_Numerics.csv.gz"
    num = pd.read_csv(f)
    num.loc[num["Time [s]"] < 40, "SpO2"] = np.nan  # the first window has no SpO2 at all
    num.to_csv(f, index=False)
    with pytest.warns(UserWarning, match="1 BIDMC window"):
        b = load_bidmc(bidmc_copy, target="SpO2")
    assert len(b.data) == 13 and b.n_windows_without_target == 1
    assert np.isfinite(b.target).all()


def test_full_copy(shared_data):
    b = load_bidmc(shared_data("bidmc_csv"), target="RR")
    assert b.data.shape == (150, 3, 4000) and len(set(b.groups)) == 10
    assert np.isfinite(b.target).all()


def test_numerics_without_the_target_column(bidmc_copy):
    f = bidmc_copy / "bidmc_02_Numerics.csv.gz"
    pd.read_csv(f).drop(columns=["SpO2"]).to_csv(f, index=False)
    with pytest.raises(ValueError, match=r"bidmc_02_Numerics.* lacks column\(s\) \['SpO2'\]"):
        load_bidmc(bidmc_copy, target="SpO2")
    with pytest.warns(UserWarning, match=r"(?s)skipped 1 .*bidmc_02"):
        b = load_bidmc(bidmc_copy, target="SpO2", on_error="warn")
    assert set(b.groups) == {"01"}
    assert set(load_bidmc(bidmc_copy, target="HR").groups) == {"01", "02"}
