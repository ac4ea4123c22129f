"""When to try again and how long to wait: one policy for the feed, the publisher and the workers.

Retry loops wait `Backoff.delay(attempt)` between tries (exponential with full jitter, from tenacity,
so that many clients recovering from one outage do not all come back in the same instant).
`is_retryable` says whether doing the same thing again may succeed; the worker uses it to tell a
passing outage from a failure in its log. A failure that
retrying cannot fix is a `TerminalError`: the process says so in one line and exits with
`EXIT_TERMINAL`, which neither `tickpipe run`'s supervisor nor the compose deployment restarts.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from tenacity import RetryCallState, wait_random_exponential

from tickpipe_core.errors import (
    DecodeError,
    FeedError,
    PublishError,
    StorageError,
    TerminalError,
)

EXIT_FAILURE = 1
"""A failure that a restart may fix (a server that is down, a network error)."""
EXIT_USAGE = 2
"""Bad command-line usage."""
EXIT_TERMINAL = 78
"""Retrying cannot help (sysexits' EX_CONFIG): a rejected token, a bad setting. Not restarted."""


@dataclass(frozen=True)
class Backoff:
    """Exponential backoff with full jitter: uniform(0, min(cap, base * 2**attempt)) seconds."""

    base: float = 0.5
    cap: float = 30.0
    _wait: wait_random_exponential = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_wait", wait_random_exponential(multiplier=self.base, max=self.cap))

    def delay(self, attempt: int) -> float:
        """The wait before try `attempt + 1` (attempt 0 is the first retry)."""
        state = RetryCallState(None, None, (), {})  # type: ignore[arg-type]  # a wait needs no Retrying
        state.attempt_number = attempt + 1  # tenacity counts from 1: waits up to base * 2**(number - 1)
        return float(self._wait(state))


def is_retryable(exc: BaseException) -> bool:
    """Answer, in one place, whether doing the same thing again may succeed."""
    if isinstance(exc, TerminalError | DecodeError):
        return False
    if isinstance(exc, FeedError | PublishError | ConnectionError | TimeoutError | OSError):
        return True
    # Imported lazily so that this module stays free of the database driver for callers without one.
    import psycopg

    if isinstance(exc, psycopg.OperationalError):
        return True
    if isinstance(exc, StorageError):
        return isinstance(exc.__cause__, psycopg.OperationalError)
    try:
        import aiormq
    except ImportError:  # pragma: no cover - every service installs it
        return False
    return isinstance(exc, aiormq.exceptions.AMQPConnectionError)
