"""load_physionet_challenge and load_wfdb on small challenge-style folders."""
import os

import numpy as np
import pytest
import wfdb

from ssmsignal.datasets import load_physionet_challenge, load_wfdb
from ssmsignal.datasets._base import EMBEDDED_DIR

DX = {"r1": "426783006", "r2": "427084000,284470004", "r3": "426783006,59118001",
      "r4": "284470004"}
CLASS = {"r1": "N", "r2": "A", "r3": "N", "r4": "O"}


@pytest.fixture
def challenge(tmp_path):
    """Four 10 s two-lead records cut from the embedded MIT-BIH excerpt, CinC-2021 style."""
    src = wfdb.rdrecord(str(EMBEDDED_DIR / "mitdb" / "208"), physical=False)
    for k, name in enumerate(DX):
        seg = src.d_signal[k * 3600:(k + 1) * 3600]  # (3600, 2)
        wfdb.wrsamp(name, fs=360, units=["mV", "mV"], sig_name=["MLII", "V1"], d_signal=seg,
                    fmt=["16", "16"], adc_gain=src.adc_gain, baseline=src.baseline,
                    comments=["Age: 50", "Sex: F", f"Dx: {DX[name]}"], write_dir=str(tmp_path))
    (tmp_path / "REFERENCE.csv").write_text("".join(f"{n},{c}\n" for n, c in CLASS.items()))
    return tmp_path


def test_header_labels_are_multilabel_indicators(challenge):
    b = load_physionet_challenge(challenge)
    assert b.data.shape == (4, 2, 3600) and b.data.dtype == np.float32
    assert list(b.target_names) == sorted({c for v in DX.values() for c in v.split(",")})
    for i, name in enumerate(b.record_names):
        on = set(b.target_names[b.target[i] == 1])
        assert on == set(DX[name].split(",")) and set(b.labels[i]) == on
    ref = wfdb.rdrecord(str(challenge / "r2"))
    np.testing.assert_allclose(b.data[1], ref.p_signal.T, atol=1e-6)


def test_csv_labels_with_and_without_header(challenge):
    X, y = load_physionet_challenge(challenge, labels=challenge / "REFERENCE.csv",
                                    return_X_y=True)
    assert X.shape == (4, 2, 3600) and list(y) == [1, 0, 1, 2]  # A, N, O sorted
    (challenge / "labels.csv").write_text("rhythm,record\n" + "".join(
        f"{c},{n}\n" for n, c in CLASS.items()))
    b = load_physionet_challenge(challenge, labels=challenge / "labels.csv",
                                 record_column="record", label_column="rhythm",
                                 channels=["V1"], sampling_rate=180)
    assert b.data.shape == (4, 1, 1800) and list(b.target_names) == ["A", "N", "O"]


def test_unlabelled_record_warns_and_labelled_missing_record_fails(challenge):
    (challenge / "REFERENCE.csv").write_text("r1,N\nr2,A\nr3,N\nr9,O\n")
    with pytest.raises(FileNotFoundError, match="r9"):
        with pytest.warns(UserWarning, match=r"no label .*\['r4'\]"):
            load_physionet_challenge(challenge, labels=challenge / "REFERENCE.csv")
    with pytest.warns(UserWarning) as rec:
        b = load_physionet_challenge(challenge, labels=challenge / "REFERENCE.csv",
                                     on_error="warn")
    assert b.record_names == ["r1", "r2", "r3"] and b.unlabelled == ["r4"]
    assert any("r9" in str(w.message) for w in rec)


def test_damaged_records(challenge):
    os.truncate(challenge / "r3.dat", 1000)
    with pytest.raises(ValueError, match=r"truncated WFDB signal file .*r3\.dat"):
        load_physionet_challenge(challenge)
    (challenge / "r1.hea").write_text("r1 2 -5 3600\n")
    with pytest.warns(UserWarning, match=r"(?s)skipped 2 .*r1.*r3"):
        b = load_physionet_challenge(challenge, on_error="warn")
    assert b.record_names == ["r2", "r4"] and sorted(b.skipped) == [
        str(challenge / "r1"), str(challenge / "r3")]


def test_bad_label_tables(challenge):
    with pytest.raises(FileNotFoundError, match="label table"):
        load_physionet_challenge(challenge, labels=challenge / "nope.csv")
    (challenge / "dup.csv").write_text("r1,N\nr1,A\nr2,A\nr3,N\nr4,O\n")
    with pytest.raises(ValueError, match="more than once"):
        load_physionet_challenge(challenge, labels=challenge / "dup.csv")
    with pytest.raises(ValueError, match="no column"):
        load_physionet_challenge(challenge, labels=challenge / "REFERENCE.csv", label_column=5)
    with pytest.raises(ValueError, match="no column 7"):
        load_physionet_challenge(challenge, labels=challenge / "REFERENCE.csv", record_column=7)
    with pytest.raises(ValueError, match="Rx"):
        load_physionet_challenge(challenge, header_key="Rx")


def test_load_wfdb_folder_single_record_and_errors(challenge, tmp_path):
    b = load_wfdb(challenge)
    assert b.data.shape == (4, 2, 3600) and b.record_names == ["r1", "r2", "r3", "r4"]
    assert b.units[0] == ["mV", "mV"] and b.channel_names[0] == ["MLII", "V1"]
    one = load_wfdb(challenge / "r2.hea", channels=[1])
    assert one.data.shape == (1, 1, 3600)
    with pytest.raises(FileNotFoundError, match="not found"):
        load_wfdb(challenge / "r7")
    with pytest.raises(FileNotFoundError, match="folder not found"):
        load_wfdb(tmp_path / "a" / "b" / "r1")
    with pytest.raises(ValueError, match="sampling_rate"):
        load_wfdb(challenge, sampling_rate=0)
    (challenge / "r4.hea").write_text("")
    with pytest.raises(ValueError, match=r"corrupt WFDB header .*r4\.hea"):
        load_wfdb(challenge)


def test_load_wfdb_embedded_default_and_resampling():
    b = load_wfdb(channels=["MLII"], sampling_rate=180)
    assert b.data.shape == (4, 1, 108000) and b.sampling_rate == 180.0
    assert b.record_names == ["208", "209", "213", "232"]


def test_cinc2021_sample(shared_data):
    b = load_physionet_challenge(shared_data("cinc2021_sample"))
    assert b.data.shape == (50, 12, 5000) and b.sampling_rate == 500.0
    counts = dict(zip(b.target_names, b.target.sum(0)))
    assert counts["427084000"] == 23 and counts["284470004"] == 20  # SOURCE.md table


def test_wfdb_sample_mixed_rates(shared_data):
    b = load_wfdb(shared_data("wfdb_sample"))
    assert isinstance(b.data, list) and sorted(b.sampling_rate) == [125.0, 250.0, 1000.0]
    assert [x.shape[0] for x in b.data] == [3, 3, 15]
