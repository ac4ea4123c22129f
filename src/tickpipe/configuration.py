"""docs/configuration.md, generated from the settings classes: every variable, its default and meaning.

    uv run python -m tickpipe.configuration > docs/configuration.md

A test compares the page with this output, so a setting added without regenerating it fails the suite.
"""

from __future__ import annotations

import inspect
from enum import Enum
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

from pydantic import SecretStr
from pydantic_settings import BaseSettings

from tickpipe_brokers import SourceSettings
from tickpipe_brokers.registry import ADAPTERS
from tickpipe_core.health import HEALTH_FILE_ENV
from tickpipe_core.settings import (
    AmqpSettings,
    AnalyticsSettings,
    DatabaseSettings,
    IngestSettings,
    InstrumentSettings,
    LogSettings,
    MetricsSettings,
    ServeSettings,
    WorkerSettings,
    env_names,
)

# In the order a user meets them: where the data goes, which broker, then each service.
SETTINGS: list[type[BaseSettings]] = [
    DatabaseSettings,
    AmqpSettings,
    SourceSettings,
    *(a.settings_class for a in ADAPTERS.values()),
    InstrumentSettings,
    IngestSettings,
    WorkerSettings,
    AnalyticsSettings,
    ServeSettings,
    MetricsSettings,
    LogSettings,
]

# Read straight from the environment, outside the settings classes (where each is used says why).
PROCESS_VARIABLES = [
    ("TICKPIPE_MIGRATIONS_DIR", "the checkout's `database/migrations`", "Where `tickpipe migrate` finds the files."),
    (HEALTH_FILE_ENV, "unset (set in the image)", "Heartbeat file `tickpipe health` checks without METRICS_PORT."),
    (
        "TICKPIPE_ON_TERMINAL",
        "unset (`wait` in the image)",
        "`wait`: after a terminal error, stay up (unhealthy) instead of exiting, so that a restart policy"
        " cannot crash-loop.",
    ),
]

HEADER = """\
# Configuration

Every setting is an environment variable (or a line of a `.env` file in the working directory; see
`.env.example`). A missing or malformed value stops the command at start with one line naming the
variable. `tickpipe COMMAND --help` lists the variables each command reads. A secret (a token, a
password) may come from a file instead, named by the same variable with `_FILE`, and is redacted from
every log line.

This page is generated from the settings classes (`uv run python -m tickpipe.configuration`)."""


def _default(info: Any) -> str:
    extra = info.json_schema_extra if isinstance(info.json_schema_extra, dict) else {}
    if "default_text" in extra:
        return str(extra["default_text"])
    if info.default_factory is not None:
        return "(computed)"
    value = info.default
    if value is None or value == "":
        return "-"
    if isinstance(value, SecretStr):
        return "-"
    if isinstance(value, Enum):
        value = value.value
    if isinstance(value, Path):
        home = str(Path.home())
        text = str(value)
        return "~" + text[len(home) :] if text.startswith(home) else text
    return str(value)


def _meaning(info: Any) -> str:
    """The description, and the values a closed set allows."""
    text = info.description or ""
    args = [a for a in get_args(info.annotation) if a is not type(None)]
    if get_origin(info.annotation) is Literal:
        text += " One of: " + ", ".join(f"`{a}`" for a in args) + "."
    return text


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def render() -> str:
    out = [HEADER]
    for cls in SETTINGS:
        title = " ".join(inspect.cleandoc(cls.__doc__ or cls.__name__).split("\n\n")[0].split()).rstrip(".")
        out += ["", f"## {title}", "", "| variable | default | meaning |", "|---|---|---|"]
        for name, variable in env_names(cls).items():
            info = cls.model_fields[name]
            out.append(f"| `{variable}` | `{_cell(_default(info))}` | {_cell(_meaning(info))} |")
    out += ["", "## The process", "", "| variable | default | meaning |", "|---|---|---|"]
    out += [f"| `{name}` | {default} | {meaning} |" for name, default, meaning in PROCESS_VARIABLES]
    return "\n".join(out) + "\n"


if __name__ == "__main__":
    print(render(), end="")
