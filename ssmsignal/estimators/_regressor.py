"""S4Regressor and MambaRegressor: per-series or per-time-step regression at any rate."""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.base import RegressorMixin
from sklearn.utils._param_validation import StrOptions

from ._base import BaseSSMEstimator, mamba_kwargs, s4_kwargs, store_init_params
from ._docs import MAMBA_DOC, S4_DOC
from ._data import check_regression_targets

__all__ = ["S4Regressor", "MambaRegressor"]


class _SSMRegressorMixin(RegressorMixin):
    """Targets standardised in ``fit`` (stored in the module), MSE loss, ``predict``."""

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True  # y may be (n, n_targets)
        return tags

    def fit(self, X, y, sampling_rate=None):
        """Fit on series ``X`` with targets ``y``; ``sampling_rate`` (Hz) is stored.

        Parameters
        ----------
        X : array-like of shape (n, L) or (n, C, L), DataFrame, or list of series
        y : array-like of shape (n,), (n, n_targets) or (n, L)
            Per-series targets, or one target per time step when ``y`` has the shape
            ``(n, L)`` of equal-length ``X`` (the model then predicts causally at every step).
        sampling_rate : float, optional
            Rate of ``X`` in Hz; default the ``sampling_rate`` parameter.

        Returns
        -------
        self
        """
        return self._fit(X, y, sampling_rate)

    def partial_fit(self, X, y, sampling_rate=None):
        """One epoch over ``(X, y)`` at a constant learning rate, keeping the optimizer."""
        return self._fit(X, y, sampling_rate, partial=True)

    def _prepare_targets(self, y, batch, first_fit):
        if y is None:
            raise ValueError(f"{type(self).__name__} requires y to be passed, but the target y "
                             "is None")
        targets, per_step, y_ndim = check_regression_targets(y, batch)
        if not first_fit and per_step != self.per_step_:
            raise ValueError("y switched between per-step targets (n, n_timesteps) and "
                             "per-series targets since the first fit")
        if first_fit:
            self._y_ndim = y_ndim
        if per_step:
            self.n_outputs_ = 1
            return targets[:, :, None], 1, True  # (n, L, 1)
        if not first_fit and targets.shape[1] != self.n_outputs_:
            raise ValueError(f"y has {targets.shape[1]} targets, the model was fitted with "
                             f"{self.n_outputs_}")
        self.n_outputs_ = targets.shape[1]
        return targets, targets.shape[1], False

    def _output_stats(self, targets):
        flat = targets.reshape(-1, targets.shape[-1]).astype(np.float64)  # (n or n L, k)
        mean = flat.mean(axis=0)
        std = flat.std(axis=0)
        std = np.where(std > 1e-12, std, 1.0)
        return mean.astype(np.float32), std.astype(np.float32)

    def _loss(self, out, target):
        # ``out`` is in standard units; bring the target there with the stored statistics.
        module = self.module_
        return F.mse_loss(out, (target - module.output_mean) / module.output_std)

    def _validation(self, module, batches):
        total, count = 0.0, 0
        device = next(module.parameters()).device
        for x, lengths, target in batches:
            out = module(x.to(device), lengths.to(device), normalised=True).float()
            target = (target.to(device) - module.output_mean) / module.output_std
            if self.per_step_:  # only the valid steps count
                steps = _valid_steps(out, lengths.to(device))
                diff = (out - target)[steps]
            else:
                diff = out - target
            total += float((diff ** 2).sum())
            count += diff.numel()
        loss = total / max(1, count)
        return {"val_loss": loss, "val_score": -loss}

    def predict(self, X, sampling_rate=None):
        """Predictions ``(n,)``, ``(n, n_targets)`` or, for per-step models, ``(n, L)``.

        For per-step models and a list of unequal-length series, a list of ``(L_i,)`` arrays.
        ``sampling_rate`` (Hz) defaults to the fitted rate; another value rescales Δ by
        ``sampling_rate_ / sampling_rate`` (zero-shot transfer).
        """
        out, _ = self._forward(X, sampling_rate)
        if self.per_step_:
            if isinstance(out, list):
                return [o[:, 0].astype(np.float64) for o in out]
            return out[:, :, 0]  # (n, L)
        return out[:, 0] if self._y_ndim == 1 else out

    def score(self, X, y, sample_weight=None, sampling_rate=None):
        """Coefficient of determination R² of :meth:`predict`.

        For per-step models the valid steps of all series are pooled (``y`` may then be a list
        of unequal-length series like ``X``); a series' ``sample_weight`` applies to each of
        its steps.
        """
        from sklearn.metrics import r2_score

        pred = self.predict(X, sampling_rate)
        if not self.per_step_:
            return r2_score(np.asarray(y, dtype=np.float64), pred, sample_weight=sample_weight)
        pred = [np.ravel(p) for p in pred]  # one (L_i,) array per series
        y = [np.asarray(t, dtype=np.float64).ravel() for t in y]
        lengths = [len(p) for p in pred]
        if [len(t) for t in y] != lengths:
            raise ValueError(f"per-step y must hold one target per time step of each series "
                             f"of X; got lengths {[len(t) for t in y]} for X's {lengths}")
        weight = (None if sample_weight is None
                  else np.repeat(np.asarray(sample_weight, dtype=np.float64), lengths))
        return r2_score(np.concatenate(y), np.concatenate(pred), sample_weight=weight)


def _valid_steps(out, lengths):
    """Boolean mask ``(b, l)`` of the valid steps of a ``(b, l, k)`` per-step output."""
    steps = torch.arange(out.shape[1], device=out.device)  # (l,)
    return steps[None, :] < lengths[:, None]  # (b, l)


class S4Regressor(_SSMRegressorMixin, BaseSSMEstimator):
    __doc__ = S4_DOC.format(kind="Regressor", task="regression", extra="", example="""\
    >>> from ssmsignal import S4Regressor
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(64, 80)).cumsum(axis=1)     # random walks
    >>> reg = S4Regressor(d_model=8, n_layers=1, d_state=8, max_epochs=3, verbose=0,
    ...                   random_state=0).fit(X, X[:, -1])
    >>> reg.predict(X[:2]).shape
    (2,)""")

    _parameter_constraints = {**BaseSSMEstimator._parameter_constraints,
                              "layer": [StrOptions({"s4", "s4d"})]}

    def __init__(self, layer="s4d", d_model=64, n_layers=4, d_state=64, dropout=0.0,
                 max_epochs=30, batch_size=32, lr=3e-3, ssm_lr=1e-3, weight_decay=0.01,
                 warmup_fraction=0.1, grad_clip=1.0, early_stopping="auto",
                 validation_fraction=0.1, n_iter_no_change=10, timescale_min=None,
                 timescale_max=None, sampling_rate=None, device="auto", random_state=None,
                 verbose=1, warm_start=False, augment=None, max_time=None):
        store_init_params(self, locals())

    _backbone_kwargs = s4_kwargs


class MambaRegressor(_SSMRegressorMixin, BaseSSMEstimator):
    __doc__ = MAMBA_DOC.format(kind="Regressor", task="regression", extra="", example="""\
    >>> from ssmsignal import MambaRegressor
    >>> X = np.random.default_rng(0).normal(size=(32, 60))
    >>> y = np.cumsum(X, axis=1)                            # a target at every step
    >>> reg = MambaRegressor(d_model=8, n_layers=1, max_epochs=2, verbose=0,
    ...                      random_state=0).fit(X, y)
    >>> reg.predict(X[:2]).shape
    (2, 60)""")

    _parameter_constraints = dict(BaseSSMEstimator._parameter_constraints)

    def __init__(self, d_model=64, n_layers=4, d_state=16, d_conv=4, expand=2, dropout=0.0,
                 max_epochs=30, batch_size=32, lr=3e-3, ssm_lr=1e-3, weight_decay=0.01,
                 warmup_fraction=0.1, grad_clip=1.0, early_stopping="auto",
                 validation_fraction=0.1, n_iter_no_change=10, timescale_min=None,
                 timescale_max=None, sampling_rate=None, device="auto", random_state=None,
                 verbose=1, warm_start=False, augment=None, max_time=None):
        store_init_params(self, locals())

    _backbone_kwargs = mamba_kwargs
