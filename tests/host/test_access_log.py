"""One request, one access-log line, whatever the request carries; bounded echoes.

The access log shows the request target as received (percent-encoding kept), with
control and non-printable characters and backslashes escaped and the length capped, so
``%0a`` cannot forge a line. Problem documents cap what they repeat of a request.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.host.conftest import LocalHost, fresh_sku, serve

FORGED = "%0d%0a2099-01-01%2000:00:00%20INFO%20stockstream.host:%20GET%20%2Fapi%2Fok%20200"
LITERAL = "\\r\\n"  # a backslash-r backslash-n as typed, not control characters


@pytest.fixture(scope="module")
def keyed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalHost]:
    with serve(tmp_path_factory.mktemp("keyed"), {"STOCKSTREAM_API_KEYS": "k"}) as host:
        yield host


def one_line_for(host: LocalHost, marker: str) -> str:
    line = host.log.wait_for(lambda text: marker in text)
    assert host.log.matching(marker) == [line]
    assert "\n" not in line and "\r" not in line, repr(line)
    return line


@pytest.mark.parametrize("which", ["keyless", "keyed"])
def test_a_newline_in_the_path_or_query_is_logged_escaped_on_one_line(
        which: str, keyless: LocalHost, keyed: LocalHost):
    host = keyless if which == "keyless" else keyed
    marker = fresh_sku()
    target = f"/api/stock/{marker}{FORGED}{LITERAL}/STORE-1?note=x{FORGED}"
    with host.raw() as raw:
        reply = raw.exchange("GET", target)
    assert reply.status == (422 if which == "keyless" else 401)
    line = one_line_for(host, marker)
    assert "%0d%0a2099-01-01" in line
    assert "\\\\r\\\\n" in line  # the typed backslashes are escaped, so unambiguous
    assert line.endswith(f" {reply.status} " + line.rsplit(" ", 1)[-1])


def test_the_logged_target_is_capped(keyless: LocalHost):
    marker = fresh_sku()
    with keyless.raw() as raw:
        reply = raw.exchange("GET", f"/api/stock/{marker}{'x' * 12_000}/STORE-1")
    assert reply.status == 422
    line = one_line_for(keyless, marker)
    assert len(line) < 1200 and "…" in line


def test_a_long_path_is_echoed_at_most_256_characters_in_a_problem(keyless: LocalHost):
    with keyless.raw() as raw:
        invalid = raw.exchange("GET", f"/api/stock/{'s' * 12_000}/STORE-1")
        unknown = raw.exchange("GET", f"/api/{'u' * 12_000}")
        outside = raw.exchange("GET", f"/{'o' * 12_000}")
    for reply, code in ((invalid, "invalid-identifier"), (unknown, "not-found"),
                        (outside, "not-found")):
        assert reply.problem_code == code
        assert len(reply.body) < 1500, (code, len(reply.body))
        assert "…" in reply.json()["detail"]


def test_a_long_content_type_or_origin_is_echoed_capped(keyless: LocalHost):
    base = f"/api/stock/{fresh_sku()}/STORE-1"
    with keyless.raw() as raw:
        media = raw.exchange("POST", f"{base}/receipts", body=b"{}",
                             headers={"Content-Type": "text/" + "p" * 5000})
    with keyless.raw() as raw:
        origin = raw.exchange("GET", base, headers={"Origin": "http://" + "o" * 5000})
    assert media.problem_code == "unsupported-media-type" and len(media.body) < 1000
    assert origin.problem_code == "origin-not-allowed" and len(origin.body) < 1000
