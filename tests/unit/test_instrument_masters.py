"""Parsing the brokers' real instrument masters by column name, and every kind of bad row."""

from __future__ import annotations

import io
from datetime import date
from decimal import Decimal
from pathlib import Path

import pytest

from tests.helpers import COMPACT_HEADER
from tickpipe_core import SyncError
from tickpipe_instruments import BadRow, InstrumentRow, ParsedMaster, open_master, parse_master

DATA = Path(__file__).parent.parent / "data"


def _parse(source: str, path: Path) -> ParsedMaster:
    with path.open("rb") as raw, open_master(raw) as text:
        return parse_master(source, text)


def _by_id(master: ParsedMaster, broker_id: int) -> InstrumentRow:
    return next(r for r in master.rows if r.broker_id == broker_id)


def test_dhan_detailed_31_columns_nse_equity_and_indices() -> None:
    master = _parse("dhan", DATA / "dhan" / "api-scrip-master-detailed-31col-nse-eq-idx.csv")
    assert (master.format, len(master.rows), master.bad) == ("dhan-detailed", 9469, [])
    assert _by_id(master, 100) == InstrumentRow(
        "NSE", "E", 100, "ARE&M", "Amara Raja Energy & Mobility", "ARE&M", "EQ", None, None, None,
        Decimal(1), Decimal("0.05"), "NSE_EQ", 100, None,
    )  # fmt: skip
    index = _by_id(master, 1)
    assert (index.segment, index.exchange_token, index.instrument_type, index.broker_segment, index.expiry) == (
        "I", None, "INDEX", "IDX_I", None,
    )  # fmt: skip


def test_dhan_detailed_39_columns_crlf_with_spreadsheet_dates() -> None:
    master = _parse("dhan", DATA / "dhan" / "api-scrip-master-detailed-39col-futstk.csv")
    assert (master.format, len(master.rows), master.bad) == ("dhan-detailed", 662, [])
    row = _by_id(master, 36687)
    assert (row.trading_symbol, row.underlying, row.instrument_type, row.expiry, row.lot_size, row.tick_size) == (
        "011NSETEST-Nov2036-FUT", "011NSETEST", "FUT", date(2036, 11, 27), Decimal(50), Decimal("0.05"),
    )  # fmt: skip


def test_kite_dump_indices_are_never_merge_candidates() -> None:
    master = _parse("kite", DATA / "kite" / "instruments-nse.csv")
    assert (len(master.rows), master.bad) == (7930, [])
    infy = _by_id(master, 408065)
    assert infy == InstrumentRow(
        "NSE", "E", 1594, "INFY", "INFOSYS", "INFY", "EQ", None, None, None,
        Decimal(1), Decimal("0.1"), "NSE", 408065, 1594,
    )  # fmt: skip
    # NIFTY TOP 20 EW shares exchange token 1594 with INFY: indices carry no merge key.
    assert _by_id(master, 408073).exchange_token is None
    assert sum(1 for r in master.rows if r.instrument_type == "INDEX") == 117


def test_kite_sample_dump_with_options_and_crlf() -> None:
    master = _parse("kite", DATA / "kite" / "instruments-mocks-all.csv")
    assert (len(master.rows), master.bad) == (99, [])
    options = [r for r in master.rows if r.instrument_type == "OPT"]
    assert len(options) == 25 and all(r.strike and r.expiry and r.option_type in ("CE", "PE") for r in options)
    assert {r.exchange for r in options} == {"NSE"} and {r.segment for r in options} == {"D"}


GOOD = "NSE,E,1594,EQUITY,0,INFY,1.0,Infosys,,,,10.0000,NA,ES,EQ,INFOSYS LIMITED"


def test_each_bad_row_is_reported_with_its_line_and_reason_and_the_rest_load() -> None:
    lines = [
        COMPACT_HEADER,
        GOOD,  # line 2
        "NSE,E,1595,EQUITY,0,XYZ,1.0,Xyz,,,,10.0000,NA,ES,EQ",  # 3: a field short
        "NSE,E,abc,EQUITY,0,XYZ,1.0,Xyz,,,,10.0000,NA,ES,EQ,XYZ",  # 4: id not a number
        "NSE,E,1596,EQUITY,0,,1.0,Xyz,,,,10.0000,NA,ES,EQ,XYZ",  # 5: no symbol
        "NSE,D,1597,FUTIDX,0,NIFTY-X-FUT,65,NIFTY X,31/02/2026 14:30,-0.01,XX,10,M,FUT,,",  # 6: bad date
        "NSE,D,1598,OPTIDX,0,NIFTY-X-CE,65,NIFTY X,2026-02-10 14:30:00,25000,CX,5,W,OP,,",  # 7: option type
        "NSE,Q,1599,EQUITY,0,XYZ,1.0,Xyz,,,,10.0000,NA,ES,EQ,XYZ",  # 8: unknown segment
        "NSE,E,1594,EQUITY,0,INFY,1.0,Infosys,,,,10.0000,NA,ES,EQ,INFOSYS LIMITED",  # 9: duplicate of 2
        "NSE,E,1600,EQUITY,0,XYZ,lots,Xyz,,,,10.0000,NA,ES,EQ,XYZ",  # 10: lot not a number
        "NSE,D,42500,OPTIDX,0,NIFTY-Feb2026-25000-CE,65.0,NIFTY 10 FEB 25000 CALL,2026-02-10 14:30:00,"
        "25000.00000,CE,5.0000,W,OP,,",  # 11: good
    ]
    master = parse_master("dhan", io.StringIO("\n".join(lines)))
    assert [r.broker_id for r in master.rows] == [1594, 42500]
    assert master.bad == [
        BadRow(3, "15 fields, the header has 16"),
        BadRow(4, "SEM_SMST_SECURITY_ID: 'abc' is not a number"),
        BadRow(5, "SEM_TRADING_SYMBOL: empty"),
        BadRow(6, "SEM_EXPIRY_DATE: '31/02/2026 14:30' is not a date"),
        BadRow(7, "option type 'CX' is not CE, PE or XX"),
        BadRow(8, "SEM_EXM_EXCH_ID/SEM_SEGMENT: unknown exchange and segment NSE,Q"),
        BadRow(9, "duplicate of line 2 (NSE_EQ 1594)"),
        BadRow(10, "SEM_LOT_UNITS: 'lots' is not a number"),
    ]
    option = master.rows[1]
    assert (option.instrument_type, option.option_type, option.strike, option.expiry, option.tick_size) == (
        "OPT", "CE", Decimal(25000), date(2026, 2, 10), Decimal("0.05"),
    )  # fmt: skip


def test_kite_token_that_does_not_encode_the_exchange_token_is_a_bad_row() -> None:
    text = (
        "instrument_token,exchange_token,tradingsymbol,name,last_price,expiry,strike,tick_size,lot_size,"
        "instrument_type,segment,exchange\n"
        "408065,1594,INFY,INFOSYS,0.0,,0.0,0.1,1,EQ,NSE,NSE\n"
        "408066,1595,XYZ,XYZ,0.0,,0.0,0.1,1,EQ,NSE,NSE\n"
    )
    master = parse_master("kite", io.StringIO(text))
    assert master.bad == [BadRow(3, "instrument_token 408066 does not encode exchange_token 1595")]


@pytest.mark.parametrize(
    ("source", "header"),
    [("dhan", COMPACT_HEADER.replace("SEM_TICK_SIZE,", "")), ("kite", "instrument_token,tradingsymbol")],
)
def test_a_missing_required_column_rejects_the_whole_file(source: str, header: str) -> None:
    with pytest.raises(SyncError, match="missing required column"):
        parse_master(source, io.StringIO(header + "\n"))


def test_an_id_larger_than_the_database_holds_is_a_bad_row_by_its_line_not_an_aborted_sync() -> None:
    rows = [
        "NSE,E,1594,EQUITY,0,INFY,1.0,Infosys,,,,10.0000,NA,ES,EQ,INFOSYS LIMITED",
        "NSE,E,12345678901234567890123,EQUITY,0,HUGE,1.0,Huge,,,,10.0000,NA,ES,EQ,HUGE LIMITED",
        "NSE,E,11536,EQUITY,0,TCS,1.0,TCS,,,,10.0000,NA,ES,EQ,TCS LIMITED",
    ]
    master = parse_master("dhan", io.StringIO("\n".join([COMPACT_HEADER, *rows])))
    assert [r.trading_symbol for r in master.rows] == ["INFY", "TCS"]
    assert [(b.line, "larger than any id" in b.reason) for b in master.bad] == [(3, True)]


def test_rows_with_bytes_that_are_not_utf8_a_nul_or_a_huge_field_are_reported_by_line_and_skipped() -> None:
    good = "NSE,E,1594,EQUITY,0,INFY,1.0,Infosys,,,,10.0000,NA,ES,EQ,INFOSYS LIMITED"
    raw = "\n".join(
        [
            COMPACT_HEADER,
            "NSE,E,1595,EQUITY,0,IN\udcff\udcfeFY,1.0,X,,,,10.0000,NA,ES,EQ,X",
            "NSE,E,1596,EQUITY,0,AB\x00C,1.0,X,,,,10.0000,NA,ES,EQ,X",
            "NSE,E,1597,EQUITY,0," + "Z" * 200_000 + ",1.0,X,,,,10.0000,NA,ES,EQ,X",
            good,
        ]
    ).encode("utf-8", "surrogateescape")
    with open_master(io.BytesIO(raw)) as text:
        master = parse_master("dhan", text)
    assert [(b.line, b.reason) for b in master.bad] == [
        (2, "is not valid UTF-8"),
        (3, "holds a NUL character"),
        (4, "unreadable: field larger than field limit (131072)"),
    ]
    assert [r.trading_symbol for r in master.rows] == ["INFY"]
