"""Instrument sync into a real database: real masters, merge across brokers, idempotence,
deactivation, dry run, and bad files that write nothing."""

from __future__ import annotations

import io
import subprocess
import sys
from datetime import date
from decimal import Decimal
from pathlib import Path

import psycopg
import pytest

from tests.helpers import COMPACT_HEADER
from tickpipe_core import SyncError
from tickpipe_instruments import ParsedMaster, open_master, parse_master, sync_instruments

DATA = Path(__file__).parent.parent / "data"


def _master(source: str, path: Path) -> ParsedMaster:
    with path.open("rb") as raw, open_master(raw) as text:
        return parse_master(source, text)


def _compact(*rows: str) -> ParsedMaster:
    return parse_master("dhan", io.StringIO("\n".join([COMPACT_HEADER, *rows])))


def _one(url: str, query: str, *params: object) -> tuple[object, ...]:
    with psycopg.connect(url) as conn:
        row = conn.execute(query, params).fetchone()
    assert row is not None
    return tuple(row)


def test_full_dhan_compact_master_loads_every_row_and_a_second_sync_changes_nothing(database_url: str) -> None:
    master = _master("dhan", DATA / "dhan" / "api-scrip-master-2026-02.csv.gz")
    assert (len(master.rows), master.bad) == (273_027, [])
    first = sync_instruments(database_url, master)
    assert (first.added, first.changed, first.deactivated, first.conflicts) == (273_027, 0, 0, 0)
    cols = (
        "select exchange, segment, trading_symbol, underlying, instrument_type, expiry, strike, option_type,"
        " lot_size, tick_size, dhan_segment, exchange_token, active from instruments where dhan_security_id = %s"
        " and dhan_segment = %s"
    )
    assert _one(database_url, cols, 1594, "NSE_EQ") == (
        "NSE", "E", "INFY", "INFY", "EQ", None, None, None, Decimal("1.0"), Decimal("0.1"), "NSE_EQ", 1594, True,
    )  # fmt: skip
    assert _one(database_url, cols, 51714, "NSE_FNO") == (
        "NSE", "D", "NIFTY-Mar2026-FUT", "NIFTY", "FUT", date(2026, 3, 30), None, None,
        Decimal("65.0"), Decimal("0.1"), "NSE_FNO", 51714, True,
    )  # fmt: skip
    assert _one(database_url, cols, 42500, "NSE_FNO")[4:8] == ("OPT", date(2026, 2, 10), Decimal(25000), "CE")
    assert _one(database_url, cols, 13, "IDX_I")[:5] == ("NSE", "I", "NIFTY", "NIFTY", "INDEX")
    assert _one(database_url, "select count(*) from instruments where dhan_segment = 'NSE_COMM'") == (44_642,)

    second = sync_instruments(database_url, master)
    assert (second.added, second.changed, second.merged, second.deactivated) == (0, 0, 0, 0)


def test_dhan_and_kite_listings_of_one_contract_are_one_instrument(database_url: str) -> None:
    sync_instruments(database_url, _master("dhan", DATA / "dhan" / "api-scrip-master-detailed-31col-nse-eq-idx.csv"))
    report = sync_instruments(database_url, _master("kite", DATA / "kite" / "instruments-nse.csv"))
    assert report.merged > 7000 and report.conflicts == 0
    infy = _one(
        database_url,
        "select instrument_id, trading_symbol, dhan_symbol, kite_symbol, dhan_security_id, kite_instrument_token,"
        " kite_exchange_token, source, dhan_listed, kite_listed from instruments where kite_instrument_token = 408065",
    )
    assert infy[1:] == ("INFY", "INFY", "INFY", 1594, 408065, 1594, "dhan", True, True)
    # An index sharing INFY's token stays its own instrument.
    assert _one(
        database_url, "select dhan_security_id, instrument_type from instruments where kite_instrument_token = 408073"
    ) == (None, "INDEX")
    # The Kite master does not overwrite what the Dhan master created: the name stays Dhan's (Kite: INFOSYS).
    assert _one(database_url, "select name from instruments where instrument_id = %s", infy[0]) == ("Infosys",)
    again = sync_instruments(database_url, _master("kite", DATA / "kite" / "instruments-nse.csv"))
    assert (again.added, again.changed, again.merged, again.deactivated) == (0, 0, 0, 0)


V1 = [
    "NSE,E,1594,EQUITY,0,INFY,1.0,Infosys,,,,10.0000,NA,ES,EQ,INFOSYS LIMITED",
    "NSE,E,2885,EQUITY,0,RELIANCE,1.0,Reliance,,,,10.0000,NA,ES,EQ,RELIANCE INDUSTRIES",
    "NSE,E,11536,EQUITY,0,TCS,1.0,TCS,,,,10.0000,NA,ES,EQ,TATA CONSULTANCY",
    "NSE,E,1333,EQUITY,0,HDFCBANK,1.0,HDFC Bank,,,,10.0000,NA,ES,EQ,HDFC BANK",
]


def test_a_vanished_instrument_is_deactivated_never_deleted_and_changes_are_applied(database_url: str) -> None:
    sync_instruments(database_url, _compact(*V1))
    tcs_id = _one(database_url, "select instrument_id from instruments where dhan_security_id = 11536")[0]
    v2 = [V1[0].replace("10.0000", "5.0000"), V1[1], V1[3]]  # INFY tick size changed, TCS gone
    report = sync_instruments(database_url, _compact(*v2))
    assert (report.added, report.changed, report.deactivated, report.samples["deactivated"]) == (
        0, 1, 1, ["NSE:TCS"],
    )  # fmt: skip
    assert _one(database_url, "select active, dhan_listed from instruments where instrument_id = %s", tcs_id) == (
        False,
        False,
    )
    assert _one(database_url, "select tick_size from instruments where dhan_security_id = 1594") == (Decimal("0.05"),)
    back = sync_instruments(database_url, _compact(*V1))  # relisted
    assert (back.changed, back.added) == (2, 0)
    assert _one(database_url, "select active from instruments where instrument_id = %s", tcs_id) == (True,)


def test_a_master_that_would_unlist_most_instruments_is_refused_with_nothing_written(database_url: str) -> None:
    sync_instruments(database_url, _compact(*V1))
    with pytest.raises(SyncError, match="would unlist 3 of 4 dhan listings"):
        sync_instruments(database_url, _compact(V1[0]))
    assert _one(database_url, "select count(*) from instruments where active") == (4,)


def test_dry_run_reports_the_changes_and_writes_nothing(database_url: str) -> None:
    sync_instruments(database_url, _compact(*V1[:3]))
    new = "NSE,E,3045,EQUITY,0,SBIN,1.0,SBI,,,,5.0000,NA,ES,EQ,STATE BANK OF INDIA"
    report = sync_instruments(database_url, _compact(V1[0].replace("1.0,", "2.0,", 1), V1[1], new), dry_run=True)
    assert report.samples == {
        "added": ["NSE:SBIN"],
        "changed": ["NSE:INFY"],
        "merged": [],
        "deactivated": ["NSE:TCS"],
    }
    assert _one(database_url, "select count(*), count(*) filter (where active) from instruments") == (3, 3)
    assert _one(database_url, "select lot_size from instruments where dhan_security_id = 1594") == (Decimal("1.0"),)


def test_cli_sync_prints_bad_rows_with_line_numbers_and_a_one_line_summary(database_url: str, tmp_path: Path) -> None:
    path = tmp_path / "master.csv"
    path.write_text("\n".join([COMPACT_HEADER, *V1[:2], "NSE,E,x,EQUITY,0,BAD,1.0,B,,,,5,NA,ES,EQ,BAD"]))
    result = subprocess.run(
        [sys.executable, "-m", "tickpipe", "instruments", "sync", "--source", "dhan", "--file", str(path)],
        env={"DATABASE_URL": database_url, "LOG_LEVEL": "WARNING", "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert f"{path}:4: skipped: SEM_SMST_SECURITY_ID: 'x' is not a number" in result.stderr
    assert result.stderr.strip().splitlines()[-1] == (
        "dhan: synced 2 rows: 2 added, 0 changed, 0 merged with the other broker, 0 deactivated, 0 conflicts,"
        " 0 unchanged; 1 bad rows skipped (dhan-compact, master.csv)"
    )


def test_cli_rejects_a_file_missing_a_required_column_before_writing(database_url: str, tmp_path: Path) -> None:
    path = tmp_path / "master.csv"
    path.write_text(COMPACT_HEADER.replace("SEM_SMST_SECURITY_ID", "SECURITY") + "\n" + V1[0])
    result = subprocess.run(
        [sys.executable, "-m", "tickpipe", "instruments", "sync", "--source", "dhan", "--file", str(path)],
        env={"DATABASE_URL": database_url, "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert "missing required column(s) SEM_SMST_SECURITY_ID; nothing was written" in result.stderr
    assert _one(database_url, "select count(*) from instruments") == (0,)
