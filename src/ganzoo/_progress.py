"""Progress and interruption of the long commands (``sample``, ``eval``, ``prepare faces``,
``export``, ``report``, ``train``), one rule for all:

- ``enabled=None`` (the default): a tqdm bar when stderr is a terminal, nothing otherwise;
- ``enabled=True`` (``--progress``): the bar on a terminal, and in a log (stderr a file or a
  pipe) a plain line every ``interval`` seconds and at the end: done, rate, time left;
- ``enabled=False`` (``--no-progress``): nothing.

A terminal that reports no size (a pseudo-terminal whose size was never set: ``docker exec``,
``script``, some editors' shells) gets an 80 x 24 bar: tqdm hides a bar whose position is not
above the terminal's height, so at 0 rows it printed nothing at all.

Ctrl-C in a loop that writes outputs one by one raises :class:`Interrupted`, a
``KeyboardInterrupt`` that says how many outputs are complete; the command line prints that in
one line and exits 130 (the scheme of ``ganzoo --help``).
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from typing import Any, Callable, Iterable, Iterator

__all__ = ["progress_bar", "LogProgress", "Interrupted", "interruptible", "report_interrupted",
           "EXIT_OK",
           "EXIT_FAILED", "EXIT_USAGE", "EXIT_INTERRUPTED", "EXIT_CODES"]

# The exit codes of every ganzoo command (ganzoo --help prints EXIT_CODES).
EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130
EXIT_CODES = (
    "Exit codes (every command): 0 done; 1 failed (training stopped on an error, an "
    "experiment or an upload failed); 2 bad input (a bad option, an unknown name, a missing "
    "file or folder, a model or dataset the Hub cannot give); 130 interrupted (Ctrl-C: what "
    "is complete stays, and the same command resumes where it can). `ganzoo train` treats "
    "Ctrl-C as a stop: it saves a checkpoint and exits 0 (--resume goes on); a second Ctrl-C "
    "stops at once.")


class Interrupted(KeyboardInterrupt):
    """Ctrl-C while writing outputs: ``complete`` of ``total`` are on disk, whole (files are
    renamed into place); with ``resumable``, the same call again writes only the rest."""

    def __init__(self, complete: int, total: int, output: str, resumable: bool = True,
                 unit: str = "image"):
        super().__init__(f"{complete} of {total} {unit}s complete in {output}")
        self.complete, self.total, self.output, self.resumable, self.unit = \
            complete, total, output, resumable, unit


def report_interrupted(prog: str, e: KeyboardInterrupt) -> int:
    """Print the one line of a command stopped by Ctrl-C (no traceback); returns 130."""
    if isinstance(e, Interrupted):
        what = f"{e.unit} is" if e.complete == 1 else f"{e.unit}s are"
        again = ("run the same command again to resume" if e.resumable else
                 "the next run writes it anew")
        print(f"{prog}: interrupted: {e.complete} of {e.total} {what} complete in {e.output}; "
              f"{again}", file=sys.stderr, flush=True)
    else:
        print(f"{prog}: interrupted", file=sys.stderr, flush=True)
    return EXIT_INTERRUPTED


@contextlib.contextmanager
def interruptible(complete: Callable[[], int], total: int, output, resumable: bool = True,
                  unit: str = "image") -> Iterator[None]:
    """KeyboardInterrupt -> :class:`Interrupted` with the count ``complete()`` at that moment
    (raised from None: the frame that was interrupted is no news)."""
    try:
        yield
    except Interrupted:
        raise
    except KeyboardInterrupt:
        raise Interrupted(complete(), total, str(output), resumable, unit) from None


def progress_bar(iterable: Iterable | None = None, *, total: int | None = None, desc: str = "",
                 unit: str = "it", initial: int = 0, enabled: bool | None = None,
                 leave: bool = True, interval: float = 30.0, file=None):
    """A tqdm bar, a :class:`LogProgress` or a disabled tqdm (same interface: iterate,
    ``update``, ``set_description``, ``close``, ``with``), by the rule above."""
    from tqdm.auto import tqdm

    file = file or sys.stderr
    tty = file.isatty()
    if not (tty if enabled is None else enabled):
        return tqdm(iterable, total=total, disable=True)
    if total is None and iterable is not None and hasattr(iterable, "__len__"):
        total = len(iterable)
    if not tty:
        return LogProgress(iterable, total=total, desc=desc, unit=unit, initial=initial,
                           interval=interval, file=file)
    try:
        width, height = os.get_terminal_size(file.fileno())
    except (OSError, ValueError, AttributeError):
        width = height = 0
    size = {"dynamic_ncols": True} if width > 0 and height > 0 else \
        {"ncols": width or 80, "nrows": height or 24}
    return tqdm(iterable, total=total, desc=desc, unit=unit, initial=initial, leave=leave,
                file=file, **size)


class LogProgress:
    """Progress for a log file: ``desc: 120/200 img (60%), 35.2 img/s, 0:02 left``, printed
    at the start, then at most every ``interval`` seconds, and once at the end."""

    def __init__(self, iterable: Iterable | None = None, *, total: int | None = None,
                 desc: str = "", unit: str = "it", initial: int = 0, interval: float = 30.0,
                 file=None):
        self.iterable, self.total, self.desc, self.unit = iterable, total, desc, unit
        self.n = self.initial = initial
        self.interval = interval
        self.file = file or sys.stderr
        self.disable = False
        self.postfix = ""
        self.start = self.last = time.monotonic()
        self.closed = False
        self._print()

    def __iter__(self):
        for item in self.iterable:
            yield item
            self.update(1)

    def __enter__(self) -> "LogProgress":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def set_description(self, desc: str, refresh: bool = True) -> None:  # noqa: ARG002
        self.desc = desc

    def set_postfix(self, values: dict[str, Any], refresh: bool = True) -> None:  # noqa: ARG002
        self.postfix = ", ".join(f"{k}={v}" for k, v in values.items())

    def update(self, n: int = 1) -> None:
        self.n += n
        if time.monotonic() - self.last >= self.interval:
            self._print()

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self._print()

    def line(self) -> str:
        elapsed = time.monotonic() - self.start
        done = self.n - self.initial
        rate = done / elapsed if elapsed > 0 and done else 0.0
        text = f"{self.desc}: {self.n}" + (f"/{self.total}" if self.total else "") + \
            f" {self.unit}"
        if self.total:
            text += f" ({100 * self.n / self.total:.0f}%)"
        if rate:
            text += f", {rate:.3g} {self.unit}/s"
            if self.total and self.n < self.total:
                text += f", {_clock((self.total - self.n) / rate)} left"
        text += f", {_clock(elapsed)} elapsed"
        return text + (f", {self.postfix}" if self.postfix else "")

    def _print(self) -> None:
        self.last = time.monotonic()
        print(self.line(), file=self.file, flush=True)


def _clock(seconds: float) -> str:
    seconds = int(round(seconds))
    h, rest = divmod(seconds, 3600)
    return f"{h}:{rest // 60:02d}:{rest % 60:02d}" if h else f"{rest // 60}:{rest % 60:02d}"
