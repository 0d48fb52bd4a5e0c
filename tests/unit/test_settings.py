"""Settings are read in one place, with defaults and clear refusals."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest

from application.settings import SETTINGS, SettingsError, load


def test_defaults_serve_the_embedded_host() -> None:
    settings = load({})
    assert settings.data_dir == Path("./data")
    assert settings.event_store == "sqlite"
    assert settings.api_keys == ()
    assert settings.deprecated_versions_until == date(2027, 5, 31)


def test_api_keys_are_a_comma_separated_list() -> None:
    assert load({"STOCKSTREAM_API_KEYS": " a, b ,,c"}).api_keys == ("a", "b", "c")


def test_the_deprecation_period_can_be_moved_or_ended() -> None:
    assert load({"STOCKSTREAM_DEPRECATED_VERSIONS_UNTIL": "2030-01-31"}
                ).deprecated_versions_until == date(2030, 1, 31)
    assert load({"STOCKSTREAM_DEPRECATED_VERSIONS_UNTIL": ""}).deprecated_versions_until is None


@pytest.mark.parametrize(("name", "value"), [
    ("STOCKSTREAM_EVENT_STORE", "postgres"),
    ("STOCKSTREAM_DEPRECATED_VERSIONS_UNTIL", "next year"),
    ("PORT", "http"),
])
def test_a_bad_value_is_refused_naming_the_setting(name: str, value: str) -> None:
    with pytest.raises(SettingsError, match=name):
        load({name: value})


def test_cosmos_needs_its_endpoint() -> None:
    with pytest.raises(SettingsError, match="COSMOS__accountEndpoint"):
        load({"STOCKSTREAM_EVENT_STORE": "cosmos"})


def test_every_setting_is_documented() -> None:
    assert all(s.description.strip() for s in SETTINGS)
    assert len({s.name for s in SETTINGS}) == len(SETTINGS)
