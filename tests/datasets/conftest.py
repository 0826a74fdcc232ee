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


def _embedded_copy(name, tmp_path):
    """A writable copy of one embedded sample, to damage in a test."""
    dst = tmp_path / name
    shutil.copytree(EMBEDDED_DIR / name, dst)
    return dst


@pytest.fixture
def mitdb_copy(tmp_path):
    return _embedded_copy("mitdb", tmp_path)


@pytest.fixture
def fsdd_copy(tmp_path):
    return _embedded_copy("fsdd", tmp_path)


@pytest.fixture
def bidmc_copy(tmp_path):
    return _embedded_copy("bidmc", tmp_path)
