"""One hold policy for every count and adjustment, whatever its route: a held command
answers 202 with its hold id and records nothing; an admin approves it (once) or dismisses
it (nothing recorded) by that id. Called through the functions ``function_app`` registered,
with real ``func.HttpRequest`` objects."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from application.settings import load
from composition import Services
from composition.embedded import embedded_services
from functions.container import use_services
from tests.http.conftest import SKU, call


def _installed(tmp_path: Path, **env: str) -> Iterator[Services]:
    container = embedded_services(load({"STOCKSTREAM_DATA": str(tmp_path), **env}))
    use_services(container)
    yield container
    use_services(None)
    container.close()


@pytest.fixture
def host(tmp_path: Path) -> Iterator[Services]:
    """The default settings: counts held over 50 % drift, adjustments never."""
    yield from _installed(tmp_path)


@pytest.fixture
def strict(tmp_path: Path) -> Iterator[Services]:
    """Adjustments of more than 40 units are held too."""
    yield from _installed(tmp_path, STOCKSTREAM_ADJUSTMENT_HOLD_UNITS="40")


@pytest.fixture
def by_percent(tmp_path: Path) -> Iterator[Services]:
    """Adjustments of more than 25 % of the on hand before them are held."""
    yield from _installed(tmp_path, STOCKSTREAM_ADJUSTMENT_HOLD_PERCENT="25")


def now() -> str:
    return datetime.now(UTC).isoformat()


def versions(container: Services) -> int:
    return container.queries.position(SKU["sku"], SKU["location"]).version


def count(count_id: str, counted: int, at: str | None = None) -> dict[str, Any]:
    return {"count_id": count_id, "counted": counted, "counted_at": at or now()}


def hold_of(answer: Any) -> str:
    assert answer.status == 202, (answer.status, answer.body)
    assert set(answer.body) == {"held", "position"}
    assert set(answer.body["held"]) == {"hold_id", "reason"}
    return str(answer.body["held"]["hold_id"])


# ---------------------------------------------------------------------- counts


def test_a_count_whose_drift_exceeds_the_policy_is_held_with_202_and_records_nothing(
        host: Services):
    call("receive_stock", "POST", SKU, {"quantity": 100})
    before = versions(host)

    answer = call("record_count", "POST", SKU, count("C-1", 5))

    hold_id = hold_of(answer)
    assert "exceeds 50%" in answer.body["held"]["reason"]  # the default percent limit
    assert answer.body["position"]["on_hand"] == 100
    assert versions(host) == before  # nothing on the stream
    listed = call("list_held_counts", "GET").body
    assert [(h["hold_id"], h["kind"], h["drift_units"]) for h in listed] == [
        (hold_id, "count", -95)]
    again = call("record_count", "POST", SKU, count("C-1", 5, listed[0]["counted_at"]))
    assert hold_of(again) == hold_id and versions(host) == before
    other = call("record_count", "POST", SKU, count("C-1", 6, listed[0]["counted_at"]))
    assert (other.status, other.problem_code) == (409, "hold-conflict")


def test_an_approved_count_is_applied_once_however_often_it_is_approved(host: Services):
    call("receive_stock", "POST", SKU, {"quantity": 100})
    body = count("C-1", 5)
    hold_id = hold_of(call("record_count", "POST", SKU, body))
    call("receive_stock", "POST", SKU, {"quantity": 3})  # sold or received while it waits
    before = versions(host)

    approved = call("approve_held_counts", "POST", {"hold_id": hold_id})
    again = call("approve_held_counts", "POST", {"hold_id": hold_id})

    assert approved.status == 200, approved.body
    (first,) = approved.body["approved"]
    assert (first["outcome"], first["repeated"], first["applied_delta"]) == ("applied", False,
                                                                            -95)
    assert first["position"]["on_hand"] == 8  # the count, plus what came after it
    assert again.status == 200
    assert [(a["outcome"], a["repeated"]) for a in again.body["approved"]] == [
        ("unchanged", True)]
    assert versions(host) == before + 1  # one StockCounted, however often approved
    assert call("list_held_counts", "GET").body == []
    repeat = call("record_count", "POST", SKU, body)
    assert repeat.status == 200 and repeat.body["already_recorded"] is True
    dismiss = call("dismiss_held_counts", "POST", {"hold_id": hold_id})
    assert (dismiss.status, dismiss.problem_code) == (409, "hold-resolved")


def test_a_dismissed_count_records_nothing_and_stays_unrecorded(host: Services):
    call("receive_stock", "POST", SKU, {"quantity": 100})
    body = count("C-1", 5)
    hold_id = hold_of(call("record_count", "POST", SKU, body))
    before = versions(host)

    dismissed = call("dismiss_held_counts", "POST", {"hold_id": hold_id})

    assert dismissed.status == 200
    assert [h["hold_id"] for h in dismissed.body["dismissed"]] == [hold_id]
    assert versions(host) == before
    assert call("list_held_counts", "GET").body == []
    resent = call("record_count", "POST", SKU, body)
    assert (resent.status, resent.problem_code) == (409, "hold-dismissed")
    approve = call("approve_held_counts", "POST", {"hold_id": hold_id})
    assert (approve.status, approve.problem_code) == (409, "hold-resolved")
    assert versions(host) == before
    unknown = call("approve_held_counts", "POST", {"hold_id": "count-0000"})
    assert (unknown.status, unknown.problem_code) == (404, "no-held-count")


def test_one_hold_policy_for_counts_whatever_the_route(host: Services):
    call("receive_stock", "POST", SKU, {"quantity": 100})
    single = count("C-1", 5)
    hold_id = hold_of(call("record_count", "POST", SKU, single))
    row = {**SKU, **single}

    session = call("reconcile_counts", "POST", body={"counts": [
        row, {**SKU, **count("C-2", 4)}]})

    assert session.status == 200
    assert [(r["outcome"], r["hold_id"]) for r in session.body["results"]] == [
        ("held", hold_id), ("held", session.body["results"][1]["hold_id"])]
    assert len(call("list_held_counts", "GET").body) == 2
    assert call("get_position", "GET", SKU).body["on_hand"] == 100
    approved = call("approve_held_counts", "POST", {"hold_id": session.body["results"][1][
        "hold_id"]})
    assert approved.body["approved"][0]["outcome"] == "applied"
    assert call("get_position", "GET", SKU).body["on_hand"] == 4


def test_a_small_drift_is_applied_at_once(host: Services):
    call("receive_stock", "POST", SKU, {"quantity": 100})
    answer = call("record_count", "POST", SKU, count("C-1", 98))
    assert answer.status == 200 and answer.body["correction"]["delta"] == -2


# ----------------------------------------------------------------- adjustments


def test_adjustments_are_not_held_by_default(host: Services):
    call("receive_stock", "POST", SKU, {"quantity": 100})
    answer = call("adjust_stock", "POST", SKU, {"delta": -95, "reason": "theft"})
    assert answer.status == 200 and answer.body["on_hand"] == 5


def test_an_adjustment_over_its_thresholds_is_held_and_a_repeat_is_the_same_hold(
        strict: Services):
    call("receive_stock", "POST", SKU, {"quantity": 100})
    before = versions(strict)
    key = {"Idempotency-Key": "adj-77"}

    answer = call("adjust_stock", "POST", SKU, {"delta": -95, "reason": "theft"}, headers=key)

    hold_id = hold_of(answer)
    assert answer.body["held"]["reason"] == "adjustment of -95 units exceeds 40"
    assert answer.body["position"]["on_hand"] == 100 and versions(strict) == before
    assert hold_of(call("adjust_stock", "POST", SKU, {"delta": -95, "reason": "theft"},
                        headers=key)) == hold_id
    other = call("adjust_stock", "POST", SKU, {"delta": -94, "reason": "theft"}, headers=key)
    assert (other.status, other.problem_code) == (409, "idempotency-key-reused")
    small = call("adjust_stock", "POST", SKU, {"delta": -10, "reason": "damaged"})
    assert small.status == 200 and small.body["on_hand"] == 90
    (listed,) = call("list_held_counts", "GET").body
    assert (listed["hold_id"], listed["kind"], listed["delta"], listed["adjustment_reason"]
            ) == (hold_id, "adjustment", -95, "theft")


def test_a_held_adjustment_approved_twice_is_recorded_once(strict: Services):
    call("receive_stock", "POST", SKU, {"quantity": 100})
    hold_id = hold_of(call("adjust_stock", "POST", SKU, {"delta": -60, "reason": "theft"}))
    before = versions(strict)

    first = call("approve_held_counts", "POST", {"hold_id": hold_id})
    second = call("approve_held_counts", "POST", {"hold_id": hold_id})

    assert [a["outcome"] for a in first.body["approved"]] == ["applied"]
    assert [a["outcome"] for a in second.body["approved"]] == ["unchanged"]
    assert versions(strict) == before + 1
    assert call("get_position", "GET", SKU).body["on_hand"] == 40


def test_a_held_adjustment_retried_with_its_key_after_approval_is_a_repeat(strict: Services):
    call("receive_stock", "POST", SKU, {"quantity": 100})
    body, key = {"delta": -60, "reason": "theft"}, {"Idempotency-Key": "k-1"}
    hold_id = hold_of(call("adjust_stock", "POST", SKU, body, headers=key))
    call("approve_held_counts", "POST", {"hold_id": hold_id})
    before = versions(strict)

    retried = call("adjust_stock", "POST", SKU, body, headers=key)

    assert retried.status == 200 and retried.body["on_hand"] == 40
    assert versions(strict) == before


def test_a_dismissed_adjustment_records_nothing(strict: Services):
    call("receive_stock", "POST", SKU, {"quantity": 100})
    body, key = {"delta": -60, "reason": "theft"}, {"Idempotency-Key": "k-1"}
    hold_id = hold_of(call("adjust_stock", "POST", SKU, body, headers=key))
    before = versions(strict)

    assert call("dismiss_held_counts", "POST", {"hold_id": hold_id}).status == 200

    assert versions(strict) == before
    resent = call("adjust_stock", "POST", SKU, body, headers=key)
    assert (resent.status, resent.problem_code) == (409, "hold-dismissed")
    assert call("get_position", "GET", SKU).body["on_hand"] == 100


def test_an_adjustment_refused_at_approval_stays_pending(strict: Services):
    call("receive_stock", "POST", SKU, {"quantity": 100})
    hold_id = hold_of(call("adjust_stock", "POST", SKU, {"delta": -90, "reason": "theft"}))
    call("adjust_stock", "POST", SKU, {"delta": -30, "reason": "damaged"})  # 70 left

    refused = call("approve_held_counts", "POST", {"hold_id": hold_id})

    assert (refused.status, refused.problem_code) == (409, "insufficient-on-hand")
    assert [h["hold_id"] for h in call("list_held_counts", "GET").body] == [hold_id]
    assert call("get_position", "GET", SKU).body["on_hand"] == 70


def test_the_adjustment_percent_threshold_is_relative_to_the_on_hand_before(
        by_percent: Services):
    call("receive_stock", "POST", SKU, {"quantity": 40})
    assert call("adjust_stock", "POST", SKU, {"delta": 10, "reason": "found"}).status == 200
    held = call("adjust_stock", "POST", SKU, {"delta": -13, "reason": "theft"})
    assert held.status == 202 and "exceeds 25%" in held.body["held"]["reason"]
