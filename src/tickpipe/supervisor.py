"""Runs the pipeline's processes on one machine: start, restart on crash with backoff, stop in order.

A child that exits with EXIT_TERMINAL (a rejected token, a bad setting) is not restarted: retrying
cannot help, so the supervisor stops every child and exits with that code. Any other exit restarts
that child alone, after a jittered backoff that grows while it keeps crashing and resets once it
has stayed up for a minute; its siblings keep running.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass

from tickpipe_core import EXIT_TERMINAL, Backoff, get_logger

log = get_logger("supervisor")

_STABLE_S = 60.0  # a child up this long has recovered: its backoff starts over
_BACKOFF = Backoff(base=0.5, cap=60.0)


@dataclass
class Child:
    name: str
    args: list[str]
    env: dict[str, str]
    process: subprocess.Popen[bytes] | None = None
    crashes: int = 0
    started_at: float = 0.0
    restart_at: float | None = None

    def start(self) -> None:
        self.process = subprocess.Popen([sys.executable, "-m", "tickpipe", *self.args], env={**os.environ, **self.env})
        self.started_at, self.restart_at = time.monotonic(), None
        log.info("child_started", child=self.name, pid=self.process.pid)


class Supervisor:
    """Start children in order; stop them in reverse order on SIGINT/SIGTERM."""

    def __init__(self, children: list[Child], stop_timeout: float = 30.0) -> None:
        self.children = children
        self.stop_timeout = stop_timeout
        self._stopping = False

    def _on_signal(self, signum: int, _frame: object) -> None:
        log.info("supervisor_stopping", signal=signal.Signals(signum).name)
        self._stopping = True

    def run(self) -> int:
        """Block until a signal or a child that fails terminally; return the exit status."""
        previous = {s: signal.signal(s, self._on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
        status = 0
        try:
            for child in self.children:
                child.start()
                time.sleep(0.3)  # let the simulator bind before ingestion connects
            while not self._stopping:
                time.sleep(0.2)
                for child in self.children:
                    status = self._watch(child)
                    if status:
                        self._stopping = True
                        break
        finally:
            self._stop_all()
            for s, handler in previous.items():
                signal.signal(s, handler)
        return status

    def _watch(self, child: Child) -> int:
        """Restart `child` when it has exited and its backoff has passed; non-zero: stop everything."""
        assert child.process is not None
        code = child.process.poll()
        if code is None or self._stopping:
            return 0
        now = time.monotonic()
        if code == EXIT_TERMINAL:
            log.error("child_failed_terminally", child=child.name, exit_code=code)
            return EXIT_TERMINAL
        if child.restart_at is None:
            child.crashes = 0 if now - child.started_at > _STABLE_S else child.crashes + 1
            delay = _BACKOFF.delay(child.crashes)
            child.restart_at = now + delay
            log.warning("child_restarting", child=child.name, exit_code=code, in_s=round(delay, 2))
        if now >= child.restart_at:
            child.start()
        return 0

    def _stop_all(self) -> None:
        for child in reversed(self.children):
            proc = child.process
            if proc is None or proc.poll() is not None:
                continue
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(self.stop_timeout)
            except subprocess.TimeoutExpired:
                log.error("child_killed", child=child.name)
                proc.kill()
                proc.wait()
            log.info("child_stopped", child=child.name, exit_code=proc.returncode)
