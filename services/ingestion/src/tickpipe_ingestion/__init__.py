"""tickpipe ingestion: broker feeds in, normalized and enriched ticks out to RabbitMQ."""

from tickpipe_ingestion import compiled

compiled.check()  # before any compiled module is imported

from tickpipe_ingestion.publisher import TickPublisher  # noqa: E402
from tickpipe_ingestion.service import run_ingest  # noqa: E402

__all__ = ["TickPublisher", "run_ingest"]
