"""tickpipe: market-data ingestion for Indian brokers (the `tickpipe` command line)."""
