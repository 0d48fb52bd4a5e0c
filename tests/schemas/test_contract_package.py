"""The consumers' contract package (``packages/stockstream-contract``) installs on its own.

It is built into a wheel and installed into a fresh virtual environment that holds only
it and its declared dependencies (offline: those are linked from this environment), and
there it validates an event the service published; the domain and the Azure SDKs are
not importable. Its wire vocabulary is pinned to the domain's rules.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import sysconfig
from importlib import metadata
from pathlib import Path
from typing import get_args

import pytest
from packaging.markers import Marker

import domain.identifiers as identifiers
import domain.stock_item as stock_item
import stockstream_contract.vocabulary as vocabulary
from contracts.cloudevents import to_cloudevent
from domain.stock_item import StockItem
from tests.events import only

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "packages" / "stockstream-contract"


def test_the_wire_vocabulary_is_the_domains() -> None:
    assert vocabulary.IDENTIFIER_PATTERN == identifiers.IDENTIFIER_PATTERN
    assert vocabulary.MAX_NOTE_LENGTH == stock_item.MAX_NOTE_LENGTH
    for name in ("AdjustmentReason", "AdjustmentReasonV1", "ReleaseReason", "StockState"):
        assert get_args(getattr(vocabulary, name)) == get_args(getattr(stock_item, name)), name


def test_the_package_ships_every_schema_of_the_registry() -> None:
    """The package's registry is the one ``make schemas`` writes (a link, not a copy)."""
    packaged = ROOT / "stockstream_contract" / "schemas"
    assert packaged.resolve() == (ROOT / "schemas").resolve()
    assert (PACKAGE / "stockstream_contract").resolve() == (ROOT / "stockstream_contract")


def _closure(names: list[str]) -> set[str]:
    """The distributions ``names`` need, transitively (markers evaluated here, no extras)."""
    seen: set[str] = set()
    todo = list(names)
    while todo:
        name = todo.pop()
        key = name.lower().replace("_", "-")
        if key in seen:
            continue
        seen.add(key)
        for requirement in metadata.requires(name) or []:
            spec, _, marker = requirement.partition(";")
            if marker and not Marker(marker.strip()).evaluate({"extra": ""}):
                continue
            match = re.match(r"[A-Za-z0-9._-]+", spec.strip())
            assert match, requirement
            todo.append(match.group(0))
    return seen


def _link_distributions(names: set[str], into: Path) -> None:
    """Link each distribution's files (its top-level modules and its metadata) into
    ``into``: an offline stand-in for ``pip install`` of exactly these."""
    into.mkdir()
    for name in names:
        dist = metadata.distribution(name)
        tops = {Path(str(f)).parts[0] for f in dist.files or []
                if not str(f).startswith("..")}
        for top in tops:
            source = Path(str(dist.locate_file(top)))
            if source.exists() and not (into / top).exists() and top != "__pycache__":
                (into / top).symlink_to(source)


@pytest.mark.slow
def test_the_contract_package_installs_alone_and_validates_an_event(tmp_path: Path) -> None:
    # Build the wheel from a copy with the links followed (what an in-tree build sees).
    source = tmp_path / "source"
    shutil.copytree(PACKAGE, source, ignore=shutil.ignore_patterns("__pycache__", "build",
                                                                     "*.egg-info"))
    wheels = tmp_path / "wheels"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps",
                    "--no-index", "--no-build-isolation", "-w", str(wheels), str(source)],
                   check=True, capture_output=True, timeout=300)
    (wheel,) = wheels.glob("stockstream_contract-*.whl")

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True,
                   timeout=120)
    python = venv / "bin" / "python"
    subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install",
                    "--quiet", "--no-deps", "--no-index", str(wheel)],
                   check=True, capture_output=True, timeout=300)
    declared = metadata.Distribution.at(
        next((venv / "lib").glob("python*/site-packages/stockstream_contract-*.dist-info"))
    ).requires or []
    assert sorted(re.split(r"[<>=!~ ]", r)[0] for r in declared) == [
        "fastjsonschema", "jsonschema", "pydantic"]
    dependencies = tmp_path / "dependencies"
    _link_distributions(_closure(["pydantic", "jsonschema", "fastjsonschema"]), dependencies)
    site = Path(subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
        check=True, capture_output=True, text=True).stdout.strip())
    (site / "dependencies.pth").write_text(f"{dependencies}\n")
    assert sysconfig.get_path("purelib") != str(site)

    item = StockItem.create("SKU-1", "STORE-1")
    item.receive(24, reference="ASN-1")
    good = to_cloudevent(only(item.pending_events, StockItem.Event)[-1])
    broken = json.loads(json.dumps(good, default=str))
    broken["data"]["quantity"] = 0
    script = """
import json, sys
from stockstream_contract import SchemaValidationFailed, validate_cloudevent
from stockstream_contract.models import StockReceivedV1
good, broken = json.load(sys.stdin)
event = validate_cloudevent(good)
print(event.name, event.version, StockReceivedV1.model_validate(good["data"]).quantity)
try:
    validate_cloudevent(broken)
except SchemaValidationFailed as error:
    print(error.reason, error.field)
for module in ("domain", "contracts", "azure", "eventsourcing"):
    try:
        __import__(module)
        print("importable", module)
    except ModuleNotFoundError:
        pass
"""
    result = subprocess.run([str(python), "-I", "-c", script], cwd=tmp_path,
                            input=json.dumps([good, broken], default=str),
                            capture_output=True, text=True, timeout=120)

    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["StockReceived 1 24",
                                          "SchemaValidationFailed data.quantity"]
