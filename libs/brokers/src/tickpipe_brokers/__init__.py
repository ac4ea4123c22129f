"""Broker adapters: everything tickpipe knows about each broker, found by name in one registry."""

from tickpipe_brokers import compiled

compiled.check()  # before any compiled module is imported

from tickpipe_brokers.adapter import BrokerAdapter, FeedParts, Selected  # noqa: E402
from tickpipe_brokers.registry import SourceSettings, adapter, names  # noqa: E402

__all__ = ["BrokerAdapter", "FeedParts", "Selected", "SourceSettings", "adapter", "names"]
