"""The wheel builds, installs into a fresh environment and exposes the mapped subpackages."""
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_wheel_installs_and_imports_mapped_packages(tmp_path):
    wheel_dir = tmp_path / "wheel"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                    "-q", "-w", str(wheel_dir), str(ROOT)], check=True)
    wheels = list(wheel_dir.glob("ssmsignal-*.whl"))
    assert len(wheels) == 1, wheels
    # A fresh target folder stands in for a fresh venv; torch & co. come from this environment
    # (the equivalent of --system-site-packages), the package itself only from the wheel.
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target",
                    str(target), str(wheels[0])], check=True)
    code = textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(target)!r})
        import ssmsignal, ssmsignal.kernels, ssmsignal.datasets
        from pathlib import Path
        for m in (ssmsignal, ssmsignal.kernels, ssmsignal.datasets):
            assert Path(m.__file__).resolve().is_relative_to(Path({str(target)!r}).resolve()), m.__file__
        emb = Path(ssmsignal.datasets.__file__).parent / "_embedded"
        assert emb.is_dir() and any(emb.iterdir()), "embedded data missing from the wheel"
        print("ok")
    """)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env,
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().endswith("ok")
