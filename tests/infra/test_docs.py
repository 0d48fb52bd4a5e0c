"""docs/deploy.md documents every parameter, output and setting of the deployment;
docs/runbook.md every alert and the procedures that republish events."""

from __future__ import annotations

import re

import pytest

from application.settings import SETTINGS
from tests.infra import bicep_model as bm

DEPLOY_DOC = bm.ROOT / "docs" / "deploy.md"
RUNBOOK = bm.ROOT / "docs" / "runbook.md"


def runbook_anchors() -> set[str]:
    """GitHub-style anchors of the runbook's headings."""
    anchors = set()
    for line in RUNBOOK.read_text().splitlines():
        match = re.match(r"#{1,6}\s+(.*)", line)
        if match:
            title = re.sub(r"[^\w\- ]", "", match.group(1).strip().lower())
            anchors.add(title.replace(" ", "-"))
    return anchors


def _documented(name: str) -> bool:
    return f"`{name}`" in DEPLOY_DOC.read_text()


def _table_names(section: str) -> list[str]:
    """First-column names (`name`) of the table under the heading ``## <section>``."""
    text = DEPLOY_DOC.read_text()
    match = re.search(rf"^## {section}\n(.*?)(?=^## )", text, re.MULTILINE | re.DOTALL)
    assert match, f"docs/deploy.md has no '## {section}' section"
    return re.findall(r"^\| `([^`]+)` \|", match.group(1), re.MULTILINE)


def test_parameters_table_lists_every_parameter_of_main_bicep_once():
    documented = _table_names("Parameters")
    assert sorted(documented) == sorted(bm.parse(bm.MAIN)["parameters"])


def test_outputs_table_lists_every_output_of_main_bicep_once():
    documented = _table_names("Outputs")
    assert sorted(documented) == sorted(bm.parse(bm.MAIN)["outputs"])


@pytest.mark.parametrize("name", sorted(s.name for s in SETTINGS))
def test_every_setting_is_documented(name):
    assert _documented(name), f"setting {name} is not in docs/deploy.md"


def test_runbook_covers_the_dead_letter_replay_path():
    text = RUNBOOK.read_text()
    assert "POST /api/ops/deadletters/{subscription}/replay" in text
    assert "stockstream replay-deadletters SUBSCRIPTION" in text
    assert "azd up" in DEPLOY_DOC.read_text()
    assert "(runbook.md)" in DEPLOY_DOC.read_text()


def test_runbook_says_what_a_lease_reset_republishes_and_what_consumers_must_do():
    text = " ".join(RUNBOOK.read_text().split())
    assert "resetting-the-relays-leases-a-full-republish" in runbook_anchors()
    assert "startFromBeginning: true" in text
    assert "duplicate-detection window" in text and "at most 7 days" in text
    assert "sequence" in text and "absolute" in text


def test_every_cosmos_container_the_bicep_declares_is_documented():
    declared = {r.properties["resource"]["id"] for r in
                bm.of_type("Microsoft.DocumentDB/databaseAccounts/sqlDatabases/containers")}
    text = DEPLOY_DOC.read_text()
    documented = set(re.findall(r"^\| `([a-z]+)` \| `/", text, re.MULTILINE))
    assert declared == documented == {"events", "snapshots", "views", "reconciliation", "leases",
                                     "processes"}
    for name in declared:
        assert f"`{name}`" in text.split("| `modules/cosmos.bicep` |", 1)[1].split("\n", 1)[0]

