"""The ``sketch`` preset: validated on a generated ImageNet-to-Sketch tree (dry run, bad input), and one real tiny
sweep on it with a torchvision ResNet-18, through Ray Tune, Optuna and MLflow to its Pareto report."""

from __future__ import annotations

import pytest

from bap import metrics as M
from sweeps.cli import main
from tests.bap.sketch_tree import make_sketch_tree
from tests.sweeps.driver import new_run, run_driver

DOMAINS = ("cubs_cropped", "flowers")


@pytest.fixture(scope="module")
def sketch_root(tmp_path_factory):
    return make_sketch_tree(tmp_path_factory.mktemp("sketch") / "imagenet-to-sketch", domains=DOMAINS,
                            folder_names={"cubs_cropped": "CUBS_Cropped"})


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_dry_run_of_the_sketch_preset(sketch_root, workdir, capsys):
    assert main(["--preset", "sketch", "--data-root", str(sketch_root), "--dry-run", "--name", "dry"]) == 0
    out = capsys.readouterr().out
    assert "arch: resnet50" in out and "image_size: 224" in out and "data: sketch" in out
    assert "domains_resolved:\n- cubs_cropped\n- flowers" in out
    assert sorted(p.name for p in workdir.iterdir()) == []  # nothing written


def test_a_data_root_alone_picks_the_preset_of_its_layout(sketch_root, workdir, capsys):
    assert main(["--data-root", str(sketch_root), "--dry-run", "--domains", "flowers"]) == 0
    out = capsys.readouterr().out
    assert "preset: sketch" in out and "domains:\n- flowers\n" in out


@pytest.mark.parametrize(("args", "message"), [
    (["--objective", "score"], "objective 'score' is the Decathlon score, which ImageNet-to-Sketch has not"),
    (["--domains", "wikiart"], "unknown domain(s) wikiart"),
    (["--set", "arch=resnet50", "--set", "pretrain_epochs=3"], "arch resnet50 starts from torchvision weights"),
    (["--set", "pretrained=/nonexistent/resnet50.pth"], "/nonexistent/resnet50.pth"),
])
def test_bad_sketch_settings_stop_before_launch(sketch_root, workdir, capsys, args, message):
    assert main(["--preset", "sketch", "--data-root", str(sketch_root), "--dry-run", *args]) == 2
    assert message in capsys.readouterr().err
    assert sorted(p.name for p in workdir.iterdir()) == []


def test_a_root_without_domain_folders_names_the_expected_layout(tmp_path, workdir, capsys):
    (tmp_path / "empty").mkdir()
    assert main(["--preset", "sketch", "--data-root", str(tmp_path / "empty"), "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert "has no ImageNet-to-Sketch domain folder" in err and "cubs_cropped" in err and "train/<class>/" in err


@pytest.mark.slow
def test_a_tiny_sketch_sweep_end_to_end(sketch_root, tmp_path):
    from analysis.report import build_report

    run = new_run(tmp_path, "sketch-tiny")
    run.experiment = "sketch"
    run_driver(run, "--preset", "sketch", "--data-root", str(sketch_root), "--budgets", "0.5,1.0",
               "--num-samples", "1", "--max-concurrent", "2", "--cpus-per-trial", "1", "--gpus-per-trial", "0",
               "--num-cpus", "2", "--cache-dir", str(tmp_path / "cache"), "--set", "arch=resnet18",
               "--set", "image_size=24", "--set", "crop=24", "--set", "epochs=2", "--set", "steps_per_epoch=2",
               "--set", "batch_size=4", "--set", "device=cpu", *run.args(), timeout=900)
    assert run.returncode == 0, run.output[-6000:]

    report = build_report(tmp_path / "report", tracking_uri=run.tracking_uri, experiment=run.experiment)
    table = report.table
    assert len(table) == 2 and set(table[M.BUDGET]) == {0.5, 1.0}
    for domain in DOMAINS:
        assert table[M.domain_metric(M.VAL_ACC, domain)].between(0, 1).all()
        assert (table[M.domain_metric(M.USAGE, domain)] <= table[M.BUDGET] + 1e-6).all()
    assert M.SCORE not in table or table[M.SCORE].isna().all()
    targets = {t.name for t in report.data.targets}
    assert set(DOMAINS) <= targets and "score" not in targets
    assert (table[M.UNION_PARAMS_RATIO] < 1.0).any()
    summary = report.files["summary_md"].read_text()
    assert "mean validation accuracy" in summary and "Decathlon score" not in summary
    assert all(domain in report.files["html"].read_text() for domain in DOMAINS)
