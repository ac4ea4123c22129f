-- The key of `ticks` leads with time: (time, tick_id) instead of (tick_id, time). The same rows are
-- unique either way (the content-derived tick id, at its time), so redelivered and resent ticks are
-- still stored once. But a key led by a random hash puts every insert at a random place in an index
-- that outgrows memory as the table grows; led by time, inserts append to the index's recent end.
-- A hypertable with compression on (Community edition, 0003) cannot change its constraints: there,
-- compression is lifted for the change (compressed chunks decompressed first) and set again as 0003
-- sets it. On a large table this rebuilds the key over every row: run it in a quiet hour.
do $$
declare
    compressed boolean := coalesce(
        (select compression_enabled from timescaledb_information.hypertables where hypertable_name = 'ticks'), false
    );
    key_columns text[] := (
        select array_agg(a.attname::text order by k.ord)
        from pg_constraint c
        cross join lateral unnest(c.conkey) with ordinality as k(attnum, ord)
        join pg_attribute a on a.attrelid = c.conrelid and a.attnum = k.attnum
        where c.conrelid = 'ticks'::regclass and c.contype = 'p'
    );
begin
    if key_columns = array['time', 'tick_id'] then
        return;
    end if;
    if compressed then
        perform remove_compression_policy('ticks', if_exists => true);
        perform decompress_chunk(c, if_compressed => true) from show_chunks('ticks') c;
        alter table ticks set (timescaledb.compress = false);
    end if;
    execute format('alter table ticks drop constraint %I',
                   (select conname from pg_constraint where conrelid = 'ticks'::regclass and contype = 'p'));
    alter table ticks add primary key (time, tick_id);
    if compressed then
        alter table ticks set (
            timescaledb.compress,
            timescaledb.compress_segmentby = 'source, segment, security_id',
            timescaledb.compress_orderby = 'time desc'
        );
        perform add_compression_policy('ticks', interval '7 days');
    end if;
end
$$;
