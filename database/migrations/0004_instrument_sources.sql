-- One instrument, several brokers: the exchange's own token joins a Dhan row and a Kite row of the
-- same contract; each broker's listing is tracked on its own so that a contract one master drops
-- stays active while the other still lists it. Rows are never deleted (old ticks keep their meaning).
alter table instruments
    add column exchange_token bigint,              -- the exchange's id; Dhan's security id, Kite's exchange_token
    add column underlying     text,                -- NIFTY for NIFTY futures and options; the symbol itself otherwise
    add column source         text,                -- the master that created the row; it owns the common fields
    add column dhan_symbol    text,
    add column kite_symbol    text,
    add column kite_segment   text,                -- e.g. NFO-OPT
    add column dhan_listed    boolean not null default false,
    add column kite_listed    boolean not null default false;

alter table instruments drop column active;
alter table instruments add column active boolean generated always as (dhan_listed or kite_listed) stored;

-- Index rows carry no exchange token (the brokers' index ids collide with listed tokens), so they
-- never merge: a null never equals anything in a unique index.
create unique index instruments_exchange_token on instruments (exchange, segment, exchange_token);
create index instruments_underlying on instruments (underlying, instrument_type, expiry) where active;
create index instruments_symbol on instruments (trading_symbol);
