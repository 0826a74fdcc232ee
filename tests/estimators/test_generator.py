"""AudioGenerator: fit/score/sample on tiny models (CPU), persistence, CLI, bad input."""
import argparse
import pickle

import numpy as np
import pytest
import soundfile
import torch
from sklearn.base import clone
from sklearn.exceptions import NotFittedError

from ssmsignal import AudioGenerator
from ssmsignal.estimators._audio_data import (eval_batches, recording_codes,
                                              train_batches)
from ssmsignal.estimators._generator import generate_cli


TINY = dict(d_model=8, n_layers=1, pool=(2, 2), layer="s4d", d_state=4, segment_length=96,
            batch_size=4, device="cpu", random_state=0, verbose=0)


def _waves(n=10, seed=0):
    """Decaying tones of unequal lengths (two pitches: the 'labels')."""
    rng = np.random.default_rng(seed)
    waves, labels = [], []
    for i in range(n):
        length = int(rng.integers(60, 250))
        freq = 0.15 if i % 2 else 0.45
        t = np.arange(length)
        waves.append((0.6 * np.sin(freq * t) * np.exp(-t / 200)
                      + 0.01 * rng.standard_normal(length)).astype(np.float32))
        labels.append("low" if i % 2 else "high")
    return waves, np.array(labels)


@pytest.fixture(scope="module")
def fitted():
    waves, _ = _waves()
    return AudioGenerator(**TINY, max_epochs=3, validation_fraction=0.2, lr=1e-2).fit(waves)


@pytest.fixture(scope="module")
def fitted_conditional():
    waves, labels = _waves()
    return AudioGenerator(**TINY, max_epochs=1, validation_fraction=0.0,
                          conditional=True).fit(waves, labels)


def test_batches_pad_and_mask_unequal_lengths():
    waves, _ = _waves(5)
    codes = recording_codes(waves)
    for inputs, targets, mask, _ in train_batches(codes, None, 96, 2, torch.Generator()):
        assert inputs.shape == targets.shape == mask.shape and inputs.shape[1] == 96
        # inputs are the targets delayed by one step wherever both are real samples
        both = mask[:, 1:]
        assert torch.equal(inputs[:, 1:][both], targets[:, :-1][both])
    n_targets = sum(int(b[2].sum()) for b in eval_batches(codes, None, 2))
    assert n_targets == sum(len(w) for w in waves)  # every real sample scored exactly once


def test_fit_history_score_and_sample(fitted):
    assert len(fitted.history_) == 3
    assert {"train_loss", "val_loss", "val_score"} <= set(fitted.history_[0])
    assert fitted.history_[-1]["train_loss"] < fitted.history_[0]["train_loss"]
    waves, _ = _waves(4, seed=1)
    score = fitted.score(waves)
    assert np.isfinite(score) and -8.5 < score < 0  # bits per sample: uniform is -8
    assert np.isfinite(fitted.score(waves, sampling_rate=16000))
    audio = fitted.sample(n_samples=3, n_seconds=0.01, random_state=0)
    assert audio.shape == (3, 80) and audio.dtype == np.float32
    assert np.isfinite(audio).all() and np.abs(audio).max() <= 1.0
    again = fitted.sample(n_samples=3, n_seconds=0.01, random_state=0)
    other = fitted.sample(n_samples=3, n_seconds=0.01, random_state=1)
    np.testing.assert_array_equal(audio, again)
    assert not np.array_equal(audio, other)
    fast = fitted.sample(n_samples=1, n_seconds=0.01, random_state=0, sampling_rate=16000)
    assert fast.shape == (1, 160)
    cont = fitted.sample(2, 0.005, random_state=0, prompt=waves[0][:30], temperature=0.5,
                         top_p=0.9)
    assert cont.shape == (2, 40)


def test_training_is_reproducible_on_cpu(fitted):
    waves, _ = _waves()
    again = AudioGenerator(**TINY, max_epochs=3, validation_fraction=0.2, lr=1e-2).fit(waves)
    assert [h["train_loss"] for h in again.history_] == [h["train_loss"] for h in fitted.history_]


def test_unseeded_fits_start_from_different_weights():
    waves, _ = _waves()
    params = dict(TINY, random_state=None)
    first, second = (AudioGenerator(**params, max_epochs=1, validation_fraction=0.0)
                     .fit(waves[:4]) for _ in range(2))
    a, b = (next(m.module_.parameters()).detach() for m in (first, second))
    assert not torch.equal(a, b)


def test_save_load_and_pickle_give_identical_samples(fitted, tmp_path):
    fitted.save(tmp_path / "gen")
    loaded = AudioGenerator.load(tmp_path / "gen")
    assert loaded.sampling_rate_ == fitted.sampling_rate_
    assert [h["train_loss"] for h in loaded.history_] == [h["train_loss"]
                                                          for h in fitted.history_]
    a = fitted.sample(2, 0.01, random_state=5)
    np.testing.assert_array_equal(loaded.sample(2, 0.01, random_state=5), a)
    unpickled = pickle.loads(pickle.dumps(fitted))
    np.testing.assert_array_equal(unpickled.sample(2, 0.01, random_state=5), a)
    with pytest.raises(FileNotFoundError, match="not a saved"):
        AudioGenerator.load(tmp_path / "missing")


def test_generators_saved_before_the_unet_parameter_load_as_unets(tmp_path):
    import json

    gen = AudioGenerator(**TINY, max_epochs=1, validation_fraction=0.0, unet=True)
    gen.fit(_waves(4)[0])
    assert len(gen.module_.tiers.down_blocks) == 2  # (SSM, FF) before the down-pool
    gen.save(tmp_path / "old")
    path = tmp_path / "old" / "config.json"
    config = json.loads(path.read_text())
    assert config["backbone"].pop("unet") is True and config["params"].pop("unet") is True
    path.write_text(json.dumps(config))  # as written before the parameter existed
    loaded = AudioGenerator.load(tmp_path / "old")
    assert loaded.unet is True and loaded.module_.config.unet is True
    np.testing.assert_array_equal(loaded.sample(2, 0.01, random_state=1),
                                  gen.sample(2, 0.01, random_state=1))
    assert len(AudioGenerator(**TINY)._build_module(None).tiers.down_blocks) == 0  # default


def test_generators_pickled_before_the_unet_parameter_are_unets():
    state = AudioGenerator(**TINY).__getstate__()
    state.pop("unet")  # as pickled before the parameter existed
    old = AudioGenerator.__new__(AudioGenerator)
    old.__setstate__(state)
    assert old.get_params()["unet"] is True and clone(old).unet is True
    assert AudioGenerator(**TINY).unet is False


def test_max_time_budgets_the_training(tmp_path):
    waves, _ = _waves()
    gen = AudioGenerator(**TINY, max_epochs=50, max_time=1e-6).fit(waves)
    # the budget was spent by the first epoch, whose time may hold one-time costs: one more
    assert len(gen.history_) == 2
    assert len(AudioGenerator(**TINY, max_epochs=50).fit(waves).history_) == 50
    gen.save(tmp_path / "g")
    assert AudioGenerator.load(tmp_path / "g").max_time == 1e-6
    with pytest.raises(ValueError, match="max_time"):
        AudioGenerator(**TINY, max_time=0).fit(waves)
    state = AudioGenerator(**TINY).__getstate__()
    state.pop("max_time")  # as pickled before the parameter existed
    old = AudioGenerator.__new__(AudioGenerator)
    old.__setstate__(state)
    assert old.get_params()["max_time"] is None


@pytest.mark.parametrize("bad", [-1.0, float("nan"), float("inf"), "60", [60.0]])
def test_max_time_refuses_bad_values(bad):
    """A clear error naming the parameter, before any training (NaN/inf would break the
    epoch plan; a string is not a number of seconds)."""
    waves, _ = _waves()
    with pytest.raises(ValueError, match="max_time"):
        AudioGenerator(**TINY, max_time=bad).fit(waves)


def test_sample_refuses_a_non_boolean_bf16_weights(fitted):
    for bad in ("no", 0, None):  # "no" would be truthy, and turn the lossy opt-in on
        with pytest.raises(ValueError, match="bf16_weights must be a bool"):
            fitted.sample(1, 0.01, bf16_weights=bad)


def test_conditional_labels(fitted_conditional, tmp_path):
    gen = fitted_conditional
    assert list(gen.classes_) == ["high", "low"]
    waves, labels = _waves(4, seed=2)
    assert np.isfinite(gen.score(waves, labels))
    a = gen.sample(2, 0.01, random_state=0, labels=["low", "low"])
    b = gen.sample(2, 0.01, random_state=0, labels=["high", "high"])
    assert a.shape == b.shape == (2, 80) and not np.array_equal(a, b)
    assert gen.sample(3, 0.01, random_state=0).shape == (3, 80)  # default: cycle the classes
    with pytest.raises(ValueError, match="unknown labels"):
        gen.sample(1, 0.01, labels=["middle"])
    with pytest.raises(ValueError, match="one label per waveform"):
        gen.score(waves, labels[:2])
    gen.save(tmp_path / "cond")
    loaded = AudioGenerator.load(tmp_path / "cond")
    np.testing.assert_array_equal(loaded.sample(2, 0.01, random_state=0, labels=["low", "low"]), a)


def test_generate_cli_writes_wav_files(fitted, tmp_path, capsys):
    from ssmsignal.cli import main

    fitted.save(tmp_path / "model")
    out = tmp_path / "wavs"
    status = main(["generate", "--model", str(tmp_path / "model"), "--seconds", "0.01",
                   "--n", "2", "--out", str(out)])
    assert status == 0
    assert sorted(p.name for p in out.iterdir()) == ["sample_00.wav", "sample_01.wav"]
    audio, rate = soundfile.read(out / "sample_01.wav")
    assert rate == 8000 and audio.shape == (80,) and np.abs(audio).max() <= 1.0
    args = argparse.Namespace(model=str(tmp_path / "model"), out=str(tmp_path / "fast"),
                              seconds=0.01, n=1, random_state=0, sampling_rate=16000.0)
    assert generate_cli(args) == 0
    audio, rate = soundfile.read(tmp_path / "fast" / "sample_00.wav")
    assert rate == 16000 and audio.shape == (160,)
    with pytest.raises(ValueError, match="unconditional"):
        generate_cli(argparse.Namespace(**dict(vars(args), label="low")))
    with pytest.raises(ValueError, match="sampling_rate"):  # 0 is refused, not replaced
        generate_cli(argparse.Namespace(**dict(vars(args), sampling_rate=0.0)))
    assert main(["generate", "--model", str(tmp_path / "nope"), "--out", str(out)]) == 2
    assert "no saved model" in capsys.readouterr().err


def test_sklearn_conventions():
    gen = AudioGenerator(**TINY, max_epochs=1)
    copy = clone(gen)
    assert copy.get_params() == gen.get_params() and not hasattr(copy, "module_")
    assert gen.set_params(lr=0.5).lr == 0.5
    equal = np.stack([0.1 * np.sin(np.arange(100) * 0.3)] * 4)  # (n_recordings, n_samples)
    assert gen.fit(equal) is gen and hasattr(gen, "module_")


def test_bad_input_raises_clear_errors(fitted):
    waves, labels = _waves(3)
    with pytest.raises(NotFittedError):
        AudioGenerator(**TINY).sample(1, 0.1)
    bad = [w.copy() for w in waves]
    bad[1][5] = np.nan
    with pytest.raises(ValueError, match=r"waveforms\[1\] contains NaN"):
        AudioGenerator(**TINY).fit(bad)
    with pytest.raises(ValueError, match="exceeds"):
        AudioGenerator(**TINY).fit([w * 5 for w in waves])
    with pytest.raises(ValueError, match="wrap it in a list"):
        AudioGenerator(**TINY).fit(waves[0])
    with pytest.raises(ValueError, match="must be 1-D"):
        AudioGenerator(**TINY).fit([np.zeros((2, 50))])
    with pytest.raises(ValueError, match="conditional=False"):
        AudioGenerator(**TINY).fit(waves, labels)
    with pytest.raises(ValueError, match="needs labels"):
        AudioGenerator(**TINY, conditional=True).fit(waves)
    with pytest.raises(ValueError, match="sampling_rate"):
        AudioGenerator(**dict(TINY, sampling_rate=-1)).fit(waves)
    with pytest.raises(ValueError, match="sampling_rate"):
        fitted.sample(1, 0.01, sampling_rate=0)
    with pytest.raises(ValueError, match="temperature"):
        fitted.sample(1, 0.01, temperature=0)
    with pytest.raises(ValueError, match="top_p"):
        fitted.sample(1, 0.01, top_p=1.5)
    with pytest.raises(ValueError, match="n_samples"):
        fitted.sample(0, 0.01)
    with pytest.raises(ValueError, match="unconditional"):
        fitted.sample(1, 0.01, labels=[0])
