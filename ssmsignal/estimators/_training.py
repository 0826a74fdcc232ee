"""The one training loop shared by every estimator (classifiers, regressors, the generator).

:func:`train_module` knows nothing about labels or audio: it receives a torch module, a loss
callable and a factory of mini-batches, and runs AdamW with a cosine learning-rate schedule
with linear warm-up, gradient clipping, optional bf16 autocast on CUDA, per-epoch validation
with early stopping, and a tqdm progress bar. It returns the per-epoch history and the best
weights (already loaded into the module).

Parameters of the state-space layers (A, B, Δ: the ones the layers mark with
``_ssm_param = True``) go to their own optimizer group
with a lower learning rate and no weight decay, as in Gu et al. (2022) "Efficiently Modeling
Long Sequences with Structured State Spaces": those parameters set the time scales of the
model and become unstable under the learning rate used for the dense layers.

Examples
--------
>>> import torch
>>> from ssmsignal.estimators._training import TrainConfig, train_module
>>> net = torch.nn.Linear(3, 1)
>>> X, Y = torch.randn(64, 3), torch.randn(64, 1)
>>> def batches(generator):  # a fresh shuffled epoch each call
...     order = torch.randperm(64, generator=generator)
...     return [(X[order[i:i + 16]], Y[order[i:i + 16]]) for i in range(0, 64, 16)]
>>> def loss_fn(module, batch):
...     x, y = batch
...     return torch.nn.functional.mse_loss(module(x), y)
>>> result = train_module(net, loss_fn, batches, TrainConfig(max_epochs=3, verbose=0,
...                                                          random_state=0))
>>> [sorted(row) for row in result.history][:1]
[['epoch', 'lr', 'time', 'train_loss']]
"""
from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

import torch

__all__ = ["TrainConfig", "TrainResult", "train_module", "resolve_device", "split_parameters",
           "move_to_device"]

logger = logging.getLogger(__name__)

@dataclass
class TrainConfig:
    """Settings of :func:`train_module` (the estimators fill it from their parameters).

    Parameters
    ----------
    max_epochs : int
        Number of passes over the training batches (fewer with early stopping).
    lr : float
        Peak learning rate of the dense parameters.
    ssm_lr : float or None
        Peak learning rate of the SSM parameters (no weight decay); None means ``lr``.
    weight_decay : float
        AdamW decoupled weight decay of the dense parameters (not biases / norms / SSM).
    warmup_fraction : float
        Fraction of all optimisation steps spent in linear warm-up, then cosine decay to 0.
    lr_schedule : bool
        False keeps the learning rates at ``lr`` / ``ssm_lr`` throughout (``partial_fit``).
    grad_clip : float or None
        Maximum global gradient norm; None disables clipping.
    n_iter_no_change : int or None
        Early stopping: stop after this many epochs without a better validation score and
        restore the best weights. None trains all epochs (and keeps the best weights when a
        validation set is given).
    device : str or torch.device
        ``"auto"`` (CUDA when available, else CPU), ``"cpu"``, ``"cuda"``, ``"cuda:1"``...
    random_state : int or None
        Seeds the batch order (the generator given to the batch factory) and the global torch
        RNG used by dropout, inside a forked RNG so the caller's state is untouched. None: a
        seed drawn from torch's global RNG (which advances, so unseeded runs differ).
    verbose : int
        0: silent; 1: one tqdm bar over epochs with the loss and validation score.
    mixed_precision : bool
        Use bf16 autocast on CUDA (ignored on CPU).
    description : str
        Label of the progress bar.
    max_time : float or None
        Time budget in seconds. After every epoch the number of epochs is re-planned as the
        epochs done plus as many more as fit in the remaining time at the last epoch's
        duration (never more than ``max_epochs``), and the cosine schedule is stretched or
        shrunk to end with that plan (a warm-up still running is re-sized to
        ``warmup_fraction`` of the plan). Training stops once the plan is reached. At least two
        epochs run (the first may include one-time costs such as kernel compilation).
    """

    max_epochs: int = 10
    lr: float = 1e-3
    ssm_lr: float | None = None
    weight_decay: float = 0.01
    warmup_fraction: float = 0.1
    lr_schedule: bool = True
    grad_clip: float | None = 1.0
    n_iter_no_change: int | None = None
    device: Any = "auto"
    random_state: int | None = None
    verbose: int = 0
    mixed_precision: bool = True
    description: str = "fit"
    max_time: float | None = None


@dataclass
class TrainResult:
    """What :func:`train_module` returns.

    Attributes
    ----------
    history : list of dict
        One dict per epoch: ``epoch``, ``train_loss``, ``lr``, ``time`` (seconds), and, with
        validation, ``val_loss`` / ``val_score`` (whatever the validation callable returned).
    best_state : dict
        ``state_dict`` (on the CPU) of the best epoch (the last one without validation); it is
        already loaded into the module.
    best_epoch : int
        Index (0-based within this call) of the epoch whose weights were kept.
    stopped_early : bool
        Whether early stopping or the ``max_time`` budget ended training before
        ``max_epochs``.
    optimizer : torch.optim.Optimizer
        The optimizer, for callers that continue training.
    """

    history: list = field(default_factory=list)
    best_state: dict | None = None
    best_epoch: int = -1
    stopped_early: bool = False
    optimizer: Any = None


def resolve_device(device) -> torch.device:
    """Turn ``"auto"`` into CUDA when available, else CPU; validate anything else."""
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"device={device!r} was requested but CUDA is not available; "
                           "use device='auto' or 'cpu'")
    return dev


def _is_ssm_param(param: torch.nn.Parameter) -> bool:
    """Layers mark A, B and Δ with ``_ssm_param = True`` (see ``ssmsignal.layers._common``)."""
    return bool(getattr(param, "_ssm_param", False)) or hasattr(param, "_optim")


def split_parameters(module: torch.nn.Module, lr: float, ssm_lr: float | None,
                     weight_decay: float) -> list[dict]:
    """AdamW parameter groups: decayed dense weights, undecayed biases/norms, SSM parameters.

    A parameter carrying an ``_optim`` attribute (set by the layers) lands in the SSM group
    (learning rate ``ssm_lr``, no weight decay).
    """
    ssm_lr = lr if ssm_lr is None else ssm_lr
    decay, no_decay, ssm = [], [], []
    for param in module.parameters():
        if not param.requires_grad:
            continue
        if _is_ssm_param(param):
            ssm.append(param)
        elif param.ndim <= 1:  # biases, norm scales, D skip vectors
            no_decay.append(param)
        else:
            decay.append(param)
    groups = [
        {"params": decay, "lr": lr, "weight_decay": weight_decay, "name": "dense"},
        {"params": no_decay, "lr": lr, "weight_decay": 0.0, "name": "no_decay"},
        {"params": ssm, "lr": ssm_lr, "weight_decay": 0.0, "name": "ssm"},
    ]
    return [g for g in groups if g["params"]]


def _lr_factor(step: int, total: int, warmup: int) -> float:
    """Linear warm-up over ``warmup`` steps, then cosine decay to 0 at ``total``."""
    if warmup > 0 and step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


def move_to_device(batch, device: torch.device):
    """Move a tensor, or a tuple/list/dict of tensors, to ``device`` (non-blocking)."""
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, (list, tuple)):
        return type(batch)(move_to_device(b, device) for b in batch)
    if isinstance(batch, dict):
        return {k: move_to_device(v, device) for k, v in batch.items()}
    return batch


def _autocast(device: torch.device, enabled: bool):
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16,
                          enabled=enabled and device.type == "cuda")


def _cpu_state(module: torch.nn.Module) -> dict:
    return {k: v.detach().to("cpu", copy=True) for k, v in module.state_dict().items()}


def train_module(module: torch.nn.Module,
                 loss_fn: Callable[[torch.nn.Module, Any], torch.Tensor],
                 make_batches: Callable[[torch.Generator], Iterable],
                 config: TrainConfig,
                 validate: Callable[[torch.nn.Module], dict] | None = None,
                 optimizer: torch.optim.Optimizer | None = None) -> TrainResult:
    """Train ``module`` in place and return its history and best weights.

    Parameters
    ----------
    module : torch.nn.Module
        Moved to the resolved device before training (it stays there).
    loss_fn : callable
        ``loss_fn(module, batch) -> scalar tensor``; ``batch`` is what ``make_batches`` yields,
        already moved to the device (tensors, or tuples/lists/dicts of tensors).
    make_batches : callable
        ``make_batches(generator) -> iterable of batches`` for ONE epoch; called once per epoch
        with a seeded CPU ``torch.Generator`` to shuffle with. The iterable must have a ``len``
        (a list is fine) so that the schedule knows the number of steps.
    config : TrainConfig
        See :class:`TrainConfig`.
    validate : callable, optional
        ``validate(module) -> dict`` run after every epoch (in eval mode, under no_grad and the
        same autocast). It must contain ``"val_score"`` (higher is better), which drives early
        stopping and the choice of the best weights; other keys (e.g. ``"val_loss"``) are
        recorded in the history.
    optimizer : torch.optim.Optimizer, optional
        Continue with this optimizer (warm start): its moments are kept, its groups' learning
        rates are set back to ``config.lr`` / ``config.ssm_lr``. By default a new AdamW.

    Returns
    -------
    TrainResult
    """
    device = resolve_device(config.device)
    module.to(device)
    if optimizer is None:
        optimizer = torch.optim.AdamW(
            split_parameters(module, config.lr, config.ssm_lr, config.weight_decay),
            betas=(0.9, 0.98))
    else:  # continue: the configured rates, not where the previous run's schedule left them
        _move_optimizer_state(optimizer, device)
        ssm_lr = config.lr if config.ssm_lr is None else config.ssm_lr
        for group in optimizer.param_groups:
            group["lr"] = ssm_lr if group.get("name") == "ssm" else config.lr
    base_lrs = [g["lr"] for g in optimizer.param_groups]
    result = TrainResult(optimizer=optimizer)
    seed = config.random_state
    if seed is None:  # drawn outside the fork: it advances the caller's RNG, so runs differ
        seed = int(torch.randint(0, 2**62, (1,)).item())
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        generator = torch.Generator().manual_seed(seed)
        _run_epochs(module, loss_fn, make_batches, config, validate, optimizer, base_lrs,
                    device, generator, result)
    return result


def _run_epochs(module, loss_fn, make_batches, config, validate, optimizer, base_lrs, device,
                generator, result):
    from tqdm.auto import tqdm

    best_score, since_best, step = -math.inf, 0, 0
    total_steps = None
    planned = config.max_epochs  # lowered by max_time
    run_started = time.perf_counter()
    bar = tqdm(range(config.max_epochs), desc=config.description, unit="epoch",
               disable=config.verbose <= 0, leave=True, dynamic_ncols=True)
    for epoch in bar:
        started = time.perf_counter()
        batches = make_batches(generator)
        if total_steps is None:
            steps_per_epoch = max(1, len(batches))
            total_steps = steps_per_epoch * config.max_epochs
            warmup = int(round(config.warmup_fraction * total_steps))
        module.train()
        loss_sum, n_batches = 0.0, 0
        for batch in batches:
            factor = _lr_factor(step, total_steps, warmup) if config.lr_schedule else 1.0
            for group, base in zip(optimizer.param_groups, base_lrs):
                group["lr"] = base * factor
            batch = move_to_device(batch, device)
            with _autocast(device, config.mixed_precision):
                loss = loss_fn(module, batch)
            if not torch.isfinite(loss):
                raise FloatingPointError(
                    f"training loss became {loss.item()} at epoch {epoch}; lower lr/ssm_lr or "
                    "check the inputs for extreme values")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if config.grad_clip is not None:
                torch.nn.utils.clip_grad_norm_(module.parameters(), config.grad_clip)
            optimizer.step()
            loss_sum += float(loss.detach())
            n_batches += 1
            step += 1
        row = {"epoch": epoch, "train_loss": loss_sum / max(1, n_batches),
               "lr": optimizer.param_groups[0]["lr"]}
        if validate is not None:
            module.eval()
            with torch.no_grad(), _autocast(device, config.mixed_precision):
                row.update(validate(module))
            score = row["val_score"]
            if score > best_score:
                best_score, since_best = score, 0
                result.best_state, result.best_epoch = _cpu_state(module), epoch
            else:
                since_best += 1
        row["time"] = time.perf_counter() - started
        result.history.append(row)
        if config.max_time is not None:
            planned = _plan_epochs(epoch, row["time"], time.perf_counter() - run_started,
                                   config)
            total_steps = steps_per_epoch * planned  # the cosine now ends with the plan
            if step < warmup:  # still warming up: over warmup_fraction of the plan instead
                warmup = int(round(config.warmup_fraction * total_steps))
        bar.set_postfix({k: f"{v:.4g}" for k, v in row.items()
                         if k in ("train_loss", "val_loss", "val_score")})
        logger.debug("epoch %d: %s", epoch, row)
        if (validate is not None and config.n_iter_no_change is not None
                and since_best >= config.n_iter_no_change) or epoch + 1 >= planned:
            result.stopped_early = epoch + 1 < config.max_epochs
            break
    bar.close()
    if result.best_state is None:
        result.best_state, result.best_epoch = _cpu_state(module), len(result.history) - 1
    else:
        module.load_state_dict(result.best_state)
    module.eval()


def _plan_epochs(epoch: int, epoch_time: float, elapsed: float, config: TrainConfig) -> int:
    """Epochs to run in all under ``config.max_time`` (at least the ``epoch + 1`` done).

    The first epoch may carry one-time costs (kernel compilation, FFT plans: 47 s against 9 s
    for the next ones in one GPU run), so it never ends training on its own: a second epoch
    is always measured when ``max_epochs`` allows.
    """
    more = math.floor(max(0.0, config.max_time - elapsed) / max(epoch_time, 1e-9))
    if epoch == 0:
        more = max(more, 1)
    return int(min(config.max_epochs, epoch + 1 + more))


def _move_optimizer_state(optimizer: torch.optim.Optimizer, device: torch.device) -> None:
    for state in optimizer.state.values():
        for key, value in state.items():
            if isinstance(value, torch.Tensor) and key != "step":
                state[key] = value.to(device)

