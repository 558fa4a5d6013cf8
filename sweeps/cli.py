"""The sweep's command line: flags generated from :class:`sweeps.config.SweepConfig`, resolved, run, summarised.

Every field with ``flag(...)`` metadata is a ``--<field-name>`` option (``AshaConfig``'s too: ``--asha/--no-asha``,
``--grace-period``, ``--reduction-factor``), so a new setting is one field in ``sweeps/config.py``. Besides them:
``--config FILE.yaml``, ``--set FIELD=VALUE`` (a training field, repeatable), ``--epochs N`` and ``--dry-run``.
A flag not given keeps the preset's (or the ``--config`` file's) value. Used by ``python sweeps/decathlon.py``,
``python -m sweeps`` and the ``bap-sweep`` console script alike.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
import typing
from typing import Any

from sweeps import config as C
from sweeps.config import AshaConfig, ConfigError, SweepConfig

PROG = "python sweeps/decathlon.py"
EXAMPLES = """examples:
  python sweeps/decathlon.py --preset smoke
  python sweeps/decathlon.py --preset smoke --resume
  python sweeps/decathlon.py --preset decathlon --data-root /data/decathlon-1.0 --gpus-per-trial 0.25"""


def _presets_epilog() -> str:
    lines = ["presets (sweeps/presets/<name>.yaml):"]
    for name in C.available_presets():
        try:
            v = C.load_preset(name)
        except ConfigError:
            continue
        t = v.get("train", {})
        lines.append(f"  {name:<10} {v.get('mode')} budgets {v.get('budgets')}, {v.get('num_samples')} samples, "
                     f"{t.get('epochs')} epochs, width {t.get('width')}, {v.get('max_concurrent')} at a time, "
                     f"{v.get('gpus_per_trial')} GPU/trial, data {v.get('data')}")
    return "\n".join([*lines, EXAMPLES])


def _add_field_flags(groups: dict[str, Any], cls: type, dest_prefix: str = "") -> None:
    """One option per field of ``cls`` with ``flag`` metadata; ``dest`` is ``<prefix><field>``."""
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        spec = f.metadata.get("cli")
        if spec is None:
            continue
        names = [spec["short"]] if spec["short"] else []
        names.append("--" + (spec["name"] or f.name).replace("_", "-"))
        kind = [a for a in typing.get_args(hints[f.name]) if a is not type(None)] or [hints[f.name]]
        options: dict[str, Any] = {"dest": dest_prefix + f.name, "default": None, "help": spec["help"]}
        if kind[0] is bool:
            options["action"] = argparse.BooleanOptionalAction
        elif spec["floats"] or typing.get_origin(kind[0]) is list:
            options["metavar"] = "A,B,..."
        elif typing.get_origin(kind[0]) is dict:
            options["metavar"] = "NAME=AMOUNT,..."
        else:
            options["type"] = kind[0]
        if spec["choices"] is not None:
            options["choices"] = spec["choices"]
        groups[spec["group"]].add_argument(*names, **options)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=PROG,
        description="Sweep budgets and loss weights over budget-aware pruning runs (Ray Tune + Optuna + MLflow). "
        "Values come from the preset, then --config, then flags; a flag not given keeps the preset's value "
        "(--dry-run prints the resolved configuration).",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=_presets_epilog(),
    )
    groups = {name: p.add_argument_group(name) for name in (C.WHAT, C.DATA, C.RESOURCES, C.RESULTS)}
    what = groups[C.WHAT]
    what.add_argument("--config", metavar="FILE.yaml", help="YAML file overriding the preset (any key of a preset)")
    what.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                      help="fix a training field (TrainConfig), e.g. --set epochs=4; repeatable")
    what.add_argument("--epochs", type=int, help="shortcut for --set epochs=N")
    what.add_argument("--dry-run", action="store_true", help="validate everything, print the configuration, exit")
    _add_field_flags(groups, SweepConfig)
    _add_field_flags(groups, AshaConfig, dest_prefix="asha.")
    return p


def _set_values(items: list[str]) -> dict[str, Any]:
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--set expects FIELD=VALUE, got {item!r}")
        out[key.strip()] = C.parse_scalar(value)
    return out


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The values the command line sets (None = not given), shaped like a preset."""
    values = vars(args)
    flags: dict[str, Any] = {}
    for f in dataclasses.fields(SweepConfig):
        spec = f.metadata.get("cli")
        if spec is None or values.get(f.name) is None:
            continue
        value = values[f.name]
        flags[f.name] = C.parse_float_list(value, "--" + f.name.replace("_", "-")) if spec["floats"] else value
    asha = {f.name: values[f"asha.{f.name}"] for f in dataclasses.fields(AshaConfig)
            if values.get(f"asha.{f.name}") is not None}
    if asha:
        flags["asha"] = asha
    if args.data_root is not None and args.preset is None and args.config is None:
        from bap.data.sketch_layout import is_sketch_root

        flags["preset"] = "sketch" if is_sketch_root(args.data_root) else "decathlon"
    train = _set_values(args.set)
    if args.epochs is not None:
        train["epochs"] = args.epochs
    if train:
        flags["train"] = train
    return flags


def config_from_args(argv: list[str] | None) -> tuple[SweepConfig, argparse.Namespace]:
    """Preset < ``--config`` < flags, validated, local paths made absolute."""
    args = build_parser().parse_args(argv)
    cfg = C.resolve(config_file=args.config, overrides=_overrides(args))
    return C.absolutize(cfg), args


def main(argv: list[str] | None = None) -> int:
    """Run the command line; 0 when some trial finished, 1 when none did (or the data could not be prepared),
    2 on bad input (one line on stderr, nothing launched), 130 when interrupted."""
    from sweeps import runner as R
    from sweeps.summary import print_summary

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        cfg, args = config_from_args(argv)
        plan = R.plan(cfg)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.dry_run:
        import yaml

        print(yaml.safe_dump(plan.resolved, sort_keys=False))
        return 0
    try:
        result = R.launch(plan)
    except ConfigError as exc:  # found once Ray runs (a trial no node can hold): nothing was launched
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except R.PreparationError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:  # before the trials started (Ctrl-C during fit ends the sweep gracefully instead)
        print("interrupted before the trials started", file=sys.stderr)
        return 130
    print_summary(result)
    if result.interrupted:
        return 130
    return 0 if result.counts.get("FINISHED", 0) > 0 else 1


def exit_fast(code: int) -> None:
    """Exit without the interpreter's final garbage collection: after a sweep the heap holds torch, Ray, MLflow and
    Optuna, and collecting it only to free it takes ~1 s on 2 cores. Every file and run is already closed."""
    import gc

    gc.freeze()
    sys.exit(code)
