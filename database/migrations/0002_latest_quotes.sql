-- The newest tick per broker instrument, upserted by the workers with every batch, for
-- "what is the price now" queries without scanning ticks. Newest wins by (time, receive_time),
-- so a batch that arrives late never overwrites a newer quote.
create table latest_quotes (
    source          text not null,
    segment         text not null,
    security_id     bigint not null,
    instrument_id   bigint,
    time            timestamptz not null,
    receive_time    timestamptz not null,
    tick_id         uuid not null,
    ltp             float8 not null,
    volume          bigint,
    oi              bigint,
    change_pct      float8,
    bid_price       float8,
    bid_qty         bigint,
    ask_price       float8,
    ask_qty         bigint,
    updated_at      timestamptz not null default now(),
    primary key (source, segment, security_id)
);
