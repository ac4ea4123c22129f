"""The compiled decoders are never older than their sources: a stale build refuses to load."""

from __future__ import annotations

import shutil
from importlib.machinery import EXTENSION_SUFFIXES
from pathlib import Path

import pytest

from tickpipe_brokers import compiled


def _sources(root: Path) -> Path:
    for module in compiled.MODULES:
        (root / module).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(compiled.ROOT / module, root / module)
    return root


def _build(root: Path) -> None:
    """What compile_decoders.py leaves: an extension beside each source, and the sources' digest."""
    for module in compiled.MODULES:
        (root / module).with_suffix(EXTENSION_SUFFIXES[0]).write_bytes(b"")
    (root / compiled.STAMP).write_text(compiled.digest(root) + "\n")


def test_plain_python_needs_no_build(tmp_path: Path) -> None:
    root = _sources(tmp_path)
    compiled.check(root)
    assert not compiled.is_current(root)


def test_a_build_from_these_sources_loads(tmp_path: Path) -> None:
    root = _sources(tmp_path)
    _build(root)
    compiled.check(root)
    assert compiled.is_current(root)


def test_a_source_changed_after_the_build_refuses_to_load(tmp_path: Path) -> None:
    root = _sources(tmp_path)
    _build(root)
    source = root / compiled.MODULES[-1]
    source.write_text(source.read_text() + "\n# edited\n")
    with pytest.raises(ImportError, match="make setup"):
        compiled.check(root)


def test_extensions_without_their_digest_refuse_to_load(tmp_path: Path) -> None:
    root = _sources(tmp_path)
    _build(root)
    (root / compiled.STAMP).unlink()
    with pytest.raises(ImportError, match="compile_decoders.py --remove"):
        compiled.check(root)


def test_this_checkout_runs_what_its_sources_say() -> None:
    """Compiled (make setup) or not, never a stale build: importing tickpipe_brokers checked it."""
    assert not compiled.extensions() or compiled.is_current()
