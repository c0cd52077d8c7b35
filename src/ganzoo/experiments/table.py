"""The results table: one row per experiment, one column per fact and per evaluated metric.

One table serves the queue's ``results.md`` (:func:`ganzoo.experiments.runner.write_results`)
and the report's comparison (``index.html`` and ``report.md``,
:mod:`ganzoo.experiments.report`). Each cell is ``(text, value)``: the text is shown, the
value sorts the report's table. Every metric column carries the protocol it was measured
with (``runs.protocol_summary``) as a numbered footnote.

An experiment trained with several seeds (a queue's ``seeds``) is one row: each metric shows
the mean, the sample standard deviation and the per-seed values (:mod:`.stats`). Each
experiment is then compared with its baseline (the experiment it names, else the table's
first): the difference of means with its 95% interval and the verdict in words
(:func:`ganzoo.experiments.stats.compare`), the interval's method and inputs as footnotes
(docs/experiments.md, "Seeds and the baseline comparison").
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any, Callable

from .runs import RunInfo, format_duration, metric_direction, protocol_summary
from .stats import Comparison, compare, format_interval, format_summary, format_values, summarize

__all__ = ["Column", "Table", "Group", "group_runs", "results_table", "COLUMNS",
           "HEADLINE_METRICS", "NOT_EVALUATED", "EVALUATED_AT"]

Cell = tuple[str, Any]  # (text, sort value)


@dataclass(frozen=True)
class Column:
    label: str
    cell: Callable[[RunInfo], Cell]


def _or_dash(value: Any, fmt: Callable[[Any], str]) -> Cell:
    return ("—" if value is None else fmt(value), value)


def params_cell(n: int | None) -> Cell:
    return _or_dash(n, lambda v: f"{v / 1e6:.2f} M")


RUN = Column("run", lambda r: (r.group or r.name, r.group or r.name))
MODEL = Column("model", lambda r: (r.model, r.model))
STATUS = Column("status", lambda r: (r.status, r.status))
STEPS = Column("steps", lambda r: _or_dash(r.steps, "{:,}".format))
TRAIN_TIME = Column("train time", lambda r: (format_duration(r.train_time), r.train_time))
IMAGES_PER_S = Column("img/s", lambda r: _or_dash(r.images_per_s, "{:,.0f}".format))
PARAMS = Column("params", lambda r: params_cell(r.parameters))


def _evaluated_at(r: RunInfo) -> Cell:
    """Which model the metrics come from: ``final @ 1,000``, ``best @ 600``."""
    if not r.evaluation:
        return "—", None
    skipped = r.evaluation.get("skipped")
    if skipped:
        return f"not scored: {skipped}", None
    step = r.protocol.get("step")
    where = r.protocol.get("checkpoint") or "final"
    return (f"{where} @ {step:,}" if isinstance(step, int) else where), step


EVALUATED_AT = Column("evaluated at", _evaluated_at)
# The facts before the metric columns, in order.
COLUMNS = (RUN, MODEL, STATUS, STEPS, TRAIN_TIME, IMAGES_PER_S, PARAMS)

# Metrics a generative-model comparison reports first (FID, Inception Score, LPIPS
# diversity): label and key prefixes. With ``headline`` on, each gets a column even when no
# run measured it, left empty.
HEADLINE_METRICS = (("FID", ("fid", "fd")), ("IS", ("isc_mean", "isc")),
                    ("LPIPS diversity", ("lpips_diversity",)))
NOT_EVALUATED = "not evaluated in any run"


@dataclass
class Group:
    """One row of the table: an experiment's runs (its seeds; a lone run is a group of one)
    and the experiment it is compared with."""

    name: str
    runs: list[RunInfo]
    baseline: str | None = None

    def values(self, key: str) -> list[float]:
        return [r.metrics[key] for r in self.runs if key in r.metrics]


def group_runs(runs: list[RunInfo]) -> list[Group]:
    """Runs grouped by experiment (``RunInfo.group``), in order of first appearance; each
    group's baseline is the experiment its queue named (none when that one is not in the
    table), else, for runs not from a queue, the first group."""
    groups: dict[str, Group] = {}
    for r in runs:
        groups.setdefault(r.group or r.name, Group(r.group or r.name, [])).runs.append(r)
    out = list(groups.values())
    for g in out[1:]:
        records = [r.experiment for r in g.runs if r.experiment and "baseline" in r.experiment]
        if not records:  # not from a queue: the table's first experiment
            g.baseline = out[0].name
            continue
        named = records[0]["baseline"]  # None: the queue's baseline itself
        g.baseline = named if named in groups and named != g.name else None
    return out


@dataclass
class Table:
    header: list[tuple[str, str | None]]  # (label, tooltip: a metric's protocols)
    rows: list[list[Cell]]
    notes: list[tuple[str, str]]  # (metric key, its protocols), in header order
    comparisons: list[Comparison] = field(default_factory=list)  # each experiment vs baseline
    # eval: {checkpoints: all}: (run, step, metric texts in metric-column order) per scored model
    by_step: list[tuple[str, int | None, list[str]]] = field(default_factory=list)
    metric_keys: list[str] = field(default_factory=list)

    def header_labels(self) -> list[str]:
        """The labels, each metric's with its footnote number ``[n]``."""
        out, n = [], 0
        for label, tip in self.header:
            if tip and tip != NOT_EVALUATED:
                n += 1
                out.append(f"{label} [{n}]")
            else:
                out.append(label)
        return out

    def markdown(self) -> list[str]:
        """The table as Markdown lines, with the protocols as numbered footnotes."""
        lines = ["| " + " | ".join(_md(c) for c in self.header_labels()) + " |",
                 "|" + " --- |" * len(self.header)]
        lines += ["| " + " | ".join(_md(text) for text, _ in row) + " |" for row in self.rows]
        lines += self.comparison_markdown()
        lines += self.by_step_markdown()
        if self.notes:
            lines += ["", "Protocols:", ""]
            lines += [f"{i + 1}. `{key}`: {text}" for i, (key, text) in enumerate(self.notes)]
        intervals = self.interval_notes()
        if intervals:
            lines += ["", "Intervals:", ""]
            lines += [f"{label}. {text}" for label, text in intervals]
        return lines

    def comparison_rows(self) -> list[list[str]]:
        """experiment, baseline, metric, difference (interval) with its footnote, verdict."""
        rows, n = [], 0
        for c in self.comparisons:
            diff = format_interval(c.interval, _decimals(c.experiment_summary.values +
                                                         c.baseline_summary.values))
            if c.interval is None:
                diff = f"{c.experiment_summary.mean - c.baseline_summary.mean:+.4g}"
            else:
                n += 1
                diff += f" [c{n}]"
            rows.append([c.experiment, c.baseline, f"{c.metric} {c.direction}".strip(), diff,
                         c.words])
        return rows

    def interval_notes(self) -> list[tuple[str, str]]:
        """``(c1, the method and its inputs)`` per comparison that has an interval."""
        out = []
        for c in self.comparisons:
            if c.interval is not None:
                out.append((f"c{len(out) + 1}", f"{c.experiment} − {c.baseline}, `{c.metric}`: "
                            f"{c.interval.describe()}"))
        return out

    def by_step_markdown(self) -> list[str]:
        if not self.by_step:
            return []
        lines = ["", "Every kept checkpoint (`eval: {checkpoints: all}`), by step:", "",
                 "| run | step | " + " | ".join(_md(k) for k in self.metric_keys) + " |",
                 "|" + " --- |" * (2 + len(self.metric_keys))]
        return lines + [f"| {_md(run)} | {'—' if step is None else f'{step:,}'} | " +
                        " | ".join(_md(t) for t in texts) + " |"
                        for run, step, texts in self.by_step]

    def comparison_markdown(self) -> list[str]:
        if not self.comparisons:
            return []
        lines = ["", "Against the baseline (difference of means, experiment − baseline, with "
                 "its 95% interval over training seeds):", "",
                 "| experiment | baseline | metric | difference (95% interval) | verdict |",
                 "|" + " --- |" * 5]
        return lines + ["| " + " | ".join(_md(c) for c in row) + " |"
                        for row in self.comparison_rows()]


def _md(value: Any) -> str:
    return str(value).replace("|", "\\|").replace("\n", " ")


def _metric_columns(runs: list[RunInfo], headline: bool) -> list[tuple[str, str | None]]:
    """``(label, key)`` per metric column: every evaluated key, the headline metrics first
    (in the order first seen otherwise), plus, with ``headline``, an empty column for each
    headline metric no run measured."""
    keys: list[str] = []
    for r in runs:
        keys += [k for k in r.metrics if k not in keys]

    def rank(k: str) -> int:
        base = re.split(r"[@/]", k)[0]
        for i, (_, prefixes) in enumerate(HEADLINE_METRICS):
            if base in prefixes or base.startswith(prefixes):
                return i
        return len(HEADLINE_METRICS)

    cols: list[tuple[str, str | None]] = []
    for i in range(len(HEADLINE_METRICS) + 1):  # the headline metrics in order, then the rest
        ranked = [k for k in keys if rank(k) == i]
        cols += [(f"{k} {metric_direction(k)}".strip(), k) for k in ranked]
        if headline and not ranked and i < len(HEADLINE_METRICS):
            label, prefixes = HEADLINE_METRICS[i]
            cols.append((f"{label} {metric_direction(prefixes[0])}".strip(), None))
    return cols


def _decimals(values) -> int:
    """Decimals that show two significant digits of the spread (four of the value when
    there is no spread)."""
    vals = [float(v) for v in values]
    spread = (max(vals) - min(vals)) if len(vals) > 1 else 0.0
    scale = spread if spread > 0 else max((abs(v) for v in vals), default=0.0)
    if scale <= 0 or not math.isfinite(scale):
        return 1
    lead = math.floor(math.log10(scale))
    return max(0, min(6, (1 if spread > 0 else 3) - lead))


def _metric_cell(group: Group, key: str | None) -> Cell:
    """A lone run's value as before (4 significant digits); over seeds, ``mean ± sd
    (per-seed values)``, sorted by the mean."""
    values = group.values(key) if key else []
    if not values:
        return "—", None
    if len(group.runs) == 1:
        return f"{values[0]:.4g}", values[0]
    summary = summarize(values)
    d = _decimals(values)
    return f"{format_summary(summary, d)} ({format_values(summary, d)})", summary.mean


def _group_cell(column: Column, group: Group) -> Cell:
    """A fact over an experiment's seeds: the one text when they agree, else each seed's,
    sorted by their mean."""
    cells = [column.cell(r) for r in group.runs]
    if len(cells) == 1 or len({t for t, _ in cells}) == 1:
        return cells[0]
    nums = [v for _, v in cells if isinstance(v, (int, float)) and not isinstance(v, bool)]
    value = sum(nums) / len(nums) if len(nums) == len(cells) else cells[0][1]
    return ", ".join(t for t, _ in cells), value


def _headline_sort(groups: list[Group], metric_cols) -> list[Group]:
    """Groups by the mean of the headline metric (the first metric column), the better end
    first by its direction; groups without it last."""
    key = next((k for _, k in metric_cols if k), None)
    if key is None:
        return groups
    sign = -1.0 if metric_direction(key) == "↑" else 1.0
    scored = [(summarize(g.values(key)).mean * sign if g.values(key) else math.inf, i, g)
              for i, g in enumerate(groups)]
    return [g for _, _, g in sorted(scored, key=lambda t: (t[0], t[1]))]


def _comparisons(groups: list[Group], metric_cols) -> list[Comparison]:
    by_name = {g.name: g for g in groups}
    out = []
    for g in groups:
        base = by_name.get(g.baseline) if g.baseline else None
        if base is None:
            continue
        for _, key in metric_cols:
            if key and g.values(key) and base.values(key):
                out.append(compare(key, g.values(key), base.values(key),
                                   names=(g.name, base.name)))
    return out


def results_table(runs: list[RunInfo], columns: tuple[Column, ...] = COLUMNS,
                  after: tuple[Column, ...] = (), headline: bool = True,
                  sort: bool = False) -> Table:
    """The table of ``runs``: one row per experiment (its seeds together), ``columns``, a
    column per metric, then ``after``; with ``sort``, the rows by the headline metric's
    mean. Each experiment but the first is compared with its baseline on every metric."""
    metric_cols = _metric_columns(runs, headline)
    groups = group_runs(runs)
    comparisons = _comparisons(groups, metric_cols)
    if sort:
        groups = _headline_sort(groups, metric_cols)
    header: list[tuple[str, str | None]] = [(c.label, None) for c in columns]
    notes: list[tuple[str, str]] = []
    for label, key in metric_cols:
        if key is None:
            header.append((label, NOT_EVALUATED))
            continue
        text = " | ".join(sorted({protocol_summary(r.protocol, key) for r in runs
                                  if key in r.metrics}))
        notes.append((key, text))
        header.append((label, text))
    header += [(c.label, None) for c in after]
    rows = []
    for g in groups:
        row = [_group_cell(c, g) for c in columns]
        row += [_metric_cell(g, key) for _, key in metric_cols]
        rows.append(row + [_group_cell(c, g) for c in after])
    keys = [k for _, k in metric_cols if k]
    by_step = []
    for r in runs:  # runs that scored their kept checkpoints: each step, then final
        if r.checkpoint_evals:
            scored = [*r.checkpoint_evals, (r.protocol.get("step"), r.evaluation or {})]
            by_step += [(r.name, step, [_value(ev, k) for k in keys]) for step, ev in scored]
    return Table(header, rows, notes, comparisons, by_step, keys)


def _value(evaluation: dict[str, Any], key: str) -> str:
    v = (evaluation.get("metrics") or {}).get(key)
    return "—" if not isinstance(v, (int, float)) else f"{v:.4g}"
