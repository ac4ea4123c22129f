# The two commands of README.md. Both set the machine up first (scripts/setup.sh: uv, the locked
# environment, TimescaleDB; idempotent), so they work from a fresh clone.
SHELL := /bin/bash
export PATH := $(HOME)/.local/bin:$(PATH)
export UV_PYTHON_DOWNLOADS := never

# The tests use the local services unless told otherwise; a missing one fails the run.
export TEST_DATABASE_URL ?= postgresql://postgres@127.0.0.1:5432/postgres
export TEST_AMQP_URL ?= amqp://guest:guest@127.0.0.1:5672/
export TICKPIPE_REQUIRE_SERVICES ?= 1

.PHONY: run test setup lint

run: setup  ## the whole pipeline on this machine: simulator (real instruments), ingestion, workers
	uv run --frozen tickpipe run

test: setup  ## the whole test suite against the local PostgreSQL/TimescaleDB and RabbitMQ
	uv run --frozen pytest -n auto --dist loadfile  # one process per core; a file stays on one (its scratch servers)

lint:  ## ruff and mypy --strict (also over tests/)
	uv run --frozen ruff check . && uv run --frozen ruff format --check . && uv run --frozen mypy

setup:
	@bash scripts/setup.sh
