"""Derived fields, computed by hand, and NULL wherever an input is missing."""

from __future__ import annotations

import pytest

from tickpipe_brokers.enrich import derive


def test_full_book_derivations_match_hand_computed_values() -> None:
    d = derive(101.0, 100.0, [100.0], [300], [100.5], [100], 900, 100)
    assert d.change == pytest.approx(1.0) and d.change_pct == pytest.approx(1.0)
    assert d.spread == pytest.approx(0.5)
    assert d.mid == pytest.approx(100.25)
    assert d.spread_bps == pytest.approx(0.5 / 100.25 * 10_000)
    # micro-price leans towards the side with less quantity: (100*100 + 100.5*300) / 400
    assert d.micro_price == pytest.approx(100.375)
    assert d.imbalance == pytest.approx(0.5)
    assert d.book_imbalance == pytest.approx(0.8)


def test_missing_inputs_give_none_never_zero() -> None:
    d = derive(101.0, None, (), (), (), (), None, None)
    assert all(v is None for v in d)
    assert derive(101.0, 0.0, (), (), (), (), 0, 0).change is None  # zero previous close
    assert derive(101.0, 0.0, (), (), (), (), 0, 0).book_imbalance is None  # empty book totals


def test_an_empty_side_of_the_book_is_not_a_quote() -> None:
    d = derive(101.0, 100.0, [0.0], [0], [100.5], [100], 5, 5)
    assert (d.spread, d.mid, d.micro_price, d.imbalance) == (None, None, None, None)
    assert d.book_imbalance == 0.0
