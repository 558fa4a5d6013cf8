"""``python -m analysis.export`` on a real smoke sweep (SQLite MLflow store, no mocks): the best trial of each
budget exported to ONNX, every file equal to its pruned model in onnxruntime and logged as a model on its (still
FINISHED) trial run; one run to TorchScript; bad input ends with one line on stderr, exit code 2, nothing written.

Slow: it uses the session fixture ``smoke_sweep`` (a real sweep, shared with the sweep and report tests).
"""

from __future__ import annotations

import contextlib
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from analysis.export import ARTIFACT_PATH, main
from bap import metrics as M

pytestmark = pytest.mark.slow
TOLERANCE = 1e-4


def _sweep_id(smoke: Any) -> str:
    return getattr(smoke, "sweep_id", None) or smoke.name


@dataclass
class Exported:
    uri: str
    out: Path
    stdout: str
    children: dict[str, Any]  # run id -> the child run as it was before the export
    after: dict[str, Any]  # run id -> the child run after it


def _children(uri: str, experiment: str, sweep_id: str) -> dict[str, Any]:
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name(experiment)
    runs = client.search_runs([exp.experiment_id], filter_string=f"tags.`{M.TAG_ROLE}` = '{M.ROLE_TRIAL}' and "
                              f"tags.`{M.TAG_SWEEP_ID}` = '{sweep_id}'")
    return {r.info.run_id: r for r in runs}


@pytest.fixture(scope="module")
def exported(smoke_sweep: Any, tmp_path_factory: pytest.TempPathFactory) -> Exported:
    """``--best-per-budget`` to ONNX, once for the module, logged on the sweep's child runs."""
    uri, sweep_id = smoke_sweep.tracking_uri, _sweep_id(smoke_sweep)
    before = _children(uri, smoke_sweep.experiment, sweep_id)
    out = tmp_path_factory.mktemp("export") / "exports"
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        code = main(["--tracking-uri", uri, "--experiment", smoke_sweep.experiment, "--sweep-id", sweep_id,
                     "--best-per-budget", "--out", str(out)])
    assert code == 0, stdout.getvalue()
    return Exported(uri, out, stdout.getvalue(), before, _children(uri, smoke_sweep.experiment, sweep_id))


def _pruned(uri: str, run_id: str, folder: Path) -> tuple[Any, tuple[int, int, int]]:
    from mlflow import MlflowClient

    from bap import load_pruned

    client = MlflowClient(tracking_uri=uri)
    folder.mkdir(parents=True, exist_ok=True)
    model = load_pruned(client.download_artifacts(run_id, M.PRUNED_DIR, str(folder))).eval()
    size = json.loads(Path(client.download_artifacts(run_id, M.METRICS_FILE, str(folder))).read_text())
    return model, tuple(size[M.JSON_INPUT_SIZE])


def _lines(stdout: str) -> dict[str, tuple[list[str], list[Path], str]]:
    """run id -> (domains, files, the whole line) of each ``[export]`` line."""
    out = {}
    for line in stdout.splitlines():
        if line.startswith("[export]"):
            run_id = line.split("(run ")[1].split(")")[0]
            domains = line.split(" budget ")[1].split(": ", 1)[1].split(" -> ")[0].split(", ")
            files = [Path(p) for p in line.split(" -> ")[1].split("; ")[0].split(", ")]
            out[run_id] = (domains, files, line)
    return out


def test_best_per_budget_exports_every_domain_of_every_budget(exported: Exported, tmp_path: Path) -> None:
    import onnxruntime
    import torch

    lines = [line for line in exported.stdout.splitlines() if line.startswith("[export]")]
    assert len(lines) == 4, exported.stdout
    budgets = sorted(float(line.split(" budget ")[1].split(":")[0]) for line in lines)
    assert budgets == [0.25, 0.5, 0.75, 1.0]
    folders = sorted(p for p in exported.out.iterdir() if p.is_dir())
    assert len(folders) == 4
    generator = torch.Generator().manual_seed(0)
    for run_id, (domains, files, line) in _lines(exported.stdout).items():
        assert run_id in exported.children
        model, size = _pruned(exported.uri, run_id, tmp_path / run_id)
        assert domains == list(model.domains) == [f.stem for f in files]
        assert all(f.suffix == ".onnx" and f.parent.parent == exported.out and f.is_file() for f in files)
        x = torch.randn((3, *size), generator=generator)
        for file in files:
            session = onnxruntime.InferenceSession(str(file), providers=["CPUExecutionProvider"])
            (got,) = session.run(None, {session.get_inputs()[0].name: x.numpy()})
            with torch.no_grad():
                want = model(x, file.stem).numpy()
            assert got.shape == want.shape
            assert np.abs(got - want).max() <= TOLERANCE, (run_id, file.stem)
        assert f"logged as models {', '.join(model.domains)} of run {run_id}" in line


def test_logged_models_are_on_the_child_runs_and_the_runs_stay_finished(exported: Exported) -> None:
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=exported.uri)
    exported_ids = list(_lines(exported.stdout))
    assert len(exported_ids) == 4
    for run_id in exported_ids:
        before, after = exported.children[run_id], exported.after[run_id]
        assert after.info.status == before.info.status == "FINISHED"
        assert after.info.end_time == before.info.end_time
        models = client.search_logged_models(experiment_ids=[after.info.experiment_id],
                                             filter_string=f"source_run_id = '{run_id}'")
        domains = set(_lines(exported.stdout)[run_id][0])
        assert {m.name for m in models} == domains
        assert all(str(m.status).endswith("READY") for m in models), [m.status for m in models]
        outputs = {o.model_id for o in (after.outputs.model_outputs if after.outputs else [])}
        assert {m.model_id for m in models} <= outputs


def test_run_id_to_torchscript(smoke_sweep: Any, exported: Exported, tmp_path: Path,
                               capsys: pytest.CaptureFixture) -> None:
    import torch
    from mlflow import MlflowClient

    run_id = sorted(exported.children)[0]
    out = tmp_path / "ts"
    assert main(["--tracking-uri", exported.uri, "--run-id", run_id, "--format", "torchscript",
                 "--domains", "digits", "signs", "--out", str(out)]) == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("[export]")]
    assert len(lines) == 1 and f"logged as artifacts '{ARTIFACT_PATH}/' of run {run_id}" in lines[0]
    model, size = _pruned(exported.uri, run_id, tmp_path / "pruned")
    x = torch.randn((2, *size), generator=torch.Generator().manual_seed(1))
    files = sorted(out.glob("*/*.pt"))
    assert [f.stem for f in files] == ["digits", "signs"]
    for file in files:
        with torch.no_grad():
            assert torch.allclose(torch.jit.load(str(file))(x), model(x, file.stem), atol=TOLERANCE)
    client = MlflowClient(tracking_uri=exported.uri)
    logged = {Path(a.path).name for a in client.list_artifacts(run_id, ARTIFACT_PATH)}
    assert logged == {"digits.pt", "signs.pt"}
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED" and run.info.end_time == exported.children[run_id].info.end_time


def _bad_cases(smoke: Any, exported: Exported, bare: tuple[str, str]) -> dict[str, tuple[list[str], str]]:
    from mlflow import MlflowClient

    uri = exported.uri
    child = sorted(exported.children)[0]
    parent = MlflowClient(tracking_uri=uri).get_run(child).data.tags[M.TAG_PARENT_RUN]
    return {
        "unknown run": (["--tracking-uri", uri, "--run-id", "0" * 32], "no MLflow run"),
        "parent run": (["--tracking-uri", uri, "--run-id", parent], "parent run"),
        "unfinished trial": (["--tracking-uri", bare[0], "--run-id", bare[1]], "has no pruned model"),
        "unknown domain": (["--tracking-uri", uri, "--run-id", child, "--domains", "digits", "nope"],
                           "allowed: "),
        "no sweep": (["--tracking-uri", bare[0], "--experiment", "empty", "--best-per-budget"], "no sweep"),
        "unknown experiment": (["--tracking-uri", uri, "--experiment", "nope", "--best-per-budget"],
                               "no MLflow experiment"),
        "no selection": (["--tracking-uri", uri, "--experiment", smoke.experiment], "--best-per-budget"),
    }


@pytest.mark.parametrize("case", ["unknown run", "parent run", "unfinished trial", "unknown domain", "no sweep",
                                  "unknown experiment", "no selection"])
def test_bad_input_exits_2_and_writes_nothing(case: str, smoke_sweep: Any, exported: Exported,
                                              bare_store: tuple[str, str], tmp_path: Path,
                                              capsys: pytest.CaptureFixture) -> None:
    argv, says = _bad_cases(smoke_sweep, exported, bare_store)[case]
    out = tmp_path / "out"
    assert main([*argv, "--out", str(out)]) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and says in lines[0], captured.err
    assert not out.exists()
    if case == "unknown domain":
        assert "digits" in lines[0] and "signs" in lines[0]
