"""Packages match ideas: what a service does not need is not in its dependency closure (from uv.lock)."""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).parents[2]


def _closure(name: str) -> set[str]:
    lock = tomllib.loads((ROOT / "uv.lock").read_text())
    deps = {p["name"]: [d["name"] for d in p.get("dependencies", [])] for p in lock["package"]}
    seen: set[str] = set()
    todo = [name]
    while todo:
        current = todo.pop()
        if current not in seen:
            seen.add(current)
            todo.extend(deps.get(current, []))
    return seen


def test_a_worker_installs_no_http_client_yaml_feed_or_simulator_code() -> None:
    closure = _closure("tickpipe-workers")
    assert "tickpipe-core" in closure
    assert not closure & {
        "requests",
        "pyyaml",
        "websockets",
        "tickpipe-ingestion",
        "tickpipe-simulator",
        "tickpipe-instruments",
    }


def test_the_ingestion_package_ships_no_simulator() -> None:
    package = ROOT / "services" / "ingestion" / "src" / "tickpipe_ingestion"
    assert not any("simulat" in p.name for p in package.rglob("*.py"))
    assert "tickpipe-simulator" not in _closure("tickpipe-ingestion")
