"""The shared training loop (ssmsignal.estimators._training)."""
import math

import pytest
import torch

from ssmsignal.estimators._training import (TrainConfig, _lr_factor, resolve_device,
                                            split_parameters, train_module)
from ssmsignal.layers import S4D


def _regression_problem(seed=0):
    gen = torch.Generator().manual_seed(seed)
    X = torch.randn(64, 3, generator=gen)
    Y = X @ torch.tensor([[1.0], [-2.0], [0.5]])
    return X, Y


def _batches(X, Y, size=16):
    def make(generator):
        order = torch.randperm(len(X), generator=generator)
        return [(X[order[i:i + size]], Y[order[i:i + size]]) for i in range(0, len(X), size)]
    return make


def _mse(module, batch):
    x, y = batch
    return torch.nn.functional.mse_loss(module(x), y)


def test_loss_decreases_and_history_rows():
    X, Y = _regression_problem()
    torch.manual_seed(0)
    net = torch.nn.Linear(3, 1)
    result = train_module(net, _mse, _batches(X, Y),
                          TrainConfig(max_epochs=30, lr=5e-2, random_state=0, weight_decay=0))
    losses = [row["train_loss"] for row in result.history]
    assert len(losses) == 30 and [row["epoch"] for row in result.history] == list(range(30))
    assert losses[-1] < 0.05 * losses[0]
    assert not net.training  # left in eval mode


def test_same_seed_same_weights_and_caller_rng_untouched():
    X, Y = _regression_problem()
    weights = []
    for _ in range(2):
        torch.manual_seed(0)
        net = torch.nn.Sequential(torch.nn.Linear(3, 8), torch.nn.Dropout(0.3),
                                  torch.nn.Linear(8, 1))
        before = torch.random.get_rng_state()
        train_module(net, _mse, _batches(X, Y), TrainConfig(max_epochs=3, random_state=7))
        assert torch.equal(before, torch.random.get_rng_state())
        weights.append(torch.cat([p.detach().flatten() for p in net.parameters()]))
    assert torch.equal(weights[0], weights[1])


def test_unseeded_runs_differ():
    X, Y = _regression_problem()
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(3, 8), torch.nn.Dropout(0.3),
                              torch.nn.Linear(8, 1))
    start = {k: v.clone() for k, v in net.state_dict().items()}
    weights = []
    for _ in range(2):  # the same initial weights, no seed, nothing reseeds in between
        net.load_state_dict(start)
        train_module(net, _mse, _batches(X, Y), TrainConfig(max_epochs=2))
        weights.append(torch.cat([p.detach().flatten() for p in net.parameters()]))
    assert not torch.equal(weights[0], weights[1])


def test_early_stopping_restores_best_weights():
    X, Y = _regression_problem()
    torch.manual_seed(0)
    net = torch.nn.Linear(3, 1)
    scores = iter([0.1, 0.9, 0.2, 0.3, 0.4, 0.5])  # best at epoch 1, then 3 worse epochs
    snapshots = []

    def validate(module):
        snapshots.append(module.weight.detach().clone())
        return {"val_score": next(scores)}

    result = train_module(net, _mse, _batches(X, Y),
                          TrainConfig(max_epochs=6, n_iter_no_change=3, random_state=0, lr=0.1),
                          validate=validate)
    assert result.stopped_early and len(result.history) == 5
    assert result.best_epoch == 1
    torch.testing.assert_close(net.weight.detach(), snapshots[1])


def test_ssm_parameters_get_own_group_without_decay():
    net = torch.nn.Sequential(torch.nn.Linear(4, 8), S4D(8, d_state=4))
    groups = split_parameters(net, lr=1e-2, ssm_lr=1e-3, weight_decay=0.1)
    by_name = {g["name"]: g for g in groups}
    ssm_ids = {id(p) for p in by_name["ssm"]["params"]}
    marked = {id(p) for p in net.parameters() if getattr(p, "_ssm_param", False)}
    assert ssm_ids == marked and marked
    assert by_name["ssm"]["lr"] == 1e-3 and by_name["ssm"]["weight_decay"] == 0.0
    assert by_name["dense"]["weight_decay"] == 0.1
    assert all(p.ndim >= 2 for p in by_name["dense"]["params"])
    n_total = sum(len(g["params"]) for g in groups)
    assert n_total == len(list(net.parameters()))


def test_schedule_warmup_then_cosine_to_zero():
    total, warmup = 100, 10
    factors = [_lr_factor(s, total, warmup) for s in range(total)]
    assert factors[0] == pytest.approx(0.1) and factors[9] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(factors[10:], factors[11:]))
    assert factors[-1] < 0.01
    assert _lr_factor(55, total, warmup) == pytest.approx(0.5 * (1 + math.cos(math.pi * 0.5)))


def test_constant_rate_and_continued_optimizer():
    X, Y = _regression_problem()
    net = torch.nn.Linear(3, 1)
    config = TrainConfig(max_epochs=2, lr=0.05, lr_schedule=False, random_state=0)
    first = train_module(net, _mse, _batches(X, Y), config)
    assert [row["lr"] for row in first.history] == [0.05, 0.05]
    first.optimizer.param_groups[0]["lr"] = 1e-9  # wherever a previous run left it
    again = train_module(net, _mse, _batches(X, Y), config, optimizer=first.optimizer)
    assert again.optimizer is first.optimizer and again.history[0]["lr"] == 0.05


def test_non_finite_loss_raises():
    X, Y = _regression_problem()
    net = torch.nn.Linear(3, 1)

    def bad_loss(module, batch):
        return _mse(module, batch) * float("nan")

    with pytest.raises(FloatingPointError, match="loss became nan"):
        train_module(net, bad_loss, _batches(X, Y), TrainConfig(max_epochs=1))


def test_resolve_device():
    assert resolve_device("cpu").type == "cpu"
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="CUDA is not available"):
            resolve_device("cuda")


def test_max_time_plans_the_epochs_and_ends_the_schedule():
    import time

    X, Y = _regression_problem()

    def slow_mse(module, batch):  # about 0.02 s per batch, 0.08 s per epoch
        time.sleep(0.02)
        return _mse(module, batch)
    net = torch.nn.Linear(3, 1)
    result = train_module(net, slow_mse, _batches(X, Y),
                          TrainConfig(max_epochs=100, lr=1e-2, random_state=0,
                                      warmup_fraction=0.0, max_time=0.6))
    assert 2 <= len(result.history) <= 12 and result.stopped_early
    # the cosine was re-planned to end with the budget (without it: still ~lr at epoch <= 12)
    assert result.history[-1]["lr"] < 0.5e-2
    assert result.history[0]["lr"] > 0.5e-2


def test_estimator_max_time(tones, tiny):
    from ssmsignal import S4Classifier

    X, y = tones
    clf = S4Classifier(**{**tiny, "max_epochs": 50}, max_time=1e-6).fit(X, y)
    # the budget was spent by the first epoch, whose time may hold one-time costs: one more
    assert len(clf.history_) == 2
    clf = S4Classifier(**{**tiny, "max_epochs": 1}, max_time=1e-6).fit(X, y)
    assert len(clf.history_) == 1
    with pytest.raises(ValueError, match="max_time"):
        S4Classifier(**tiny, max_time=0).fit(X, y)


def test_max_time_rescales_the_warmup_with_the_plan(monkeypatch):
    # max_epochs far above what the budget allows (the intended use): warm-up must shrink
    # with the plan too, else it spans the whole plan and the rate never decays
    from ssmsignal.estimators import _training

    monkeypatch.setattr(_training, "_plan_epochs", lambda epoch, t, elapsed, config: 5)
    X, Y = _regression_problem()
    result = train_module(torch.nn.Linear(3, 1), _mse, _batches(X, Y),
                          TrainConfig(max_epochs=100, lr=1e-2, random_state=0,
                                      warmup_fraction=0.1, max_time=60.0))
    lrs = [row["lr"] for row in result.history]  # last step of each epoch (4 steps each)
    assert len(lrs) == 5 and result.stopped_early
    assert lrs[1] > 0.5e-2  # warmed up (2 of the 20 planned steps), near the peak
    assert lrs[-1] < 0.02e-2  # the cosine ends with the plan
