-- Both exchange clocks, kept as sent: `time` stays the one the hypertable is partitioned and
-- bucketed by (the packet time where the packet has one, else the last-trade time, else the
-- receive time; see docs/analytics.md), and these say what the broker actually sent.
alter table ticks
    add column last_trade_time timestamptz,        -- the last trade's time (Dhan ticker/quote/full, Kite full)
    add column packet_time     timestamptz;        -- the exchange's time of this snapshot (Kite full, index full)
