"""Invoke the registered HTTP functions with real ``func.HttpRequest`` objects, no host."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import azure.functions as func
import pytest

from application.settings import load
from composition import Services
from composition.embedded import embedded_services
from function_app import app
from functions.container import use_services
from tests.invoke import invoke

FUNCTIONS = {f.get_function_name(): f for f in app.get_functions()}


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: Any
    content_type: str

    @property
    def problem_code(self) -> str:
        assert self.content_type == "application/problem+json", self.content_type
        assert {"type", "title", "status", "detail"} <= set(self.body)
        assert self.body["status"] == self.status
        return str(self.body["type"]).rsplit(":", 1)[-1]


def call(
    name: str,
    method: str,
    route_params: dict[str, str] | None = None,
    body: Any = None,
    *,
    raw: bytes | None = None,
    headers: dict[str, str] | None = None,
    params: dict[str, str] | None = None,
) -> Answer:
    """Call function ``name`` through the object the app registered."""
    payload = raw if raw is not None else (b"" if body is None else json.dumps(body).encode())
    all_headers = {"Content-Type": "application/json"} if payload else {}
    all_headers.update(headers or {})
    request = func.HttpRequest(method, f"http://localhost/api/{name}", headers=all_headers,
                               params=params or {}, route_params=route_params or {},
                               body=payload)
    response = invoke(FUNCTIONS[name].get_user_function(), request)
    assert isinstance(response, func.HttpResponse)
    raw_body = response.get_body()
    content_type = response.mimetype
    parsed = json.loads(raw_body) if raw_body and "json" in content_type else raw_body
    return Answer(response.status_code, dict(response.headers), parsed, content_type)


@pytest.fixture
def container(tmp_path: Any) -> Iterator[Services]:
    c = embedded_services(load({"STOCKSTREAM_DATA": str(tmp_path)}))
    use_services(c)
    yield c
    use_services(None)
    c.close()


SKU = {"sku": "SKU-1", "location": "STORE-1"}


def order(order_id: str) -> dict[str, str]:
    return {**SKU, "order_id": order_id}
