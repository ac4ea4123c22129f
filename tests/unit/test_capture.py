"""Capture files round-trip frames exactly, survive a crash mid-write, and reject foreign files."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest

from tickpipe_core import ConfigError
from tickpipe_core.capture import CapturedFrame, CaptureWriter, read_frames, read_header

FRAMES = [
    CapturedFrame(1767000000.123456, 0, b"\x08\xa2\x00\x02" + bytes(158)),
    CapturedFrame(1767000000.5, 1, '{"type": "error", "data": "x"}'),
    CapturedFrame(1767000001.0, 0, b""),
]


@pytest.mark.parametrize("name", ["day.cap", "day.cap.gz"])
def test_frames_round_trip_byte_for_byte(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    with CaptureWriter(path, "dhan") as writer:
        for f in FRAMES:
            writer.write(f.receive_time, f.connection, f.data)
    assert read_header(path)["source"] == "dhan"
    assert list(read_frames(path)) == FRAMES
    if name.endswith(".gz"):
        with gzip.open(path) as raw:
            assert raw.read(5) == b'{"for'


def test_a_file_cut_mid_record_reads_up_to_its_last_whole_frame(tmp_path: Path) -> None:
    path = tmp_path / "crashed.cap"
    with CaptureWriter(path, "dhan") as writer:
        for f in FRAMES[:2]:
            writer.write(f.receive_time, f.connection, f.data)
    path.write_bytes(path.read_bytes()[:-5])
    assert list(read_frames(path)) == FRAMES[:1]


def test_a_file_that_is_not_a_capture_is_refused_with_its_name(tmp_path: Path) -> None:
    path = tmp_path / "ticks.csv"
    path.write_text("time,ltp\n")
    with pytest.raises(ConfigError, match="ticks.csv: not a tickpipe capture file"):
        list(read_frames(path))
