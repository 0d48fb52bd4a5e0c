"""A write whose answer was lost may have landed: the store says so, and HTTP tells the
client that only an idempotent repeat is safe (never "nothing was recorded")."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from azure.core.exceptions import ServiceRequestError, ServiceResponseError
from azure.cosmos.exceptions import CosmosHttpResponseError
from eventsourcing.persistence import IntegrityError, OperationalError

from adapters.clock import SystemClock
from adapters.cosmos.persistence import mapped_errors
from adapters.sqlite import SQLiteStockItems
from application.ports import StoreUnavailable
from application.queries import StockQueries
from application.settings import load
from composition import Services
from composition.core import stock_commands
from domain import StockItem
from functions.container import use_services
from tests.http.conftest import SKU, call


def _mapped(error: Exception) -> Exception:
    with pytest.raises(Exception) as raised, mapped_errors():
        raise error
    return raised.value


@pytest.mark.parametrize(("error", "maybe"), [
    (CosmosHttpResponseError(status_code=408, message="request timeout"), True),
    (CosmosHttpResponseError(status_code=503, message="service unavailable"), True),
    (ServiceResponseError("connection reset while reading the answer"), True),
    (CosmosHttpResponseError(status_code=429, message="throttled"), False),
    (ServiceRequestError("could not connect"), False),
])
def test_cosmos_failures_say_whether_the_write_may_have_landed(error: Exception,
                                                               maybe: bool) -> None:
    mapped = _mapped(error)
    assert isinstance(mapped, OperationalError)
    assert getattr(mapped, "maybe_recorded", False) is maybe


def test_a_conflict_is_never_ambiguous() -> None:
    mapped = _mapped(CosmosHttpResponseError(status_code=409, message="conflict"))
    assert isinstance(mapped, IntegrityError)


class LostAnswer(SQLiteStockItems):
    """A store whose every write times out after being sent."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)

        def record(processing_event: Any) -> Any:
            error = OperationalError("timed out waiting for the answer")
            error.maybe_recorded = True  # type: ignore[attr-defined]
            raise error

        self.app._record = record  # type: ignore[method-assign]


def test_the_store_reports_a_write_that_may_have_landed(tmp_path: Path) -> None:
    store = LostAnswer(tmp_path / "events.db")
    item = StockItem.create("SKU-1", "STORE-1")
    item.receive(3)
    with pytest.raises(StoreUnavailable) as raised:
        store.save(item)
    assert raised.value.maybe_recorded
    store.close()


@pytest.fixture
def lost_answers(tmp_path: Path) -> Iterator[None]:
    """The services a root would build, on a store that loses the answer to each write."""
    settings = load({"STOCKSTREAM_DATA": str(tmp_path)})
    store, clock = LostAnswer(tmp_path / "events.db"), SystemClock()
    services = Services(settings=settings, store=store, clock=clock,
                        commands=stock_commands(store, clock, settings),
                        queries=StockQueries(store, clock), closers=(store,))
    use_services(services)
    yield
    use_services(None)
    services.close()


def test_http_asks_for_an_idempotent_repeat_when_a_write_may_have_landed(
    lost_answers: None,
) -> None:
    answer = call("receive_stock", "POST", SKU, {"quantity": 3})
    assert answer.status == 503
    assert answer.body["type"] == "urn:stockstream:problems:store-unavailable"
    assert "may have been recorded" in answer.body["detail"]
    assert "Idempotency-Key" in answer.body["detail"]
