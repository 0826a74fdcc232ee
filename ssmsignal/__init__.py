"""ssmsignal: continuous-time state-space models (S4, S4D, Mamba) for signals.

Estimators follow scikit-learn (``fit`` / ``predict`` / ``score``) and take a
``sampling_rate`` so that a model trained at one rate predicts at another.
Public names are imported lazily so that ``import ssmsignal`` stays cheap.
"""
from importlib import import_module

__version__ = "0.1.0"

_LAZY = {
    "AudioGenerator": "ssmsignal.estimators",
    "MambaClassifier": "ssmsignal.estimators",
    "MambaRegressor": "ssmsignal.estimators",
    "S4Classifier": "ssmsignal.estimators",
    "S4Regressor": "ssmsignal.estimators",
}

__all__ = sorted(_LAZY)


def __getattr__(name):
    if name in _LAZY:
        value = getattr(import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'ssmsignal' has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + __all__)
