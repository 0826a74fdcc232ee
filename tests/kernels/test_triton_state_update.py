"""Triton selective_state_update: float64 reference, in-place update, and agreement with a scan.

CPU (CI): tiny cases under ``TRITON_INTERPRET=1`` in a subprocess (the variable must be set
before triton is first imported). GPU: ``-m cuda``.
"""

from __future__ import annotations

import json
import sys

import pytest
import torch
from test_triton_selective_scan import rel_err, run_interpreted

from ssmsignal.kernels import reference

#: Relative error bounds per input dtype (one step: float32 arithmetic, output rounding).
TOL = {torch.float32: 1e-5, torch.bfloat16: 1e-2, torch.float16: 2e-3}


def make_step(b, d, N, G, dtype, device, seed, full=True, strided=False):
    gen = torch.Generator().manual_seed(seed)

    def rnd(*shape):
        return torch.randn(*shape, generator=gen).to(device)

    G_B, G_C = G if isinstance(G, tuple) else (G, G)  # 0: no group axis

    def bc(groups):
        return (b, N) if groups == 0 else (b, groups, N)

    state = rnd(b, d, N)
    if strided:  # a view with non-unit strides, as a cache slice would be
        state = rnd(b, N, 2 * d).transpose(1, 2)[:, ::2]
    args = dict(x=rnd(b, d).to(dtype), dt=(rnd(b, d) * 0.5 - 1).to(dtype),
                A=-(torch.rand(d, N, generator=gen) * 3 + 0.05).to(device),
                B=rnd(*bc(G_B)).to(dtype), C=rnd(*bc(G_C)).to(dtype), D=rnd(d) if full else None,
                z=rnd(b, d).to(dtype) if full else None, dt_bias=rnd(d) * 0.3 if full else None)
    return state, args


def step_errors(b, d, N, G, dtype, device, seed, full=True, strided=False):
    from ssmsignal.kernels.triton import _common
    from ssmsignal.kernels.triton.selective_state_update import selective_state_update as tri

    _common.POISON_OUTPUTS = True
    state, args = make_step(b, d, N, G, dtype, device, seed, full, strided)
    ref_state = state.double().clone()
    ref_args = {k: (v.double() if v is not None else None) for k, v in args.items()}
    y_ref = reference.selective_state_update(ref_state, **ref_args, dt_softplus=True)
    ptr = state.data_ptr()
    y = tri(state, **args, dt_softplus=True)
    assert state.data_ptr() == ptr and y.dtype == args["x"].dtype and y.shape == (b, d)
    return {"y": rel_err(y, y_ref), "state": rel_err(state, ref_state)}


#: (b, d, N, G, full, strided); G = (G_B, G_C) gives B and C different group axes
INTERPRET_CASES = [(2, 5, 4, 0, True, False), (3, 37, 16, 1, True, True), (2, 12, 3, 3, False, False),
                   (2, 12, 5, (0, 4), True, False)]


def _interpret_main():
    out = [step_errors(b, d, N, G, torch.float32, "cpu", 10 + i, full, strided)
           for i, (b, d, N, G, full, strided) in enumerate(INTERPRET_CASES)]
    print(json.dumps(out))


@pytest.mark.interpret
def test_interpreter_matches_float64_reference():
    results = run_interpreted(__file__)
    assert len(results) == len(INTERPRET_CASES)
    for errs in results:
        assert max(errs.values()) < TOL[torch.float32], errs


cuda = pytest.mark.cuda


@cuda
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16], ids=str)
@pytest.mark.parametrize("b,d,N,G,full,strided", [(1, 1, 1, 0, True, False),
                                                   (4, 1536, 16, 1, True, False),
                                                   (3, 100, 5, 4, False, True),
                                                   (2, 70, 64, 2, True, True)])
def test_gpu_matches_float64_reference(dtype, b, d, N, G, full, strided):
    errs = step_errors(b, d, N, G, dtype, "cuda", seed=d + N, full=full, strided=strided)
    assert max(errs.values()) < TOL[dtype], errs


@cuda
def test_gpu_steps_reproduce_the_scan():
    """L decoding steps from a zero state give the scan's outputs and last state."""
    from ssmsignal.kernels.triton.selective_scan import selective_scan
    from ssmsignal.kernels.triton.selective_state_update import selective_state_update
    gen = torch.Generator().manual_seed(5)
    b, d, L, N, G = 2, 40, 50, 16, 2
    u, delta, z = (torch.randn(b, d, L, generator=gen).cuda() for _ in range(3))
    A = -(torch.rand(d, N, generator=gen) + 0.1).cuda()
    B, C = (torch.randn(b, G, N, L, generator=gen).cuda() for _ in range(2))
    D, bias = torch.randn(d).cuda(), torch.randn(d).cuda()
    out, last = selective_scan(u, delta, A, B, C, D, z, bias, True, return_last_state=True)
    state = torch.zeros(b, d, N, device="cuda")
    ys = [selective_state_update(state, u[..., t], delta[..., t], A, B[..., t], C[..., t], D,
                                 z[..., t], bias, True) for t in range(L)]
    assert rel_err(torch.stack(ys, -1), out) < 1e-5 and rel_err(state, last) < 1e-5


if __name__ == "__main__" and "--interpret" in sys.argv:
    _interpret_main()
