"""docs/configuration.md is the settings classes as they are: a setting added without the page fails here."""

from __future__ import annotations

from pathlib import Path

import tickpipe.cli  # noqa: F401  # every command's settings classes, imported as the CLI imports them
from tickpipe.configuration import SETTINGS, render
from tickpipe_core.settings import Settings

PAGE = Path(__file__).parents[2] / "docs" / "configuration.md"


def _subclasses(cls: type[Settings]) -> set[type[Settings]]:
    found: set[type[Settings]] = set()
    for sub in cls.__subclasses__():
        found |= {sub} | _subclasses(sub)
    return found


def test_the_configuration_page_is_generated_from_the_settings_as_they_are() -> None:
    assert PAGE.read_text() == render(), "stale: run `uv run python -m tickpipe.configuration > docs/configuration.md`"


def test_every_settings_class_is_on_the_page() -> None:
    concrete = {c for c in _subclasses(Settings) if c.model_fields and not c.__name__.startswith("Broker")}
    assert concrete - set(SETTINGS) == set()
