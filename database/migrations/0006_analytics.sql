-- The `analytics` schema: candles, volume profile, tick bars, spread statistics, option chain and
-- breadth, with stable names on both TimescaleDB editions (docs/analytics.md documents every one).
--
-- Candles are stored in two layers. `_candles_<level>_raw` holds one row per instrument and bucket
-- with what can be aggregated bucket by bucket (OHLC, ticks, the day's highest cumulative volume,
-- the cumulative turnover and volume at the bucket's last tick, OI at open and close). The public
-- `candles_<level>` views turn that into volume and VWAP with a window over the trading day.
-- Here (every edition) `_raw` is a table refreshed incrementally by `tickpipe maintain` up to a
-- watermark, joined with the not-yet-materialized tail computed live; 0007 replaces it with
-- continuous aggregates on the Community edition, under the same names.
create schema if not exists analytics;

-- India's trading day of an instant (IST has no daylight saving).
create function analytics.trading_day(t timestamptz) returns date
    language sql immutable parallel safe
    return (t at time zone 'Asia/Kolkata')::date;

-- Tick order within a bucket: by time, ties (a second-resolution exchange clock) by receive time.
create function analytics.tick_order(t timestamptz, received timestamptz) returns numeric
    language sql immutable parallel safe
    return extract(epoch from t) * 1e16 + extract(epoch from received) * 1e6;

create table analytics._watermarks (
    level             text primary key,
    materialized_until timestamptz not null default '-infinity',
    refreshed_at      timestamptz
);

create function analytics.materialized_until(p_level text) returns timestamptz
    language sql stable parallel safe
    return coalesce((select materialized_until from analytics._watermarks where level = p_level), '-infinity');

-- Per-bucket aggregates straight from ticks (levels 1s and 1m, and `analytics.candles`).
create function analytics._candle_rows(
    width interval, t_from timestamptz, t_to timestamptz, p_instrument_id bigint default null
)
returns table (
    bucket timestamptz, instrument_id bigint, open float8, high float8, low float8, close float8,
    ticks bigint, volume_max bigint, turnover_last float8, volume_last bigint, oi_open bigint, oi_close bigint
)
language sql stable parallel safe
begin atomic
    select time_bucket(width, t.time, 'Asia/Kolkata'), t.instrument_id,
           first(t.ltp, analytics.tick_order(t.time, t.receive_time)), max(t.ltp), min(t.ltp),
           last(t.ltp, analytics.tick_order(t.time, t.receive_time)),
           count(*), max(t.volume),
           last(t.atp * t.volume, analytics.tick_order(t.time, t.receive_time))
               filter (where t.atp is not null and t.volume is not null),
           last(t.volume, analytics.tick_order(t.time, t.receive_time))
               filter (where t.atp is not null and t.volume is not null),
           first(t.oi, analytics.tick_order(t.time, t.receive_time)) filter (where t.oi is not null),
           last(t.oi, analytics.tick_order(t.time, t.receive_time)) filter (where t.oi is not null)
    from public.ticks t
    where t.instrument_id is not null and t.time >= t_from and t.time < t_to
      and (p_instrument_id is null or t.instrument_id = p_instrument_id)
    group by 1, 2;
end;

-- One candle level: its store, its `_raw` (store below the watermark + live tail) and its public
-- view. Volume and VWAP come from consecutive buckets of one trading day: volume is the rise of the
-- day's highest cumulative volume over the buckets before (the first bucket of a day counts from the
-- open, so a new day restarts the counter); VWAP is the rise of the cumulative turnover (ATP x
-- volume, as the exchange reports them) over the rise of the cumulative volume.
create function analytics._create_level(p_name text, p_width interval, p_rows text) returns void
language plpgsql
as $$
begin
    execute format($f$
        create table analytics._candles_%1$s_store (
            bucket timestamptz not null, instrument_id bigint not null,
            open float8, high float8, low float8, close float8, ticks bigint,
            volume_max bigint, turnover_last float8, volume_last bigint, oi_open bigint, oi_close bigint,
            primary key (instrument_id, bucket))$f$, p_name);
    execute format('create index on analytics._candles_%1$s_store (bucket)', p_name);
    insert into analytics._watermarks (level) values (p_name);
    execute format($f$
        create view analytics._candles_%1$s_raw as
        select * from analytics._candles_%1$s_store where bucket < analytics.materialized_until(%1$L)
        union all
        select * from analytics.%2$s(%3$L, analytics.materialized_until(%1$L), 'infinity')$f$,
        p_name, p_rows, p_width);
    execute format($f$
        create view analytics.candles_%1$s as
        select r.bucket as time, r.instrument_id, analytics.trading_day(r.bucket) as trading_day,
               r.open, r.high, r.low, r.close,
               case when r.volume_max is not null then
                   greatest(0, r.volume_max - coalesce(max(r.volume_max) over before, 0)) end as volume,
               (r.turnover_last - coalesce(max(r.turnover_last) over before, 0))
                   / nullif(r.volume_last - coalesce(max(r.volume_last) over before, 0), 0) as vwap,
               r.ticks, r.oi_open, r.oi_close
        from analytics._candles_%1$s_raw r
        window before as (partition by r.instrument_id, analytics.trading_day(r.bucket) order by r.bucket
                          rows between unbounded preceding and 1 preceding)$f$, p_name);
end $$;

select analytics._create_level('1s', '1 second', '_candle_rows');
select analytics._create_level('1m', '1 minute', '_candle_rows');

-- Per-bucket aggregates of a wider level from the 1m level (5m, 15m, 1h, 1d): the same numbers as
-- from ticks, since every 1m bucket lies inside exactly one wider bucket.
create function analytics._candle_rows_from_1m(width interval, t_from timestamptz, t_to timestamptz)
returns table (
    bucket timestamptz, instrument_id bigint, open float8, high float8, low float8, close float8,
    ticks bigint, volume_max bigint, turnover_last float8, volume_last bigint, oi_open bigint, oi_close bigint
)
language sql stable parallel safe
begin atomic
    select time_bucket(width, m.bucket, 'Asia/Kolkata'), m.instrument_id,
           first(m.open, m.bucket), max(m.high), min(m.low), last(m.close, m.bucket),
           sum(m.ticks)::bigint, max(m.volume_max),
           last(m.turnover_last, m.bucket) filter (where m.turnover_last is not null),
           last(m.volume_last, m.bucket) filter (where m.turnover_last is not null),
           first(m.oi_open, m.bucket) filter (where m.oi_open is not null),
           last(m.oi_close, m.bucket) filter (where m.oi_close is not null)
    from analytics._candles_1m_raw m
    where m.bucket >= t_from and m.bucket < t_to
    group by 1, 2;
end;

select analytics._create_level('5m', '5 minutes', '_candle_rows_from_1m');
select analytics._create_level('15m', '15 minutes', '_candle_rows_from_1m');
select analytics._create_level('1h', '1 hour', '_candle_rows_from_1m');
select analytics._create_level('1d', '1 day', '_candle_rows_from_1m');
drop function analytics._create_level(text, interval, text);

-- Candles of any width for one instrument, straight from ticks (widths that divide a day align to
-- IST midnight). The same numbers as the candles_<level> views.
create function analytics.candles(p_instrument_id bigint, p_width interval, p_from timestamptz, p_to timestamptz)
returns table (
    "time" timestamptz, instrument_id bigint, trading_day date, open float8, high float8, low float8,
    close float8, volume bigint, vwap float8, ticks bigint, oi_open bigint, oi_close bigint
)
language sql stable
begin atomic
    select c.* from (
        select r.bucket, r.instrument_id, analytics.trading_day(r.bucket), r.open, r.high, r.low, r.close,
               case when r.volume_max is not null then
                   greatest(0, r.volume_max - coalesce(max(r.volume_max) over before, 0)) end,
               (r.turnover_last - coalesce(max(r.turnover_last) over before, 0))
                   / nullif(r.volume_last - coalesce(max(r.volume_last) over before, 0), 0),
               r.ticks, r.oi_open, r.oi_close
        -- from the start of p_from's trading day, so the first bucket's volume counts from the open
        from analytics._candle_rows(p_width, analytics.trading_day(p_from)::timestamp at time zone 'Asia/Kolkata',
                                    p_to, p_instrument_id) r
        window before as (partition by r.instrument_id, analytics.trading_day(r.bucket) order by r.bucket
                          rows between unbounded preceding and 1 preceding)
    ) c (bucket, instrument_id, trading_day, open, high, low, close, volume, vwap, ticks, oi_open, oi_close)
    where c.bucket >= time_bucket(p_width, p_from, 'Asia/Kolkata')
    order by c.bucket;
end;

-- Incremental refresh of one level (the Apache edition's equivalent of a refresh policy): recompute
-- the buckets from `late` before the watermark up to the start of the current bucket, and move the
-- watermark there. Ticks up to `late` late are folded in; the current bucket is always live.
create function analytics.refresh_candles(p_level text, p_late interval default '10 minutes')
returns integer
language plpgsql
as $$
declare
    width interval := case p_level when '1s' then interval '1 second' when '1m' then interval '1 minute'
                                   when '5m' then interval '5 minutes' when '15m' then interval '15 minutes'
                                   when '1h' then interval '1 hour' when '1d' then interval '1 day' end;
    source text := case when p_level in ('1s', '1m') then '_candle_rows' else '_candle_rows_from_1m' end;
    old_mark timestamptz;
    new_mark timestamptz := time_bucket(width, now(), 'Asia/Kolkata');
    from_t timestamptz;
    n integer;
begin
    if width is null then
        raise exception 'unknown candle level %', p_level;
    end if;
    select materialized_until into old_mark from analytics._watermarks where level = p_level for update;
    if old_mark = '-infinity' then
        select time_bucket(width, min(time), 'Asia/Kolkata') into from_t from public.ticks;
        from_t := coalesce(from_t, new_mark);
    else
        from_t := time_bucket(width, least(old_mark, new_mark) - p_late, 'Asia/Kolkata');
    end if;
    execute format('delete from analytics._candles_%s_store where bucket >= $1 and bucket < $2', p_level)
        using from_t, new_mark;
    execute format('insert into analytics._candles_%s_store select * from analytics.%s($1, $2, $3)', p_level, source)
        using width, from_t, new_mark;
    get diagnostics n = row_count;
    update analytics._watermarks set materialized_until = new_mark, refreshed_at = now() where level = p_level;
    return n;
end $$;

-- Every tick of one instrument with its volume increment: the rise of the day's highest cumulative
-- volume over the ticks before it that day (the first tick of a day counts from the open).
create function analytics.tick_volumes(p_instrument_id bigint, p_from timestamptz, p_to timestamptz)
returns table ("time" timestamptz, receive_time timestamptz, ltp float8, volume bigint, volume_increment bigint,
               spread_bps float8, imbalance float8, oi bigint)
language sql stable
begin atomic
    select v.* from (
        select t.time, t.receive_time, t.ltp, t.volume,
               case when t.volume is not null then greatest(0, t.volume - coalesce(max(t.volume) over before, 0)) end,
               t.spread_bps, t.imbalance, t.oi
        from public.ticks t
        where t.instrument_id = p_instrument_id and t.time < p_to
          and t.time >= analytics.trading_day(p_from)::timestamp at time zone 'Asia/Kolkata'
        window before as (partition by analytics.trading_day(t.time)
                          order by analytics.tick_order(t.time, t.receive_time)
                          rows between unbounded preceding and 1 preceding)
    ) v ("time", receive_time, ltp, volume, volume_increment, spread_bps, imbalance, oi)
    where v.time >= p_from
    order by analytics.tick_order(v.time, v.receive_time);
end;

-- Bars of every N ticks (from p_from): OHLC of LTP, volume from the increments, first and last time.
create function analytics.tick_bars(p_instrument_id bigint, p_ticks integer, p_from timestamptz, p_to timestamptz)
returns table (bar bigint, start_time timestamptz, end_time timestamptz, open float8, high float8, low float8,
               close float8, volume bigint, ticks bigint)
language sql stable
begin atomic
    select n / p_ticks, min(time), max(time), (array_agg(ltp order by n))[1], max(ltp), min(ltp),
           (array_agg(ltp order by n desc))[1], sum(volume_increment)::bigint, count(*)
    from (select v.*, row_number() over (order by analytics.tick_order(v.time, v.receive_time)) - 1 as n
          from analytics.tick_volumes(p_instrument_id, p_from, p_to) v) numbered
    group by n / p_ticks
    order by 1;
end;

-- Volume at price for one instrument and trading day: bins of the instrument's tick size (or
-- p_bin), the point of control (the bin with the most volume; ties go to the lower price) and the
-- value area (from the POC, add the neighbouring bin with more volume until 70 % of the day's volume).
create function analytics.volume_profile(p_instrument_id bigint, p_day date, p_bin float8 default null)
returns table (price_low float8, price_high float8, volume bigint, ticks bigint, is_poc boolean,
               in_value_area boolean)
language plpgsql stable
as $$
declare
    bin float8 := coalesce(p_bin, (select nullif(tick_size, 0)::float8 from public.instruments
                                    where instrument_id = p_instrument_id), 0.05);
    lows float8[];
    vols bigint[];
    counts bigint[];
    total bigint;
    poc integer;
    lo integer;
    hi integer;
    area bigint;
begin
    select array_agg(b.low order by b.low), array_agg(b.vol order by b.low), array_agg(b.n order by b.low),
           sum(b.vol)
      into lows, vols, counts, total
      from (select (floor(v.ltp::numeric / bin::numeric) * bin::numeric)::float8 as low, sum(v.volume_increment)::bigint as vol,
                   count(*) as n
              from analytics.tick_volumes(p_instrument_id, p_day::timestamp at time zone 'Asia/Kolkata',
                                          (p_day + 1)::timestamp at time zone 'Asia/Kolkata') v
             where v.volume_increment is not null
             group by 1) b;
    if lows is null then
        return;
    end if;
    poc := 1;
    for i in 2 .. array_length(lows, 1) loop
        if vols[i] > vols[poc] then poc := i; end if;
    end loop;
    lo := poc; hi := poc; area := vols[poc];
    while area < 0.7 * total and (lo > 1 or hi < array_length(lows, 1)) loop
        if lo > 1 and (hi >= array_length(lows, 1) or vols[lo - 1] >= vols[hi + 1]) then
            lo := lo - 1; area := area + vols[lo];
        else
            hi := hi + 1; area := area + vols[hi];
        end if;
    end loop;
    for i in 1 .. array_length(lows, 1) loop
        price_low := lows[i]; price_high := lows[i] + bin; volume := vols[i]; ticks := counts[i];
        is_poc := i = poc; in_value_area := i between lo and hi;
        return next;
    end loop;
end $$;

-- Spread and imbalance over a window: plain and time-weighted means (each tick weighs until the
-- next one, the last until p_to or now), and the median spread, over ticks that carry a quote.
create function analytics.spread_stats(p_instrument_id bigint, p_from timestamptz, p_to timestamptz)
returns table (ticks bigint, quoted bigint, mean_spread_bps float8, median_spread_bps float8,
               time_weighted_spread_bps float8, mean_imbalance float8, time_weighted_imbalance float8)
language sql stable
begin atomic
    select count(*), count(w.spread_bps), avg(w.spread_bps),
           percentile_cont(0.5) within group (order by w.spread_bps),
           sum(w.spread_bps * w.secs) / nullif(sum(w.secs) filter (where w.spread_bps is not null), 0),
           avg(w.imbalance),
           sum(w.imbalance * w.secs) / nullif(sum(w.secs) filter (where w.imbalance is not null), 0)
    from (select v.spread_bps, v.imbalance,
                 extract(epoch from coalesce(lead(v.time) over (order by analytics.tick_order(v.time, v.receive_time)),
                                             least(p_to, now())) - v.time)::float8 as secs
          from analytics.tick_volumes(p_instrument_id, p_from, p_to) v) w;
end;

-- The newest quote of every instrument, whichever broker's feed brought it.
create view analytics.latest as
select distinct on (q.instrument_id) q.instrument_id, q.time, q.receive_time, q.ltp, q.volume, q.oi, q.change_pct,
       q.bid_price, q.bid_qty, q.ask_price, q.ask_qty, q.source
from public.latest_quotes q
where q.instrument_id is not null
order by q.instrument_id, q.time desc, q.receive_time desc;

-- The option chain of an underlying for one expiry: every strike's CE and PE with their newest
-- quote, OI and OI change since the previous trading day's last OI, and the at-the-money strike
-- (nearest the underlying's newest price: its index, else its nearest future).
create function analytics.option_chain(p_underlying text, p_expiry date)
returns table (strike numeric, is_atm boolean, spot float8,
               ce_instrument_id bigint, ce_symbol text, ce_ltp float8, ce_bid float8, ce_ask float8,
               ce_oi bigint, ce_oi_change bigint, ce_volume bigint,
               pe_instrument_id bigint, pe_symbol text, pe_ltp float8, pe_bid float8, pe_ask float8,
               pe_oi bigint, pe_oi_change bigint, pe_volume bigint)
language sql stable
begin atomic
    with spot as (
        select l.ltp from public.instruments i join analytics.latest l using (instrument_id)
        where i.underlying = p_underlying and (i.segment = 'I' or i.instrument_type like 'FUT%')
        order by i.segment = 'I' desc, i.expiry nulls first, l.time desc
        limit 1
    ), legs as (
        select i.strike, i.option_type, i.instrument_id, i.trading_symbol, l.ltp, l.bid_price, l.ask_price, l.oi,
               l.oi - prev.oi as oi_change, l.volume
        from public.instruments i
        left join analytics.latest l using (instrument_id)
        left join lateral (
            select t.oi from public.ticks t
            where t.instrument_id = i.instrument_id and t.oi is not null
              and t.time < analytics.trading_day(coalesce(l.time, now()))::timestamp at time zone 'Asia/Kolkata'
            order by t.time desc limit 1
        ) prev on true
        where i.underlying = p_underlying and i.expiry = p_expiry and i.option_type in ('CE', 'PE')
    ), strikes as (
        select distinct legs.strike from legs
    ), atm as (
        select s.strike from strikes s, spot order by abs(s.strike - spot.ltp::numeric), s.strike limit 1
    )
    select s.strike, s.strike = (select atm.strike from atm), (select spot.ltp from spot),
           ce.instrument_id, ce.trading_symbol, ce.ltp, ce.bid_price, ce.ask_price, ce.oi, ce.oi_change, ce.volume,
           pe.instrument_id, pe.trading_symbol, pe.ltp, pe.bid_price, pe.ask_price, pe.oi, pe.oi_change, pe.volume
    from strikes s
    left join legs ce on ce.strike = s.strike and ce.option_type = 'CE'
    left join legs pe on pe.strike = s.strike and pe.option_type = 'PE'
    order by s.strike;
end;

-- Market breadth of a list of instruments: advances, declines and unchanged against the previous
-- close (each instrument's newest quote), and those with no quote or no previous close.
create function analytics.breadth(p_instrument_ids bigint[])
returns table (advances bigint, declines bigint, unchanged bigint, unknown bigint)
language sql stable
begin atomic
    select count(*) filter (where l.change_pct > 0), count(*) filter (where l.change_pct < 0),
           count(*) filter (where l.change_pct = 0), count(*) filter (where l.change_pct is null)
    from unnest(p_instrument_ids) as ids(instrument_id)
    left join analytics.latest l using (instrument_id);
end;
