"""Downloading a master over real HTTP: gzip, retries with backoff, and conditional GET."""

from __future__ import annotations

import gzip
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import pytest

from tickpipe_core import SyncError
from tickpipe_instruments import download_master, open_master

BODY = b"instrument_token,exchange_token\n408065,1594\n"
ETAG = '"v1"'


class _Master(BaseHTTPRequestHandler):
    requests: ClassVar[list[tuple[str, str | None]]] = []
    failures_left: ClassVar[int] = 0

    def do_GET(self) -> None:
        _Master.requests.append((self.path, self.headers.get("If-None-Match")))
        if self.path == "/down":
            self.send_error(404)
            return
        if _Master.failures_left > 0:
            _Master.failures_left -= 1
            self.send_error(503)
            return
        if self.headers.get("If-None-Match") == ETAG:
            self.send_response(304)
            self.end_headers()
            return
        body = gzip.compress(BODY)
        self.send_response(200)
        self.send_header("Content-Encoding", "gzip")
        self.send_header("ETag", ETAG)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def server() -> Iterator[str]:
    _Master.requests, _Master.failures_left = [], 0
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Master)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


def test_download_gunzips_and_a_second_download_of_an_unchanged_master_is_a_304(server: str, tmp_path: Path) -> None:
    first = download_master(f"{server}/instruments", tmp_path, "kite.csv")
    assert (first.fetched, first.path.read_bytes()) == (True, BODY)
    second = download_master(f"{server}/instruments", tmp_path, "kite.csv")
    assert (second.fetched, second.path.read_bytes()) == (False, BODY)
    assert _Master.requests == [("/instruments", None), ("/instruments", ETAG)]


def test_server_errors_are_retried_with_backoff(server: str, tmp_path: Path) -> None:
    _Master.failures_left = 2
    result = download_master(f"{server}/instruments", tmp_path, "kite.csv", backoff=0.01)
    assert result.fetched and len(_Master.requests) == 3


def test_a_failed_download_is_one_clear_error_and_keeps_the_old_copy(server: str, tmp_path: Path) -> None:
    download_master(f"{server}/instruments", tmp_path, "kite.csv")
    with pytest.raises(SyncError, match=r"downloading .*/down failed: HTTPError: 404"):
        download_master(f"{server}/down", tmp_path, "kite.csv")
    assert (tmp_path / "kite.csv").read_bytes() == BODY


def test_a_gzip_file_is_read_by_content_whatever_its_name(tmp_path: Path) -> None:
    path = tmp_path / "instruments"
    path.write_bytes(gzip.compress(BODY))
    with path.open("rb") as raw, open_master(raw) as text:
        assert text.read() == BODY.decode()
