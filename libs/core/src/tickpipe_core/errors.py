"""The one error tree of tickpipe: a base class and one subclass per failure domain."""

from __future__ import annotations


class TickpipeError(Exception):
    """Base class of every error tickpipe raises on purpose."""


class ConfigError(TickpipeError):
    """A setting is missing or malformed; the message names the variable."""


class DecodeError(TickpipeError):
    """A packet or queue message could not be decoded."""


class FeedError(TickpipeError):
    """The broker feed failed in a way a reconnect may fix."""


class FeedAuthError(FeedError):
    """The broker rejected our credentials; reconnecting cannot fix it."""


class PublishError(TickpipeError):
    """A batch could not be published to RabbitMQ (not confirmed)."""


class StorageError(TickpipeError):
    """The database refused or lost a write."""


class MigrationError(StorageError):
    """A migration file is broken, changed after it was applied, or failed."""


class SyncError(TickpipeError):
    """An instrument master could not be synced."""


def is_retryable(exc: BaseException) -> bool:
    """Answer, in one place, whether doing the same thing again may succeed."""
    if isinstance(exc, FeedAuthError | ConfigError | MigrationError | DecodeError):
        return False
    if isinstance(exc, FeedError | PublishError | ConnectionError | TimeoutError | OSError):
        return True
    # psycopg is imported lazily so that this module stays dependency-free.
    import psycopg

    if isinstance(exc, psycopg.OperationalError):
        return True
    if isinstance(exc, StorageError):
        return isinstance(exc.__cause__, psycopg.OperationalError)
    return False
