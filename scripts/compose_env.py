"""Make the secrets `docker compose up` needs: random passwords, never defaults, each in its own file.

Writes deploy/secrets/ (ignored by git, mode 0700): one file per password (the PostgreSQL superuser,
each service's database user, each service's RabbitMQ user, Grafana's admin) and
rabbitmq-definitions.json (deploy/rabbitmq/definitions.json with each user's password hash). Compose
hands each service only its own files, as *_FILE. Existing passwords are kept: run it again safely.
It also copies .env.example to .env (the broker settings to fill in) when there is none, with a random
SERVE_TOKEN for the read side, and prints the page's address with it.

    python3 scripts/compose_env.py
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import secrets
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PASSWORDS = (
    "postgres_password",  # the superuser: migrations only
    "db_ingest_password",
    "db_writer_password",
    "db_analyst_password",
    "amqp_admin_password",
    "amqp_ingest_password",
    "amqp_worker_password",
    "amqp_serve_password",
    "grafana_admin_password",
)
_AMQP_USERS = {"tickpipe-admin": "amqp_admin_password", "tickpipe-ingest": "amqp_ingest_password",
               "tickpipe-worker": "amqp_worker_password", "tickpipe-serve": "amqp_serve_password"}  # fmt: skip


def rabbitmq_hash(password: str) -> str:
    """RabbitMQ's rabbit_password_hashing_sha256: base64(salt + sha256(salt + password)), 4 bytes of salt."""
    salt = os.urandom(4)
    return base64.b64encode(salt + hashlib.sha256(salt + password.encode()).digest()).decode()


def make(directory: Path) -> dict[str, str]:
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    passwords = {}
    for name in PASSWORDS:
        path = directory / name
        if not path.exists():
            path.write_text(secrets.token_urlsafe(24) + "\n")
            path.chmod(0o600)
        passwords[name] = path.read_text().strip()
    definitions = json.loads((ROOT / "deploy" / "rabbitmq" / "definitions.json").read_text())
    for user in definitions["users"]:
        user["password_hash"] = rabbitmq_hash(passwords[_AMQP_USERS[user["name"]]])
        user["hashing_algorithm"] = "rabbit_password_hashing_sha256"
    definitions.pop("_comment", None)
    out = directory / "rabbitmq-definitions.json"
    out.write_text(json.dumps(definitions, indent=2) + "\n")
    out.chmod(0o644)  # the broker's user reads it in its container
    return passwords


def main() -> None:
    """Into deploy/secrets/ (and a .env beside docker-compose.yml), or only the secrets into a given directory."""
    if len(sys.argv) > 1:
        make(Path(sys.argv[1]))
        return
    make(ROOT / "deploy" / "secrets")
    env = ROOT / ".env"
    if not env.exists():
        token = secrets.token_urlsafe(24)
        env.write_text(
            (ROOT / ".env.example").read_text()
            + f"\n# Made by compose_env.py: the read side's token.\nSERVE_TOKEN={token}\n"
        )
        env.chmod(0o600)
        print(f"the page, once up: http://127.0.0.1:8000/?token={token}", file=sys.stderr)
    print(f"secrets in deploy/secrets/ (kept out of git); broker settings in {env}", file=sys.stderr)


if __name__ == "__main__":
    main()
