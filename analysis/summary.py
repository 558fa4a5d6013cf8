"""The report's short summary: per budget the best trial and the hypervolumes, the Pareto set, the units.

Data first (:func:`budget_summary`, :func:`pareto_set`, :func:`target_summary`: plain DataFrames in the table's
units), then two renderers of the same content: :func:`render_markdown` and :func:`render_html`.

"Best" is the highest Decathlon score when the sweep has one, else the highest mean validation accuracy. The
hypervolumes are those of mean accuracy against union params, against union MACs and against both
(:mod:`analysis.fronts` documents the reference point).

When the trials report measured CPU latency, the best trials and the Pareto set also show their batch-1 and
batch-64 milliseconds (the slowest domain's), a latency section lists the trials on the accuracy-vs-ms fronts
(:func:`latency_set`), and :func:`latency_notes` says how many were timed while other runs shared their machine
(``latency_neighbours > 0``: noisy times) with the command that re-measures the front's models alone
(``python -m analysis.retime``), or that they were re-measured. Without latency the summary is as before.
"""

from __future__ import annotations

import html
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from analysis.fronts import (
    ACCURACY,
    ACROSS_BUDGETS,
    BUDGET_GROUP,
    MACS_RATIO,
    PARAMS_RATIO,
    TARGET,
    TARGET_MEAN,
    TARGET_SCORE,
    ParetoData,
)
from analysis.headline import BUDGET_UNITS, BudgetBest, headline
from analysis.table import (
    BUDGET_COST,
    FINISHED,
    LATENCY_RETIMED,
    REFERENCE_MACS,
    REFERENCE_PARAMS,
    RUN_ID,
    STATUS,
    TRIAL_ID,
    domains_of,
)
from analysis.units import GIGA, format_count, format_ms, format_percent, format_ratio, macs_unit, params_unit
from analysis.unpruned import ModelCosts
from bap import metrics as M

__all__ = ["RETIME_COMMAND", "SummaryData", "budget_summary", "latency_notes", "latency_set", "pareto_set",
           "render_html", "render_markdown", "summary_data", "sweep_headline", "target_summary"]

RETIME_COMMAND = "python -m analysis.retime"
LATENCY_B1 = M.latency_metric("cpu", 1)  # the flat (slowest domain's) CPU ms the summary shows
LATENCY_B64 = M.latency_metric("cpu", 64)
_LATENCY_COLUMNS = (LATENCY_B1, LATENCY_B64, M.LATENCY_NEIGHBOURS)


@dataclass
class SummaryData:
    """Everything the summary shows.

    Attributes:
        title: Heading.
        source: Where the trials came from (one line).
        counts: Trials per status.
        ranked_by: ``"score"`` or ``"mean_val_acc"``.
        budgets: :func:`budget_summary`.
        front: :func:`pareto_set`.
        targets: :func:`target_summary`.
        reference: Hypervolume reference point.
        reference_params: One single-domain ResNet-26 with its head, in parameters (NaN if unknown).
        reference_macs: Its MACs.
        model: Reference and unpruned costs, if counted.
        figures: Relative paths of the figures (PNG per target, the HTML page).
        notes: Extra lines (what was left out and why).
        headline: The one-line reading of the sweep.
        budget_units: What the trials' budgets bound.
        latency_front: :func:`latency_set` (None: the trials report no latency).
        latency_notes: :func:`latency_notes`.
    """

    title: str
    source: str
    counts: dict[str, int]
    ranked_by: str
    budgets: pd.DataFrame
    front: pd.DataFrame
    targets: pd.DataFrame
    reference: dict[str, float]
    reference_params: float
    reference_macs: float
    model: ModelCosts | None = None
    figures: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    headline: str | None = None
    budget_units: list[str] = field(default_factory=list)
    latency_front: pd.DataFrame | None = None
    latency_notes: list[str] = field(default_factory=list)


def ranked_by(table: pd.DataFrame) -> str:
    """What "best" means for a sweep: the Decathlon score when a finished trial has one, else the mean val acc."""
    return M.SCORE if M.SCORE in table and table.loc[table[FINISHED], M.SCORE].notna().any() else M.MEAN_VAL_ACC


def best_trial(members: pd.DataFrame, rank: str) -> Any:
    """Index label of the best of ``members`` by ``rank``; ties by the mean val accuracy, then by table order
    (a missing value or column ranks last)."""
    def key(column: str) -> pd.Series:
        return members[column].fillna(-np.inf) if column in members else pd.Series(-np.inf, index=members.index)

    ranked = members.assign(_rank=key(rank), _acc=key(M.MEAN_VAL_ACC))
    return ranked.sort_values(["_rank", "_acc"], ascending=False, kind="stable").index[0]


def _usable(table: pd.DataFrame, data: ParetoData) -> pd.DataFrame:
    """The trials the mean-accuracy target used (finished, complete)."""
    rows = data.points_of(TARGET_MEAN)["trial"].to_numpy()
    return table.iloc[rows]


def budget_summary(table: pd.DataFrame, data: ParetoData, rank: str | None = None) -> pd.DataFrame:
    """Per budget group (and ``"all"``): usable trials, the best one and its costs, the mean-accuracy hypervolumes.

    The best is by ``rank`` (default: the Decathlon score when the sweep has one, else the mean val accuracy).

    Returns:
        Columns ``budget_group``, ``trials``, ``best_trial``, ``score``, ``mean_val_acc``, ``union_params``,
        ``union_params_ratio``, ``union_macs``, ``union_macs_ratio``, ``union_flops``, ``hv_params``, ``hv_macs``,
        ``hv_3d``; with latency also the best trial's ``latency_cpu_b1_ms``, ``latency_cpu_b64_ms`` and
        ``latency_neighbours``.
    """
    rank = rank or ranked_by(table)
    usable = _usable(table, data)
    groups = data.points_of(TARGET_MEAN).set_index("trial")[BUDGET_GROUP]
    volumes = data.hypervolumes[data.hypervolumes[TARGET] == TARGET_MEAN].set_index(BUDGET_GROUP)
    rows = []
    for group in [*data.budget_groups, ACROSS_BUDGETS]:
        members = usable if group == ACROSS_BUDGETS else usable[groups.reindex(usable.index).to_numpy() == group]
        if members.empty:
            continue
        best = members.loc[best_trial(members, rank)]
        row = {
            BUDGET_GROUP: group, "trials": len(members), "best_trial": best[TRIAL_ID],
            M.SCORE: best.get(M.SCORE, math.nan), M.MEAN_VAL_ACC: best[M.MEAN_VAL_ACC],
            M.UNION_PARAMS: best[M.UNION_PARAMS], M.UNION_PARAMS_RATIO: best[M.UNION_PARAMS_RATIO],
            M.UNION_MACS: best[M.UNION_MACS], M.UNION_MACS_RATIO: best[M.UNION_MACS_RATIO],
            "union_flops": 2 * best[M.UNION_MACS],
        }
        if data.latency:
            row.update({c: best.get(c, math.nan) for c in _LATENCY_COLUMNS})
        for name in ("hv_params", "hv_macs", "hv_3d"):
            row[name] = float(volumes.loc[group, name]) if group in volumes.index else 0.0
        rows.append(row)
    return pd.DataFrame(rows)


def pareto_set(table: pd.DataFrame, data: ParetoData, target: str = TARGET_MEAN) -> pd.DataFrame:
    """The trials on ``target``'s 3-objective front (accuracy up, params and MACs down), cheapest first.

    Returns:
        Columns ``trial_id``, ``run_id``, ``budget``, ``score``, ``mean_val_acc`` and the union costs and ratios,
        plus ``on_params_front`` / ``on_macs_front`` (also on the 2-objective fronts); with latency also
        ``latency_cpu_b1_ms``, ``latency_cpu_b64_ms`` and ``latency_neighbours``.
    """
    points = data.points_of(target)
    front = points[points["front_3d"]]
    rows = table.iloc[front["trial"].to_numpy()]
    out = pd.DataFrame({
        TRIAL_ID: rows[TRIAL_ID].to_numpy(), RUN_ID: rows[RUN_ID].to_numpy(), M.BUDGET: rows[M.BUDGET].to_numpy(),
        M.SCORE: rows[M.SCORE].to_numpy() if M.SCORE in rows else np.nan,
        M.MEAN_VAL_ACC: rows[M.MEAN_VAL_ACC].to_numpy(),
        M.UNION_PARAMS: rows[M.UNION_PARAMS].to_numpy(), M.UNION_PARAMS_RATIO: rows[M.UNION_PARAMS_RATIO].to_numpy(),
        M.UNION_MACS: rows[M.UNION_MACS].to_numpy(), M.UNION_MACS_RATIO: rows[M.UNION_MACS_RATIO].to_numpy(),
        "on_params_front": front["front_params"].to_numpy(), "on_macs_front": front["front_macs"].to_numpy(),
    })
    if data.latency:
        for column in _LATENCY_COLUMNS:
            out[column] = rows[column].to_numpy() if column in rows else np.nan
    return out.sort_values([M.UNION_PARAMS_RATIO, M.UNION_MACS_RATIO, TRIAL_ID], ignore_index=True)


def latency_set(table: pd.DataFrame, data: ParetoData, target: str = TARGET_MEAN) -> pd.DataFrame | None:
    """The trials on ``target``'s accuracy-vs-CPU-ms fronts (batch 1 or batch 64, all budgets), fastest first.

    Returns:
        None without latency; else columns ``trial_id``, ``run_id``, ``budget``, ``mean_val_acc``,
        ``latency_cpu_b1_ms``, ``latency_cpu_b64_ms``, ``latency_neighbours``, ``latency_retimed`` (text, None if
        not re-timed or unknown), ``on_b1_front``, ``on_b64_front``.
    """
    if not data.latency:
        return None
    points = data.points_of(target)
    front = points[points["front_latency_b1"] | points["front_latency_b64"]]
    rows = table.iloc[front["trial"].to_numpy()]

    def column(name: str) -> Any:
        return rows[name].to_numpy() if name in rows else np.nan

    out = pd.DataFrame({
        TRIAL_ID: rows[TRIAL_ID].to_numpy(), RUN_ID: rows[RUN_ID].to_numpy(), M.BUDGET: rows[M.BUDGET].to_numpy(),
        M.MEAN_VAL_ACC: rows[M.MEAN_VAL_ACC].to_numpy(),
        **{name: column(name) for name in _LATENCY_COLUMNS},
        LATENCY_RETIMED: rows[LATENCY_RETIMED].to_numpy() if LATENCY_RETIMED in rows else None,
        "on_b1_front": front["front_latency_b1"].to_numpy(), "on_b64_front": front["front_latency_b64"].to_numpy(),
    })
    return out.sort_values([LATENCY_B1, LATENCY_B64, TRIAL_ID], ignore_index=True)


def latency_notes(table: pd.DataFrame, data: ParetoData, retime_command: str | None = None) -> list[str]:
    """What to know about the measured times of the plotted trials (the mean target's): how many were timed while
    other runs shared their machine (noisy) and how to re-measure the front's models alone, how many were re-timed.

    Args:
        table: The trial table.
        data: Its fronts.
        retime_command: The re-timing command for this sweep (default: ``python -m analysis.retime`` with
            placeholders and the table's sweep id).

    Returns:
        Lines (none without latency).
    """
    if not data.latency:
        return []
    used = _usable(table, data)
    timed = used[used[LATENCY_B1].notna() | used[LATENCY_B64].notna()] if LATENCY_B1 in used else used.iloc[:0]
    notes = [f"CPU latency: {len(timed)} of {len(used)} plotted trials were timed."]
    neighbours = (timed[M.LATENCY_NEIGHBOURS] if M.LATENCY_NEIGHBOURS in timed else pd.Series(dtype=float)).fillna(0)
    contended = neighbours[neighbours > 0]
    if len(contended):
        low, high = int(contended.min()), int(contended.max())
        others = f"{low}" if low == high else f"{low}-{high}"
        if retime_command is None:
            sweeps = sorted(set(table["sweep_id"].dropna())) if "sweep_id" in table else []
            retime_command = (f"{RETIME_COMMAND} --tracking-uri URI --experiment NAME"
                              + (f" --sweep-id {sweeps[0]}" if len(sweeps) == 1 else ""))
        notes.append(f"{len(contended)} of them were timed while {others} other training run(s) shared their "
                     f"machine ({M.LATENCY_NEIGHBOURS} > 0): those times are noisy. Re-measure "
                     f"the front's models alone, on an idle machine: {retime_command}")
    retimed = int(used[LATENCY_RETIMED].notna().sum()) if LATENCY_RETIMED in used else 0
    if retimed:
        notes.append(f"{retimed} trial(s) were re-timed alone by {RETIME_COMMAND} (MLflow tag "
                     f"{M.TAG_LATENCY_RETIMED}); their latency is the re-measured one.")
    elif len(timed) and not len(contended):
        notes.append("Every timed trial was timed alone on its machine (no other training run live).")
    return notes


def target_summary(data: ParetoData) -> pd.DataFrame:
    """Per target, across budgets: usable trials, front sizes and hypervolumes."""
    across = data.hypervolumes[data.hypervolumes[BUDGET_GROUP] == ACROSS_BUDGETS]
    return across.drop(columns=[BUDGET_GROUP]).reset_index(drop=True)


def _budget_units(table: pd.DataFrame) -> list[str]:
    """What the trials' budgets bound (``params``, ``macs``, ``switches``), as logged."""
    if BUDGET_COST not in table:
        return []
    return sorted({str(v) for v in table[BUDGET_COST].dropna() if str(v) not in ("", "None", "nan")})


def sweep_headline(table: pd.DataFrame, data: ParetoData) -> str | None:
    """The report's one-line reading of the sweep (:func:`analysis.headline.headline`): each budget's best trial by
    mean val accuracy (what the line quotes), as the driver's summary picks it."""
    best = []
    for row in budget_summary(table, data, rank=M.MEAN_VAL_ACC).to_dict("records"):
        try:
            budget = float(row[BUDGET_GROUP])
        except (TypeError, ValueError):
            continue  # "all budgets", or a range of budgets
        best.append(BudgetBest(budget, row[M.MEAN_VAL_ACC], row[M.UNION_PARAMS_RATIO], row[M.UNION_MACS_RATIO]))
    units = _budget_units(table)
    return headline(best, len(domains_of(table.columns)), units[0] if len(units) == 1 else None)


def summary_data(
    table: pd.DataFrame,
    data: ParetoData,
    *,
    title: str,
    source: str,
    model: ModelCosts | None = None,
    figures: Sequence[str] = (),
    notes: Sequence[str] = (),
    retime_command: str | None = None,
) -> SummaryData:
    """Collect the summary of a sweep (see :class:`SummaryData`); ``retime_command`` is quoted by the latency
    notes (:func:`latency_notes`)."""
    counts = table[STATUS].value_counts().sort_index().to_dict() if STATUS in table else {}
    used = _usable(table, data)

    def constant(column: str) -> float:
        values = used[column].dropna() if column in used else pd.Series(dtype=float)
        return float(values.median()) if len(values) else math.nan

    return SummaryData(
        title=title, source=source, counts={str(k): int(v) for k, v in counts.items()}, ranked_by=ranked_by(table),
        budgets=budget_summary(table, data), front=pareto_set(table, data), targets=target_summary(data),
        reference=dict(data.reference), reference_params=constant(REFERENCE_PARAMS),
        reference_macs=constant(REFERENCE_MACS), model=model, figures=list(figures), notes=list(notes),
        headline=sweep_headline(table, data), budget_units=_budget_units(table),
        latency_front=latency_set(table, data), latency_notes=latency_notes(table, data, retime_command),
    )


# --------------------------------------------------------------------------------------------------------------
# Renderers
# --------------------------------------------------------------------------------------------------------------


def _cells(s: SummaryData) -> dict[str, tuple[list[str], list[list[str]]]]:
    """The summary's tables as text cells: name -> (header, rows)."""
    p_unit = params_unit([s.reference_params])
    m_unit = macs_unit([s.reference_macs, *s.budgets.get(M.UNION_MACS, [])])
    f_unit = GIGA if m_unit is GIGA or (2 * s.reference_macs) >= 1e9 else m_unit
    score = s.ranked_by == M.SCORE

    def acc(v: float) -> str:
        return format_percent(v)

    def pts(v: float) -> str:
        return "-" if v is None or not math.isfinite(v) else f"{v:.0f}"

    budgets_header = ["budget", "trials", "best trial", *(["score"] if score else []), "mean acc", "union params",
                      "params ratio", "union MACs", "MACs ratio", "FLOPs", "HV params", "HV MACs", "HV 3-D"]
    budgets_rows = [
        [("all budgets" if r[BUDGET_GROUP] == ACROSS_BUDGETS else str(r[BUDGET_GROUP])), str(r["trials"]),
         str(r["best_trial"]), *([pts(r[M.SCORE])] if score else []), acc(r[M.MEAN_VAL_ACC]),
         format_count(r[M.UNION_PARAMS], p_unit), format_ratio(r[M.UNION_PARAMS_RATIO]),
         format_count(r[M.UNION_MACS], m_unit), format_ratio(r[M.UNION_MACS_RATIO]),
         format_count(r["union_flops"], f_unit), f"{r['hv_params']:.4f}", f"{r['hv_macs']:.4f}", f"{r['hv_3d']:.4f}"]
        for r in s.budgets.to_dict("records")
    ]
    front_header = ["trial", "budget", *(["score"] if score else []), "mean acc", "union params", "params ratio",
                    "union MACs", "MACs ratio", "MLflow run"]
    front_rows = [
        [str(r[TRIAL_ID]), f"{r[M.BUDGET]:g}", *([pts(r[M.SCORE])] if score else []), acc(r[M.MEAN_VAL_ACC]),
         format_count(r[M.UNION_PARAMS], p_unit), format_ratio(r[M.UNION_PARAMS_RATIO]),
         format_count(r[M.UNION_MACS], m_unit), format_ratio(r[M.UNION_MACS_RATIO]),
         "-" if not isinstance(r[RUN_ID], str) else r[RUN_ID]]
        for r in s.front.to_dict("records")
    ]
    target_header = ["target", "trials", "front (params)", "front (MACs)", "front (3-D)", "HV params", "HV MACs",
                     "HV 3-D"]
    target_rows = [
        [str(r[TARGET]), str(r["trials"]), str(r["front_params"]), str(r["front_macs"]), str(r["front_3d"]),
         *(f"{r[c]:.4g}" if r[TARGET] == TARGET_SCORE else f"{r[c]:.4f}" for c in ("hv_params", "hv_macs", "hv_3d"))]
        for r in s.targets.to_dict("records")
    ]
    cells = {"budgets": (budgets_header, budgets_rows), "front": (front_header, front_rows),
             "targets": (target_header, target_rows)}
    return _latency_cells(s, cells, acc) if s.latency_front is not None else cells


_LATENCY_HEADER = ["CPU ms, batch 1", "CPU ms, batch 64", "timed with (runs)"]


def _latency_values(r: Mapping[str, Any]) -> list[str]:
    neighbours = r.get(M.LATENCY_NEIGHBOURS, math.nan)
    return [format_ms(r.get(LATENCY_B1, math.nan)), format_ms(r.get(LATENCY_B64, math.nan)),
            "-" if neighbours is None or not math.isfinite(neighbours) else
            ("alone" if neighbours == 0 else f"{neighbours:.0f} other" + ("s" if neighbours > 1 else ""))]


def _latency_cells(s: SummaryData, cells: dict[str, tuple[list[str], list[list[str]]]],
                   acc: Any) -> dict[str, tuple[list[str], list[list[str]]]]:
    """The cells with latency: the best trials' and the Pareto set's ms, the latency fronts' sizes and table."""
    out = dict(cells)
    header, rows = cells["budgets"]
    out["budgets"] = (header + _LATENCY_HEADER, [
        row + _latency_values(r) for row, r in zip(rows, s.budgets.to_dict("records"))])
    header, rows = cells["front"]
    out["front"] = (header[:-1] + _LATENCY_HEADER + header[-1:], [
        row[:-1] + _latency_values(r) + row[-1:] for row, r in zip(rows, s.front.to_dict("records"))])
    header, rows = cells["targets"]
    out["targets"] = (header + ["front (ms, batch 1)", "front (ms, batch 64)"], [
        row + [str(r.get("front_latency_b1", "-")), str(r.get("front_latency_b64", "-"))]
        for row, r in zip(rows, s.targets.to_dict("records"))])
    latency_front = s.latency_front if s.latency_front is not None else pd.DataFrame()
    out["latency"] = (["trial", "budget", "mean acc", *_LATENCY_HEADER, "re-timed", "on front", "MLflow run"], [
        [str(r[TRIAL_ID]), f"{r[M.BUDGET]:g}", acc(r[M.MEAN_VAL_ACC]), *_latency_values(r),
         r[LATENCY_RETIMED] if isinstance(r[LATENCY_RETIMED], str) else "-",
         " + ".join(name for name, on in (("batch 1", r["on_b1_front"]), ("batch 64", r["on_b64_front"])) if on),
         "-" if not isinstance(r[RUN_ID], str) else r[RUN_ID]]
        for r in latency_front.to_dict("records")])
    return out


def _units_lines(s: SummaryData) -> list[str]:
    m_unit = macs_unit([s.reference_macs])
    budget_unit = ", ".join(f"{BUDGET_UNITS.get(u, u)} (budget_cost={u})" for u in s.budget_units) or "not logged"
    lines = [
        f"Budget: the share of the backbone each domain may use, counted in {budget_unit}.",
        "Accuracy: top-1 on the validation split, in %. Params: parameters, in M. MACs: multiply-accumulates per "
        "image (1 MAC = 2 FLOPs). Ratios: x one single-domain ResNet-26 with its head"
        + (f" ({format_count(s.reference_params, params_unit([s.reference_params]))} params, {format_count(s.reference_macs, m_unit)} MACs)."
           if math.isfinite(s.reference_params) else "."),
    ]
    if s.model is not None:
        lines.append(
            f"Unpruned multi-domain model (every switch on, every domain's BNs and heads): "
            f"{format_count(s.model.unpruned_params, params_unit([s.reference_params]))} params = "
            f"{format_ratio(s.model.unpruned_params_ratio)}, {format_count(s.model.unpruned_macs, m_unit)} MACs = "
            f"{format_ratio(s.model.unpruned_macs_ratio)}."
        )
    if s.latency_front is not None:
        lines.append("CPU latency: measured milliseconds per call of a whole batch -- batch 1 (one image) and batch 64 "
                     "(ms per batch of 64) -- of each domain's deployable single-domain network (unused channels "
                     "removed); the union figure is the slowest domain's. Latency fronts have no hypervolume (times "
                     "depend on the machine and on what else ran on it).")
    ref = s.reference
    lines.append(
        f"Hypervolume reference point: accuracy {ref.get(ACCURACY, 0):g} (score {ref.get(ACCURACY, 0):g}), "
        f"params ratio {ref.get(PARAMS_RATIO, math.nan):g}, MACs ratio {ref.get(MACS_RATIO, math.nan):g}; "
        "volumes in accuracy (fraction) x ratio units; trials costing more than the reference add nothing."
    )
    return lines


def _md_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"

    align = ["---"] + ["---:"] * (len(header) - 1)
    return "\n".join([line(header), "| " + " | ".join(align) + " |", *(line(r) for r in rows)])


def render_markdown(s: SummaryData) -> str:
    """The summary as Markdown."""
    cells = _cells(s)
    counts = ", ".join(f"{n} {status.lower()}" for status, n in s.counts.items()) or "none"
    best_by = "Decathlon score" if s.ranked_by == M.SCORE else "mean validation accuracy"
    parts = [
        f"# {s.title}", "", s.source, "", f"Trials: {sum(s.counts.values())} ({counts}).", "",
        *([f"**{s.headline}**", ""] if s.headline else []),
        *[f"- {note}" for note in s.notes], *([""] if s.notes else []),
        f"## Per budget: best trial by {best_by}, mean-accuracy hypervolumes", "", _md_table(*cells["budgets"]), "",
        "## Pareto set: mean accuracy vs union params and MACs (all budgets, cheapest first)", "",
        _md_table(*cells["front"]) if cells["front"][1] else "(empty)", "",
        "## Fronts and hypervolumes per target (all budgets)", "", _md_table(*cells["targets"]), "",
        *_md_latency(s, cells),
        "## Units", "", *[f"- {line}" for line in _units_lines(s)], "",
    ]
    if s.figures:
        parts += ["## Figures", "", *[f"- [{f}]({f})" for f in s.figures], ""]
    return "\n".join(parts)


_LATENCY_HEADING = "Latency: mean accuracy vs CPU latency (all budgets, fastest first)"


def _md_latency(s: SummaryData, cells: Mapping[str, tuple[list[str], list[list[str]]]]) -> list[str]:
    """The latency section in Markdown (nothing without latency); a command in a note is shown as code."""
    if "latency" not in cells:
        return []
    notes = [note.replace(f": {RETIME_COMMAND}", f": `{RETIME_COMMAND}", 1) + "`" if f": {RETIME_COMMAND}" in note
             else note for note in s.latency_notes]
    return [f"## {_LATENCY_HEADING}", "", *[f"- {n}" for n in notes], *([""] if notes else []),
            _md_table(*cells["latency"]) if cells["latency"][1] else "(empty)", ""]


def _html_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _html_latency(s: SummaryData, cells: Mapping[str, tuple[list[str], list[list[str]]]]) -> list[str]:
    """The latency section in HTML (nothing without latency)."""
    if "latency" not in cells:
        return []
    notes = "".join(f"<li>{html.escape(n)}</li>" for n in s.latency_notes)
    return [f"<h2>{html.escape(_LATENCY_HEADING)}</h2>", *([f"<ul>{notes}</ul>"] if notes else []),
            _html_table(*cells["latency"])]


_CSS = ("body{font-family:system-ui,sans-serif;margin:2em;max-width:1300px}table{border-collapse:collapse;"
        "margin:0.5em 0 1.5em}th,td{border:1px solid #ccc;padding:3px 8px;text-align:right}"
        "th{background:#f3f3f3}td:first-child,th:first-child{text-align:left}img{max-width:100%;"
        "border:1px solid #eee;margin:0.5em 0}")


def render_html(s: SummaryData, images: Mapping[str, str] | None = None) -> str:
    """The summary as a standalone HTML page; ``images`` (title -> relative PNG path) are shown inline."""
    cells = _cells(s)
    counts = ", ".join(f"{n} {status.lower()}" for status, n in s.counts.items()) or "none"
    best_by = "Decathlon score" if s.ranked_by == M.SCORE else "mean validation accuracy"
    parts = [
        f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(s.title)}</title>",
        f"<style>{_CSS}</style></head><body>",
        f"<h1>{html.escape(s.title)}</h1><p>{html.escape(s.source)}</p>",
        f"<p>Trials: {sum(s.counts.values())} ({html.escape(counts)}).</p>",
        *([f"<p><strong>{html.escape(s.headline)}</strong></p>"] if s.headline else []),
    ]
    if s.notes:
        parts.append("<ul>" + "".join(f"<li>{html.escape(n)}</li>" for n in s.notes) + "</ul>")
    parts += [
        f"<h2>Per budget: best trial by {best_by}, mean-accuracy hypervolumes</h2>", _html_table(*cells["budgets"]),
        "<h2>Pareto set: mean accuracy vs union params and MACs (all budgets, cheapest first)</h2>",
        _html_table(*cells["front"]),
        "<h2>Fronts and hypervolumes per target (all budgets)</h2>", _html_table(*cells["targets"]),
        *_html_latency(s, cells),
        "<h2>Units</h2><ul>" + "".join(f"<li>{html.escape(line)}</li>" for line in _units_lines(s)) + "</ul>",
    ]
    if s.figures:
        parts.append("<h2>Figures</h2><ul>" + "".join(
            f"<li><a href='{html.escape(f)}'>{html.escape(f)}</a></li>" for f in s.figures) + "</ul>")
    for name, src in (images or {}).items():
        parts.append(f"<h3>{html.escape(name)}</h3><img src='{html.escape(src)}' alt='{html.escape(name)}'>")
    parts.append("</body></html>")
    return "\n".join(parts)
