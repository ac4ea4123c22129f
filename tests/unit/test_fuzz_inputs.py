"""Random bytes through the queue decoder and the instrument-master parsers: a clear error, never a crash.

(A quote that never closes swallows the rest of a CSV file into one field: that is CSV, reported as
one bad row past the field limit, and not fuzzed here.)
"""

from __future__ import annotations

import io
import random
from pathlib import Path

import pytest

from tests.helpers import make_tick
from tickpipe_core import DecodeError, decode_batch, encode_batch
from tickpipe_instruments import parse_master
from tickpipe_instruments.download import open_master

DATA = Path(__file__).parent.parent / "data"


def test_random_and_damaged_message_bodies_raise_decode_error_or_decode_whole() -> None:
    rng = random.Random(7)
    valid = [encode_batch([make_tick(security_id=i + j) for j in range(rng.randrange(1, 6))]) for i in range(50)]
    errors = 0
    for n in range(200_000):
        body = bytearray(rng.choice(valid))
        if n % 3 == 0:
            body = bytearray(rng.randbytes(rng.randrange(0, 300)))
        elif n % 3 == 1:
            for _ in range(rng.randrange(1, 4)):
                body[rng.randrange(len(body))] = rng.randrange(256)
        else:
            del body[rng.randrange(len(body)) :]
        try:
            ticks = decode_batch(bytes(body))
        except DecodeError:  # the worker dead-letters the message with this reason
            errors += 1
            continue
        assert all(t.receive_time.tzinfo is not None for t in ticks)  # whatever decodes is a valid tick
    assert errors > 100_000


@pytest.mark.parametrize(
    ("source", "name"),
    [("dhan", "dhan/nifty-derivatives-master-2026-02.csv"), ("kite", "kite/instruments-mocks-all.csv")],
)
def test_damaged_master_files_report_each_bad_row_and_parse_the_rest(source: str, name: str) -> None:
    lines = (DATA / name).read_bytes().splitlines(keepends=True)
    header, rows = lines[0], lines[1:300]
    rng = random.Random(name)
    for _ in range(300):
        damaged, hit = list(rows), set()
        for _ in range(rng.randrange(1, 10)):
            i = rng.randrange(len(damaged))
            hit.add(i + 2)  # its line number (the header is line 1)
            line = bytearray(damaged[i])
            what = rng.randrange(3)
            if what == 0:  # bytes that are not UTF-8, a NUL, any byte but a line break or a quote
                line[rng.randrange(len(line) - 1)] = rng.choice([0xFF, 0xC3, 0x00, rng.randrange(35, 256)])
            elif what == 1:  # a field far past the CSV limit
                line[rng.randrange(len(line) - 1) : 0] = b"9" * 200_000
            else:  # a line of random bytes
                line = bytearray(rng.randbytes(rng.randrange(1, 200)).translate(None, b'"\r\n') + b"x\n")
            damaged[i] = bytes(line)
        text = open_master(io.BytesIO(header + b"".join(damaged)))
        parsed = parse_master(source, text)
        # Every line is accounted for, as a row or as a bad row with its reason; only damaged lines are bad.
        assert len(parsed.rows) + len(parsed.bad) == len(rows)
        assert {b.line for b in parsed.bad} <= hit
        assert all(b.reason for b in parsed.bad)
