"""Settings are read in one place, with defaults and clear refusals."""

from __future__ import annotations

import ast
import re
from datetime import date
from pathlib import Path

import pytest

from adapters.cosmos.persistence import ENV_KEYS as COSMOS_LIBRARY_KEYS
from adapters.event_store import IDEMPOTENCY_WINDOW
from adapters.sqlite import SQLiteStockItems
from application.cadence import DEFAULT_CADENCE, CadenceError, CadencePolicy
from application.commands import COUNT_MAX_AGE
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


# --- every setting the code reads is declared ---------------------------------------------

ROOT = Path(__file__).resolve().parents[2]
PRODUCTION = ("domain", "application", "adapters", "contracts", "projections", "functions",
              "composition", "local", "cli", "reports", "bench", "function_app.py")
SETTING_LIKE = re.compile(
    r"^(STOCKSTREAM_|COSMOS|SERVICEBUS|AZURE_|APPLICATIONINSIGHTS_|AzureWebJobs|FUNCTIONS_|"
    r"WEBSITE_)[A-Za-z0-9_]*$")
"""Names of Stockstream's own settings and of the Azure ones (Functions host, identity,
Cosmos DB, Service Bus, Application Insights)."""


def _is_environ(node: ast.AST) -> bool:
    """``os.environ`` or a bare ``environ``."""
    return (isinstance(node, ast.Attribute) and node.attr == "environ") or (
        isinstance(node, ast.Name) and node.id == "environ")


def environment_reads(source: str) -> list[tuple[int, str]]:
    """(line, key) of every literal key read from the process environment:
    ``os.environ[KEY]``, ``os.environ.get(KEY)``, ``KEY in os.environ``, ``os.getenv(KEY)``;
    a key that is not a string literal is reported as ``<computed>``."""
    reads: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(source)):
        key: ast.expr | None = None
        if isinstance(node, ast.Subscript) and _is_environ(node.value):
            key = node.slice
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and (
                (node.func.attr in ("get", "pop", "setdefault") and _is_environ(node.func.value))
                or (node.func.attr == "getenv")) and node.args:
            key = node.args[0]
        elif isinstance(node, ast.Compare) and any(_is_environ(c) for c in node.comparators):
            key = node.left
        if key is not None:
            name = key.value if isinstance(key, ast.Constant) and isinstance(key.value, str) else (
                "<computed>")
            assert isinstance(node, ast.expr)  # the subscript, call or comparison
            reads.append((node.lineno, name))
    return reads


def setting_names(source: str) -> list[tuple[int, str]]:
    """(line, text) of every string literal that is a setting's name, and of every f-string
    whose literal start is one (``f"STOCKSTREAM_DRIFT_HOLD_{kind}"``: its prefix)."""
    found = []
    tree = ast.parse(source)
    in_fstrings = {id(v) for n in ast.walk(tree) if isinstance(n, ast.JoinedStr) for v in n.values}
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and SETTING_LIKE.match(
                node.value):
            found.append((node.lineno, node.value + ("*" if id(node) in in_fstrings else "")))
    return found


def _production_sources() -> dict[str, str]:
    files: list[Path] = []
    for entry in PRODUCTION:
        path = ROOT / entry
        files += [path] if path.is_file() else sorted(path.rglob("*.py"))
    return {str(p.relative_to(ROOT)): p.read_text() for p in files}


def _undeclared(sources: dict[str, str]) -> list[str]:
    declared = {s.name for s in SETTINGS}
    library = set(COSMOS_LIBRARY_KEYS)  # handed to the store in-process, never read from env
    problems = []
    for path, source in sources.items():
        for line, key in environment_reads(source):
            if path != "application/settings.py" and key not in declared:
                problems.append(f"{path}:{line} reads {key} from the environment")
        for line, name in setting_names(source):
            if name.endswith("*"):
                ok = any(d.startswith(name[:-1]) for d in declared)
            else:  # a trigger's identity-based connection names its settings' prefix
                ok = name in declared or name in library or any(
                    d.startswith(f"{name}__") for d in declared)
            if not ok:
                problems.append(f"{path}:{line} names the undeclared setting {name}")
    return problems


def test_the_code_reads_no_setting_that_settings_does_not_declare() -> None:
    assert _undeclared(_production_sources()) == []


@pytest.mark.parametrize("source", [
    'import os\nos.environ.get("STOCKSTREAM_SECRET_SWITCH")\n',
    'import os\nos.getenv("AZURE_REGION", "x")\n',
    'from os import environ\nenviron["COSMOS_THROUGHPUT"]\n',
    'import os\nflag = "WEBSITE_SITE_NAME" in os.environ\n',
    'import os\nname = "STOCKSTREAM_" + "SWITCH"\nos.environ[name]\n',
    'def read(env):\n    return env.get("STOCKSTREAM_OTHER_SWITCH")\n',
])
def test_the_settings_scan_catches_an_undeclared_read(source: str) -> None:
    assert _undeclared({"adapters/example.py": source})


def test_the_event_store_reads_nothing_from_the_process_environment(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    elsewhere = tmp_path / "elsewhere.db"
    monkeypatch.setenv("STOCKSTREAM_SQLITE_DBNAME", str(elsewhere))  # the library's prefix
    monkeypatch.setenv("SQLITE_DBNAME", str(elsewhere))
    store = SQLiteStockItems(tmp_path / "events.db")
    try:
        assert store.app.env.get("SQLITE_DBNAME") == str(tmp_path / "events.db")
    finally:
        store.close()
    assert not elsewhere.exists()


def test_a_cadence_is_validated_by_the_count_schedule_s_own_rule() -> None:
    assert load({"STOCKSTREAM_COUNT_CADENCE": "A=2,B=14,C=60"}).count_cadence == "A=2,B=14,C=60"
    for bad in ("A=1,B=7", "A=0,B=7,C=30", "A=1,B=7,C=x", "D=1"):
        with pytest.raises(SettingsError, match="STOCKSTREAM_COUNT_CADENCE"):
            load({"STOCKSTREAM_COUNT_CADENCE": bad})
        with pytest.raises(CadenceError):
            CadencePolicy.parse(bad)


def test_the_declared_defaults_are_the_components_defaults() -> None:
    settings = load({})
    assert settings.count_cadence == DEFAULT_CADENCE
    assert settings.count_max_age == COUNT_MAX_AGE
    assert settings.idempotency_window == IDEMPOTENCY_WINDOW
    assert settings.port == 7071 and settings.cosmos_database == "stockstream"


@pytest.mark.parametrize("name", ["STOCKSTREAM_DRIFT_HOLD_PERCENT",
                                  "STOCKSTREAM_ADJUSTMENT_HOLD_PERCENT",
                                  "STOCKSTREAM_DRIFT_HOLD_UNITS"])
def test_off_turns_a_hold_threshold_off_and_empty_means_its_default(name):
    field = name.removeprefix("STOCKSTREAM_").lower()
    assert getattr(load({name: "off"}), field) is None
    assert getattr(load({name: "OFF"}), field) is None
    default = next(s.default for s in SETTINGS if s.name == name)
    expected = None if default is None else float(default)
    assert getattr(load({name: ""}), field) == expected
    with pytest.raises(SettingsError):
        load({name: "never"})
