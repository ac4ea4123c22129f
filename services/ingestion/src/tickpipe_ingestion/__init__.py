"""tickpipe ingestion: a broker adapter's feed in, normalized and enriched ticks out to RabbitMQ."""

from tickpipe_ingestion.publisher import TickPublisher
from tickpipe_ingestion.service import run_ingest

__all__ = ["TickPublisher", "run_ingest"]
