"""load_fsdd and load_audio_folder on the embedded slice, damaged copies and the full copy."""
import shutil

import numpy as np
import pytest
import soundfile as sf

from ssmsignal.datasets import load_audio_folder, load_fsdd


def test_fsdd_embedded_splits():
    full = load_fsdd()
    train, test = load_fsdd(split="train"), load_fsdd(split="test")
    assert len(full.data) == 100 and len(train.data) == 60 and len(test.data) == 40
    assert set(test.recording_index) == {0, 1} and set(train.recording_index) == {5, 6, 7}
    assert not set(train.filenames) & set(test.filenames)
    for b in (full, train, test):
        assert isinstance(b.data, list) and all(x.dtype == np.float32 and x.ndim == 1
                                                for x in b.data)
        assert np.array_equal(b.lengths, [len(x) for x in b.data])
        assert b.sampling_rate == 8000.0 and list(b.target_names) == [str(d) for d in range(10)]
        assert np.all(np.bincount(b.target, minlength=10) == len(b.data) // 10)
        assert set(b.groups) == {"jackson", "theo"}
        assert max(np.abs(x).max() for x in b.data) <= 1.0


def test_fsdd_matches_soundfile_and_pads():
    b = load_fsdd(split="test", pad=True)
    assert b.data.shape == (40, b.lengths.max()) and b.data.dtype == np.float32
    i = int(np.argmin(b.lengths))
    ref, fs = sf.read(b.filenames[i], dtype="float32")
    assert fs == 8000 and np.array_equal(b.data[i, :len(ref)], ref)
    assert np.all(b.data[i, len(ref):] == 0)
    X, y = load_fsdd(split="test", return_X_y=True)
    assert len(X) == len(y) == 40


def test_fsdd_resampling_through_resample():
    b = load_fsdd(split="test", sampling_rate=16000)
    ref = load_fsdd(split="test")
    assert b.sampling_rate == 16000.0
    assert np.array_equal(b.lengths, 2 * ref.lengths)
    with pytest.raises(ValueError, match="sampling_rate"):
        load_fsdd(sampling_rate=0)
    with pytest.raises(ValueError, match="sampling_rate"):
        load_fsdd(sampling_rate=-8000)


def test_fsdd_unreadable_and_misnamed_files(fsdd_copy):
    (fsdd_copy / "3_theo_5.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEnot audio")
    with pytest.raises(ValueError, match=r"unreadable audio file .*3_theo_5\.wav"):
        load_fsdd(fsdd_copy)
    shutil.copy(fsdd_copy / "4_theo_5.wav", fsdd_copy / "four_theo_5.wav")
    with pytest.raises(ValueError, match=r"four_theo_5\.wav is not named"):
        load_fsdd(fsdd_copy)
    with pytest.warns(UserWarning, match=r"(?s)skipped 2 .*four_theo_5.*3_theo_5") as rec:
        b = load_fsdd(fsdd_copy, on_error="warn")
    assert len(rec) == 1 and len(b.data) == 99 and len(b.skipped) == 2


def test_fsdd_missing_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="not found"):
        load_fsdd(tmp_path / "nope")
    with pytest.raises(FileNotFoundError, match="no FSDD wav"):
        load_fsdd(tmp_path)
    with pytest.raises(ValueError, match="split"):
        load_fsdd(split="valid")


@pytest.fixture
def class_folder(tmp_path):
    rng = np.random.default_rng(0)
    root = tmp_path / "commands"
    for k, word in enumerate(["no", "yes"]):
        (root / word).mkdir(parents=True)
        for j, speaker in enumerate(["aa11", "bb22", "cc33"]):
            n = 1000 + 137 * j + 50 * k
            sf.write(root / word / f"{speaker}_nohash_{j}.wav",
                     0.1 * rng.standard_normal(n), 16000, subtype="PCM_16")
    (root / "yes" / "notes.txt").write_text("not audio")
    (root / "testing_list.txt").write_text("no/aa11_nohash_0.wav\n")
    return root


def test_audio_folder_reads_classes_lengths_groups(class_folder):
    b = load_audio_folder(class_folder)
    assert list(b.target_names) == ["no", "yes"] and np.array_equal(b.target, [0] * 3 + [1] * 3)
    assert [len(x) for x in b.data] == [1000, 1137, 1274, 1050, 1187, 1324]
    assert list(b.groups) == ["aa11", "bb22", "cc33"] * 2
    assert b.sampling_rate == 16000.0 and b.ignored[0].endswith("notes.txt")
    p = load_audio_folder(class_folder, pad=True, sampling_rate=8000)
    assert p.data.shape == (6, 662) and np.array_equal(p.lengths, [500, 569, 637, 525, 594, 662])


def test_audio_folder_bad_file_raise_vs_warn(class_folder):
    (class_folder / "no" / "dd44_nohash_0.wav").write_bytes(b"\x00" * 64)
    with pytest.raises(ValueError, match="dd44_nohash_0"):
        load_audio_folder(class_folder)
    with pytest.warns(UserWarning, match=r"(?s)skipped 1 .*dd44_nohash_0"):
        b = load_audio_folder(class_folder, on_error="warn")
    assert len(b.data) == 6 and b.skipped[0].endswith("dd44_nohash_0.wav")


def test_audio_folder_mixed_rates_need_a_target_rate(class_folder):
    sf.write(class_folder / "no" / "ee55_nohash_0.wav", np.zeros(800), 8000)
    with pytest.raises(ValueError, match="different sampling rates"):
        load_audio_folder(class_folder)
    b = load_audio_folder(class_folder, sampling_rate=16000)
    assert len(b.data) == 7 and len(b.data[3]) == 1600
    with pytest.raises(ValueError, match="sampling_rate"):
        load_audio_folder(class_folder, sampling_rate=-1)


def test_audio_folder_missing_or_empty(tmp_path):
    with pytest.raises(FileNotFoundError, match="not found"):
        load_audio_folder(tmp_path / "nope")
    with pytest.raises(FileNotFoundError, match="no class sub-folders"):
        load_audio_folder(tmp_path)
    with pytest.raises(TypeError, match="root"):
        load_audio_folder(None)


def test_fsdd_full_copy(shared_data):
    b = load_fsdd(shared_data("fsdd"), split="test")
    assert len(b.data) == 300 and len(set(b.groups)) == 6
    assert np.all(np.bincount(b.target) == 30)
