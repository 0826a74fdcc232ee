"""The ``ssmsignal`` command line (fit / predict on files, demo wiring, errors)."""
import subprocess
import sys

import numpy as np
import pytest

from ssmsignal.cli import main


@pytest.fixture
def npz(tmp_path):
    rng = np.random.default_rng(0)
    y = np.arange(40) % 2
    t = np.arange(30) / 30
    X = np.sin(2 * np.pi * np.where(y == 0, 2, 6)[:, None] * t) + 0.1 * rng.normal(size=(40, 30))
    path = tmp_path / "data.npz"
    np.savez(path, X=X.astype(np.float32), y=y, sampling_rate=30.0)
    return path


def test_fit_then_predict_on_files(tmp_path, npz, capsys):
    model = tmp_path / "model"
    assert main(["fit", str(npz), "--model", str(model), "--epochs", "2", "--d-model", "8",
                 "--n-layers", "1", "--device", "cpu"]) == 0
    assert "S4Classifier trained for 2 epochs" in capsys.readouterr().out
    out = tmp_path / "pred.npy"
    assert main(["predict", str(npz), "--model", str(model), "--out", str(out)]) == 0
    pred = np.load(out)
    assert pred.shape == (40,) and set(pred.tolist()) <= {0, 1}
    assert main(["predict", str(npz), "--model", str(model), "--proba",
                 "--sampling-rate", "60"]) == 0
    assert len(capsys.readouterr().out.strip().splitlines()) == 41  # 40 rows + the message


def test_regression_with_mamba(tmp_path, npz):
    data = np.load(npz)
    path = tmp_path / "reg.npz"
    np.savez(path, X=data["X"], y=data["X"].mean(axis=1))
    assert main(["fit", str(path), "--model", str(tmp_path / "m"), "--task", "regress",
                 "--layer", "mamba", "--epochs", "1", "--d-model", "8", "--n-layers", "1",
                 "--device", "cpu"]) == 0
    assert main(["predict", str(path), "--model", str(tmp_path / "m")]) == 0


def test_clear_errors(tmp_path, npz, capsys):
    with pytest.raises(SystemExit, match="not found"):
        main(["fit", str(tmp_path / "nope.npz"), "--model", str(tmp_path / "m")])
    np.savez(tmp_path / "noy.npz", X=np.zeros((3, 5)))
    with pytest.raises(SystemExit, match=r"lacks array\(s\) \['y'\]"):
        main(["fit", str(tmp_path / "noy.npz"), "--model", str(tmp_path / "m")])
    assert main(["predict", str(npz), "--model", str(tmp_path / "missing")]) == 2
    assert "not a saved ssmsignal model" in capsys.readouterr().err
    assert main(["fit", str(npz), "--model", str(tmp_path / "m"), "--sampling-rate", "0"]) == 2
    assert "sampling_rate" in capsys.readouterr().err  # not silently replaced by the file's
    with pytest.raises(SystemExit):
        main(["unknown-command"])


def test_module_entry_point_help():
    result = subprocess.run([sys.executable, "-m", "ssmsignal", "--help"], capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0
    for command in ("demo", "fit", "predict", "generate", "bench"):
        assert command in result.stdout


def test_demo_runs_end_to_end(tmp_path, capsys):
    out = tmp_path / "demo-model"
    assert main(["demo", "--epochs", "1", "--n-train", "200", "--n-test", "200", "--out",
                 str(out), "--quiet"]) == 0
    text = capsys.readouterr().out
    for needle in ("majority-class baseline", "accuracy at 360 Hz",
                   "zero-shot accuracy at 180 Hz", "zero-shot accuracy at 720 Hz"):
        assert needle in text
    assert "200 test" in text
    assert (out / "config.json").is_file() and (out / "model.safetensors").is_file()
