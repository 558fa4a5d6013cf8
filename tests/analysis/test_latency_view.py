"""The report's latency view on synthetic tables: accuracy-vs-ms fronts (brute force), no latency volumes, the
figures' extra panels, the summary's latency section and contention note; tables without latency unchanged."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from analysis.fronts import (
    COST_OBJECTIVES,
    LATENCY_B1_MS,
    LATENCY_B64_MS,
    TARGET_MEAN,
    has_latency,
    pareto_data,
)
from analysis.load import load_tune
from analysis.plots import figure_data, render_html, render_png
from analysis.report import build_report
from analysis.summary import latency_notes, latency_set, render_markdown, summary_data
from analysis.summary import render_html as summary_html
from analysis.synthetic import write_synthetic_sweep
from analysis.table import LATENCY_RETIMED, to_parquet
from bap import metrics as M
from tests.analysis.test_fronts import brute_front

SWEEP = dict(budgets=(0.25, 0.5, 1.0), trials_per_budget=3, repeats=1, killed=1, failed=0)
B1, B64 = M.latency_metric("cpu", 1), M.latency_metric("cpu", 64)


@pytest.fixture(scope="module")
def tables(tmp_path_factory: pytest.TempPathFactory) -> dict[str, pd.DataFrame]:
    """The same synthetic sweep without latency, with it (2 finished trials timed under contention), and with every
    trial timed alone."""
    out = {}
    for name, kwargs in (("plain", {}), ("latency", dict(latency=True, contended=2)),
                         ("alone", dict(latency=True))):
        root = tmp_path_factory.mktemp(name)
        write_synthetic_sweep(None, root, **SWEEP, **kwargs)
        out[name] = load_tune(root)
    return out


def test_synthetic_latency_is_an_option_that_changes_nothing_else(tables: dict[str, pd.DataFrame]) -> None:
    plain, latency = tables["plain"], tables["latency"]
    assert not has_latency(plain) and not any("latency" in c for c in plain.columns)
    assert has_latency(latency)
    pd.testing.assert_frame_equal(latency[plain.columns], plain)
    finished = latency[latency["finished"]]
    assert finished[[B1, B64]].notna().all().all() and (finished[[B1, B64]] > 0).all().all()
    assert latency.loc[~latency["finished"], B1].isna().all()
    assert (finished[M.LATENCY_NEIGHBOURS] > 0).sum() >= 2


def test_without_latency_the_fronts_are_as_before(tables: dict[str, pd.DataFrame]) -> None:
    data = pareto_data(tables["plain"])
    assert data.objectives == COST_OBJECTIVES and not data.latency
    assert not any("latency" in c for c in data.points.columns)
    assert list(data.hypervolumes.columns) == ["target", "budget_group", "trials", "hv_params", "hv_macs", "hv_3d",
                                               "front_params", "front_macs", "front_3d"]
    assert [p.cost for p in figure_data(data, TARGET_MEAN).panels] == ["params", "macs"]


def test_latency_fronts_match_brute_force_and_have_no_volume(tables: dict[str, pd.DataFrame]) -> None:
    table = tables["latency"]
    data = pareto_data(table)
    assert data.latency and list(data.objectives) == [*COST_OBJECTIVES, "latency_b1", "latency_b64"]
    assert not any(c.startswith("hv_latency") for c in data.hypervolumes.columns)
    plain = pareto_data(tables["plain"])
    pd.testing.assert_frame_equal(data.hypervolumes[plain.hypervolumes.columns], plain.hypervolumes)
    for target in data.targets:
        points = data.points_of(target.name)
        np.testing.assert_array_equal(points[LATENCY_B1_MS].to_numpy(),
                                      table[target.latency_b1].to_numpy()[points["trial"].to_numpy()])
        for name, column in (("latency_b1", LATENCY_B1_MS), ("latency_b64", LATENCY_B64_MS)):
            acc, ms = points["accuracy"].to_numpy(), points[[column]].to_numpy()
            np.testing.assert_array_equal(points[f"front_{name}"].to_numpy(), brute_front(acc, ms))
            for group in data.budget_groups:
                members = (points["budget_group"] == group).to_numpy()
                np.testing.assert_array_equal(points[f"budget_front_{name}"].to_numpy()[members],
                                              brute_front(acc[members], ms[members]))
        across = data.hypervolumes[(data.hypervolumes["target"] == target.name)
                                   & (data.hypervolumes["budget_group"] == "all")].iloc[0]
        assert across["front_latency_b1"] == points["front_latency_b1"].sum() > 0


def test_a_trial_never_timed_is_on_no_latency_front(tables: dict[str, pd.DataFrame]) -> None:
    table = tables["latency"].copy()
    best = table[M.MEAN_VAL_ACC].idxmax()
    table.loc[best, [B1, B64]] = np.nan
    points = pareto_data(table).points_of(TARGET_MEAN).set_index("trial")
    assert not points.loc[best, "front_latency_b1"] and not points.loc[best, "front_latency_b64"]
    assert points.loc[best, "front_params"]  # still on the cost fronts


def test_figure_data_has_latency_panels_with_units(tables: dict[str, pd.DataFrame]) -> None:
    table = tables["latency"]
    data = pareto_data(table)
    mean = figure_data(data, TARGET_MEAN, table=table)
    assert [p.cost for p in mean.panels] == ["params", "macs", "latency_b1", "latency_b64"]
    b1, b64 = mean.panels[2:]
    assert b1.x_label.startswith("CPU latency, batch 1 (ms)") and "slowest domain" in b1.x_label
    assert b64.x_label.startswith("CPU latency, batch 64 (ms per batch)")
    points = data.points_of(TARGET_MEAN)
    np.testing.assert_array_equal(b1.x, points[LATENCY_B1_MS].to_numpy())  # shown in ms as logged
    assert b1.reference is None and all(m.params is not None or m.macs is not None for m in mean.landmarks)
    fx, fy = b1.front
    assert 0 < len(fx) <= points["front_latency_b1"].sum()  # duplicates merged
    assert np.all(np.diff(fx) >= 0) and np.all(np.diff(fy) >= 0)  # a staircase: faster is never more accurate
    assert "CPU latency" in mean.title and "timed on CPU" in mean.note and "noisy" in mean.note
    hover = [h for h in mean.hover if h is not None]
    assert hover and all("CPU latency" in h for h in hover)
    domain = figure_data(data, "dtd", table=table)
    assert domain.panels[2].x_label == "CPU latency, batch 1 (ms)"


def test_renderers_draw_the_latency_panels(tables: dict[str, pd.DataFrame], tmp_path: Path) -> None:
    data = pareto_data(tables["latency"])
    figures = [figure_data(data, t.name, table=tables["latency"]) for t in data.targets]
    png = render_png(figures[-1], tmp_path / "mean.png")
    from PIL import Image

    width, height = Image.open(png).size
    assert height > 0.75 * width  # the 2 x 2 grid (the 2-panel figure is 12 x 5.4)
    page = render_html(figures, tmp_path / "pareto.html").read_text()
    assert "CPU latency, batch 64 (ms per batch)" in page and '"xaxis4"' in page


def test_summary_latency_section_and_contention_note(tables: dict[str, pd.DataFrame]) -> None:
    table = tables["latency"]
    data = pareto_data(table)
    command = "python -m analysis.retime --tracking-uri sqlite:///x.db --experiment e --sweep-id s"
    s = summary_data(table, data, title="t", source="src", retime_command=command)
    front = latency_set(table, data)
    assert front is not None and len(front) and (front["on_b1_front"] | front["on_b64_front"]).all()
    assert front[B1].is_monotonic_increasing
    assert {B1, B64, M.LATENCY_NEIGHBOURS} <= set(s.budgets.columns) and B1 in s.front.columns
    contended = int((table.loc[table["finished"], M.LATENCY_NEIGHBOURS] > 0).sum())
    note = next(n for n in s.latency_notes if "shared their machine" in n)
    assert note.startswith(f"{contended} of them were timed while 2 other") and "noisy" in note
    assert note.endswith(command)
    md = render_markdown(s)
    assert "## Latency: mean accuracy vs CPU latency" in md and f"`{command}`" in md
    assert "CPU ms, batch 1" in md and "2 others" in md and "alone" in md
    page = summary_html(s)
    assert "Latency: mean accuracy vs CPU latency" in page and "shared their machine" in page


def test_summary_notes_of_trials_timed_alone_and_retimed(tables: dict[str, pd.DataFrame]) -> None:
    alone = tables["alone"]
    notes = latency_notes(alone, pareto_data(alone))
    assert not any("shared their machine" in n for n in notes)
    assert any("timed alone" in n for n in notes)
    retimed = tables["latency"].copy()
    retimed[M.LATENCY_NEIGHBOURS] = retimed[M.LATENCY_NEIGHBOURS].where(retimed[M.LATENCY_NEIGHBOURS].isna(), 0.0)
    retimed[LATENCY_RETIMED] = pd.Series([None] * len(retimed), dtype="str")
    retimed.loc[retimed["finished"], LATENCY_RETIMED] = "2026-12-01T18:00:00+00:00"
    notes = latency_notes(retimed, pareto_data(retimed))
    assert any("re-timed alone" in n and M.TAG_LATENCY_RETIMED in n for n in notes)
    assert not any("shared their machine" in n for n in notes)
    default = latency_notes(tables["latency"], pareto_data(tables["latency"]))
    assert any("python -m analysis.retime --tracking-uri URI" in n for n in default)


def test_summary_without_latency_is_as_before(tables: dict[str, pd.DataFrame]) -> None:
    table = tables["plain"]
    data = pareto_data(table)
    s = summary_data(table, data, title="t", source="src")
    assert s.latency_front is None and s.latency_notes == []
    assert not any("latency" in c for c in [*s.budgets.columns, *s.front.columns, *s.targets.columns])
    md = render_markdown(s)
    assert "latency" not in md.lower() and "CPU ms" not in md


def test_report_from_a_table_with_latency(tables: dict[str, pd.DataFrame], tmp_path: Path) -> None:
    path = to_parquet(tables["latency"], tmp_path / "trials.parquet")
    report = build_report(tmp_path / "report", table_path=path)
    fronts = pd.read_parquet(report.out_dir / "fronts.parquet")
    assert {"front_latency_b1", "front_latency_b64", LATENCY_B1_MS, LATENCY_B64_MS} <= set(fronts.columns)
    md = (report.out_dir / "summary.md").read_text()
    assert "## Latency" in md and "--tracking-uri URI --experiment NAME --sweep-id synthetic-sweep" in md
