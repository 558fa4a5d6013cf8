"""Fixtures the analysis tests share."""

from __future__ import annotations

import pytest

from bap import metrics as M


@pytest.fixture(scope="module")
def bare_store(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    """A store of its own: an empty experiment, and one with a trial run that logged nothing (unfinished)."""
    from mlflow import MlflowClient

    root = tmp_path_factory.mktemp("bare-store")
    uri = f"sqlite:///{root / 'mlruns.db'}"
    client = MlflowClient(tracking_uri=uri)
    client.create_experiment("empty", artifact_location=(root / "mlruns" / "empty").as_uri())
    exp = client.create_experiment("unfinished", artifact_location=(root / "mlruns" / "unfinished").as_uri())
    run = client.create_run(exp, tags={M.TAG_ROLE: M.ROLE_TRIAL, M.TAG_SWEEP_ID: "s"})
    return uri, run.info.run_id
