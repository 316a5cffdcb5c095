"""Several processes of one command under one supervisor: ``serve --workers N`` and
``worker --processes N``.

One Python process runs one event loop on one core and holds one GIL: the API and the worker pool
are bound by it (benchmarks/README.md), so using every core takes processes. Each child is an
ordinary single process of the same command (``python -m jobqueue <command> ... --child INDEX``),
with its own database connections and its own writer; a ``serve`` child also inherits the
listening socket, which the supervisor bound, so the kernel spreads connections among them.

The supervisor runs no event loop and touches no database. It restarts a child that died (a
crash, the OOM killer, a SIGKILL) and gives up, stopping the others, when a child keeps dying
within ``QUICK_EXIT_SECONDS`` of its start; a child that exits 0 by itself is done (a burst
worker that drained the queue). SIGTERM or SIGINT is passed to every child, which drains as a
single process does (the pool's ``SHUTDOWN_GRACE``, uvicorn's graceful shutdown), and the
supervisor exits once they all have: 0 when every child exited 0, 1 otherwise.
"""

from __future__ import annotations

import ctypes
import logging
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from types import FrameType

logger = logging.getLogger("jobqueue.supervisor")

#: A child that dies sooner than this after its start is failing to start, not crashing at work.
QUICK_EXIT_SECONDS = 5.0
#: Quick deaths in a row of one child after which the supervisor gives up.
MAX_QUICK_EXITS = 5
#: Longest pause before restarting a child that keeps dying quickly (doubling from 0.1 s).
MAX_RESTART_DELAY = 5.0
#: Seconds between looks at the children.
POLL_SECONDS = 0.05
#: prctl(2) option: the signal a child gets when its parent dies.
_PR_SET_PDEATHSIG = 1


@dataclass
class _Child:
    index: int
    command: list[str]
    proc: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    quick_exits: int = 0
    restart_at: float = 0.0
    exit_codes: list[int] = field(default_factory=list)
    done: bool = False


def _die_with_parent() -> None:
    """In the child before exec: SIGTERM when the supervisor dies, even by SIGKILL, so no child
    outlives it holding jobs or the port (Linux only; elsewhere a child outlives a killed
    supervisor, as a process started by hand would)."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


class Supervisor:
    """Run ``commands[i]`` as child ``i``, keep them running, stop them together.

    ``restart_clean_exit``: whether a child that exits 0 without being asked to (only a signal
    sent to it alone makes a server child do that) is restarted too.
    """

    def __init__(
        self, name: str, commands: Sequence[list[str]], *, pass_fds: Sequence[int] = (), restart_clean_exit: bool
    ) -> None:
        self.name = name
        self.children = [_Child(index, list(command)) for index, command in enumerate(commands)]
        self.pass_fds = tuple(pass_fds)
        self.restart_clean_exit = restart_clean_exit
        self._stop_signal: int | None = None
        self._forwarded: int | None = None

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self._stop_signal = signum

    def _start(self, child: _Child) -> None:
        child.proc = subprocess.Popen(
            child.command,
            pass_fds=self.pass_fds,
            preexec_fn=_die_with_parent if sys.platform == "linux" else None,
        )
        child.started_at = time.monotonic()
        logger.info("%s %d started (pid %d)", self.name, child.index, child.proc.pid)

    def _forward(self, signum: int) -> None:
        for child in self.children:
            if child.proc is not None and child.proc.poll() is None:
                child.proc.send_signal(signum)

    def run(self) -> int:
        """Run until every child is done; the exit status for the supervisor's process."""
        previous = {s: signal.signal(s, self._on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
        try:
            for child in self.children:
                self._start(child)
            return self._supervise()
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)

    def _supervise(self) -> int:
        failed = False
        while True:
            if self._stop_signal is not None and self._forwarded != self._stop_signal:
                # Children drain as single processes do on SIGTERM; a terminal's Ctrl-C has
                # reached them already through the process group, a second one does no harm.
                logger.info("%ss: stopping (signal %d)", self.name, self._stop_signal)
                self._forwarded = self._stop_signal
                self._forward(signal.SIGTERM)
            stopping = failed or self._stop_signal is not None
            for child in self.children:
                if child.done:
                    continue
                if child.proc is None:
                    if stopping:
                        child.done = True  # died, and was waiting for its restart
                    elif time.monotonic() >= child.restart_at:
                        self._start(child)
                    continue
                code = child.proc.poll()
                if code is None:
                    continue
                child.exit_codes.append(code)
                pid, child.proc = child.proc.pid, None
                if stopping or (code == 0 and not self.restart_clean_exit):
                    logger.info("%s %d (pid %d) exited with status %d", self.name, child.index, pid, code)
                    child.done = True
                    continue
                lived = time.monotonic() - child.started_at
                child.quick_exits = child.quick_exits + 1 if lived < QUICK_EXIT_SECONDS else 0
                if child.quick_exits >= MAX_QUICK_EXITS:
                    logger.error(
                        "%s %d (pid %d) exited with status %d, %d times in a row within %gs of its "
                        "start: giving up, stopping the others",
                        self.name, child.index, pid, code, child.quick_exits, QUICK_EXIT_SECONDS,
                    )  # fmt: skip
                    failed = True
                    child.done = True
                    self._forward(signal.SIGTERM)
                    continue
                delay = min(0.1 * 2 ** (child.quick_exits - 1), MAX_RESTART_DELAY) if child.quick_exits else 0.0
                logger.warning(
                    "%s %d (pid %d) died (exit status %d); restarting it%s",
                    self.name, child.index, pid, code, f" in {delay:.1f}s" if delay else "",
                )  # fmt: skip
                child.restart_at = time.monotonic() + delay
            if all(child.done for child in self.children):
                break
            time.sleep(POLL_SECONDS)
        if failed:
            return 1
        # uvicorn ends by the signal it was stopped with, once its graceful shutdown is done.
        clean = {0} if self._forwarded is None else {0, -signal.SIGTERM, -signal.SIGINT}
        return 0 if all(child.exit_codes[-1] in clean for child in self.children) else 1
