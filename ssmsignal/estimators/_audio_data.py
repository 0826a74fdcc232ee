"""Audio input handling and the masked likelihood of :class:`AudioGenerator`.

Each recording becomes its mu-law codes with the start code (silence) in front, ``n + 1``
tokens. A training window of ``S + 1`` tokens gives inputs ``window[:-1]`` and targets
``window[1:]``; windows shorter than that are padded and the padding is masked out of the loss.
The model is causal, so padding at the end never changes the predictions at valid positions.
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from ssmsignal.models._mulaw import SILENCE_CODE, mu_law_encode

from ._training import move_to_device

__all__ = ["check_waveforms", "recording_codes", "train_batches", "eval_batches",
           "masked_nll", "mean_nll_bits"]

LOG2 = math.log(2.0)


def check_waveforms(waveforms, name="waveforms"):
    """Validate audio: a list of 1-D float arrays in [-1, 1] (a 2-D array counts as rows).

    Returns
    -------
    list of numpy.ndarray
        float32 copies.
    """
    if isinstance(waveforms, np.ndarray) and waveforms.ndim == 2:
        waveforms = list(waveforms)
    elif isinstance(waveforms, np.ndarray) and waveforms.ndim == 1 and waveforms.dtype != object:
        raise ValueError(f"{name} must be a list of 1-D arrays or a 2-D array (n_recordings, "
                         "n_samples); got one 1-D array: wrap it in a list")
    if not isinstance(waveforms, (list, tuple, np.ndarray)) or len(waveforms) == 0:
        raise ValueError(f"{name} must be a non-empty list of 1-D float arrays")
    out = []
    for i, w in enumerate(waveforms):
        w = np.asarray(w, dtype=np.float32)
        if w.ndim != 1:
            raise ValueError(f"{name}[{i}] must be 1-D (mono audio), got shape {w.shape}")
        if w.size < 2:
            raise ValueError(f"{name}[{i}] has {w.size} samples; at least 2 are needed")
        if not np.isfinite(w).all():
            raise ValueError(f"{name}[{i}] contains NaN or inf")
        if np.abs(w).max() > 1.0 + 1e-6:
            raise ValueError(f"{name}[{i}] exceeds [-1, 1] (max |x| = {np.abs(w).max():.3g}); "
                             "scale the audio to [-1, 1] first")
        out.append(w)
    return out


def recording_codes(waveforms):
    """Per recording: int64 mu-law codes with the start code in front (``n + 1`` tokens)."""
    return [np.concatenate([[SILENCE_CODE], mu_law_encode(w)]) for w in waveforms]


def _pad_batch(windows, length, labels, index):
    """Stack token windows into ``(inputs, targets, mask, labels)`` of ``length - 1`` steps."""
    tokens = np.full((len(windows), length), SILENCE_CODE, dtype=np.int64)  # (B, S + 1)
    valid = np.zeros((len(windows), length - 1), dtype=bool)  # (B, S)
    for row, w in enumerate(windows):
        tokens[row, :len(w)] = w
        valid[row, :len(w) - 1] = True
    tokens = torch.from_numpy(tokens)
    lab = None if labels is None else torch.as_tensor(labels[index], dtype=torch.long)
    return tokens[:, :-1], tokens[:, 1:], torch.from_numpy(valid), lab


def train_batches(codes, labels, segment_length, batch_size, generator):
    """One epoch of random crops, ``ceil(n / segment_length)`` per recording, shuffled.

    Returns
    -------
    list of tuple
        ``(inputs (B, S), targets (B, S), mask (B, S), labels (B,) or None)``.
    """
    seg = int(segment_length)
    items = []
    for i, c in enumerate(codes):
        for _ in range(max(1, math.ceil((len(c) - 1) / seg))):
            start = int(torch.randint(0, max(1, len(c) - seg), (1,), generator=generator))
            items.append((i, start))
    order = torch.randperm(len(items), generator=generator).tolist()
    batches = []
    for b in range(0, len(order), int(batch_size)):
        chosen = [items[k] for k in order[b:b + int(batch_size)]]
        windows = [codes[i][s:s + seg + 1] for i, s in chosen]
        batches.append(_pad_batch(windows, seg + 1, labels, [i for i, _ in chosen]))
    return batches


def eval_batches(codes, labels, batch_size):
    """Whole recordings sorted by length and padded per batch (deterministic)."""
    order = np.argsort([len(c) for c in codes], kind="stable")
    batches = []
    for b in range(0, len(order), int(batch_size)):
        idx = order[b:b + int(batch_size)].tolist()
        windows = [codes[i] for i in idx]
        batches.append(_pad_batch(windows, max(len(w) for w in windows), labels, idx))
    return batches


def masked_nll(module, batch, dt_scale=1.0):
    """Mean cross-entropy (nats per sample) over the unmasked targets of one batch."""
    inputs, targets, mask, labels = batch
    logits = module(inputs, labels, dt_scale=dt_scale)  # (B, S, C)
    nll = F.cross_entropy(logits.float().transpose(1, 2), targets, reduction="none")  # (B, S)
    return (nll * mask).sum() / mask.sum().clamp(min=1)


@torch.no_grad()
def mean_nll_bits(module, batches, device, dt_scale=1.0):
    """NLL in bits per sample over every unmasked target of ``batches``."""
    was_training = module.training
    module.eval()
    total, count = 0.0, 0
    for batch in batches:
        batch = move_to_device(batch, device)
        n = int(batch[2].sum())
        total += float(masked_nll(module, batch, dt_scale)) * n
        count += n
    module.train(was_training)
    return total / max(count, 1) / LOG2
