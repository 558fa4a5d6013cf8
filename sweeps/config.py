"""The resolved sweep configuration: preset YAML < ``--config`` YAML < command-line flags, validated once.

A preset (``sweeps/presets/<name>.yaml``) holds every value; a user YAML file overrides any subset of it; flags override
both. :func:`resolve` returns a :class:`SweepConfig` or raises :class:`ConfigError` with a one-line message naming the
bad value and the allowed values -- the driver turns that into exit code 2 before anything is launched.

Checks that need the training code (domain names, ``TrainConfig`` fields) or the network (the tracking server) are
in :func:`check_environment`; everything here is pure and fast.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from bap import metrics as M

PRESET_DIR = Path(__file__).with_name("presets")
MODES = ("grid", "pareto")
OBJECTIVES = (M.MEAN_VAL_ACC, M.SCORE)
# Costs a pareto-mode study minimises beside the objective: name -> the metric of a trial's final report. Latency is
# the measured CPU latency ratio (pruned / unpruned, timed side by side in the trial: a slower or busier node slows
# both, so trials on different nodes compare), at batch 1 or 64.
PARETO_COSTS: dict[str, str] = {
    "macs": M.UNION_MACS_RATIO,
    "params": M.UNION_PARAMS_RATIO,
    "latency_b1": M.latency_metric("cpu", 1, M.LATENCY_RATIO),
    "latency_b64": M.latency_metric("cpu", 64, M.LATENCY_RATIO),
}
LATENCY_COSTS = ("latency_b1", "latency_b64")
SAMPLERS = ("tpe", "nsga2", "random")
DATA_SHARING = ("object_store", "cache")
DATA_KINDS = ("mini", "decathlon", "sketch")
DEFAULT_TRACKING_URI = M.DEFAULT_TRACKING_URI
DEFAULT_STORAGE_PATH = "ray_results"
DEFAULT_OPTUNA_STORAGE = "optuna_journal.log"
DEFAULT_EXPERIMENT = M.DEFAULT_EXPERIMENT
DEFAULT_ENTRYPOINT = "bap.train"

# Command-line groups, in --help order.
WHAT, DATA, RESOURCES, RESULTS = "what to run", "data", "resources", "where results go"


class ConfigError(ValueError):
    """A user-facing configuration error: the driver prints it on one line and exits with code 2."""


def flag(help: str, group: str = WHAT, *, choices: Sequence[Any] | None = None, floats: bool = False,
         name: str | None = None, short: str | None = None) -> dict[str, Any]:
    """Field metadata that puts a sweep setting on the command line (:mod:`sweeps.cli` builds ``--<field-name>``
    from it). ``floats``: a comma-separated list of numbers; ``name``: another flag name; ``short``: e.g. ``-v``."""
    return {"cli": {"help": help, "group": group, "choices": choices, "floats": floats, "name": name,
                    "short": short}}


@dataclass
class AshaConfig:
    """Budget-fair ASHA (see ``sweeps.scheduler``). ``time_attr`` is the reported epoch counter."""

    enabled: bool = field(default=True, metadata=flag("early stopping (--no-asha: FIFO)", RESOURCES, name="asha"))
    grace_period: int = field(default=1, metadata=flag("ASHA: first rung, in epochs", RESOURCES))
    reduction_factor: float = field(default=2.0, metadata=flag(
        "ASHA: keep the top 1/rf at each rung, among trials of the same budget (grid mode) or of the same or a "
        "lower budget (pareto mode)", RESOURCES))


@dataclass
class SweepConfig:
    """Everything one sweep needs; every field can come from a preset, a YAML file or a flag (fields with ``flag``
    metadata are on the command line: ``--<field-name>``).

    Attributes:
        preset: name of the preset the values started from (``smoke``, ``mini``, ``decathlon``).
        name: sweep name: the Ray Tune experiment folder, the MLflow parent run and the Optuna study name.
            None picks ``<preset>-<timestamp>`` for a new sweep and the newest ``<preset>-*`` sweep on ``--resume``.
        mode: ``grid`` (one single-objective study per budget in ``budgets``) or ``pareto`` (one multi-objective
            study, budget searched in ``budget_range``).
        budgets: the budget grid for ``grid`` mode, each in (0, 1].
        budget_range: ``[low, high]`` searched in ``pareto`` mode, within (0, 1].
        num_samples: trials per budget (``grid``) or in total (``pareto``).
        objective: what the search maximises: ``mean_val_acc`` or ``score`` (Decathlon score).
        pareto_costs: what a ``pareto`` study minimises beside the objective (:data:`PARETO_COSTS`): ``macs``,
            ``params`` (union ratios), ``latency_b1``, ``latency_b64`` (measured CPU latency ratios; the trials must
            time their models, ``train.latency_min_time_s > 0``).
        sampler: Optuna sampler, pinned explicitly: ``tpe``, ``nsga2`` or ``random``.
        train: fixed ``TrainConfig`` values (the search space overrides the searched ones).
        space: search space: ``{field: {choice|uniform|loguniform|int: ...}}``, or a plain value to fix a field.
        entrypoint: module providing ``TrainConfig`` and ``train`` (:class:`bap.entrypoint.TrainingEntryPoint`;
            tests and the benchmark swap it).
        tensorboard: also write TensorBoard event files per trial (Tune's ``TBXLoggerCallback``). Off by default:
            MLflow has every metric, and tensorboardX makes the driver import torch.
    """

    preset: str = field(default="mini", metadata=flag("starting values: a preset of sweeps/presets (default: mini)"))
    name: str | None = field(default=None, metadata=flag(
        "sweep name (Tune folder, MLflow parent run, Optuna study); default <preset>-<date-time>, or the newest "
        "such sweep with --resume"))
    mode: str = field(default="grid", metadata=flag(
        "grid: one single-objective study per budget; pareto: one multi-objective study (objective up, "
        "--pareto-costs down: by default union MACs and params)", choices=MODES))
    budgets: list[float] = field(default_factory=lambda: [0.25, 0.5, 0.75, 1.0], metadata=flag(
        "budget grid for grid mode, comma separated, each in (0, 1], e.g. 0.25,0.5", floats=True))
    budget_range: list[float] = field(default_factory=lambda: [0.1, 1.0], metadata=flag(
        "low,high of the budget searched in pareto mode", floats=True))
    num_samples: int = field(default=4, metadata=flag("trials per budget (grid) or in total (pareto)"))
    objective: str = field(default=M.MEAN_VAL_ACC, metadata=flag("what the search maximises", choices=OBJECTIVES))
    pareto_costs: list[str] = field(default_factory=lambda: ["macs", "params"], metadata=flag(
        f"pareto mode: the costs minimised beside the objective, comma separated, from {', '.join(PARETO_COSTS)} "
        "(latency: the measured CPU latency ratio of the pruned model, batch 1 or 64)"))
    sampler: str = field(default="tpe", metadata=flag("Optuna sampler (pinned explicitly)", choices=SAMPLERS))
    seed: int = field(default=0, metadata=flag("sampler seed (trial seeds: --set seed=N)"))
    start_from_defaults: bool = field(default=True, metadata=flag(
        "each new study's first trial runs the documented defaults, then the sampler searches around them"))
    max_concurrent: int = field(default=2, metadata=flag("trials running at once (ConcurrencyLimiter)", RESOURCES))
    cpus_per_trial: float = field(default=1.0, metadata=flag("CPUs per trial (also its torch threads)", RESOURCES))
    gpus_per_trial: float = field(default=0.0, metadata=flag(
        "GPUs per trial; fractions share a GPU (0.25: four per GPU)", RESOURCES))
    resources_per_trial: dict[str, float] = field(default_factory=dict, metadata=flag(
        "custom Ray resources each trial needs besides CPUs and GPUs, NAME=AMOUNT,..., e.g. "
        "accelerator_type:H100=0.001 (a node type) or a resource your nodes declare (ray start --resources)",
        RESOURCES))
    check_resources: bool = field(default=True, metadata=flag(
        "refuse a sweep whose trials no node of the Ray cluster can hold (CPUs, GPUs, custom resources per trial)",
        RESOURCES))
    max_failures: int = field(default=2, metadata=flag(
        "retries of a failing trial, each from its last checkpoint", RESOURCES))
    checkpoints_to_keep: int = 2
    asha: AshaConfig = field(default_factory=AshaConfig)
    data: str = "mini"
    data_root: str | None = field(default=None, metadata=flag(
        "data folder: for data decathlon the decathlon-1.0 folder (annotations/, data/); for data sketch the "
        "ImageNet-to-Sketch folder (cubs_cropped/, flowers/, ... each with train/ and test/)", DATA))
    domains: list[str] | None = field(default=None, metadata=flag("comma-separated domains (default: all)", DATA))
    cache_dir: str | None = field(default=None, metadata=flag(
        "packed-data and backbone cache folder (default: $BAP_CACHE_DIR or ~/.cache/bap)", DATA))
    data_sharing: str = field(default="object_store", metadata=flag(
        "how trials get the data", DATA, choices=DATA_SHARING))
    tracking_uri: str = field(default=DEFAULT_TRACKING_URI, metadata=flag(
        f"MLflow tracking URI (default {DEFAULT_TRACKING_URI}; a server http://host:5000 works the same)", RESULTS))
    experiment: str = field(default=DEFAULT_EXPERIMENT, metadata=flag(
        f"MLflow experiment name (default {DEFAULT_EXPERIMENT})", RESULTS))
    storage_path: str = field(default=DEFAULT_STORAGE_PATH, metadata=flag(
        f"Ray Tune results: a folder (shared on clusters) or an object-store URI (default {DEFAULT_STORAGE_PATH})",
        RESULTS))
    optuna_storage: str = field(default=DEFAULT_OPTUNA_STORAGE, metadata=flag(
        f"Optuna storage: a journal file path or an RDB URL (default {DEFAULT_OPTUNA_STORAGE})", RESULTS))
    address: str | None = field(default=None, metadata=flag(
        "Ray cluster address (default: $RAY_ADDRESS, else a local Ray)", RESOURCES))
    num_cpus: int | None = field(default=None, metadata=flag("CPUs of the local Ray (ignored on a cluster)",
                                                             RESOURCES))
    num_gpus: int | None = None
    object_store_memory_mb: int | None = 512
    resume: bool = field(default=False, metadata=flag("continue an interrupted sweep (Tuner.restore)"))
    verbose: int = field(default=1, metadata=flag("Tune progress output level", RESULTS, choices=(0, 1, 2, 3),
                                                  short="-v"))
    tensorboard: bool = field(default=False, metadata=flag(
        "also write TensorBoard event files per trial (tensorboard --logdir <storage-path>); MLflow has every "
        "metric either way", RESULTS))
    tracking_timeout_s: float = 10.0
    entrypoint: str = DEFAULT_ENTRYPOINT
    train: dict[str, Any] = field(default_factory=dict)
    space: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Plain-data form (what ``sweep.yaml`` next to the results holds)."""
        return dataclasses.asdict(self)

    @property
    def multi_objective(self) -> bool:
        return self.mode == "pareto"

    @property
    def data_spec(self) -> str:
        """What ``bap.data.load_data`` takes: ``"mini"``, or the Decathlon or ImageNet-to-Sketch root."""
        return self.data_root if self.data in ("decathlon", "sketch") else self.data

    @property
    def total_trials(self) -> int:
        return self.num_samples * (1 if self.multi_objective else len(self.budgets))


def available_presets() -> list[str]:
    return sorted(p.stem for p in PRESET_DIR.glob("*.yaml"))


def load_yaml(path: str | Path) -> dict[str, Any]:
    """A YAML mapping from ``path``; ConfigError if it is missing, unreadable or not a mapping."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"config file {str(p)!r} does not exist")
    try:
        data = yaml.safe_load(p.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {str(p)!r} is not valid YAML: {exc}".splitlines()[0]) from None
    if not isinstance(data, dict):
        raise ConfigError(f"config file {str(p)!r} must hold a mapping, got {type(data).__name__}")
    return data


def load_preset(name: str) -> dict[str, Any]:
    presets = available_presets()
    if name not in presets:
        raise ConfigError(f"unknown preset {name!r}; allowed values: {', '.join(presets)}")
    return load_yaml(PRESET_DIR / f"{name}.yaml")


def merge(base: Mapping[str, Any], override: Mapping[str, Any], _path: str = "") -> dict[str, Any]:
    """Recursive dict merge: mappings merge key by key, anything else in ``override`` replaces ``base``.

    A search-space entry (``space.<field>``) is replaced whole, never merged: ``{choice: [...]}`` over a preset's
    ``{loguniform: [...]}`` means the choice.
    """
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping) and _path != "space.":
            out[key] = merge(out[key], value, f"{_path}{key}.")
        else:
            out[key] = value
    return out


_FLOAT = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")


def coerce_number(value: Any) -> Any:
    """``"1e-6"`` -> ``1e-06``: PyYAML (YAML 1.1) reads exponent floats without a dot as strings."""
    if isinstance(value, str) and _FLOAT.fullmatch(value.strip()):
        return float(value)
    if isinstance(value, list):
        return [coerce_number(v) for v in value]
    if isinstance(value, dict):
        return {k: coerce_number(v) for k, v in value.items()}
    return value


def parse_scalar(text: str) -> Any:
    """A ``--set key=value`` value: YAML scalar rules (``0.1`` -> float, ``true`` -> bool, ``null`` -> None)."""
    try:
        return coerce_number(yaml.safe_load(text))
    except yaml.YAMLError:
        return text


def parse_float_list(text: str | Sequence[Any], what: str) -> list[float]:
    items = [t for t in re.split(r"[,\s]+", text.strip()) if t] if isinstance(text, str) else list(text)
    try:
        return [float(t) for t in items]
    except (TypeError, ValueError):
        raise ConfigError(f"{what} must be numbers, got {text!r}") from None


def parse_amounts(text: str | Mapping[str, Any], what: str) -> dict[str, float]:
    """``NAME=AMOUNT,...`` (or a mapping, from YAML) as {name: amount}; names may contain ':' (Ray's own)."""
    if isinstance(text, Mapping):
        items = [(str(k), v) for k, v in text.items()]
    else:
        items = []
        for part in (t for t in re.split(r"[,\s]+", text.strip()) if t):
            name, sep, amount = part.rpartition("=")
            if not sep or not name:
                raise ConfigError(f"{what} expects NAME=AMOUNT,..., got {part!r}")
            items.append((name, amount))
    try:
        return {name: float(amount) for name, amount in items}
    except (TypeError, ValueError):
        raise ConfigError(f"{what} amounts must be numbers, got {text!r}") from None


def _fields() -> dict[str, dataclasses.Field]:
    return {f.name: f for f in dataclasses.fields(SweepConfig)}


def from_mapping(values: Mapping[str, Any]) -> SweepConfig:
    """Build a SweepConfig from merged plain data; unknown keys are errors, not silently ignored."""
    known = _fields()
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise ConfigError(f"unknown sweep setting(s) {', '.join(unknown)}; allowed: {', '.join(sorted(known))}")
    kwargs = dict(values)
    if "asha" in kwargs:
        asha = kwargs["asha"] or {}
        if isinstance(asha, bool):
            asha = {"enabled": asha}
        if not isinstance(asha, Mapping):
            raise ConfigError(f"asha must be a mapping, got {asha!r}")
        allowed = {f.name for f in dataclasses.fields(AshaConfig)}
        bad = sorted(set(asha) - allowed)
        if bad:
            raise ConfigError(f"unknown asha setting(s) {', '.join(bad)}; allowed: {', '.join(sorted(allowed))}")
        kwargs["asha"] = AshaConfig(**asha)
    for key in ("budgets", "budget_range"):
        if key in kwargs and kwargs[key] is not None:
            kwargs[key] = parse_float_list(kwargs[key], key)
    for key in ("domains", "pareto_costs"):
        if isinstance(kwargs.get(key), str):
            kwargs[key] = [d for d in re.split(r"[,\s]+", kwargs[key]) if d]
    for key in ("train", "space"):
        if kwargs.get(key) is None:
            kwargs[key] = {}
        if not isinstance(kwargs[key], Mapping):
            raise ConfigError(f"{key} must be a mapping of field -> value, got {kwargs[key]!r}")
        kwargs[key] = coerce_number(dict(kwargs[key]))
    return SweepConfig(**kwargs)


def _check_budget(value: float, what: str) -> None:
    if not (isinstance(value, int | float) and math.isfinite(value) and 0.0 < value <= 1.0):
        raise ConfigError(f"{what} {value!r} is outside (0, 1]; budgets are fractions of the full network, e.g. 0.25")


def _check_pareto_costs(cfg: SweepConfig) -> None:
    costs = cfg.pareto_costs
    if not isinstance(costs, list) or not costs or any(c not in PARETO_COSTS for c in costs):
        raise ConfigError(f"pareto_costs {costs!r} must be a non-empty list of {', '.join(PARETO_COSTS)}")
    if len(set(costs)) != len(costs):
        raise ConfigError(f"pareto_costs {costs} repeats a value")
    if cfg.mode != "pareto" and costs != ["macs", "params"]:
        raise ConfigError(f"pareto_costs applies to --mode pareto only (this sweep's mode is {cfg.mode!r})")


def validate(cfg: SweepConfig) -> SweepConfig:
    """Static checks (no imports of the training code, no network). Raises ConfigError."""
    if cfg.mode not in MODES:
        raise ConfigError(f"unknown mode {cfg.mode!r}; allowed values: {', '.join(MODES)}")
    if cfg.objective not in OBJECTIVES:
        raise ConfigError(f"unknown objective {cfg.objective!r}; allowed values: {', '.join(OBJECTIVES)}")
    _check_pareto_costs(cfg)
    if cfg.sampler not in SAMPLERS:
        raise ConfigError(f"unknown sampler {cfg.sampler!r}; allowed values: {', '.join(SAMPLERS)}")
    if cfg.data_sharing not in DATA_SHARING:
        raise ConfigError(f"unknown data_sharing {cfg.data_sharing!r}; allowed values: {', '.join(DATA_SHARING)}")
    if not cfg.budgets:
        raise ConfigError("the budget list is empty; give e.g. --budgets 0.25,0.5,0.75,1.0")
    for b in cfg.budgets:
        _check_budget(b, "budget")
    if len(set(cfg.budgets)) != len(cfg.budgets):
        raise ConfigError(f"the budget list {cfg.budgets} repeats a value")
    if len(cfg.budget_range) != 2 or cfg.budget_range[0] > cfg.budget_range[1]:
        raise ConfigError(f"budget_range must be [low, high] with low <= high, got {cfg.budget_range}")
    for b in cfg.budget_range:
        _check_budget(b, "budget_range bound")
    if "budget" in cfg.train or "budget" in cfg.space:
        raise ConfigError("set budgets with --budgets (grid mode) or budget_range (pareto mode), not train/space")
    if not isinstance(cfg.num_samples, int) or cfg.num_samples < 1:
        raise ConfigError(f"num_samples must be a positive integer, got {cfg.num_samples!r}")
    if not isinstance(cfg.max_concurrent, int) or cfg.max_concurrent < 1:
        raise ConfigError(f"max_concurrent must be a positive integer, got {cfg.max_concurrent!r}")
    if cfg.cpus_per_trial <= 0:
        raise ConfigError(f"cpus_per_trial must be > 0, got {cfg.cpus_per_trial}")
    if cfg.gpus_per_trial < 0:
        raise ConfigError(f"gpus_per_trial must be >= 0 (fractions share a GPU), got {cfg.gpus_per_trial}")
    if cfg.gpus_per_trial > 1 and cfg.gpus_per_trial != int(cfg.gpus_per_trial):
        raise ConfigError(f"gpus_per_trial above 1 must be a whole number, got {cfg.gpus_per_trial}")
    cfg.resources_per_trial = parse_amounts(cfg.resources_per_trial, "resources_per_trial")
    for name, amount in cfg.resources_per_trial.items():
        if name.upper() in ("CPU", "GPU", "MEMORY", "OBJECT_STORE_MEMORY"):
            raise ConfigError(f"resources_per_trial: {name!r} has its own setting (--cpus-per-trial, "
                              "--gpus-per-trial) or is not per trial; custom resources only")
        if amount <= 0:
            raise ConfigError(f"resources_per_trial: {name} must be > 0, got {amount:g}")
    if cfg.max_failures < 0:
        raise ConfigError(f"max_failures must be >= 0, got {cfg.max_failures}")
    if cfg.checkpoints_to_keep < 1:
        raise ConfigError(f"checkpoints_to_keep must be >= 1, got {cfg.checkpoints_to_keep}")
    if not isinstance(cfg.tensorboard, bool):
        raise ConfigError(f"tensorboard must be true or false, got {cfg.tensorboard!r}")
    if cfg.asha.grace_period < 1 or cfg.asha.reduction_factor <= 1:
        raise ConfigError("asha needs grace_period >= 1 and reduction_factor > 1")
    if cfg.data not in DATA_KINDS:
        raise ConfigError(f"unknown data {cfg.data!r}; allowed values: {', '.join(DATA_KINDS)}")
    if cfg.data == "decathlon":
        check_data_root(cfg.data_root)
    if cfg.data == "sketch":
        check_sketch_root(cfg.data_root)
        if cfg.objective == M.SCORE:
            raise ConfigError(f"objective {M.SCORE!r} is the Decathlon score, which ImageNet-to-Sketch has not; "
                              f"allowed values for data sketch: {M.MEAN_VAL_ACC}")
    if cfg.name is not None and not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.=-]*", cfg.name):
        raise ConfigError(f"sweep name {cfg.name!r} must be letters, digits and _ . = - (it names folders)")
    if not cfg.experiment:
        raise ConfigError("the MLflow experiment name is empty")
    if cfg.domains is not None and not cfg.domains:
        raise ConfigError("the domain list is empty; omit --domains to use every domain")
    if "domains" in cfg.train or "data" in cfg.train:
        raise ConfigError("set data and domains with --data-root/--domains, not under train")
    return cfg


def check_data_root(root: str | None) -> Path:
    """The Decathlon root must exist and hold ``annotations/<domain>_train.json`` files (or a ``decathlon-1.0`` child)."""
    if not root:
        raise ConfigError("the decathlon preset needs --data-root pointing at the decathlon-1.0 folder")
    base = Path(root).expanduser()
    if not base.is_dir():
        raise ConfigError(f"data root {str(base)!r} is not a folder")
    for cand in (base, base / "decathlon-1.0"):
        ann = cand / "annotations"
        if ann.is_dir() and any(ann.glob("*_train.json")):
            return cand
    raise ConfigError(
        f"data root {str(base)!r} has no annotations/<domain>_train.json; extract the Decathlon devkit "
        "(decathlon-1.0-devkit.tar.gz) there so that decathlon-1.0/annotations/ exists"
    )


def check_sketch_root(root: str | None) -> Path:
    """The ImageNet-to-Sketch root must hold at least one domain folder with train/ and test/ (names matched
    case-insensitively; see ``bap.data.sketch``)."""
    from bap.data.sketch_layout import SKETCH_DOMAINS, sketch_domains_on_disk

    if not root:
        raise ConfigError("the sketch preset needs --data-root pointing at the ImageNet-to-Sketch folder")
    base = Path(root).expanduser()
    if not base.is_dir():
        raise ConfigError(f"data root {str(base)!r} is not a folder")
    try:
        if sketch_domains_on_disk(base):
            return base
    except ValueError as err:  # e.g. two folders that differ only in case
        raise ConfigError(str(err)) from None
    raise ConfigError(
        f"data root {str(base)!r} has no ImageNet-to-Sketch domain folder; expected one or more of "
        f"{', '.join(SKETCH_DOMAINS)}, each with train/<class>/ and test/<class>/ image folders (Piggyback's "
        "PyTorch layout)"
    )


def resolve(
    preset: str | None = None,
    config_file: str | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> SweepConfig:
    """Preset < YAML file < overrides (flags), validated.

    Args:
        preset: preset name; None takes the YAML file's ``preset`` key, else ``mini``.
        config_file: optional user YAML; any SweepConfig key (``train`` and ``space`` merge per field).
        overrides: values from flags (None values are ignored: the flag was not given).
    """
    user = load_yaml(config_file) if config_file else {}
    flags = {k: v for k, v in (overrides or {}).items() if v is not None}
    name = flags.get("preset") or preset or user.get("preset") or "mini"
    values = merge(merge(load_preset(name), user), flags)
    values["preset"] = name
    cfg = from_mapping(values)
    return validate(cfg)


def absolutize(cfg: SweepConfig, cwd: str | Path | None = None) -> SweepConfig:
    """Make relative local paths (storage, journal, SQLite file) absolute, so trials and later runs agree."""
    base = Path(cwd or os.getcwd())

    def local(p: str | None) -> str | None:
        if p is None or "://" in p:
            return p
        return str((base / Path(p).expanduser()).resolve())

    cfg.storage_path = local(cfg.storage_path)
    if "://" not in cfg.optuna_storage:
        cfg.optuna_storage = local(cfg.optuna_storage)
    if cfg.tracking_uri.startswith("sqlite:///") and not cfg.tracking_uri.startswith("sqlite:////"):
        cfg.tracking_uri = "sqlite:///" + local(cfg.tracking_uri[len("sqlite:///") :])
    if cfg.data_root:
        cfg.data_root = local(cfg.data_root)
    if cfg.cache_dir:
        cfg.cache_dir = local(cfg.cache_dir)
    return cfg
