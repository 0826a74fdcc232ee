"""scikit-learn estimators built on continuous-time state-space models.

* :class:`S4Classifier`, :class:`S4Regressor` (S4D by default, ``layer="s4"`` for DPLR S4)
* :class:`MambaClassifier`, :class:`MambaRegressor`
* :class:`AudioGenerator` (SaShiMi; imported on first use)

All share one base (:mod:`._base`) and one training loop (:mod:`._training`).
"""
from importlib import import_module

from ._classifier import MambaClassifier, S4Classifier
from ._regressor import MambaRegressor, S4Regressor

__all__ = ["AudioGenerator", "MambaClassifier", "MambaRegressor", "S4Classifier", "S4Regressor"]


def __getattr__(name):
    if name == "AudioGenerator":
        return import_module("ssmsignal.estimators._generator").AudioGenerator
    raise AttributeError(f"module 'ssmsignal.estimators' has no attribute {name!r}")
