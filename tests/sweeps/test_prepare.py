"""The sweep's one data preparation: on a driver thread (local Ray) or as a Ray task (cluster), same result, same
errors -- and a sweep whose preparation fails ends its MLflow parent run FAILED and launches no trial."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from sweeps.prepare import Preparation, PreparationError

REPO = Path(__file__).resolve().parents[2]
ENTRY = "tests.sweeps.prepare_entry"  # the training entry point of the tests below


# ------------------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def local_ray():
    import ray

    old = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), old) if p)  # the task imports this module
    ray.init(num_cpus=1, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()
    if old is None:
        os.environ.pop("PYTHONPATH", None)
    else:
        os.environ["PYTHONPATH"] = old


def _run(where: str, train_values: dict[str, Any], keep_data: bool = True) -> tuple[Any, dict, Any]:
    prep = Preparation(ENTRY, train_values, searched=[], keep_data=keep_data)
    with ThreadPoolExecutor(max_workers=1) as pool:
        prep.start_here(pool) if where == "here" else prep.start_remote()
        return prep.result()


@pytest.mark.parametrize("where", ["here", "remote"])
def test_preparation_puts_data_and_backbone_in_the_object_store(local_ray, where):
    data_ref, info, backbone_ref = _run(where, {"n": 4, "backbone": True})
    assert local_ray.get(data_ref) == {"synthetic": [0, 1, 2, 3]}
    assert info == {"domains": ["synthetic"], "pretrained": None}
    assert local_ray.get(backbone_ref) == b"weights"


@pytest.mark.parametrize("where", ["here", "remote"])
def test_preparation_without_data_sharing_returns_no_data(local_ray, where):
    data_ref, info, backbone_ref = _run(where, {}, keep_data=False)
    assert local_ray.get(data_ref) is None
    assert backbone_ref is None or local_ray.get(backbone_ref) is None  # a task returns a reference to None
    assert info["domains"] == ["synthetic"]


@pytest.mark.parametrize("where", ["here", "remote"])
def test_preparation_error_is_raised_by_result(local_ray, where):
    with pytest.raises(ValueError, match="corrupt image set") as caught:
        _run(where, {"fail": True})
    err = PreparationError.from_exception(caught.value)
    assert str(err) == "data preparation failed: ValueError: corrupt image set"


def test_result_before_start_is_an_error():
    with pytest.raises(RuntimeError, match="before start_here"):
        Preparation(ENTRY, {}, [], True).result()


@pytest.mark.slow
def test_failed_preparation_ends_the_parent_run_failed_and_launches_nothing(tmp_path):
    """The real driver as a subprocess (local Ray, prepared on the driver): one error line, exit 1, the MLflow parent
    run FAILED with no child run, no Optuna study and no Tune trial."""
    config = tmp_path / "fail.yaml"
    config.write_text(json.dumps({"entrypoint": ENTRY, "budgets": [0.5], "train": {"fail": True, "epochs": 1}}))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p)}
    proc = subprocess.run(
        [sys.executable, str(REPO / "sweeps" / "decathlon.py"), "--preset", "smoke", "--config", str(config),
         "--name", "broken", "--tracking-uri", f"sqlite:///{tmp_path}/mlruns.db",
         "--storage-path", str(tmp_path / "ray_results"), "--optuna-storage", str(tmp_path / "journal.log")],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300,
    )
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert "error: data preparation failed: ValueError: corrupt image set" in proc.stderr
    assert "Traceback" not in proc.stderr

    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path}/mlruns.db")
    runs = client.search_runs([client.get_experiment_by_name("decathlon").experiment_id])
    assert [(r.info.run_name, r.info.status) for r in runs] == [("broken", "FAILED")]
    assert not (tmp_path / "journal.log").exists() or "broken" not in (tmp_path / "journal.log").read_text()
    assert not list((tmp_path / "ray_results").glob("broken/trial_*"))
