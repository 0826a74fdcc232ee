"""Shared numpydoc text of the four estimators (filled in by ``_classifier`` / ``_regressor``)."""

__all__ = ["S4_DOC", "MAMBA_DOC"]

_COMMON_PARAMS = """d_model : int, default=64
        Width of the residual stream.
    n_layers : int, default=4
        Number of residual SSM blocks.
    d_state : int, default={d_state}
        State size of each SSM.
{layer_params}    dropout : float, default=0.0
        Dropout in the layers and on the residual branches.
    max_epochs : int, default=30
        Passes over the training data (fewer with early stopping).
    batch_size : int, default=32
    lr : float, default=3e-3
        Peak AdamW learning rate (linear warm-up, then cosine decay to 0).
    ssm_lr : float or None, default=1e-3
        Learning rate of the SSM parameters (A, B, Δ), which get no weight decay; None: ``lr``.
    weight_decay : float, default=0.01
        Decoupled weight decay of the dense weight matrices.
    warmup_fraction : float, default=0.1
        Fraction of the optimisation steps spent warming up.
    grad_clip : float or None, default=1.0
        Maximum global gradient norm.
    early_stopping : bool or "auto", default="auto"
        Hold out ``validation_fraction`` of the training data, stop after ``n_iter_no_change``
        epochs without a better validation score and restore the best weights. "auto": on when
        there are at least 100 training series.
    validation_fraction : float, default=0.1
    n_iter_no_change : int, default=10
    {extra}timescale_min, timescale_max : float or None, default=None
        Range (seconds; samples without a sampling rate) of the time scales the SSMs start
        with: Δ is initialised log-uniformly in ``[1 / (timescale_max fs), 1 / (timescale_min
        fs)]`` training sample periods. Defaults: 10 sample periods and the longest training
        series' duration.
    sampling_rate : float or None, default=None
        Rate of the training data in Hz when ``fit`` gets none (useful in pipelines).
    device : str, default="auto"
        "auto" uses CUDA when available (with bf16 autocast), else the CPU.
    random_state : int, RandomState or None, default=None
        Seeds the weights, the validation split, the batch order and dropout; the same seed
        gives the same model on the CPU. None draws the seed from numpy's global RNG.
    verbose : int, default=1
        1 shows a tqdm progress bar with the epoch's loss and validation score; 0 is silent.
    warm_start : bool, default=False
        Refit continues from the current weights (and keeps the input statistics).
    augment : None, bool or dict, default=None
        Training-time data augmentation of each mini-batch, on its device (never applied to
        the validation split or in ``predict``). None / False: off. True: ``{{{{"crop": 0.1,
        "speed": 0.1, "gain_db": 6.0, "snr_db": (20, 40)}}}}``. A dict takes any of:
        ``"crop"`` (cut up to this fraction of each series, randomly split between start and
        end), ``"speed"`` (resample by a random factor in ``[1 - speed, 1 + speed]`` at the
        nominal rate: speed perturbation, Ko et al. 2015), ``"rate"`` (resample the batch to
        ``q`` times the rate, ``q`` log-uniform in ``[1 / (1 + rate), 1 + rate]``, and train
        with ``dt_scale = 1 / q``, as a prediction at that rate would run), ``"lowpass"``
        (low-pass each series at a random cutoff in ``[1 - lowpass, 1]`` times its Nyquist
        frequency, same rate and length; refused with per-step targets), ``"gain_db"``
        (random gain within ± this many dB), ``"snr_db"`` (additive white noise at an SNR
        uniform in ``(low, high)`` dB, or exactly this SNR). Resampling is a windowed-sinc
        interpolation in torch. Reproducible under ``random_state`` on the CPU. ``crop``,
        ``speed``, ``rate`` and ``lowpass`` are refused with per-step targets.
    max_time : float or None, default=None
        Training time budget in seconds. After every epoch the number of epochs is re-planned
        from the last epoch's duration (at most ``max_epochs``) and the learning-rate schedule
        (warm-up and cosine) is rescaled to end with the plan; at least two epochs run (the
        first may include one-time costs such as kernel compilation). None: no budget. With a
        budget the number of epochs depends on the machine's speed, so the same seed may give
        different models on different machines."""

_ATTRIBUTES = """Attributes
    ----------
    module_ : ssmsignal.models.SequenceModel
        The trained network (in eval mode).
    classes_ : ndarray of shape (n_classes,)
        Class labels (classifiers only).
    n_features_in_ : int
        Number of input channels (the time length is free: the model takes any length).
    n_channels_ : int
        Same as ``n_features_in_``.
    sampling_rate_ : float or None
        Rate of the training data; ``predict*(X, sampling_rate=fs)`` rescale Δ by
        ``sampling_rate_ / fs``.
    per_step_ : bool
        Whether the model predicts at every time step (regression on ``(n, L)`` targets).
    history_ : list of dict
        One dict per epoch: ``epoch``, ``train_loss``, ``lr``, ``time`` and, with early
        stopping, ``val_loss`` and ``val_score``."""

_TEMPLATE = """{summary}

    Any input length is accepted, and a model trained at one sampling rate predicts at another:
    every SSM layer's step size Δ is rescaled by ``sampling_rate_ / sampling_rate``.
    Inputs: ``(n, L)``, ``(n, C, L)``, a DataFrame of equal-length rows, or a list of
    ``(L_i,)`` / ``(C, L_i)`` series of unequal lengths (padded inside, never truncated).

    Parameters
    ----------
    {params}

    {attributes}

    Examples
    --------
    >>> import numpy as np
{{example}}
    """

S4_DOC = _TEMPLATE.format(
    summary="S4 / S4D {kind} for time series ({task}), with the scikit-learn API.",
    params="layer : {{\"s4d\", \"s4\"}}, default=\"s4d\"\n        Diagonal S4D (Gu et al. "
           "2022b) or DPLR S4 (Gu et al. 2022a) layers.\n    " + _COMMON_PARAMS.format(
               d_state=64, layer_params="", extra="{extra}"),
    attributes=_ATTRIBUTES)

MAMBA_DOC = _TEMPLATE.format(
    summary="Mamba {kind} for time series ({task}), with the scikit-learn API (Gu & Dao 2023).",
    params=_COMMON_PARAMS.format(
        d_state=16, extra="{extra}",
        layer_params="    d_conv : int, default=4\n        Width of Mamba's short causal "
                     "convolution.\n    expand : int, default=2\n        Inner expansion "
                     "factor of the Mamba block.\n"),
    attributes=_ATTRIBUTES)
