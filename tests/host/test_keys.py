"""Keys as Azure checks them: function keys, admin keys, header or ``?code=``.

``STOCKSTREAM_API_KEYS`` are function-level keys, ``STOCKSTREAM_ADMIN_KEYS`` admin-level
ones (Azure's master key: good on every route). A route whose function declares
``AuthLevel.ADMIN`` refuses a function key with 401.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import azure.functions as func
import pytest

from function_app import app
from local.host import EmbeddedHost
from tests.host.conftest import LocalHost, fresh_sku, serve

CHANNEL_KEY = "till-key-7"
ADMIN_KEY = "admin-key-9"

ADMIN_ROUTES = sorted(
    str(f.get_trigger().route) for f in app.get_functions()
    if f.get_trigger().get_binding_name() == "httpTrigger"
    and f.get_trigger().auth_level == func.AuthLevel.ADMIN
)


@pytest.fixture(scope="module")
def keyed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalHost]:
    with serve(tmp_path_factory.mktemp("keyed"), {"STOCKSTREAM_API_KEYS": CHANNEL_KEY,
                                                  "STOCKSTREAM_ADMIN_KEYS": ADMIN_KEY}) as host:
        yield host


def admin_targets() -> list[str]:
    values = {"{subscription}": "availability", "{hold_id}": "hold-1"}
    targets = []
    for route in ADMIN_ROUTES:
        for name, value in values.items():
            route = route.replace(name, value)
        targets.append(f"/api/{route}")
    return targets


def test_the_admin_routes_are_replay_approval_and_dismissal():
    assert {"ops/deadletters/{subscription}/replay", "reconciliation/held/{hold_id}/approval",
            "reconciliation/held/{hold_id}/dismissal"} <= set(ADMIN_ROUTES)


@pytest.mark.parametrize("target", admin_targets())
def test_a_function_key_on_an_admin_route_is_401_and_an_admin_key_passes(
        keyed: LocalHost, target: str):
    refused = keyed.call("POST", target, key=CHANNEL_KEY)
    assert (refused.status, refused.problem_code) == (401, "unauthorized")
    assert "admin" in refused.json()["detail"]
    passed = keyed.call("POST", target, key=ADMIN_KEY)
    # Past the keys: the route itself answers (no pipeline here, no held count).
    assert passed.status in (404, 503), passed
    assert passed.problem_code in ("pipeline-not-running", "no-held-count")


def test_an_admin_key_is_good_on_ordinary_routes(keyed: LocalHost):
    base = f"/api/stock/{fresh_sku()}/STORE-1"
    assert keyed.call("POST", f"{base}/receipts", json_body={"quantity": 2},
                      key=ADMIN_KEY).status == 200
    assert keyed.call("GET", base, key=ADMIN_KEY).json()["on_hand"] == 2
    assert keyed.call("GET", base, key=CHANNEL_KEY).json()["on_hand"] == 2
    assert keyed.call("GET", base, key="wrong").problem_code == "unauthorized"
    assert keyed.call("GET", base).problem_code == "unauthorized"


def test_the_key_may_come_as_the_code_query_parameter_and_is_never_logged(keyed: LocalHost):
    sku = fresh_sku()
    base = f"/api/stock/{sku}/STORE-1"
    assert keyed.call("POST", f"{base}/receipts?code={CHANNEL_KEY}",
                      json_body={"quantity": 3}).status == 200
    events = keyed.call("GET", f"{base}/events?after=1&code={CHANNEL_KEY}")
    assert events.status == 200 and len(events.json()) == 1
    assert keyed.call("POST", f"{admin_targets()[0]}?code={CHANNEL_KEY}").status == 401
    assert keyed.call("POST", f"{admin_targets()[0]}?code={ADMIN_KEY}").status != 401
    assert keyed.call("GET", f"{base}?code=wrong").status == 401
    line = keyed.log.wait_for(lambda text: f"GET {base}/events" in text)
    assert "after=1" in line, line
    logged = "\n".join(keyed.log.lines)
    assert CHANNEL_KEY not in logged and ADMIN_KEY not in logged and "code=" not in logged


def test_with_only_admin_keys_the_host_is_keyed(tmp_path: Path):
    with serve(tmp_path, {"STOCKSTREAM_ADMIN_KEYS": ADMIN_KEY}) as host:
        base = f"/api/stock/{fresh_sku()}/STORE-1"
        assert host.call("GET", base).problem_code == "unauthorized"
        assert host.call("GET", base, key=ADMIN_KEY).status == 200
        assert not host.log.matching("not authenticated")


def test_with_only_admin_keys_the_host_may_listen_beyond_loopback(tmp_path: Path):
    from application.settings import load

    settings = load({"STOCKSTREAM_DATA": str(tmp_path), "STOCKSTREAM_ADMIN_KEYS": ADMIN_KEY})
    host = EmbeddedHost(settings, host="0.0.0.0", port=0, with_pipeline=False)
    host.socket.close()  # never started: constructing it is what refuses an insecure binding
