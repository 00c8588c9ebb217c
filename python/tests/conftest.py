"""conftest.py — fixtures of the Python package's tests: the repository's tiny model fixture and
the lfm2c CLI of the same build (LFM2C_CLI, default build/lfm2c), to hold answers against."""
import os
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def model_path():
    return str(ROOT / "tests" / "data" / "lfm2-tiny-dense-q4_0.gguf")


@pytest.fixture(scope="session")
def model(model_path):
    import lfm2c
    with lfm2c.Model(model_path, n_threads=1) as m:
        yield m


@pytest.fixture(scope="session")
def cli():
    path = os.environ.get("LFM2C_CLI") or str(ROOT / "build" / "lfm2c")
    if not os.access(path, os.X_OK):
        pytest.fail("no lfm2c CLI at %s (set LFM2C_CLI)" % path)
    return path
