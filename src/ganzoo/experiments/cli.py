"""``ganzoo queue ...`` and ``ganzoo report ...`` (dispatched from :mod:`ganzoo.cli`).

    ganzoo queue list                               # the queues that ship with ganzoo
    ganzoo queue copy genegan_multires queues/      # a copy to edit (data paths)
    ganzoo queue run queues/genegan_multires.yaml [--only EXP00 EXP03] [--dry-run] [--detach]
    ganzoo queue status queues/genegan_multires.yaml
    ganzoo report outputs/genegan_multires -o report/
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

from .._progress import EXIT_CODES, report_interrupted
from ..config import did_you_mean
from .report import ReportError, write_report

__all__ = ["queue_main", "report_main", "build_queue_parser", "build_report_parser"]


def build_queue_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="ganzoo queue", epilog=EXIT_CODES,
                                description="Run a queue of experiments: train each, "
                                "evaluate it, fill the results table; run again to resume "
                                "(docs/experiments.md).")
    sub = p.add_subparsers(dest="action", required=True)
    q = sub.add_parser("run", help="run (or resume) the experiments of a queue file")
    q.add_argument("file", help="queue file, or the name of a shipped queue (ganzoo queue list)")
    q.add_argument("--only", nargs="+", metavar="NAME", help="run these experiments only")
    q.add_argument("--dry-run", action="store_true",
                   help="check the file and print each experiment's train and eval commands")
    q.add_argument("--detach", action="store_true", help="run in its own session (setsid), "
                   "logging to <output_root>/queue.log; survives the terminal closing")
    q.add_argument("--stop-on-error", action="store_true",
                   help="stop at the first failed experiment (default: record it, go on)")
    q.add_argument("--output-root", help="instead of the file's output_root")
    q = sub.add_parser("status", help="each experiment's state, progress and result")
    q.add_argument("file")
    q.add_argument("--output-root")
    sub.add_parser("list", help="the queues that ship with ganzoo")
    q = sub.add_parser("copy", help="copy a shipped queue file, to edit its paths")
    q.add_argument("name")
    q.add_argument("dest", nargs="?", default=".", help="folder or file (default: .)")
    return p


def _list() -> int:
    import textwrap

    import yaml

    from .queue import shipped_queues, summary

    for name, path in shipped_queues().items():
        data = yaml.safe_load(path.read_text()) or {}
        n = len(data.get("experiments") or [])
        print(f"{name} ({n} experiments)")
        print(textwrap.fill(summary(str(data.get("description") or "")), width=96,
                            initial_indent="    ", subsequent_indent="    "))
    return 0


def _copy(name: str, dest: str) -> int:
    from .queue import QueueError, load_queue, shipped_queues

    shipped = shipped_queues()
    if name not in shipped:
        raise QueueError(f"no shipped queue '{name}'{did_you_mean(name, shipped)} "
                         f"(shipped: {', '.join(shipped)})")
    target = Path(dest)
    if target.is_dir() or dest.endswith("/"):
        target.mkdir(parents=True, exist_ok=True)
        target = target / f"{name}.yaml"
    if target.exists():
        raise QueueError(f"{target} exists; remove it or pass another destination")
    shutil.copyfile(shipped[name], target)
    queue = load_queue(target, check_paths=False)
    paths = sorted({f"{section}.{key}: {path}" for exp in queue.experiments
                    for section, key, path in exp.data_paths})
    if paths:  # an embedded dataset (shapes, digits) needs no path to change
        print(f"wrote {target}; change its data paths ({'; '.join(paths)}), then: "
              f"ganzoo queue run {target}")
    else:
        print(f"wrote {target} (its datasets are built in: no paths to change); run it with: "
              f"ganzoo queue run {target}")
    return 0


def queue_main(argv: list[str] | None = None) -> int:
    try:
        return _queue_main(argv)
    except KeyboardInterrupt as e:  # outside a run (the runner handles its own signals)
        return report_interrupted("ganzoo queue", e)


def _queue_main(argv: list[str] | None) -> int:
    args = build_queue_parser().parse_args(argv)
    from .queue import QueueError, load_queue
    from .runner import detach, queue_status, run_queue

    try:
        if args.action == "list":
            return _list()
        if args.action == "copy":
            return _copy(args.name, args.dest)
        dry = args.action == "run" and args.dry_run
        queue = load_queue(args.file, output_root=args.output_root,
                           check_paths=args.action == "run" and not dry)
        if args.action == "status":
            return queue_status(queue)
        if args.detach and not dry:
            again = [str(queue.path.resolve()), "--output-root", str(queue.output_root.resolve())]
            again += ["--only", *args.only] if args.only else []
            again += ["--stop-on-error"] if args.stop_on_error else []
            return detach(queue, again)
        return run_queue(queue, only=args.only, stop_on_error=args.stop_on_error, dry_run=dry)
    except QueueError as e:
        print(f"ganzoo queue: error: {e}", file=sys.stderr)
        return 2


def build_report_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="ganzoo report", epilog=EXIT_CODES,
                                description="A static HTML report (plus report.md) comparing "
                                "runs: configs, curves, sample grids, interpolations, worst "
                                "samples and a sortable table.")
    p.add_argument("paths", nargs="+", metavar="RUN_OR_QUEUE",
                   help="run folders, queue output roots or queue files")
    p.add_argument("-o", "--output", required=True, help="report folder (index.html, report.md)")
    p.add_argument("--worst", type=int, default=8, help="worst samples shown per run (0: none)")
    p.add_argument("--worst-pool", type=int, default=64,
                   help="generated images the worst are picked from")
    p.add_argument("--worst-reference", type=int, default=256,
                   help="real images they are compared with")
    p.add_argument("--device", default=None, help="for sampling (default: cuda if available)")
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                   help="progress over the runs: a bar on a terminal (the default there); "
                        "--progress also prints a line every 30 s into a log")
    return p


def report_main(argv: list[str] | None = None) -> int:
    args = build_report_parser().parse_args(argv)
    from .queue import QueueError

    try:
        out = write_report(args.paths, args.output, worst=args.worst,
                           worst_pool=args.worst_pool, worst_reference=args.worst_reference,
                           device=args.device, progress=args.progress)
    except KeyboardInterrupt as e:  # index.html is written at the end: nothing half done
        return report_interrupted("ganzoo report", e)
    except (ReportError, QueueError) as e:
        print(f"ganzoo report: error: {e}", file=sys.stderr)
        return 2
    print(f"wrote {out} and {out.parent / 'report.md'}")
    return 0
