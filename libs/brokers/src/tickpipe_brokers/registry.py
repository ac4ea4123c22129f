"""The broker adapters by name: the one place that lists them, and DATA_SOURCE, which picks one."""

from __future__ import annotations

from typing import Any

from pydantic import Field, field_validator

from tickpipe_brokers.adapter import BrokerAdapter
from tickpipe_brokers.dhan.adapter import DhanAdapter
from tickpipe_brokers.kite.adapter import KiteAdapter
from tickpipe_core import ConfigError
from tickpipe_core.settings import Settings

ADAPTERS: dict[str, BrokerAdapter[Any]] = {a.name: a for a in (DhanAdapter(), KiteAdapter())}


def names() -> list[str]:
    return list(ADAPTERS)


def adapter(name: str) -> BrokerAdapter[Any]:
    """The adapter called `name`; a ConfigError naming the known ones otherwise."""
    try:
        return ADAPTERS[name]
    except KeyError:
        raise ConfigError(f"DATA_SOURCE: unknown broker {name!r}; one of {', '.join(ADAPTERS)}") from None


class SourceSettings(Settings):
    """Which broker feed the pipeline reads."""

    data_source: str = Field("dhan", description="The broker feed: the name of a broker adapter (dhan, kite).")

    @field_validator("data_source")
    @classmethod
    def _known(cls, value: str) -> str:
        if value not in ADAPTERS:
            raise ValueError(f"unknown broker {value!r}; one of {', '.join(ADAPTERS)}")
        return value
