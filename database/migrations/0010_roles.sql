-- Least privilege: one role per service, each able to do its job and no more. They are group roles
-- (NOLOGIN): a deployment makes its login users members (compose: scripts/compose-env.sh and
-- deploy/postgres/init-users.sh). The role that runs the migrations owns the schema.
--   tickpipe_ingest   reads instruments (the broker-id map), records feed sessions
--   tickpipe_writer   inserts ticks, upserts latest quotes (the workers)
--   tickpipe_analyst  reads ticks, quotes, instruments, sessions and the analytics schema (serve, people)
-- Roles belong to the cluster, so several databases (or concurrent migrations) may share them.
do $$
declare
    name text;
begin
    foreach name in array array['tickpipe_ingest', 'tickpipe_writer', 'tickpipe_analyst'] loop
        begin
            execute format('create role %I nologin', name);
        exception when duplicate_object or unique_violation then
            null;  -- made already, by this cluster's other database or a concurrent migration
        end;
    end loop;
end
$$;

grant usage on schema public to tickpipe_ingest, tickpipe_writer, tickpipe_analyst;
grant select on instruments to tickpipe_ingest;
grant select, insert, update on feed_sessions to tickpipe_ingest;

grant select, insert on ticks to tickpipe_writer;
grant select, insert, update on latest_quotes to tickpipe_writer;

grant usage on schema analytics to tickpipe_analyst;
grant select on all tables in schema public to tickpipe_analyst;
grant select on all tables in schema analytics to tickpipe_analyst;
-- What later migrations create is readable by the analyst too (objects made by the migrating role).
alter default privileges in schema public grant select on tables to tickpipe_analyst;
alter default privileges in schema analytics grant select on tables to tickpipe_analyst;
