"""Storage every node reaches: an object store as the sweep's ``--storage-path``, through pyarrow's filesystems.

A real S3-compatible server (moto in server mode, on loopback, a free port) holds one bucket; the real smoke sweep
(``python sweeps/decathlon.py --preset smoke``: local Ray, SQLite MLflow and an Optuna journal in a temporary folder,
the real ``bap.train``) runs as a subprocess with ``--storage-path s3://<bucket>/sweeps`` and the endpoint and
credentials in the ``AWS_*`` environment (``AWS_ENDPOINT_URL``, which pyarrow's S3 filesystem honours). Then:

* every trial's Tune results, checkpoints and ``train/`` outputs are objects in the bucket (listed with boto3, not
  with the code under test), and nothing went to a local ``ray_results``;
* the sweep's summary (stdout and the parent run's ``summary.json``) reports every trial finished, its Tune results
  at the ``s3://`` URI;
* the Pareto report is built from the Tune records in the bucket (``python -m analysis.report --tune-dir s3://...``),
  and the trial table read from the bucket equals MLflow's (also with the endpoint in the URI's query instead);
* ``--resume`` finds the sweep in the bucket by its preset and finishes without training anything again.

The tests on the server are marked slow: about a minute on 2 CPU cores (the sweep ~25 s, the resume ~15 s, the
report ~5 s); they are skipped only when moto cannot be imported (``pip install 'moto[server]>=5'``, in the ``dev``
extra). The fast ones at the end check the URI handling without a server (a ``file://`` URI).
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from bap import metrics as M
from tests.sweeps.driver import DRIVER, REPO, communicate_or_fail

BUCKET = "bap-sweeps"
PREFIX = "sweeps"
SWEEP = "smoke-s3"  # a "smoke-" name: --resume without --name finds it in the bucket
TRIALS = 4  # the smoke preset: one trial per budget 0.25, 0.5, 0.75, 1.0
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}


@dataclass
class S3Sweep:
    """The moto server, and where the sweep put everything."""

    endpoint: str  # http://127.0.0.1:PORT
    root: Path  # the driver's working folder: MLflow's SQLite file, the Optuna journal
    env: dict[str, str]  # the driver's environment (endpoint and credentials)
    client: Any  # boto3 S3 client of the server
    output: str = ""
    wall_s: float = 0.0
    returncode: int | None = None

    @property
    def storage_path(self) -> str:
        return f"s3://{BUCKET}/{PREFIX}"

    @property
    def tracking_uri(self) -> str:
        return f"sqlite:///{self.root / 'mlruns.db'}"

    def args(self) -> list[str]:
        return ["--storage-path", self.storage_path, "--tracking-uri", self.tracking_uri,
                "--optuna-storage", str(self.root / "optuna_journal.log"), "--experiment", "decathlon"]

    def objects(self) -> dict[str, dict[str, Any]]:
        """Key below the sweep's folder -> the object's listing entry (size, LastModified, ...)."""
        out = {}
        for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=f"{PREFIX}/{SWEEP}/"):
            for obj in page.get("Contents", []):
                out[obj["Key"][len(f"{PREFIX}/{SWEEP}/"):]] = obj
        return out


def run(cmd: list[str], cwd: Path, env: dict[str, str], timeout: float = 600) -> tuple[int, str, float]:
    """A subprocess (its whole process tree killed on a timeout): exit code, output, seconds."""
    start = time.monotonic()
    proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    out = communicate_or_fail(proc, timeout, " ".join(cmd[:3]))
    return proc.returncode, out, time.monotonic() - start


@pytest.fixture(scope="module")
def s3_sweep(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Sweep]:
    """A moto S3 server on loopback with one bucket, and the smoke sweep run into it."""
    moto_server = pytest.importorskip(  # ImportError too: a moto without its server extras cannot be imported
        "moto.server", reason="moto cannot be imported: pip install 'moto[server]>=5' (the dev extra) to test an S3 "
        "storage path against a local server", exc_type=ImportError)
    import boto3

    request.getfixturevalue("mini_data")  # builds the mini-decathlon cache the sweep reads
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one line per request otherwise
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        endpoint = f"http://{host}:{port}"
        client = boto3.client("s3", endpoint_url=endpoint, region_name=CREDENTIALS["AWS_DEFAULT_REGION"],
                              aws_access_key_id=CREDENTIALS["AWS_ACCESS_KEY_ID"],
                              aws_secret_access_key=CREDENTIALS["AWS_SECRET_ACCESS_KEY"])
        client.create_bucket(Bucket=BUCKET)
        env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        env.update(CREDENTIALS, AWS_ENDPOINT_URL=endpoint, AWS_EC2_METADATA_DISABLED="true")
        sweep = S3Sweep(endpoint, tmp_path_factory.mktemp("s3_sweep"), env, client)
        sweep.returncode, sweep.output, sweep.wall_s = run(
            [sys.executable, str(DRIVER), "--preset", "smoke", "--name", SWEEP, *sweep.args()], sweep.root, env)
        if sweep.returncode != 0:
            pytest.fail(f"the smoke sweep on {sweep.storage_path} failed with exit code {sweep.returncode}:\n"
                        f"{sweep.output[-8000:]}")
        print(f"\nsmoke sweep on s3 (moto): {sweep.wall_s:.1f} s")
        yield sweep
    finally:
        server.stop()


def _trial_folders(objects: dict[str, Any]) -> set[str]:
    return {key.split("/", 1)[0] for key in objects if key.startswith("trial_") and "/" in key}


@pytest.mark.slow
def test_trials_results_and_checkpoints_are_in_the_bucket(s3_sweep: S3Sweep) -> None:
    objects = s3_sweep.objects()
    for name in ("tuner.pkl", M.SWEEP_FILE):
        assert name in objects, sorted(objects)
    assert any(k.startswith("experiment_state-") and k.endswith(".json") for k in objects)
    trials = _trial_folders(objects)
    assert len(trials) == TRIALS, sorted(objects)
    for trial in trials:
        keys = {k[len(trial) + 1:] for k in objects if k.startswith(f"{trial}/")}
        for name in ("params.json", "result.json", f"{M.TRAIN_DIR}/{M.METRICS_FILE}",
                     f"{M.TRAIN_DIR}/{M.TRIAL_CONFIG_FILE}", f"{M.TRAIN_DIR}/{M.PRUNED_DIR}/{M.ARCHITECTURE_FILE}"):
            assert name in keys, (trial, sorted(keys))
        checkpoints = {k.split("/", 1)[0] for k in keys if k.startswith("checkpoint_")}
        assert checkpoints, (trial, sorted(keys))
        for ck in checkpoints:  # each one complete: the state and Tune's metadata (epoch, history, file sizes)
            assert {f"{ck}/state.pt", f"{ck}/.metadata.json"} <= keys, (trial, sorted(keys))
        lines = s3_sweep.client.get_object(Bucket=BUCKET, Key=f"{PREFIX}/{SWEEP}/{trial}/result.json")["Body"]
        last = json.loads(lines.read().decode().strip().splitlines()[-1])
        assert M.is_finished(last), (trial, last)
    assert not (s3_sweep.root / "ray_results").exists()  # nothing went to the local default


@pytest.mark.slow
def test_summary_reports_every_trial_finished(s3_sweep: S3Sweep) -> None:
    from mlflow import MlflowClient

    uri = f"{s3_sweep.storage_path}/{SWEEP}"
    assert f"[sweep] {SWEEP}: {TRIALS} trials ({TRIALS} finished)" in s3_sweep.output, s3_sweep.output[-3000:]
    assert f"Tune results:  {uri}" in s3_sweep.output
    client = MlflowClient(s3_sweep.tracking_uri)
    exp = client.get_experiment_by_name("decathlon")
    parents = client.search_runs([exp.experiment_id], f"tags.`{M.TAG_ROLE}` = '{M.ROLE_SWEEP}'")
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    summary = json.loads(Path(client.download_artifacts(parents[0].info.run_id, M.SUMMARY_FILE,
                                                        str(s3_sweep.root))).read_text())
    assert summary["counts"] == {"FINISHED": TRIALS} and summary["trials"] == TRIALS
    assert summary["complete"] and not summary["interrupted"]
    assert summary["tune_results"] == uri
    assert len(summary["best_per_budget"]) == TRIALS and summary["pareto"]


@pytest.mark.slow
def test_pareto_report_from_the_bucket(s3_sweep: S3Sweep, monkeypatch: pytest.MonkeyPatch) -> None:
    from analysis.load import load_mlflow, load_tune
    from analysis.table import FINISHED, RUN_ID, STATUS, SWEEP_ID, read_parquet

    out = s3_sweep.root / "report"
    code, output, seconds = run([sys.executable, "-m", "analysis.report", "--tune-dir", s3_sweep.storage_path,
                                 "--out", str(out), "--no-log"], REPO, s3_sweep.env, timeout=300)
    assert code == 0, output
    print(f"\nreport from s3: {seconds:.1f} s")
    table = read_parquet(out / "trials.parquet")
    assert len(table) == TRIALS and table[FINISHED].all() and set(table[STATUS]) == {"FINISHED"}
    assert set(table[SWEEP_ID]) == {SWEEP} and set(table[M.BUDGET]) == {0.25, 0.5, 0.75, 1.0}
    for name in ("summary.md", "summary.html", "pareto.html", "fronts.parquet"):
        assert (out / name).is_file(), name
    assert list((out / "png").glob("*.png"))
    # In this process, with the endpoint in the URI's query (pyarrow's form; no AWS_ENDPOINT_URL): the same trial
    # table as MLflow's, as for a local folder.
    for key, value in CREDENTIALS.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    host_port = s3_sweep.endpoint.split("://", 1)[1]
    from_tune = load_tune(f"s3://{BUCKET}/{PREFIX}?endpoint_override={host_port}&scheme=http", sweep_id=SWEEP)
    from_mlflow = load_mlflow(s3_sweep.tracking_uri, "decathlon", sweep_id=SWEEP)
    pd.testing.assert_frame_equal(from_mlflow.drop(columns=RUN_ID), from_tune.drop(columns=RUN_ID))


@pytest.mark.slow
def test_trial_outputs_reach_mlflow_as_artifacts(s3_sweep: S3Sweep) -> None:
    from mlflow import MlflowClient

    client = MlflowClient(s3_sweep.tracking_uri)
    exp = client.get_experiment_by_name("decathlon")
    children = client.search_runs([exp.experiment_id], f"tags.`{M.TAG_ROLE}` = '{M.ROLE_TRIAL}'")
    assert len(children) == TRIALS
    for child in children:
        names = {a.path for a in client.list_artifacts(child.info.run_id)}
        assert {M.METRICS_FILE, M.TRIAL_CONFIG_FILE, M.PRUNED_DIR} <= names, names


@pytest.mark.slow
def test_resume_finds_the_sweep_in_the_bucket_and_trains_nothing_again(s3_sweep: S3Sweep) -> None:
    before = s3_sweep.objects()
    code, output, seconds = run([sys.executable, str(DRIVER), "--preset", "smoke", "--resume", *s3_sweep.args()],
                                s3_sweep.root, s3_sweep.env)
    assert code == 0, output[-5000:]
    print(f"\nresume of the finished s3 sweep: {seconds:.1f} s")
    assert f"[sweep] {SWEEP}: {TRIALS} trials ({TRIALS} finished)" in output, output[-3000:]
    after = s3_sweep.objects()
    assert _trial_folders(after) == _trial_folders(before)
    for key, obj in before.items():  # the trials' outputs and checkpoints untouched
        if key.startswith("trial_") and ("/checkpoint_" in key or key.endswith(M.METRICS_FILE)):
            assert after[key]["LastModified"] == obj["LastModified"] and after[key]["Size"] == obj["Size"], key


# ---------------------------------------------------------------------------------------------------------------
# Fast: the URI handling itself, without a server (a file:// URI goes through the same pyarrow code path)
# ---------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("storage", "expected"), [
    ("s3://bucket/sweeps", "s3://bucket/sweeps/name"),
    ("s3://bucket/sweeps/", "s3://bucket/sweeps/name"),
    ("s3://bucket", "s3://bucket/name"),
    ("s3://bucket/sweeps?endpoint_override=host:9000&scheme=http",
     "s3://bucket/sweeps/name?endpoint_override=host:9000&scheme=http"),
    ("/shared/ray_results", "/shared/ray_results/name"),
])
def test_storage_join_keeps_a_uri_query_at_the_end(storage: str, expected: str) -> None:
    from sweeps.resume import storage_join

    assert storage_join(storage, "name") == expected


def test_messages_leave_uri_credentials_out() -> None:
    from sweeps.resume import shown

    assert shown("s3://KEY:SECRET@b/p?endpoint_override=h:1") == "s3://***@b/p?endpoint_override=h:1"
    assert shown("s3://b/p?endpoint_override=h:1") == "s3://b/p?endpoint_override=h:1"
    assert shown("/local/path@x") == "/local/path@x"


def test_a_bad_object_store_uri_is_a_config_error() -> None:
    from sweeps.config import ConfigError
    from sweeps.resume import check_storage

    check_storage("/a/local/folder/that/need/not/exist")  # Tune creates a local one
    with pytest.raises(ConfigError, match="--storage-path nope://x: cannot open it"):
        check_storage("nope://x")


def test_tune_tables_read_through_a_uri_equal_the_local_ones(tmp_path: Path) -> None:
    from analysis.errors import AnalysisError
    from analysis.load import find_tune_experiments, load_tune, newest_tune_experiment, tune_experiment_name
    from analysis.synthetic import write_synthetic_sweep

    kwargs = dict(budgets=(0.5, 1.0), trials_per_budget=1, repeats=0, killed=1, failed=1, epochs=2)
    write_synthetic_sweep(None, tmp_path / "tune", sweep_id="first", seed=1, **kwargs)
    write_synthetic_sweep(None, tmp_path / "tune", sweep_id="second", seed=2, **kwargs)
    uri = (tmp_path / "tune").as_uri()
    assert [tune_experiment_name(e) for e in find_tune_experiments(uri)] == ["first", "second"]
    assert find_tune_experiments(uri, "first") == [f"{uri}/first"]
    newest, count = newest_tune_experiment(uri)
    assert count == 2 and newest in (f"{uri}/first", f"{uri}/second")
    for sweep_id in ("first", "second"):
        pd.testing.assert_frame_equal(load_tune(uri, sweep_id), load_tune(tmp_path / "tune", sweep_id))
        pd.testing.assert_frame_equal(load_tune(f"{uri}/{sweep_id}"), load_tune(tmp_path / "tune" / sweep_id))
    with pytest.raises(AnalysisError, match="does not exist"):
        load_tune(f"{uri}/absent")
    with pytest.raises(AnalysisError, match="cannot open the Ray Tune results"):
        load_tune("nope://bucket/x")
