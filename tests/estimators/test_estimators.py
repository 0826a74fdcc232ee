"""Behaviour of the four estimators: inputs, rates, errors, training options."""
import numpy as np
import pytest
import torch
from sklearn.exceptions import NotFittedError

from ssmsignal import MambaClassifier, MambaRegressor, S4Classifier, S4Regressor



@pytest.mark.parametrize("cls", [S4Classifier, MambaClassifier])
def test_classifier_learns_string_labels_and_multichannel(cls, tiny, make_tones):
    X, y = make_tones(n=48, channels=2)
    labels = np.array(["slow", "fast"])[y]
    clf = cls(**{**tiny, "max_epochs": 15, "lr": 1e-2}).fit(X, labels, sampling_rate=40.0)
    assert clf.classes_.tolist() == ["fast", "slow"]
    assert clf.n_features_in_ == 2 and clf.sampling_rate_ == 40.0
    proba = clf.predict_proba(X)
    assert proba.shape == (48, 2) and np.allclose(proba.sum(axis=1), 1.0)
    assert clf.score(X, labels) >= 0.9
    assert len(clf.history_) == 15 and clf.history_[0]["epoch"] == 0


def test_unequal_lengths_match_one_by_one_predictions(tiny, make_tones):
    X, y = make_tones(n=24, length=40)
    clf = S4Classifier(**tiny).fit(X[:, 0], y)
    rng = np.random.default_rng(3)
    series = [rng.normal(size=n) for n in (7, 40, 23, 61)]
    together = clf.predict_proba(series)  # padded inside
    alone = np.concatenate([clf.predict_proba(s[None, :]) for s in series])
    np.testing.assert_allclose(together, alone, rtol=1e-4, atol=1e-6)


def test_sampling_rate_rescales_dt(tiny, make_tones):
    X, y = make_tones(n=24, length=40)
    clf = S4Classifier(**tiny).fit(X[:, 0], y, sampling_rate=100.0)
    np.testing.assert_array_equal(clf.predict_proba(X[:, 0]),
                                  clf.predict_proba(X[:, 0], sampling_rate=100.0))
    half = X[:, 0, ::2]
    with torch.no_grad():
        logits = clf.module_(torch.from_numpy(np.ascontiguousarray(half))[:, None],
                             dt_scale=2.0).numpy()
    expected = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    np.testing.assert_allclose(clf.predict_proba(half, sampling_rate=50.0), expected,
                               rtol=1e-5, atol=1e-6)
    assert not np.allclose(clf.predict_proba(half, sampling_rate=50.0), clf.predict_proba(half))


def test_timescales_set_the_dt_range(tiny, make_tones):
    X, y = make_tones(n=8, length=200)
    clf = S4Classifier(**{**tiny, "max_epochs": 1}).fit(X[:, 0], y, sampling_rate=100.0)
    cfg = clf.module_.config
    assert cfg.dt_min == pytest.approx(1 / 200) and cfg.dt_max == pytest.approx(0.1)
    clf = S4Classifier(**{**tiny, "max_epochs": 1}, timescale_min=0.05, timescale_max=1.0)
    clf.fit(X[:, 0], y, sampling_rate=100.0)
    cfg = clf.module_.config
    assert cfg.dt_min == pytest.approx(0.01) and cfg.dt_max == pytest.approx(0.2)
    with pytest.raises(ValueError, match="timescale_max"):
        S4Classifier(**tiny, timescale_min=1.0, timescale_max=0.5).fit(X[:, 0], y)


def test_per_step_regression_is_causal(tiny):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(32, 50)).astype(np.float32)
    y = np.cumsum(X, axis=1)
    reg = S4Regressor(**tiny).fit(X, y)
    assert reg.per_step_
    pred = reg.predict(X[:3])
    assert pred.shape == (3, 50)
    changed = X[:3].copy()
    changed[:, 30:] += 5.0
    np.testing.assert_allclose(reg.predict(changed)[:, :30], pred[:, :30], rtol=1e-5, atol=1e-5)
    assert reg.predict(X[:2, :17]).shape == (2, 17)  # another length
    ragged = reg.predict([X[0, :10], X[1]])
    assert [p.shape for p in ragged] == [(10,), (50,)]
    # score pools the valid steps; a series' weight applies to each of its steps
    from sklearn.metrics import r2_score

    ys = [y[0, :10], y[1]]
    assert reg.score([X[0, :10], X[1]], ys) == pytest.approx(
        r2_score(np.concatenate(ys), np.concatenate(ragged)))
    weighted = reg.score(X[:2], y[:2], sample_weight=[3.0, 1.0])
    assert weighted == pytest.approx(r2_score(
        y[:2].ravel(), reg.predict(X[:2]).ravel(), sample_weight=np.repeat([3.0, 1.0], 50)))
    assert weighted != pytest.approx(reg.score(X[:2], y[:2]))
    with pytest.raises(ValueError, match="one target per time step"):
        reg.score([X[0, :10], X[1]], [y[0, :9], y[1]])
    with pytest.raises(ValueError, match="switched"):
        reg.set_params(warm_start=True).fit(X, y[:, -1])


@pytest.mark.parametrize("cls", [S4Regressor, MambaRegressor])
def test_regressor_targets_shapes(cls, tiny):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(24, 3, 20))
    reg = cls(**tiny).fit(X, X.mean(axis=(1, 2)))
    assert reg.predict(X).shape == (24,)
    reg = cls(**tiny).fit(X, X.mean(axis=2))  # (n, 3) multi-output
    assert reg.predict(X).shape == (24, 3) and not reg.per_step_


def test_errors_are_clear(tones, tiny):
    X, y = tones
    with pytest.raises(NotFittedError):
        S4Classifier().predict(X)
    with pytest.raises(ValueError, match="at least 2 classes"):
        S4Classifier(**tiny).fit(X, np.zeros(len(X)))
    with pytest.raises(ValueError, match="48 samples but y has 47"):
        S4Classifier(**tiny).fit(X, y[:-1])
    with pytest.raises(ValueError, match="NaN"):
        S4Regressor(**tiny).fit(X, np.where(y == 0, np.nan, 1.0))
    with pytest.raises(ValueError, match="sampling_rate"):
        S4Classifier(**tiny).fit(X, y, sampling_rate=0)
    clf = S4Classifier(**{**tiny, "max_epochs": 1}).fit(X, y)
    with pytest.raises(ValueError, match="fitted with 1 channel"):
        clf.predict(np.zeros((2, 3, 40)))
    with pytest.raises(ValueError, match="fitted without a sampling_rate"):
        clf.predict(X, sampling_rate=100.0)
    with pytest.raises(ValueError, match="d_model"):
        S4Classifier(d_model=0).fit(X, y)


def test_same_random_state_same_model(tones, tiny):
    X, y = tones
    a = S4Classifier(**tiny, dropout=0.1).fit(X, y).predict_proba(X)
    b = S4Classifier(**tiny, dropout=0.1).fit(X, y).predict_proba(X)
    np.testing.assert_array_equal(a, b)
    c = S4Classifier(**{**tiny, "random_state": 1}, dropout=0.1).fit(X, y).predict_proba(X)
    assert not np.array_equal(a, c)


def test_random_state_none_follows_numpy_global_rng(tones, tiny):
    X, y = tones
    settings = {**tiny, "random_state": None, "max_epochs": 1}
    a = S4Classifier(**settings).fit(X, y).predict_proba(X)
    b = S4Classifier(**settings).fit(X, y).predict_proba(X)
    assert not np.array_equal(a, b)  # two unseeded fits are two different models
    np.random.seed(0)
    c = S4Classifier(**settings).fit(X, y).predict_proba(X)
    np.random.seed(0)
    np.testing.assert_array_equal(S4Classifier(**settings).fit(X, y).predict_proba(X), c)


def test_class_weight(tiny, make_tones):
    X, y = make_tones(n=60)
    y = np.where(np.arange(60) < 45, 0, y)  # imbalanced: mostly class 0
    clf = S4Classifier(**tiny, class_weight="balanced").fit(X[:, 0], y)
    counts = np.bincount(y)
    np.testing.assert_allclose(clf._class_weights, 60 / (2 * counts), rtol=1e-6)
    heavy = S4Classifier(**{**tiny, "max_epochs": 10}, class_weight={1: 1000.0, 0: 1e-4})
    assert np.mean(heavy.fit(X[:, 0], y).predict(X[:, 0]) == 1) > 0.9
    with pytest.raises(ValueError, match="not in y"):
        S4Classifier(**tiny, class_weight={7: 2.0}).fit(X[:, 0], y)


def test_early_stopping_warm_start_and_partial_fit(tiny, make_tones):
    X, y = make_tones(n=120)
    clf = S4Classifier(**{**tiny, "max_epochs": 4}).fit(X, y)  # n >= 100: early stopping on
    assert "val_score" in clf.history_[0] and "val_loss" in clf.history_[0]
    clf.set_params(warm_start=True, max_epochs=2, early_stopping=False)
    weights = clf.module_.head.weight.detach().clone()
    clf.fit(X, y)
    assert len(clf.history_) == 6 and clf.history_[-1]["epoch"] == 5
    assert not torch.equal(weights, clf.module_.head.weight)
    part = S4Classifier(**tiny)
    part.partial_fit(X[:60], y[:60], classes=[0, 1, 2])
    part.partial_fit(X[60:], y[60:])
    assert len(part.history_) == 2 and part.classes_.tolist() == [0, 1, 2]
    part.partial_fit(X[:60], y[:60])  # the rate stays put: no decay within or across calls
    assert [row["lr"] for row in part.history_] == [part.lr] * 3
    assert {g["name"]: g["lr"] for g in part._optimizer.param_groups}["ssm"] == part.ssm_lr
    with pytest.raises(ValueError, match="not seen"):
        part.partial_fit(X[:4], np.array([0, 1, 5, 5]))


def test_continued_epochs_get_new_seeds(tiny, tones, monkeypatch):
    """Each partial_fit / warm-start call reshuffles (same random_state, different epochs)."""
    import ssmsignal.estimators._base as base

    seeds = []
    real = base.train_module

    def spy(module, loss_fn, make_batches, cfg, **kwargs):
        seeds.append(cfg.random_state)
        return real(module, loss_fn, make_batches, cfg, **kwargs)

    monkeypatch.setattr(base, "train_module", spy)
    X, y = tones
    clf = S4Classifier(**{**tiny, "max_epochs": 1})
    for _ in range(3):
        clf.partial_fit(X, y, classes=[0, 1])
    clf.set_params(warm_start=True).fit(X, y)
    assert seeds == [0, 1, 2, 3]


def test_progress_bar_only_when_verbose(tones, capsys, tiny):
    X, y = tones
    S4Classifier(**{**tiny, "max_epochs": 2}).fit(X, y)
    assert "S4Classifier" not in capsys.readouterr().err
    S4Classifier(**{**tiny, "max_epochs": 2, "verbose": 1}).fit(X, y)
    err = capsys.readouterr().err
    assert "S4Classifier" in err and "train_loss" in err


def test_dataframe_input_and_s4_layer(tones, tiny):
    pd = pytest.importorskip("pandas")
    X, y = tones
    clf = S4Classifier(**tiny, layer="s4", d_state=4).fit(pd.DataFrame(X), y)
    assert clf.module_.config.layer == "s4"
    np.testing.assert_array_equal(clf.predict(pd.DataFrame(X)), clf.predict(X))
