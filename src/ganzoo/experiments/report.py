"""``ganzoo report RUN_OR_QUEUE... -o DIR``: a static page comparing runs.

``DIR/index.html`` opens from ``file://`` with no server and no network: its images sit next
to it under ``DIR/runs/<run>/``, its style and its only script (the sortable table) are
inline. ``DIR/report.md`` holds the same comparison table as Markdown, for a paper or a log.

For each run: its config (the fields that differ from the defaults first), loss and metric
curves, the sample-grid progression (10 % -> 50 % -> 100 % of the run), the final grid, a
latent interpolation (GAN and VAE families), the worst samples, parameters, training time
and images/s. The comparison table (:mod:`ganzoo.experiments.table`, the queue's
``results.md`` has the same) carries the columns of a cross-family comparison (FID, IS,
LPIPS diversity, parameters, training time; docs/workflows/generator_evolution.md,
"Stage 5") and every metric that was evaluated, each with its protocol in a tooltip and
a footnote.
"""

from __future__ import annotations

import datetime
import html
import json
import re
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from .._factory import model_info
from .._io import atomic_write_text
from .._progress import progress_bar
from ..rundir import RESULTS_JSONL, SEED_RE, RunDir, read_jsonl
from ..training.config import RunConfig
from .figures import (MissingExtra, interpolation_strip, load_run_model, pick_progression,
                      plot_curves, worst_samples)
from .queue import load_queue
from .runs import RunInfo, format_duration, protocol_summary
from .table import EVALUATED_AT, NOT_EVALUATED, Table, results_table

__all__ = ["ReportError", "collect_runs", "write_report"]


class ReportError(ValueError):
    """A path that is neither a run folder, a queue's output_root nor a queue file."""


# -- which runs ------------------------------------------------------------------------------
def collect_runs(paths: list[str]) -> list[RunInfo]:
    """Run folders from run folders, queue output roots (every experiment, in queue order)
    and queue files."""
    runs: list[RunInfo] = []
    for spec in paths:
        path = Path(spec)
        if path.is_file() and path.suffix in (".yaml", ".yml"):
            queue = load_queue(path, check_paths=False)
            found = [RunInfo.read(r.dir, r.name, r.group) for e in queue.experiments
                     for r in e.runs() if r.files.is_run_dir()]
            if not found:
                raise ReportError(f"{spec}: none of its experiments has run yet "
                                  f"(in {queue.output_root})")
            runs += found
        elif path.is_dir() and RunDir(path).is_run_dir():
            runs.append(RunInfo.read(path))
        elif path.is_dir():
            runs += _queue_root_runs(path, spec)
        else:
            raise ReportError(f"{spec} does not exist")
    roots: dict[str, Path] = {}
    for run in runs:  # two experiments of the same name (two queues): tell them apart
        root = run.dir.parent.parent if run.group != run.name else run.dir.parent
        if roots.setdefault(run.group, root) != root:
            run.name, run.group = f"{root.name}/{run.name}", f"{root.name}/{run.group}"
    return runs


def _queue_root_runs(path: Path, spec: str) -> list[RunInfo]:
    """A queue's output_root: its experiments' run folders, a seed's folder
    (``EXP03/seed1``) as a run of experiment ``EXP03``, in the order results.jsonl has them."""
    found: list[tuple[Path, str, str]] = []  # folder, run name, experiment
    for d in sorted(p for p in path.iterdir() if p.is_dir()):
        if RunDir(d).is_run_dir():
            found.append((d, d.name, d.name))
            continue
        seeds = [s for s in d.iterdir() if s.is_dir() and SEED_RE.match(s.name)
                 and RunDir(s).is_run_dir()]
        seeds.sort(key=lambda s: int(SEED_RE.match(s.name).group(1)))
        found += [(s, f"{d.name}/{s.name}", d.name) for s in seeds]
    if not found:
        raise ReportError(f"{spec} is neither a run folder nor a queue's output_root "
                          f"(no metrics.jsonl, config.json or run folders in it)")
    rows = read_jsonl(path / RESULTS_JSONL)
    order = [r.get("experiment") or r.get("name") for r in rows]
    found.sort(key=lambda f: order.index(f[2]) if f[2] in order else len(order))
    return [RunInfo.read(d, name, group) for d, name, group in found]


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name)


# -- per run ---------------------------------------------------------------------------------
@dataclass
class RunPage:
    info: RunInfo
    slug: str
    images: dict[str, Any] = field(default_factory=dict)  # name -> relative path(s)
    notes: dict[str, str] = field(default_factory=dict)  # section -> why it is left out
    worst: dict[str, Any] | None = None
    first_of_group: bool = True  # the first seed of an experiment: the table's link target


def _copy(src: Path, dest: Path) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, dest)


def _build_page(info: RunInfo, out: Path, slug: str, opts: dict[str, Any],
                warn) -> RunPage:
    page = RunPage(info, slug)
    folder = out / "runs" / slug
    folder.mkdir(parents=True, exist_ok=True)
    rel = lambda p: p.relative_to(out).as_posix()  # noqa: E731
    try:
        page.images.update({k: rel(p) for k, p in plot_curves(info, folder).items()})
    except MissingExtra as e:
        page.notes["curves"] = f"curves left out: {e}"
        warn(page.notes["curves"])
    grids = RunDir(info.dir).sample_grids()
    progression = []
    for step, src, frac in pick_progression(grids, info.steps):
        dest = folder / f"samples_{step:08d}.png"
        _copy(src, dest)
        progression.append((step, rel(dest), frac))
    page.images["progression"] = progression
    if grids:
        dest = folder / "final_grid.png"
        _copy(grids[-1][1], dest)
        page.images["final_grid"] = (grids[-1][0], rel(dest))
    device = torch.device(opts.get("device") or ("cuda" if torch.cuda.is_available() else "cpu"))
    try:
        model = load_run_model(info, device)
    except Exception as e:  # noqa: BLE001 - a report shows what it can
        page.notes["model"] = f"weights not loadable: {type(e).__name__}: {e}"
        warn(f"{info.name}: {page.notes['model']}")
        return page
    try:
        if interpolation_strip(model, folder / "interpolation.png"):
            page.images["interpolation"] = rel(folder / "interpolation.png")
        else:
            page.notes["interpolation"] = (f"no latent interpolation: {model.family} has no "
                                           f"latent space in ganzoo.latent's sense")
    except Exception as e:  # noqa: BLE001
        page.notes["interpolation"] = f"interpolation failed: {type(e).__name__}: {e}"
        warn(f"{info.name}: {page.notes['interpolation']}")
    if opts.get("worst", 8) > 0:
        try:
            page.worst = worst_samples(model, info, folder / "worst.png", k=opts.get("worst", 8),
                                       pool=opts.get("worst_pool", 64),
                                       n_reference=opts.get("worst_reference", 256),
                                       device=device)
            page.images["worst"] = rel(folder / "worst.png")
        except Exception as e:  # noqa: BLE001
            first = str(e).strip().splitlines()[0] if str(e).strip() else ""
            page.notes["worst"] = f"worst samples left out: {type(e).__name__}: {first}"
            warn(f"{info.name}: {page.notes['worst']}")
    return page


# -- the comparison table --------------------------------------------------------------------
def _markdown(table: Table) -> str:
    return "\n".join(["# ganzoo report", "", *table.markdown()]) + "\n"


# -- HTML ------------------------------------------------------------------------------------
CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px;color:#222;
max-width:1400px}
h1{margin-bottom:4px} h2{border-bottom:1px solid #ddd;padding-bottom:4px;margin-top:36px}
table{border-collapse:collapse;font-size:13px;margin:8px 0}
th,td{border:1px solid #ccc;padding:4px 8px;text-align:left;vertical-align:top}
th{background:#f3f3f3} table.sortable th{cursor:pointer;user-select:none}
table.sortable th.asc::after{content:" \\25B2"} table.sortable th.desc::after{content:" \\25BC"}
td.num{text-align:right;font-variant-numeric:tabular-nums}
.grid{display:flex;flex-wrap:wrap;gap:16px;align-items:flex-start}
figure{margin:0} figcaption{font-size:12px;color:#555}
img{image-rendering:pixelated;border:1px solid #ddd;max-width:100%}
img.curve{image-rendering:auto} .note{color:#8a5a00;font-size:13px}
.muted{color:#777;font-size:12px} details{margin:6px 0}
"""

# Sorts by the cell's data-v (numbers numerically, blanks last), toggling on each click.
JS = r"""
document.querySelectorAll('table.sortable').forEach(function(t){
  t.querySelectorAll('th').forEach(function(th,i){
    th.addEventListener('click',function(){
      var asc=!th.classList.contains('asc');
      t.querySelectorAll('th').forEach(function(h){h.classList.remove('asc','desc');});
      th.classList.add(asc?'asc':'desc');
      var body=t.tBodies[0], rows=Array.prototype.slice.call(body.rows);
      rows.sort(function(a,b){
        var x=a.cells[i].getAttribute('data-v'), y=b.cells[i].getAttribute('data-v');
        if(x===''&&y==='')return 0; if(x==='')return 1; if(y==='')return -1;
        var nx=parseFloat(x), ny=parseFloat(y), c;
        if(!isNaN(nx)&&!isNaN(ny)&&String(nx)===x&&String(ny)===y){c=nx-ny;}
        else{c=x.localeCompare(y);}
        return asc?c:-c;
      });
      rows.forEach(function(r){body.appendChild(r);});
    });
  });
  // index.html#sort=6-desc opens sorted (by the 7th column, descending): a link to a view.
  var m=location.hash.match(/^#sort=(\d+)(-desc)?$/), th=m&&t.querySelectorAll('th')[+m[1]];
  if(th){th.click(); if(m[2]){th.click();}}
});
"""


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _sort_value(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return repr(value)
    return str(value)


def _html_table(table: Table) -> str:
    out = ['<div style="overflow-x:auto"><table class="sortable" id="comparison"><thead><tr>']
    n = 0
    for label, tip in table.header:
        mark = ""
        if tip and tip != NOT_EVALUATED:
            n += 1
            mark = f'<sup><a href="#note-{n}">{n}</a></sup>'
        title = f' title="{_e(tip)}"' if tip else ""
        out.append(f"<th{title}>{_e(label)}{mark}</th>")
    out.append("</tr></thead><tbody>")
    for row in table.rows:
        cells = []
        for i, (text, value) in enumerate(row):
            cls = ' class="num"' if isinstance(value, (int, float)) else ""
            body = f'<a href="#run-{_e(_slug(text))}">{_e(text)}</a>' if i == 0 else _e(text)
            cells.append(f'<td{cls} data-v="{_e(_sort_value(value))}">{body}</td>')
        out.append("<tr>" + "".join(cells) + "</tr>")
    out.append("</tbody></table></div>")
    if table.notes:
        out.append('<ol class="muted">')
        out += [f'<li id="note-{i + 1}"><code>{_e(k)}</code>: {_e(v)}</li>'
                for i, (k, v) in enumerate(table.notes)]
        out.append("</ol>")
    return "\n".join(out)


def _html_by_step(table: Table) -> str:
    """``eval: {checkpoints: all}``: each scored checkpoint's values, by step."""
    if not table.by_step:
        return ""
    head = ("run", "step", *table.metric_keys)
    rows = "".join("<tr>" + "".join(f"<td>{_e(c)}</td>" for c in
                                    (run, "—" if step is None else f"{step:,}", *texts))
                   + "</tr>" for run, step, texts in table.by_step)
    return ('<h3>Every kept checkpoint</h3><table id="by-step"><thead><tr>' +
            "".join(f"<th>{_e(h)}</th>" for h in head) + f"</tr></thead><tbody>{rows}"
            "</tbody></table>")


def _html_comparisons(table: Table) -> str:
    """Each experiment against its baseline: the difference of means with its interval and
    the verdict; the interval's method and inputs as footnotes."""
    if not table.comparisons:
        return ""
    head = ("experiment", "baseline", "metric", "difference (95% interval)", "verdict")
    out = ["<h3>Against the baseline</h3>",
           '<p class="muted">The difference of means (experiment − baseline) over training '
           "seeds, with its 95% interval; an interval that excludes 0 shows a difference "
           "larger than the spread between seeds (docs/experiments.md).</p>",
           '<table id="baseline"><thead><tr>' + "".join(f"<th>{_e(h)}</th>" for h in head) +
           "</tr></thead><tbody>"]
    for c, row in zip(table.comparisons, table.comparison_rows()):
        out.append(f'<tr data-verdict="{_e(c.verdict)}">' +
                   "".join(f"<td>{_e(cell)}</td>" for cell in row) + "</tr>")
    out.append("</tbody></table>")
    notes = table.interval_notes()
    if notes:
        out.append('<ul class="muted">' + "".join(
            f'<li id="interval-{_e(label)}">[{_e(label)}] {_e(text)}</li>'
            for label, text in notes) + "</ul>")
    return "\n".join(out)


def _config_tables(info: RunInfo) -> str:
    defaults = RunConfig().to_dict()
    # Where the run went and how it was resumed say nothing about what it computed.
    cfg = {k: v for k, v in info.config.items()
           if k not in ("output_dir", "resume", "overwrite", "progress")}
    changed = {k: v for k, v in cfg.items() if defaults.get(k) != v}
    same = {k: v for k, v in cfg.items() if k not in changed}
    parts = ["<h4>Run config</h4>", _kv_table(changed) if changed else
             '<p class="muted">no config.json</p>']
    if same:
        parts.append(f"<details><summary>{len(same)} fields at their defaults</summary>"
                     f"{_kv_table(same)}</details>")
    mc = info.model_config or {}
    if mc.get("config") and mc.get("preset"):
        try:
            base = model_info(mc["preset"])["config"] or {}
        except Exception:  # noqa: BLE001 - a preset that is gone: show everything
            base = {}
        own = {k: v for k, v in mc["config"].items() if base.get(k) != v}
        rest = {k: v for k, v in mc["config"].items() if k not in own}
        parts.append(f"<h4>Model config (preset <code>{_e(mc['preset'])}</code>)</h4>")
        parts.append(_kv_table(own) if own else '<p class="muted">the preset as it is</p>')
        if rest:
            parts.append(f"<details><summary>{len(rest)} fields as in the preset</summary>"
                         f"{_kv_table(rest)}</details>")
    return "\n".join(parts)


def _kv_table(d: dict[str, Any]) -> str:
    rows = "".join(f"<tr><td><code>{_e(k)}</code></td><td><code>"
                   f"{_e(json.dumps(v, default=str))}</code></td></tr>" for k, v in d.items())
    return f"<table>{rows}</table>"


def _figure(src: str, caption: str, cls: str = "") -> str:
    c = f' class="{cls}"' if cls else ""
    return (f'<figure><img{c} src="{_e(src)}" alt="{_e(caption)}">'
            f"<figcaption>{_e(caption)}</figcaption></figure>")


def _run_html(page: RunPage) -> str:
    info = page.info
    t, ips = info.train_time, info.images_per_s
    facts = [("model", info.model), ("dataset", info.dataset or "—"), ("status", info.status),
             ("steps", "—" if info.steps is None else f"{info.steps:,}"),
             ("parameters", "—" if info.parameters is None else f"{info.parameters:,}"),
             ("training time", format_duration(t)),
             ("images/s", "—" if ips is None else f"{ips:,.1f} ({info.images_per_iteration} "
                                                    f"per iteration)"),
             ("folder", str(info.dir))]
    desc = (info.experiment or {}).get("description")
    out = [f'<h2 id="run-{_e(_slug(info.name))}">{_e(info.name)}</h2>']
    if info.group != info.name and page.first_of_group:  # the table's row links here
        out.insert(0, f'<a id="run-{_e(_slug(info.group))}"></a>')
    if desc:
        out.append(f"<p>{_e(desc)}</p>")
    out.append("<table>" + "".join(f"<tr><th>{_e(k)}</th><td>{_e(v)}</td></tr>"
                                   for k, v in facts) + "</table>")
    if info.metrics:
        out.append("<h4>Evaluation</h4>" + _kv_table(info.metrics) +
                   f'<p class="muted">{_e(protocol_summary(info.protocol))}</p>')
    out.append(_config_tables(info))
    out.append("<h3>Curves</h3>")
    curves = [_figure(page.images[k], k, "curve") for k in ("losses", "metrics")
              if k in page.images]
    out.append('<div class="grid">' + "".join(curves) + "</div>" if curves else
               f'<p class="note">{_e(page.notes.get("curves", "no logged values"))}</p>')
    out.append("<h3>Samples</h3>")
    figs = [_figure(src, f"step {step:,} ({frac:.0%} of the run)")
            for step, src, frac in page.images.get("progression", [])]
    if "final_grid" in page.images:
        step, src = page.images["final_grid"]
        figs.append(_figure(src, f"final grid, step {step:,}"))
    out.append('<div class="grid">' + "".join(figs) + "</div>" if figs else
               '<p class="note">no sample grids (sample_every 0?)</p>')
    out.append("<h3>Latent interpolation</h3>")
    out.append(_figure(page.images["interpolation"], "slerp between pairs of prior latents, "
                       "one pair a row") if "interpolation" in page.images else
               _note(page, "interpolation"))
    out.append("<h3>Worst samples</h3>")
    if page.worst:
        w = page.worst
        dist = ", ".join(f"{d:.3g}" for d in w["distances"])
        out.append(_figure(page.images["worst"], f"the {len(w['distances'])} of {w['pool']} "
                           f"generated '{w['output']}' images farthest from all {w['n_reference']}"
                           f" real images of {w['reference']} in {w['extractor']} "
                           f"{w['layer']} space (nearest-real distances {dist}; median of the "
                           f"pool {w['median_distance']:.3g})"))
    else:
        out.append(_note(page, "worst"))
    return "\n".join(out)


def _note(page: RunPage, section: str) -> str:
    """Why a section is empty: its own note, else why the weights did not load."""
    text = page.notes.get(section) or page.notes.get("model", "")
    return f'<p class="note">{_e(text)}</p>'


def write_report(paths: list[str], output: str | Path, *, worst: int = 8, worst_pool: int = 64,
                 worst_reference: int = 256, device: str | None = None, warn=None,
                 progress: bool | None = None) -> Path:
    """Write ``output/index.html`` (and ``report.md``, images) for the runs under ``paths``;
    ``progress`` over the runs follows :mod:`ganzoo._progress`."""
    warn = warn or (lambda msg: print(f"ganzoo report: {msg}", file=sys.stderr))
    runs = collect_runs(list(paths))
    out = Path(output)
    out.mkdir(parents=True, exist_ok=True)
    opts = {"worst": worst, "worst_pool": worst_pool, "worst_reference": worst_reference,
            "device": device}
    pages, slugs = [], set()
    for info in progress_bar(runs, desc="report", unit="run", enabled=progress):
        slug = _slug(info.name)
        while slug in slugs:
            slug += "_"
        slugs.add(slug)
        pages.append(_build_page(info, out, slug, opts, warn))
    groups_seen: set[str] = set()
    for page in pages:
        page.first_of_group = page.info.group not in groups_seen
        groups_seen.add(page.info.group)
    table = results_table(runs, after=(EVALUATED_AT,), sort=True)
    when = datetime.datetime.now().astimezone().isoformat(timespec="seconds")
    body = [f"<h1>ganzoo report</h1><p class=\"muted\">{len(runs)} run(s) from "
            f"{_e(', '.join(map(str, paths)))}; written {_e(when)}. Click a column to sort.</p>",
            "<h2>Comparison</h2>", _html_table(table), _html_comparisons(table),
            _html_by_step(table)]
    body += [_run_html(p) for p in pages]
    page = ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<title>ganzoo report</title>"
            f"<style>{CSS}</style></head><body>\n" + "\n".join(body) +
            f"\n<script>{JS}</script>\n</body></html>\n")
    atomic_write_text(out / "index.html", page)
    atomic_write_text(out / "report.md", _markdown(table))
    return out / "index.html"
