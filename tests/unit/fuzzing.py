"""A seeded frame generator for the fuzz tests: valid packets, and the ways a frame goes wrong."""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

from structlog.testing import capture_logs

FRAMES_PER_DECODER = 1_000_000


@dataclass(frozen=True)
class Fuzzed:
    frame: bytes
    broken: bool
    """True when the frame is certainly malformed (cut inside a packet): the decoder must count it."""


def frames(packets: list[bytes], join: Callable[[list[bytes]], bytes], count: int, seed: int) -> Iterator[Fuzzed]:
    """`count` frames from `packets` (`join` makes a frame of them): whole, cut inside a packet, with
    bytes flipped (headers and lengths included), with garbage after them, and random bytes."""
    rng = random.Random(seed)
    randbytes, randrange, choice = rng.randbytes, rng.randrange, rng.choice
    for _ in range(count):
        chosen = [choice(packets) for _ in range(randrange(1, 5))]
        frame = join(chosen)
        kind = randrange(5)
        if kind == 0:
            yield Fuzzed(frame, False)
        elif kind == 1:  # cut inside the last packet
            cut = len(frame) - randrange(1, len(chosen[-1]))
            yield Fuzzed(frame[:cut], True)
        elif kind == 2:  # flipped bytes anywhere (headers and lengths included)
            data = bytearray(frame)
            for _ in range(randrange(1, 4)):
                data[randrange(len(data))] = randrange(256)
            yield Fuzzed(bytes(data), False)
        elif kind == 3:  # garbage after the packets
            yield Fuzzed(frame + randbytes(randrange(1, 40)), False)
        else:  # random bytes of any length
            yield Fuzzed(randbytes(randrange(0, 400)), False)


def fuzz_decoder(
    decode: Callable[[bytes, datetime], object],
    counters: Mapping[str, int],
    packets: list[bytes],
    join: Callable[[list[bytes]], bytes],
) -> None:
    """A million fuzzed frames through `decode`: nothing raises, and every cut frame adds a bad packet."""
    now = datetime(2026, 11, 23, 4, 0, tzinfo=UTC)
    broken = 0
    with capture_logs():  # the bad-packet log lines (rate-limited) are not the point here
        for fuzzed in frames(packets, join, FRAMES_PER_DECODER, seed=20261130):
            before = counters["bad_packets"]
            _all_plausible(decode(fuzzed.frame, now))  # raises nothing, whatever the bytes
            if fuzzed.broken:
                broken += 1
                assert counters["bad_packets"] > before, fuzzed.frame.hex()
    assert broken > FRAMES_PER_DECODER // 10
    assert counters["bad_packets"] >= broken
    rng = random.Random(20261207)
    with capture_logs():  # frames of pure noise: whatever they decode to is a price an exchange could send
        for _ in range(2_000):
            _all_plausible(decode(rng.randbytes(rng.choice([8, 50, 184, 1000, 60_000])), now))


def _all_plausible(decoded: object) -> None:
    ticks = getattr(decoded, "ticks", decoded)
    assert isinstance(ticks, list)
    for t in ticks:
        assert -1e8 < t.ltp < 1e8 and not t.segment.startswith("SEGMENT_"), t
