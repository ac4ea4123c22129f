-- corrects: c148540e29add4b019077c32c946e70d7aa6bbf7135499fbd0a4912c2f67d714
-- A last-traded quantity is an unsigned 32-bit integer on Kite's wire: `integer` cannot hold 2^31 and
-- above, so such a tick went to the dead-letter queue instead of landing. `bigint` holds every value.
-- A hypertable with compression on (Community edition, 0003) cannot change a column's type: there,
-- compression is lifted for the change (compressed chunks decompressed first) and set again as 0003 sets it.
-- The first version of this file named decompress_chunk's flag `if_not_compressed` (compress_chunk's), so
-- it failed on every Community database; where it was applied (the Apache edition, which skips that
-- branch) it did the same as this one, so its checksum is accepted (the `corrects:` line).
do $$
declare
    compressed boolean := coalesce(
        (select compression_enabled from timescaledb_information.hypertables where hypertable_name = 'ticks'), false
    );
begin
    if (select data_type from information_schema.columns
        where table_schema = current_schema() and table_name = 'ticks' and column_name = 'ltq') = 'bigint' then
        return;
    end if;
    if compressed then
        perform remove_compression_policy('ticks', if_exists => true);
        perform decompress_chunk(c, if_compressed => true) from show_chunks('ticks') c;
        alter table ticks set (timescaledb.compress = false);
    end if;
    alter table ticks alter column ltq type bigint;
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
