"""S4Classifier and MambaClassifier: time-series classification at any sampling rate."""
from __future__ import annotations

import numbers

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.base import ClassifierMixin
from sklearn.preprocessing import LabelEncoder
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.class_weight import compute_class_weight
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, column_or_1d


from ._base import BaseSSMEstimator, mamba_kwargs, s4_kwargs, store_init_params
from ._docs import MAMBA_DOC, S4_DOC

__all__ = ["S4Classifier", "MambaClassifier"]


class _SSMClassifierMixin(ClassifierMixin):
    """Label handling, cross-entropy loss, ``predict`` / ``predict_proba`` / ``partial_fit``."""

    bidirectional = False  # instances pickled before the parameter existed are unidirectional

    def fit(self, X, y, sampling_rate=None):
        """Fit on series ``X`` with labels ``y``; ``sampling_rate`` (Hz) is stored.

        Parameters
        ----------
        X : array-like of shape (n, L) or (n, C, L), DataFrame, or list of series
        y : array-like of shape (n,)
            Class labels of any hashable type.
        sampling_rate : float, optional
            Rate of ``X`` in Hz; default the ``sampling_rate`` parameter.

        Returns
        -------
        self
        """
        return self._fit(X, y, sampling_rate)

    def partial_fit(self, X, y, classes=None, sampling_rate=None):
        """One epoch over ``(X, y)`` at a constant learning rate, keeping the optimizer.

        ``classes`` (all labels that will ever appear) is required on the first call unless
        ``y`` already holds them all.
        """
        return self._fit(X, y, sampling_rate, partial=True, classes=classes)

    def _prepare_targets(self, y, batch, first_fit):
        if y is None:
            raise ValueError(f"{type(self).__name__} requires y to be passed, but the target y "
                             "is None")
        y = column_or_1d(y, warn=True)
        if y.shape[0] != batch.n_samples:
            raise ValueError(f"X has {batch.n_samples} samples but y has {y.shape[0]} labels")
        if y.dtype.kind in "fc" and not np.all(np.isfinite(y)):
            raise ValueError("y contains NaN or inf")
        check_classification_targets(y)
        if first_fit:
            classes = y if self._partial_classes is None else self._partial_classes
            encoder = LabelEncoder().fit(classes)
            if len(encoder.classes_) < 2:
                raise ValueError(f"{type(self).__name__} needs samples of at least 2 classes in "
                                 f"the data, but the data contain only one class: "
                                 f"{encoder.classes_[0]!r}")
            self.classes_ = encoder.classes_
        unknown = np.setdiff1d(np.unique(y), self.classes_)
        if unknown.size:
            raise ValueError(f"y contains labels not seen in the first fit: {unknown.tolist()}")
        codes = np.searchsorted(self.classes_, y).astype(np.int64)
        if first_fit:
            self._class_weights = self._weights(y)
        return codes, len(self.classes_), False

    def _weights(self, y):
        if self.class_weight is None:
            return None
        if self.class_weight == "balanced":
            present = np.unique(y)
            w = np.ones(len(self.classes_))
            w[np.searchsorted(self.classes_, present)] = compute_class_weight(
                "balanced", classes=present, y=y)
            return w.astype(np.float32)
        w = np.ones(len(self.classes_), dtype=np.float32)
        for label, weight in self.class_weight.items():
            matches = np.flatnonzero(self.classes_ == label)
            if matches.size == 0:
                raise ValueError(f"class_weight names label {label!r}, which is not in y")
            w[matches[0]] = weight
        return w

    def _loss(self, out, target):
        weight = getattr(self, "_class_weights", None)
        if weight is not None:
            weight = torch.as_tensor(weight, device=out.device)
        return F.cross_entropy(out, target, weight=weight,
                               label_smoothing=float(self.label_smoothing))

    def _validation(self, module, batches):
        correct, total, loss = 0, 0, 0.0
        device = next(module.parameters()).device
        for x, lengths, target in batches:
            out = module(x.to(device), lengths.to(device)).float()  # (b, k)
            target = target.to(device)
            loss += float(F.cross_entropy(out, target, reduction="sum"))
            correct += int((out.argmax(dim=1) == target).sum())
            total += target.shape[0]
        return {"val_loss": loss / total, "val_score": correct / total}

    def predict_proba(self, X, sampling_rate=None):
        """Class probabilities ``(n, n_classes)``, columns in the order of ``classes_``.

        ``sampling_rate`` (Hz) defaults to the fitted rate; another value rescales every SSM's
        Δ by ``sampling_rate_ / sampling_rate`` (zero-shot transfer).
        """
        logits, _ = self._forward(X, sampling_rate)
        logits = logits - logits.max(axis=1, keepdims=True)
        p = np.exp(logits)
        return p / p.sum(axis=1, keepdims=True)

    def predict_log_proba(self, X, sampling_rate=None):
        """Logarithm of :meth:`predict_proba`."""
        return np.log(np.clip(self.predict_proba(X, sampling_rate), 1e-300, None))

    def predict(self, X, sampling_rate=None):
        """Predicted labels ``(n,)`` (see :meth:`predict_proba` for ``sampling_rate``)."""
        check_is_fitted(self, "module_")
        return self.classes_[np.argmax(self.predict_proba(X, sampling_rate), axis=1)]

    def score(self, X, y, sample_weight=None, sampling_rate=None):
        """Mean accuracy of :meth:`predict` on ``(X, y)``."""
        from sklearn.metrics import accuracy_score

        return accuracy_score(y, self.predict(X, sampling_rate), sample_weight=sample_weight)


_CLASSIFIER_CONSTRAINTS = {"class_weight": [StrOptions({"balanced"}), dict, None],
                           "label_smoothing": [Interval(numbers.Real, 0, 1, closed="left")],
                           "bidirectional": ["boolean"]}
_CLASSIFIER_PARAMS_DOC = """class_weight : "balanced", dict or None, default=None
        Weights of the classes in the loss: ``"balanced"`` uses ``n / (n_classes * count)``.
    label_smoothing : float, default=0.0
        Label smoothing of the training cross-entropy (Szegedy et al. 2016): the target puts
        ``1 - label_smoothing`` on the true class and spreads the rest uniformly. Validation
        loss and scores use the plain labels.
    bidirectional : bool, default=False
        Each block gets a second SSM that reads the series backwards (its output is added to
        the forward one), so every step sees the whole series; twice the SSM cost. Δ is
        rescaled in both directions.
    """  # the docs of the three parameters above


class S4Classifier(_SSMClassifierMixin, BaseSSMEstimator):
    __doc__ = S4_DOC.format(
        kind="Classifier", task="classification", extra=_CLASSIFIER_PARAMS_DOC, example="""    >>> from ssmsignal import S4Classifier
    >>> t = np.linspace(0, 1, 100)
    >>> X = np.stack([np.sin(2 * np.pi * f * t) for f in [2, 3] * 20])
    >>> y = np.array(["slow", "fast"] * 20)
    >>> clf = S4Classifier(d_model=8, n_layers=1, d_state=8, max_epochs=20, lr=1e-2,
    ...                    verbose=0, random_state=0).fit(X, y, sampling_rate=100)
    >>> clf.classes_.tolist()
    ['fast', 'slow']
    >>> clf.predict(X[:4], sampling_rate=100).shape
    (4,)""")

    _parameter_constraints = {**BaseSSMEstimator._parameter_constraints,
                              **_CLASSIFIER_CONSTRAINTS,
                              "layer": [StrOptions({"s4", "s4d"})]}

    def __init__(self, layer="s4d", d_model=64, n_layers=4, d_state=64, dropout=0.0,
                 max_epochs=30, batch_size=32, lr=3e-3, ssm_lr=1e-3, weight_decay=0.01,
                 warmup_fraction=0.1, grad_clip=1.0, early_stopping="auto",
                 validation_fraction=0.1, n_iter_no_change=10, class_weight=None,
                 label_smoothing=0.0, timescale_min=None, timescale_max=None,
                 sampling_rate=None, device="auto", random_state=None, verbose=1,
                 warm_start=False, augment=None, max_time=None, bidirectional=False):
        store_init_params(self, locals())

    def _backbone_kwargs(self):
        return {**s4_kwargs(self), "bidirectional": bool(self.bidirectional)}


class MambaClassifier(_SSMClassifierMixin, BaseSSMEstimator):
    __doc__ = MAMBA_DOC.format(
        kind="Classifier", task="classification", extra=_CLASSIFIER_PARAMS_DOC, example="""    >>> from ssmsignal import MambaClassifier
    >>> X = np.random.default_rng(0).normal(size=(40, 2, 50))   # 2 channels
    >>> y = (X[:, 0].mean(axis=1) > 0).astype(int)
    >>> clf = MambaClassifier(d_model=8, n_layers=1, max_epochs=2, verbose=0,
    ...                       random_state=0).fit(X, y)
    >>> clf.predict_proba(X[:3]).shape
    (3, 2)""")

    _parameter_constraints = {**BaseSSMEstimator._parameter_constraints,
                              **_CLASSIFIER_CONSTRAINTS}

    def __init__(self, d_model=64, n_layers=4, d_state=16, d_conv=4, expand=2, dropout=0.0,
                 max_epochs=30, batch_size=32, lr=3e-3, ssm_lr=1e-3, weight_decay=0.01,
                 warmup_fraction=0.1, grad_clip=1.0, early_stopping="auto",
                 validation_fraction=0.1, n_iter_no_change=10, class_weight=None,
                 label_smoothing=0.0, timescale_min=None, timescale_max=None,
                 sampling_rate=None, device="auto", random_state=None, verbose=1,
                 warm_start=False, augment=None, max_time=None, bidirectional=False):
        store_init_params(self, locals())

    def _backbone_kwargs(self):
        return {**mamba_kwargs(self), "bidirectional": bool(self.bidirectional)}
