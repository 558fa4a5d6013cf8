"""Plot data (units, staircases, landmarks), the unpruned model's size (from the table), and the summary's numbers."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from analysis.fronts import TARGET_MEAN, pareto_data
from analysis.load import load_tune
from analysis.plots import figure_data, render_html, render_png
from analysis.summary import budget_summary, pareto_set, render_markdown, summary_data
from analysis.synthetic import DEFAULT_DOMAINS, write_synthetic_sweep
from analysis.table import REFERENCE_MACS, REFERENCE_PARAMS
from analysis.units import GIGA, KILO, MEGA, format_count, format_percent, macs_unit, params_unit
from analysis.unpruned import NOT_LOGGED, ModelCosts, model_costs
from bap import metrics as M


@pytest.fixture(scope="module")
def table(tmp_path_factory: pytest.TempPathFactory):
    """A synthetic sweep's table (Tune folder only: no MLflow needed for the data step)."""
    root = tmp_path_factory.mktemp("tune")
    write_synthetic_sweep(None, root, budgets=(0.25, 0.5, 1.0), trials_per_budget=3, repeats=1, killed=1, failed=0)
    return load_tune(root)


def test_units() -> None:
    assert params_unit([5.8e6]) is MEGA and params_unit([19_300]) is KILO and params_unit() is MEGA
    assert macs_unit([8.5e8]) is MEGA and macs_unit([1.2e9]) is GIGA
    assert format_count(1_234_567, MEGA) == "1.23 M" and format_count(852_911_104, MEGA) == "853 M"
    assert format_count(19_300, KILO) == "19.3 k" and format_count(float("nan"), MEGA) == "-"
    assert format_percent(0.8123) == "81.2 %"


def _counted(config: dict, input_size: tuple[int, int, int] = (3, 32, 32)) -> ModelCosts:
    """What training reports for a model: its reference (bap.cost.reference_cost) and unpruned size."""
    from bap.cost import reference_cost, unpruned_cost
    from bap.model import MultiDomainResNet26

    model = MultiDomainResNet26(**config)
    reference, unpruned = reference_cost(model, None, input_size), unpruned_cost(model, input_size)
    return ModelCosts(reference.params, reference.macs, unpruned.params, unpruned.macs)


def test_model_costs_single_and_multi_domain() -> None:
    """The unpruned count (now bap.cost.unpruned_cost, logged by training) for one and several domains."""
    single = _counted({"num_classes": {"a": 10}, "width": 0.25, "blocks": 1})
    assert single.unpruned_params == single.reference_params and single.unpruned_macs == single.reference_macs
    multi = _counted({"num_classes": {"a": 10, "b": 100, "c": 5}, "width": 0.25, "blocks": 1})
    assert multi.unpruned_params_ratio > 1.0  # every domain's BNs and heads
    assert multi.unpruned_macs_ratio == 1.0  # one image: the same convolutions and the largest head
    # Switch initialisation below the threshold (all off at start) does not change the unpruned size.
    off = _counted({"num_classes": {"a": 10, "b": 100, "c": 5}, "width": 0.25, "blocks": 1,
                    "switch_init": 0.0, "threshold": 0.5})
    assert off == multi


def test_model_costs_come_from_the_table(table) -> None:
    """The trials' unpruned_params / unpruned_macs metrics and the reference the table recovers; no torch."""
    model, note = model_costs(table)
    assert note is None and model is not None
    assert model.reference_params == table[REFERENCE_PARAMS].iloc[0]
    assert model.reference_macs == table[REFERENCE_MACS].iloc[0]
    assert model.unpruned_params == table[M.UNPRUNED_PARAMS].iloc[0]
    assert model.unpruned_macs == table[M.UNPRUNED_MACS].iloc[0]
    assert model.unpruned_params_ratio > 1.0 and model.unpruned_macs_ratio == 1.0
    # The synthetic sweep's counts are bap.cost's for its architecture (4 Decathlon domains, width 1, 64 px).
    assert model == _counted({"num_classes": dict(DEFAULT_DOMAINS), "width": 1.0, "blocks": 4}, (3, 64, 64))


def test_model_costs_of_a_sweep_written_before_they_were_logged(table) -> None:
    old = table.drop(columns=[M.UNPRUNED_PARAMS, M.UNPRUNED_MACS])
    assert model_costs(old) == (None, NOT_LOGGED) and "written before unpruned costs were logged" in NOT_LOGGED
    assert model_costs(table.assign(**{M.UNPRUNED_PARAMS: np.nan}))[0] is None  # columns there, never reported
    other = table[M.UNPRUNED_PARAMS].to_numpy().copy()
    other[0] *= 2  # a trial of another architecture
    model, note = model_costs(table.assign(**{M.UNPRUNED_PARAMS: other}))
    assert model is None and note is not None and "disagree" in note


def test_figure_data_domain(table) -> None:
    data = pareto_data(table)
    fig = figure_data(data, "dtd", table=table)
    points = data.points_of("dtd")
    assert fig.y_label == "validation accuracy (%)" and fig.title.startswith("dtd: accuracy")
    np.testing.assert_allclose(fig.y, 100 * points["accuracy"].to_numpy())
    params, macs = fig.panels
    assert params.x_label == "parameters (M)" and macs.x_label == "MACs per image (M)"
    np.testing.assert_allclose(params.x, points["params"].to_numpy() / 1e6)
    # The staircase: the front's points sorted by cost, accuracy increasing along it.
    fx, fy = params.front
    assert np.all(np.diff(fx) >= 0) and np.all(np.diff(fy) >= 0)
    assert set(zip(fx, fy)) == set(zip(params.x[params.on_front], fig.y[params.on_front]))
    assert params.reference == pytest.approx(points["reference_params"].iloc[0] / 1e6)
    kinds = {m.kind: m for m in fig.landmarks}
    assert set(kinds) == {"baseline", "finetune"}  # dtd is a Decathlon domain: its fine-tuning accuracy
    assert kinds["baseline"].params == pytest.approx(params.reference)
    assert kinds["finetune"].accuracy == pytest.approx(55.53)
    assert "sharing = " in fig.hover[0] and "trial " in fig.hover[0]


def test_figure_data_union_marks_the_unpruned_model(table) -> None:
    data = pareto_data(table)
    ref_params = float(table["reference_params"].iloc[0])
    ref_macs = float(table["reference_macs"].iloc[0])
    model = ModelCosts(int(ref_params), int(ref_macs), int(ref_params * 1.05), int(ref_macs))
    fig = figure_data(data, TARGET_MEAN, model=model)
    assert fig.panels[0].x_label == "union parameters (M)"
    kinds = {m.kind: m for m in fig.landmarks}
    assert set(kinds) == {"baseline", "unpruned"}
    assert kinds["unpruned"].params == pytest.approx(ref_params * 1.05 / 1e6, rel=1e-6)
    assert kinds["unpruned"].macs is None  # same MACs as the baseline: one line, labelled so
    assert "1.050x" in kinds["unpruned"].label
    # Costs counted for another architecture are not drawn.
    other = ModelCosts(int(ref_params) + 1000, int(ref_macs), int(ref_params * 1.05), int(ref_macs))
    assert "unpruned" not in {m.kind for m in figure_data(data, TARGET_MEAN, model=other).landmarks}


def test_renderers_write_files(table, tmp_path: Path) -> None:
    data = pareto_data(table)
    figures = [figure_data(data, t.name, table=table) for t in data.targets]
    png = render_png(figures[0], tmp_path / "png" / "a.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    page = render_html(figures, tmp_path / "pareto.html", title="T").read_text()
    assert "<title>T</title>" in page and "plotly" in page and all(f.name in page for f in figures)


def test_summary_numbers(table) -> None:
    data = pareto_data(table)
    budgets = budget_summary(table, data)
    finished = table[table["finished"]]
    assert budgets["budget_group"].tolist() == ["0.25", "0.5", "1", "all"]
    best_all = finished.loc[finished[M.SCORE].idxmax()]
    last = budgets.iloc[-1]
    assert last["best_trial"] == best_all["trial_id"] and last[M.SCORE] == best_all[M.SCORE]
    assert last["union_flops"] == 2 * best_all[M.UNION_MACS]
    assert last["trials"] == len(finished)
    for row in budgets.itertuples():
        members = finished if row.budget_group == "all" else finished[finished[M.BUDGET] == float(row.budget_group)]
        assert row.score == members[M.SCORE].max()
    front = pareto_set(table, data)
    mean = data.points_of(TARGET_MEAN)
    assert sorted(front["trial_id"]) == sorted(mean.loc[mean["front_3d"], "trial_id"])
    assert front[M.UNION_PARAMS_RATIO].is_monotonic_increasing
    text = render_markdown(summary_data(table, data, title="T", source="S"))
    assert "| budget | trials | best trial | score | mean acc |" in text
    assert "1 MAC = 2 FLOPs" in text and "params ratio 1.1" in text
    assert not math.isnan(budgets["hv_3d"].iloc[-1])


def test_html_shows_every_front_point_and_a_sample_of_the_rest(table, monkeypatch: pytest.MonkeyPatch) -> None:
    import analysis.plots as plots

    monkeypatch.setattr(plots, "MAX_HTML_POINTS", 2)
    data = pareto_data(table)
    fig = figure_data(data, "mean", table=table)
    on_a_front = fig.panels[0].on_front | fig.panels[1].on_front
    assert fig.shown[on_a_front].all() and (fig.shown & ~on_a_front).sum() == 2
    assert all((h is not None) == s for h, s in zip(fig.hover, fig.shown))
