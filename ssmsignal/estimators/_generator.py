"""AudioGenerator: a scikit-learn style estimator that trains and samples SaShiMi.

``fit`` trains the model to predict each 8-bit mu-law sample from the previous ones on random
crops of the waveforms (short ones are padded and the padding is masked out of the loss),
reusing the training loop of :mod:`ssmsignal.estimators._training`. ``sample`` generates in
recurrent mode (O(1) per sample, CUDA graphs on the GPU). ``score`` is minus the negative
log-likelihood in bits per sample, computed on whole recordings.
"""
from __future__ import annotations

import numbers

import numpy as np
import torch
from sklearn.base import BaseEstimator
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_is_fitted

from ssmsignal.models._mulaw import mu_law_decode, mu_law_encode
from ssmsignal.models._sashimi_decode import sample_codes
from ssmsignal.models.sashimi import SaShiMi

from ._audio_data import (LOG2, check_waveforms, eval_batches, masked_nll, mean_nll_bits,
                          recording_codes, train_batches)
from ._data import check_sampling_rate
from ._generator_io import generate_cli, load_generator
from ._training import TrainConfig, train_module

__all__ = ["AudioGenerator", "generate_cli"]

_POSITIVE_INT = [Interval(numbers.Integral, 1, None, closed="left")]


class AudioGenerator(BaseEstimator):
    """Autoregressive audio generator (SaShiMi over 8-bit mu-law, Goel et al. 2022).

    Parameters
    ----------
    sampling_rate : float, default=8000
        Rate (Hz) of the training audio; ``fit(..., sampling_rate=...)`` overrides it.
    d_model, n_layers, pool, expand, ff, layer, d_state, dropout, unet
        Architecture, see :class:`ssmsignal.models.SaShiMi` (defaults near the paper's;
        ``unet=False`` is the paper's autoregressive arrangement, ``True`` the U-Net that
        generators saved before this parameter existed use).
    conditional : bool, default=False
        Train a class-conditional model from the labels ``y`` given to ``fit``.
    segment_length : int, default=4096
        Training crop length in samples; longer recordings give several random crops per epoch,
        shorter ones are padded with the padding masked out of the loss.
    max_epochs, batch_size, lr, ssm_lr, weight_decay
        Optimisation (AdamW, cosine schedule with warm-up), as in the other estimators.
    validation_fraction : float, default=0.1
        Fraction of recordings held out for validation (0 disables validation).
    n_iter_no_change : int or None, default=None
        Early stopping patience in epochs on the validation score.
    device : str, default="auto"
    random_state : int or None, default=None
    verbose : int, default=1
        1 shows a progress bar (tqdm), 0 is silent.
    mixed_precision : bool, default=True
        bf16 autocast during training on CUDA.
    max_time : float or None, default=None
        Training budget in seconds, as in the other estimators: after every epoch the number of
        epochs is re-planned to fit the time left (at most ``max_epochs``, at least two) and the
        cosine schedule is fitted to the plan (see ``TrainConfig.max_time``).

    Attributes
    ----------
    module_ : SaShiMi
    sampling_rate_ : float
    classes_ : ndarray
        Labels of a conditional model (absent for an unconditional one).
    history_ : list of dict
        Per-epoch ``train_loss`` (nats per sample), ``val_loss`` and ``val_score`` (bits).

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> waves = [0.3 * np.sin(np.arange(n) * 0.3) for n in (200, 300)]
    >>> gen = AudioGenerator(d_model=8, n_layers=1, pool=(2,), layer="s4d", d_state=4,
    ...                      max_epochs=1, segment_length=64, validation_fraction=0,
    ...                      device="cpu", random_state=0, verbose=0).fit(waves)
    >>> gen.sample(n_samples=2, n_seconds=0.01, random_state=0).shape
    (2, 80)
    """

    unet = True  # instances pickled before the parameter existed are U-Nets
    max_time = None  # ... and had no training budget

    def __init__(self, sampling_rate=8000.0, d_model=64, n_layers=8, pool=(4, 4), expand=2,
                 ff=2, layer="s4", d_state=64, dropout=0.0, unet=False, conditional=False,
                 segment_length=4096, max_epochs=10, batch_size=16, lr=4e-3, ssm_lr=1e-3,
                 weight_decay=0.0, validation_fraction=0.1, n_iter_no_change=None,
                 device="auto", random_state=None, verbose=1, mixed_precision=True,
                 max_time=None):
        self.sampling_rate = sampling_rate
        self.d_model = d_model
        self.n_layers = n_layers
        self.pool = pool
        self.expand = expand
        self.ff = ff
        self.layer = layer
        self.d_state = d_state
        self.dropout = dropout
        self.unet = unet
        self.conditional = conditional
        self.segment_length = segment_length
        self.max_epochs = max_epochs
        self.batch_size = batch_size
        self.lr = lr
        self.ssm_lr = ssm_lr
        self.weight_decay = weight_decay
        self.validation_fraction = validation_fraction
        self.n_iter_no_change = n_iter_no_change
        self.device = device
        self.random_state = random_state
        self.verbose = verbose
        self.mixed_precision = mixed_precision
        self.max_time = max_time

    _parameter_constraints: dict = {
        "sampling_rate": [Interval(numbers.Real, 0, None, closed="neither")],
        "d_model": _POSITIVE_INT,
        "n_layers": _POSITIVE_INT,
        "pool": ["array-like"],
        "expand": _POSITIVE_INT,
        "ff": [Interval(numbers.Integral, 0, None, closed="left")],
        "layer": [StrOptions({"s4", "s4d", "mamba"}), callable],
        "d_state": _POSITIVE_INT,
        "dropout": [Interval(numbers.Real, 0, 1, closed="left")],
        "unet": ["boolean"],
        "conditional": ["boolean"],
        "segment_length": _POSITIVE_INT,
        "max_epochs": _POSITIVE_INT,
        "batch_size": _POSITIVE_INT,
        "lr": [Interval(numbers.Real, 0, None, closed="neither")],
        "ssm_lr": [Interval(numbers.Real, 0, None, closed="neither"), None],
        "weight_decay": [Interval(numbers.Real, 0, None, closed="left")],
        "validation_fraction": [Interval(numbers.Real, 0, 1, closed="left")],
        "n_iter_no_change": _POSITIVE_INT + [None],
        "device": [str, torch.device],
        "random_state": [Interval(numbers.Integral, 0, None, closed="left"), None],
        "verbose": ["verbose"],
        "mixed_precision": ["boolean"],
        "max_time": [Interval(numbers.Real, 0, None, closed="neither"), None],
    }

    def _build_module(self, n_conditions):
        return SaShiMi(d_model=self.d_model, n_layers=self.n_layers, pool=tuple(self.pool),
                       expand=self.expand, ff=self.ff, layer=self.layer, d_state=self.d_state,
                       n_conditions=n_conditions, dropout=self.dropout, unet=self.unet)

    # ----- data -----------------------------------------------------------------------
    def _encode_labels(self, y, n):
        if not self.conditional:
            if y is not None:
                raise ValueError("labels y were given but conditional=False; set "
                                 "conditional=True to train a class-conditional model")
            return None
        if y is None:
            raise ValueError("conditional=True needs labels: fit(waveforms, y)")
        y = np.asarray(y)
        if y.shape != (n,):
            raise ValueError(f"y must have shape ({n},) (one label per waveform), got {y.shape}")
        unknown = set(np.unique(y).tolist()) - set(self.classes_.tolist())
        if unknown:
            raise ValueError(f"unknown labels {sorted(unknown)[:5]}; known: "
                             f"{self.classes_.tolist()}")
        return np.searchsorted(self.classes_, y)

    # ----- fit / score ----------------------------------------------------------------
    def fit(self, waveforms, y=None, sampling_rate=None):
        """Train on a list of waveforms (floats in [-1, 1], any lengths).

        Parameters
        ----------
        waveforms : list of array-like of shape (n_i,), or ndarray (n_recordings, n_samples)
        y : array-like of shape (n_recordings,), optional
            Labels; required when ``conditional=True``, refused otherwise.
        sampling_rate : float, optional
            Rate of ``waveforms`` in Hz (defaults to the ``sampling_rate`` parameter).

        Returns
        -------
        self
        """
        self._validate_params()
        waves = check_waveforms(waveforms)
        rate = self.sampling_rate if sampling_rate is None else sampling_rate
        self.sampling_rate_ = check_sampling_rate(rate)
        if self.conditional and y is not None:
            self.classes_ = np.unique(np.asarray(y))  # only conditional models have classes_
        elif hasattr(self, "classes_"):
            del self.classes_
        labels = self._encode_labels(y, len(waves))
        codes = recording_codes(waves)
        rng = np.random.default_rng(self.random_state)
        n_val = int(round(self.validation_fraction * len(codes)))
        perm = rng.permutation(len(codes))
        val_idx, train_idx = perm[:n_val], perm[n_val:]
        if len(train_idx) == 0:
            raise ValueError("no recordings left for training; lower validation_fraction")
        train_codes = [codes[i] for i in train_idx]
        train_labels = None if labels is None else labels[train_idx]
        init_seed = self.random_state
        if init_seed is None:  # numpy's global RNG, as scikit-learn (torch's RNG is forked here,
            # not advanced, so an unset seed would give every unseeded fit the same weights)
            init_seed = int(np.random.randint(0, 2**31 - 1))
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(init_seed)
            self.module_ = self._build_module(len(self.classes_) if self.conditional else None)
        validate = None
        if n_val:
            val_batches = eval_batches([codes[i] for i in val_idx],
                                       None if labels is None else labels[val_idx],
                                       self.batch_size)

            def validate(module):
                bits = mean_nll_bits(module, val_batches, next(module.parameters()).device)
                return {"val_loss": bits * LOG2, "val_score": -bits}

        config = TrainConfig(max_epochs=int(self.max_epochs), lr=self.lr, ssm_lr=self.ssm_lr,
                             weight_decay=self.weight_decay, device=self.device,
                             n_iter_no_change=self.n_iter_no_change,
                             random_state=self.random_state, verbose=self.verbose,
                             mixed_precision=self.mixed_precision, description="AudioGenerator",
                             max_time=None if self.max_time is None else float(self.max_time))
        result = train_module(self.module_, masked_nll,
                              lambda g: train_batches(train_codes, train_labels,
                                                      self.segment_length, self.batch_size, g),
                              config, validate=validate)
        self.history_ = result.history
        self.module_.eval()
        return self

    def score(self, waveforms, y=None, sampling_rate=None):
        """Minus the negative log-likelihood in bits per sample (higher is better).

        Parameters
        ----------
        waveforms : list of 1-D arrays
            Held-out audio at ``sampling_rate`` (default: the training rate; another rate
            rescales Δ).
        y : array-like, optional
            Labels (conditional models only).
        sampling_rate : float, optional

        Returns
        -------
        float
        """
        check_is_fitted(self, "module_")
        waves = check_waveforms(waveforms)
        labels = self._encode_labels(y, len(waves))
        dt_scale = self._dt_scale(sampling_rate)
        device = next(self.module_.parameters()).device
        batches = eval_batches(recording_codes(waves), labels, self.batch_size)
        return -mean_nll_bits(self.module_, batches, device, dt_scale=dt_scale)

    def _dt_scale(self, sampling_rate):
        if sampling_rate is None:
            return 1.0
        return self.sampling_rate_ / check_sampling_rate(sampling_rate)

    # ----- persistence ----------------------------------------------------------------
    def __getstate__(self):
        state = self.__dict__.copy()
        if "module_" in state and next(state["module_"].parameters()).device.type != "cpu":
            module = SaShiMi(**state["module_"].config.to_dict())
            module.load_state_dict({k: v.detach().cpu()
                                    for k, v in state["module_"].state_dict().items()})
            state["module_"] = module.eval()
        return state

    def save(self, path):
        """Write the fitted generator to the directory ``path``.

        Uses :func:`ssmsignal.io.save_estimator`: ``model.safetensors`` + ``config.json``,
        written to a temporary sibling and renamed into place.
        """
        from ssmsignal.io import save_estimator

        if callable(self.layer):
            raise TypeError("cannot save a generator built with a custom layer factory; "
                            "use layer='s4', 's4d' or 'mamba', or pickle it")
        return save_estimator(self, path)

    @classmethod
    def load(cls, path, device="cpu"):
        """Restore a generator written by :meth:`save` (its samples are identical)."""
        return load_generator(cls, path, device)

    # ----- generation -----------------------------------------------------------------
    def sample(self, n_samples=1, n_seconds=1.0, random_state=None, temperature=1.0, top_p=1.0,
               prompt=None, labels=None, sampling_rate=None, cuda_graphs=True,
               bf16_weights=False):
        """Generate audio in recurrent mode.

        Parameters
        ----------
        n_samples : int, default=1
            Number of independent recordings.
        n_seconds : float, default=1.0
            Duration of the new audio (after the prompt).
        random_state : int or None
            Seeds the sampling noise; the same value gives the same audio on the same device.
        temperature : float, default=1.0
            Softmax temperature (> 0); lower is more conservative.
        top_p : float, default=1.0
            Nucleus sampling mass in (0, 1].
        prompt : array-like of shape (n_prompt,) or (n_samples, n_prompt), optional
            Audio in [-1, 1] to continue (teacher-forced; not included in the output).
        labels : array-like of shape (n_samples,) or a single label, optional
            Labels of a conditional model (values of ``classes_``); by default sample ``i``
            gets ``classes_[i % n_classes]``.
        sampling_rate : float, optional
            Output rate in Hz; a rate other than ``sampling_rate_`` rescales every Δ by
            ``sampling_rate_ / sampling_rate`` (pooling factors stay in samples, see
            :mod:`ssmsignal.models.sashimi`).
        cuda_graphs : bool, default=True
            Replay CUDA graphs of the step on a GPU.
        bf16_weights : bool, default=False
            Lossy speed opt-in of the fused GPU step (S4/S4D models on CUDA): the blocks' dense
            maps are read as bfloat16 (about a third fewer bytes per sample; logits change by
            ~1e-3 relative). Ignored with a warning elsewhere.

        Returns
        -------
        ndarray of shape (n_samples, round(n_seconds * rate))
            float32 audio in [-1, 1].
        """
        check_is_fitted(self, "module_")
        if not isinstance(n_samples, numbers.Integral) or n_samples < 1:
            raise ValueError(f"n_samples must be a positive integer, got {n_samples!r}")
        rate = self.sampling_rate_ if sampling_rate is None else check_sampling_rate(sampling_rate)
        if not isinstance(n_seconds, numbers.Real) or not n_seconds > 0:
            raise ValueError(f"n_seconds must be > 0, got {n_seconds!r}")
        if not temperature > 0:
            raise ValueError(f"temperature must be > 0, got {temperature!r}")
        if not 0 < top_p <= 1:
            raise ValueError(f"top_p must lie in (0, 1], got {top_p!r}")
        if not isinstance(bf16_weights, (bool, np.bool_)):
            raise ValueError(f"bf16_weights must be a bool, got {bf16_weights!r}")
        n_steps = max(1, int(round(n_seconds * rate)))
        module = self.module_.eval()
        device = next(module.parameters()).device
        label_idx = self._sample_labels(labels, n_samples, device)
        prompt_codes = None
        if prompt is not None:
            p = np.asarray(prompt, dtype=np.float32)
            p = np.broadcast_to(p, (n_samples, p.shape[-1])) if p.ndim == 1 else p
            if p.shape[0] != n_samples:
                raise ValueError(f"prompt must have shape (n_prompt,) or ({n_samples}, "
                                 f"n_prompt), got {np.shape(prompt)}")
            check_waveforms(list(p), name="prompt")
            prompt_codes = torch.as_tensor(mu_law_encode(p), device=device)  # (B, P)
        generator = torch.Generator(device=device)
        generator.manual_seed(int(np.random.default_rng(random_state).integers(2**62)))
        codes = sample_codes(module, n_steps, n_samples, labels=label_idx, prompt=prompt_codes,
                             dt_scale=self.sampling_rate_ / rate, temperature=float(temperature),
                             top_p=float(top_p), generator=generator,
                             cuda_graphs=cuda_graphs, bf16_weights=bf16_weights)  # (B, n)
        return mu_law_decode(codes.cpu()).numpy().astype(np.float32)

    def _sample_labels(self, labels, n_samples, device):
        if not self.conditional:
            if labels is not None:
                raise ValueError("labels given but this generator is unconditional")
            return None
        if labels is None:
            labels = self.classes_[np.arange(n_samples) % len(self.classes_)]
        labels = np.asarray(labels)
        labels = np.full(n_samples, labels) if labels.ndim == 0 else labels
        if labels.shape != (n_samples,):
            raise ValueError(f"labels must have shape ({n_samples},), got {labels.shape}")
        return torch.as_tensor(self._encode_labels(labels, n_samples), device=device)
