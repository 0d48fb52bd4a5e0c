"""docs/deploy.md documents every parameter, output, setting and alert of the deployment."""

from __future__ import annotations

import re

import pytest

from application.settings import SETTINGS
from tests.infra import bicep_model as bm

DEPLOY_DOC = bm.ROOT / "docs" / "deploy.md"


def deploy_doc_anchors() -> set[str]:
    """GitHub-style anchors of the doc's headings."""
    anchors = set()
    for line in DEPLOY_DOC.read_text().splitlines():
        match = re.match(r"#{1,6}\s+(.*)", line)
        if match:
            title = re.sub(r"[^\w\- ]", "", match.group(1).strip().lower())
            anchors.add(title.replace(" ", "-"))
    return anchors


def _documented(name: str) -> bool:
    return f"`{name}`" in DEPLOY_DOC.read_text()


@pytest.mark.parametrize("name", sorted(bm.parse(bm.MAIN)["parameters"]))
def test_every_parameter_is_documented(name):
    assert _documented(name), f"parameter {name} is not in docs/deploy.md"


@pytest.mark.parametrize("name", sorted(bm.parse(bm.MAIN)["outputs"]))
def test_every_output_is_documented(name):
    assert _documented(name), f"output {name} is not in docs/deploy.md"


@pytest.mark.parametrize("name", sorted(s.name for s in SETTINGS))
def test_every_setting_is_documented(name):
    assert _documented(name), f"setting {name} is not in docs/deploy.md"


def test_runbook_covers_the_dead_letter_replay_path():
    text = DEPLOY_DOC.read_text()
    assert "POST /api/ops/deadletters/{subscription}/replay" in text
    assert "stockstream replay-deadletters SUBSCRIPTION" in text
    assert "azd up" in text
