"""Packages match ideas: what a service does not need is not in its dependency closure (from uv.lock)."""

from __future__ import annotations

import re
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


def test_the_simulator_builds_on_the_broker_adapters_not_on_ingestion() -> None:
    closure = _closure("tickpipe-simulator")
    assert "tickpipe-brokers" in closure
    assert "tickpipe-ingestion" not in closure


def _sources(*roots: str) -> list[Path]:
    return [p for root in roots for p in (ROOT / root).rglob("*.py")]


def test_nothing_outside_the_adapters_branches_on_a_brokers_name() -> None:
    adapters = ROOT / "libs" / "brokers" / "src" / "tickpipe_brokers"
    allowed = {adapters / "dhan", adapters / "kite"}
    branch = re.compile(r"""[!=]= ["'](dhan|kite)["']""")
    found = [
        f"{p.relative_to(ROOT)}:{n}"
        for p in _sources("src", "libs", "services", "scripts")
        if not any(a in p.parents for a in allowed)
        for n, line in enumerate(p.read_text().splitlines(), 1)
        if branch.search(line)
    ]
    assert found == []


def test_the_contract_core_holds_no_broker_settings() -> None:
    core = _sources("libs/core/src")
    assert core
    assert not [p for p in core if re.search(r"DHAN_|KITE_|class (Dhan|Kite)", p.read_text())]


def test_the_image_installs_no_benchmark_code() -> None:
    assert "tickpipe-bench" not in _closure("tickpipe")  # a development dependency only
    syncs = [line for line in (ROOT / "deploy" / "Dockerfile").read_text().splitlines() if "uv sync" in line]
    assert syncs and all("--no-install-package tickpipe-bench" in line for line in syncs)
    shipped = _sources("src", "libs", "services")
    assert not [p for p in shipped if re.search(r"^(from|import) tickpipe_bench", p.read_text(), re.M)]
