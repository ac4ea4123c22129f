"""Settings: defaults that work here, one clear line per bad variable, secrets never printed."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest
from psycopg.conninfo import conninfo_to_dict

from tickpipe_brokers.dhan.settings import DhanSettings
from tickpipe_core import ConfigError, redact
from tickpipe_core.settings import AmqpSettings, DatabaseSettings, load, redact_url


def test_defaults_point_at_the_local_services(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("DATABASE_URL", "AMQP_URL"):
        monkeypatch.delenv(var, raising=False)
    assert load(DatabaseSettings).database_url == "postgresql://postgres@127.0.0.1:5432/tickpipe"
    assert load(AmqpSettings).amqp_url.startswith("amqp://guest:guest@127.0.0.1:5672")


def test_malformed_setting_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DHAN_FEED_MODE", "everything")
    with pytest.raises(ConfigError, match=r"^DHAN_FEED_MODE: Input should be 'ticker', 'quote' or 'full'"):
        load(DhanSettings)


def test_malformed_url_names_the_variable_without_echoing_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "mysql://u:hunter2@h/db")
    with pytest.raises(ConfigError) as e:
        load(DatabaseSettings)
    assert str(e.value).startswith("DATABASE_URL: ")
    assert "hunter2" not in str(e.value)


def test_missing_credentials_name_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("DHAN_CLIENT_ID", "DHAN_ACCESS_TOKEN", "DHAN_ACCESS_TOKEN_FILE"):
        monkeypatch.delenv(var, raising=False)
    with pytest.raises(ConfigError, match="^DHAN_CLIENT_ID"):
        DhanSettings().credentials()
    with pytest.raises(ConfigError, match="^DHAN_ACCESS_TOKEN"):
        DhanSettings(client_id="1").credentials()


def test_token_file_is_read_and_the_token_stays_secret(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "token"
    path.write_text("s3cr3t-token\n")
    monkeypatch.delenv("DHAN_ACCESS_TOKEN", raising=False)
    settings = DhanSettings(client_id="1", access_token_file=path)
    client_id, token = settings.credentials()
    assert (client_id, token.get_secret_value()) == ("1", "s3cr3t-token")
    assert "s3cr3t" not in repr(token) and "s3cr3t" not in repr(settings)


def test_instrument_list_is_parsed_and_checked() -> None:
    assert DhanSettings(instruments="nse_fno:49229, IDX_I:13").instrument_list() == [("NSE_FNO", 49229), ("IDX_I", 13)]
    with pytest.raises(ConfigError, match="^DHAN_INSTRUMENTS"):
        DhanSettings(instruments="NSE_FNO-49229").instrument_list()


def test_redact_url_hides_password_and_query() -> None:
    assert redact_url("postgresql://u:pw@h:5432/db") == "postgresql://u:***@h:5432/db"
    assert redact_url("wss://feed?token=abc&clientId=1") == "wss://feed?***"


def test_passwords_come_from_files_into_the_urls_and_are_redacted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = tmp_path / "password"
    secret.write_text("p@ss/w:rd-1234\n")
    monkeypatch.setenv("DATABASE_URL", "postgresql://tickpipe_writer@db:5432/tickpipe")
    monkeypatch.setenv("DATABASE_PASSWORD_FILE", str(secret))
    monkeypatch.setenv("AMQP_URL", "amqp://tickpipe-worker@rabbitmq:5672/")
    monkeypatch.setenv("AMQP_PASSWORD_FILE", str(secret))
    database, amqp = load(DatabaseSettings).database_url, load(AmqpSettings).amqp_url
    assert conninfo_to_dict(database)["password"] == "p@ss/w:rd-1234"
    assert urlsplit(amqp).password is not None and unquote(urlsplit(amqp).password or "") == "p@ss/w:rd-1234"
    for url in (database, amqp):
        assert "p%40ss" not in redact(f"connecting to {url}") and "p@ss" not in redact(f"error: {url}")
    monkeypatch.setenv("DATABASE_PASSWORD_FILE", str(tmp_path / "missing"))
    with pytest.raises(ConfigError, match="DATABASE_PASSWORD_FILE: cannot read"):
        load(DatabaseSettings)


def test_an_empty_serve_token_is_no_token_and_auth_token_refuses_to_start_without_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from tickpipe_core.settings import ServeSettings

    monkeypatch.setenv("SERVE_TOKEN", "  ")
    assert load(ServeSettings).token is None and not load(ServeSettings).requires_token
    monkeypatch.setenv("SERVE_AUTH", "token")  # what compose sets
    with pytest.raises(ConfigError, match=r"^SERVE_AUTH=token needs SERVE_TOKEN"):
        load(ServeSettings)
    monkeypatch.setenv("SERVE_TOKEN", "s3cret")
    assert load(ServeSettings).requires_token
    monkeypatch.setenv("SERVE_AUTH", "none")
    with pytest.raises(ConfigError, match="choose one"):
        load(ServeSettings)
