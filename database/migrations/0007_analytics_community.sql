-- requires: timescaledb-community
-- On the Community edition, candles are continuous aggregates with real-time aggregation and refresh
-- policies: each `_candles_<level>_raw` becomes a view over its aggregate (same columns), so every
-- public name of 0006 stays and means the same. 1s aggregates ticks, 1m the 1s aggregate, the wider
-- levels the 1m aggregate (hierarchical): the same numbers as from ticks, since each bucket lies
-- inside exactly one wider bucket. The tables 0006 made for
-- `tickpipe maintain` are dropped; maintain then leaves candles to the policies.
create materialized view analytics._candles_1s_cagg
with (timescaledb.continuous, timescaledb.materialized_only = false) as
select time_bucket('1 second', t.time, 'Asia/Kolkata') as bucket, t.instrument_id,
       first(t.ltp, analytics.tick_order(t.time, t.receive_time)) as open, max(t.ltp) as high, min(t.ltp) as low,
       last(t.ltp, analytics.tick_order(t.time, t.receive_time)) as close, count(*) as ticks,
       max(t.volume) as volume_max,
       last(t.atp * t.volume, analytics.tick_order(t.time, t.receive_time))
           filter (where t.atp is not null and t.volume is not null) as turnover_last,
       last(t.volume, analytics.tick_order(t.time, t.receive_time))
           filter (where t.atp is not null and t.volume is not null) as volume_last,
       first(t.oi, analytics.tick_order(t.time, t.receive_time)) filter (where t.oi is not null) as oi_open,
       last(t.oi, analytics.tick_order(t.time, t.receive_time)) filter (where t.oi is not null) as oi_close
from public.ticks t
where t.instrument_id is not null
group by 1, 2
with no data;

do $$
declare
    lvl record;
begin
    for lvl in select * from (values ('1m', interval '1 minute', '1s'), ('5m', interval '5 minutes', '1m'),
                                     ('15m', interval '15 minutes', '1m'), ('1h', interval '1 hour', '1m'),
                                     ('1d', interval '1 day', '1m')) as l(name, width, base)
    loop
        execute format($f$
            create materialized view analytics._candles_%1$s_cagg
            with (timescaledb.continuous, timescaledb.materialized_only = false) as
            select time_bucket(%2$L, m.bucket, 'Asia/Kolkata') as bucket, m.instrument_id,
                   first(m.open, m.bucket) as open, max(m.high) as high, min(m.low) as low,
                   last(m.close, m.bucket) as close, sum(m.ticks)::bigint as ticks, max(m.volume_max) as volume_max,
                   last(m.turnover_last, m.bucket) filter (where m.turnover_last is not null) as turnover_last,
                   last(m.volume_last, m.bucket) filter (where m.turnover_last is not null) as volume_last,
                   first(m.oi_open, m.bucket) filter (where m.oi_open is not null) as oi_open,
                   last(m.oi_close, m.bucket) filter (where m.oi_close is not null) as oi_close
            from analytics._candles_%3$s_cagg m
            group by 1, 2
            with no data$f$, lvl.name, lvl.width, lvl.base);
    end loop;
    -- Refresh windows: late ticks within start_offset are folded in; the newest bucket is real-time.
    for lvl in select * from (values ('1s', '10 minutes', '1 second', '5 seconds'),
                                     ('1m', '1 hour', '1 minute', '30 seconds'),
                                     ('5m', '3 hours', '5 minutes', '1 minute'),
                                     ('15m', '6 hours', '15 minutes', '5 minutes'),
                                     ('1h', '2 days', '1 hour', '15 minutes'),
                                     ('1d', '7 days', '1 day', '1 hour')) as l(name, start_offset, end_offset, every)
    loop
        execute format($f$
            create or replace view analytics._candles_%1$s_raw as
            select bucket, instrument_id, open, high, low, close, ticks, volume_max, turnover_last, volume_last,
                   oi_open, oi_close
            from analytics._candles_%1$s_cagg$f$, lvl.name);
        execute format('drop table analytics._candles_%1$s_store', lvl.name);
        perform add_continuous_aggregate_policy(format('analytics._candles_%s_cagg', lvl.name)::regclass,
                                                start_offset => lvl.start_offset::interval,
                                                end_offset => lvl.end_offset::interval,
                                                schedule_interval => lvl.every::interval);
    end loop;
    update analytics._watermarks set materialized_until = 'infinity';
end $$;
