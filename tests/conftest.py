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


def pytest_sessionfinish(session, exitstatus):
    """Stop what this process started natively before the interpreter tears down: a Ray worker left connected,
    its gRPC threads still running, is what crashes a finalizing interpreter."""
    import sys

    if "ray" in sys.modules:
        import ray

        if ray.is_initialized():
            ray.shutdown()
    session.config.stash[_EXIT_STATUS] = int(exitstatus)


_EXIT_STATUS = pytest.StashKey[int]()


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config):
    """Exit with pytest's status once every report is written, without the interpreter's finalization.

    This one process has loaded torch, Ray, gRPC, MLflow, Optuna, pyarrow and Selenium; one fresh-clone CI run
    passed every test and then died in that finalization ("Segmentation fault", make's exit 2), a crash in a
    native library's teardown that no test can see. Every product command the tests run is its own subprocess,
    whose exit status the tests assert; only this harness skips the teardown."""
    import sys

    status = config.stash.get(_EXIT_STATUS, None)
    if status is None:  # no session ran (--help, a usage error): exit normally
        return
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)
