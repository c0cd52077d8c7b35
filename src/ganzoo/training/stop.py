"""The graceful stop: SIGINT/SIGTERM and the wall-clock budget end a run after the current
step, with a checkpoint, on every process at the same step."""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
import time
from typing import Any, Callable

import torch

__all__ = ["GracefulStop", "signals_to_main_thread"]

# Under several processes, the iterations between two agreements on whether to stop.
AGREE_EVERY = 8


class GracefulStop:
    """Why the run should stop after this step, if it should.

    ``install()`` routes SIGINT and SIGTERM here (a second one, later than 2 s, stops at once);
    ``restore()`` puts the old handlers back. ``reason(step, t0)`` is a signal, the
    ``duration_seconds`` budget counted from ``t0``, or another process's stop. Under several
    processes (``reduce`` sums a tensor over them) the processes agree every
    :data:`AGREE_EVERY` steps: agreeing takes an all-reduce and a host read, which would stall
    the GPU queue if done at every step, so a signal or deadline waits at most that long.
    """

    INTERRUPTED = ("signal", "another")  # reasons that leave the budget unfinished

    def __init__(self, *, duration: str | None = None, duration_seconds: float | None = None,
                 device: torch.device | None = None,
                 reduce: Callable[[torch.Tensor], torch.Tensor] | None = None,
                 announce: bool = True):
        self.duration = duration
        self.duration_seconds = duration_seconds
        self.device = device
        self._reduce = reduce
        self.announce = announce
        self.signal: int | None = None
        self._signal_time = 0.0
        self._old_handlers: dict[int, Any] = {}

    # -- signals ----------------------------------------------------------------------------
    def _on_signal(self, signum, frame):  # noqa: ARG002
        now = time.monotonic()
        if self.signal is not None:
            # torchrun forwards the signal it gets to its workers, so a Ctrl-C in a terminal
            # reaches each worker twice within milliseconds: only a later one stops at once.
            if now - self._signal_time > 2.0:
                signal.signal(signum, signal.SIG_DFL)
                os.kill(os.getpid(), signum)
            return
        self.signal, self._signal_time = signum, now
        if self.announce:
            print(f"\nganzoo.train: got {signal.Signals(signum).name}; finishing the step, "
                  f"saving and exiting (send it again to stop at once)", file=sys.stderr,
                  flush=True)

    def install(self) -> None:
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                self._old_handlers[sig] = signal.signal(sig, self._on_signal)
            except ValueError:  # not the main thread
                pass

    def restore(self) -> None:
        for sig, handler in self._old_handlers.items():
            signal.signal(sig, handler)
        self._old_handlers.clear()

    # -- the check --------------------------------------------------------------------------
    def reason(self, step: int, t0: float) -> str | None:
        """Why to stop after ``step`` (None: go on); the same on every process."""
        reason = None
        if self.signal is not None:
            reason = f"signal {signal.Signals(self.signal).name}"
        elif self.duration_seconds is not None and time.time() - t0 >= self.duration_seconds:
            reason = f"duration {self.duration} reached"
        if self._reduce is not None:
            if step % AGREE_EVERY:
                return None
            flag = torch.tensor([0.0 if reason is None else 1.0], device=self.device)
            if self._reduce(flag).item() > 0 and reason is None:
                reason = "another process stopped"
        return reason

    @classmethod
    def interrupted(cls, reason: str | None) -> bool:
        """Whether ``reason`` cut the run short of its budget (no ``final/`` then)."""
        return reason is not None and reason.startswith(cls.INTERRUPTED)


@contextlib.contextmanager
def signals_to_main_thread():
    """Block SIGINT and SIGTERM while setup starts threads (gloo's I/O and worker threads under
    torchrun, Accelerate's, the tracker's); threads inherit the mask, so these signals then go
    to the main thread only, whose Python handler stops the run gracefully.

    Unblocked, the kernel may deliver a SIGTERM to any thread. CPython installs its handlers
    without SA_RESTART, so a gloo thread blocked in recv() gets EINTR, and gloo's enforce in
    that thread ends the process with SIGABRT: the rank that "aborted instead of stopping"
    under load. A signal that arrives during setup stays pending and is delivered when the
    mask is restored, as before.
    """
    if not hasattr(signal, "pthread_sigmask") or \
            threading.current_thread() is not threading.main_thread():
        yield
        return
    old = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)
