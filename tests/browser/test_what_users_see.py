"""What users see, in a real browser (headless system Chromium via Selenium), after one real smoke sweep.

One module fixture runs the smoke sweep (``sweeps/decathlon.py --preset smoke``: local Ray, SQLite MLflow, an
Optuna journal file) and its report (``python -m analysis.report``) in a temporary folder; another starts the MLflow
UI and optuna-dashboard on its stores through :func:`analysis.ui.start_ui`. The tests then look at

* the MLflow UI's model-training runs table (not MLflow 3's GenAI overview): the sweep's parent run, and its
  trials as nested child runs once it is expanded;
* optuna-dashboard: its REST API lists the sweep's per-budget studies and their trials, its pages load cleanly;
* the report's ``pareto.html`` and ``summary.html``: no JavaScript error, nothing loaded from the network, and no
  control (the target drop-down, plotly's modebar) over the figure's title or legend, for every target;
* ``python -m analysis.ui`` itself: it prints the URLs and leaves nothing running after Ctrl-C or SIGTERM.

Screenshots go to each test's temporary folder; their paths are printed past pytest's capture.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest

from analysis.ui import UI_EXTRA, mlflow_experiment_url, start_ui
from bap import metrics as M
from tests.browser.browser import (
    BOXES_JS,
    CSS,
    EACH_TARGET_JS,
    LOADED_JS,
    XPATH,
    chrome,
    get_json,
    overlaps,
    severe,
    wait_for,
)
from tests.sweeps.driver import REPO, SweepRun, new_run, run_driver, wait_gone

pytestmark = pytest.mark.slow

SWEEP = "browser-smoke"  # --name: the MLflow parent run's name and the Optuna studies' prefix
SMOKE_BUDGETS = (0.25, 0.5, 0.75, 1.0)  # sweeps/presets/smoke.yaml, one trial each
# The child runs' names (sweeps.tracking.trial_run_name: "β=0.50 union w=5.0"). Relax or change it here alone.
CHILD_NAME_PREFIX = "β="
GENAI_OVERVIEW = ("Token usage", "Tokens per trace", "Traces", "Latency")  # MLflow 3's GenAI experiment overview
MLFLOW_OWN_ERRORS = ("/users/current",)  # the UI asks for a logged-in user; 404 without the basic-auth app
RUN_NAME_CELL = '[role="row"] [col-id="attributes.`Run Name`"]'


@dataclass
class Sweep:
    run: SweepRun
    report: Path
    timings: dict[str, float]


@pytest.fixture(scope="module")
def say(pytestconfig):
    """Print a line past pytest's output capture."""
    reporter = pytestconfig.pluginmanager.get_plugin("terminalreporter")
    capture = pytestconfig.pluginmanager.get_plugin("capturemanager")

    def write(line: str) -> None:
        if reporter is None:
            print(line, file=sys.__stderr__)
            return
        with capture.global_and_fixture_disabled() if capture else contextlib.nullcontext():
            reporter.write_line(line)

    return write


@pytest.fixture(scope="module")
def sweep(tmp_path_factory, mini_data, say) -> Sweep:
    """One smoke sweep, then its report (from MLflow, as a user would write it), in a temporary folder."""
    run = new_run(tmp_path_factory.mktemp("browser"), SWEEP)
    run_driver(run, "--preset", "smoke")
    if run.returncode != 0:
        pytest.fail(f"smoke sweep failed with exit code {run.returncode}:\n{run.output[-8000:]}")
    report = run.root / "reports" / "x"
    start = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "analysis.report", "--tracking-uri", run.tracking_uri,
                           "--experiment", run.experiment, "--out", str(report)],
                          cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    timings = {"sweep": run.wall_s, "report": time.monotonic() - start}
    say(f"[browser] smoke sweep {run.wall_s:.1f} s, report {timings['report']:.1f} s, in {run.root}")
    return Sweep(run, report, timings)


@pytest.fixture(scope="module")
def ui(sweep, say):
    """The MLflow UI and optuna-dashboard on the sweep's stores, on free ports; afterwards nothing of them runs."""
    start = time.monotonic()
    with start_ui(sweep.run.tracking_uri, str(sweep.run.optuna_storage), sweep.run.experiment,
                  mlflow_port=0, dashboard_port=0, log_dir=sweep.run.root / "ui-logs") as running:
        assert running.dashboard is not None, running.notes
        say(f"[browser] MLflow UI and optuna-dashboard answered after {time.monotonic() - start:.1f} s: "
            + "; ".join(running.lines()[:2]))
        pids = {p.pid for s in running.servers for p in [psutil.Process(s.process.pid),
                                                        *psutil.Process(s.process.pid).children(recursive=True)]}
        yield running
    assert not wait_gone(pids, timeout=15), "UI processes left running after stop()"


@pytest.fixture(scope="module")
def driver():
    d = chrome()
    yield d
    d.quit()


@pytest.fixture
def shot(driver, tmp_path, say):
    """``shot(name)`` saves a screenshot of the window into the test's folder and prints its path."""
    def save(name: str) -> Path:
        path = tmp_path / f"{name}.png"
        driver.save_screenshot(str(path))
        say(f"[browser] screenshot: {path}")
        return path

    driver.get_log("browser")  # drop what earlier tests left in the console log
    return save


def _run_names(driver) -> list[str]:
    return [e.text for e in driver.find_elements(CSS, f"{RUN_NAME_CELL} a")]


def _mlflow_runs(sweep: Sweep):
    from mlflow import MlflowClient

    from analysis.load import find_sweep

    ref = find_sweep(sweep.run.tracking_uri, sweep.run.experiment, None, SWEEP)
    client = MlflowClient(tracking_uri=sweep.run.tracking_uri)
    children = client.search_runs([ref.experiment_id], f"tags.`{M.TAG_PARENT_RUN}` = '{ref.parent_run_id}'")
    return ref, children


def test_mlflow_ui_shows_the_sweep_and_its_trials_in_the_runs_table(ui, driver, sweep, shot, say):
    ref, children = _mlflow_runs(sweep)
    assert len(children) == len(SMOKE_BUDGETS)
    assert ui.experiment_id == ref.experiment_id
    assert ui.mlflow_url == f"{ui.mlflow.url}/#/experiments/{ref.experiment_id}?workflowType=machine_learning"
    start = time.monotonic()
    driver.get(ui.mlflow_url)
    parent = wait_for(driver, lambda d: d.find_elements(CSS, f'a[href$="/runs/{ref.parent_run_id}"]'), 90,
                      "the sweep's parent run never showed in the runs table")[0]
    say(f"[browser] MLflow runs table shown after {time.monotonic() - start:.1f} s")
    assert parent.text == SWEEP
    main = driver.find_element(CSS, "main").text
    assert not [w for w in GENAI_OVERVIEW if w.lower() in main.lower()], f"GenAI overview, not the runs table:\n{main}"
    headers = [e.text for e in driver.find_elements(CSS, ".ag-header-cell")]
    assert {"Run Name", "Created", "Duration"} <= set(headers), headers
    assert f"{1 + len(children)} matching runs" in main, main
    assert _run_names(driver) == [SWEEP], "the trials should be folded under their sweep's run"
    shot("mlflow-runs-collapsed")

    parent.find_element(XPATH, "./ancestor::div[@role='gridcell']//button").click()  # the row's expand control
    wait_for(driver, lambda d: len(_run_names(d)) == 1 + len(children), 30, "the child runs never showed")
    shot("mlflow-runs-expanded")
    shown = _run_names(driver)[1:]
    assert sorted(shown) == sorted(c.info.run_name for c in children)
    hrefs = {e.get_attribute("href") for e in driver.find_elements(CSS, f"{RUN_NAME_CELL} a")}
    for child in children:  # each row links to its run, as mlflow_experiment_url builds the link
        link = mlflow_experiment_url(ui.mlflow.url, ref.experiment_id, child.info.run_id)
        assert link.split("?")[0] in hrefs
    say(f"[browser] child runs shown: {shown}")
    assert not severe(driver.get_log("browser"), MLFLOW_OWN_ERRORS)
    # The names other engineers are changing (CHILD_NAME_PREFIX): the one assertion to relax while that lands.
    assert all(name.startswith(CHILD_NAME_PREFIX) for name in shown), (
        f"child runs should be named {CHILD_NAME_PREFIX}<budget> ...: {shown}")


def test_mlflow_run_link_opens_the_run(ui, driver, sweep, shot):
    ref, _ = _mlflow_runs(sweep)
    driver.get(mlflow_experiment_url(ui.mlflow.url, ref.experiment_id, ref.parent_run_id))
    wait_for(driver, lambda d: SWEEP in d.find_element(CSS, "main").text, 60, "the run page never named the run")
    main = driver.find_element(CSS, "main").text
    # The run page has a "Traces" tab of its own; the GenAI overview's charts must not be there.
    assert not [w for w in GENAI_OVERVIEW[:2] if w.lower() in main.lower()], main
    assert "Child runs" in main and "Parameters" in main, main
    shot("mlflow-parent-run")


def test_optuna_dashboard_serves_the_sweeps_studies(ui, driver, shot):
    studies = {s["study_name"]: s["study_id"] for s in get_json(ui.dashboard.url + "/api/studies")["study_summaries"]}
    expected = [f"{SWEEP}/budget={b:g}" for b in SMOKE_BUDGETS]
    assert set(expected) <= set(studies), studies
    for name in expected:
        trials = get_json(f"{ui.dashboard.url}/api/studies/{studies[name]}")["trials"]
        assert len(trials) == 1 and trials[0]["state"] in ("Complete", "Pruned"), (name, trials)
    driver.get(ui.dashboard_url)
    wait_for(driver, lambda d: all(n in d.find_element(CSS, "body").text for n in expected), 60,
             "the dashboard's study list never showed every study")
    shot("optuna-dashboard-studies")
    assert not severe(driver.get_log("browser"))
    driver.get(f"{ui.dashboard_url}studies/{studies[expected[0]]}")
    wait_for(driver, lambda d: "Best Trial" in d.find_element(CSS, "body").text, 60, "no study page")
    shot("optuna-dashboard-study")
    assert not severe(driver.get_log("browser"))


def _loaded_offline(driver) -> None:
    remote = [u for u in driver.execute_script(LOADED_JS) if not u.startswith(("file:", "data:", "blob:"))]
    assert not remote, f"the page loads from the network: {remote}"


def test_pareto_page_loads_offline_without_errors_or_overlaps(sweep, driver, shot, say):
    page = sweep.report / "pareto.html"
    for width in (1600, 1000):
        driver.set_window_size(width, 1000)
        driver.get(page.as_uri())
        wait_for(driver, lambda d: d.find_elements(CSS, ".gtitle") and d.find_elements(CSS, ".updatemenu-header-group"),
                 60, "plotly never drew the figure")
        assert not severe(driver.get_log("browser"))
        _loaded_offline(driver)
        shot(f"pareto-{width}px")
        per_target = driver.execute_async_script(EACH_TARGET_JS, "pareto", BOXES_JS)
        assert isinstance(per_target, list) and per_target, per_target
        found = [f"{label} at {width} px: {o}" for label, boxes in per_target
                 for o in overlaps(boxes, [("menu", "title"), ("menu", "legend"), ("modebar", "title"),
                                           ("modebar", "legend"), ("title", "legend"), ("xtitle", "legend")])]
        assert not found, "\n".join(found)
        assert all(boxes["title"] and boxes["menu"] and boxes["legend"] for _, boxes in per_target), per_target
        say(f"[browser] pareto.html at {width} px: {len(per_target)} targets, no control over a title or legend")
        assert not severe(driver.get_log("browser"))
    driver.set_window_size(1600, 1000)
    _choose_target(driver, "mean")  # as a user does: open the drop-down, click an entry
    shot("pareto-mean")
    assert not severe(driver.get_log("browser"))


def _choose_target(driver, label: str) -> None:
    before = driver.find_element(CSS, ".gtitle").text
    driver.find_element(CSS, ".updatemenu-header-group").click()
    entry = wait_for(driver, lambda d: [b for b in d.find_elements(CSS, ".updatemenu-dropdown-button")
                                        if b.text == label], 10, f"no {label!r} in the drop-down")[0]
    entry.click()
    wait_for(driver, lambda d: d.find_element(CSS, ".gtitle").text != before, 10, f"{label!r} was not shown")
    wait_for(driver, lambda d: not d.find_elements(CSS, ".updatemenu-dropdown-button"), 10, "the menu stayed open")
    time.sleep(0.3)  # the menu's closing transition
    assert driver.find_element(CSS, ".updatemenu-header-group").text.startswith(label)
    boxes = driver.execute_script(BOXES_JS)
    assert not overlaps(boxes, [("menu", "title"), ("menu", "legend")]), boxes


def test_summary_page_loads_offline_with_its_figures(sweep, driver, shot):
    page = sweep.report / "summary.html"
    assert (sweep.report / "summary.md").is_file()
    driver.get(page.as_uri())
    wait_for(driver, lambda d: d.execute_script(
        "return [...document.images].every(i => i.complete)"), 30, "the figures never loaded")
    images = driver.execute_script("return [...document.images].map(i => [i.src.slice(0, 22), i.naturalWidth])")
    assert images and all(src.startswith("data:image/png") and width > 0 for src, width in images), images
    assert driver.find_elements(CSS, "table") and "Per budget" in driver.find_element(CSS, "body").text
    _loaded_offline(driver)
    assert not severe(driver.get_log("browser"))
    shot("summary")


def _read_until(proc: subprocess.Popen, marker: str, timeout: float) -> list[str]:
    """Lines of ``proc``'s stdout up to the one containing ``marker`` (fails after ``timeout`` seconds)."""
    lines: list[str] = []
    found = threading.Event()

    def read() -> None:
        for line in proc.stdout:
            lines.append(line.rstrip("\n"))
            if marker in line:
                found.set()
                return

    threading.Thread(target=read, daemon=True).start()
    if not found.wait(timeout):
        proc.kill()
        pytest.fail(f"no {marker!r} from python -m analysis.ui within {timeout} s:\n" + "\n".join(lines))
    return lines


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGKILL], ids=["ctrl-c", "sigterm", "kill-9"])
def test_ui_command_prints_the_urls_and_stops_cleanly(sweep, sig, say):
    """``python -m analysis.ui`` as a user runs it; Ctrl-C (SIGINT) or SIGTERM stops both servers and exits 0; even
    after a kill -9 of the command no server is left (they get SIGTERM when it dies)."""
    run = sweep.run
    start = time.monotonic()
    proc = subprocess.Popen([sys.executable, "-m", "analysis.ui", "--tracking-uri", run.tracking_uri,
                             "--optuna-storage", str(run.optuna_storage), "--experiment", run.experiment,
                             "--mlflow-port", "0", "--dashboard-port", "0"],
                            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    lines = _read_until(proc, "Ctrl-C stops both", 120)
    up = time.monotonic() - start
    text = "\n".join(lines)
    mlflow = re.search(r"MLflow UI: +(http://127\.0\.0\.1:\d+)(/#/experiments/\S+)", text)
    dashboard = re.search(r"optuna-dashboard: +(http://127\.0\.0\.1:\d+)/dashboard/", text)
    assert mlflow and dashboard, text
    ref, _ = _mlflow_runs(sweep)
    assert mlflow.group(1) + mlflow.group(2) == mlflow_experiment_url(mlflow.group(1), ref.experiment_id)
    assert get_json(dashboard.group(1) + "/api/studies")["study_summaries"]
    pids = {p.pid for p in psutil.Process(proc.pid).children(recursive=True)}
    assert len(pids) >= 2, "expected the MLflow UI and optuna-dashboard as child processes"
    stop = time.monotonic()
    proc.send_signal(sig)
    rest, _ = proc.communicate(timeout=60)
    if sig == signal.SIGKILL:
        assert proc.returncode == -signal.SIGKILL
    else:
        assert proc.returncode == 0, text + rest
        assert "stopped the MLflow UI and optuna-dashboard" in rest
    left = wait_gone(pids, timeout=10)
    assert not left, f"still running after {sig.name}: {[psutil.Process(p).cmdline() for p in left]}"
    say(f"[browser] python -m analysis.ui: up in {up:.1f} s, stopped by {sig.name} in {time.monotonic() - stop:.1f} s")


def test_dashboard_is_skipped_with_a_message_when_not_installed(monkeypatch: pytest.MonkeyPatch):
    import analysis.ui as ui

    monkeypatch.setattr(ui, "_executable", lambda name: None)
    message = ui.dashboard_missing()
    assert message is not None and UI_EXTRA in message and "pip install 'bap-sweeps[ui]'" in message


def test_mlflow_experiment_url():
    assert (mlflow_experiment_url("http://127.0.0.1:5000/", "3")
            == "http://127.0.0.1:5000/#/experiments/3?workflowType=machine_learning")
    assert (mlflow_experiment_url("http://h:1", 3, "abc")
            == "http://h:1/#/experiments/3/runs/abc?workflowType=machine_learning")
