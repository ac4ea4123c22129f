"""The durable spool on its own: order, confirmed segments deleted, torn records, kill -9, full disk."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from tests.helpers import make_tick
from tickpipe_core import ConfigError, Topology, decode_batch, encode_ticks, envelope
from tickpipe_core.settings import IngestSettings
from tickpipe_ingestion import TickPublisher
from tickpipe_ingestion.spool import MAGIC, Spool, inspect, quarantined


def _payload(n: int) -> bytes:
    return n.to_bytes(4, "big") * 25  # 100 bytes that say which record they are


def _written(directory: Path, records: int) -> None:
    """A spool an earlier run left: `records` one-tick records, none confirmed."""
    spool = Spool(directory, max_bytes=1 << 20)
    spool.open()
    for n in range(records):
        spool.append(_payload(n), ticks=1)
    spool.close()


def _numbers(spool: Spool) -> list[int]:
    return [int.from_bytes(r.payload[:4], "big") for r in spool.read(10**9)]


def test_records_come_back_in_order_across_segments_and_confirmed_segments_are_deleted(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_bytes=1 << 20, fsync="segment", segment_bytes=1000)
    spool.open()
    for n in range(100):
        assert spool.append(_payload(n), ticks=2)
    assert spool.segments > 5 and spool.pending_ticks == 200
    first = spool.read(max_ticks=50)
    assert [int.from_bytes(r.payload[:4], "big") for r in first] == list(range(25))
    spool.commit(first[-1].end, 50)
    rest = spool.read(max_ticks=10**9)
    assert [int.from_bytes(r.payload[:4], "big") for r in rest] == list(range(25, 100))
    on_disk = len(list(tmp_path.glob("*.spool")))
    assert on_disk < spool.segments + 1 and spool.bytes < 100 * 112  # the confirmed prefix is gone
    spool.commit(rest[-1].end, 150)
    spool.close()
    assert list(tmp_path.glob("*.spool")) == [] and spool.pending_ticks == 0


def test_a_rewind_reads_the_unconfirmed_records_again(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_bytes=1 << 20)
    spool.open()
    for n in range(10):
        spool.append(_payload(n), ticks=1)
    records = spool.read(max_ticks=6)
    spool.commit(records[2].end, 3)
    spool.rewind(records[3].start, 3)
    assert spool.unread_ticks == 7
    assert _numbers(spool) == list(range(3, 10))
    spool.close()


def test_unconfirmed_records_survive_a_restart_and_come_first(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_bytes=1 << 20, segment_bytes=500)
    spool.open()
    for n in range(20):
        spool.append(_payload(n), ticks=1)
    spool.commit(spool.read(max_ticks=5)[-1].end, 5)
    spool.close()
    again = Spool(tmp_path, max_bytes=1 << 20, segment_bytes=500)
    recovered = again.open()
    assert recovered.torn == 0 and recovered.ticks >= 15
    again.append(_payload(99), ticks=1)
    numbers = _numbers(again)
    assert numbers[-16:] == [*range(5, 20), 99]  # the earlier run's records first, then the new one
    assert numbers == sorted(set(numbers), key=numbers.index)  # nothing twice
    again.close()


def test_a_torn_last_record_is_cut_off_and_counted_never_a_crash(tmp_path: Path) -> None:
    _written(tmp_path, records=5)
    (segment,) = tmp_path.glob("*.spool")
    whole = segment.stat().st_size
    with segment.open("ab") as f:
        f.write((100).to_bytes(4, "little") + b"\x00" * 30)  # a header promising more than was written
    with capture_logs() as logs:
        again = Spool(tmp_path, max_bytes=1 << 20)
        recovered = again.open()
    assert (recovered.records, recovered.torn, recovered.skipped_bytes, recovered.quarantined) == (5, 1, 34, 1)
    assert segment.stat().st_size == whole
    assert "spool_damage" in [e["event"] for e in logs]
    assert _numbers(again) == list(range(5))
    again.close()
    assert [p.name for p in quarantined(tmp_path)] == [segment.name]  # kept as it was, torn record and all
    assert quarantined(tmp_path)[0].stat().st_size == whole + 34


RECORD_BYTES = 116  # a test record: a 16-byte header and 100 bytes of payload


def test_a_flipped_byte_costs_its_record_alone_and_reading_resumes_at_the_next(tmp_path: Path) -> None:
    _written(tmp_path, records=671)
    (segment,) = tmp_path.glob("*.spool")
    data = bytearray(segment.read_bytes())
    data[len(MAGIC) + 2 * RECORD_BYTES + 50] ^= 0x01  # one bit inside the third record's payload
    segment.write_bytes(bytes(data))
    again = Spool(tmp_path, max_bytes=1 << 20)
    recovered = again.open()
    assert (recovered.torn, recovered.skipped_bytes, recovered.lost_ticks) == (1, RECORD_BYTES, 1)
    assert recovered.ticks == 670 and recovered.quarantined == 1
    assert _numbers(again) == [0, 1, *range(3, 671)]
    again.close()
    assert quarantined(tmp_path)[0].read_bytes() == bytes(data)  # the damaged file, as it was


def test_a_damaged_file_header_loses_no_record(tmp_path: Path) -> None:
    _written(tmp_path, records=50)
    (segment,) = tmp_path.glob("*.spool")
    data = bytearray(segment.read_bytes())
    data[0:8] = b"\x00" * 8
    segment.write_bytes(bytes(data))
    again = Spool(tmp_path, max_bytes=1 << 20)
    recovered = again.open()
    assert (recovered.ticks, recovered.torn, recovered.lost_ticks, recovered.quarantined) == (50, 0, 0, 1)
    assert _numbers(again) == list(range(50))
    again.close()


def test_segments_of_the_first_format_are_read_and_rewritten(tmp_path: Path) -> None:
    import struct
    import zlib

    payloads = [_payload(n) for n in range(30)]
    records = [struct.pack("<III", len(p), zlib.crc32(p), 1) + p for p in payloads]
    records[7] = records[7][:40] + b"\xff" + records[7][41:]  # and one damaged record among them
    (tmp_path / f"{1:012d}.spool").write_bytes(b"TPSPOOL1" + b"".join(records))
    spool = Spool(tmp_path, max_bytes=1 << 20)
    recovered = spool.open()
    assert (recovered.ticks, recovered.torn, recovered.lost_ticks) == (29, 1, 1)
    assert _numbers(spool) == [n for n in range(30) if n != 7]
    spool.close()


@pytest.mark.parametrize("seed", range(40))
def test_random_damage_to_random_segments_never_loses_an_intact_record(tmp_path: Path, seed: int) -> None:
    """Flipped bytes, zeroed runs, garbage and cut-off tails, anywhere in any segment: every record whose
    own bytes were not touched is delivered, once, in order, and what was skipped is counted."""
    rng = random.Random(seed)
    spool = Spool(tmp_path, max_bytes=1 << 24, segment_bytes=rng.choice([2_000, 10_000, 50_000]))
    spool.open()
    for n in range(600):
        spool.append(n.to_bytes(4, "big") * rng.randint(1, 60), ticks=rng.randint(1, 5))
    spool.close()
    segments = sorted(tmp_path.glob("*.spool"))
    layout = {segment.name: _records_of(segment.read_bytes()) for segment in segments}
    touched: dict[str, list[tuple[int, int]]] = {}
    cut = False
    for segment in rng.sample(segments, k=rng.randint(1, len(segments))):
        data = bytearray(segment.read_bytes())
        for _ in range(rng.randint(1, 4)):
            at = rng.randrange(len(data))
            kind = rng.choice(["flip", "zeros", "garbage", "tail"])
            width = 1 if kind == "flip" else rng.randint(1, 300)
            if kind == "flip":
                data[at] ^= 1 << rng.randrange(8)
            elif kind == "zeros":
                data[at : at + width] = b"\x00" * len(data[at : at + width])
            elif kind == "garbage":
                data[at : at + width] = rng.randbytes(len(data[at : at + width]))
            else:
                del data[at:]
                width, cut = 1 << 40, True
            touched.setdefault(segment.name, []).append((at, at + width))
        segment.write_bytes(bytes(data))
    intact = [
        number
        for name, records in layout.items()
        for start, end, number in records
        if not any(s < end and start < e for s, e in touched.get(name, []))
    ]
    again = Spool(tmp_path, max_bytes=1 << 24)
    recovered = again.open()
    delivered = _numbers(again)
    again.close()
    assert set(intact) <= set(delivered)  # nothing intact is lost
    assert delivered == sorted(delivered) and len(delivered) == len(set(delivered))  # in order, once
    if not cut:  # a file cut exactly between two records looks whole; any other damage is counted
        assert (recovered.torn > 0) == (len(delivered) < 600)


def _records_of(data: bytes) -> list[tuple[int, int, int]]:
    """(start, end, number) of each record of an undamaged segment (a 16-byte header, then the payload)."""
    out, at = [], len(MAGIC)
    while at < len(data):
        length = int.from_bytes(data[at + 4 : at + 8], "little")
        out.append((at, at + 16 + length, int.from_bytes(data[at + 16 : at + 20], "big")))
        at += 16 + length
    return out


_WRITER = """
import os, signal, sys
from pathlib import Path
from tickpipe_ingestion.spool import Spool
spool = Spool(Path(sys.argv[1]), max_bytes=1 << 30, fsync="never", segment_bytes=20_000)
spool.open()
for n in range(int(sys.argv[2])):
    spool.append(n.to_bytes(4, "big") * 25, ticks=1)
os.kill(os.getpid(), signal.SIGKILL)
"""


@pytest.mark.parametrize("records", [0, 1, 173, 1000])
def test_kill_9_at_any_point_loses_nothing_appended(tmp_path: Path, records: int) -> None:
    result = subprocess.run([sys.executable, "-c", _WRITER, str(tmp_path), str(records)], check=False, timeout=60)
    assert result.returncode == -signal.SIGKILL
    spool = Spool(tmp_path, max_bytes=1 << 30)
    assert spool.open().ticks == records
    assert _numbers(spool) == list(range(records))
    spool.close()


def test_the_spool_is_one_ingestion_s_alone(tmp_path: Path) -> None:
    first = Spool(tmp_path, max_bytes=1 << 20)
    first.open()
    pid = os.fork()
    if pid == 0:  # another process: flock is per process here
        try:
            Spool(tmp_path, max_bytes=1 << 20).open()
        except ConfigError as e:
            os._exit(0 if "in use by another ingestion" in str(e) else 2)
        os._exit(1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    first.close()


def test_a_full_spool_loses_new_ticks_counted_per_instrument_and_logs_once_per_interval(tmp_path: Path) -> None:
    settings = IngestSettings(spool_dir=tmp_path, spool_max_bytes=1 << 20)
    publisher = TickPublisher("amqp://unused/", Topology("unit"), settings)
    publisher.spool.open()
    frames = [[make_tick(security_id=f % 3, ltp=100 + f) for _ in range(40)] for f in range(400)]
    with capture_logs() as logs:
        for ticks in frames:
            publisher.submit(ticks)
    kept, lost = publisher.spool.pending_ticks, publisher.counters["lost_spool_full"]
    assert kept > 0 and lost > 0 and kept + lost == 400 * 40
    assert sum(publisher.lost_by_instrument.values()) == lost
    assert set(publisher.lost_by_instrument) <= {"NSE_FNO:0", "NSE_FNO:1", "NSE_FNO:2"}
    assert [e["event"] for e in logs].count("spool_full_ticks_lost") == 1
    assert publisher.spool.bytes <= 1 << 20
    # What was kept is the oldest, whole and in order.
    kept_ticks = [t for r in publisher.spool.read(10**9) for t in decode_batch(envelope([r.payload], r.ticks))]
    assert kept_ticks == [t for ticks in frames for t in ticks][: len(kept_ticks)]
    publisher.spool.close()


def test_a_disk_that_fills_mid_write_leaves_no_torn_record(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_bytes=1 << 30)
    spool.open()
    assert spool.append(_payload(1), ticks=1)
    real_fd = spool._fd
    spool._fd = os.open("/dev/full", os.O_WRONLY)  # every write fails with ENOSPC
    with capture_logs() as logs:
        assert not spool.append(_payload(2), ticks=1)
    os.close(spool._fd)
    spool._fd = real_fd
    assert "spool_write_failed" in [e["event"] for e in logs]
    assert spool.append(_payload(3), ticks=1)  # room again: writing goes on
    assert _numbers(spool) == [1, 3]
    spool.close()


def test_encoded_parts_join_into_the_same_body_as_one_batch() -> None:
    for n in (0, 1, 15, 16, 70_000):
        ticks = [make_tick(security_id=i) for i in range(n)]
        parts = [encode_ticks(ticks[: n // 3]), encode_ticks(ticks[n // 3 :])]
        assert decode_batch(envelope(parts, n)) == ticks


@pytest.mark.parametrize("seed", range(5))
def test_any_interleaving_of_appends_reads_failures_and_confirms_reads_each_record_in_order(
    tmp_path: Path, seed: int
) -> None:
    """Segments roll, are confirmed and deleted under the reader in every order (once, a reader stuck here)."""
    rng = random.Random(seed)
    spool = Spool(tmp_path, max_bytes=1 << 20, segment_bytes=3000)
    spool.open()
    appended, confirmed = 0, []
    for _ in range(3000):
        if rng.random() < 0.6:
            spool.append(_payload(appended), ticks=1)
            appended += 1
            continue
        records = spool.read(max_ticks=rng.randint(1, 40))
        assert bool(records) == bool(spool.unread_ticks + len(records))  # nothing unread is ever out of reach
        if not records:
            continue
        kept = rng.randint(0, len(records))  # a publish of the rest failed: they are read again
        if kept:
            spool.commit(records[kept - 1].end, kept)
            confirmed += [int.from_bytes(r.payload[:4], "big") for r in records[:kept]]
        if kept < len(records):
            spool.rewind(records[kept].start, len(records) - kept)
    confirmed += _numbers(spool)
    assert confirmed == list(range(appended))
    assert spool.segments <= 1 + 1_000_000 // 3000
    spool.close()


def test_a_clean_stop_marks_what_was_confirmed_so_the_next_start_publishes_only_the_rest(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_bytes=1 << 20)
    spool.open()
    for n in range(10):
        spool.append(_payload(n), ticks=1)
    spool.commit(spool.read(max_ticks=6)[-1].end, 6)
    spool.close()
    assert inspect(tmp_path).ticks == 4  # the segment is still there; its confirmed part is not counted
    again = Spool(tmp_path, max_bytes=1 << 20)
    assert again.open().ticks == 4
    rest = again.read(max_ticks=100)
    assert [int.from_bytes(r.payload[:4], "big") for r in rest] == [6, 7, 8, 9]
    again.commit(rest[-1].end, 4)  # everything confirmed
    again.close()
    third = Spool(tmp_path, max_bytes=1 << 20)
    assert third.open().ticks == 0
    third.append(_payload(42), ticks=1)  # a new segment numbered past the mark: never taken as confirmed
    third.close()
    fourth = Spool(tmp_path, max_bytes=1 << 20)
    assert fourth.open().ticks == 1 and _numbers(fourth) == [42]
    fourth.close()
