#!/usr/bin/env bash
# Install TimescaleDB (Apache-2 edition) into the local PostgreSQL by building Debian's own
# source package against the installed server. No registry ships a binary for PostgreSQL 15 on
# bookworm, so we take trixie's source package through a private apt configuration that never
# touches the system's package lists. Idempotent: a second run only checks and exits.
#
# Environment: PG_MAJOR (default: the newest installed cluster), PG_CLUSTER (default: main),
# TIMESCALEDB_SUITE (default: trixie).
set -euo pipefail

PG_MAJOR=${PG_MAJOR:-$(ls /usr/lib/postgresql | sort -n | tail -n 1)}
PG_CLUSTER=${PG_CLUSTER:-main}
SUITE=${TIMESCALEDB_SUITE:-trixie}
PG_CONFIG=/usr/lib/postgresql/${PG_MAJOR}/bin/pg_config
CONF=/etc/postgresql/${PG_MAJOR}/${PG_CLUSTER}/conf.d/timescaledb.conf
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO=sudo

log() { echo "install-timescaledb: $*" >&2; }

installed() {
  [ -f "$($PG_CONFIG --sharedir)/extension/timescaledb.control" ] &&
    ls "$($PG_CONFIG --pkglibdir)"/timescaledb-*.so >/dev/null 2>&1
}

if ! installed; then
  log "building TimescaleDB for PostgreSQL ${PG_MAJOR} from Debian's ${SUITE} source package"
  # The mirror is whatever this machine's apt already uses; we only add a deb-src line for SUITE.
  mirror=$(cat /etc/apt/sources.list.d/*.sources /etc/apt/sources.list 2>/dev/null |
           grep -oE '^(URIs:|deb) *[a-z]+://[^ ]+/debian/?( |$)' | head -n 1 | awk '{print $2}' || true)
  [ -n "$mirror" ] || { log "no Debian mirror found in the apt sources"; exit 1; }

  private=$(mktemp -d /tmp/tsdb-apt.XXXXXX)
  trap 'rm -rf "$private"' EXIT
  mkdir -p "$private/lists/partial" "$private/parts"
  chmod -R a+rx "$private"  # apt downloads as the _apt user
  echo "deb-src [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] ${mirror} ${SUITE} main" \
    > "$private/sources.list"
  apt_private=(-o "Dir::Etc::sourcelist=$private/sources.list" -o "Dir::Etc::sourceparts=$private/parts"
               -o "Dir::State::Lists=$private/lists" -o "APT::Get::List-Cleanup=0")

  export DEBIAN_FRONTEND=noninteractive
  if ! dpkg -s "postgresql-server-dev-${PG_MAJOR}" cmake dpkg-dev >/dev/null 2>&1; then
    $SUDO apt-get update -qq
    $SUDO apt-get install -y -qq --no-install-recommends \
      "postgresql-server-dev-${PG_MAJOR}" cmake dpkg-dev build-essential libssl-dev >/dev/null
  fi
  $SUDO apt-get "${apt_private[@]}" update -qq
  (cd "$private" && apt-get "${apt_private[@]}" source -qq --download-only timescaledb >/dev/null &&
     dpkg-source -x --no-check ./timescaledb_*.dsc src >/dev/null)
  (cd "$private/src" &&
     ./bootstrap -DAPACHE_ONLY=ON -DREGRESS_CHECKS=OFF -DTAP_CHECKS=OFF -DWARNINGS_AS_ERRORS=OFF \
       -DPG_CONFIG="$PG_CONFIG" >/dev/null &&
     make -C build -j"$(nproc)" >/dev/null && $SUDO make -C build install >/dev/null)
  log "built and installed"
fi

restart=0
if [ ! -f "$CONF" ] || ! grep -q "^shared_preload_libraries *= *'timescaledb'" "$CONF"; then
  echo "shared_preload_libraries = 'timescaledb'" | $SUDO tee "$CONF" >/dev/null
  echo "timescaledb.telemetry_level = off" | $SUDO tee -a "$CONF" >/dev/null
  restart=1
fi
if [ "$restart" -eq 1 ] || ! psql -U postgres -h 127.0.0.1 -tAc "show shared_preload_libraries" 2>/dev/null | grep -q timescaledb; then
  log "restarting PostgreSQL ${PG_MAJOR}/${PG_CLUSTER} to preload timescaledb"
  $SUDO pg_ctlcluster --skip-systemctl-redirect "$PG_MAJOR" "$PG_CLUSTER" restart
fi
log "TimescaleDB ready: $(psql -U postgres -h 127.0.0.1 -tAc "select default_version from pg_available_extensions where name='timescaledb'")"
