"""Training-time data augmentation of the estimators (the ``augment`` parameter).

Applied to each training mini-batch on its device, never to validation or prediction data:

``crop``
    Keep a random contiguous part of each series: up to this fraction of its length is cut,
    split at random between the start and the end (a random time shift of the content).
``speed``
    Speed perturbation (Ko et al. 2015, "Audio augmentation for speech recognition"): each
    series is resampled by a random factor ``r`` in ``[1 - speed, 1 + speed]`` and still
    presented at the nominal rate, so it plays ``r`` times faster (and, for audio, higher).
``rate``
    Rate augmentation, the continuous-time counterpart: the whole batch is resampled to
    ``q · fs`` with ``q`` log-uniform in ``[1 / (1 + rate), 1 + rate]`` and the model is called
    with ``dt_scale = 1 / q`` (``q`` rounded to two decimals, so that Mamba's cache of
    resampled convolution taps stays small), as ``predict(..., sampling_rate=q · fs)`` would. The
    content is the same; only its discretisation changes, which teaches the layers whose
    behaviour depends on the grid (Mamba's input-dependent Δ, its short convolution) to follow
    the rate.
``lowpass``
    Band-limit each series: low-pass it at a random cutoff, uniform in ``[1 - lowpass, 1]``
    times its Nyquist frequency (1 leaves it unchanged), at the same rate and length. The
    model learns not to depend on the top of the band alone, which a recording made at a lower
    sampling rate lacks (``lowpass=0.5`` reaches what half the rate keeps); a band-limitation
    augmentation, not a change of rate (Δ is untouched).
``gain_db``
    Multiply each series by a random gain, uniform in ``[-gain_db, gain_db]`` decibels.
``snr_db``
    Add white Gaussian noise at a signal-to-noise ratio uniform in ``(low, high)`` decibels
    (a single number means exactly that SNR), relative to each series' and channel's RMS over
    its valid steps.

Resampling is a batched windowed-sinc interpolation (Hann window over 8 input samples each
side) written in torch: it runs on the GPU with the batch, low-passes at ``min(1, 1 / step)`` of
the Nyquist frequency when it reads the input faster than one sample per step (anti-aliasing;
the window keeps its width, so the transition band widens with the step: a tone at 1.2 times
the new Nyquist frequency keeps 7 % of its amplitude at step 1.5, 24 % at step 3), and
reproduces the input exactly at a step of 1. All random draws use torch's global generator,
which the training loop seeds from ``random_state`` (on the CPU the augmented batches are
therefore reproducible).
"""
from __future__ import annotations

import math
import numbers
from dataclasses import dataclass

import torch

__all__ = ["AugmentConfig", "check_augment", "augment_batch", "sinc_resample", "DEFAULT_AUGMENT"]

#: What ``augment=True`` means.
DEFAULT_AUGMENT = {"crop": 0.1, "speed": 0.1, "gain_db": 6.0, "snr_db": (20.0, 40.0)}

_HALF_TAPS = 8  # input samples read on each side of the output position


@dataclass(frozen=True)
class AugmentConfig:
    """Validated augmentation settings (0 / None: that transform is off).

    Attributes
    ----------
    crop, speed, rate, lowpass, gain_db : float
        The dict values of the same names (see the module docstring), as floats.
    snr_db : tuple of float or None
        ``(low, high)`` decibels; a single number ``s`` becomes ``(s, s)``.
    """

    crop: float = 0.0
    speed: float = 0.0
    rate: float = 0.0
    lowpass: float = 0.0
    gain_db: float = 0.0
    snr_db: tuple[float, float] | None = None

    @property
    def warps_time(self) -> bool:
        """Whether lengths and positions change (impossible with per-step targets)."""
        return self.crop > 0 or self.speed > 0 or self.rate > 0

    @property
    def resamples(self) -> bool:
        """Whether the batch goes through :func:`sinc_resample` (time warps or low-pass)."""
        return self.warps_time or self.lowpass > 0


def _fraction(name, value, upper, closed_upper):
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise ValueError(f"augment[{name!r}] must be a finite number, got {value!r}")
    if value < 0 or value > upper or (value == upper and not closed_upper):
        bracket = "]" if closed_upper else ")"
        raise ValueError(f"augment[{name!r}] must be in [0, {upper}{bracket}, got {value!r}")
    return float(value)


def _snr(value):
    if value is None:
        return None
    pair = (value, value) if isinstance(value, numbers.Real) else value
    try:
        low, high = pair
    except (TypeError, ValueError):
        raise ValueError(f"augment['snr_db'] must be a number or a (low, high) pair of "
                         f"decibels, got {value!r}") from None
    for v in (low, high):
        if isinstance(v, bool) or not isinstance(v, numbers.Real) or not math.isfinite(v):
            raise ValueError(f"augment['snr_db'] values must be finite numbers, got {value!r}")
    if low > high:
        raise ValueError(f"augment['snr_db'] must be (low, high) with low <= high, got {value!r}")
    return float(low), float(high)


def check_augment(augment, per_step: bool = False) -> AugmentConfig | None:
    """Validate the ``augment`` parameter; return its :class:`AugmentConfig` (None when off).

    Parameters
    ----------
    augment : None, bool or dict
        None / False: off. True: :data:`DEFAULT_AUGMENT`. A dict with any of the keys
        ``crop`` (in [0, 0.5]), ``speed`` (in [0, 0.5)), ``rate`` (in [0, 1]), ``lowpass`` (in
        [0, 1)), ``gain_db``
        (>= 0, at most 40), ``snr_db`` (number or ``(low, high)`` pair, or None).
    per_step : bool
        The targets are per time step; then ``crop``, ``speed`` and ``rate`` are refused (they
        would move the inputs against their targets), and so is ``lowpass`` (its two-sided
        filter would show each step a few future samples).

    Raises
    ------
    ValueError
        Unknown key, value out of range, or a time warp with per-step targets.
    """
    if augment is None or augment is False:
        return None
    if augment is True:
        augment = DEFAULT_AUGMENT
    if not isinstance(augment, dict):
        raise ValueError(f"augment must be None, a bool or a dict, got {type(augment).__name__}")
    allowed = ("crop", "speed", "rate", "lowpass", "gain_db", "snr_db")
    unknown = sorted(set(map(str, augment)) - set(allowed))
    if unknown:
        raise ValueError(f"augment has unknown key(s) {unknown}; allowed: {list(allowed)}")
    cfg = AugmentConfig(
        crop=_fraction("crop", augment.get("crop", 0.0), 0.5, True),
        speed=_fraction("speed", augment.get("speed", 0.0), 0.5, False),
        rate=_fraction("rate", augment.get("rate", 0.0), 1.0, True),
        lowpass=_fraction("lowpass", augment.get("lowpass", 0.0), 1.0, False),
        gain_db=_fraction("gain_db", augment.get("gain_db", 0.0), 40.0, True),
        snr_db=_snr(augment.get("snr_db")))
    if per_step and cfg.resamples:
        raise ValueError("augment: 'crop', 'speed' and 'rate' change the time axis and "
                         "'lowpass' reads future samples, so they cannot be used with per-step "
                         "targets (y of shape (n, n_timesteps)); use 'gain_db' / 'snr_db' only")
    return cfg


def sinc_resample(x: torch.Tensor, lengths: torch.Tensor, step: torch.Tensor,
                  start: torch.Tensor | None = None, keep: torch.Tensor | None = None,
                  cutoff: torch.Tensor | None = None):
    """Read each series at positions ``start + j · step`` by windowed-sinc interpolation.

    Parameters
    ----------
    x : torch.Tensor
        ``(b, C, l)`` float series, valid up to ``lengths``.
    lengths : torch.Tensor
        ``(b,)`` int valid lengths.
    step : torch.Tensor
        ``(b,)`` positive float: input samples per output sample (> 1 shortens the series).
    start : torch.Tensor, optional
        ``(b,)`` int first input sample read (default 0).
    keep : torch.Tensor, optional
        ``(b,)`` int number of input samples from ``start`` that are read (default: to the end).
    cutoff : torch.Tensor, optional
        ``(b,)`` float in (0, 1]: low-pass at this fraction of the INPUT's Nyquist frequency
        (default 1); the anti-alias cutoff ``1 / step`` applies when it is lower.

    Returns
    -------
    (torch.Tensor, torch.Tensor)
        ``(b, C, l_out)`` resampled series (zero after each new length) and the ``(b,)`` int64
        new lengths ``floor((keep - 1) / step) + 1``.
    """
    b, c, l = x.shape
    device = x.device
    step = step.to(device=device, dtype=torch.float64)  # (b,)
    lengths = lengths.to(device)
    start = torch.zeros_like(lengths) if start is None else start.to(device)
    keep = lengths - start if keep is None else keep.to(device)
    new_len = torch.floor((keep - 1).to(torch.float64) / step).long() + 1  # (b,)
    l_out = int(new_len.max())
    j = torch.arange(l_out, device=device, dtype=torch.float64)  # (l_out,)
    pos = start[:, None].to(torch.float64) + j[None, :] * step[:, None]  # (b, l_out)
    base = torch.floor(pos)
    offsets = torch.arange(-_HALF_TAPS + 1, _HALF_TAPS + 1, device=device)  # (T,)
    idx = base.long()[:, :, None] + offsets  # (b, l_out, T) input sample indices
    wdtype = torch.float64 if x.dtype == torch.float64 else torch.float32
    dist = (idx.to(torch.float64) - pos[:, :, None]).to(wdtype)  # (b, l_out, T), in samples
    limit = torch.ones_like(step) if cutoff is None else cutoff.to(device, torch.float64)  # (b,)
    cutoff = torch.minimum(1.0 / step, limit).to(wdtype)[:, None, None]  # (b,1,1) of Nyquist
    window = 0.5 * (1.0 + torch.cos(math.pi * dist / _HALF_TAPS))  # Hann, 0 at |dist| = T/2
    weight = cutoff * torch.sinc(cutoff * dist) * window  # (b, l_out, T)
    stop = (start + keep)[:, None, None]  # (b, 1, 1)
    inside = (idx >= start[:, None, None]) & (idx < stop)
    weight = torch.where(inside, weight, 0.0)
    total = weight.sum(dim=-1, keepdim=True)  # (b, l_out, 1): unit DC gain at every position
    weight = torch.where(total.abs() > 1e-6, weight / total, 0.0).to(x.dtype)
    gather_idx = idx.clamp(0, l - 1).reshape(b, 1, -1).expand(b, c, -1)  # (b, C, l_out T)
    taps = torch.gather(x, 2, gather_idx).reshape(b, c, l_out, -1)  # (b, C, l_out, T)
    out = (taps * weight[:, None]).sum(dim=-1)  # (b, C, l_out)
    valid = j[None, :] < new_len[:, None]  # (b, l_out)
    return out * valid[:, None, :].to(out.dtype), new_len


def _uniform(n: int, low: float, high: float) -> torch.Tensor:
    """``(n,)`` float64 draws on the CPU from torch's global generator (seeded by fit)."""
    return low + (high - low) * torch.rand(n, dtype=torch.float64)


def augment_batch(x: torch.Tensor, lengths: torch.Tensor, cfg: AugmentConfig):
    """Augment one training batch.

    Parameters
    ----------
    x : torch.Tensor
        ``(b, C, l)`` raw series (zero-padded after ``lengths``).
    lengths : torch.Tensor
        ``(b,)`` valid lengths.
    cfg : AugmentConfig
        From :func:`check_augment`.

    Returns
    -------
    (torch.Tensor, torch.Tensor, float)
        Augmented ``(b, C, l')`` series, their ``(b,)`` lengths, and the ``dt_scale`` to call
        the model with (``1 / q`` under ``rate``, else 1).
    """
    b = x.shape[0]
    device = x.device
    x = x.float()
    dt_scale = 1.0
    if cfg.resamples:
        lengths_cpu = lengths.detach().cpu()
        cut = torch.floor(_uniform(b, 0.0, cfg.crop) * lengths_cpu).long()  # (b,)
        cut = torch.minimum(cut, lengths_cpu - 1)
        start = torch.floor(_uniform(b, 0.0, 1.0) * (cut + 1)).long().clamp(max=cut)  # (b,)
        step = _uniform(b, 1.0 - cfg.speed, 1.0 + cfg.speed)  # (b,) speed factors
        if cfg.rate > 0:
            log_q = float(_uniform(1, -math.log1p(cfg.rate), math.log1p(cfg.rate)))
            q = round(math.exp(log_q), 2)  # a coarse grid: Mamba caches its taps per dt_scale
            step = step / q
            dt_scale = 1.0 / q
        cutoff = _uniform(b, 1.0 - cfg.lowpass, 1.0) if cfg.lowpass > 0 else None  # (b,)
        x, lengths = sinc_resample(x, lengths_cpu, step, start=start,
                                   keep=lengths_cpu - cut, cutoff=cutoff)
    if cfg.gain_db > 0:
        gain_db = _uniform(b, -cfg.gain_db, cfg.gain_db)
        x = x * (10.0 ** (gain_db / 20.0)).to(device=device, dtype=x.dtype)[:, None, None]
    if cfg.snr_db is not None:
        steps = torch.arange(x.shape[2], device=device)
        mask = (steps[None, :] < lengths.to(device)[:, None]).to(x.dtype)[:, None, :]  # (b,1,l)
        power = (x ** 2 * mask).sum(dim=2) / mask.sum(dim=2).clamp(min=1)  # (b, C)
        snr = _uniform(b, *cfg.snr_db).to(device=device, dtype=x.dtype)[:, None]  # (b, 1)
        sigma = torch.sqrt(power * 10.0 ** (-snr / 10.0))  # (b, C)
        x = x + torch.randn(x.shape, device=device, dtype=x.dtype) * sigma[:, :, None] * mask
    return x, lengths.to(device), dt_scale
