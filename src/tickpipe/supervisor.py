"""Runs the pipeline's processes on one machine: start, restart on crash, stop in order."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field

from tickpipe_core import get_logger

log = get_logger("supervisor")

_RESTART_WINDOW_S = 60.0
_MAX_RESTARTS = 5  # within the window; more means the child cannot run, so give up


@dataclass
class Child:
    name: str
    args: list[str]
    env: dict[str, str]
    process: subprocess.Popen[bytes] | None = None
    restarts: list[float] = field(default_factory=list)

    def start(self) -> None:
        self.process = subprocess.Popen([sys.executable, "-m", "tickpipe", *self.args], env={**os.environ, **self.env})
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
        """Block until a signal or a child that keeps crashing; return the exit status."""
        previous = {s: signal.signal(s, self._on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
        status = 0
        try:
            for child in self.children:
                child.start()
                time.sleep(0.3)  # let the simulator bind before ingestion connects
            while not self._stopping:
                time.sleep(0.2)
                for child in self.children:
                    assert child.process is not None
                    code = child.process.poll()
                    if code is None or self._stopping:
                        continue
                    now = time.monotonic()
                    child.restarts = [t for t in child.restarts if now - t < _RESTART_WINDOW_S] + [now]
                    if len(child.restarts) > _MAX_RESTARTS:
                        log.error("child_gave_up", child=child.name, exit_code=code)
                        self._stopping, status = True, 1
                        break
                    log.warning("child_restarting", child=child.name, exit_code=code)
                    child.start()
        finally:
            self._stop_all()
            for s, handler in previous.items():
                signal.signal(s, handler)
        return status

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
