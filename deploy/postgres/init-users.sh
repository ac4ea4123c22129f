#!/usr/bin/env bash
# First start of the TimescaleDB container (docker-entrypoint-initdb.d): a login user per service,
# each a member of its group role (database/migrations/0010_roles.sql defines what the roles may do;
# the roles are made here too, so the users exist before the first migration). Passwords come from
# the secret files compose mounts at /run/secrets (scripts/compose_env.py makes them).
set -euo pipefail
for pair in ingest:tickpipe_ingest writer:tickpipe_writer analyst:tickpipe_analyst; do
  name=${pair%%:*}; role=${pair##*:}
  password=$(cat "/run/secrets/db_${name}_password")
  psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
    -v role="$role" -v login="${role}_login" -v password="$password" <<'SQL'
select format('create role %I nologin', :'role') where not exists (select from pg_roles where rolname = :'role') \gexec
select format('create role %I login password %L in role %I', :'login', :'password', :'role')
  where not exists (select from pg_roles where rolname = :'login') \gexec
SQL
done
