"""What the hypertable can hold: a tick whose value does not fit its column is isolated, never altered.

The COPY writer would fail a whole batch on such a tick (an integer past its column's range raises in
the binary encoder; a NUL in text is refused by PostgreSQL), and retrying the batch would wedge the
worker. `unstorable` names the first field that cannot be stored as it is, so that tick alone goes to
the dead-letter queue with the reason while the rest of its batch lands.
"""

from __future__ import annotations

from collections.abc import Sequence

from msgspec.structs import astuple

from tickpipe_core import Tick

_RANGES = {"int4": 2**31, "int8": 2**63}


def unstorable(tick: Tick, fields: Sequence[str], types: Sequence[str]) -> str | None:
    """The reason `tick` cannot be stored exactly in columns of `types` (in Tick's field order), or None."""
    for name, kind, value in zip(fields, types, astuple(tick), strict=True):
        if value is None:
            continue
        base = kind.removesuffix("[]")
        values = value if kind.endswith("[]") else (value,)
        for v in values:
            limit = _RANGES.get(base)
            if limit is not None and not -limit <= v < limit:
                return f"{name}={v} does not fit the column's {base}"
            if base == "text" and "\x00" in v:
                return f"{name} holds a NUL character"
    return None
