"""Fast binary COPY dumpers for the depth arrays (1-D, no NULLs, a handful of elements).

psycopg's generic array dumper is pure Python and was 60% of a batch's CPU time; these pack the
PostgreSQL binary array format with one precompiled struct per length. They are registered by oid
only, so they serve COPY after `set_types()` and nothing else.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from functools import cache
from typing import Any

import psycopg
from psycopg.adapt import Dumper
from psycopg.pq import Format

_FLOAT8, _INT8, _INT4 = 701, 20, 23
_FLOAT8_ARRAY, _INT8_ARRAY, _INT4_ARRAY = 1022, 1016, 1007


@cache
def _layout(code: str, size: int, n: int) -> struct.Struct:
    # ndim, has-null flag, element oid, dimension length, lower bound; then (length, value) pairs.
    return struct.Struct(">iIIii" + ("i" + code) * n)


def _pack(code: str, size: int, elem_oid: int, values: Sequence[Any]) -> bytes:
    n = len(values)
    args: list[Any] = [1, 0, elem_oid, n, 1]
    for v in values:
        args += (size, v)
    return _layout(code, size, n).pack(*args)


class Float8ArrayDumper(Dumper):
    format = Format.BINARY
    oid = _FLOAT8_ARRAY

    def dump(self, obj: Sequence[float]) -> bytes:
        return _pack("d", 8, _FLOAT8, obj)


class Int8ArrayDumper(Dumper):
    format = Format.BINARY
    oid = _INT8_ARRAY

    def dump(self, obj: Sequence[int]) -> bytes:
        return _pack("q", 8, _INT8, obj)


class Int4ArrayDumper(Dumper):
    format = Format.BINARY
    oid = _INT4_ARRAY

    def dump(self, obj: Sequence[int]) -> bytes:
        return _pack("i", 4, _INT4, obj)


def register(conn: psycopg.AsyncConnection[Any]) -> None:
    """Use these dumpers for COPY on this connection."""
    for dumper in (Float8ArrayDumper, Int8ArrayDumper, Int4ArrayDumper):
        conn.adapters.register_dumper(None, dumper)
