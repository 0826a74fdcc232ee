"""The selective-scan backward's dB / dC partial sums (``kernels/triton/_scan_partials.py``)
against a float64 sum of the same partials: both layouts ((N, L) and ``PARTIALS_TN``'s
(L, NO, NI) with padded states), float32 and bfloat16 partials, a group size that is not a
multiple of the kernel's unroll, and bitwise repeatability (the sums' fixed order).

``torch_sum_partials`` runs in this process; ``sum_partials`` (Triton) in a subprocess under
``TRITON_INTERPRET=1`` (the variable must be set before triton is first imported).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch

#: (b, G, per_group, N, NO, NI, L): N = 6 pads to NP = 8 (states 6, 7 hold junk in the TN
#: layout); per_group 5 and 7 are not multiples of UNROLL = 4.
CASES = [(2, 3, 5, 6, 4, 2, 37), (1, 1, 7, 16, 4, 4, 1030)]


def make_partials(b, G, per_group, N, NO, NI, L, seed):
    """Partials ``(b, n_parts, N, L)`` in float64 and the same values laid out
    ``(b, n_parts, L, NO * NI)`` (state ``n = ni * NO + no`` at ``no * NI + ni``), NaN in the
    padded states: padding must never reach a sum."""
    gen = torch.Generator().manual_seed(seed)
    n_parts, NP = G * per_group, NO * NI
    plain = torch.randn(b, n_parts, N, L, generator=gen, dtype=torch.float64)
    tn = torch.full((b, n_parts, L, NP), float("nan"), dtype=torch.float64)
    for n in range(N):
        ni, no = divmod(n, NO)
        tn[:, :, :, no * NI + ni] = plain[:, :, n, :]
    return plain, tn


def expected(plain, G):
    b, n_parts, N, L = plain.shape
    return plain.view(b, G, n_parts // G, N, L).sum(2)  # (b, G, N, L) float64


def test_torch_sum_partials_both_layouts():
    from ssmsignal.kernels.triton._scan_partials import torch_sum_partials

    for i, (b, G, per_group, N, NO, NI, L) in enumerate(CASES):
        plain, tn = make_partials(b, G, per_group, N, NO, NI, L, seed=i)
        want = expected(plain, G)
        got = torch_sum_partials(plain, G, N, NO, NI, False)
        got_tn = torch_sum_partials(tn, G, N, NO, NI, True)
        assert got.shape == got_tn.shape == (b, G, N, L)
        assert torch.isfinite(got_tn).all()
        torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(got_tn, want, rtol=1e-12, atol=1e-12)


def _interpret_main():
    """Subprocess body: max relative error of each Triton sum against float64, as JSON."""
    from ssmsignal.kernels.triton._scan_partials import sum_partials

    results = []
    for i, (b, G, per_group, N, NO, NI, L) in enumerate(CASES):
        for tn in (False, True):
            for dtype in (torch.float32, torch.bfloat16):
                plain, tn_parts = make_partials(b, G, per_group, N, NO, NI, L, seed=10 + i)
                src = tn_parts if tn else plain
                parts = torch.stack([src, -2 * src]).to(dtype)  # (2, b, n_parts, ...)
                rounded = torch.stack([plain, -2 * plain]).to(dtype).double()
                first = sum_partials(parts, G, N, NO, NI, tn)
                again = sum_partials(parts, G, N, NO, NI, tn)
                errs = []
                for k, got in enumerate(first):
                    want = expected(rounded[k], G)  # the float64 sum of the partials it read
                    scale = expected(rounded[k].abs(), G)  # sum of |partials|: the error scale
                    assert got.dtype == torch.float32 and got.shape == (b, G, N, L)
                    assert torch.isfinite(got).all(), "NaN from a padded state or unwritten"
                    assert torch.equal(got, again[k]), "not bitwise repeatable"
                    errs.append(float(((got.double() - want).abs() / scale).max()))
                results.append(dict(case=i, tn=tn, dtype=str(dtype), err=max(errs)))
    print(json.dumps(results))


@pytest.mark.interpret
def test_triton_sum_partials_interpreted():
    env = dict(os.environ, TRITON_INTERPRET="1", SSMSIGNAL_BACKEND="")
    proc = subprocess.run([sys.executable, __file__, "--interpret"], env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads(proc.stdout.strip().splitlines()[-1])
    assert len(results) == len(CASES) * 4
    for r in results:  # float32 sums of up to 7 partials: a few float32 ulps of sum |p|
        assert r["err"] < 1e-6, r


if __name__ == "__main__" and "--interpret" in sys.argv:
    _interpret_main()


def test_triton_sums_fit_keeps_the_int32_loop_offsets_in_range():
    from ssmsignal.kernels.triton._scan_partials import triton_sums_fit

    # (2, b, n_parts, L, NP): the benchmark's first shape, 192 partials per group
    assert triton_sums_fit((2, 8, 192, 4096, 16), 1)
    # d 16384 -> 2048 partials, L 131072, N 16: (2048 - 1) * 2**21 > 2**31
    assert not triton_sums_fit((2, 1, 2048, 131072, 16), 1)
    assert triton_sums_fit((2, 1, 2048, 131072, 16), 32)  # 64 per group: 2**27
    assert not triton_sums_fit((2, 1, 1024, 2**17, 16), 1)  # exactly 2**31
