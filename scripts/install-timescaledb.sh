#!/usr/bin/env bash
# Install TimescaleDB into the local PostgreSQL and make the local cluster run the Apache-2 edition.
#
# Two sources, chosen by what is beside the checkout:
# - ../shared/vendor/timescaledb-<version>.tar.gz (the release source, tsl/ included), checked against
#   its .sha256: builds both editions, Apache-2 and Community (Timescale License, tsl/LICENSE-TIMESCALE:
#   internal use such as testing). The local cluster still runs Apache; the Community tests start their
#   own scratch clusters with timescaledb.license = 'timescale'.
# - otherwise Debian's source package (trixie's, no binary exists for PostgreSQL 15 on bookworm),
#   taken through a private apt configuration that never touches the system's package lists: the
#   Apache-2 edition only.
# Idempotent and built once per machine: a second run only checks and exits.
#
# Environment: PG_MAJOR (default: the newest installed cluster), PG_CLUSTER (default: main),
# TIMESCALEDB_SUITE (default: trixie), TIMESCALEDB_VENDOR_DIR (default: ../shared/vendor).
set -euo pipefail
cd "$(dirname "$0")/.."

PG_MAJOR=${PG_MAJOR:-$(ls /usr/lib/postgresql | sort -n | tail -n 1)}
PG_CLUSTER=${PG_CLUSTER:-main}
SUITE=${TIMESCALEDB_SUITE:-trixie}
VENDOR_DIR=${TIMESCALEDB_VENDOR_DIR:-../shared/vendor}
PG_CONFIG=/usr/lib/postgresql/${PG_MAJOR}/bin/pg_config
CONF=/etc/postgresql/${PG_MAJOR}/${PG_CLUSTER}/conf.d/timescaledb.conf
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO=sudo
export DEBIAN_FRONTEND=noninteractive

log() { echo "install-timescaledb: $*" >&2; }

tarball=$(ls "$VENDOR_DIR"/timescaledb-*.tar.gz 2>/dev/null | sort -V | tail -n 1 || true)

installed() {  # the extension is there; with a tarball, its Community library too
  [ -f "$($PG_CONFIG --sharedir)/extension/timescaledb.control" ] &&
    ls "$($PG_CONFIG --pkglibdir)"/timescaledb-[0-9]*.so >/dev/null 2>&1 &&
    { [ -z "$tarball" ] || ls "$($PG_CONFIG --pkglibdir)"/timescaledb-tsl-*.so >/dev/null 2>&1; }
}

build_deps() {
  if ! dpkg -s "postgresql-server-dev-${PG_MAJOR}" cmake build-essential libssl-dev >/dev/null 2>&1; then
    $SUDO apt-get update -qq
    $SUDO apt-get install -y -qq --no-install-recommends \
      "postgresql-server-dev-${PG_MAJOR}" cmake dpkg-dev build-essential libssl-dev >/dev/null
  fi
}

build_and_install() {  # $1: a source tree; the rest: extra bootstrap options. Output goes to a log,
  local src=$1            # shown when a step fails (a source archive has no .git for cmake to describe).
  shift
  if ! (cd "$src" &&
        ./bootstrap "$@" -DREGRESS_CHECKS=OFF -DTAP_CHECKS=OFF -DWARNINGS_AS_ERRORS=OFF -DLINTER=OFF \
          -DCMAKE_BUILD_TYPE=Release -DPG_CONFIG="$PG_CONFIG" &&
        make -C build -j"$(nproc)" && $SUDO make -C build install) >"$scratch/build.log" 2>&1; then
    tail -n 40 "$scratch/build.log" >&2
    log "the build failed (the lines above are the end of its log)"
    exit 1
  fi
}

install_from_tarball() {
  local sums="$tarball.sha256" expected actual started
  [ -f "$sums" ] || { log "$sums is missing: refusing to build an unchecked source"; exit 1; }
  expected=$(awk '{print $1; exit}' "$sums")
  actual=$(sha256sum "$tarball" | awk '{print $1}')
  [ "$expected" = "$actual" ] || { log "$(basename "$tarball"): SHA-256 $actual, expected $expected"; exit 1; }
  log "building TimescaleDB from $(basename "$tarball") (SHA-256 checked): Apache-2 and Community editions"
  build_deps
  started=$(date +%s)
  mkdir "$scratch/src"
  tar xzf "$tarball" -C "$scratch/src" --strip-components=1
  build_and_install "$scratch/src"
  log "built and installed in $(( $(date +%s) - started )) s: timescaledb (Apache-2, LICENSE-APACHE) and" \
      "timescaledb-tsl (Community, Timescale License, tsl/LICENSE-TIMESCALE; internal use such as testing)"
}

install_from_debian() {
  log "building TimescaleDB (Apache-2 edition) for PostgreSQL ${PG_MAJOR} from Debian's ${SUITE} source package"
  # The mirror is whatever this machine's apt already uses; we only add a deb-src line for SUITE.
  local mirror private=$scratch
  mirror=$(cat /etc/apt/sources.list.d/*.sources /etc/apt/sources.list 2>/dev/null |
           grep -oE '^(URIs:|deb) *[a-z]+://[^ ]+/debian/?( |$)' | head -n 1 | awk '{print $2}' || true)
  [ -n "$mirror" ] || { log "no Debian mirror found in the apt sources"; exit 1; }
  mkdir -p "$private/lists/partial" "$private/parts"
  chmod -R a+rx "$private"  # apt downloads as the _apt user
  echo "deb-src [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] ${mirror} ${SUITE} main" \
    > "$private/sources.list"
  local apt_private=(-o "Dir::Etc::sourcelist=$private/sources.list" -o "Dir::Etc::sourceparts=$private/parts"
                     -o "Dir::State::Lists=$private/lists" -o "APT::Get::List-Cleanup=0")
  build_deps
  $SUDO apt-get "${apt_private[@]}" update -qq
  (cd "$private" && apt-get "${apt_private[@]}" source -qq --download-only timescaledb >/dev/null &&
     dpkg-source -x --no-check ./timescaledb_*.dsc src >/dev/null)
  build_and_install "$private/src" -DAPACHE_ONLY=ON
  log "built and installed (Apache-2 edition only)"
}

if ! installed; then
  scratch=$(mktemp -d /tmp/tsdb-build.XXXXXX)
  trap 'rm -rf "$scratch"' EXIT
  if [ -n "$tarball" ]; then install_from_tarball; else install_from_debian; fi
fi

# The local cluster runs the Apache-2 edition even where the Community library is installed, so that
# the Apache fallbacks stay tested as they are (timescaledb.license defaults to 'timescale' there).
want_conf=$(printf "%s\n" "shared_preload_libraries = 'timescaledb'" "timescaledb.telemetry_level = off" \
                          "timescaledb.license = 'apache'")
if [ "$(cat "$CONF" 2>/dev/null)" != "$want_conf" ]; then
  echo "$want_conf" | $SUDO tee "$CONF" >/dev/null
fi
running() { psql -U postgres -h 127.0.0.1 -tAc "show $1" 2>/dev/null; }
if ! running shared_preload_libraries | grep -q timescaledb || [ "$(running timescaledb.license)" != apache ]; then
  log "restarting PostgreSQL ${PG_MAJOR}/${PG_CLUSTER} to preload timescaledb (Apache-2 edition)"
  $SUDO pg_ctlcluster --skip-systemctl-redirect "$PG_MAJOR" "$PG_CLUSTER" restart
fi
community=no
ls "$($PG_CONFIG --pkglibdir)"/timescaledb-tsl-*.so >/dev/null 2>&1 && community=yes
log "TimescaleDB ready: $(psql -U postgres -h 127.0.0.1 -tAc "select default_version from pg_available_extensions where name='timescaledb'")," \
    "local cluster license $(running timescaledb.license), Community edition available to scratch clusters: $community"
