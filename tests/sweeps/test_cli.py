"""Bad inputs stop the driver with one clear line and exit code 2, before anything is launched or written."""

from __future__ import annotations

import socket
import subprocess
import sys

import pytest

from sweeps.cli import main

REPO_DRIVER = "sweeps/decathlon.py"


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _nothing_written(folder) -> None:
    assert sorted(p.name for p in folder.iterdir() if not p.name.startswith("extra")) == []


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    d = tmp_path / "cwd"
    d.mkdir()
    monkeypatch.chdir(d)
    return d


def _annotationless_root(tmp_path):
    root = tmp_path / "extra_decathlon"
    (root / "data").mkdir(parents=True)
    return root


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--preset", "huge"], "unknown preset 'huge'; allowed values: decathlon, demo, mini, sketch, smoke"),
        (["--preset", "smoke", "--budgets", "0.25,1.5"], "budget 1.5 is outside (0, 1]"),
        (["--preset", "smoke", "--budgets", "0"], "budget 0.0 is outside (0, 1]"),
        (["--preset", "smoke", "--domains", "digits,klingon"], "unknown domain(s) klingon"),
        (["--preset", "smoke", "--set", "optimizer=rmsprop"], "optimizer must be one of ['sgd', 'adamw']"),
        (["--preset", "smoke", "--set", "colour=red"], "unknown training config keys ['colour']"),
        (["--preset", "smoke", "--resume"], "--resume: no smoke sweep under"),
        (["--preset", "decathlon"], "needs --data-root"),
        (["--preset", "smoke", "--mode", "pareto", "--pareto-costs", "macs,watts"],
         "pareto_costs ['macs', 'watts'] must be a non-empty list of macs, params, latency_b1, latency_b64"),
        (["--preset", "smoke", "--pareto-costs", "latency_b1"], "pareto_costs applies to --mode pareto only"),
        (["--preset", "smoke", "--mode", "pareto", "--pareto-costs", "macs,latency_b64", "--set",
          "latency_min_time_s=0"], "pareto_costs latency_b64 needs each trial to time its pruned model"),
    ],
)
def test_bad_inputs_exit_2(workdir, capsys, argv, message):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and err.count("\n") == 1
    _nothing_written(workdir)


def test_data_root_without_annotations(workdir, tmp_path, capsys):
    root = _annotationless_root(tmp_path)
    assert main(["--preset", "decathlon", "--data-root", str(root)]) == 2
    assert "has no annotations/<domain>_train.json" in capsys.readouterr().err
    _nothing_written(workdir)


def test_unreachable_tracking_server_fails_in_seconds(workdir, capsys):
    assert main(["--preset", "smoke", "--tracking-uri", f"http://127.0.0.1:{_closed_port()}"]) == 2
    err = capsys.readouterr().err
    assert "is unreachable (" in err and "refused" in err  # the refused connection answers: no retries behind it
    _nothing_written(workdir)


def test_existing_sweep_needs_resume(workdir, capsys):
    (workdir / "ray_results" / "mine").mkdir(parents=True)
    (workdir / "ray_results" / "mine" / "tuner.pkl").write_bytes(b"")
    assert main(["--preset", "smoke", "--name", "mine"]) == 2
    assert "already exists" in capsys.readouterr().err


def test_dry_run_validates_and_prints(workdir, capsys):
    assert main(["--preset", "smoke", "--dry-run", "--name", "dry"]) == 0
    out = capsys.readouterr().out
    assert "name: dry" in out and "domains_resolved:" in out
    _nothing_written(workdir)


def test_subprocess_exit_code_and_no_traceback(workdir):
    from tests.sweeps.driver import REPO

    proc = subprocess.run([sys.executable, str(REPO / REPO_DRIVER), "--preset", "smoke", "--budgets", "2"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr and proc.stderr.startswith("error: budget 2.0 is outside (0, 1]")
    _nothing_written(workdir)


def test_a_driver_attaching_to_a_cluster_ships_the_code_unless_inside_a_ray_job():
    from pathlib import Path

    from sweeps.session import REPO_ROOT, cluster_runtime_env

    shipped = cluster_runtime_env("bap.train", {})
    assert shipped == {"py_modules": [str(REPO_ROOT / "bap"), str(REPO_ROOT / "sweeps")]}
    tests_entry = cluster_runtime_env("tests.sweeps.prepare_entry", {})["py_modules"]
    assert [Path(p).name for p in tests_entry] == ["bap", "sweeps", "tests"]
    assert cluster_runtime_env("some_installed_package.train", {})["py_modules"][-1].endswith("sweeps")
    assert cluster_runtime_env("bap.train", {"RAY_JOB_CONFIG_JSON_ENV_VAR": "{}"}) is None  # ray job submit


@pytest.mark.parametrize(("flag", "env", "local"), [
    (None, None, True), ("local", None, True), (None, "local", True),
    ("auto", None, False), (None, "ray://head:10001", False), ("127.0.0.1:6379", "local", False),
])
def test_which_addresses_start_a_local_ray(monkeypatch, flag, env, local):
    from sweeps import config as C
    from sweeps.session import starts_local_ray

    if env is None:
        monkeypatch.delenv("RAY_ADDRESS", raising=False)
    else:
        monkeypatch.setenv("RAY_ADDRESS", env)
    assert starts_local_ray(C.resolve("smoke", overrides={"address": flag})) is local


def test_database_url_without_its_driver_names_the_extra(workdir, capsys, monkeypatch):
    from sweeps import reachability

    monkeypatch.setitem(reachability.DB_DRIVERS, "postgresql", (("no_such_driver_module",), "bap-sweeps[postgres]"))
    assert main(["--preset", "smoke", "--optuna-storage", "postgresql://optuna@127.0.0.1:5432/optuna"]) == 2
    err = capsys.readouterr().err
    assert "needs a Python driver for postgresql" in err and "pip install bap-sweeps[postgres]" in err
    _nothing_written(workdir)


def test_unreachable_database_fails_before_launch_without_printing_the_password(workdir, capsys):
    url = f"postgresql://optuna:s3cret@127.0.0.1:{_closed_port()}/optuna"
    assert main(["--preset", "smoke", "--optuna-storage", url]) == 2
    err = capsys.readouterr().err
    assert "the Optuna storage at postgresql://" in err and "cannot be reached" in err and err.count("\n") == 1
    assert "s3cret" not in err
    _nothing_written(workdir)


@pytest.mark.slow
@pytest.mark.parametrize("flag, value, asked", [
    ("--gpus-per-trial", "0.5", "0.5 GPU (--gpus-per-trial): at most 0 on one node, 0 in all"),
    ("--resources-per-trial", "fast_disk=1", "1 fast_disk (--resources-per-trial fast_disk=1): at most 0 on one node"),
])
def test_resources_the_cluster_lacks_fail_in_seconds_not_hang(tmp_path, flag, value, asked):
    """The real driver on a local Ray without GPUs or that custom resource: one error line naming what was asked
    and what Ray has, exit 2, no trial launched (it used to wait silently for a placement)."""
    from tests.sweeps.driver import new_run, run_driver

    run = run_driver(new_run(tmp_path, "nogpu"), "--preset", "smoke", flag, value, timeout=180)
    assert run.returncode == 2, run.output[-3000:]
    line = next(x for x in run.output.splitlines() if x.startswith("error: "))
    assert "no node of this Ray" in line and asked in line, line
    assert not (run.storage_path / "nogpu").exists()
