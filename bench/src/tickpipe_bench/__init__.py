"""tickpipe's benchmarks: the whole pipeline (`tickpipe bench`) and its stages, each against a baseline
measured in the same run. Part of a checkout's development install, never of the image.

    uv run tickpipe bench --ticks 200000                 # the whole pipeline (pipeline.py)
    uv run python -m tickpipe_bench.decode               # decoders vs the brokers' SDKs
    uv run python -m tickpipe_bench.ingest               # ingestion's CPU a tick
    uv run python -m tickpipe_bench.workers              # the worker pool vs a plain COPY
    uv run python -m tickpipe_bench.spool                # the spool's fsync policies
    uv run python -m tickpipe_bench.fanout               # the read side's live fan-out
    uv run python -m tickpipe_bench.queues               # classic vs quorum queues
    uv run python -m tickpipe_bench.sync                 # the full Dhan master vs a plain COPY
"""
