"""Can the sweep log to this MLflow tracking store? Answered within seconds, before anything starts.

Kept apart from :mod:`sweeps.tracking` so the driver's validation does not import Ray Tune (about a second).
"""

from __future__ import annotations

import os
import threading
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sweeps.config import ConfigError


def _call_with_timeout(fn: Callable[[], Any], timeout: float) -> Any:
    """Run ``fn`` on a daemon thread; raise TimeoutError if it does not return within ``timeout`` seconds."""
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = fn()
        except BaseException as exc:  # re-raised on the caller's thread
            box["error"] = exc

    t = threading.Thread(target=target, daemon=True, name="mlflow-check")
    t.start()
    t.join(timeout)
    if t.is_alive():
        raise TimeoutError(f"no answer within {timeout:g} s")
    if "error" in box:
        raise box["error"]
    return box.get("value")


def check_tracking_uri(uri: str, timeout: float = 10.0) -> None:
    """Raise ConfigError unless the tracking store at ``uri`` answers within ``timeout`` seconds.

    HTTP(S) servers get a plain ``GET /health`` first (no MLflow retries), then one API call; SQLite needs a
    writable folder; any other store gets one API call on a thread with the same deadline.
    """
    hint = "start the server, or log locally with --tracking-uri sqlite:///mlruns.db"
    if uri.startswith(("http://", "https://")):
        try:
            with urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=timeout) as resp:
                resp.read(64)
        except urllib.error.HTTPError as exc:
            if exc.code in (401, 403):
                raise ConfigError(f"MLflow tracking server {uri} refused the request (HTTP {exc.code}); "
                                  "set MLFLOW_TRACKING_USERNAME/PASSWORD or MLFLOW_TRACKING_TOKEN") from None
            # Other codes: something answers; the API call below decides.
        except (urllib.error.URLError, OSError, TimeoutError) as exc:
            reason = getattr(exc, "reason", exc)
            raise ConfigError(f"MLflow tracking server {uri} is unreachable ({reason}); {hint}") from None
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", str(int(max(timeout, 10))))
    elif uri.startswith("sqlite:///"):
        db = Path(uri[len("sqlite:///") :])
        folder = db.parent
        if not folder.is_dir():
            raise ConfigError(f"the folder of the MLflow SQLite file {str(db)!r} does not exist; create it first")
        if not os.access(folder, os.W_OK):
            raise ConfigError(f"cannot write the MLflow SQLite file {str(db)!r}: folder is not writable")
        if not db.exists():
            return  # created (with its schema) when the sweep starts: nothing is written before validation passes
        timeout = max(timeout, 60.0)  # local: a schema upgrade can take seconds, it cannot hang
    elif "://" not in uri and not uri.startswith("databricks"):
        raise ConfigError(f"tracking URI {uri!r} is neither a server URL nor a database URL; use e.g. "
                          "sqlite:///mlruns.db or http://host:5000 (the plain file store is deprecated in MLflow 3)")

    def probe() -> None:
        from mlflow import MlflowClient

        MlflowClient(tracking_uri=uri).search_experiments(max_results=1)

    try:
        _call_with_timeout(probe, timeout)
    except TimeoutError as exc:
        raise ConfigError(f"MLflow tracking store {uri} did not answer ({exc}); {hint}") from None
    except ConfigError:
        raise
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConfigError(f"MLflow tracking store {uri} failed: {first[:300]}; {hint}") from None


# Database URL schemes -> (Python modules that can drive them, the extra that installs one).
DB_DRIVERS = {
    "postgresql": (("psycopg", "psycopg2"), "bap-sweeps[postgres]"),
    "mysql": (("MySQLdb", "pymysql"), "a MySQL driver (pip install pymysql)"),
}


def _dialect_driver_missing(spec: str) -> bool:
    """True if the driver SQLAlchemy picks for ``spec`` does not import (``postgresql://`` means psycopg 3 since
    SQLAlchemy 2.1, ``postgresql+psycopg2://`` psycopg2)."""
    from sqlalchemy.engine import make_url

    try:
        make_url(spec).get_dialect().import_dbapi()
    except ImportError:
        return True
    except Exception:  # noqa: BLE001 -- a malformed URL is reported by the connection probe
        return False
    return False


def check_optuna_storage(spec: str, timeout: float = 10.0) -> None:
    """Raise ConfigError unless Optuna can use ``spec``: a journal file in a writable folder, or an RDB URL whose
    Python driver is installed and whose server answers within ``timeout`` seconds."""
    import importlib.util

    if "://" not in spec:
        folder = Path(spec).expanduser().parent
        while not folder.exists() and folder != folder.parent:
            folder = folder.parent
        if not os.access(folder, os.W_OK):
            raise ConfigError(f"cannot write the Optuna journal {spec!r}: {str(folder)!r} is not writable")
        return
    scheme = spec.split("://", 1)[0].split("+", 1)[0]
    modules, extra = DB_DRIVERS.get(scheme, ((), ""))
    if modules and (not any(importlib.util.find_spec(m) for m in modules) or _dialect_driver_missing(spec)):
        raise ConfigError(f"--optuna-storage {scheme}://... needs a Python driver for {scheme}, and none is "
                          f"installed: pip install {extra}")
    if scheme == "sqlite":
        return

    def probe() -> None:
        import sqlalchemy

        engine = sqlalchemy.create_engine(spec, connect_args={"connect_timeout": int(max(1, timeout))}
                                          if scheme in DB_DRIVERS else {})
        try:
            with engine.connect():
                pass
        finally:
            engine.dispose()

    try:
        _call_with_timeout(probe, timeout)
    except Exception as exc:  # noqa: BLE001
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        safe = spec.split("@", 1)[-1] if "@" in spec else spec.split("://", 1)[-1]  # never print a password
        raise ConfigError(f"the Optuna storage at {scheme}://...{safe} cannot be reached ({first[:200]}); start the "
                          "database or check the URL, or use a journal file: --optuna-storage optuna_journal.log") from None
