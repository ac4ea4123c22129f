-- First schema: TimescaleDB, the instrument master and the ticks hypertable.
create extension if not exists timescaledb;

-- One row per tradable contract; each broker's identifier is a column, so one instrument can be
-- reached from Dhan's (segment, security id) and from Kite's instrument token alike.
create table instruments (
    instrument_id      bigint generated always as identity primary key,
    exchange           text not null,              -- NSE, BSE, MCX
    segment            text not null,              -- E equity, D derivatives, C currency, M commodity, I index
    trading_symbol     text not null,
    name               text,
    instrument_type    text,
    expiry             date,
    strike             numeric,
    option_type        text,                       -- CE, PE or null
    lot_size           numeric,
    tick_size          numeric,
    dhan_segment       text,                       -- feed segment name, e.g. NSE_FNO
    dhan_security_id   bigint,
    kite_instrument_token bigint,
    kite_exchange_token   bigint,
    active             boolean not null default true,
    updated_at         timestamptz not null default now(),
    unique (dhan_segment, dhan_security_id),
    unique (kite_instrument_token)
);

-- Every field of a Dhan full packet, receive time, source and the derived fields.
-- Prices are float8 holding the broker's value exactly (Dhan sends f32; widening is lossless).
create table ticks (
    time            timestamptz not null,          -- exchange time (UTC); receive time where the packet has none
    tick_id         uuid not null,                 -- assigned at ingestion; makes redelivery idempotent
    source          text not null,                 -- dhan | kite
    segment         text not null,                 -- broker exchange segment, e.g. NSE_FNO
    security_id     bigint not null,               -- broker instrument id
    instrument_id   bigint,                        -- our instrument, null while unknown
    receive_time    timestamptz not null,
    time_source     text not null check (time_source in ('exchange', 'receive')),
    packet          text not null,                 -- full, quote, ticker, ...
    ltp             float8 not null,
    ltq             integer,
    atp             float8,
    volume          bigint,
    total_buy_qty   bigint,
    total_sell_qty  bigint,
    oi              bigint,
    oi_day_high     bigint,
    oi_day_low      bigint,
    open            float8,
    high            float8,
    low             float8,
    close           float8,
    prev_close      float8,
    bid_price       float8[],                      -- best first, up to 5 levels
    bid_qty         bigint[],
    bid_orders      integer[],
    ask_price       float8[],
    ask_qty         bigint[],
    ask_orders      integer[],
    change          float8,
    change_pct      float8,
    spread          float8,
    spread_bps      float8,
    mid             float8,
    micro_price     float8,
    imbalance       float8,                        -- top of book (bid_qty - ask_qty) / (bid_qty + ask_qty)
    book_imbalance  float8,                        -- same from total buy/sell quantities
    primary key (tick_id, time)
);

select create_hypertable('ticks', by_range('time', interval '1 day'));

create index ticks_instrument_time on ticks (instrument_id, time desc);
create index ticks_broker_time on ticks (source, segment, security_id, time desc);
