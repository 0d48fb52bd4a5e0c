"""Route templates as Azure reads them, and the embedded host's table built from the app."""

from __future__ import annotations

import re

from hypothesis import given
from hypothesis import strategies as st

from function_app import app
from functions.http_openapi import ROUTE_INDEX, ROUTE_TABLE
from functions.http_routes import (
    Route,
    RouteIndex,
    RouteTemplate,
    allowed_methods,
    http_functions,
    split_path,
)

FUNCTIONS = http_functions(app)
INDEX = RouteIndex(FUNCTIONS)


def _paths() -> list[list[str]]:
    """A path for every template (parameters filled, case changed), and near misses."""
    found: list[list[str]] = [[], [""], ["nowhere"], ["STOCK"], ["openapi.json", "x"]]
    for route in ROUTE_TABLE:
        filled = re.sub(r"\{\*?(\w+)[^}]*\}", "v", route.template).split("/")
        found += [filled, [p.upper() for p in filled], filled[:-1], [*filled, "extra"]]
    return found


def _walk(segments: list[str]) -> list[tuple[str, dict[str, str]]]:
    return [(f.name, p) for f in FUNCTIONS if (p := f.template.match(segments)) is not None]


def test_the_index_finds_what_a_walk_of_the_whole_table_finds_in_the_same_order():
    for segments in _paths():
        assert [(f.name, p) for f, p in INDEX.matches(segments)] == _walk(segments), segments
        assert INDEX.allowed_methods(segments) == allowed_methods(FUNCTIONS, segments)
        assert ROUTE_INDEX.allowed_methods(segments) == allowed_methods(ROUTE_TABLE, segments)


@given(st.lists(st.sampled_from(["stock", "Stock", "ops", "console", "A", "B", "events",
                                 "reservations", "openapi.json", "", "x"]), max_size=10))
def test_the_index_agrees_with_a_walk_on_any_path(segments: list[str]):
    assert [(f.name, p) for f, p in INDEX.matches(segments)] == _walk(segments)
    assert INDEX.allowed_methods(segments) == allowed_methods(FUNCTIONS, segments)


def test_a_path_is_tried_only_against_the_routes_of_its_length():
    reservation = ["stock", "A", "B", "reservations", "o-1"]
    under_stock = [f for f in FUNCTIONS if f.template.template.startswith("stock/")]
    assert INDEX.candidates(reservation) == tuple(
        [f for f in under_stock if len(f.template.segments) == 5]
        + [f for f in FUNCTIONS if f.catch_all])
    assert len(INDEX.candidates(reservation)) < len(under_stock) / 2
    assert [f.name for f in INDEX.candidates(["nowhere", *"abcdefghijkl"])] == [
        "unmatched_route"]


def test_an_index_over_unbounded_routes_longer_than_any_bounded_one_finds_them():
    index = RouteIndex([Route(t, t, ("GET",), None, "") for t in ("a/b", "a/{x}/{y}/{z}/{*r}")])
    for length in range(1, 12):
        path = ["a", *"123456789ab"[:length - 1]]
        assert [r.name for r, _ in index.matches(path)] == [
            r.name for r in index.routes if r.match(path) is not None], path


def test_parameters_match_one_segment_and_literals_ignore_case():
    template = RouteTemplate.parse("stock/{sku}/{location}/events")
    assert template.match(["Stock", "A", "B", "events"]) == {"sku": "A", "location": "B"}
    assert template.match(["stock", "A", "B"]) is None
    assert template.match(["stock", "A", "B", "events", "x"]) is None
    assert template.match(["stock", "", "B", "events"]) is None


def test_a_catch_all_takes_the_rest_and_optional_and_constrained_parameters_parse():
    assert RouteTemplate.parse("{*path}").match(["a", "b"]) == {"path": "a/b"}
    optional = RouteTemplate.parse("items/{id:int?}")
    assert optional.match(["items"]) == {}
    assert optional.match(["items", "7"]) == {"id": "7"}


def test_an_encoded_slash_stays_inside_its_segment():
    assert split_path("/api/stock/a%2Fb/L1") == ["stock", "a/b", "L1"]
    assert split_path("/other/stock") is None
    assert split_path("/api/ops/status/") == ["ops", "status"]


def test_the_host_orders_the_apps_routes_most_specific_first():
    functions = http_functions(app)
    assert {f.name for f in functions} == {f.get_function_name() for f in app.get_functions()
                                           if f.get_trigger().get_binding_name()
                                           == "httpTrigger"}
    assert functions[-1].name == "unmatched_route"  # the catch-all goes last
    reservation = ["stock", "A", "B", "reservations", "o-1"]
    matching = [f.name for f in functions if f.template.match(reservation) is not None]
    assert matching == ["reserve_stock", "release_reservation", "unmatched_route"]
    assert next(f for f in functions if f.name == "get_openapi").anonymous


def test_allowed_methods_ignores_the_catch_all():
    functions = http_functions(app)
    assert allowed_methods(functions, ["stock", "A", "B"]) == ["GET", "HEAD"]
    assert allowed_methods(functions, ["nowhere"]) == []


def test_only_the_catch_all_and_the_coroutine_stock_writes_run_on_the_hosts_event_loop():
    assert {f.name for f in FUNCTIONS if not f.blocking} == {
        "unmatched_route", "receive_stock", "set_policy", "reserve_stock",
        "release_reservation", "fulfil_reservation"}
