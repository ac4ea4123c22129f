"""The instrument master: broker CSVs (read by each broker adapter) synced into `instruments`, and watchlists."""

from tickpipe_brokers.master import BadRow, InstrumentRow, ParsedMaster, parse_master
from tickpipe_instruments.download import Download, download_master, open_master
from tickpipe_instruments.sync import SyncReport, sync_instruments

__all__ = [
    "BadRow",
    "Download",
    "InstrumentRow",
    "ParsedMaster",
    "SyncReport",
    "download_master",
    "open_master",
    "parse_master",
    "sync_instruments",
]
