"""Training-time augmentation (``augment``) and label smoothing of the estimators."""
import math

import numpy as np
import pytest
import torch

from ssmsignal import MambaClassifier, S4Classifier, S4Regressor
from ssmsignal.estimators import _base
from ssmsignal.estimators._augment import (DEFAULT_AUGMENT, augment_batch, check_augment,
                                           sinc_resample)

ALL_ON = {"crop": 0.2, "speed": 0.2, "rate": 0.5, "gain_db": 6.0, "snr_db": [10, 30]}


def _ragged_batch(seed=0):
    """Rows of different lengths, each a constant level (its 'identity'), zero-padded."""
    gen = torch.Generator().manual_seed(seed)
    lengths = torch.tensor([97, 60, 33, 81])
    levels = torch.rand(4, 2, generator=gen) * 4 + 1  # (b, C): distinct per row and channel
    steps = torch.arange(97)
    x = levels[:, :, None] * (steps[None, None, :] < lengths[:, None, None])  # (b, C, 97)
    return x.float(), lengths, levels


@pytest.fixture
def count_augment(monkeypatch):
    """Wrap the estimators' augment_batch; the list receives one entry per call."""
    calls = []

    def counting(x, lengths, cfg):
        calls.append(x.shape[0])
        return augment_batch(x, lengths, cfg)
    monkeypatch.setattr(_base, "augment_batch", counting)
    return calls


def test_sinc_resample_is_exact_at_step_one_and_matches_a_sine():
    torch.manual_seed(0)
    x = torch.randn(3, 2, 50, dtype=torch.float64)
    lengths = torch.tensor([50, 41, 7])
    x[1, :, 41:] = 0
    x[2, :, 7:] = 0
    out, new = sinc_resample(x, lengths, torch.ones(3, dtype=torch.float64))
    assert torch.equal(new, lengths)
    torch.testing.assert_close(out, x, rtol=0, atol=1e-12)
    # a slow sine read every 1.37 samples is the same sine at the new positions
    f, n = 0.021, 331
    s = torch.sin(2 * math.pi * f * torch.arange(n, dtype=torch.float64))[None, None]
    out, new = sinc_resample(s, torch.tensor([n]), torch.tensor([1.37], dtype=torch.float64))
    assert int(new) == (n - 1) // 1.37 + 1
    ref = torch.sin(2 * math.pi * f * 1.37 * torch.arange(int(new), dtype=torch.float64))
    assert (out[0, 0, 8:-8] - ref[8:-8]).abs().max() < 2e-3  # edges lack half their taps


def test_sinc_resample_low_passes_when_shortening():
    # 0.45 cycles/sample aliases to 0.1 when read every 2 samples; the anti-alias filter
    # must remove it, while a 0.1 cycles/sample tone passes
    t = torch.arange(400, dtype=torch.float64)
    high = torch.sin(2 * math.pi * 0.45 * t)[None, None]
    low = torch.sin(2 * math.pi * 0.1 * t)[None, None]
    step = torch.tensor([2.0], dtype=torch.float64)
    out_high, _ = sinc_resample(high, torch.tensor([400]), step)
    out_low, _ = sinc_resample(low, torch.tensor([400]), step)
    assert out_high[0, 0, 10:-10].abs().max() < 0.02
    assert out_low[0, 0, 10:-10].abs().max() > 0.9


def test_sinc_resample_cutoff_low_passes_at_step_one():
    # cutoff 0.5 of the Nyquist frequency (0.25 cycles/sample): 0.4 cycles/sample is removed,
    # 0.05 passes, the length is kept; cutoff 1 still reproduces the input
    t = torch.arange(300, dtype=torch.float64)
    x = torch.stack([torch.sin(2 * math.pi * 0.4 * t), torch.sin(2 * math.pi * 0.05 * t)])
    x = x[:, None]  # (2, 1, 300)
    one = torch.ones(2, dtype=torch.float64)
    out, new = sinc_resample(x, torch.tensor([300, 300]), one, cutoff=one * 0.5)
    assert torch.equal(new, torch.tensor([300, 300]))
    assert out[0, 0, 10:-10].abs().max() < 0.03
    assert (out[1, 0, 10:-10] - x[1, 0, 10:-10]).abs().max() < 0.03
    same, _ = sinc_resample(x, torch.tensor([300, 300]), one, cutoff=one)
    torch.testing.assert_close(same, x, rtol=0, atol=1e-12)


def test_lowpass_augmentation_keeps_lengths_and_removes_only_high_tones():
    t = torch.arange(400)
    low = torch.sin(2 * math.pi * 0.05 * t)  # far below every cutoff in [0.5, 1] x Nyquist
    high = torch.sin(2 * math.pi * 0.45 * t)  # above the cutoff for most draws
    x = torch.stack([low, high, low + high])[:, None].float()  # (3, 1, 400)
    lengths = torch.tensor([400, 400, 250])
    x[2, :, 250:] = 0
    torch.manual_seed(0)
    outs = [augment_batch(x, lengths, check_augment({"lowpass": 0.5})) for _ in range(20)]
    for out, new, dt_scale in outs:
        assert torch.equal(new, lengths) and dt_scale == 1.0 and out.shape == x.shape
        assert torch.all(out[2, :, 250:] == 0)
        assert (out[0, 0, 10:-10] - low[10:-10]).abs().max() < 0.03
    kept = torch.stack([o[1, 0, 10:-10].abs().max() for o, _, _ in outs])  # (20,)
    assert kept.min() < 0.05 and kept.max() < 1.05  # attenuated by most draws, never amplified
    assert kept.median() < 0.5


def test_augment_batch_keeps_rows_lengths_and_padding():
    x, lengths, levels = _ragged_batch()
    torch.manual_seed(1)
    cfg = check_augment({"crop": 0.2, "speed": 0.2, "rate": 0.5})
    out, new, dt_scale = augment_batch(x, lengths, cfg)
    assert out.shape[:2] == x.shape[:2] and out.shape[2] == int(new.max())
    assert 1 / 1.5 - 0.01 <= dt_scale <= 1.5 + 0.01
    q = 1.0 / dt_scale
    # crop keeps >= 80 %, speed in [0.8, 1.2], rate q: new length within the implied bounds
    assert torch.all(new >= torch.floor(0.8 * lengths * q / 1.2) - 1)
    assert torch.all(new <= torch.ceil(lengths * q / 0.8) + 1)
    for i in range(4):  # each row stays itself (labels stay aligned) and padding stays zero
        valid = out[i, :, : int(new[i])]
        torch.testing.assert_close(valid.mean(dim=1), levels[i], rtol=0.05, atol=0)
        assert torch.all(out[i, :, int(new[i]):] == 0)


def test_gain_and_noise_keep_the_shape_and_the_padding():
    x, lengths, _ = _ragged_batch()
    torch.manual_seed(2)
    out, new, dt_scale = augment_batch(x, lengths, check_augment({"gain_db": 6.0,
                                                                  "snr_db": 20.0}))
    assert out.shape == x.shape and torch.equal(new, lengths) and dt_scale == 1.0
    for i in range(4):
        n = int(lengths[i])
        assert torch.all(out[i, :, n:] == 0)
        ratio = out[i, :, :n].mean(dim=1) / x[i, :, :n].mean(dim=1)  # the same gain ...
        assert 10 ** (-6.2 / 20) < float(ratio[0]) < 10 ** (6.2 / 20)
        assert abs(float(ratio[0] - ratio[1])) < 0.15  # ... on every channel
        assert float(out[i, :, :n].std()) > 0  # ... and noise on a constant row


def test_augment_is_reproducible_under_the_seed():
    x, lengths, _ = _ragged_batch()
    outs = []
    for cfg, seed in [(ALL_ON, 5), (ALL_ON, 5), ({"gain_db": 6, "snr_db": 20}, 5),
                      ({"gain_db": 6, "snr_db": 20}, 6)]:
        torch.manual_seed(seed)
        outs.append(augment_batch(x, lengths, check_augment(cfg)))
    assert torch.equal(outs[0][0], outs[1][0]) and torch.equal(outs[0][1], outs[1][1])
    assert outs[0][2] == outs[1][2]
    assert not torch.equal(outs[2][0], outs[3][0])  # another seed, other draws


def test_off_by_default_and_never_at_predict(count_augment, tones, tiny):
    X, y = tones
    assert S4Classifier().augment is None and MambaClassifier().augment is None
    S4Classifier(**tiny).fit(X, y)
    assert count_augment == []
    clf = S4Classifier(augment=True, **tiny).fit(X, y)
    assert len(count_augment) == tiny["max_epochs"] * math.ceil(len(X) / tiny["batch_size"])
    count_augment.clear()
    clf.predict(X), clf.predict_proba(X, sampling_rate=None), clf.score(X, y)
    assert count_augment == []


def test_validation_batches_are_not_augmented(count_augment, make_tones, tiny):
    X, y = make_tones(n=120)  # >= 100 series: early stopping holds out 12 for validation
    clf = S4Classifier(augment={"snr_db": 10}, **tiny).fit(X, y)
    assert "val_score" in clf.history_[0]
    assert sum(count_augment) == tiny["max_epochs"] * 108  # training rows only


def test_fit_with_augment_is_reproducible_and_changes_the_model(make_tones, tiny):
    X, y = make_tones(n=64)
    fits = [S4Classifier(augment=ALL_ON, **{**tiny, "random_state": s}).fit(X, y)
            for s in (0, 0, 1)]
    plain = S4Classifier(**tiny).fit(X, y)
    p = [f.predict_proba(X) for f in fits]
    np.testing.assert_array_equal(p[0], p[1])
    assert not np.array_equal(p[0], p[2])
    assert not np.array_equal(p[0], plain.predict_proba(X))


@pytest.mark.parametrize("augment, message", [
    ({"speeed": 0.1}, "unknown key"),
    ({"speed": 0.5}, r"speed.*\[0, 0.5\)"),
    ({"crop": -0.1}, "crop"),
    ({"rate": float("nan")}, "finite"),
    ({"gain_db": "6"}, "gain_db"),
    ({"snr_db": (30, 10)}, "low <= high"),
    ({"snr_db": (1, 2, 3)}, "pair"),
    ({"lowpass": 1.0}, r"lowpass.*\[0, 1.0\)"),
])
def test_bad_augment_values_are_refused(augment, message, tones, tiny):
    X, y = tones
    with pytest.raises(ValueError, match=message):
        S4Classifier(augment=augment, **tiny).fit(X, y)


def test_bad_augment_leaves_a_fitted_model_intact(tones, tiny):
    X, y = tones
    clf = S4Classifier(**tiny).fit(X, y)
    before = clf.predict(X)
    clf.set_params(augment={"speeed": 0.1})
    with pytest.raises(ValueError, match="unknown key"):
        clf.fit(X, np.where(y == y[0], "a", "b"))  # a refit on other labels
    np.testing.assert_array_equal(clf.classes_, np.unique(y))
    np.testing.assert_array_equal(clf.predict(X), before)


def test_bad_augment_type_is_refused(tones, tiny):
    X, y = tones
    with pytest.raises(ValueError, match="augment"):
        S4Classifier(augment="yes", **tiny).fit(X, y)


def test_per_step_targets_refuse_time_warps_but_take_gain_and_noise(tones, tiny):
    X, _ = tones
    Y = np.cumsum(X, axis=1)  # (n, L): one target per step
    with pytest.raises(ValueError, match="per-step"):
        S4Regressor(augment={"speed": 0.1}, **tiny).fit(X, Y)
    with pytest.raises(ValueError, match="per-step"):
        S4Regressor(augment={"lowpass": 0.3}, **tiny).fit(X, Y)
    reg = S4Regressor(augment={"gain_db": 3.0, "snr_db": 30}, **tiny).fit(X, Y)
    assert reg.predict(X[:2]).shape == (2, X.shape[1])


def test_default_preset_and_end_to_end_learning(make_tones, tiny):
    assert check_augment(True) == check_augment(DEFAULT_AUGMENT)
    assert check_augment(False) is None and check_augment(None) is None
    X, y = make_tones(n=64, length=60)
    clf = MambaClassifier(augment=ALL_ON, lr=1e-2, **{**tiny, "max_epochs": 8})
    clf.fit(X, y, sampling_rate=60.0)
    assert clf.score(X, y) > 0.8  # chance is 0.5


def test_augment_survives_save_and_load(tmp_path, tones, tiny):
    X, y = tones
    clf = S4Classifier(augment=ALL_ON, label_smoothing=0.1, **tiny).fit(X, y)
    clf.save(tmp_path / "m")
    back = S4Classifier.load(tmp_path / "m")
    assert back.get_params()["augment"] == ALL_ON and back.label_smoothing == 0.1
    np.testing.assert_array_equal(back.predict(X), clf.predict(X))


def test_augment_with_numpy_values_saves(tmp_path, tones, tiny):
    X, y = tones  # numpy scalars and arrays pass check_augment, so save must take them too
    augment = {"crop": np.float32(0.1), "snr_db": np.array([20.0, 40.0])}
    clf = S4Classifier(augment=augment, **tiny).fit(X, y)
    clf.save(tmp_path / "m")
    back = S4Classifier.load(tmp_path / "m")
    assert back.augment == {"crop": pytest.approx(0.1), "snr_db": [20.0, 40.0]}
    assert check_augment(back.augment) == check_augment(augment)
    back.set_params(warm_start=True).fit(X, y)  # a loaded model trains on, augmented


def test_label_smoothing_changes_the_training_loss_only(tones, tiny):
    clf = S4Classifier(label_smoothing=0.2, **tiny)
    clf.classes_ = np.array([0, 1])
    out = torch.tensor([[5.0, -5.0], [-5.0, 5.0]])
    target = torch.tensor([0, 1])
    sharp = torch.nn.functional.cross_entropy(out, target)
    assert float(clf._loss(out, target)) > float(sharp) + 0.5
    with pytest.raises(ValueError, match="label_smoothing"):
        S4Classifier(label_smoothing=1.0, **tiny).fit(*tones)


def test_rate_augmentation_trains_with_the_matching_dt_scale(monkeypatch, make_tones, tiny):
    from ssmsignal.models import SequenceModel

    seen = []
    forward = SequenceModel.forward

    def spy(self, x, lengths=None, dt_scale=1.0, normalised=False):
        seen.append((self.training, float(dt_scale), x.shape[2]))
        return forward(self, x, lengths, dt_scale, normalised)
    monkeypatch.setattr(SequenceModel, "forward", spy)
    X, y = make_tones(n=120, length=50)
    clf = S4Classifier(augment={"rate": 0.5}, **tiny).fit(X, y)
    train = [(s, n) for training, s, n in seen if training]
    assert any(s != 1.0 for s, _ in train)
    for s, n in train:  # the batch was resampled to 1 / s of the rate: ~50 / s steps
        assert abs(n - 50 / s) <= 1.5
    assert {s for training, s, _ in seen if not training} == {1.0}  # validation: as given
    seen.clear()
    clf.predict(X)
    assert {s for _, s, _ in seen} == {1.0}
