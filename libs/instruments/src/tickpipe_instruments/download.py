"""Fetch a broker's instrument master over HTTP: timeouts, retries with backoff, streaming to disk,
gzip, and a conditional GET so that an unchanged master is not downloaded twice.

The file and its validators (ETag, Last-Modified) are kept in a cache directory; the next
download sends them back and a 304 reuses the cached copy.
"""

from __future__ import annotations

import contextlib
import gzip
import io
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import requests
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from tickpipe_core.errors import SyncError
from tickpipe_core.logging import get_logger

log = get_logger("instruments.download")

CONNECT_TIMEOUT_S, READ_TIMEOUT_S = 10.0, 60.0


@dataclass(frozen=True)
class Download:
    path: Path
    fetched: bool
    """False when the server said the cached copy is still current (304)."""
    size: int


def _session(retries: int, backoff: float) -> requests.Session:
    session = requests.Session()
    retry = Retry(
        total=retries,
        backoff_factor=backoff,
        status_forcelist=(429, 500, 502, 503, 504),
        allowed_methods=frozenset({"GET"}),
        respect_retry_after_header=True,
    )
    session.mount("http://", HTTPAdapter(max_retries=retry))
    session.mount("https://", HTTPAdapter(max_retries=retry))
    return session


def download_master(url: str, cache_dir: Path, name: str, *, retries: int = 4, backoff: float = 0.5) -> Download:
    """Download `url` into `cache_dir/name`, or keep the cached copy when the server says it is current."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    path, meta_path = cache_dir / name, cache_dir / f"{name}.meta.json"
    headers = {"Accept-Encoding": "gzip"}
    meta: dict[str, str] = {}
    if path.exists() and meta_path.exists():
        with contextlib.suppress(ValueError, OSError):
            meta = json.loads(meta_path.read_text())
        if meta.get("url") == url:
            if meta.get("etag"):
                headers["If-None-Match"] = meta["etag"]
            if meta.get("last_modified"):
                headers["If-Modified-Since"] = meta["last_modified"]
    try:
        with (
            _session(retries, backoff) as session,
            session.get(url, headers=headers, stream=True, timeout=(CONNECT_TIMEOUT_S, READ_TIMEOUT_S)) as response,
        ):
            if response.status_code == 304:
                log.info("master_unchanged", url=url, path=str(path))
                return Download(path, False, path.stat().st_size)
            response.raise_for_status()
            fd, tmp = tempfile.mkstemp(dir=cache_dir, prefix=f".{name}.")
            size = 0
            with os.fdopen(fd, "wb") as out:
                # iter_content undoes a gzip Content-Encoding; a .gz body stays gzip (open_master reads both).
                for chunk in response.iter_content(chunk_size=1 << 20):
                    out.write(chunk)
                    size += len(chunk)
            os.replace(tmp, path)
            meta = {
                "url": url,
                "etag": response.headers.get("ETag", ""),
                "last_modified": response.headers.get("Last-Modified", ""),
            }
            meta_path.write_text(json.dumps(meta))
    except requests.RequestException as e:
        raise SyncError(f"downloading {url} failed: {type(e).__name__}: {e}") from e
    log.info("master_downloaded", url=url, path=str(path), bytes=size)
    return Download(path, True, size)


def open_master(raw: IO[bytes]) -> IO[str]:
    """A master file's text, gunzipped when it is gzip (by content, not by name)."""
    magic = raw.read(2)
    raw.seek(0)
    stream: IO[bytes] = gzip.GzipFile(fileobj=raw) if magic == b"\x1f\x8b" else raw  # type: ignore[assignment]
    # Bytes that are not UTF-8 become lone surrogates, so the parser can report their row and go on.
    return io.TextIOWrapper(stream, encoding="utf-8-sig", errors="surrogateescape", newline="")
