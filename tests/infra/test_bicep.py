"""Structural tests of the Bicep templates: the security and messaging contract, offline.

The Bicep compiler cannot be downloaded on the build machines, so these tests parse every
template with pycep-parser and assert what Stockstream relies on: sessions, duplicate
detection, local auth off, least-privilege role assignments with the right role ids, no
keys or connection strings, Flex Consumption on Python 3.11, the alerts and their metrics.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest

from adapters import telemetry
from application.settings import SETTINGS, Setting
from contracts.topology import AVAILABILITY_SUBSCRIPTION, TOPIC
from tests.infra import bicep_model as bm

ROLE = {
    "servicebus_data_sender": "69a216fc-b8fb-44d8-bc22-1f3c2cd27a39",
    "servicebus_data_receiver": "4f6d3b9b-027b-4f4c-9142-0e5a2a2247e0",
    "servicebus_data_owner": "090c5cfd-751d-490a-894a-3ce6f1109419",
    "storage_blob_data_owner": "b7e6dc6d-f1e8-4753-8033-0f276bb0955b",
    "monitoring_metrics_publisher": "3913510d-42f4-4e42-8a64-420c390055eb",
}
COSMOS_DATA_CONTRIBUTOR = "00000000-0000-0000-0000-000000000002"
BROAD_ROLES = {
    "8e3af657-a8ff-443c-a75c-2fe8c4bcb635",  # Owner
    "b24988ac-6180-42a0-ab88-20f7382dd24c",  # Contributor
    "18d7d88d-d35e-4fb5-a5c3-7773c20a72d9",  # User Access Administrator
}


@pytest.mark.parametrize("path", bm.bicep_files(), ids=lambda p: str(p.relative_to(bm.BICEP)))
def test_every_bicep_file_parses(path):
    parsed = bm.parse(path)
    assert parsed.get("resources") or parsed.get("modules"), f"{path} declares nothing"
    # The spread operator is valid Bicep but pycep cannot parse it; keep it out.
    assert not re.search(r"\.\.\.[A-Za-z_{\[]", path.read_text())


def test_main_deploys_every_module_file():
    used = {m["detail"]["path"] for m in bm.parse(bm.MAIN)["modules"].values()}
    on_disk = {f"modules/{p.name}" for p in (bm.BICEP / "modules").glob("*.bicep")}
    assert used == on_disk


# --- no keys, no connection strings -------------------------------------------------------

SECRET_PATTERNS = re.compile(
    r"listkeys|listconnectionstrings|listaccountsas|listservicesas|primarykey|secondarykey"
    r"|primarymasterkey|accountkey|sharedaccesskey|authorizationrules|@secure",
    re.IGNORECASE,
)


def _deployment_files() -> Iterator[Path]:
    yield from bm.bicep_files()
    yield from sorted(bm.BICEP.rglob("*.json"))
    yield bm.ROOT / "azure.yaml"


def test_no_keys_or_connection_strings_anywhere_in_the_deployment():
    for path in _deployment_files():
        text = path.read_text()
        assert not SECRET_PATTERNS.search(text), f"{path}: {SECRET_PATTERNS.search(text)}"
        for line in text.splitlines():
            if re.search(r"connection_?string", line, re.IGNORECASE):
                # The only one: Application Insights' ingestion endpoint, whose ingestion
                # needs an Entra token because local auth is disabled on the component.
                assert line.strip() == (
                    "APPLICATIONINSIGHTS_CONNECTION_STRING: appInsights.properties.ConnectionString"
                ), f"{path}: {line.strip()}"


def test_local_auth_is_disabled_on_cosmos_service_bus_storage_and_app_insights():
    cosmos = bm.one("Microsoft.DocumentDB/databaseAccounts")
    assert cosmos.properties["disableLocalAuth"] is True
    assert cosmos.properties["disableKeyBasedMetadataWriteAccess"] is True
    namespace = bm.one("Microsoft.ServiceBus/namespaces")
    union = bm.function(namespace.body["properties"], "union")
    assert union is not None and union["arg_1"]["disableLocalAuth"] is True
    storage = bm.one("Microsoft.Storage/storageAccounts")
    assert storage.properties["allowSharedKeyAccess"] is False
    assert storage.properties["allowBlobPublicAccess"] is False
    insights = [r for r in bm.of_type("Microsoft.Insights/components") if r.loop is None
                and not bm.parse(bm.BICEP / r.file)["resources"][r.symbol]["existing"]]
    assert len(insights) == 1 and insights[0].properties["DisableLocalAuth"] is True


# --- Cosmos DB ---------------------------------------------------------------------------

def _container(name: str) -> bm.Resource:
    return bm.one("Microsoft.DocumentDB/databaseAccounts/sqlDatabases/containers", name=name)


@pytest.mark.parametrize(("name", "key"), [
    ("events", "/originator_id"), ("snapshots", "/originator_id"), ("views", "/pk"),
    ("leases", "/id"), ("reconciliation", "/pk"), ("processes", "/originator_id"),
])
def test_cosmos_containers_have_the_partition_keys_the_code_uses(name, key):
    resource = _container(name).properties["resource"]
    assert resource["id"] == name
    assert resource["partitionKey"]["paths"] == [key]
    assert resource["partitionKey"]["kind"] == "Hash"


@pytest.mark.parametrize("name", ["events", "processes"])
def test_event_payloads_are_not_indexed(name):
    policy = _container(name).properties["resource"]["indexingPolicy"]
    assert {"path": "/state/?"} in policy["excludedPaths"]
    assert policy["indexingMode"] == "consistent"


def test_the_order_sweeps_query_paths_stay_indexed_on_the_processes_container():
    """The due query filters on kind and wake_at and orders by wake_at across
    partitions (adapters.cosmos.process_streams): excluding them would scan."""
    policy = _container("processes").properties["resource"]["indexingPolicy"]
    assert policy["includedPaths"] == [{"path": "/*"}]
    excluded = {p["path"] for p in policy["excludedPaths"]}
    assert not excluded & {"/kind/?", "/wake_at/?", "/*"}


def test_cosmos_account_has_continuous_backup_and_capacity_by_parameter():
    cosmos = bm.one("Microsoft.DocumentDB/databaseAccounts")
    assert cosmos.properties["backupPolicy"]["type"] == "Continuous"
    assert cosmos.properties["enableMultipleWriteLocations"] is False
    capabilities = cosmos.properties["capabilities"]["operator"]
    assert capabilities["type"] == "conditional"
    assert capabilities["operands"]["true_value"] == [{"name": "EnableServerless"}]
    main = bm.parse(bm.MAIN)["parameters"]
    allowed = next(d["argument"] for d in main["cosmosThroughputMode"]["decorators"]
                   if d["type"] == "allowed")
    assert set(allowed) == {"serverless", "autoscale"}


# --- Service Bus -------------------------------------------------------------------------

def test_topic_has_duplicate_detection_for_at_least_a_day():
    topic = bm.one("Microsoft.ServiceBus/namespaces/topics")
    assert topic.body["name"] == "topicName"
    assert bm.module("servicebus")["variables"]["topicName"]["value"] == TOPIC
    assert topic.properties["requiresDuplicateDetection"] is True
    assert topic.properties["duplicateDetectionHistoryTimeWindow"] == (
        "P${duplicateDetectionWindowDays}D")
    for parsed in (bm.parse(bm.MAIN), bm.module("servicebus")):
        decorators = {d["type"]: d.get("argument") for d in
                      parsed["parameters"]["duplicateDetectionWindowDays"]["decorators"]}
        assert decorators["min_value"] >= 1 and decorators["max_value"] <= 7


def _availability() -> bm.Resource:
    subs = bm.of_type("Microsoft.ServiceBus/namespaces/topics/subscriptions")
    found = [s for s in subs if s.symbol == "availability"]
    assert len(found) == 1
    assert bm.module("servicebus")["variables"]["availabilitySubscriptionName"]["value"] == (
        AVAILABILITY_SUBSCRIPTION)
    return found[0]


def test_availability_subscription_has_no_sessions_and_dead_letters():
    # The projection is order-independent; sessions would cap it (docs/azure-capacity.md).
    props = _availability().properties
    assert props["requiresSession"] is False
    assert props["deadLetteringOnMessageExpiration"] is True
    assert props["maxDeliveryCount"] == "maxDeliveryCount"
    assert bm.parse(bm.MAIN)["parameters"]["maxDeliveryCount"]["default"] == 10


def _parent_symbol(node: Any) -> str:
    if isinstance(node, str):
        return node
    operator = node["operator"]
    assert operator["type"] == "index_accessor"
    symbol = operator["operands"]["operand_1"]
    assert isinstance(symbol, str)
    return symbol


def _rules_of(parent_symbol: str) -> list[bm.Resource]:
    return [r for r in bm.of_type("Microsoft.ServiceBus/namespaces/topics/subscriptions/rules")
            if _parent_symbol(r.body["parent"]) == parent_symbol]


def test_availability_accepts_only_normal_publishing_and_replays_aimed_at_it():
    rules = _rules_of("availability")
    filters = sorted(r.properties["correlationFilter"]["properties"]["replayTarget"]
                     for r in rules)
    assert all(r.properties["filterType"] == "CorrelationFilter" for r in rules)
    assert filters == ["all", "availabilitySubscriptionName"]


def _depends_on(rule: bm.Resource) -> list[list[str]]:
    return [bm.accessor(d) or [_parent_symbol(d)] for d in rule.body.get("dependsOn", [])]


def test_each_subscription_defines_its_default_rule_with_the_intended_filter_last():
    # Whether Azure removes the implicit accept-everything $Default when another rule is
    # created is reported both ways; declaring $Default with the normal-publishing filter,
    # written after replay-self, leaves the same two rules whichever way Azure behaves.
    rules = bm.of_type("Microsoft.ServiceBus/namespaces/topics/subscriptions/rules")
    by_parent: dict[str, dict[str, bm.Resource]] = {}
    for rule in rules:
        by_parent.setdefault(_parent_symbol(rule.body["parent"]), {})[rule.body["name"]] = rule
    assert set(by_parent) == {"availability", "downstream"}
    for parent, named in by_parent.items():
        assert set(named) == {"$Default", "replay-self"}, parent
        default, self_rule = named["$Default"], named["replay-self"]
        assert _depends_on(default) == [[self_rule.symbol]], parent
        assert default.properties != {} and "TrueFilter" not in str(default.properties)
    assert all(r.properties.get("filterType") != "TrueFilter" for r in rules)


def test_each_downstream_subscription_gets_both_replay_rules_combined_with_its_filter():
    downstream = [s for s in bm.of_type("Microsoft.ServiceBus/namespaces/topics/subscriptions")
                  if s.loop is not None]
    assert len(downstream) == 1
    assert downstream[0].loop is not None
    assert downstream[0].loop["detail"]["array_name"] == "downstreamSubscriptions"
    assert bm.accessor(downstream[0].properties["requiresSession"]) == ["team",
                                                                        "requiresSession"]
    rules = {r.body["name"]: r for r in _rules_of("downstream")}
    assert set(rules) == {"$Default", "replay-self"}
    expected_target = {"$Default": ("\\'all\\'", "all"),
                       "replay-self": ("\\'${team.name}\\'", ["team", "name"])}
    for name, rule in rules.items():
        assert rule.loop is not None
        assert rule.loop["detail"]["array_name"] == "downstreamSubscriptions"
        branches = rule.body["properties"]["operator"]["operands"]
        sql = branches["true_value"]["sqlFilter"]["sqlExpression"]
        sql_target, correlation_target = expected_target[name]
        assert sql.startswith("(${team.filter.?sql")
        assert sql.endswith(f"AND replayTarget = {sql_target}")
        union = bm.function(branches["false_value"]["correlationFilter"]["properties"], "union")
        assert union is not None
        target = union["arg_2"]["replayTarget"]
        assert (bm.accessor(target) if isinstance(correlation_target, list) else target) == (
            correlation_target)


# --- role assignments ---------------------------------------------------------------------

def _role_assignments() -> list[tuple[str, str | None, bm.Resource]]:
    out: list[tuple[str, str | None, bm.Resource]] = []
    for path in bm.bicep_files():
        parsed = bm.parse(path)
        for r in bm.resources(parsed, path.name):
            if r.type == "Microsoft.Authorization/roleAssignments":
                role = bm.resolve_role_id(r.properties["roleDefinitionId"], parsed)
                out.append((path.name, role, r))
    return out


def _function_role_assignments() -> list[tuple[str, str | None, bm.Resource]]:
    return [(f, role, r) for f, role, r in _role_assignments() if r.symbol != "downstreamReceiver"]


def test_the_function_identity_gets_exactly_the_least_privilege_roles():
    assignments = _function_role_assignments()
    roles = {(file, role, r.body["scope"]) for file, role, r in assignments}
    assert roles == {
        ("servicebus.bicep", ROLE["servicebus_data_sender"], "topic"),
        ("servicebus.bicep", ROLE["servicebus_data_receiver"], "topic"),
        ("servicebus.bicep", ROLE["servicebus_data_owner"], "topic"),
        ("storage.bicep", ROLE["storage_blob_data_owner"], "account"),
        ("monitoring.bicep", ROLE["monitoring_metrics_publisher"], "appInsights"),
    }
    for _, role, r in assignments:
        assert role not in BROAD_ROLES
        assert r.properties["principalId"] == "functionPrincipalId"
        assert r.properties["principalType"] == "ServicePrincipal"


def test_a_downstream_team_receives_from_its_own_subscription_only():
    # SAS keys are off: the role assignment is a team's only way in, and it reaches no
    # other subscription than the team's (not the topic, not the namespace).
    (team,) = [r for _, _, r in _role_assignments() if r.symbol == "downstreamReceiver"]
    parsed = bm.module("servicebus")
    assert bm.resolve_role_id(team.properties["roleDefinitionId"], parsed) == ROLE[
        "servicebus_data_receiver"]
    assert team.loop is not None
    assert team.loop["detail"]["array_name"] == "teamsWithPrincipal"
    scope = team.body["scope"]["operator"]
    assert scope["operands"] == {"operand_1": "teamSubscription", "operand_2": "i"}
    (subscription,) = [r for r in bm.resources(parsed) if r.symbol == "teamSubscription"]
    assert subscription.type == "Microsoft.ServiceBus/namespaces/topics/subscriptions"
    assert subscription.existing  # the team's own subscription, deployed by `downstream`
    assert subscription.body["parent"] == "topic"
    assert bm.accessor(subscription.body["name"]) == ["team", "name"]
    assert subscription.loop is not None
    assert subscription.loop["detail"]["array_name"] == "teamsWithPrincipal"
    chosen = parsed["variables"]["teamsWithPrincipal"]["value"]["function"]
    assert chosen["type"] == "filter"
    assert chosen["parameters"]["input_array"] == "downstreamSubscriptions"
    assert bm.accessor(team.properties["principalId"]) == ["team", "principalId"]
    assert "downstream" in team.body["dependsOn"]


def test_service_bus_manage_right_is_granted_unconditionally_on_the_topic():
    # The trigger and the metrics timer (subscription runtime counts) need the Manage claim;
    # a switch to leave it out would silently empty the backlog and dead-letter metrics.
    (owner,) = [r for _, role, r in _function_role_assignments()
                if role == ROLE["servicebus_data_owner"]]
    assert owner.condition is None and owner.body["scope"] == "topic"
    assert not any("manage" in name.lower() for name in bm.parse(bm.MAIN)["parameters"])


def test_cosmos_data_plane_role_is_data_contributor_on_the_account():
    assignment = bm.one("Microsoft.DocumentDB/databaseAccounts/sqlRoleAssignments")
    props = assignment.properties
    assert props["roleDefinitionId"] == (
        "${account.id}/sqlRoleDefinitions/${dataContributorRoleId}")
    assert bm.module("cosmos")["variables"]["dataContributorRoleId"]["value"] == (
        COSMOS_DATA_CONTRIBUTOR)
    assert bm.accessor(props["scope"]) == ["account", "id"]
    assert props["principalId"] == "functionPrincipalId"


def test_every_module_grants_roles_to_the_function_identity():
    modules = bm.parse(bm.MAIN)["modules"]
    granted = {name for name, m in modules.items()
               if "functionPrincipalId" in m["config"]["params"]}
    assert granted == {"monitoring", "storage", "cosmos", "serviceBus"}
    for name in granted:
        assert bm.accessor(modules[name]["config"]["params"]["functionPrincipalId"]) == [
            "identity", "outputs", "principalId"]


# --- function app ---------------------------------------------------------------------------

def test_function_app_runs_on_flex_consumption_with_python_311_as_its_identity():
    plan = bm.one("Microsoft.Web/serverfarms")
    assert plan.body["sku"] == {"tier": "FlexConsumption", "name": "FC1"}
    assert plan.properties["reserved"] is True
    site = bm.one("Microsoft.Web/sites")
    assert site.body["kind"] == "functionapp,linux"
    assert site.body["identity"]["type"] == "UserAssigned"
    config = site.properties["functionAppConfig"]
    assert config["runtime"] == {"name": "python", "version": "3.11"}
    auth = config["deployment"]["storage"]["authentication"]
    assert auth["type"] == "UserAssignedIdentity"
    assert site.properties["httpsOnly"] is True


# --- app settings against application/settings.py -------------------------------------------

HOST_SETTINGS = frozenset({
    # Host storage over the identity (no AzureWebJobsStorage connection string).
    "AzureWebJobsStorage__accountName",
    "AzureWebJobsStorage__credential",
    "AzureWebJobsStorage__clientId",
    # The triggers' identity-based connections 'COSMOS' and 'SERVICEBUS' use the
    # user-assigned identity (their endpoint settings are declared in SETTINGS).
    "COSMOS__credential",
    "COSMOS__clientId",
    "SERVICEBUS__credential",
    "SERVICEBUS__clientId",
    # The host's own telemetry authenticates to Application Insights with Entra.
    "APPLICATIONINSIGHTS_AUTHENTICATION_STRING",
})


def app_settings() -> dict[str, object]:
    settings = bm.one("Microsoft.Web/sites/config", name="appsettings")
    return settings.properties


def settings_mismatch(app_setting_names: Iterable[str], declared: Iterable[Setting],
                      ) -> tuple[set[str], set[str]]:
    """(settings the code reads that Azure does not set, settings Azure sets nobody reads)."""
    read_in_azure = {s.name for s in declared if s.scope in ("azure", "both")}
    missing = read_in_azure - set(app_setting_names)
    unknown = set(app_setting_names) - read_in_azure - HOST_SETTINGS
    return missing, unknown


def test_bicep_app_settings_provide_every_setting_the_code_reads_and_nothing_else():
    missing, unknown = settings_mismatch(app_settings(), SETTINGS)
    assert not missing, f"settings the code reads but the Bicep does not set: {sorted(missing)}"
    assert not unknown, f"app settings nobody declared in SETTINGS: {sorted(unknown)}"


def test_the_settings_check_catches_a_new_setting_missing_from_the_bicep():
    from application.settings import Setting

    declared = (*SETTINGS, Setting("STOCKSTREAM_NEW_THING", None, "azure", "x"))
    missing, _ = settings_mismatch(app_settings(), declared)
    assert missing == {"STOCKSTREAM_NEW_THING"}
    local_only = (*SETTINGS, Setting("STOCKSTREAM_LOCAL_THING", None, "local", "x"))
    assert settings_mismatch(app_settings(), local_only) == (set(), set())


def test_the_settings_check_catches_an_app_setting_nobody_reads():
    names = [*app_settings(), "FUNCTIONS_WORKER_RUNTIME"]
    _, unknown = settings_mismatch(names, SETTINGS)
    assert unknown == {"FUNCTIONS_WORKER_RUNTIME"}


def test_azure_app_settings_select_cosmos_and_identity_connections():
    settings = app_settings()
    assert settings["STOCKSTREAM_EVENT_STORE"] == "cosmos"
    assert settings["COSMOS_DATABASE"] == "cosmosDatabaseName"
    for prefix in ("COSMOS", "SERVICEBUS", "AzureWebJobsStorage"):
        assert settings[f"{prefix}__credential"] == "managedidentity"
        assert settings[f"{prefix}__clientId"] == "identityClientId"
    assert settings["AZURE_CLIENT_ID"] == "identityClientId"


# --- alerts ------------------------------------------------------------------------------

def _metric_criteria() -> dict[str, tuple[bm.Resource, dict[str, Any]]]:
    out: dict[str, tuple[bm.Resource, dict[str, Any]]] = {}
    for alert in bm.of_type("Microsoft.Insights/metricAlerts"):
        (criterion,) = alert.properties["criteria"]["allOf"]
        out[criterion["metricName"]] = (alert, criterion)
    return out


def test_metric_alerts_watch_dead_letters_backlog_throttling_and_failures():
    criteria = _metric_criteria()
    assert set(criteria) == {"DeadletteredMessages", "ActiveMessages", "TotalRequests",
                             "requests/failed"}

    _, dead = criteria["DeadletteredMessages"]
    assert dead["metricNamespace"] == "Microsoft.ServiceBus/namespaces"
    assert dead["dimensions"] == [{"name": "EntityName", "operator": "Include",
                                   "values": ["topicName"]}]
    assert bm.module("alerts")["variables"]["topicName"]["value"] == TOPIC
    assert (dead["operator"], dead["threshold"]) == ("GreaterThan", 0)

    _, backlog = criteria["ActiveMessages"]
    assert backlog["dimensions"] == dead["dimensions"]
    assert backlog["threshold"] == "backlogThreshold"

    _, throttled = criteria["TotalRequests"]
    assert throttled["metricNamespace"] == "Microsoft.DocumentDB/databaseAccounts"
    assert throttled["dimensions"] == [{"name": "StatusCode", "operator": "Include",
                                        "values": ["429"]}]

    failures_alert, failures = criteria["requests/failed"]
    assert failures["metricNamespace"] == "microsoft.insights/components"
    assert failures_alert.properties["scopes"] == ["appInsightsId"]

    for alert, criterion in criteria.values():
        assert alert.body["location"] == "global"
        assert alert.properties["criteria"]["'odata.type'"] == (
            "Microsoft.Azure.Monitor.SingleResourceMultipleMetricCriteria")
        assert alert.properties["actions"] == "metricAlertActions"
        assert criterion["criterionType"] == "StaticThresholdCriterion"


def _log_alerts() -> dict[str, dict[str, Any]]:
    return {rule["name"]: rule for rule in bm.module("alerts")["variables"]["logAlerts"]["value"]}


CUSTOM_METRIC = re.compile(r"\bstockstream\.[a-z_]+(?:\.[a-z_]+)+")


def test_log_alerts_query_the_custom_metrics_against_threshold_parameters():
    rules = _log_alerts()
    expected = {
        # The relay's lag per published event, and the sampled age of the oldest unpublished
        # event, which grows while the relay publishes nothing.
        "relay-lag": ({telemetry.OUTBOX_LAG_SECONDS, telemetry.OUTBOX_OLDEST_AGE},
                      "relayLagThresholdSeconds"),
        "projection-lag": ({telemetry.PROJECTION_LAG_SECONDS}, "projectionLagThresholdSeconds"),
        "reconciliation-drift": ({telemetry.DRIFT_UNITS}, "driftThresholdUnits"),
        "subscription-dead-letters": ({telemetry.DEAD_LETTER_DEPTH}, 0),
    }
    assert set(rules) == set(expected)
    for name, (metrics, threshold) in expected.items():
        assert set(CUSTOM_METRIC.findall(rules[name]["query"])) == metrics
        assert rules[name]["query"].startswith("customMetrics")
        assert rules[name]["threshold"] == threshold
    query_rules = bm.of_type("Microsoft.Insights/scheduledQueryRules")
    assert len(query_rules) == 1 and query_rules[0].loop is not None
    assert query_rules[0].loop["detail"]["array_name"] == "logAlerts"
    props = query_rules[0].properties
    assert props["scopes"] == ["appInsightsId"]
    assert props["actions"] == {"actionGroups": "actionGroupIds"}
    assert props["criteria"]["allOf"][0]["metricMeasureColumn"] == "value"


def test_alerts_only_query_metric_names_the_code_emits():
    for rule in _log_alerts().values():
        for name in CUSTOM_METRIC.findall(rule["query"]):
            assert name in telemetry.METRIC_NAMES, name


HISTOGRAM_BRANCH = re.compile(r"iff\(name == \\?'([a-z_.]+)\\?', valueM(?:ax|in),")


def reads_gauge_extremes(query: str) -> list[str]:
    """Gauges a query reads through valueMax/valueMin, which the exporter does not send for
    gauges (a valueMax inside ``iff(name == '<histogram>', valueMax, ...)`` is a histogram's)."""
    for histogram in HISTOGRAM_BRANCH.findall(query):
        assert histogram in telemetry.HISTOGRAM_NAMES, histogram
    rest = HISTOGRAM_BRANCH.sub("iff(", query)
    if "valueMax" not in rest and "valueMin" not in rest:
        return []
    return sorted(set(CUSTOM_METRIC.findall(query)) & telemetry.GAUGE_NAMES)


def test_no_alert_or_tile_reads_the_min_or_max_of_a_gauge():
    from tests.infra.test_workbook import _kql_items

    queries = [rule["query"] for rule in _log_alerts().values()]
    queries += [item["content"]["query"] for item in _kql_items()]
    assert len(queries) > 10
    for query in queries:
        assert reads_gauge_extremes(query) == [], query
    # The check itself catches the mistake it is there for.
    assert reads_gauge_extremes(
        "customMetrics | where name == 'stockstream.deadletter.depth' | project value = valueMax"
    ) == [telemetry.DEAD_LETTER_DEPTH]


def test_action_group_is_a_parameter_email_list_or_existing_group():
    params = bm.parse(bm.MAIN)["parameters"]
    assert params["alertEmails"]["type"] == "array"
    assert params["existingActionGroupId"]["type"] == "string"
    group = bm.one("Microsoft.Insights/actionGroups")
    assert group.condition == "createActionGroup"
    receivers = group.properties["emailReceivers"]
    assert receivers["loop_type"]["detail"]["array_name"] == "alertEmails"


def test_every_alert_points_to_a_runbook_section_that_exists():
    from tests.infra.test_docs import runbook_anchors

    anchors = runbook_anchors()
    descriptions = [a.properties["description"] for a in
                    bm.of_type("Microsoft.Insights/metricAlerts")]
    descriptions += [rule["description"] for rule in _log_alerts().values()]
    for description in descriptions:
        (anchor,) = re.findall(r"docs/runbook\.md#([a-z0-9-]+)", description)
        assert anchor in anchors, anchor


@pytest.mark.parametrize(("setting", "parameter", "module_parameter"), [
    ("COSMOS_DATABASE", "cosmosDatabaseName", "cosmosDatabaseName"),
    ("STOCKSTREAM_DEPRECATED_VERSIONS_UNTIL", "deprecatedVersionsUntil",
     "deprecatedVersionsUntil"),
    ("STOCKSTREAM_DRIFT_HOLD_PERCENT", "driftHoldPercent", "driftHoldPercent"),
    ("STOCKSTREAM_COUNT_CADENCE", "countCadence", "countCadence"),
])
def test_parameters_feeding_settings_default_to_the_settings_defaults(
        setting, parameter, module_parameter):
    default = next(s.default for s in SETTINGS if s.name == setting)
    assert bm.parse(bm.MAIN)["parameters"][parameter]["default"] == default
    assert app_settings()[setting] == module_parameter
