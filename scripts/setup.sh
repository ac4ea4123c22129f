#!/usr/bin/env bash
# Make this machine ready to run and test tickpipe: what `make run` and `make test` call first.
# Idempotent: a second run only checks. On Debian with a local PostgreSQL and RabbitMQ it installs
# what a fresh machine lacks: uv, the locked Python environment, and TimescaleDB for the local
# cluster (scripts/install-timescaledb.sh); it starts PostgreSQL or RabbitMQ when they are down.
set -euo pipefail
cd "$(dirname "$0")/.."

export PATH="$HOME/.local/bin:$PATH"
export UV_PYTHON_DOWNLOADS=never  # use this machine's Python 3.11+, never a downloaded one

log() { echo "setup: $*" >&2; }

if [ -d /usr/lib/postgresql ]; then
  pg_major=$(ls /usr/lib/postgresql | sort -n | tail -n 1)
  pg_isready -h 127.0.0.1 -q || { log "starting PostgreSQL ${pg_major}"; pg_ctlcluster --skip-systemctl-redirect "$pg_major" main start; }
  bash scripts/install-timescaledb.sh
else
  log "no local PostgreSQL: point DATABASE_URL at one with TimescaleDB (or use docker compose up)"
fi
if command -v rabbitmqctl >/dev/null; then
  rabbitmqctl -q status >/dev/null 2>&1 || {
    log "starting RabbitMQ"
    rabbitmq-server -detached
    for _ in $(seq 60); do rabbitmqctl -q status >/dev/null 2>&1 && break; sleep 1; done
  }
fi

command -v uv >/dev/null || { log "installing uv"; python3 -m pip install --quiet --user uv; }
uv sync --frozen --all-packages --quiet
# The decoders, compiled with mypyc where a C compiler is (tickpipe_brokers/compiled.py); else Python.
uv run --frozen python scripts/compile_decoders.py | sed 's/^/setup: /' >&2

# The page's charting library, from the npm registry (package-lock.json pins it).
if [ ! -f services/gateway/web/node_modules/lightweight-charts/package.json ]; then
  if command -v npm >/dev/null; then
    log "installing the page's front-end packages"
    (cd services/gateway/web && npm ci --no-audit --no-fund --silent)
  else
    log "no npm: the page at / will have no chart (install Node.js and npm, then rerun)"
  fi
fi

# Debian's Chromium, for the browser tests (Playwright drives it; no browser download of its own).
if [ "${TICKPIPE_BROWSER_TESTS:-1}" = 1 ] && ! command -v chromium >/dev/null && command -v apt-get >/dev/null; then
  log "installing Debian's chromium for the browser tests"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends chromium >/dev/null
fi
# promtool (Debian's prometheus package), to validate deploy/prometheus in the tests. Only the binary
# is needed: the package's own service is not started here.
if ! command -v promtool >/dev/null && command -v apt-get >/dev/null; then
  log "installing Debian's prometheus package for promtool"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO=sudo
  [ -n "$(find /var/lib/apt/lists -name '*Packages*' -newer /etc/apt/sources.list -print -quit 2>/dev/null)" ] || $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends prometheus >/dev/null
  $SUDO service prometheus stop >/dev/null 2>&1 || true
fi
log "ready: $(uv run --frozen python --version), TimescaleDB $(psql -U postgres -h 127.0.0.1 -tAc "select default_version from pg_available_extensions where name='timescaledb'" 2>/dev/null || echo '?')"
