"""How the console and the drift reports are served, over real sockets (no browser): the
console anonymously, narrowly and with its caching headers; the drift report routes as
API routes; and the catch-all still answering 404/405 for API paths."""

from __future__ import annotations

import hashlib
import json
import os
import re
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from application.count_files import read_count_file
from application.holds import HoldPolicy
from composition.files import EmbeddedFiles
from functions.console import CONSOLE_DIR, console_file
from functions.http_openapi import ROUTE_TABLE, openapi_document
from reports.drift import chart_file, latest_reports, write_report
from tests.host.conftest import LocalHost, serve

KEY = "serving-key"


@pytest.fixture(scope="module")
def keyed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalHost]:
    """An embedded host with a key (no pipeline): the console must open without it."""
    with serve(tmp_path_factory.mktemp("keyed"), {"STOCKSTREAM_API_KEYS": KEY},
               key=KEY) as running:
        yield running


def anonymous(host: LocalHost, method: str, target: str, headers: dict[str, str] | None = None):
    with host.raw() as raw:
        return raw.exchange(method, target, headers={"Connection": "close", **(headers or {})})


# ------------------------------------------------------------------ console


@pytest.mark.parametrize(("target", "content_type"), [
    ("/api/console/", "text/html; charset=utf-8"),
    ("/api/console/index.html", "text/html; charset=utf-8"),
    ("/api/console/app.js", "text/javascript; charset=utf-8"),
    ("/api/console/views/history.js", "text/javascript; charset=utf-8"),
    ("/api/console/console.css", "text/css; charset=utf-8"),
    ("/api/console/vendor/uplot/uPlot.esm.js", "text/javascript; charset=utf-8"),
    ("/api/console/favicon.svg", "image/svg+xml"),
])
def test_the_console_is_served_without_a_key_with_its_content_type(
        keyed: LocalHost, target: str, content_type: str) -> None:
    reply = anonymous(keyed, "GET", target)
    assert reply.status == 200, reply
    assert reply.headers["content-type"] == content_type
    assert reply.headers["x-content-type-options"] == "nosniff"
    assert reply.headers["cache-control"] == "no-cache"
    relative = target.removeprefix("/api/console/") or "index.html"
    assert reply.body == (CONSOLE_DIR / relative).read_bytes()
    assert reply.headers["etag"] == f'"{hashlib.sha256(reply.body).hexdigest()[:32]}"'


def test_a_console_page_carries_a_content_security_policy(keyed: LocalHost) -> None:
    policy = anonymous(keyed, "GET", "/api/console/").headers["content-security-policy"]
    assert "script-src 'self'" in policy and "frame-ancestors 'none'" in policy
    assert "unsafe-inline" not in policy and "unsafe-eval" not in policy


def test_a_revalidated_console_file_is_304_and_head_has_no_body(keyed: LocalHost) -> None:
    etag = anonymous(keyed, "GET", "/api/console/app.js").headers["etag"]
    assert anonymous(keyed, "GET", "/api/console/app.js",
                     {"If-None-Match": etag}).status == 304
    head = anonymous(keyed, "HEAD", "/api/console/app.js")
    assert head.status == 200 and head.body == b""
    assert int(head.headers["content-length"]) == (CONSOLE_DIR / "app.js").stat().st_size


def test_the_console_without_its_slash_and_the_hosts_root_redirect_to_it(
        keyed: LocalHost) -> None:
    bare = anonymous(keyed, "GET", "/api/console")
    assert (bare.status, bare.headers["location"]) == (308, "/api/console/")
    root = anonymous(keyed, "GET", "/")
    assert (root.status, root.headers["location"]) == (302, "/api/console/")


@pytest.mark.parametrize("target", [
    "/api/console/../function_app.py",
    "/api/console/%2e%2e/function_app.py",
    "/api/console/..%2f..%2ffunction_app.py",
    "/api/console/vendor/../../function_app.py",
    "/api/console/.hidden.js",
    "/api/console/vendor/uplot/README.md",  # not a served kind of file
    "/api/console/vendor/uplot/LICENSE",
    "/api/console/views/",
    "/api/console/missing.js",
    "/api/console/app.js%00.png",
])
def test_nothing_outside_the_consoles_files_is_served(keyed: LocalHost, target: str) -> None:
    reply = anonymous(keyed, "GET", target)
    assert reply.status == 404, reply
    assert reply.problem_code == "not-found"


def test_a_link_out_of_the_console_directory_is_not_followed(tmp_path: Path) -> None:
    root = tmp_path / "console"
    root.mkdir()
    (root / "index.html").write_text("<!doctype html>")
    secret = tmp_path / "secret.js"
    secret.write_text("the key")
    (root / "leak.js").symlink_to(secret)
    assert console_file("index.html", root) is not None
    assert console_file("leak.js", root) is None
    assert console_file("", root) is not None  # the index


def test_the_catch_all_still_answers_404_and_405_for_api_paths(keyed: LocalHost) -> None:
    assert keyed.call("GET", "/api/nowhere").problem_code == "not-found"
    wrong = keyed.call("DELETE", "/api/ops/status")
    assert (wrong.status, wrong.headers["allow"]) == (405, "GET, HEAD")
    posted = keyed.call("POST", "/api/console/app.js", json_body={})
    assert (posted.status, posted.headers["allow"]) == (405, "GET, HEAD")
    assert keyed.call("GET", "/api/consoles/app.js").status == 404
    assert anonymous(keyed, "GET", "/api/ops/status").status == 401  # the API keeps its key


def test_the_console_is_in_the_route_table_but_not_in_openapi_json() -> None:
    route = next(r for r in ROUTE_TABLE if r.name == "console")
    assert (route.template, route.methods, route.documented) == (
        "console/{*path}", ("GET",), False)
    paths = openapi_document()["paths"]
    assert not [p for p in paths if "console" in p]
    assert "/api/reports/drift" in paths and "/api/reports/drift/charts/{chart}" in paths


def test_the_vendored_charting_library_is_the_package_its_readme_names() -> None:
    vendor = CONSOLE_DIR / "vendor" / "uplot"
    readme = (vendor / "README.md").read_text(encoding="utf-8")
    assert "1.6.32" in readme and "MIT" in readme
    listed = dict(re.findall(r"\| `([^`]+)` \| `[^`]+` \| `([0-9a-f]{64})` \|", readme))
    assert set(listed) == {"uPlot.esm.js", "uPlot.min.css", "LICENSE"}
    for name, digest in listed.items():
        assert hashlib.sha256((vendor / name).read_bytes()).hexdigest() == digest, name


# ------------------------------------------------------------ drift reports


def test_drift_reports_are_listed_newest_first_and_a_damaged_file_is_skipped(
        tmp_path: Path) -> None:
    assert latest_reports(tmp_path / "none", 5) == []
    for index, session in enumerate(["s-old", "s-mid", "s-new"]):
        path = tmp_path / f"drift-{session}.json"
        path.write_text(json.dumps({"session_id": session, "charts": []}))
        os.utime(path, (1_000_000 + index, 1_000_000 + index))
    (tmp_path / "drift-broken.json").write_text("{not json")
    assert [r["session_id"] for r in latest_reports(tmp_path, 5)] == ["s-new", "s-mid", "s-old"]
    assert [r["session_id"] for r in latest_reports(tmp_path, 2)] == ["s-new", "s-mid"]


def test_only_a_chart_by_its_name_is_ever_served_from_the_report_directory(
        tmp_path: Path) -> None:
    (tmp_path / "drift-s1-distribution.png").write_bytes(b"\x89PNG")
    (tmp_path / "events.db").write_bytes(b"SQLite")
    (tmp_path / "drift-link.png").symlink_to(tmp_path / "events.db")
    assert chart_file(tmp_path, "drift-s1-distribution.png") is not None
    for name in ("events.db", "drift-link.png", "drift-s1.json", "../drift-s1.png",
                 "drift-missing.png", "drift-..png"):
        assert chart_file(tmp_path, name) is None, name


def test_the_drift_report_routes_list_a_written_report_and_serve_its_charts(
        keyed: LocalHost, tmp_path: Path) -> None:
    assert keyed.call("GET", "/api/reports/drift").json() == {"reports": []}
    container = keyed.embedded.services
    assert container is not None
    container.commands.receive("SKU-R", "STORE-1", 10)
    moment = datetime.now(UTC)
    while datetime.now(UTC) <= moment:  # a count strictly after the receipt
        time.sleep(0.001)
    counts = tmp_path / "counts.csv"
    counts.write_text("sku,location,counted,counted_at,count_id\n"
                      f"SKU-R,STORE-1,7,{moment.isoformat()},C-R\n")
    services = container.reconciliation.get()
    session = services.reconciler.reconcile(read_count_file(counts), policy=HoldPolicy())
    history = services.reconciler.history
    assert history is not None
    write_report(session, EmbeddedFiles(container.settings.data_dir).reports, history.sessions())

    listed = keyed.call("GET", "/api/reports/drift?limit=1")
    assert listed.status == 200
    (report,) = listed.json()["reports"]
    assert report["session_id"] == session.session_id
    assert report["totals"]["abs_drift_units"] == 3
    assert [(r["sku"], r["drift_units"]) for r in report["top_drifts"]] == [("SKU-R", -3)]
    charts = {c["name"]: c["url"] for c in report["charts"]}
    assert set(charts) == {f"drift-{session.session_id}-distribution.png", "drift-history.png"}
    for url in charts.values():
        chart = keyed.call("GET", url)
        assert chart.status == 200
        assert chart.headers["content-type"] == "image/png"
        assert chart.body.startswith(b"\x89PNG")
        again = keyed.call("GET", url, headers={"If-None-Match": chart.headers["etag"]})
        assert again.status == 304
    assert anonymous(keyed, "GET", next(iter(charts.values()))).status == 401
    assert keyed.call("GET", "/api/reports/drift/charts/events.db").status == 404
    assert keyed.call("GET", "/api/reports/drift/charts/a%20b.png").problem_code == \
        "invalid-identifier"
    assert keyed.call("GET", "/api/reports/drift?limit=0").status == 422
