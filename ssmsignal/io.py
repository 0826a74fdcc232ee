"""Saving and loading fitted estimators: safetensors weights + a JSON config, atomically.

A saved model is a DIRECTORY::

    path/
      config.json          # format version, estimator class, parameters, fitted attributes
      model.safetensors    # the torch module's state_dict (float32, CPU)

It is written to a temporary sibling directory (``.<name>.tmp-<random>`` in the same parent
folder) and renamed into place with :func:`os.replace`, so a reader never sees a half-written
model. Overwriting an existing saved model first renames the old one aside, then deletes it.
Overwriting anything that is not a saved ssmsignal model (a file, or a directory without
``config.json``) is refused. :func:`load_estimator` rebuilds the classifiers and regressors;
a class with another network reads the folder with :func:`read_saved` and rebuilds itself with
:func:`restore_estimator` (``AudioGenerator.load`` does).

Class labels keep their type: ``classes_`` is stored with its numpy dtype; integer, float,
boolean and string labels come back as the same dtype; object arrays must hold JSON types
(str, int, float, bool) and come back as an object array of those.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
import uuid
from pathlib import Path

import numpy as np
import torch

__all__ = ["save_estimator", "load_estimator", "read_saved", "restore_estimator",
           "encode_labels", "decode_labels", "FORMAT_VERSION"]

FORMAT_VERSION = 1
CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
# Fitted attributes stored in config.json besides classes_ and the backbone config.
_FITTED = ("sampling_rate_", "n_channels_", "n_features_in_", "per_step_", "history_",
           "n_epochs_", "n_outputs_", "_y_ndim")


def _json_scalar(value):
    """numpy scalars -> Python scalars (JSON cannot hold numpy types)."""
    if isinstance(value, np.generic):
        return value.item()
    return value


def _json_value(value):
    """:func:`_json_scalar` also inside dicts, lists, tuples and arrays (e.g. ``augment``)."""
    if isinstance(value, dict):
        return {k: _json_value(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, np.ndarray)):
        return [_json_value(v) for v in list(value)]
    return _json_scalar(value)


def encode_labels(labels: np.ndarray) -> dict:
    """``{"dtype": ..., "values": [...]}`` for a 1-D label array (see the module docstring)."""
    labels = np.asarray(labels)
    values = [_json_scalar(v) for v in labels.tolist()]
    for v in values:
        if not isinstance(v, (str, int, float, bool)):
            raise TypeError(f"cannot save class label {v!r} of type {type(v).__name__}: "
                            "labels must be str, int, float or bool to be stored as JSON "
                            "(pickle the estimator instead)")
    return {"dtype": labels.dtype.str if labels.dtype.kind != "O" else "object",
            "values": values}


def decode_labels(record: dict) -> np.ndarray:
    """Inverse of :func:`encode_labels`."""
    if record["dtype"] == "object":
        out = np.empty(len(record["values"]), dtype=object)
        out[:] = record["values"]
        return out
    return np.asarray(record["values"], dtype=np.dtype(record["dtype"]))


def _encode_param(name, value):
    if name == "class_weight" and isinstance(value, dict):
        return {"__class_weight__": [[_json_scalar(k), float(v)] for k, v in value.items()]}
    if name == "random_state" and isinstance(value, np.random.RandomState):
        return None  # not JSON-able; the fitted weights do not depend on it any more
    if isinstance(value, torch.device):
        return str(value)
    value = _json_value(value)
    json.dumps(value)  # raises TypeError for anything else
    return value


def _decode_param(value):
    if isinstance(value, dict) and "__class_weight__" in value:
        return {k: w for k, w in value["__class_weight__"]}
    return value


def _estimator_config(estimator) -> dict:
    fitted = {}
    for name in _FITTED:
        if hasattr(estimator, name):
            value = getattr(estimator, name)
            fitted[name] = ([{k: _json_scalar(v) for k, v in row.items()} for row in value]
                            if name == "history_" else _json_scalar(value))
    config = {
        "format_version": FORMAT_VERSION,
        "estimator": type(estimator).__name__,
        "params": {k: _encode_param(k, v) for k, v in estimator.get_params(deep=False).items()},
        "backbone": estimator.module_.config.to_dict(),
        "fitted": fitted,
    }
    if hasattr(estimator, "classes_"):
        config["classes_"] = encode_labels(estimator.classes_)
    weights = getattr(estimator, "_class_weights", None)
    if weights is not None:
        config["class_weights"] = [float(w) for w in weights]
    return config


def _is_saved_model(path: Path) -> bool:
    return path.is_dir() and (path / CONFIG_NAME).is_file()


def save_estimator(estimator, path) -> Path:
    """Write a fitted estimator to the directory ``path`` atomically; return the path.

    Raises
    ------
    sklearn.exceptions.NotFittedError
        If the estimator is not fitted.
    FileExistsError
        If ``path`` exists and is not a saved ssmsignal model.
    """
    from safetensors.torch import save
    from sklearn.utils.validation import check_is_fitted

    check_is_fitted(estimator, "module_")
    path = Path(path)
    if path.exists() and not _is_saved_model(path):
        raise FileExistsError(f"{path} exists and is not a saved ssmsignal model; "
                              "choose another path or remove it")
    parent = path.parent if str(path.parent) else Path(".")
    parent.mkdir(parents=True, exist_ok=True)
    config = _estimator_config(estimator)
    state = {k: v.detach().to("cpu", torch.float32 if v.is_floating_point() else v.dtype)
             .contiguous() for k, v in estimator.module_.state_dict().items()}
    # mkdir (not mkdtemp, which makes 0700 folders) so the saved model gets the umask's mode
    staging = parent / f".{path.name}.tmp-{uuid.uuid4().hex[:12]}"
    staging.mkdir()
    old = None
    try:
        # safetensors' save_file creates 0600 files; writing its bytes here honours the umask
        (staging / WEIGHTS_NAME).write_bytes(save(state, metadata={"format": "pt"}))
        with open(staging / CONFIG_NAME, "w", encoding="utf-8") as fh:
            json.dump(config, fh, indent=1)
        if path.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{path.name}.old-", dir=parent))
            os.replace(path, old / "model")
        os.replace(staging, path)
    except BaseException:
        if old is not None and (old / "model").exists() and not path.exists():
            os.replace(old / "model", path)  # the new model did not land: keep the old one
        shutil.rmtree(staging, ignore_errors=True)
        raise
    finally:
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    return path


def read_saved(path) -> tuple[dict, dict]:
    """Read a model directory written by :func:`save_estimator` (any estimator class).

    Parameters
    ----------
    path : str or Path
        The saved model directory.

    Returns
    -------
    config : dict
        The parsed ``config.json``, its format version checked.
    state_dict : dict of str to torch.Tensor
        The weights of ``model.safetensors``, on the CPU.

    Raises
    ------
    FileNotFoundError
        If ``path`` is not a directory holding both files.
    ValueError
        If ``config.json`` is not JSON or has a format version this ssmsignal cannot read.
    """
    from safetensors.torch import load_file

    path = Path(path)
    if not _is_saved_model(path) or not (path / WEIGHTS_NAME).is_file():
        raise FileNotFoundError(f"{path} is not a saved ssmsignal model (expected a directory "
                                f"holding {CONFIG_NAME} and {WEIGHTS_NAME})")
    try:
        with open(path / CONFIG_NAME, encoding="utf-8") as fh:
            config = json.load(fh)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path / CONFIG_NAME} is not valid JSON: {exc}") from None
    if config.get("format_version") != FORMAT_VERSION:
        raise ValueError(f"{path}: unsupported format_version {config.get('format_version')!r}"
                         f" (this ssmsignal reads version {FORMAT_VERSION})")
    return config, load_file(str(path / WEIGHTS_NAME))


def restore_estimator(cls, config: dict, module: torch.nn.Module, device="cpu", params=None):
    """Rebuild a fitted estimator from a :func:`read_saved` config and its module.

    Parameters
    ----------
    cls : type
        The estimator class (``config["estimator"]`` names it).
    config : dict
        As returned by :func:`read_saved`.
    module : torch.nn.Module
        The network, its weights already loaded; it becomes ``module_`` (moved to ``device``,
        in eval mode).
    device : str, default="cpu"
        ``"auto"``: CUDA when available.
    params : dict, optional
        Constructor parameters to use instead of the saved ones (for values that JSON does not
        keep as they were, e.g. a tuple that came back as a list).

    Returns
    -------
    estimator
        ``cls(**params)`` with the saved fitted attributes and ``classes_``.
    """
    from ssmsignal.estimators._training import resolve_device

    if params is None:
        params = {k: _decode_param(v) for k, v in config["params"].items()}
    estimator = cls(**params)
    for key, value in config["fitted"].items():
        setattr(estimator, key, value)
    if "classes_" in config:
        estimator.classes_ = decode_labels(config["classes_"])
    if "class_weights" in config:
        estimator._class_weights = np.asarray(config["class_weights"], dtype=np.float32)
    estimator.module_ = module.to(resolve_device(device)).eval()
    return estimator


def load_estimator(path, expected_class=None, device: str = "cpu"):
    """Restore an estimator saved by :func:`save_estimator`.

    Parameters
    ----------
    path : str or Path
        The saved model directory.
    expected_class : type, optional
        Raise TypeError when the saved estimator is of another class.
    device : str, default="cpu"
        Where to put the module (``"auto"``: CUDA when available).

    Notes
    -----
    A class that restores itself differently (the :class:`~ssmsignal.AudioGenerator`) is
    handed to its own ``load``.
    """
    from ssmsignal import estimators
    from ssmsignal.estimators._base import BaseSSMEstimator
    from ssmsignal.models.backbone import BackboneConfig, SequenceModel

    config, state = read_saved(path)
    name = config.get("estimator")
    cls = getattr(estimators, name, None) if name in estimators.__all__ else None
    if cls is None:
        raise ValueError(f"{path}: unknown estimator class {name!r}")
    if expected_class is not None and not issubclass(cls, expected_class):
        raise TypeError(f"{path} holds a {name}, not a {expected_class.__name__}; "
                        f"use {name}.load")
    if not issubclass(cls, BaseSSMEstimator):
        return cls.load(path, device=device)
    module = SequenceModel(BackboneConfig(**config["backbone"]))
    module.load_state_dict(state)
    estimator = restore_estimator(cls, config, module, device)
    estimator._optimizer = None
    return estimator
