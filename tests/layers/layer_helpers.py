"""Shared helpers for the layer tests: a layer factory and a step-by-step loop."""
import torch

from ssmsignal.layers import S4, S4D, Mamba

# Timescales long enough to be interesting, short enough that 1000 steps see dynamics.
_FACTORIES = {
    "s4d-zoh": lambda h, n: S4D(h, d_state=n, dt_min=0.05, dt_max=1.0),
    "s4d-bilinear": lambda h, n: S4D(h, d_state=n, dt_min=0.05, dt_max=1.0,
                                     discretization="bilinear", init="inv"),
    "s4": lambda h, n: S4(h, d_state=n, dt_min=0.05, dt_max=1.0),
    "mamba": lambda h, n: Mamba(h, d_state=n, d_conv=4, expand=2, dt_min=0.05, dt_max=1.0),
}
LAYER_KINDS = sorted(_FACTORIES)


def build_layer(kind: str, d_model: int = 3, d_state: int = 8, seed: int = 0,
                dtype=torch.float64) -> torch.nn.Module:
    """A freshly initialised layer (fixed seed) in ``dtype``."""
    torch.manual_seed(seed)
    return _FACTORIES[kind](d_model, d_state).to(dtype)


def step_loop(layer, x: torch.Tensor, dt_scale=1.0) -> torch.Tensor:
    """Run ``layer.step`` over ``x (b, L, H)`` from the initial state -> ``(b, L, H)``."""
    state = layer.initial_state(x.shape[0])
    ys = []
    for t in range(x.shape[1]):
        y, state = layer.step(x[:, t], state, dt_scale=dt_scale)  # (b, H)
        ys.append(y)
    return torch.stack(ys, dim=1)

