"""Pareto plots: accuracy against params and against MACs, one figure per target (domain, mean, score).

Two steps, as in Optuna's plots: :func:`figure_data` turns :class:`analysis.fronts.ParetoData` into a plain
:class:`FigureData` (scaled values, labels, front staircases, landmarks); thin renderers draw it --
:func:`render_png` (matplotlib, two panels) and :func:`render_html` (plotly, every target in one page with a
drop-down). Tests target the data step.

What a figure shows: every usable trial, coloured by budget; the across-budget Pareto front highlighted (large
outlined markers joined by its staircase, i.e. the best accuracy reachable at each cost); dominated trials faded;
each budget's own front as a thin line of its colour; vertical landmarks at one single-domain ResNet-26 (ratio 1)
and, for the union costs of ``mean``/``score``, at the unpruned multi-domain network (see
:mod:`analysis.unpruned`); for a Decathlon domain, a star at the fine-tuning baseline's accuracy. The top axis
repeats the cost as a ratio of the single-domain network.

When the trials report measured CPU latency (:attr:`analysis.fronts.ParetoData.latency`), each figure has two more
panels, accuracy against milliseconds at batch 1 and at batch 64 (per call of a whole batch), with the accuracy-vs-ms
fronts marked the same way: the PNG becomes a 2 x 2 grid (params, MACs on top; batch 1, batch 64 below), the HTML
page likewise. The latency panels have no landmarks and no ratio axis (the unpruned network's time is measured per
trial, not a fixed unit). Without latency the figures are exactly as before.
"""

from __future__ import annotations

import html
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from analysis.fronts import (
    ACCURACY,
    BUDGET_GROUP,
    LATENCY_B1_MS,
    LATENCY_B64_MS,
    MACS,
    MACS_RATIO,
    PARAMS,
    PARAMS_RATIO,
    TRIAL,
    ParetoData,
    Target,
)
from analysis.table import REFERENCE_MACS, REFERENCE_PARAMS, STATUS, TRIAL_ID, config_columns
from analysis.units import (
    MILLISECONDS,
    Unit,
    format_count,
    format_ms,
    format_percent,
    format_ratio,
    macs_unit,
    params_unit,
)
from analysis.unpruned import ModelCosts
from bap import metrics as M

__all__ = ["FigureData", "Landmark", "Panel", "figure_data", "render_html", "render_png"]

MAX_HTML_POINTS = 5000  # dominated trials per target drawn in the HTML page (the front is always complete)
_PANELS = (("params", PARAMS, "front_params", "budget_front_params"),
           ("macs", MACS, "front_macs", "budget_front_macs"))
_LATENCY_PANELS = (("latency_b1", LATENCY_B1_MS, "front_latency_b1", "budget_front_latency_b1"),
                   ("latency_b64", LATENCY_B64_MS, "front_latency_b64", "budget_front_latency_b64"))
_LATENCY_LABELS = {"latency_b1": "CPU latency, batch 1 (ms)", "latency_b64": "CPU latency, batch 64 (ms per batch)"}


@dataclass(frozen=True)
class Landmark:
    """A reference network drawn on a figure.

    Attributes:
        label: Legend text.
        kind: ``"baseline"`` (one single-domain ResNet-26), ``"unpruned"`` (the multi-domain network with every
            switch on) or ``"finetune"`` (published accuracy of a fine-tuned single-domain network).
        params: Its parameters, in the figure's params unit (a vertical line; None: not on that panel).
        macs: Its MACs, in the figure's MACs unit.
        accuracy: Its accuracy in the figure's y unit (a marker instead of a line), if known.
    """

    label: str
    kind: str
    params: float | None
    macs: float | None
    accuracy: float | None = None


@dataclass
class Panel:
    """One panel's data: accuracy against one cost.

    Attributes:
        cost: ``"params"``, ``"macs"``, ``"latency_b1"`` or ``"latency_b64"`` (measured CPU ms).
        x_label: Axis label with its unit.
        unit: The unit of ``x``.
        reference: The single-domain network's cost in ``unit`` (for the ratio axis), or None when the trials
            disagree on it.
        x: Cost per point, in ``unit``.
        on_front: Across-budget front membership per point.
        front: The across-budget front's staircase, ``(x, y)`` sorted by cost.
        budget_fronts: Per budget group, its own front's staircase.
    """

    cost: str
    x_label: str
    unit: Unit
    reference: float | None
    x: np.ndarray
    on_front: np.ndarray
    front: tuple[np.ndarray, np.ndarray]
    budget_fronts: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)


@dataclass
class FigureData:
    """Everything a renderer needs for one target.

    Attributes:
        name: Target name (file stem).
        title: Figure title.
        y_label: Accuracy axis label with its unit.
        y: Accuracy per point (percent, or score points).
        groups: Budget group per point.
        group_order: Budget groups in increasing budget order (colour order).
        shown: Points the HTML page draws (all front points, a sample of at most :data:`MAX_HTML_POINTS` others).
        hover: Hover text per shown point (trial id, budget, accuracy, costs, configuration); None elsewhere.
        panels: The params panel and the MACs panel; with latency, then the batch-1 and batch-64 ms panels.
        landmarks: Reference networks to mark.
        note: A line under the title (trial counts, what was left out).
    """

    name: str
    title: str
    y_label: str
    y: np.ndarray
    groups: np.ndarray
    group_order: list[str]
    shown: np.ndarray
    hover: np.ndarray
    panels: list[Panel]
    landmarks: list[Landmark]
    note: str = ""


# --------------------------------------------------------------------------------------------------------------
# Data step
# --------------------------------------------------------------------------------------------------------------


def _staircase(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Front points sorted by cost (then accuracy), duplicates merged: the staircase to draw with ``where="post"``."""
    if len(x) == 0:
        return x, y
    order = np.lexsort((y, x))
    pairs = np.unique(np.column_stack([x[order], y[order]]), axis=0)
    return pairs[:, 0], pairs[:, 1]


def _constant(values: np.ndarray) -> float | None:
    """The value every entry shares (to 0.1 %), else None."""
    finite = values[np.isfinite(values)]
    if len(finite) == 0:
        return None
    median = float(np.median(finite))
    return median if np.all(np.abs(finite - median) <= 1e-3 * abs(median)) else None


def _landmarks(target: Target, points: pd.DataFrame, units: Mapping[str, Unit], y_scale: float,
               model: ModelCosts | None) -> list[Landmark]:
    from bap.score import FINETUNE_BASELINE_ACCURACY

    ref_params = _constant(points[REFERENCE_PARAMS].to_numpy(dtype=float))
    ref_macs = _constant(points[REFERENCE_MACS].to_numpy(dtype=float))
    if model is not None and ref_params is not None and abs(model.reference_params - ref_params) > 0.5:
        model = None  # counted for another architecture than the trials': do not draw it
    out = []
    if ref_params is not None or ref_macs is not None:
        label = "1 single-domain ResNet-26 (1.0x)"
        if not target.union:
            label += " = this domain's path in the unpruned model"
        elif model is not None and math.isclose(model.unpruned_macs_ratio, 1.0):
            label += "; its MACs = the unpruned model's"
        out.append(Landmark(label, "baseline", None if ref_params is None else units["params"](ref_params),
                            None if ref_macs is None else units["macs"](ref_macs)))
    if target.union and model is not None:
        macs = model.unpruned_macs
        out.append(Landmark(
            f"unpruned multi-domain model ({model.unpruned_params_ratio:.3f}x params)", "unpruned",
            units["params"](model.unpruned_params),
            None if math.isclose(model.unpruned_macs_ratio, 1.0) else units["macs"](macs),
        ))
    accuracy = FINETUNE_BASELINE_ACCURACY.get(target.name) if not target.union else None
    if accuracy is not None and ref_params is not None and ref_macs is not None:
        out.append(Landmark("fine-tuned single-domain ResNet-26 (Rebuffi et al. 2017, test acc.)", "finetune",
                            units["params"](ref_params), units["macs"](ref_macs), accuracy / 100 * y_scale))
    return out


def _shown(panels: Sequence[Panel], n: int) -> np.ndarray:
    """Points the HTML page draws: every front point, and at most MAX_HTML_POINTS dominated ones (a fixed sample)."""
    on_a_front = np.zeros(n, dtype=bool)
    for panel in panels:
        on_a_front |= panel.on_front
    rest = np.flatnonzero(~on_a_front)
    if len(rest) > MAX_HTML_POINTS:
        rest = np.random.default_rng(0).choice(rest, MAX_HTML_POINTS, replace=False)
    shown = on_a_front.copy()
    shown[rest] = True
    return shown


def _hover(points: pd.DataFrame, shown: np.ndarray, table: pd.DataFrame | None, target: Target,
           units: Mapping[str, Unit]) -> np.ndarray:
    """Hover text of the shown points (None elsewhere): trial, budget, accuracy, costs, varying configuration."""
    out = np.full(len(points), None, dtype=object)
    index = np.flatnonzero(shown)
    sub = points.iloc[index]
    extra = config_columns(table)[:6] if table is not None else []
    config = table[extra].iloc[sub[TRIAL].to_numpy()] if extra else None
    columns = [sub[c].to_numpy() for c in (TRIAL_ID, STATUS, M.BUDGET, ACCURACY, PARAMS, PARAMS_RATIO, MACS,
                                           MACS_RATIO)]
    settings = [config[c].to_numpy(dtype=object) for c in extra] if config is not None else []
    latency = [sub[c].to_numpy(dtype=float) for c in (LATENCY_B1_MS, LATENCY_B64_MS)] if LATENCY_B1_MS in sub else []
    for i, (trial, status, budget, acc, params, p_ratio, macs, m_ratio, *values) in enumerate(zip(*columns, *settings)):
        timed = [f"CPU latency {format_ms(latency[0][i])} (batch 1), {format_ms(latency[1][i])} (batch 64)"
                 ] if latency else []
        lines = [
            f"trial {trial} ({status})",
            f"budget {budget:g}",
            f"score {acc:.0f}" if target.is_score else f"accuracy {format_percent(acc)}",
            f"params {format_count(params, units['params'])} ({format_ratio(p_ratio)})",
            f"MACs {format_count(macs, units['macs'])} ({format_ratio(m_ratio)})",
            *timed,
            *(f"{c.split('/', 1)[1]} = {_short(v)}" for c, v in zip(extra, values)),
        ]
        out[index[i]] = "<br>".join(html.escape(line) for line in lines)
    return out


def _short(value: object) -> str:
    if isinstance(value, float):
        return "-" if math.isnan(value) else f"{value:.4g}"
    return str(value)


def _panel(cost: str, column: str, flag: str, budget_flag: str, points: pd.DataFrame, t: Target,
           units: Mapping[str, Unit], y: np.ndarray, groups: np.ndarray, budget_groups: Sequence[str]) -> Panel:
    """One panel's data: its x values in their unit, label, ratio reference, the fronts' staircases."""
    latency = cost in _LATENCY_LABELS
    unit = MILLISECONDS if latency else units[cost]
    x = unit(points[column].to_numpy(dtype=float))
    on = points[flag].to_numpy(dtype=bool)
    reference = None if latency else _constant(points[f"reference_{cost}"].to_numpy(dtype=float))
    what = "union " if t.union else ""
    if latency:
        label = _LATENCY_LABELS[cost] + (", slowest domain" if t.union else "")
    else:
        label = f"{what}parameters ({unit.symbol})" if cost == "params" else f"{what}MACs per image ({unit.symbol})"
    panel = Panel(cost, label, unit, None if reference is None else unit(reference), x, on, _staircase(x[on], y[on]))
    in_budget_front = points[budget_flag].to_numpy(dtype=bool)
    for group in budget_groups:
        mask = in_budget_front & (groups == group)
        if mask.any():
            panel.budget_fronts[group] = _staircase(x[mask], y[mask])
    return panel


def _latency_note(points: pd.DataFrame, table: pd.DataFrame | None) -> str:
    """``"; 9 timed on CPU (2 while other runs shared their machine: noisy)"`` for a figure's note."""
    timed = np.isfinite(points[LATENCY_B1_MS].to_numpy(dtype=float)) | np.isfinite(
        points[LATENCY_B64_MS].to_numpy(dtype=float))
    note = f"; {int(timed.sum())} timed on CPU"
    if table is not None and M.LATENCY_NEIGHBOURS in table:
        neighbours = table[M.LATENCY_NEIGHBOURS].to_numpy(dtype=float)[points[TRIAL].to_numpy()]
        contended = int((timed & (neighbours > 0)).sum())
        if contended:
            note += f" ({contended} while other runs shared their machine: noisy)"
    return note


def figure_data(
    data: ParetoData,
    target: str,
    *,
    table: pd.DataFrame | None = None,
    model: ModelCosts | None = None,
) -> FigureData:
    """The plot data of one target.

    Args:
        data: Fronts and hypervolumes (:func:`analysis.fronts.pareto_data`).
        target: Target name: a domain, ``"mean"`` or ``"score"``.
        table: The trial table, to show the trials' varying configuration on hover (optional).
        model: The sweep's reference and unpruned costs, to mark the unpruned model (optional).

    Returns:
        The figure's data; no points if the target has no usable trial.
    """
    t = data.target(target)
    points = data.points_of(target)
    y_scale = 1.0 if t.is_score else 100.0
    units = {"params": params_unit(np.concatenate([points[PARAMS].to_numpy(dtype=float),
                                                   points[REFERENCE_PARAMS].to_numpy(dtype=float)])),
             "macs": macs_unit(np.concatenate([points[MACS].to_numpy(dtype=float),
                                               points[REFERENCE_MACS].to_numpy(dtype=float)]))}
    y = points[ACCURACY].to_numpy(dtype=float) * y_scale
    groups = points[BUDGET_GROUP].to_numpy(dtype=object)
    panels = [_panel(cost, column, flag, budget_flag, points, t, units, y, groups, data.budget_groups)
              for cost, column, flag, budget_flag in (*_PANELS, *(_LATENCY_PANELS if data.latency else ()))]
    y_label = "Decathlon score (points)" if t.is_score else (
        "mean validation accuracy (%)" if t.union else "validation accuracy (%)")
    left = data.left_out.get(target, {})
    n_front = int(points["front_3d"].sum())
    note = f"{len(points)} trials, {n_front} on the 3-objective front"
    skipped = [f"{n} {why}" for why, n in left.items() if n]
    if skipped:
        note += f" (left out: {', '.join(skipped)})"
    costs = "params, MACs and CPU latency" if data.latency else "params and MACs"
    title = f"{t.title} vs union {costs}" if t.union else f"{t.title}: accuracy vs {costs}"
    if data.latency:
        note += _latency_note(points, table)
    shown = _shown(panels, len(points))
    return FigureData(target, title, y_label, y, groups, list(data.budget_groups), shown,
                      _hover(points, shown, table, t, units), panels, _landmarks(t, points, units, y_scale, model),
                      note)


# --------------------------------------------------------------------------------------------------------------
# Renderers
# --------------------------------------------------------------------------------------------------------------


def _colours(groups: Sequence[str]) -> dict[str, str]:
    """One colour per budget group, light (small budget) to dark (large budget), readable on white."""
    from matplotlib import colormaps
    from matplotlib.colors import to_hex

    cmap = colormaps["viridis"]
    n = max(len(groups), 1)
    return {g: to_hex(cmap(0.8 - 0.7 * i / max(n - 1, 1))) for i, g in enumerate(groups)}


_LANDMARK_STYLE = {"baseline": ("#d62728", "--"), "unpruned": ("#7f7f7f", ":"), "finetune": ("#d62728", "")}


def _draw_png_panel(ax: Any, panel: Panel, fig_data: FigureData, colours: Mapping[str, str]) -> None:
    """One matplotlib panel: trials by budget (front points outlined), the fronts, the landmarks, the axes."""
    big = len(fig_data.y) > 5000
    dominated = ~panel.on_front
    for group in fig_data.group_order:
        in_group = fig_data.groups == group
        c = colours[group]
        ax.scatter(panel.x[in_group & dominated], fig_data.y[in_group & dominated], s=22, color=c,
                   alpha=0.45, linewidths=0, rasterized=big, zorder=2)
        ax.scatter(panel.x[in_group & ~dominated], fig_data.y[in_group & ~dominated], s=46, color=c,
                   edgecolors="black", linewidths=0.9, zorder=4)
        if group in panel.budget_fronts:
            bx, by = panel.budget_fronts[group]
            ax.step(bx, by, where="post", color=c, linewidth=1.0, alpha=0.8, zorder=3)
    fx, fy = panel.front
    if len(fx):
        ax.step(fx, fy, where="post", color="black", linewidth=1.8, zorder=3.5)
    for mark in fig_data.landmarks:
        x = _landmark_x(mark, panel)
        if x is None:
            continue
        colour, style = _LANDMARK_STYLE[mark.kind]
        if mark.accuracy is None:
            ax.axvline(x, color=colour, linestyle=style, linewidth=1.3, zorder=1)
        else:
            ax.scatter([x], [mark.accuracy], marker="*", s=190, color=colour, edgecolors="black",
                       linewidths=0.6, zorder=5)
    ax.set_xlabel(panel.x_label, fontsize=11)
    ax.grid(True, alpha=0.3, linewidth=0.6)
    ax.tick_params(labelsize=10)
    if panel.reference:
        ref = panel.reference
        top = ax.secondary_xaxis("top", functions=(lambda v, r=ref: v / r, lambda v, r=ref: v * r))
        top.set_xlabel("cost ratio (× one single-domain ResNet-26)", fontsize=10)
        top.tick_params(labelsize=9)
    marks = [_landmark_x(m, panel) for m in fig_data.landmarks]
    right = max([float(np.nanmax(panel.x)) if len(panel.x) else 0.0, *(m for m in marks if m is not None)])
    ax.set_xlim(0, right * 1.06 if right > 0 else None)


def _landmark_x(mark: Landmark, panel: Panel) -> float | None:
    """Where a landmark sits on a panel's cost axis (None: not on that panel, e.g. a latency panel)."""
    return mark.params if panel.cost == "params" else mark.macs if panel.cost == "macs" else None


def _png_legend(fig_data: FigureData, colours: Mapping[str, str]) -> list[Any]:
    """Legend handles: budgets present, the fronts, faded trials, then the landmarks."""
    from matplotlib.lines import Line2D

    handles = [Line2D([], [], marker="o", linestyle="", color=colours[g], markersize=7, label=f"budget {g}")
               for g in fig_data.group_order if (fig_data.groups == g).any()]
    handles += [
        Line2D([], [], marker="o", linestyle="-", color="black", markerfacecolor="white", markeredgecolor="black",
               linewidth=1.8, label="Pareto front (all budgets)"),
        Line2D([], [], color="grey", linewidth=1.0, label="front within a budget"),
        Line2D([], [], marker="o", linestyle="", color="grey", alpha=0.45, label="dominated trial (faded)"),
    ]
    for mark in fig_data.landmarks:
        colour, style = _LANDMARK_STYLE[mark.kind]
        if mark.accuracy is None:
            handles.append(Line2D([], [], color=colour, linestyle=style, linewidth=1.3, label=mark.label))
        else:
            handles.append(Line2D([], [], marker="*", linestyle="", color=colour, markeredgecolor="black",
                                  markersize=12, label=mark.label))
    return handles


def render_png(fig_data: FigureData, path: str | Path, *, dpi: int = 130) -> Path:
    """Draw one target's panels (accuracy vs params, vs MACs; with latency, a 2 x 2 grid adding vs batch-1 and
    batch-64 CPU ms) to a PNG file.

    Args:
        fig_data: From :func:`figure_data`.
        path: Output file; its folder is created.
        dpi: Resolution.

    Returns:
        The path written.
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    colours = _colours(fig_data.group_order)
    rows = 1 if len(fig_data.panels) <= 2 else 2
    fig, grid = plt.subplots(rows, 2, figsize=(12, 5.4 if rows == 1 else 10), sharey=True, layout="constrained",
                             squeeze=False)
    axes = list(grid.flat)
    for ax, panel in zip(axes, fig_data.panels):
        _draw_png_panel(ax, panel, fig_data, colours)
    for ax in axes[len(fig_data.panels):]:
        ax.set_visible(False)
    for row in grid:
        row[0].set_ylabel(fig_data.y_label, fontsize=11)
        row[1].tick_params(labelleft=True)
    fig.suptitle(f"{fig_data.title}\n{fig_data.note}", fontsize=12)
    handles = _png_legend(fig_data, colours)
    fig.legend(handles=handles, loc="outside lower center", ncol=min(4, len(handles)), fontsize=9, frameon=False)
    if len(fig_data.y) == 0:
        for ax in axes:
            ax.text(0.5, 0.5, "no usable trial", transform=ax.transAxes, ha="center", va="center", fontsize=12)
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return path


def _html_panel_traces(f: FigureData, panel: Panel, col: int, colours: Mapping[str, str]) -> list[Any]:
    """The plotly traces of one panel (hidden; the menu shows a target's): trials, the front, the landmarks."""
    import plotly.graph_objects as go

    traces: list[Any] = []
    keep_dominated = f.shown & ~panel.on_front
    scatter = go.Scattergl if f.shown.sum() > MAX_HTML_POINTS else go.Scatter
    for group in f.group_order:
        in_group = f.groups == group
        if not in_group.any():
            continue
        # One legend entry per budget: on its front points, or on its faded ones when none is on the front
        # (plotly leaves an empty trace out of the legend, and the budget's colour would go unexplained).
        on_front = bool((in_group & panel.on_front).any())
        for mask, opacity, size, line in ((in_group & keep_dominated, 0.35, 6, 0),
                                          (in_group & panel.on_front, 1.0, 10, 1.2)):
            traces.append(scatter(
                x=panel.x[mask], y=f.y[mask], mode="markers", name=f"budget {group}",
                legendgroup=group, showlegend=col == 1 and (opacity == 1.0) == on_front,
                marker=dict(color=colours[group], size=size, opacity=opacity, line=dict(color="black", width=line)),
                hovertext=f.hover[mask], hoverinfo="text", visible=False,
            ))
    fx, fy = panel.front
    traces.append(go.Scatter(x=fx, y=fy, mode="lines", line=dict(color="black", width=2, shape="hv"),
                             name="Pareto front (all budgets)", legendgroup="front", showlegend=col == 1,
                             hoverinfo="skip", visible=False))
    for mark in f.landmarks:
        x = _landmark_x(mark, panel)
        if x is not None:
            traces.append(_html_landmark(mark, x, f, col))
    return traces


def _html_landmark(mark: Landmark, x: float, f: FigureData, col: int) -> Any:
    """A landmark as a plotly trace: a vertical line over the accuracy range, or a star at its accuracy."""
    import plotly.graph_objects as go

    colour, style = _LANDMARK_STYLE[mark.kind]
    common = dict(name=mark.label, legendgroup=mark.kind, showlegend=col == 1, hoverinfo="name", visible=False)
    if mark.accuracy is None:
        y0, y1 = (float(np.min(f.y)), float(np.max(f.y))) if len(f.y) else (0.0, 1.0)
        return go.Scatter(x=[x, x], y=[y0, y1], mode="lines",
                          line=dict(color=colour, dash="dash" if style == "--" else "dot"), **common)
    return go.Scatter(x=[x], y=[mark.accuracy], mode="markers",
                      marker=dict(symbol="star", size=16, color=colour, line=dict(color="black", width=1)), **common)


def _html_layout(f: FigureData) -> dict[str, str]:
    """The layout a target's menu entry sets: title with its note, axis labels (the y label on each row)."""
    layout = {
        "title.text": f"{html.escape(f.title)}<br><sup>{html.escape(f.note)}</sup>",
        "xaxis.title.text": f.panels[0].x_label, "xaxis2.title.text": f.panels[1].x_label,
        "yaxis.title.text": f.y_label,
    }
    for i, panel in enumerate(f.panels[2:], start=3):  # the latency row
        layout[f"xaxis{i}.title.text"] = panel.x_label
    if len(f.panels) > 2:
        layout["yaxis3.title.text"] = f.y_label
    return layout


# The page's frame, in pixels from the top of the figure: the target drop-down in a row of its own (the modebar
# sits at the right of the same row), the title and its note below it, then the plots; the legend below the
# x-axis titles, anchored at its top so that extra rows grow into the bottom margin, never onto the axes.
_HTML_HEIGHT = 700
_HTML_ROW_HEIGHT = 400  # each further row of panels (the latency panels)
_HTML_TOP = 150  # top margin: menu row and title
_HTML_BOTTOM = 150  # bottom margin: tick labels, axis titles, the legend (up to ~3 rows)
_HTML_MENU_TOP = 8
_HTML_TITLE_TOP = 78
_HTML_LEGEND_GAP = 70  # from the plots' bottom edge to the legend's top: below tick labels and axis titles


def _html_frame(buttons: Sequence[Mapping[str, Any]], rows: int = 1) -> dict[str, Any]:
    """Layout of the page: sizes, margins, the drop-down, title and legend placed so that none overlaps another.

    plotly places the drop-down in paper coordinates (0..1 over the plotting area), the title and legend in
    container coordinates here, so the pixel positions above are converted for each.
    """
    height = _HTML_HEIGHT + (rows - 1) * _HTML_ROW_HEIGHT
    plot = height - _HTML_TOP - _HTML_BOTTOM
    return dict(
        updatemenus=[dict(buttons=list(buttons), direction="down", x=0.0, xanchor="left", yanchor="top",
                          y=1 + (_HTML_TOP - _HTML_MENU_TOP) / plot, pad=dict(t=0, b=0, l=0, r=0),
                          showactive=True)],
        title=dict(yref="container", y=1 - _HTML_TITLE_TOP / height, yanchor="top", x=0.0, xref="paper",
                   xanchor="left"),
        template="plotly_white", height=height,
        margin=dict(t=_HTML_TOP, b=_HTML_BOTTOM, l=80, r=40, autoexpand=True),
        legend=dict(orientation="h", yref="paper", y=-_HTML_LEGEND_GAP / plot, yanchor="top", x=0.5,
                    xanchor="center"),
    )


def render_html(figures: Sequence[FigureData], path: str | Path, *, title: str = "Pareto fronts") -> Path:
    """Write every target's figure to one interactive HTML page (plotly), with a drop-down to switch targets.

    Hovering a point shows its trial, budget, accuracy, costs and configuration. Targets with more than
    :data:`MAX_HTML_POINTS` dominated trials show a random sample of them (the front is always complete).

    Args:
        figures: From :func:`figure_data`, in menu order.
        path: Output file; its folder is created. plotly.js is embedded, so the page works offline.
        title: Page title.

    Returns:
        The path written.
    """
    from plotly.subplots import make_subplots

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = 2 if any(len(f.panels) > 2 for f in figures) else 1
    fig = (make_subplots(rows=1, cols=2, shared_yaxes=True, horizontal_spacing=0.06) if rows == 1 else
           make_subplots(rows=2, cols=2, shared_yaxes="all", horizontal_spacing=0.06, vertical_spacing=0.16))
    visibility: list[list[int]] = []  # trace indices per figure
    for f in figures:
        colours = _colours(f.group_order)
        start = len(fig.data)
        for i, panel in enumerate(f.panels):
            for trace in _html_panel_traces(f, panel, i + 1, colours):  # the legend from the first panel only
                fig.add_trace(trace, row=i // 2 + 1, col=i % 2 + 1)
        visibility.append(list(range(start, len(fig.data))))
    layouts = [_html_layout(f) for f in figures]
    n = len(fig.data)
    buttons = []
    for f, traces, layout in zip(figures, visibility, layouts):
        visible = [False] * n
        for i in traces:
            visible[i] = True
        buttons.append(dict(label=f.name, method="update", args=[{"visible": visible}, layout]))
    if figures:
        for i in visibility[0]:
            fig.data[i].visible = True
        fig.update_layout(dict(layouts[0]))
    fig.update_layout(**_html_frame(buttons, rows))
    fig.write_html(path, include_plotlyjs=True, full_html=True, config={"displaylogo": False},
                   default_width="100%", div_id="pareto")
    text = path.read_text()
    path.write_text(text.replace("<head>", f"<head><title>{html.escape(title)}</title>", 1))
    return path
