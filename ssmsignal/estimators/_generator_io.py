"""Persistence and command line of :class:`AudioGenerator`.

Saving goes through :func:`ssmsignal.io.save_estimator` (the same directory format as the other
estimators: ``config.json`` + ``model.safetensors``, written atomically). Loading reads it with
:func:`ssmsignal.io.read_saved` and :func:`ssmsignal.io.restore_estimator`, like
:func:`ssmsignal.io.load_estimator`, but rebuilds :class:`SaShiMi` instead of the classifiers'
backbone.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

__all__ = ["load_generator", "generate_cli"]


def load_generator(cls, path, device="cpu"):
    """Restore an :class:`AudioGenerator` saved with ``save`` (same format as the estimators)."""
    from ssmsignal.io import read_saved, restore_estimator
    from ssmsignal.models.sashimi import SaShiMi

    config, state = read_saved(path)
    if config.get("estimator") != cls.__name__:
        raise TypeError(f"{path} holds a {config.get('estimator')}, not a {cls.__name__}")
    # saved before the `unet` parameter existed: the U-Net arrangement, the only one then
    module = SaShiMi(**{"unet": True, **config["backbone"]})
    module.load_state_dict(state)
    params = dict({"unet": True, **config["params"]},
                  pool=tuple(config["params"]["pool"]))  # JSON made the pool a list
    return restore_estimator(cls, config, module, device, params=params)


def generate_cli(args):
    """``ssmsignal generate``: sample from a saved generator, write ``sample_XX.wav`` files.

    Parameters
    ----------
    args : argparse.Namespace
        ``model`` (a folder written by ``AudioGenerator.save``), ``out`` (output folder),
        ``seconds`` and ``n``; optional ``random_state``, ``temperature``, ``top_p``,
        ``sampling_rate`` (Hz; another rate than the training one rescales Δ), ``label`` (for a
        conditional model) and ``device`` (default "cpu").

    Returns
    -------
    int
        Exit status 0. Each file is written atomically (a temporary file in the same folder,
        then ``os.replace``) and its path printed.
    """
    import soundfile

    if not Path(args.model).exists():
        raise FileNotFoundError(f"no saved model at {args.model}")
    from ._generator import AudioGenerator

    gen = AudioGenerator.load(args.model, device=getattr(args, "device", "cpu"))
    label = getattr(args, "label", None)
    labels = None
    if label is not None:
        if not gen.conditional:
            raise ValueError(f"a label ({label!r}) was given but {args.model} holds an "
                             "unconditional generator")
        labels = np.full(args.n, np.asarray(label, dtype=gen.classes_.dtype))
    rate = getattr(args, "sampling_rate", None)
    if rate is None:  # not `or`: a given rate of 0 must reach sample()'s check, not vanish
        rate = gen.sampling_rate_
    audio = gen.sample(n_samples=args.n, n_seconds=args.seconds,
                       random_state=getattr(args, "random_state", None),
                       temperature=getattr(args, "temperature", 1.0),
                       top_p=getattr(args, "top_p", 1.0), labels=labels, sampling_rate=rate)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for i, wave in enumerate(audio):
        path = out / f"sample_{i:02d}.wav"
        tmp = out / f".{path.name}.tmp"
        soundfile.write(str(tmp), wave, int(round(rate)), subtype="PCM_16", format="WAV")
        os.replace(tmp, path)
        print(path)
    return 0
