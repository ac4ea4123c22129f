-- Feed sessions, watermarks and gaps: knowing when the feed silently stopped, and which data is missing.
--
-- feed_sessions: one row per feed connection session, written by ingestion (start, end, reason).
-- analytics.watermarks: per instrument, the newest exchange and receive times and today's ticks.
-- analytics.gaps(): silences found in the ticks themselves (by receive time), with their cause:
--   an instrument silent while others flowed; or nothing flowing at all, explained by a feed session
--   that ended in the gap (the broker or the network), else the pipeline.

create table feed_sessions (
    id            uuid primary key,
    source        text not null,
    connection    text not null,             -- e.g. dhan-0
    host          text not null,
    pid           integer not null,
    started_at    timestamptz not null,
    ended_at      timestamptz,               -- null while open (or when the process was killed)
    end_reason    text,
    frames        bigint not null default 0,
    ticks         bigint not null default 0
);
create index feed_sessions_started on feed_sessions (started_at desc);

create view analytics.watermarks as
select q.source, q.segment, q.security_id, q.instrument_id, i.trading_symbol,
       q.time as last_exchange_time, q.receive_time as last_receive_time,
       now() - q.receive_time as silent_for,
       (select count(*) from ticks t
         where t.source = q.source and t.segment = q.segment and t.security_id = q.security_id
           and t.time >= (analytics.trading_day(now())::timestamp at time zone 'Asia/Kolkata')) as ticks_today
from latest_quotes q
left join instruments i using (instrument_id);

-- Silences of at least `min_silence` between `since` and `until`, one row per instrument and gap.
-- `hours` 'nse' keeps only gaps that start on a weekday between 09:15 and 15:30 India time (the
-- equity and F&O session); 'always' keeps every gap.
create function analytics.gaps(
    since timestamptz,
    until timestamptz default now(),
    min_silence interval default '30 seconds',
    hours text default 'always'
) returns table (
    source text, segment text, security_id bigint, instrument_id bigint,
    gap_start timestamptz, gap_end timestamptz, seconds double precision, cause text
)
language sql stable
as $$
    with arrivals as (
        select t.source, t.segment, t.security_id, t.instrument_id, t.receive_time,
               lag(t.receive_time) over w as previous
        from ticks t
        where t.receive_time >= since and t.receive_time < until
          -- the hypertable is chunked by exchange time: prune by it (receive time is within seconds of it)
          and t.time >= since - interval '1 hour' and t.time < until + interval '1 hour'
        window w as (partition by t.source, t.segment, t.security_id order by t.receive_time)
    ),
    silences as (
        select a.source, a.segment, a.security_id, a.instrument_id, a.previous as gap_start, a.receive_time as gap_end
        from arrivals a
        where a.previous is not null and a.receive_time - a.previous >= min_silence
          and (hours = 'always' or (
               extract(isodow from a.previous at time zone 'Asia/Kolkata') < 6
               and (a.previous at time zone 'Asia/Kolkata')::time between '09:15' and '15:30'))
    )
    select s.source, s.segment, s.security_id, s.instrument_id, s.gap_start, s.gap_end,
           extract(epoch from s.gap_end - s.gap_start)::double precision,
           case
               -- others flowed in the middle half of the silence (at its edges, an outage's last and first
               -- ticks of other instruments come a few milliseconds apart)
               when exists (select 1 from ticks o
                            where o.receive_time > s.gap_start + (s.gap_end - s.gap_start) / 4
                              and o.receive_time < s.gap_end - (s.gap_end - s.gap_start) / 4
                              and o.time >= s.gap_start - interval '1 hour' and o.time < s.gap_end + interval '1 hour'
                              and (o.source, o.segment, o.security_id) <> (s.source, s.segment, s.security_id))
                   then 'instrument silent while others flowed'
               else coalesce(
                   (select 'feed session ended: ' || coalesce(f.end_reason, 'no reason recorded')
                    from feed_sessions f
                    where f.source = s.source and f.ended_at >= s.gap_start and f.ended_at < s.gap_end
                    order by f.ended_at limit 1),
                   'nothing flowed: the feed or the pipeline was down')
           end
    from silences s
    order by s.gap_start, s.source, s.segment, s.security_id
$$;
