"""What a broker adapter is: one object that knows everything about one broker.

Ingestion, the instrument sync, the simulator and the command line ask the registry
(`tickpipe_brokers.registry`) for an adapter by name and talk to it through this interface; none of
them branches on a broker's name. Each adapter package (`dhan/`, `kite/`) holds the broker's wire
layouts and decoders (`wire.py`, `parse.py`), its feed (`feed.py`), its settings (`settings.py`),
its instrument master's formats (`master.py`) and the packet encoders a simulator of its protocol
uses (`encode.py`); its `adapter.py` puts them behind this interface. Adding a broker is one such
package and one line in the registry (docs/architecture.md).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Annotated, ClassVar, Generic, Protocol, TypeVar
from urllib.parse import urlsplit

from pydantic import AfterValidator, SecretStr, ValidationError

from tickpipe_core import ConfigError, Tick, get_logger
from tickpipe_core.settings import Settings, load

if TYPE_CHECKING:
    from tickpipe_brokers.feed import Feed, Recorder, Watchdog
    from tickpipe_brokers.master import MasterFormat
    from tickpipe_brokers.quote import Listing
    from tickpipe_brokers.ticks import InstrumentLookup, TickBuilder

log = get_logger("brokers")


def websocket_url(url: str) -> str:
    """A feed URL a connection can be made to: ws or wss, a host, a port in range (else a clear error at start,
    not a traceback or a reconnect loop that can never succeed)."""
    try:
        parts = urlsplit(url)
        port = parts.port  # raises for a port out of range
    except ValueError as e:
        raise ValueError(f"{url!r} is not a URL: {e}") from None
    if parts.scheme not in ("ws", "wss") or not parts.hostname:
        raise ValueError(f"{url!r} is not a ws:// or wss:// URL with a host")
    del port
    return url


FeedUrl = Annotated[str, AfterValidator(websocket_url)]


class BrokerSettings(Settings):
    """What every broker's settings have: credentials to connect, and where its instrument master is."""

    master_url: str

    def credentials(self) -> tuple[str, SecretStr]:
        """The account's id and token, or a ConfigError naming what is missing."""
        raise NotImplementedError


S = TypeVar("S", bound=BrokerSettings)
OrderSink = Callable[[bytes], None]


class Selected(Protocol):
    """One instrument to subscribe, with each broker's id where that broker lists it (a resolved watchlist entry)."""

    @property
    def trading_symbol(self) -> str: ...
    @property
    def dhan_segment(self) -> str | None: ...
    @property
    def dhan_security_id(self) -> int | None: ...
    @property
    def kite_instrument_token(self) -> int | None: ...


@dataclass(frozen=True)
class InstrumentIds:
    """Where this broker's ids sit in `instruments`, and how a master's staged rows match them."""

    key: tuple[str, ...]  # the instruments columns naming one listing: (segment, id) or (token,)
    stage_key: tuple[str, ...]  # the staged master columns matched to them
    own: dict[str, str]  # instruments column -> staged column, written on every sync of this broker
    listed: str  # the instruments column saying this broker lists the instrument

    @property
    def pair(self) -> bool:
        """A listing is (segment, id) at this broker, not one number."""
        return len(self.key) == 2


def _no_watchdog() -> Watchdog:
    from tickpipe_brokers.feed import Watchdog

    return Watchdog()


@dataclass(frozen=True)
class FeedParts:
    """What ingestion hands a feed: where ticks go, the silence watchdog, a recorder, the tick builder."""

    sink: Callable[[list[Tick]], None]
    watchdog: Watchdog = field(default_factory=_no_watchdog)
    recorder: Recorder | None = None
    builder: TickBuilder | None = None
    orders: OrderSink | None = None  # order updates, on a broker whose feed carries them


class BrokerAdapter(ABC, Generic[S]):
    """One broker, behind the interface the rest of tickpipe uses."""

    name: ClassVar[str]  # DATA_SOURCE, the `source` column, the capture file's source
    settings_class: type[S]
    ids: ClassVar[InstrumentIds]

    def settings(self) -> S:
        """This broker's settings from the environment (a bad one is a ConfigError now, not later)."""
        return load(self.settings_class)

    master_format: Callable[[list[str]], MasterFormat]
    """The master format a file with this header is in (a function of the adapter's `master.py`)."""

    def tick_builder(self, instruments: InstrumentLookup | None = None, unknown: str = "store") -> TickBuilder:
        """The tick builder of this broker's feed, looking instruments up by this broker's key."""
        from tickpipe_brokers.ticks import TickBuilder

        return TickBuilder(self.name, instruments, "drop" if unknown == "drop" else "store", pair_key=self.ids.pair)

    @abstractmethod
    def feed(self, settings: S, selected: Sequence[Selected] | None, parts: FeedParts) -> Feed:
        """The feed of the settings' instruments, or of `selected` (a resolved watchlist) when given."""

    @abstractmethod
    def simulator_settings(self, url: str, market: Sequence[Listing]) -> dict[str, str]:
        """The settings (field -> value) that point this broker's feed at a simulator at `url` serving
        `market`, with the simulator's dummy credentials."""

    def connect_to_simulator(self, url: str, market: Sequence[Listing]) -> S:
        """This broker's settings from the environment, pointed at a simulator."""
        try:
            return self.settings_class(**self.simulator_settings(url, market))  # type: ignore[arg-type]
        except ValidationError as e:
            raise ConfigError(f"{self.name} settings for the simulator: {e.errors()[0]['msg']}") from None

    def environment(self, fields: dict[str, str]) -> dict[str, str]:
        """Settings fields as the environment variables that set them (for a child process)."""
        prefix = str(self.settings_class.model_config.get("env_prefix", ""))
        return {f"{prefix}{name}".upper(): value for name, value in fields.items()}

    def not_listed(self, missing: Sequence[Selected]) -> None:
        """Log the watchlist entries this broker does not list (they are not subscribed)."""
        if missing:
            log.warning(
                "watchlist_not_on_broker",
                source=self.name,
                count=len(missing),
                symbols=[s.trading_symbol for s in missing[:20]],
            )
