"""Base class of the S4 / Mamba classifiers and regressors.

It turns the estimator's flat parameters into a :class:`~ssmsignal.models.SequenceModel`,
runs the shared loop of :mod:`._training`, predicts in batches at any sampling rate, and handles
pickling and ``save`` / ``load`` (the latter through :mod:`ssmsignal.io`).

Time scales
-----------
``timescale_min`` and ``timescale_max`` (seconds) bound the time scales the SSMs start with.
A diagonal SSM with step Δ (in sample periods) and HiPPO-style state matrix summarises a window
of roughly ``1 / Δ`` samples, i.e. ``1 / (Δ fs)`` seconds. So the layers' Δ range is
``dt_min = 1 / (timescale_max · fs)`` and ``dt_max = 1 / (timescale_min · fs)``. Defaults:
``timescale_min = 10 / fs`` (ten sample periods, Δ_max = 0.1) and ``timescale_max = L / fs``
(the longest training series, Δ_min = 1 / L); for L = 1000 this is exactly the (0.001, 0.1)
range of the S4 papers. ``timescale_max`` is kept at least 10 x ``timescale_min``. Without a
sampling rate, time is counted in samples (fs = 1).
"""
from __future__ import annotations

import functools
import numbers

import numpy as np
import torch
from sklearn.base import BaseEstimator
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_is_fitted, check_random_state

from ssmsignal.models.backbone import BackboneConfig, SequenceModel

from ._augment import augment_batch, check_augment
from ._data import SeriesBatch, channel_stats, check_sampling_rate, check_series
from ._training import TrainConfig, train_module

__all__ = ["BaseSSMEstimator"]

_POSITIVE_INT = [Interval(numbers.Integral, 1, None, closed="left")]
_POSITIVE_REAL = [Interval(numbers.Real, 0, None, closed="neither")]
_OPTIONAL_POSITIVE_REAL = [Interval(numbers.Real, 0, None, closed="neither"), None]


class BaseSSMEstimator(BaseEstimator):
    """Shared parameters, fitting and prediction (not for direct use).

    Subclasses set ``_layer_name`` (or the ``layer`` parameter) and implement
    ``_prepare_targets``, ``_loss`` and ``_validation``.
    """

    _parameter_constraints: dict = {
        "d_model": _POSITIVE_INT,
        "n_layers": _POSITIVE_INT,
        "d_state": _POSITIVE_INT,
        "dropout": [Interval(numbers.Real, 0, 1, closed="left")],
        "max_epochs": _POSITIVE_INT,
        "batch_size": _POSITIVE_INT,
        "lr": _POSITIVE_REAL,
        "ssm_lr": _OPTIONAL_POSITIVE_REAL,
        "weight_decay": [Interval(numbers.Real, 0, None, closed="left")],
        "warmup_fraction": [Interval(numbers.Real, 0, 1, closed="left")],
        "grad_clip": _OPTIONAL_POSITIVE_REAL,
        "early_stopping": ["boolean", StrOptions({"auto"})],
        "validation_fraction": [Interval(numbers.Real, 0, 1, closed="neither")],
        "n_iter_no_change": _POSITIVE_INT,
        "timescale_min": _OPTIONAL_POSITIVE_REAL,
        "timescale_max": _OPTIONAL_POSITIVE_REAL,
        "sampling_rate": _OPTIONAL_POSITIVE_REAL,
        "device": [str, torch.device],
        "random_state": ["random_state"],
        "verbose": ["verbose"],
        "warm_start": ["boolean"],
        "augment": ["boolean", dict, None],
        "max_time": _OPTIONAL_POSITIVE_REAL,
    }

    # ----------------------------------------------------------------- hooks for subclasses
    def _backbone_kwargs(self) -> dict:
        """Layer choice and layer-specific sizes (S4 vs Mamba estimators override)."""
        raise NotImplementedError

    def _prepare_targets(self, y, batch: SeriesBatch, first_fit: bool):
        """Validate ``y``; return ``(targets ndarray, n_outputs, per_step)``."""
        raise NotImplementedError

    def _loss(self, out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def _validation(self, module, batches) -> dict:
        raise NotImplementedError

    # ----------------------------------------------------------------------- sklearn tags
    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.three_d_array = True
        tags.non_deterministic = False
        return tags

    # ------------------------------------------------------------------------ fitting
    def _time_scales(self, fs: float | None, max_length: int) -> tuple[float, float]:
        """Δ initialisation range ``(dt_min, dt_max)`` in training sample periods."""
        rate = 1.0 if fs is None else fs
        t_min = 10.0 / rate if self.timescale_min is None else float(self.timescale_min)
        t_max = max_length / rate if self.timescale_max is None else float(self.timescale_max)
        if self.timescale_min is not None and self.timescale_max is not None and t_max <= t_min:
            raise ValueError(f"timescale_max ({t_max}) must be larger than timescale_min "
                             f"({t_min})")
        t_max = max(t_max, 10.0 * t_min)
        return 1.0 / (t_max * rate), 1.0 / (t_min * rate)

    def _resolve_rate(self, sampling_rate):
        rate = check_sampling_rate(sampling_rate, "sampling_rate")
        return check_sampling_rate(self.sampling_rate, "sampling_rate") if rate is None else rate

    def _use_early_stopping(self, n_samples: int) -> bool:
        if self.early_stopping == "auto":
            return n_samples >= 100
        return bool(self.early_stopping)

    def _train_config(self, max_epochs: int) -> TrainConfig:
        seed = self.random_state
        if seed is None or isinstance(seed, np.random.RandomState):
            # None: numpy's global RNG, as in scikit-learn (torch's RNG is forked, not advanced,
            # during fit, so leaving the seed unset would give every fit the same model)
            seed = int(check_random_state(seed).randint(0, 2**31 - 1))
        return TrainConfig(
            max_epochs=max_epochs, lr=self.lr, ssm_lr=self.ssm_lr,
            weight_decay=self.weight_decay,
            warmup_fraction=self.warmup_fraction,
            grad_clip=self.grad_clip, n_iter_no_change=self.n_iter_no_change,
            device=self.device, random_state=seed, verbose=int(self.verbose),
            description=type(self).__name__,
            max_time=None if self.max_time is None else float(self.max_time))

    def _fit(self, X, y, sampling_rate=None, *, partial: bool = False, classes=None):
        self._validate_params()
        check_augment(self.augment)  # bad values raise before a refit touches fitted state
        fitted = hasattr(self, "module_")
        continuing = fitted and (partial or self.warm_start)
        batch = check_series(X, n_channels=self.n_channels_ if continuing else None)
        rate = self._resolve_rate(sampling_rate)
        if continuing and rate is not None and rate != self.sampling_rate_:
            raise ValueError(f"sampling_rate={rate} differs from the rate the model was fitted "
                             f"at ({self.sampling_rate_}); resample the data first")
        self._partial_classes = classes
        targets, n_outputs, per_step = self._prepare_targets(y, batch, first_fit=not continuing)
        self._augment_config = check_augment(self.augment, per_step=per_step)
        if not continuing:
            self.sampling_rate_ = rate
            self.n_channels_ = batch.n_channels
            self.n_features_in_ = batch.n_channels
            self.per_step_ = per_step
            self.history_ = []
            self._optimizer = None
            self.module_ = self._new_module(batch, n_outputs, per_step, targets)
        train_idx, val_idx = self._split(batch, targets, partial)
        cfg = self._train_config(1 if partial else self.max_epochs)
        if partial:  # one epoch at the constant learning rate, no early stopping
            cfg.lr_schedule, cfg.n_iter_no_change = False, None
        if continuing and cfg.random_state is not None:
            # a new shuffle and new dropout masks for each continued epoch, still reproducible
            cfg.random_state += len(self.history_)
        make_batches = self._batch_factory(batch, targets, train_idx)
        validate = None
        if val_idx is not None:  # validate(module), over batches built once
            validate = functools.partial(self._validation,
                                         batches=list(self._iter_batches(batch, targets, val_idx)))
        result = train_module(self.module_, self._batch_loss, make_batches, cfg,
                              validate=validate,
                              optimizer=self._optimizer if partial else None)
        self._optimizer = result.optimizer if partial else None
        offset = len(self.history_)
        for row in result.history:
            row["epoch"] += offset
            self.history_.append(row)
        self.n_epochs_ = len(self.history_)
        return self

    def _new_module(self, batch, n_outputs, per_step, targets) -> SequenceModel:
        dt_min, dt_max = self._time_scales(self.sampling_rate_, int(batch.lengths.max()))
        config = BackboneConfig(n_channels=batch.n_channels, n_outputs=n_outputs,
                                d_model=self.d_model, n_layers=self.n_layers,
                                d_state=self.d_state, dropout=float(self.dropout),
                                dt_min=dt_min, dt_max=dt_max, per_step=per_step,
                                **self._backbone_kwargs())
        seed = self._train_config(1).random_state
        with torch.random.fork_rng(devices=[]):
            if seed is not None:
                torch.manual_seed(seed)
            module = SequenceModel(config)
        mean, std = channel_stats(batch)
        module.set_standardisation(mean, std, *self._output_stats(targets))
        return module

    def _output_stats(self, targets):
        return None, None

    def _split(self, batch, targets, partial):
        """Indices of the training and validation rows (validation is None when unused)."""
        n = batch.n_samples
        everything = np.arange(n)
        if partial or not self._use_early_stopping(n):
            return everything, None
        n_val = max(1, int(round(self.validation_fraction * n)))
        if n - n_val < 1:
            return everything, None
        rng = np.random.RandomState(self._train_config(1).random_state)
        order = rng.permutation(n)
        return np.sort(order[n_val:]), np.sort(order[:n_val])

    # ------------------------------------------------------------------ batching
    def _iter_batches(self, batch: SeriesBatch, targets, index):
        """Yield ``(x (b, C, l), lengths (b,), target)`` CPU tensors, trimmed per batch."""
        for start in range(0, len(index), self.batch_size):
            rows = index[start:start + self.batch_size]
            part = batch.subset(rows)
            x = torch.from_numpy(np.ascontiguousarray(part.values))  # (b, C, l)
            lengths = torch.from_numpy(part.lengths)  # (b,)
            if targets is None:
                yield x, lengths
                continue
            t = targets[rows]  # per-step targets only exist for equal lengths: no trimming
            yield x, lengths, torch.from_numpy(np.ascontiguousarray(t))

    def _batch_factory(self, batch, targets, train_idx):
        """Shuffled mini-batches; with unequal lengths, batches hold series of similar length.

        Bucketing: the shuffled order is cut into windows of 32 batches, each window is sorted
        by length and cut into batches, and the batches are shuffled again. Each batch is then
        padded only to its own longest series.
        """
        def make_batches(generator: torch.Generator):
            order = train_idx[torch.randperm(len(train_idx), generator=generator).numpy()]
            if batch.equal_length:
                return list(self._iter_batches(batch, targets, order))
            window = 32 * self.batch_size
            chunks = [order[i:i + window] for i in range(0, len(order), window)]
            order = np.concatenate([c[np.argsort(batch.lengths[c], kind="stable")]
                                    for c in chunks])
            batches = list(self._iter_batches(batch, targets, order))
            shuffle = torch.randperm(len(batches), generator=generator).tolist()
            return [batches[i] for i in shuffle]
        return make_batches

    def _batch_loss(self, module, batch) -> torch.Tensor:
        x, lengths, target = batch
        dt_scale = 1.0
        augment = getattr(self, "_augment_config", None)
        if augment is not None:  # training batches only: validation and predict never get here
            x, lengths, dt_scale = augment_batch(x, lengths, augment)
        out = module(x, lengths, dt_scale=dt_scale, normalised=True)  # (b, k) or (b, l, k)
        return self._loss(out.float(), target)

    # ------------------------------------------------------------------ prediction
    def _dt_scale(self, sampling_rate) -> float:
        rate = check_sampling_rate(sampling_rate, "sampling_rate")
        if rate is None:
            return 1.0
        if self.sampling_rate_ is None:
            raise ValueError("this model was fitted without a sampling_rate, so it cannot "
                             "rescale to sampling_rate={}; refit with fit(X, y, "
                             "sampling_rate=...)".format(rate))
        return self.sampling_rate_ / rate

    def _forward(self, X, sampling_rate=None):
        """Raw model outputs: ``(n, k)`` array, or a list of ``(n_i, k)`` for per-step models.

        Rows are processed in batches sorted by length (less padding), then put back in order.
        """
        check_is_fitted(self, "module_")
        batch = check_series(X, n_channels=self.n_channels_)
        dt_scale = self._dt_scale(sampling_rate)
        module = self.module_
        device = next(module.parameters()).device
        module.eval()
        order = np.argsort(-batch.lengths, kind="stable")
        outputs = []
        with torch.no_grad():
            for x, lengths in self._iter_batches(batch, None, order):
                out = module(x.to(device), lengths.to(device), dt_scale=dt_scale)
                out = out.float().cpu().numpy()  # (b, k) or (b, l, k)
                for j in range(x.shape[0]):
                    outputs.append(out[j, : int(lengths[j])] if self.per_step_ else out[j])
        restored = [None] * batch.n_samples
        for position, row in zip(order, outputs):
            restored[position] = row
        if self.per_step_ and not batch.equal_length:
            return restored, batch
        return np.stack(restored).astype(np.float64), batch

    # ------------------------------------------------------------- persistence
    def __getstate__(self):
        state = self.__dict__.copy()
        state.pop("_optimizer", None)
        if "module_" in state:
            module = state["module_"]
            if next(module.parameters()).device.type != "cpu":
                module = _cpu_copy(module)
            state["module_"] = module
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._optimizer = None

    def save(self, path) -> None:
        """Write the fitted estimator to the directory ``path``.

        ``path/model.safetensors`` holds the weights, ``path/config.json`` the parameters,
        ``classes_`` and the other fitted attributes. The directory is written as a whole to a
        temporary sibling and then renamed into place, so a reader never sees half a model
        (see :func:`ssmsignal.io.save_estimator`).
        """
        from ssmsignal.io import save_estimator

        save_estimator(self, path)

    @classmethod
    def load(cls, path, device: str = "cpu"):
        """Restore an estimator written by :meth:`save` (its predictions are identical)."""
        from ssmsignal.io import load_estimator

        return load_estimator(path, expected_class=cls, device=device)


def _cpu_copy(module: torch.nn.Module) -> torch.nn.Module:
    clone = SequenceModel(module.config)
    clone.load_state_dict({k: v.detach().cpu() for k, v in module.state_dict().items()})
    return clone.train(module.training)



# ------------------------------------------------------------------ shared helpers and docs
def store_init_params(estimator, values: dict) -> None:
    """``__init__`` body of every estimator: store each keyword argument unchanged.

    scikit-learn's convention: no validation or conversion here (that happens in ``fit``),
    so ``get_params`` / ``set_params`` / ``clone`` round-trip exactly.
    """
    for name, value in values.items():
        if name not in ("self", "__class__"):
            setattr(estimator, name, value)


def s4_kwargs(self) -> dict:
    """Backbone arguments of the S4 estimators (``layer`` is "s4d" or "s4")."""
    return {"layer": self.layer}


def mamba_kwargs(self) -> dict:
    """Backbone arguments of the Mamba estimators."""
    return {"layer": "mamba", "d_conv": self.d_conv, "expand": self.expand}
