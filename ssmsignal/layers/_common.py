"""Pieces shared by the SSM layers: input checks, ``dt_scale`` handling, parameter marking.

Optimizer groups
----------------
SSM parameters (state matrix, input matrix, step size) train best with a smaller learning rate
and no weight decay (S4 paper, App. D). Every layer marks them with the attribute
``param._ssm_param = True`` and, when the layer got ``lr=...``, ``param._optim = {"lr": lr,
"weight_decay": 0.0}``. :func:`ssm_parameter_groups` turns a model into optimizer groups.
"""
from __future__ import annotations

import math

import torch
from torch import nn

__all__ = ["GatedOutput", "check_sequence", "check_step", "dt_scale_tensor",
           "mark_ssm_parameter", "ssm_parameter_groups"]


def mark_ssm_parameter(param: nn.Parameter, lr: float | None = None) -> nn.Parameter:
    """Mark ``param`` as an SSM parameter (own optimizer group, no weight decay).

    Parameters
    ----------
    param : torch.nn.Parameter
        The parameter to mark (modified in place and returned).
    lr : float, optional
        Learning rate for this parameter; ``None`` means the model's base rate.
    """
    param._ssm_param = True
    param._optim = {"weight_decay": 0.0} if lr is None else {"weight_decay": 0.0, "lr": float(lr)}
    return param


def ssm_parameter_groups(module: nn.Module, lr: float, weight_decay: float = 0.0,
                         ssm_lr: float | None = None) -> list[dict]:
    """Split ``module``'s trainable parameters into optimizer groups.

    Parameters
    ----------
    module : torch.nn.Module
        Any model containing ssmsignal layers.
    lr : float
        Base learning rate (all other parameters).
    weight_decay : float
        Weight decay for the other parameters (SSM parameters get 0).
    ssm_lr : float, optional
        Learning rate for SSM parameters that carry no own ``lr``; default ``lr``.

    Returns
    -------
    list of dict
        Groups for ``torch.optim.AdamW(groups)``: first the ordinary parameters, then one group
        per distinct SSM learning rate (empty groups are left out).

    Examples
    --------
    >>> from ssmsignal.layers import S4D, ssm_parameter_groups
    >>> layer = S4D(8, d_state=4)
    >>> opt = torch.optim.AdamW(ssm_parameter_groups(layer, lr=3e-3, weight_decay=0.05,
    ...                                              ssm_lr=1e-3))
    >>> [len(g["params"]) for g in opt.param_groups]
    [4, 4]
    """
    plain, ssm = [], {}
    for p in module.parameters():
        if not p.requires_grad:
            continue
        if getattr(p, "_ssm_param", False):
            p_lr = getattr(p, "_optim", {}).get("lr", lr if ssm_lr is None else ssm_lr)
            ssm.setdefault(p_lr, []).append(p)
        else:
            plain.append(p)
    groups = [{"params": plain, "lr": lr, "weight_decay": weight_decay}] if plain else []
    groups += [{"params": ps, "lr": g_lr, "weight_decay": 0.0} for g_lr, ps in ssm.items()]
    return groups


def check_sequence(x: torch.Tensor, d_model: int, name: str) -> None:
    """Raise a clear error unless ``x`` is a floating ``(batch, length, d_model)`` tensor."""
    if not isinstance(x, torch.Tensor) or x.dim() != 3 or x.shape[-1] != d_model:
        shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f"{name} expects input of shape (batch, length, {d_model}), got {shape}")
    if x.shape[1] < 1:
        raise ValueError(f"{name} got an empty sequence (length 0)")
    if not x.is_floating_point():
        raise TypeError(f"{name} expects a floating-point input, got {x.dtype}")


def check_step(x_t: torch.Tensor, d_model: int, name: str) -> None:
    """Raise a clear error unless ``x_t`` is a floating ``(batch, d_model)`` tensor."""
    if not isinstance(x_t, torch.Tensor) or x_t.dim() != 2 or x_t.shape[-1] != d_model:
        shape = tuple(x_t.shape) if isinstance(x_t, torch.Tensor) else type(x_t).__name__
        raise ValueError(f"{name}.step expects input of shape (batch, {d_model}), got {shape}")
    if not x_t.is_floating_point():
        raise TypeError(f"{name}.step expects a floating-point input, got {x_t.dtype}")


def dt_scale_tensor(dt_scale, batch: int, like: torch.Tensor) -> float | torch.Tensor:
    """Validate ``dt_scale`` (= fs_train / fs_input).

    Returns a Python float, or a ``(batch,)`` tensor on ``like``'s device and dtype when
    ``dt_scale`` is a tensor with one value per sequence (a 0-d tensor becomes a float).
    """
    if isinstance(dt_scale, torch.Tensor):
        if dt_scale.dim() == 0:
            dt_scale = float(dt_scale)
        else:
            if dt_scale.shape != (batch,):
                raise ValueError(f"dt_scale tensor must have shape ({batch},) (one value per "
                                 f"sequence), got {tuple(dt_scale.shape)}")
            s = dt_scale.to(device=like.device, dtype=like.dtype)  # (batch,)
            if not bool(torch.isfinite(s).all()) or bool((s <= 0).any()):
                raise ValueError("dt_scale must be finite and > 0 (it is fs_train / fs_input)")
            return s
    try:
        s = float(dt_scale)
    except (TypeError, ValueError):
        raise TypeError(f"dt_scale must be a float or a (batch,) tensor, got "
                        f"{type(dt_scale).__name__}") from None
    if not math.isfinite(s) or s <= 0:
        raise ValueError(f"dt_scale must be finite and > 0 (it is fs_train / fs_input), got {s}")
    return s


class GatedOutput(nn.Module):
    """Activation, dropout, then a position-wise linear map to ``2 H`` and a GLU (S4 papers).

    Parameters
    ----------
    d_model : int
        Number of channels H.
    dropout : float
        Dropout probability after the activation.
    """

    def __init__(self, d_model: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.activation = nn.GELU()
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.linear = nn.Linear(d_model, 2 * d_model)
        self.glu = nn.GLU(dim=-1)

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        """Map ``(..., H)`` to ``(..., H)`` position-wise."""
        return self.glu(self.linear(self.dropout(self.activation(y))))  # (..., H)
