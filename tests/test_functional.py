"""ssmsignal.functional.resample: lengths, frequency preservation, both backends, bad input."""
import numpy as np
import pytest
import torch

from ssmsignal.functional import check_sampling_rate, rational_ratio, resample

try:
    import torchaudio.functional  # noqa: F401
    BACKENDS = ["scipy", "torchaudio"]
except Exception:  # torchaudio is an optional extra
    BACKENDS = ["scipy"]


def _peak_hz(x, fs):
    spec = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return np.fft.rfftfreq(len(x), 1 / fs)[np.argmax(spec)]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("orig, target, n", [(360, 125, 3601), (8000, 16000, 999),
                                             (44100, 8000, 44101), (125, 360, 1250),
                                             (250.0, 187.5, 777)])
def test_length_is_ceil_of_the_ratio(backend, orig, target, n):
    x = np.random.default_rng(n).standard_normal((2, n)).astype(np.float32)
    up, down = rational_ratio(orig, target)
    y = resample(x, orig, target, backend=backend)
    assert y.shape == (2, -(-n * up // down)) and y.dtype == np.float32
    assert np.isfinite(y).all()


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("orig, target, f0", [(360, 125, 11.0), (8000, 11025, 440.0),
                                              (44100, 8000, 1000.0)])
def test_sine_frequency_and_amplitude_preserved(backend, orig, target, f0):
    t = np.arange(int(2 * orig)) / orig  # 2 s
    x = np.sin(2 * np.pi * f0 * t)
    y = resample(x, orig, target, backend=backend)
    assert abs(_peak_hz(y, target) - f0) <= 1.0  # 0.5 Hz bins
    mid = y[len(y) // 4: 3 * len(y) // 4]  # away from the filter's edge effects
    assert abs(np.sqrt(2) * mid.std() - 1) < 0.02


@pytest.mark.parametrize("backend", BACKENDS)
def test_frequency_above_new_nyquist_is_removed(backend):
    fs, f_alias = 1000, 400.0  # 400 Hz would alias to 100 Hz at 500 Hz
    t = np.arange(2000) / fs
    y = resample(np.sin(2 * np.pi * f_alias * t), fs, 500, backend=backend)
    assert np.abs(y[200:-200]).max() < 0.05


def test_backends_agree_on_a_band_limited_signal():
    if "torchaudio" not in BACKENDS:
        pytest.skip("torchaudio not installed")
    t = np.arange(3000) / 300.0
    x = np.sin(2 * np.pi * 7 * t) + 0.5 * np.cos(2 * np.pi * 23 * t)
    a = resample(x, 300, 200, backend="scipy")
    b = resample(x, 300, 200, backend="torchaudio")
    np.testing.assert_allclose(a[100:-100], b[100:-100], atol=0.02)


def test_axis_torch_input_and_float64():
    x = np.random.default_rng(0).standard_normal((500, 3))
    y = resample(x, 500, 250, axis=0)
    assert y.shape == (250, 3) and y.dtype == np.float64
    np.testing.assert_allclose(y, resample(x.T, 500, 250).T, atol=1e-10)
    xt = torch.from_numpy(x.T.copy())
    yt = resample(xt, 500, 250)
    assert isinstance(yt, torch.Tensor) and yt.shape == (3, 250) and yt.dtype == torch.float64
    yt_scipy = resample(xt, 500, 250, backend="scipy")
    assert isinstance(yt_scipy, torch.Tensor)
    np.testing.assert_allclose(yt_scipy.numpy(), resample(x.T, 500, 250, backend="scipy"))


def test_equal_rates_return_a_copy_and_ints_become_float():
    x = np.arange(10)
    y = resample(x, 100, 100)
    assert y.dtype == np.float32 and np.array_equal(y, x)
    y[0] = 99
    assert x[0] == 0


@pytest.mark.parametrize("orig, target", [(0, 100), (100, -1), (float("nan"), 8000),
                                          (float("inf"), 8000), (100, 0.0)])
def test_bad_rates_raise(orig, target):
    with pytest.raises(ValueError, match="positive"):
        resample(np.zeros(100), orig, target)


def test_bad_input_raises():
    with pytest.raises(ValueError, match="NaN"):
        resample(np.array([0.0, np.nan, 1.0]), 2, 1)
    with pytest.raises(ValueError, match="empty"):
        resample(np.zeros((3, 0)), 2, 1)
    with pytest.raises(TypeError, match="positive number"):
        check_sampling_rate("fast")
    with pytest.raises(TypeError):
        check_sampling_rate(True)
    with pytest.raises(ValueError, match="backend"):
        resample(np.zeros(10), 2, 1, backend="fft")


def test_rational_ratio():
    assert rational_ratio(44100, 8000) == (80, 441)
    assert rational_ratio(360, 250) == (25, 36)
    up, down = rational_ratio(1000, 1000 * np.pi)
    assert abs(up / down - np.pi) < 1e-5 and down <= 1000


def test_auto_backend_choice():
    x = np.random.default_rng(1).standard_normal(1000)
    np.testing.assert_array_equal(resample(x, 1000, 300), resample(x, 1000, 300, backend="scipy"))
    xt = torch.from_numpy(x)
    expect = "torchaudio" if "torchaudio" in BACKENDS else "scipy"
    torch.testing.assert_close(resample(xt, 1000, 300), resample(xt, 1000, 300, backend=expect))
