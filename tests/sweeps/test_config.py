"""Sweep configuration: preset < YAML < flags, and every static validation error (exit code 2 material)."""

from __future__ import annotations

import pytest
import yaml

from sweeps import config as C
from sweeps.cli import build_parser, config_from_args
from sweeps.config import ConfigError


def test_every_preset_resolves_and_validates(tmp_path):
    from tests.bap.sketch_tree import make_sketch_tree

    roots = {"decathlon": _decathlon_root(tmp_path), "sketch": make_sketch_tree(tmp_path / "sketch", classes=2)}
    for name in C.available_presets():
        overrides = {"data_root": str(roots[name])} if name in roots else {}
        cfg = C.resolve(name, overrides=overrides)
        assert cfg.preset == name
        assert cfg.train and cfg.space
    assert set(C.available_presets()) >= {"smoke", "demo", "mini", "decathlon", "sketch"}


def test_smoke_preset_is_small():
    cfg = C.resolve("smoke")
    assert cfg.train["width"] == 0.125 and cfg.train["blocks"] == 1
    assert cfg.train["epochs"] <= 3 and cfg.train["steps_per_epoch"] <= 8
    assert cfg.train["device"] == "cpu"


def test_precedence_preset_then_yaml_then_flags(tmp_path):
    user = tmp_path / "user.yaml"
    user.write_text(yaml.safe_dump({"preset": "smoke", "num_samples": 3, "train": {"epochs": 5},
                                    "space": {"lr": 0.01}}))
    cfg = C.resolve(config_file=str(user), overrides={"num_samples": 7, "experiment": "x"})
    assert cfg.preset == "smoke"
    assert cfg.num_samples == 7  # flag beats YAML
    assert cfg.train["epochs"] == 5 and cfg.train["width"] == 0.125  # YAML merges into the preset per field
    assert cfg.space["lr"] == 0.01 and "sharing" in cfg.space
    assert cfg.experiment == "x"


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"preset": "nope"}, "unknown preset 'nope'; allowed values: decathlon, demo, mini, sketch, smoke"),
        ({"budgets": [0.5, 1.5]}, "budget 1.5 is outside (0, 1]"),
        ({"budgets": [0.0]}, "budget 0.0 is outside (0, 1]"),
        ({"budgets": [-0.25]}, "outside (0, 1]"),
        ({"budgets": [0.5, 0.5]}, "repeats"),
        ({"budgets": []}, "budget list is empty"),
        ({"budget_range": [0.1, 1.2]}, "outside (0, 1]"),
        ({"mode": "both"}, "unknown mode 'both'; allowed values: grid, pareto"),
        ({"objective": "loss"}, "unknown objective"),
        ({"sampler": "cmaes"}, "unknown sampler"),
        ({"num_samples": 0}, "num_samples must be a positive integer"),
        ({"gpus_per_trial": -1}, "gpus_per_trial must be >= 0"),
        ({"gpus_per_trial": 1.5}, "whole number"),
        ({"data": "imagenet"}, "unknown data 'imagenet'"),
        ({"name": "../escape"}, "sweep name"),
        ({"colour": "red"}, "unknown sweep setting(s) colour"),
        ({"asha": {"grace": 1}}, "unknown asha setting(s) grace"),
        ({"train": {"budget": 0.5}}, "not train/space"),
        ({"domains": []}, "domain list is empty"),
    ],
)
def test_static_validation_errors(overrides, message):
    with pytest.raises(ConfigError) as err:
        C.resolve("smoke", overrides=overrides)
    assert message in str(err.value)
    assert "\n" not in str(err.value)


def _decathlon_root(tmp_path):
    root = tmp_path / "decathlon-1.0"
    (root / "annotations").mkdir(parents=True)
    (root / "annotations" / "dtd_train.json").write_text("{}")
    return root


def test_decathlon_data_root_checks(tmp_path):
    with pytest.raises(ConfigError, match="needs --data-root"):
        C.resolve("decathlon")
    with pytest.raises(ConfigError, match="is not a folder"):
        C.resolve("decathlon", overrides={"data_root": str(tmp_path / "missing")})
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ConfigError, match="has no annotations/<domain>_train.json"):
        C.resolve("decathlon", overrides={"data_root": str(empty)})
    root = _decathlon_root(tmp_path)
    assert C.check_data_root(str(root)) == root
    assert C.check_data_root(str(tmp_path)) == root  # the parent of decathlon-1.0 works too


def test_flags_parse_and_override(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg, args = config_from_args([
        "--preset", "smoke", "--budgets", "0.25, 0.75", "--num-samples", "2", "--set", "lr=0.2",
        "--set", "optimizer=adamw", "--epochs", "2", "--no-asha", "--gpus-per-trial", "0.5",
        "--experiment", "e1", "--storage-path", "res", "--optuna-storage", "j.log",
    ])
    assert cfg.budgets == [0.25, 0.75] and cfg.num_samples == 2
    assert cfg.train["lr"] == 0.2 and cfg.train["optimizer"] == "adamw" and cfg.train["epochs"] == 2
    assert cfg.asha.enabled is False and cfg.gpus_per_trial == 0.5
    assert cfg.storage_path == str(tmp_path / "res") and cfg.optuna_storage == str(tmp_path / "j.log")
    assert cfg.tracking_uri == f"sqlite:///{tmp_path}/mlruns.db"
    assert not args.resume


def test_help_documents_the_required_flags():
    text = build_parser().format_help()
    for flag in ("--preset", "--num-samples", "--tracking-uri", "--experiment", "--storage-path",
                 "--optuna-storage", "--data-root", "--gpus-per-trial", "--resume", "--config", "--budgets"):
        assert flag in text


def test_bad_set_and_bad_yaml(tmp_path):
    with pytest.raises(ConfigError, match="FIELD=VALUE"):
        config_from_args(["--preset", "smoke", "--set", "lr"])
    bad = tmp_path / "bad.yaml"
    bad.write_text("- just\n- a list\n")
    with pytest.raises(ConfigError, match="must hold a mapping"):
        C.resolve(config_file=str(bad))
    with pytest.raises(ConfigError, match="does not exist"):
        C.resolve(config_file=str(tmp_path / "none.yaml"))


def test_absolutize_keeps_uris():
    cfg = C.resolve("smoke", overrides={"storage_path": "s3://bucket/x", "optuna_storage": "postgresql://db/o",
                                        "tracking_uri": "http://mlflow:5000"})
    cfg = C.absolutize(cfg, "/somewhere")
    assert cfg.storage_path == "s3://bucket/x"
    assert cfg.optuna_storage == "postgresql://db/o"
    assert cfg.tracking_uri == "http://mlflow:5000"


def test_space_entries_replace_and_exponent_floats(tmp_path):
    user = tmp_path / "user.yaml"
    user.write_text("space:\n  switch_lr: {choice: [0.01, 1e-6]}\ntrain:\n  lr: 1e-3\n")
    cfg = C.resolve("smoke", config_file=str(user))
    assert cfg.space["switch_lr"] == {"choice": [0.01, 1e-6]}  # replaced, not merged with the preset's range
    assert cfg.train["lr"] == 1e-3
    assert C.parse_scalar("1e-6") == 1e-6 and C.parse_scalar("true") is True and C.parse_scalar("adamw") == "adamw"


def test_tensorboard_is_opt_in():
    assert C.resolve("smoke").tensorboard is False
    cfg, _ = config_from_args(["--preset", "smoke", "--tensorboard"])
    assert cfg.tensorboard is True
    with pytest.raises(ConfigError, match="tensorboard must be true or false, got 'maybe'"):
        C.resolve("smoke", overrides={"tensorboard": "maybe"})


def test_custom_resources_per_trial_from_flag_and_yaml(tmp_path):
    cfg, _ = config_from_args(["--preset", "smoke", "--resources-per-trial", "accelerator_type:H100=0.001,fast=1"])
    assert cfg.resources_per_trial == {"accelerator_type:H100": 0.001, "fast": 1.0}
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump({"resources_per_trial": {"fast": 2}}))
    cfg, _ = config_from_args(["--preset", "smoke", "--config", str(path)])
    assert cfg.resources_per_trial == {"fast": 2.0}


@pytest.mark.parametrize("value, message", [
    ("CPU=1", "has its own setting"),
    ("gpu=1", "has its own setting"),
    ("fast=0", "must be > 0"),
    ("fast", "expects NAME=AMOUNT"),
    ("fast=many", "must be numbers"),
])
def test_custom_resources_per_trial_errors_name_the_field(value, message):
    with pytest.raises(ConfigError, match=message) as err:
        config_from_args(["--preset", "smoke", "--resources-per-trial", value])
    assert "resources_per_trial" in str(err.value)
