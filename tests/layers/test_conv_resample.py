"""Mamba's rate-aware short causal conv (``ssmsignal.layers._conv``)."""
import math

import pytest
import torch

from ssmsignal.layers._conv import (causal_depthwise_conv, conv_length, resample_matrix,
                                    resampled_taps)


@pytest.mark.parametrize("d_conv", [1, 2, 4, 5])
def test_identity_at_training_rate(d_conv):
    assert torch.equal(resample_matrix(d_conv, 1.0), torch.eye(d_conv, dtype=torch.float64))


@pytest.mark.parametrize("d_conv", [2, 4, 7])
@pytest.mark.parametrize("scale", [0.25, 1 / 3, 0.5, 0.7, 1.5, 2.0, 3.0, 10.0])
def test_length_and_dc_gain(d_conv, scale):
    R = resample_matrix(d_conv, scale)  # (D, K)
    assert R.shape == (d_conv, math.ceil((d_conv - 1) / scale - 1e-9) + 1)
    assert R.shape[1] == conv_length(d_conv, scale)
    # every trained tap keeps its total weight: the DC gain sum(w) is unchanged
    torch.testing.assert_close(R.sum(dim=1), torch.ones(d_conv, dtype=torch.float64))


def test_half_rate_taps_by_hand():
    """dt_scale = 0.5, taps w = (w0, w1): continuous h linear on [0, 1] with end masses
    w0/2 and w1/2; new grid 0, 1/2, 1 with trapezoid weights 1/4, 1/2, 1/4."""
    w = torch.tensor([[2.0, 6.0]], dtype=torch.float64)
    got = resampled_taps(w, 0.5)
    expected = torch.tensor([[0.25 * 2 + 1.0, 0.5 * 4.0, 0.25 * 6 + 3.0]], dtype=torch.float64)
    torch.testing.assert_close(got, expected)


@pytest.mark.parametrize("scale", [0.5, 0.25, 2.0])
def test_same_continuous_filter_at_other_rates(scale):
    """A smooth signal filtered at the training rate and at another rate agrees at shared
    times (second-order accurate), far better than reusing the trained taps unchanged."""
    torch.manual_seed(0)
    w = torch.randn(3, 4, dtype=torch.float64)  # (E, D) lag-ordered
    f = lambda t: torch.sin(2 * math.pi * t / 40.0) + 0.5 * torch.cos(2 * math.pi * t / 23.0)  # noqa: E731
    t1 = torch.arange(200, dtype=torch.float64)
    t2 = torch.arange(int(200 / scale), dtype=torch.float64) * scale
    y1 = causal_depthwise_conv(f(t1).expand(1, 3, -1), w, None)[..., 20:]  # (1, 3, L)
    y2 = causal_depthwise_conv(f(t2).expand(1, 3, -1), resampled_taps(w, scale), None)
    y_naive = causal_depthwise_conv(f(t2).expand(1, 3, -1), w, None)
    if scale < 1:
        step = round(1 / scale)
        y2, y_naive = y2[..., ::step][..., 20:], y_naive[..., ::step][..., 20:]
    else:
        step = round(scale)
        y1 = y1[..., ::step]
        y2, y_naive = y2[..., 20 // step:], y_naive[..., 20 // step:]
    n = min(y1.shape[-1], y2.shape[-1])
    err = ((y2[..., :n] - y1[..., :n]).norm() / y1[..., :n].norm()).item()
    err_naive = ((y_naive[..., :n] - y1[..., :n]).norm() / y1[..., :n].norm()).item()
    assert err < 0.05 and err_naive > 5 * err, (err, err_naive)


def test_per_sequence_taps_match_shared():
    torch.manual_seed(0)
    x = torch.randn(2, 3, 17, dtype=torch.float64)
    taps = torch.randn(3, 5, dtype=torch.float64)
    bias = torch.randn(3, dtype=torch.float64)
    both = causal_depthwise_conv(x, torch.stack([taps, taps]), bias)
    torch.testing.assert_close(both, causal_depthwise_conv(x, taps, bias))
    # direct definition y[t] = sum_j taps[j] x[t - j] + bias
    direct = torch.zeros_like(x) + bias[:, None]
    for j in range(5):
        direct[..., j:] += taps[:, j, None] * x[..., :17 - j]
    torch.testing.assert_close(both, direct)


@pytest.mark.parametrize("args", [(0, 1.0), (4, 0.0), (4, -1.0), (4, float("nan"))])
def test_bad_arguments(args):
    with pytest.raises(ValueError):
        resample_matrix(*args)
