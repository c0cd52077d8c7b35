"""``ganzoo report``: the page parses, references only files it wrote, names every run and
metric, sorts, renders in headless Chromium; report.md; and without matplotlib, one line.

The runs are two tiny trainings in this process (a GAN and a VAE, the two latent families),
each scored into ``eval.json`` as a queue would, with the weight-free ``test_random_cnn``.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest

import ganzoo
from ganzoo.experiments.report import ReportError, write_report

EX = "test_random_cnn"


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    from ganzoo.training.config import resolve_run_config
    from ganzoo.training.trainer import Trainer

    root = tmp_path_factory.mktemp("runs")
    out = []
    for name, model in (("gan", "test_dcgan"), ("vae", "test_vae")):
        run_dir = root / name
        run = resolve_run_config({"model": model, "dataset": "shapes", "output_dir": str(run_dir),
                                  "max_steps": 4, "batch_size": 4, "log_every": 1,
                                  "sample_every": 1, "num_samples": 4, "progress": False})
        Trainer(run).train()
        ganzoo.evaluate(str(run_dir / "final"), "shapes", metrics=["fid", "isc"], n=10,
                        batch_size=10, feature_extractor=EX, step=4,
                        cache_dir=root / "cache", out=run_dir / "eval.json")
        out.append(run_dir)
    return out


class Page(HTMLParser):
    def __init__(self):
        super().__init__()
        self.refs: list[str] = []
        self.scripts: list[dict] = []
        self.tables: list[dict] = []
        self.headers: list[str] = []
        self._in_th = False

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        for key in ("src", "href"):
            if key in a:
                self.refs.append(a[key])
        if tag == "script":
            self.scripts.append(a)
        if tag == "table":
            self.tables.append(a)
        if tag == "th" and self.tables and self.tables[-1].get("id") == "comparison":
            self._in_th = True
            self.headers.append("")

    def handle_endtag(self, tag):
        if tag == "th":
            self._in_th = False

    def handle_data(self, data):
        if self._in_th:
            self.headers[-1] += data


@pytest.fixture(scope="module")
def report(runs, tmp_path_factory):
    out = tmp_path_factory.mktemp("report")
    warnings: list[str] = []
    index = write_report([str(r) for r in runs], out, worst_pool=16, worst_reference=32,
                         warn=warnings.append)
    return index, warnings


def test_the_page_parses_and_references_only_its_own_files(report):
    index, warnings = report
    assert warnings == []
    text = index.read_text()
    page = Page()
    page.feed(text)
    page.close()
    assert not re.search(r"https?://|//cdn|<link", text)  # no network, no CDN
    assert page.scripts == [{}]  # one script, inline
    images = [r for r in page.refs if not r.startswith("#")]
    assert images and all((index.parent / r).is_file() for r in images), images
    anchors = [r[1:] for r in page.refs if r.startswith("#")]
    assert all(f'id="{a}"' in text for a in anchors)
    names = {Path(r).name for r in images}
    assert {"losses.png", "metrics.png", "final_grid.png", "interpolation.png",
            "worst.png"} <= names
    for run in ("gan", "vae"):
        assert f'id="run-{run}"' in text
        assert (index.parent / "runs" / run / "interpolation.png").is_file()  # GAN and VAE


def test_every_run_and_metric_is_in_the_sortable_table_and_report_md(report, runs):
    from ganzoo.experiments.runs import RunInfo

    index, _ = report
    page = Page()
    page.feed(index.read_text())
    assert {"id": "comparison", "class": "sortable"} in page.tables
    headers = [h.strip() for h in page.headers]
    md = (index.parent / "report.md").read_text()
    keys = set()
    for r in runs:
        keys |= set(RunInfo.read(r).metrics)
    assert {"fd@test_random_cnn", "isc_mean@test_random_cnn", "fd@test_random_cnn/sample",
            "fd@test_random_cnn/reconstruction"} <= keys  # the GAN's and the VAE's outputs
    for key in keys:
        assert any(h.startswith(key) for h in headers), (key, headers)
        assert key in md
    # The generator plan's 5A columns: LPIPS diversity was not evaluated, so it is empty.
    assert any(h.startswith("LPIPS diversity") for h in headers)
    assert {"params", "train time", "img/s"} <= set(headers)
    for name in ("gan", "vae"):
        assert f"| {name} |" in md
    assert "Protocols:" in md and "test_random_cnn" in md
    text = index.read_text()
    assert 'title="test_random_cnn' in text  # the protocol as a tooltip


def test_without_matplotlib_the_curves_are_one_line(runs, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib -> ImportError
    warnings: list[str] = []
    index = write_report([str(runs[0])], tmp_path / "r", worst=0, warn=warnings.append)
    assert warnings == ["curves left out: matplotlib is not installed "
                        "(pip install 'ganzoo[report]')"]
    assert "ganzoo[report]" in index.read_text()
    assert not list((tmp_path / "r").rglob("losses.png"))


def test_paths_that_are_not_runs(tmp_path, capsys):
    from ganzoo.cli import main

    with pytest.raises(ReportError, match="does not exist"):
        write_report([str(tmp_path / "nope")], tmp_path / "r")
    (tmp_path / "empty").mkdir()
    assert main(["report", str(tmp_path / "empty"), "-o", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "neither a run folder nor a queue's output_root" in err


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_the_page_renders_in_headless_chromium(report, tmp_path):
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        pytest.skip("chromium is not installed (Debian: apt-get install chromium)")
    from PIL import Image

    index, _ = report
    shot = tmp_path / "report.png"
    proc = subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu",
                           "--hide-scrollbars", f"--screenshot={shot}", "--window-size=1280,2000",
                           index.resolve().as_uri()], capture_output=True, text=True, timeout=150)
    assert shot.is_file(), proc.stderr[-2000:]
    image = Image.open(shot).convert("L")
    assert image.size == (1280, 2000)
    # Rendered content, not a blank page: dark text on the white page and mid-grey images.
    hist = image.histogram()
    assert sum(hist[:64]) > 2000 and sum(hist[64:192]) > 2000, hist


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_the_table_sorts_in_headless_chromium(report):
    """The inline script sorts: ``#sort=6-desc`` clicks the params header twice on load."""
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        pytest.skip("chromium is not installed (Debian: apt-get install chromium)")
    index, _ = report
    order = {}
    for frag in ("sort=6", "sort=6-desc"):
        proc = subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu",
                               "--dump-dom", index.resolve().as_uri() + "#" + frag],
                              capture_output=True, text=True, timeout=150)
        body = proc.stdout.split('id="comparison"', 1)[1].split("</table>", 1)[0]
        order[frag] = re.findall(r'<a href="#run-(\w+)">', body)
    # test_dcgan has fewer parameters than test_vae.
    assert order == {"sort=6": ["gan", "vae"], "sort=6-desc": ["vae", "gan"]}


# -- seeds: means, spreads and the baseline comparison -------------------------------------------
@pytest.fixture(scope="module")
def seeded(tmp_path_factory):
    """A queue's output_root laid out as ``seeds: [0, 1]`` leaves it: experiments A (the
    baseline, the first) and B, two tiny trainings each, scored into eval.json."""
    from ganzoo.training.config import resolve_run_config
    from ganzoo.training.trainer import Trainer

    root = tmp_path_factory.mktemp("seeded")
    values: dict[str, list[float]] = {}
    for name, lr in (("A", 2e-4), ("B", 5e-3)):
        for seed in (0, 1):
            run_dir = root / name / f"seed{seed}"
            run = resolve_run_config({"model": "test_dcgan", "dataset": "shapes", "seed": seed,
                                      "output_dir": str(run_dir), "max_steps": 2,
                                      "batch_size": 4, "sample_every": 2, "num_samples": 4,
                                      "model_args": {"lr": lr}, "progress": False})
            Trainer(run).train()
            res = ganzoo.evaluate(str(run_dir / "final"), "shapes", metrics=["fid"], n=8,
                                  batch_size=8, feature_extractor=EX, step=2, seed=seed,
                                  cache_dir=root / "cache", out=run_dir / "eval.json")
            values.setdefault(name, []).append(res["metrics"][f"fd@{EX}"])
    out = tmp_path_factory.mktemp("seeded_report")
    index = write_report([str(root)], out, worst=0)
    return index, values


def _numbers(text: str) -> list[float]:
    return [float(x) for x in re.findall(r"[-+]?\d+(?:\.\d+)?(?:e[-+]?\d+)?", text)]


def test_seeds_are_one_row_with_mean_spread_and_values(seeded):
    from ganzoo.experiments.stats import compare, summarize

    index, values = seeded
    md = (index.parent / "report.md").read_text()
    key = f"fd@{EX}"
    for name in ("A", "B"):
        s = summarize(values[name])
        line = next(ln for ln in md.splitlines() if ln.startswith(f"| {name} |"))
        cell = next(c for c in line.split("|") if "±" in c)
        mean, sd, *per_seed = _numbers(cell)
        digits = len(cell.split("±")[0].strip().partition(".")[2])
        assert mean == pytest.approx(s.mean, abs=0.6 * 10 ** -digits), cell
        assert sd == pytest.approx(s.std, abs=0.6 * 10 ** -digits), cell
        assert per_seed == pytest.approx(list(s.values), abs=0.6 * 10 ** -digits), cell
    c = compare(key, values["B"], values["A"], names=("B", "A"))
    assert f"| B | A | {key} ↓ |" in md and c.words in md
    assert "Intervals:" in md and c.interval.describe() in md
    assert "| A | B |" not in md  # the baseline is compared with nobody


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_chromium_reads_the_means_spreads_and_baseline_comparison(seeded):
    """The rendered page, as headless Chromium builds it: the comparison table's rows sorted
    by the mean FD (lower first), each with its mean ± sd and per-seed values, and the
    baseline table's difference, interval and verdict equal to stats.compare's."""
    from ganzoo.experiments.stats import compare, summarize

    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        pytest.skip("chromium is not installed (Debian: apt-get install chromium)")
    index, values = seeded
    proc = subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--dump-dom",
                           index.resolve().as_uri()], capture_output=True, text=True, timeout=150)
    dom = proc.stdout

    def rows(table_id: str) -> list[list[str]]:
        body = dom.split(f'id="{table_id}"', 1)[1].split("</table>", 1)[0]
        body = body.split("<tbody>", 1)[1]
        return [[re.sub(r"<[^>]+>", "", c).strip() for c in re.findall(r"<td[^>]*>(.*?)</td>", r)]
                for r in re.findall(r"<tr[^>]*>(.*?)</tr>", body, re.S)]

    means = {n: summarize(v).mean for n, v in values.items()}
    table = rows("comparison")
    assert [r[0] for r in table] == sorted(means, key=means.get)  # by the mean, lower first
    key = f"fd@{EX}"
    for row in table:
        s = summarize(values[row[0]])
        cell = next(c for c in row if "±" in c)
        mean, sd, *per_seed = _numbers(cell.replace("&nbsp;", " "))
        tol = 0.6 * 10 ** -len(cell.split("±")[0].strip().partition(".")[2])
        assert (mean, sd) == (pytest.approx(s.mean, abs=tol), pytest.approx(s.std, abs=tol))
        assert per_seed == pytest.approx(list(s.values), abs=tol)
    (b_row,) = rows("baseline")
    c = compare(key, values["B"], values["A"], names=("B", "A"))
    assert b_row[:3] == ["B", "A", f"{key} ↓"] and b_row[4] == c.words
    diff, low, high = _numbers(b_row[3].split("[")[0])
    tol = 0.6 * 10 ** -len(b_row[3].split(" ")[0].partition(".")[2])
    assert (diff, low, high) == (pytest.approx(c.interval.difference, abs=tol),
                                 pytest.approx(c.interval.low, abs=tol),
                                 pytest.approx(c.interval.high, abs=tol))
    assert "Welch t interval" in dom and "2 seeds against 2" in dom


def test_the_table_groups_sorts_and_compares_without_training(tmp_path):
    """RunInfo records made by hand: a higher-is-better headline sorts descending, a lone
    seed gets "no spread is known", and a named baseline absent from the table compares
    with nothing."""
    from ganzoo.experiments.runs import RunInfo
    from ganzoo.experiments.table import results_table

    def run(name, group, value, baseline="—"):
        info = RunInfo(dir=tmp_path / name, name=name, group=group)
        info.evaluation = {"metrics": {"isc_mean": value}, "protocol": {"step": 9}}
        if baseline != "—":
            info.experiment = {"experiment": group, "baseline": baseline}
        return info

    runs = [run("a/seed0", "a", 2.0), run("a/seed1", "a", 2.2), run("b", "b", 3.0),
            run("c/seed0", "c", 1.0, baseline="gone"), run("c/seed1", "c", 1.4, baseline="gone")]
    table = results_table(runs, sort=True)
    assert [row[0][0] for row in table.rows] == ["b", "a", "c"]  # IS: higher first
    a_row = next(row for row in table.rows if row[0][0] == "a")
    assert "2.10 ± 0.14 (2.00, 2.20)" in [text for text, _ in a_row]
    assert [(c.experiment, c.baseline, c.verdict) for c in table.comparisons] == [
        ("b", "a", "no_spread_known")]
    assert "no spread is known (b has one seed), so no interval" in "\n".join(table.markdown())
