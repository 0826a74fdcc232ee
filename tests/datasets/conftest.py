"""Shared fixtures: full local data (optional) and damaged copies of the embedded sample."""
import shutil
from pathlib import Path

import pytest

from ssmsignal.datasets._base import EMBEDDED_DIR

SHARED = Path("/work/shared/data")


@pytest.fixture
def shared_data():
    """``shared_data(name)``: path of a full local copy under /work/shared/data, or skip the
    test (CI has none; the main tests use the embedded sample)."""

    def get(name):
        path = SHARED / name
        if not path.is_dir():
            pytest.skip(f"full dataset copy {path} not present")
        return path

    return get


@pytest.fixture
def mitdb_copy(tmp_path):
    """A writable copy of the embedded MIT-BIH excerpt."""
    dst = tmp_path / "mitdb"
    shutil.copytree(EMBEDDED_DIR / "mitdb", dst)
    return dst


@pytest.fixture
def fsdd_copy(tmp_path):
    dst = tmp_path / "fsdd"
    shutil.copytree(EMBEDDED_DIR / "fsdd", dst)
    return dst


@pytest.fixture
def bidmc_copy(tmp_path):
    dst = tmp_path / "bidmc"
    shutil.copytree(EMBEDDED_DIR / "bidmc", dst)
    return dst
