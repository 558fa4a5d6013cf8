"""Session-wide test setup: a private data/backbone cache, the mini-decathlon loaded once, one real smoke sweep."""

from __future__ import annotations

import os
import tempfile

import pytest

_CACHE = tempfile.mkdtemp(prefix="bap-test-cache-")
os.environ["BAP_CACHE_DIR"] = _CACHE  # before any bap import reads it: tests never touch ~/.cache/bap

from tests.sweeps.driver import smoke_sweep  # noqa: E402, F401  (shared by the sweep and analysis tests)


@pytest.fixture(scope="session")
def mini_data():
    from bap.data import load_mini

    return load_mini()
