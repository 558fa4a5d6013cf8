"""One sweep from Python: ``sweeps.run(config) -> SweepResult`` (the command line is :mod:`sweeps.cli`).

:func:`run` validates (:func:`sweeps.plan.plan`) and then :func:`launch` es the plan:

1. MLflow's parent run is created (or re-adopted on ``--resume``) and the data prepared, as two futures of a
   set-up pool, while the sweep's Ray starts (:class:`sweeps.session.RaySession`); on a cluster, or when preparing
   needs a GPU, the preparation is one Ray task instead (:mod:`sweeps.prepare`).
2. The ``Tuner`` is built, or restored with fresh callbacks, scheduler and searcher (:mod:`sweeps.tuner`), and
   fitted; trial actors land on the prestarted workers when the local Ray has them.
3. The summary (:mod:`sweeps.summary`) goes to the parent run as ``summary.json``; the parent run ends FINISHED, or
   KILLED when the sweep was interrupted (resumable with ``--resume``); RUNNING Optuna trials no Tune trial owns
   are closed once every Tune trial ended.

On any error the parent run ends FAILED (KILLED for Ctrl-C) and a Ray this sweep started is stopped.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from bap import metrics as M
from sweeps.config import SweepConfig
from sweeps.plan import SweepPlan, plan
from sweeps.prepare import Preparation, PreparationError
from sweeps.session import RaySession, check_resources
from sweeps.summary import SweepResult

if TYPE_CHECKING:
    from sweeps.tuner import Prepared

__all__ = ["PreparationError", "SweepResult", "launch", "run"]

logger = logging.getLogger("sweeps")
EXPERIMENT_STATE_PERIOD_S = "2"  # Tune's experiment snapshot period: bounds what a killed driver can lose


def run(config: SweepConfig) -> SweepResult:
    """Validate and run one sweep; block until it ends.

    Raises:
        sweeps.config.ConfigError: bad input (nothing was launched or written).
        PreparationError: the data could not be prepared (the parent run ended FAILED; no trial ran).
    """
    return launch(plan(config))


def _tune_environment() -> None:
    os.environ.setdefault("TUNE_GLOBAL_CHECKPOINT_S", EXPERIMENT_STATE_PERIOD_S)
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # the classic table, with our columns
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    os.environ["TUNE_DISABLE_AUTO_CALLBACK_LOGGERS"] = "1"  # Tune's per-trial loggers: added as configured


def _start_tracking(plan: SweepPlan) -> tuple[Any, dict[str, Any], dict[str, float]]:
    """The MLflow parent run (created or re-adopted) and, on ``--resume``, what MLflow says already ended."""
    import yaml

    from sweeps.tracking import SweepRun

    cfg = plan.config
    parent = SweepRun(cfg.tracking_uri, cfg.experiment, plan.sweep)
    parent.start(plan.resolved, {M.TAG_PRESET: cfg.preset, M.TAG_MODE: cfg.mode, M.TAG_OBJECTIVE: cfg.objective})
    if not parent.adopted:
        parent.log_artifact_text(M.SWEEP_FILE, yaml.safe_dump(plan.resolved, sort_keys=False))
        parent.set_note(_note(cfg))
    ended: dict[str, Any] = {}
    logged: dict[str, float] = {}
    if cfg.resume:
        from sweeps.resume import ended_trials, logged_epochs

        children = parent.child_runs()
        ended, logged = ended_trials(children), logged_epochs(children)
    with contextlib.suppress(Exception):  # warm the driver's remaining imports while Ray is still starting
        import sweeps.scheduler
        import sweeps.search
        import sweeps.trainable  # noqa: F401
    return parent, ended, logged


@contextlib.contextmanager
def _parent_ends_on_error(tracking: Future) -> Iterator[None]:
    """On an error inside: end the parent run FAILED (KILLED for Ctrl-C) unless it ended, once it exists."""
    try:
        yield
    except BaseException as exc:
        try:
            parent = tracking.result(timeout=60)[0]
        except Exception:  # noqa: BLE001  (no parent run to end)
            raise exc from None
        if parent.ended is None:
            try:
                parent.end("KILLED" if isinstance(exc, KeyboardInterrupt) else "FAILED")
            except Exception as end_error:  # noqa: BLE001
                logger.warning("could not end the MLflow parent run %s: %s", parent.run_id, end_error)
        raise


def launch(plan: SweepPlan) -> SweepResult:
    """Launch (or resume) a validated sweep and block until it ends (module docstring)."""
    from sweeps.space import parse_space
    from sweeps.tuner import Prepared  # noqa: F811

    timings: dict[str, float] = {"started_at": time.time()}  # the rest: seconds since then
    t0 = time.perf_counter()
    _tune_environment()
    cfg = plan.config
    session = RaySession(cfg)
    prep_gpus = 0 if cfg.gpus_per_trial == 0 else min(1.0, cfg.gpus_per_trial)
    preparation = Preparation(cfg.entrypoint, plan.fixed, list(parse_space(cfg.space)[0]),
                              cfg.data_sharing == "object_store")
    pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="sweep-setup")
    try:
        tracking = pool.submit(_start_tracking, plan)
        if session.local and not prep_gpus:
            preparation.start_here(pool)  # overlaps ray.init
        with _parent_ends_on_error(tracking), session:
            timings["ray_init_s"] = time.perf_counter() - t0
            if cfg.check_resources:
                check_resources(cfg)  # a trial no node can hold would wait for a placement forever
            if not preparation.started:
                preparation.start_remote(prep_gpus)
            parent, ended, logged = tracking.result()
            timings["tracking_setup_done_s"] = time.perf_counter() - t0
            try:
                data_ref, info, backbone_ref = preparation.result()
            except Exception as exc:  # nothing ran: the parent run ends FAILED, Ray stops
                raise PreparationError.from_exception(exc) from exc
            timings["data_ready_s"] = time.perf_counter() - t0
            prepared = Prepared(data_ref, backbone_ref, info.get("pretrained"), parent, ended, logged)
            return _fit(plan, prepared, session, timings, t0)
    finally:
        pool.shutdown(wait=False, cancel_futures=True)


def _fit(plan: SweepPlan, prepared: Prepared, session: RaySession, timings: dict[str, float],
         t0: float) -> SweepResult:
    """Build the tuner, fit it, summarise, end the parent run and stop the local Ray."""
    from sweeps.tuner import build_tuner

    cfg, parent = plan.config, prepared.parent
    tuner, search_alg, trial_logger = build_tuner(plan, prepared)
    if not cfg.resume:
        _write_text(plan.experiment_dir, M.SWEEP_FILE, plan.resolved)
    print(f"[sweep] {plan.sweep}: {cfg.total_trials} trials ({cfg.mode} mode, {len(plan.domains)} domains: "
          f"{', '.join(plan.domains)}), {cfg.max_concurrent} at a time; MLflow run {parent.run_id} in experiment "
          f"{cfg.experiment!r}", flush=True)
    timings["before_fit_s"] = time.perf_counter() - t0
    timings["before_fit_driver_cpu_s"] = fit_cpu = time.process_time()  # the driver since it started
    interrupted, results, warm = False, None, False
    try:
        with session.trial_actors() as warm:
            results = tuner.fit()
    except KeyboardInterrupt:
        interrupted = True
    finally:
        timings["fit_s"] = time.perf_counter() - t0 - timings["before_fit_s"]
        timings["fit_driver_cpu_s"] = time.process_time() - fit_cpu  # Tune's loop, the MLflow writer, Optuna
        trial_logger.close()
    timings["mlflow_drain_s"] = time.perf_counter() - t0 - timings["before_fit_s"] - timings["fit_s"]
    result = _summarise(plan, results, search_alg, parent, trial_logger, timings, warm)
    result.interrupted = interrupted or not result.complete  # Ctrl-C or an error: resumable with --resume
    timings["summary_ready_s"] = time.perf_counter() - t0
    _log_summary(parent, result, cfg)
    parent.end("KILLED" if result.interrupted else "FINISHED")
    session.stop()
    timings["total_s"] = time.perf_counter() - t0
    return result


def _complete(results: Any, total: int) -> bool:
    """Every one of the sweep's ``total`` trials ran to an end (TERMINATED or ERROR): it was not interrupted."""
    if results is None:
        return False
    return len(results) >= total and results.num_terminated + results.num_errors == len(results)


def _summarise(plan: SweepPlan, results: Any, search_alg: Any, parent: Any, trial_logger: Any,
               timings: dict[str, float], warm: bool) -> SweepResult:
    from sweeps import search
    from sweeps.summary import rows_from_results

    cfg = plan.config
    studies = search.studies_of(search_alg)
    uri = cfg.tracking_uri
    result = SweepResult(
        sweep=plan.sweep, complete=_complete(results, cfg.total_trials), interrupted=False,
        rows=rows_from_results(results, cfg.objective), objective=cfg.objective, mode=cfg.mode,
        domains=list(plan.domains), tune_results=plan.experiment_dir,
        optuna={"storage": cfg.optuna_storage, "studies": [s.study_name for s in studies]},
        mlflow={"tracking_uri": uri, "experiment": cfg.experiment, "parent_run_id": parent.run_id,
                "ui": _ui_hint(cfg, parent),
                "logging_errors": list(trial_logger.errors)[:10], "stats": dict(trial_logger.stats)},
        timings=timings, warm_workers=bool(warm),
        budget_cost=plan.defaults.get(M.PARAM_BUDGET_COST),
    )
    if result.complete:  # every Tune trial ended: a RUNNING Optuna trial belongs to no one
        result.optuna_trials_failed_as_stale = sum(search.fail_stale_trials(s) for s in studies)
    return result


def _ui_hint(cfg: Any, parent: Any) -> str:
    """Where to look at the sweep: the parent run in the MLflow UI's model-training view (a server's URL, or the
    command that serves a local store, then the URL it will have)."""
    from analysis.ui import DEFAULT_MLFLOW_PORT, mlflow_experiment_url

    uri = cfg.tracking_uri
    if uri.startswith(("http://", "https://")):
        return f"open {mlflow_experiment_url(uri, parent.experiment_id, parent.run_id)}"
    url = mlflow_experiment_url(f"http://127.0.0.1:{DEFAULT_MLFLOW_PORT}", parent.experiment_id, parent.run_id)
    return (f"python -m analysis.ui --tracking-uri {uri} --optuna-storage {cfg.optuna_storage} "
            f"(MLflow UI and optuna-dashboard), then open {url}")


def _note(cfg: Any, result: SweepResult | None = None) -> str:
    """The parent run's description: how the sweep was started, and once it ended, its outcome."""
    from sweeps.summary import sweep_command, sweep_note

    return sweep_note(sweep_command(sys.argv), cfg.mode, cfg.budgets, cfg.objective, result)


def _log_summary(parent: Any, result: SweepResult, cfg: Any) -> None:
    import json

    try:
        parent.log_artifact_text(M.SUMMARY_FILE, json.dumps(result.to_dict(), indent=1, default=str))
        parent.log_metrics({"trials_" + k.lower(): float(v) for k, v in result.counts.items()})
        parent.set_note(_note(cfg, result))
    except Exception as exc:  # noqa: BLE001
        logger.warning("could not log the sweep summary to MLflow: %s", exc)


def _write_text(folder: str, name: str, values: dict[str, Any]) -> None:
    import pyarrow.fs as pafs
    import yaml

    fs, path = pafs.FileSystem.from_uri(folder) if "://" in folder else (pafs.LocalFileSystem(), folder)
    fs.create_dir(path, recursive=True)
    with fs.open_output_stream(f"{path}/{name}") as f:
        f.write(yaml.safe_dump(values, sort_keys=False).encode())
