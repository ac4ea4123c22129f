"""The decoding stage, compiled: which modules mypyc turns into C extensions, and whether the build is current.

The decoders run once per packet, and the interpreter's overhead is most of their cost: compiled by
mypyc (the mypy project's compiler for type-annotated Python: the same source, checked by the same
mypy --strict) they decode a Dhan full packet in about two thirds of the time. `make setup` compiles
them (scripts/compile_decoders.py) when a C compiler is at hand; without one they run as Python, the
same code, only slower. The extensions sit beside their sources, where Python imports them first, so
a source changed after compiling would be silently shadowed by the old build: `check` refuses that.
"""

from __future__ import annotations

import hashlib
from importlib.machinery import EXTENSION_SUFFIXES
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent  # the directory holding the tickpipe_brokers package
MODULES = (
    "tickpipe_brokers/decoding.py",
    "tickpipe_brokers/enrich.py",
    "tickpipe_brokers/ticks.py",
    "tickpipe_brokers/dhan/parse.py",
    "tickpipe_brokers/dhan/wire.py",
    "tickpipe_brokers/kite/parse.py",
    "tickpipe_brokers/kite/wire.py",
)
STAMP = "tickpipe_brokers/.compiled"  # the digest of the sources the extensions were built from


def digest(root: Path = ROOT) -> str:
    """A digest of the compiled modules' sources as they are now."""
    h = hashlib.sha256()
    for module in MODULES:
        h.update(module.encode() + b"\0" + (root / module).read_bytes())
    return h.hexdigest()


def extensions(root: Path = ROOT) -> list[Path]:
    """The compiled extensions present beside the sources (none: the decoders run as Python)."""
    return [
        ext
        for module in MODULES
        for suffix in EXTENSION_SUFFIXES
        if (ext := (root / module).with_suffix(suffix)).exists()
    ]


def _built_from_these(root: Path) -> bool:
    stamp = root / STAMP
    return stamp.exists() and stamp.read_text().strip() == digest(root)


def is_current(root: Path = ROOT) -> bool:
    """Compiled, from the sources as they are now."""
    return bool(extensions(root)) and _built_from_these(root)


def check(root: Path = ROOT) -> None:
    """Refuse to run compiled decoders built from other sources than these."""
    if extensions(root) and not _built_from_these(root):
        raise ImportError(
            "the compiled decoders were built from other sources than the ones here: run `make setup` "
            "(or `uv run python scripts/compile_decoders.py`) to rebuild them, "
            "or `uv run python scripts/compile_decoders.py --remove` to run them as Python"
        )
