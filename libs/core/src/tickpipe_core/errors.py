"""The one error tree of tickpipe: a base class and one subclass per failure domain."""

from __future__ import annotations


class TickpipeError(Exception):
    """Base class of every error tickpipe raises on purpose."""


class TerminalError(TickpipeError):
    """Retrying cannot fix it: the process stops with one clear line and is not restarted."""


class ConfigError(TerminalError):
    """A setting is missing or malformed; the message names the variable."""


class DecodeError(TickpipeError):
    """A packet or queue message could not be decoded."""


class FeedError(TickpipeError):
    """The broker feed failed in a way a reconnect may fix."""


class FeedAuthError(FeedError, TerminalError):
    """The broker rejected our credentials; reconnecting cannot fix it."""


class PublishError(TickpipeError):
    """A batch could not be published to RabbitMQ (not confirmed)."""


class AmqpAuthError(TerminalError):
    """RabbitMQ refused the login of AMQP_URL's user; reconnecting cannot fix it."""


class StorageError(TickpipeError):
    """The database refused or lost a write."""


class MigrationError(StorageError, TerminalError):
    """A migration file is broken, changed after it was applied, or failed."""


class SyncError(TickpipeError):
    """An instrument master could not be synced."""
