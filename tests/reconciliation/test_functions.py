"""The reconciliation blueprint, called with real ``func.HttpRequest`` and ``TimerRequest``
objects through the function objects ``function_app.app`` registered."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from azure.functions.timer import TimerRequest

from adapters.sqlite.availability_views import SQLiteAvailabilityViews
from functions.container import Container, use_container
from functions.reconciliation import MAX_BATCH, projection_repair
from local.pipeline import Pipeline
from projections.availability import ViewRow
from tests.http.conftest import FUNCTIONS, call
from tests.reconciliation.conftest import count_row, instant, project


@pytest.fixture
def installed(container: Container) -> Iterator[Container]:
    use_container(container)
    yield container
    use_container(None)


def bindings(name: str) -> list[dict[str, Any]]:
    return [json.loads(b) for b in FUNCTIONS[name].get_raw_bindings()]


@pytest.mark.parametrize(("name", "route", "methods", "auth"), [
    ("reconcile_counts", "reconciliation/counts", ["POST"], "FUNCTION"),
    ("list_due_counts", "reconciliation/due", ["GET"], "FUNCTION"),
    ("list_held_counts", "reconciliation/held", ["GET"], "FUNCTION"),
    ("approve_held_counts", "reconciliation/held/{hold_id}/approval", ["POST"], "ADMIN"),
    ("dismiss_held_counts", "reconciliation/held/{hold_id}/dismissal", ["POST"], "ADMIN"),
])
def test_the_routes_are_http_triggers_with_their_methods_and_auth_levels(
        name, route, methods, auth):
    trigger = next(b for b in bindings(name) if b["type"] == "httpTrigger")
    assert trigger == {"direction": "IN", "type": "httpTrigger", "name": "req",
                       "methods": methods, "authLevel": auth, "route": route}


@pytest.mark.parametrize("name", ["schedule_counts", "reconcile_projection"])
def test_the_timers_use_six_field_schedules(name):
    (trigger,) = bindings(name)
    assert trigger["type"] == "timerTrigger"
    assert len(trigger["schedule"].split()) == 6


def test_a_count_batch_applies_good_rows_and_names_bad_ones_by_index(installed: Container):
    installed.commands.receive("SKU-1", "STORE-1", 10)
    t = instant()
    body = {"counts": [count_row("SKU-1", 7, t), {"sku": "SKU-2"}, count_row("SKU-3", 2, t)]}

    answer = call("reconcile_counts", "POST", body=body)

    assert answer.status == 200
    assert (answer.body["applied"], answer.body["rejected"]) == (2, 1)
    assert [(r["index"], r["outcome"]) for r in answer.body["results"]] == [
        (0, "applied"), (1, "rejected"), (2, "applied")]
    assert answer.body["results"][0]["drift_units"] == -3
    assert "missing" in answer.body["results"][1]["reason"]
    again = call("reconcile_counts", "POST", body=body)
    assert [r["outcome"] for r in again.body["results"]] == ["unchanged", "rejected",
                                                             "unchanged"]
    assert installed.queries.position("SKU-1", "STORE-1").on_hand == 7


def test_all_or_nothing_over_http_is_a_422_naming_each_bad_row_and_applies_none(
        installed: Container):
    t = instant()
    body = {"counts": [count_row("SKU-1", 7, t), {**count_row("SKU-2", 1, t), "counted": -1}],
            "all_or_nothing": True}

    answer = call("reconcile_counts", "POST", body=body)

    assert answer.status == 422
    assert answer.problem_code == "counts-rejected"
    assert [e["field"] for e in answer.body["errors"]] == ["counts.1"]
    assert installed.queries.position("SKU-1", "STORE-1").version == 0


@pytest.mark.parametrize(("kwargs", "status", "code"), [
    ({"raw": b"{not json"}, 400, "malformed-json"),
    ({"body": {"counts": []}}, 422, "validation-failed"),
    ({"body": {"counts": [{}] * (MAX_BATCH + 1)}}, 422, "validation-failed"),
    ({"body": {"counts": [{}], "threshold": 1}}, 422, "validation-failed"),
    ({"raw": b"[]", "headers": {"Content-Type": "text/csv"}}, 415, "unsupported-media-type"),
])
def test_bad_batches_get_problem_documents(installed: Container, kwargs, status, code):
    answer = call("reconcile_counts", "POST", **kwargs)
    assert (answer.status, answer.problem_code) == (status, code)


def test_held_counts_are_listed_approved_and_applied_over_http(installed: Container,
                                                               monkeypatch):
    from functions.container import reconciliation_services

    services = reconciliation_services(installed)
    monkeypatch.setattr(services.gate, "counts", type(services.policy)(units=5))
    t = instant()
    call("reconcile_counts", "POST", body={"counts": [count_row("SKU-1", 50, t, "BIG")]})

    held = call("list_held_counts", "GET")
    assert [(h["count_id"], h["drift_units"]) for h in held.body] == [("BIG", 50)]
    assert installed.queries.position("SKU-1", "STORE-1").on_hand == 0

    approved = call("approve_held_counts", "POST", {"hold_id": "BIG"})  # a count id
    assert approved.status == 200
    assert [r["outcome"] for r in approved.body["approved"]] == ["applied"]
    assert installed.queries.position("SKU-1", "STORE-1").on_hand == 50
    again = call("approve_held_counts", "POST", {"hold_id": "BIG"})
    assert (again.status, again.problem_code) == (404, "no-held-count")
    assert call("dismiss_held_counts", "POST", {"hold_id": "BIG"}).status == 404
    assert call("approve_held_counts", "POST", {"hold_id": "bad id"}).status == 422


def test_due_counts_are_listed_with_their_class_and_bad_queries_get_422(installed: Container,
                                                                       pipeline: Pipeline):
    installed.commands.receive("SKU-1", "STORE-1", 10)
    project(pipeline)
    answer = call("list_due_counts", "GET")
    assert answer.status == 200
    assert [(d["sku"], d["velocity_class"], d["overdue"]) for d in answer.body["due"]] == [
        ("SKU-1", "A", True)]
    assert answer.body["cadence_days"] == {"A": 1, "B": 7, "C": 30}
    assert call("list_due_counts", "GET", params={"class": "C"}).body["due"] == []
    for params in ({"class": "Z"}, {"limit": "0"}, {"limit": "x"}, {"colour": "red"}):
        bad = call("list_due_counts", "GET", params=params)
        assert (bad.status, bad.problem_code) == (422, "validation-failed"), params


def test_the_schedule_timer_runs_against_the_ledger(installed: Container, pipeline: Pipeline,
                                                    caplog):
    installed.commands.receive("SKU-1", "STORE-1", 10)
    project(pipeline)
    with caplog.at_level("INFO", logger="stockstream.reconciliation"):
        FUNCTIONS["schedule_counts"].get_user_function()(TimerRequest(past_due=False))
    assert "counts due: 1 (A=1 B=0 C=0)" in caplog.text


def test_the_repair_timer_repairs_a_corrupted_row(installed: Container, tmp_path: Path):
    views = SQLiteAvailabilityViews(tmp_path / "views.db")
    installed.availability = views
    installed.commands.receive("SKU-1", "STORE-1", 10)
    repair = projection_repair(installed.store, views)
    repair.repair(repair.check(known=[("SKU-1", "STORE-1")])[1])
    (row,) = views.rows()
    views.replace(ViewRow(row.sku, row.location, row.version, 3, 0, 3, row.updated_at), {})

    FUNCTIONS["reconcile_projection"].get_user_function()(TimerRequest(past_due=False))

    assert list(views.rows()) == [row]
    views.close()


def test_without_the_embedded_store_the_routes_answer_503(installed: Container, monkeypatch):
    import dataclasses

    monkeypatch.setattr(installed, "settings",
                        dataclasses.replace(installed.settings, event_store="cosmos"))
    answer = call("list_due_counts", "GET")
    assert (answer.status, answer.problem_code) == (503, "reconciliation-unavailable")
