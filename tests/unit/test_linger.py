"""The publisher's linger: a partial message waits for more ticks only under load."""

from __future__ import annotations

import pytest

from tickpipe_ingestion.linger import Linger


def test_at_a_trickle_a_message_goes_at_once() -> None:
    linger = Linger(0.010)
    assert linger.wait(oldest_at=0.0, now=0.0) == 0  # nothing read yet: no rate, no load
    linger.read(4, now=0.0)
    linger.read(4, now=0.040)  # a frame of 4 ticks every 40 ms: 100 ticks/s
    assert linger.rate == pytest.approx(100)
    assert linger.wait(oldest_at=0.041, now=0.041) == 0


def test_under_load_a_message_waits_until_its_oldest_tick_is_linger_old() -> None:
    linger = Linger(0.010)
    linger.read(4, now=0.0)
    linger.read(40, now=0.004)  # 10,000 ticks/s
    assert linger.wait(oldest_at=0.005, now=0.008) == pytest.approx(0.007)
    assert linger.wait(oldest_at=0.005, now=0.020) == 0  # already that old: at once
    linger.read(2, now=0.020)  # the load passed (125 ticks/s): no more waiting
    assert linger.wait(oldest_at=0.021, now=0.021) == 0


def test_no_linger_configured_never_waits() -> None:
    linger = Linger(0.0)
    linger.read(4, now=0.0)
    linger.read(4000, now=0.001)
    assert linger.wait(oldest_at=0.001, now=0.001) == 0
