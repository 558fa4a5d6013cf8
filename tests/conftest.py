"""Session-wide test setup: a private data/backbone cache, the mini-decathlon loaded once, one real smoke sweep."""

from __future__ import annotations

import os
import tempfile

import pytest

_CACHE = tempfile.mkdtemp(prefix="bap-test-cache-")
os.environ["BAP_CACHE_DIR"] = _CACHE  # before any bap import reads it: tests never touch ~/.cache/bap

# Ray's token authentication, the same for this process and every Ray it or a subprocess starts: a token of the
# session's own. Otherwise the first local Ray writes ~/.ray/auth_token, and a Ray imported here before that
# (settled on "no token") can no longer start a local Ray that finds one ("Failed to start GCS").
_RAY_TOKEN = os.path.join(_CACHE, "ray_auth_token")
with open(os.open(_RAY_TOKEN, os.O_WRONLY | os.O_CREAT, 0o600), "w") as _token:
    _token.write(os.urandom(32).hex())
os.environ.setdefault("RAY_AUTH_TOKEN_PATH", _RAY_TOKEN)

from tests.sweeps.driver import smoke_sweep  # noqa: E402, F401  (shared by the sweep and analysis tests)


@pytest.fixture(scope="session")
def mini_data():
    from bap.data import load_mini

    return load_mini()
