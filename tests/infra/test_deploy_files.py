"""host.json, local.settings.example.json, azure.yaml and the parameter files."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
import yaml

from application.settings import SETTINGS
from tests.infra import bicep_model as bm


def _host() -> dict[str, Any]:
    host: dict[str, Any] = json.loads((bm.ROOT / "host.json").read_text())
    return host


def _timespan_seconds(value: str) -> float:
    hours, minutes, seconds = value.split(":")
    return int(hours) * 3600 + int(minutes) * 60 + float(seconds)


def test_host_json_uses_extension_bundle_4_and_never_samples_away_failures():
    host = _host()
    assert host["version"] == "2.0"
    assert host["extensionBundle"] == {"id": "Microsoft.Azure.Functions.ExtensionBundle",
                                       "version": "[4.*, 5.0.0)"}
    sampling = host["logging"]["applicationInsights"]["samplingSettings"]
    assert set(sampling["excludedTypes"].split(";")) >= {"Request", "Exception"}
    assert "telemetryMode" not in host  # classic mode: requests/failed feeds an alert


CAPACITY_DOC = bm.ROOT / "docs" / "azure-capacity.md"


def _chosen_settings() -> dict[str, str]:
    """The "Settings chosen" table of docs/azure-capacity.md: setting → value."""
    text = CAPACITY_DOC.read_text()
    section = text.split("## Settings chosen", 1)[1].split("\n## ", 1)[0]
    return dict(re.findall(r"^\| ([^|]+?) \| `([^`]+)` \|", section, re.MULTILINE))


def _binding(function: str) -> dict[str, object]:
    import function_app

    (found,) = [f for f in function_app.app.get_functions()
                if f.get_function_name() == function]
    return next(json.loads(b) for b in found.get_raw_bindings() if "Trigger" in b)


def test_host_json_and_the_triggers_use_the_settings_the_capacity_model_chose():
    chosen = _chosen_settings()
    bus = _host()["extensions"]["serviceBus"]
    host_rows = {k: v for k, v in chosen.items() if k.startswith("`serviceBus.")}
    assert len(host_rows) >= 6
    for row, value in host_rows.items():
        key = row.strip("`").split(".", 1)[1]
        assert str(bus[key]) == value, (key, bus[key], value)
    trigger_rows = [row for row in chosen if row.startswith("trigger ")]
    assert len(trigger_rows) >= 4
    for row in trigger_rows:
        function, key = (part.strip("`") for part in row.removeprefix("trigger ").split(" "))
        actual = _binding(function)[key]
        assert json.dumps(actual) == chosen[row], (row, actual, chosen[row])
    assert chosen["Bicep subscription `availability` `requiresSession`"] == "false"


def test_host_json_service_bus_settings_are_coherent():
    bus = _host()["extensions"]["serviceBus"]
    # The projection trigger has no sessions: concurrency and prefetch are what count.
    assert bus["maxConcurrentCalls"] >= 8
    assert 0 < bus["prefetchCount"] <= 2 * bus["maxConcurrentCalls"]
    assert bus["autoCompleteMessages"] is True
    assert _timespan_seconds(bus["maxAutoLockRenewalDuration"]) >= 60
    # For a session trigger added later: per-session order, and an idle session gives its
    # slot back quickly (unset, it holds it for the one-minute try timeout).
    assert bus["maxConcurrentCallsPerSession"] == 1
    assert _timespan_seconds(bus["sessionIdleTimeout"]) <= 1


def test_local_settings_example_lists_every_setting_with_its_default_and_description():
    example = json.loads((bm.ROOT / "local.settings.example.json").read_text())
    values, descriptions = example["Values"], example["Descriptions"]
    for setting in SETTINGS:
        assert values.get(setting.name) == (setting.default or ""), setting.name
        assert descriptions.get(setting.name) == (
            f"[{setting.scope}] {setting.description}"), setting.name
    assert set(descriptions) == {s.name for s in SETTINGS}
    assert values["FUNCTIONS_WORKER_RUNTIME"] == "python"


def test_azure_yaml_provisions_the_bicep_and_deploys_the_function_app():
    azure = yaml.safe_load((bm.ROOT / "azure.yaml").read_text())
    assert azure["infra"] == {"provider": "bicep", "path": "bicep", "module": "main"}
    assert azure["services"]["api"] == {"project": ".", "language": "python", "host": "function"}
    site = bm.one("Microsoft.Web/sites")
    tags = bm.function(site.body["tags"], "union")
    assert tags is not None and tags["arg_2"] == {"'azd-service-name'": "api"}


PARAMETER_FILES = [bm.BICEP / "main.parameters.json",
                   *sorted((bm.BICEP / "parameters").glob("*.parameters.json"))]


def _main_parameters() -> dict[str, Any]:
    parameters: dict[str, Any] = bm.parse(bm.MAIN)["parameters"]
    return parameters


def _decorators(parameter: dict[str, Any]) -> dict[str, Any]:
    return {d["type"]: d.get("argument") for d in parameter["decorators"]}


def test_there_are_dev_and_prod_parameter_files():
    assert {p.name for p in PARAMETER_FILES} >= {"main.parameters.json", "dev.parameters.json",
                                                  "prod.parameters.json"}


@pytest.mark.parametrize("path", PARAMETER_FILES, ids=lambda p: p.name)
def test_parameter_files_name_real_parameters_with_allowed_values(path):
    declared = _main_parameters()
    given = json.loads(path.read_text())["parameters"]
    assert set(given) <= set(declared), set(given) - set(declared)
    required = {name for name, p in declared.items() if "default" not in p}
    assert required <= set(given)
    for name, entry in given.items():
        value = entry["value"]
        if isinstance(value, str) and "${" in value:
            value = _azd_default(value, declared[name]["type"])
            if value == "":
                continue
        rules = _decorators(declared[name])
        if "allowed" in rules:
            assert value in rules["allowed"], (name, value)
        if "min_value" in rules:
            assert value >= rules["min_value"], (name, value)
        if "max_value" in rules:
            assert value <= rules["max_value"], (name, value)
    teams = given.get("downstreamSubscriptions", {"value": []})["value"]
    if isinstance(teams, str):
        teams = _azd_default(teams, "array")
    for team in teams:
        assert downstream_subscription_problems(team) == [], team


AZD_VALUE = re.compile(r"\$\{([A-Z][A-Z0-9_]*)(?:=(.*))?\}")


def _azd_default(value: str, kind: str) -> object:
    """The value azd passes for ``${NAME=default}`` when the environment has no NAME: the
    default as written, parsed as JSON for array and object parameters (azd since
    February 2026, Azure/azure-dev#6694)."""
    match = AZD_VALUE.fullmatch(value)
    assert match, value
    default = match.group(2) or ""
    return json.loads(default) if kind in ("array", "object") else default


def test_azd_parameters_take_name_and_region_from_the_azd_environment():
    given = json.loads((bm.BICEP / "main.parameters.json").read_text())["parameters"]
    assert given["environmentName"]["value"] == "${AZURE_ENV_NAME}"
    assert given["location"]["value"] == "${AZURE_LOCATION}"


AZD_ONLY_BY_TEMPLATE = {"resourceGroupName", "tags"}
"""Parameters azd environments leave to the template: azd names the resource group itself,
and tags are fixed by the template (azd-env-name, application)."""


def test_azd_passes_every_string_and_array_parameter_with_the_template_default():
    # An operator or a team changes a deployment by an azd environment value (or a pull
    # request to the template's default); a parameter main.parameters.json does not pass
    # would change nothing for an azd environment. Integer parameters (capacity, alert
    # thresholds) are set in the parameter files or as template defaults: azd passes
    # environment values as strings, and an int parameter would refuse them.
    declared = _main_parameters()
    given = json.loads((bm.BICEP / "main.parameters.json").read_text())["parameters"]
    expected = {name for name, p in declared.items()
                if p["type"] in ("string", "array", "object")} - AZD_ONLY_BY_TEMPLATE
    assert set(given) == expected
    names = set()
    for name, entry in given.items():
        match = AZD_VALUE.fullmatch(entry["value"])
        assert match, (name, entry)
        names.add(match.group(1))
        if declared[name].get("default") is not None:  # None: required, no default
            assert _azd_default(entry["value"], declared[name]["type"]) == (
                declared[name]["default"]), name
    assert len(names) == len(given)  # one environment value per parameter


def test_the_deploy_guide_names_every_azd_environment_value():
    given = json.loads((bm.BICEP / "main.parameters.json").read_text())["parameters"]
    guide = (bm.ROOT / "docs" / "deploy.md").read_text()
    table = dict(re.findall(r"^\| `([A-Z][A-Z0-9_]*)` \| `([A-Za-z]+)` \|", guide, re.MULTILINE))
    for name, entry in given.items():
        found = AZD_VALUE.fullmatch(entry["value"])
        assert found is not None, (name, entry["value"])
        env = found.group(1)
        if env.startswith("AZURE_"):
            continue
        assert table.get(env) == name, (env, name)


def downstream_subscription_problems(team: object) -> list[str]:
    """Why a downstreamSubscriptions entry would not deploy as intended (empty: fine)."""
    if not isinstance(team, dict):
        return ["not an object"]
    problems = []
    if not {"name", "requiresSession", "filter"} <= set(team) <= {
            "name", "requiresSession", "filter", "principalId", "principalType"}:
        problems.append("keys must be name, requiresSession, filter and optionally "
                        f"principalId, principalType; got {sorted(team)}")
    if "principalId" in team and not re.fullmatch(
            r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}",
            str(team["principalId"]).lower()):
        problems.append("principalId must be the object id (a GUID) of the team's principal")
    if team.get("principalType", "ServicePrincipal") not in ("ServicePrincipal", "Group", "User"):
        problems.append("principalType must be ServicePrincipal, Group or User")
    if "principalType" in team and "principalId" not in team:
        problems.append("principalType needs a principalId")
    name = team.get("name")
    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,48}[A-Za-z0-9]",
                                                     name):
        problems.append("name: 2-50 letters, digits, '.', '_', '-'")
    elif name in ("availability", "all"):
        problems.append(f"name {name!r} is reserved")
    if not isinstance(team.get("requiresSession"), bool):
        problems.append("requiresSession must be true or false")
    filter_ = team.get("filter")
    if not isinstance(filter_, dict) or len(filter_) != 1:
        problems.append("filter needs exactly one of correlationProperties or sql")
    elif "sql" in filter_:
        if not isinstance(filter_["sql"], str) or not filter_["sql"].strip():
            problems.append("filter.sql must be a SQL filter expression")
        elif "replayTarget" in filter_["sql"]:
            problems.append("filter.sql may not use replayTarget (added by the template)")
    elif "correlationProperties" in filter_:
        props = filter_["correlationProperties"]
        if not isinstance(props, dict) or not props:
            problems.append("filter.correlationProperties must be a non-empty object")
        elif "replayTarget" in props:
            problems.append("filter.correlationProperties may not set replayTarget")
    else:
        problems.append("filter needs exactly one of correlationProperties or sql")
    return problems


@pytest.mark.parametrize(("team", "ok"), [
    ({"name": "erp-sync", "requiresSession": True,
      "filter": {"correlationProperties": {"type": "Stockstream.StockCounted.v1"}}}, True),
    ({"name": "web-storefront", "requiresSession": False,
      "filter": {"sql": "location LIKE 'WEB-%'"}}, True),
    ({"name": "availability", "requiresSession": True,
      "filter": {"sql": "1=1"}}, False),
    ({"name": "erp-sync", "requiresSession": True,
      "filter": {"correlationProperties": {"replayTarget": "erp-sync"}}}, False),
    ({"name": "erp-sync", "requiresSession": "yes", "filter": {"sql": "1=1"}}, False),
    ({"name": "erp-sync", "requiresSession": True, "filter": {}}, False),
    ({"name": "finance", "requiresSession": False, "filter": {"sql": "type LIKE '%Adjusted%'"},
      "principalId": "3f2504e0-4f89-11d3-9a0c-0305e82c3301"}, True),
    ({"name": "finance", "requiresSession": False, "filter": {"sql": "1=1"},
      "principalId": "3f2504e0-4f89-11d3-9a0c-0305e82c3301", "principalType": "Group"}, True),
    ({"name": "finance", "requiresSession": False, "filter": {"sql": "1=1"},
      "principalId": "finance-team"}, False),
    ({"name": "finance", "requiresSession": False, "filter": {"sql": "1=1"},
      "principalType": "Group"}, False),
    ({"name": "finance", "requiresSession": False, "filter": {"sql": "1=1"},
      "principalId": "3f2504e0-4f89-11d3-9a0c-0305e82c3301", "principalType": "Robot"}, False),
])
def test_downstream_subscription_entries_are_checked(team, ok):
    assert (downstream_subscription_problems(team) == []) is ok
