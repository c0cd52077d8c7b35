"""The results table: one row per run, one column per fact and per evaluated metric.

One table serves the queue's ``results.md`` (:func:`ganzoo.experiments.runner.write_results`)
and the report's comparison (``index.html`` and ``report.md``,
:mod:`ganzoo.experiments.report`). Each cell is ``(text, value)``: the text is shown, the
value sorts the report's table. Every metric column carries the protocol it was measured
with (``runs.protocol_summary``) as a numbered footnote.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Callable

from .runs import RunInfo, format_duration, metric_direction, protocol_summary

__all__ = ["Column", "Table", "results_table", "COLUMNS", "HEADLINE_METRICS", "NOT_EVALUATED"]

Cell = tuple[str, Any]  # (text, sort value)


@dataclass(frozen=True)
class Column:
    label: str
    cell: Callable[[RunInfo], Cell]


def _or_dash(value: Any, fmt: Callable[[Any], str]) -> Cell:
    return ("—" if value is None else fmt(value), value)


def params_cell(n: int | None) -> Cell:
    return _or_dash(n, lambda v: f"{v / 1e6:.2f} M")


RUN = Column("run", lambda r: (r.name, r.name))
MODEL = Column("model", lambda r: (r.model, r.model))
STATUS = Column("status", lambda r: (r.status, r.status))
STEPS = Column("steps", lambda r: _or_dash(r.steps, "{:,}".format))
TRAIN_TIME = Column("train time", lambda r: (format_duration(r.train_time), r.train_time))
IMAGES_PER_S = Column("img/s", lambda r: _or_dash(r.images_per_s, "{:,.0f}".format))
PARAMS = Column("params", lambda r: params_cell(r.parameters))
# The facts before the metric columns, in order.
COLUMNS = (RUN, MODEL, STATUS, STEPS, TRAIN_TIME, IMAGES_PER_S, PARAMS)

# Metrics a generative-model comparison reports first (FID, Inception Score, LPIPS
# diversity): label and key prefixes. With ``headline`` on, each gets a column even when no
# run measured it, left empty.
HEADLINE_METRICS = (("FID", ("fid", "fd")), ("IS", ("isc_mean", "isc")),
                    ("LPIPS diversity", ("lpips_diversity",)))
NOT_EVALUATED = "not evaluated in any run"


@dataclass
class Table:
    header: list[tuple[str, str | None]]  # (label, tooltip: a metric's protocols)
    rows: list[list[Cell]]
    notes: list[tuple[str, str]]  # (metric key, its protocols), in header order

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
        if self.notes:
            lines += ["", "Protocols:", ""]
            lines += [f"{i + 1}. `{key}`: {text}" for i, (key, text) in enumerate(self.notes)]
        return lines


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


def results_table(runs: list[RunInfo], columns: tuple[Column, ...] = COLUMNS,
                  after: tuple[Column, ...] = (), headline: bool = True) -> Table:
    """The table of ``runs``: ``columns``, a column per metric, then ``after``."""
    metric_cols = _metric_columns(runs, headline)
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
    for r in runs:
        row = [c.cell(r) for c in columns]
        for _, key in metric_cols:
            v = r.metrics.get(key) if key else None
            row.append(_or_dash(v, "{:.4g}".format))
        rows.append(row + [c.cell(r) for c in after])
    return Table(header, rows, notes)
