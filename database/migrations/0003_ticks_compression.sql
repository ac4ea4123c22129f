-- requires: timescaledb-community
-- Columnar compression of ticks older than a week, by instrument.
-- The Apache edition lacks it; tickpipe migrate skips this file there with a notice.
alter table ticks set (
    timescaledb.compress,
    timescaledb.compress_segmentby = 'source, segment, security_id',
    timescaledb.compress_orderby = 'time desc'
);
select add_compression_policy('ticks', interval '7 days');
