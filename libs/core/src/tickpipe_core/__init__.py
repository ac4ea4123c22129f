"""Code both tickpipe services share: the tick, the queue contract, settings, logging, database."""

from tickpipe_core.codec import CONTENT_TYPE, SCHEMA_HEADER, SCHEMA_VERSION, decode_batch, encode_batch
from tickpipe_core.errors import (
    ConfigError,
    DecodeError,
    FeedAuthError,
    FeedError,
    MigrationError,
    PublishError,
    StorageError,
    SyncError,
    TickpipeError,
    is_retryable,
)
from tickpipe_core.logging import configure_logging, get_logger, redact, register_secret
from tickpipe_core.tick import Tick, new_tick_id
from tickpipe_core.topology import Topology

__all__ = [
    "CONTENT_TYPE",
    "SCHEMA_HEADER",
    "SCHEMA_VERSION",
    "ConfigError",
    "DecodeError",
    "FeedAuthError",
    "FeedError",
    "MigrationError",
    "PublishError",
    "StorageError",
    "SyncError",
    "Tick",
    "TickpipeError",
    "Topology",
    "configure_logging",
    "decode_batch",
    "encode_batch",
    "get_logger",
    "is_retryable",
    "new_tick_id",
    "redact",
    "register_secret",
]
