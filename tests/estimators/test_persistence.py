"""Pickle, save/load (safetensors + JSON) and scikit-learn composition."""
import json
import pickle

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.model_selection import GridSearchCV, cross_val_score
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer

from ssmsignal import MambaClassifier, MambaRegressor, S4Classifier, S4Regressor
from ssmsignal.io import decode_labels, encode_labels


@pytest.mark.parametrize("labels", [
    np.array(["N", "V"]),
    np.array([3, 7]),
    np.array([True, False]),
    np.array([1.0, 2.0]),
    np.array(["a", "b"], dtype=object),
])
def test_save_load_identical_predictions_and_classes(tmp_path, tones, tiny, labels):
    X, y = tones
    clf = S4Classifier(**tiny, sampling_rate=40.0).fit(X, labels[y])
    clf.save(tmp_path / "model")
    loaded = S4Classifier.load(tmp_path / "model")
    assert loaded.classes_.dtype == clf.classes_.dtype
    np.testing.assert_array_equal(loaded.classes_, clf.classes_)
    np.testing.assert_array_equal(loaded.predict_proba(X), clf.predict_proba(X))
    np.testing.assert_array_equal(loaded.predict(X, sampling_rate=20.0),
                                  clf.predict(X, sampling_rate=20.0))
    assert loaded.get_params() == clf.get_params()
    assert loaded.history_ == clf.history_


@pytest.mark.parametrize("cls", [S4Regressor, MambaRegressor, MambaClassifier])
def test_save_load_other_estimators(tmp_path, tiny, cls):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(20, 2, 30))
    y = X.mean(axis=2) if cls is not MambaClassifier else (X.mean(axis=(1, 2)) > 0)
    est = cls(**tiny).fit(X, y)
    est.save(tmp_path / "m")
    loaded = cls.load(tmp_path / "m")
    np.testing.assert_array_equal(loaded.predict(X), est.predict(X))


def test_save_is_a_directory_and_overwrites_only_models(tmp_path, tones, tiny):
    X, y = tones
    clf = S4Classifier(**tiny, class_weight={0: 2.0, 1: 1.0}).fit(X, y)
    target = tmp_path / "out"
    clf.save(target)
    assert sorted(p.name for p in target.iterdir()) == ["config.json", "model.safetensors"]
    config = json.loads((target / "config.json").read_text())
    assert config["estimator"] == "S4Classifier" and config["classes_"]["values"] == [0, 1]
    clf.save(target)  # overwriting a saved model is fine
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # no temporary left over
    assert S4Classifier.load(target).class_weight == {0: 2.0, 1: 1.0}
    (tmp_path / "file").write_text("x")
    with pytest.raises(FileExistsError, match="not a saved ssmsignal model"):
        clf.save(tmp_path / "file")
    with pytest.raises(FileNotFoundError, match="not a saved ssmsignal model"):
        S4Classifier.load(tmp_path / "missing")
    with pytest.raises(TypeError, match="holds a S4Classifier"):
        S4Regressor.load(target)


def test_unsavable_labels_are_refused():
    tuples = np.empty(2, dtype=object)
    tuples[:] = [(1, 2), (3, 4)]
    with pytest.raises(TypeError, match="cannot save class label"):
        encode_labels(tuples)
    record = encode_labels(np.array([np.int64(4), np.int64(9)]))
    assert json.loads(json.dumps(record)) == record
    assert decode_labels(record).dtype == np.int64


def test_pickle_round_trip(tones, tiny):
    X, y = tones
    clf = S4Classifier(**tiny).fit(X, y)
    again = pickle.loads(pickle.dumps(clf))
    np.testing.assert_array_equal(again.predict_proba(X), clf.predict_proba(X))
    again.partial_fit(X, y)  # the optimizer is rebuilt after unpickling


def test_clone_pipeline_gridsearch_cross_val(tones, tiny):
    X, y = tones
    clf = S4Classifier(**tiny)
    assert clone(clf).get_params() == clf.get_params()
    pipe = Pipeline([("scale", FunctionTransformer(lambda a: 2.0 * a)), ("clf", clf)])
    assert pipe.fit(X, y).predict(X).shape == (48,)
    search = GridSearchCV(clf, {"d_model": [4, 8]}, cv=2, n_jobs=1).fit(X, y)
    assert search.best_params_["d_model"] in (4, 8)
    scores = cross_val_score(S4Regressor(**tiny), X, X.mean(axis=1), cv=3)
    assert scores.shape == (3,) and np.all(np.isfinite(scores))


def test_saved_folder_mode_and_failed_overwrite_keeps_the_old_model(tmp_path, tones, tiny,
                                                                    monkeypatch):
    import os

    import ssmsignal.io as sio

    X, y = tones
    clf = S4Classifier(**tiny).fit(X, y)
    target = tmp_path / "m"
    clf.save(target)
    umask = os.umask(0)
    os.umask(umask)
    assert target.stat().st_mode & 0o777 == 0o777 & ~umask  # not mkdtemp's 0700
    for name in ("config.json", "model.safetensors"):  # not safetensors' 0600
        assert (target / name).stat().st_mode & 0o777 == 0o666 & ~umask
    before = (target / "model.safetensors").read_bytes()
    real_replace = os.replace

    def replace(src, dst):
        if str(src).startswith(str(tmp_path / ".m.tmp-")):
            raise OSError("disk full")
        return real_replace(src, dst)

    monkeypatch.setattr(sio.os, "replace", replace)
    with pytest.raises(OSError, match="disk full"):
        S4Classifier(**{**tiny, "random_state": 1}).fit(X, y).save(target)
    monkeypatch.undo()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]  # nothing left behind
    assert (target / "model.safetensors").read_bytes() == before


def test_read_saved_needs_both_files_and_valid_json(tmp_path, tones, tiny):
    from ssmsignal.io import load_estimator, read_saved

    X, y = tones
    S4Classifier(**tiny).fit(X, y).save(tmp_path / "m")
    config, state = read_saved(tmp_path / "m")
    assert config["estimator"] == "S4Classifier" and state
    for name in ("__all__", "BaseSSMEstimator", None):  # only the public estimator classes
        (tmp_path / "m" / "config.json").write_text(json.dumps({**config, "estimator": name}))
        with pytest.raises(ValueError, match="unknown estimator class"):
            load_estimator(tmp_path / "m")
    (tmp_path / "m" / "model.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match="model.safetensors"):
        load_estimator(tmp_path / "m")
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "config.json").write_text("{not json")
    (tmp_path / "bad" / "model.safetensors").write_bytes(b"")
    with pytest.raises(ValueError, match="not valid JSON"):
        read_saved(tmp_path / "bad")


def test_load_estimator_hands_a_generator_to_its_own_load(tmp_path):
    from ssmsignal import AudioGenerator
    from ssmsignal.io import load_estimator

    waves = np.random.default_rng(0).uniform(-0.5, 0.5, size=(4, 512))
    gen = AudioGenerator(sampling_rate=8000, d_model=8, n_layers=1, d_state=4,
                         segment_length=256, max_epochs=1, verbose=0, device="cpu",
                         random_state=0).fit(list(waves))
    gen.save(tmp_path / "g")
    loaded = load_estimator(tmp_path / "g")
    assert type(loaded) is AudioGenerator and loaded.pool == gen.pool
    with pytest.raises(TypeError, match="holds a AudioGenerator"):
        S4Classifier.load(tmp_path / "g")
