"""The generated reference pages say what the code says (``make docs`` rewrites them)."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from application.settings import SETTINGS
from functions import reference_docs
from functions.reference_docs import ERRORS_PAGE, SETTINGS_PAGE, main, problem_types


def test_the_committed_reference_pages_are_what_make_docs_writes() -> None:
    assert main(["--check"]) == 0, "run `make docs`"


def test_every_setting_and_every_problem_code_is_on_its_page() -> None:
    settings, errors = SETTINGS_PAGE.read_text(), ERRORS_PAGE.read_text()
    assert all(f"| `{s.name}` |" in settings for s in SETTINGS)
    codes = {p.code for p in problem_types()}
    assert {"store-unavailable", "insufficient-stock", "validation-failed",
            "reconciliation-unavailable", "no-held-count"} <= codes
    assert all(f"| `{code}` |" in errors for code in codes)


def test_a_page_that_drifted_from_the_code_fails_the_check(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    stale = tmp_path / "settings.md"
    shutil.copy(SETTINGS_PAGE, stale)
    stale.write_text(stale.read_text().replace("`./data`", "`./elsewhere`"))
    monkeypatch.setitem(reference_docs.PAGES, stale, reference_docs.settings_page)
    monkeypatch.delitem(reference_docs.PAGES, SETTINGS_PAGE)

    assert main(["--check"]) == 1
    assert "run `make docs`" in capsys.readouterr().err


def test_the_http_api_error_table_names_every_code_and_only_real_ones() -> None:
    """docs/http-api.md's table is written by hand (it groups codes by what they mean);
    it must still cover every problem code the code defines, and invent none."""
    text = (ERRORS_PAGE.parents[1] / "http-api.md").read_text()
    section = text[text.index("## Errors"):text.index("\n## ", text.index("## Errors") + 1)]
    named: set[str] = set()
    for row in section.splitlines():
        cells = row.split(" | ")
        if row.startswith("| ") and len(cells) > 2 and not row.startswith("| Status"):
            # Extension members are named in parentheses beside their code: left out.
            codes_cell = re.sub(r"\([^)]*\)", "", cells[1])
            named |= set(re.findall(r"`([a-z]+(?:-[a-z]+)*)`", codes_cell))
    codes = {p.code for p in problem_types()}
    assert codes - named == set(), "codes missing from docs/http-api.md#errors"
    assert named - codes == set(), "codes in docs/http-api.md#errors the code never answers"
