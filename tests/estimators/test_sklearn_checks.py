"""scikit-learn's estimator checks on all four estimators, with small settings.

Every check that is expected to fail is listed below with its reason. They all follow from one
design decision: the models are sequence models that accept series of ANY length (and at any
sampling rate). ``X`` of shape ``(n, L)`` is n univariate series of length L, so the number of
"features" (columns) is a time length, not a fixed input width:

* ``n_features_in_`` is the number of CHANNELS (features per time step), which is 1 for 2-D X,
  not ``X.shape[1]``;
* predicting on X with a different number of columns is not an error (it is a different length).
"""
from sklearn.utils.estimator_checks import parametrize_with_checks

from ssmsignal import MambaClassifier, MambaRegressor, S4Classifier, S4Regressor

SMALL = dict(d_model=4, n_layers=1, max_epochs=2, batch_size=64, verbose=0, random_state=0,
             device="cpu")

ESTIMATORS = [
    S4Classifier(d_state=4, **SMALL),
    S4Regressor(d_state=4, **SMALL),
    MambaClassifier(d_state=4, expand=1, **SMALL),
    MambaRegressor(d_state=4, expand=1, **SMALL),
]

_LENGTH_FREE = ("length-agnostic sequence model: X.shape[1] is the series length, which may "
                "differ between fit and predict; n_features_in_ counts channels")


_SHORT_TRAINING = ("the check needs a well-trained model (R^2 > 0.5, or > 87% of predictions in "
                   "the up-weighted class); the settings here (2 epochs, width 4) keep the "
                   "suite fast and do not get there")


def expected_failed_checks(estimator):
    failures = {
        "check_n_features_in_after_fitting": _LENGTH_FREE,
        "check_n_features_in": _LENGTH_FREE,
        "check_estimators_partial_fit_n_features": (
            _LENGTH_FREE + " (partial_fit on another length continues training)"),
        "check_dataframe_column_names_consistency": (
            "DataFrame columns are time steps, not named features, so feature_names_in_ is "
            "not set and other column names at predict are not an error"),
    }
    failures["check_methods_sample_order_invariance"] = (
        "float32 inference: a row's outputs may differ in the last bits with its position in "
        "the batch (batched FFT and matrix kernels vectorise across rows); seen 1.5e-7 "
        "relative, just over the check's rtol=1e-7, in some runs only")
    if hasattr(estimator, "predict_proba"):
        failures["check_classifiers_train"] = (
            _LENGTH_FREE + " (the check expects predict(X.T) to raise)")
    else:
        failures["check_regressors_train"] = _SHORT_TRAINING
    if type(estimator).__name__ == "MambaClassifier":
        failures["check_class_weight_classifiers"] = _SHORT_TRAINING
    return failures


@parametrize_with_checks(ESTIMATORS, expected_failed_checks=expected_failed_checks)
def test_sklearn_compatible(estimator, check):
    check(estimator)
