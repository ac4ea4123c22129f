"""The contract every tickpipe service shares: the tick, the queue codec and topology, errors and retries,
settings, logging, database access and migrations. Nothing here that a worker does not need."""

from tickpipe_core.codec import (
    CONTENT_TYPE,
    SCHEMA_HEADER,
    SCHEMA_VERSION,
    decode_batch,
    encode_batch,
    encode_ticks,
    envelope,
)
from tickpipe_core.errors import (
    AmqpAuthError,
    ConfigError,
    DecodeError,
    FeedAuthError,
    FeedError,
    MigrationError,
    PublishError,
    StorageError,
    SyncError,
    TerminalError,
    TickpipeError,
)
from tickpipe_core.logging import configure_logging, get_logger, redact, register_secret
from tickpipe_core.retry import EXIT_FAILURE, EXIT_TERMINAL, Backoff, is_retryable
from tickpipe_core.tick import Tick, content_ids, content_tick_id, new_tick_id
from tickpipe_core.topology import Topology

__all__ = [
    "CONTENT_TYPE",
    "EXIT_FAILURE",
    "EXIT_TERMINAL",
    "SCHEMA_HEADER",
    "SCHEMA_VERSION",
    "AmqpAuthError",
    "Backoff",
    "ConfigError",
    "DecodeError",
    "FeedAuthError",
    "FeedError",
    "MigrationError",
    "PublishError",
    "StorageError",
    "SyncError",
    "TerminalError",
    "Tick",
    "TickpipeError",
    "Topology",
    "configure_logging",
    "content_ids",
    "content_tick_id",
    "decode_batch",
    "encode_batch",
    "encode_ticks",
    "envelope",
    "get_logger",
    "is_retryable",
    "new_tick_id",
    "redact",
    "register_secret",
]
