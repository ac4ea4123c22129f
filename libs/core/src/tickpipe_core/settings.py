"""Typed settings, one class per concern, read from the environment and `.env`.

Load them once at the entry point with `load(SettingsClass)` and pass them down: a missing or
malformed value becomes one `ConfigError` line naming the variable, never a traceback.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal, TypeVar
from urllib.parse import quote, urlsplit, urlunsplit

from pydantic import AliasChoices, Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from tickpipe_core.errors import ConfigError
from tickpipe_core.logging import register_secret


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", extra="ignore", frozen=True)


class DatabaseSettings(Settings):
    """Where the ticks are stored."""

    database_url: str = Field(
        "postgresql://postgres@127.0.0.1:5432/tickpipe",
        description="PostgreSQL/TimescaleDB connection URL (libpq form). The database is created by "
        "`tickpipe migrate` when missing.",
    )

    database_password_file: Path | None = Field(
        None, description="File holding the password for DATABASE_URL's user (a secret kept out of the URL)."
    )

    @field_validator("database_url")
    @classmethod
    def _postgres_url(cls, v: str) -> str:
        if urlsplit(v).scheme not in ("postgresql", "postgres"):
            raise ValueError("must be a postgresql:// URL")
        return v

    @model_validator(mode="before")
    @classmethod
    def _password_from_file(cls, data: Any) -> Any:
        return _splice_password(cls, data, "database_url", "database_password_file", "DATABASE_PASSWORD")


class AmqpSettings(Settings):
    """The RabbitMQ broker between ingestion and workers."""

    amqp_url: str = Field("amqp://guest:guest@127.0.0.1:5672/", description="RabbitMQ connection URL.")
    amqp_prefix: str = Field(
        "tickpipe",
        pattern=r"^[A-Za-z0-9_.-]{1,100}$",
        description="Prefix of every exchange and queue name, so several pipelines can share a broker.",
    )

    amqp_password_file: Path | None = Field(
        None, description="File holding the password for AMQP_URL's user (a secret kept out of the URL)."
    )

    @model_validator(mode="before")
    @classmethod
    def _password_from_file(cls, data: Any) -> Any:
        return _splice_password(cls, data, "amqp_url", "amqp_password_file", "AMQP_PASSWORD")

    @field_validator("amqp_url")
    @classmethod
    def _amqp_url(cls, v: str) -> str:
        if urlsplit(v).scheme not in ("amqp", "amqps"):
            raise ValueError("must be an amqp:// or amqps:// URL")
        return v


class InstrumentSettings(Settings):
    """Where downloaded instrument masters are kept, and how ingestion uses them (each broker's master
    URL is among its own settings)."""

    model_config = SettingsConfigDict(env_prefix="INSTRUMENTS_", env_file=".env", extra="ignore", frozen=True)

    cache_dir: Path = Field(
        Path.home() / ".cache" / "tickpipe", description="Downloaded masters and their ETags, for conditional GETs."
    )
    refresh_s: float = Field(300, gt=0, description="How often ingestion reloads the broker-id -> instrument map.")
    unknown: Literal["store", "drop"] = Field(
        "store", description="A tick whose broker id is not in the map: store it with a NULL instrument, or drop it."
    )


def secret(name: str, value: SecretStr | None, path: Path | None) -> SecretStr:
    """A secret from its variable or from the file NAME_FILE points to."""
    if value is not None:
        return value
    if path is not None:
        try:
            text = path.read_text().strip()
        except OSError as e:
            raise ConfigError(f"{name}_FILE: cannot read: {e.strerror}") from None
        if text:
            return SecretStr(text)
        raise ConfigError(f"{name}_FILE: the file is empty")
    raise ConfigError(f"{name}: required (or {name}_FILE)")


def _splice_password(cls: type[BaseSettings], data: Any, url_key: str, file_key: str, name: str) -> Any:
    if not isinstance(data, dict) or not data.get(file_key):
        return data
    url = data.get(url_key) or cls.model_fields[url_key].default
    return {**data, url_key: with_password(str(url), name, Path(data[file_key]))}


def with_password(url: str, name: str, path: Path | None) -> str:
    """`url` with the password read from `path` set in its user-info (and registered for redaction)."""
    if path is None:
        return url
    password = secret(name, None, path).get_secret_value()
    register_secret(password)
    parts = urlsplit(url)
    user = parts.username or ""
    host = parts.netloc.rsplit("@", 1)[-1]
    netloc = f"{quote(user, safe='')}:{quote(password, safe='')}@{host}"
    return urlunsplit(parts._replace(netloc=netloc))


def _state_home() -> Path:
    return Path(os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state")


class IngestSettings(Settings):
    """How the ingestion service batches ticks into queue messages."""

    model_config = SettingsConfigDict(env_prefix="INGEST_", env_file=".env", extra="ignore", frozen=True)

    max_ticks_per_message: int = Field(500, ge=1, le=100_000, description="Ticks per AMQP message, at most.")
    linger_ms: float = Field(
        10,
        ge=0,
        le=10_000,
        description="Under load (200 ticks/s or more), how long a partial message may wait for more ticks, "
        "from its oldest tick (at a trickle it goes at once; 0: never wait).",
    )
    spool_dir: Path = Field(
        default_factory=lambda: _state_home() / "tickpipe" / "spool",
        description="The durable spool: every tick read stays here until RabbitMQ confirms it (one per ingestion).",
        json_schema_extra={"default_text": "$XDG_STATE_HOME/tickpipe/spool (~/.local/state/tickpipe/spool)"},
    )
    spool_max_bytes: int = Field(
        4 << 30, ge=1 << 20, description="Most bytes the spool may hold; past it new ticks are lost and counted."
    )
    spool_fsync: Literal["interval", "segment", "never"] = Field(
        "interval",
        description="When the spool is fsynced (a process crash never loses it; this is for a machine crash).",
    )
    events_spool_max_bytes: int = Field(
        256 << 20,
        ge=64 << 10,
        description="Most bytes the order-update spool may hold (INGEST_SPOOL_DIR/events); past it updates are lost"
        " and counted.",
    )
    spool_fsync_interval_ms: float = Field(1000, gt=0, le=60_000, description="INGEST_SPOOL_FSYNC=interval: how often.")
    silence_timeout_s: float = Field(
        30, ge=0, description="Reconnect a feed connection silent this long while the market is open (0: never)."
    )
    market_hours: Literal["nse", "mcx", "always"] = Field(
        "nse", description="Whose trading hours (IST, weekdays) arm the silence watchdog; always: any time."
    )
    holidays_file: Path | None = Field(
        None,
        description="Exchange holidays, one YYYY-MM-DD per line (default: the bundled NSE calendar); "
        "the watchdog and the schedule rest on them.",
    )
    schedule: Literal["nse", "mcx", "always"] = Field(
        "always",
        description="Run only in this market's sessions (from 08:55 IST to 5 minutes after the close, "
        "trading days only); always: at all times.",
    )


class WorkerSettings(Settings):
    """How the batch-insert workers drain the queue."""

    model_config = SettingsConfigDict(env_prefix="WORKER_", env_file=".env", extra="ignore", frozen=True)

    count: int = Field(1, ge=1, le=64, description="Worker processes `tickpipe work` starts.")
    batch_rows: int = Field(5000, ge=1, description="A batch commits when it holds this many ticks...")
    batch_timeout_s: float = Field(
        0.0, ge=0, description="0: commit as soon as nothing more is waiting (group commit); >0: also wait this long."
    )
    prefetch: int = Field(0, ge=0, description="Unacked messages per consumer; 0 derives it from the batch.")
    max_deliveries: int = Field(
        10, ge=2, description="A message delivered this often without being stored goes to the dead-letter queue."
    )


class AnalyticsSettings(Settings):
    """`tickpipe maintain`: candle refresh (Apache edition), retention, chunk size."""

    maintain_interval_s: float = Field(10.0, gt=0, description="How often `tickpipe maintain` runs a cycle.")
    analytics_late_s: float = Field(
        120.0, ge=0, description="Ticks up to this late are folded into materialized candles (Apache edition)."
    )
    ticks_retention_days: int = Field(0, ge=0, description="Drop tick chunks older than this (0: keep forever).")
    candles_retention_days: int = Field(0, ge=0, description="Drop candles older than this (0: keep forever).")
    ticks_chunk_hours: int = Field(
        24, ge=1, le=24 * 7, description="Hours per ticks chunk (new chunks); see docs/analytics.md for sizing."
    )


class ServeSettings(Settings):
    """`tickpipe serve`: the HTTP API, the live WebSocket stream and the page."""

    model_config = SettingsConfigDict(env_prefix="SERVE_", env_file=".env", extra="ignore", frozen=True)

    host: str = Field("127.0.0.1", description="Address to listen on (loopback unless you mean otherwise).")
    port: int = Field(8000, ge=1, le=65535, description="Port of the API, the stream and the page.")
    token: SecretStr | None = Field(
        None,
        description="When set, every endpoint wants `Authorization: Bearer TOKEN` (or `?token=`); empty: no token.",
    )
    auth: Literal["auto", "token", "none"] = Field(
        "auto",
        description="token: refuse to start without SERVE_TOKEN; none: no auth, said so at start; auto: token if"
        " one is set.",
    )
    cors_origins: str = Field("", description="Comma-separated origins allowed by CORS; empty: CORS off.")
    client_queue: int = Field(
        2000, ge=10, description="Messages a stream client may have waiting; more and it is disconnected (slow)."
    )
    client_send_timeout_s: float = Field(
        10.0, gt=0, description="A stream client that takes no data for this long is disconnected (slow, code 4001)."
    )
    max_candles: int = Field(
        10_000, ge=1, description="Most candles one /v1/candles answer holds; a wider request gets a 400 to page."
    )

    @field_validator("token", mode="before")
    @classmethod
    def _empty_is_none(cls, value: Any) -> Any:
        """`SERVE_TOKEN=` (what a compose file passes when it is unset) means no token, never an empty one."""
        text = value.get_secret_value() if isinstance(value, SecretStr) else value
        return None if isinstance(text, str) and not text.strip() else value

    @model_validator(mode="after")
    def _token_when_required(self) -> ServeSettings:
        if self.auth == "token" and self.token is None:
            raise ValueError("SERVE_AUTH=token needs SERVE_TOKEN (set SERVE_AUTH=none to serve without auth)")
        if self.auth == "none" and self.token is not None:
            raise ValueError("SERVE_AUTH=none with a SERVE_TOKEN set: choose one")
        return self

    @property
    def requires_token(self) -> bool:
        return self.token is not None

    def origins(self) -> list[str]:
        return [o.strip() for o in self.cors_origins.split(",") if o.strip()]


class MetricsSettings(Settings):
    """Where a long-running process serves /metrics, /healthz and /readyz."""

    metrics_port: int = Field(
        0, ge=0, le=65535, description="Port of /metrics, /healthz and /readyz (0: not served). Worker i: PORT+i."
    )
    metrics_host: str = Field("127.0.0.1", description="Address they listen on (loopback unless you mean otherwise).")


class LogSettings(Settings):
    """Logging."""

    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field("INFO", description="Lowest level shown.")
    log_format: Literal["auto", "json", "console"] = Field(
        "auto", description="auto: console on a terminal, JSON otherwise."
    )


S = TypeVar("S", bound=BaseSettings)


def env_names(cls: type[BaseSettings]) -> dict[str, str]:
    """Field name -> the environment variable that sets it (the first alias where a field has aliases)."""
    prefix = str(cls.model_config.get("env_prefix", ""))
    names = {}
    for name, info in cls.model_fields.items():
        alias = info.validation_alias
        if isinstance(alias, AliasChoices) and isinstance(alias.choices[0], str):
            names[name] = alias.choices[0].upper()
        elif isinstance(alias, str):
            names[name] = alias.upper()
        else:
            names[name] = (prefix + name).upper()
    return names


def load(cls: type[S]) -> S:
    """Build settings from the environment, turning validation errors into one ConfigError line."""
    try:
        return cls()
    except ValidationError as e:
        names = env_names(cls)
        problems = []
        for err in e.errors():
            message = str(err["msg"]).removeprefix("Value error, ")
            if not err["loc"]:  # a check of several settings together: its message names them
                problems.append(message)
                continue
            field = str(err["loc"][0])
            # err["input"] is deliberately left out: it may be a secret. An aliased field is named by its alias.
            problems.append(f"{names.get(field, field.upper())}: {message}")
        raise ConfigError("; ".join(problems)) from None


def redact_url(url: str) -> str:
    """The URL with its password and query string (where brokers put tokens) replaced by ***."""
    parts = urlsplit(url)
    netloc = parts.netloc
    if parts.password:
        netloc = netloc.replace(f":{parts.password}@", ":***@", 1)
    query = "***" if parts.query else ""
    return urlunsplit((parts.scheme, netloc, parts.path, query, ""))
