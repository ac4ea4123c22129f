"""A liveness heartbeat for container healthchecks: a file touched while the event loop runs."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

HEALTH_FILE_ENV = "TICKPIPE_HEALTH_FILE"
INTERVAL_S = 5.0


async def heartbeat() -> None:
    """Touch $TICKPIPE_HEALTH_FILE every few seconds (no-op when unset); a stale file means stuck."""
    path = os.environ.get(HEALTH_FILE_ENV)
    if not path:
        return
    target = Path(path)
    while True:
        target.touch()  # noqa: ASYNC240 - one tiny local write every few seconds
        await asyncio.sleep(INTERVAL_S)


def is_fresh(path: str, max_age_s: float = 30.0) -> bool:
    """True when the heartbeat file was touched within max_age_s."""
    try:
        return time.time() - Path(path).stat().st_mtime <= max_age_s
    except OSError:
        return False
