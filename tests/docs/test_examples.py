"""Every local shell example of README.md and docs/ runs against the embedded host, and
prints what the output block beside it says (``tests/docs/examples.py`` has the rules).

One host per document (its examples build on each other, in order); before each command
the host's pipeline is let settle, so what a read model shows does not race the relay.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.docs.examples import (
    ROOT,
    Example,
    documents,
    examples,
    first_difference,
    matches,
)
from tests.e2e.conftest import RunningHost, start_host

DOCUMENTS = [path for path in documents() if examples(path)]
LOCAL_URLS = ("http://127.0.0.1:7071", "http://localhost:7071")


def settle(host: RunningHost, headers: dict[str, str], timeout: float = 15.0) -> None:
    """Wait until everything committed is published and consumed."""
    deadline = time.monotonic() + timeout
    while True:
        status = httpx.get(f"{host.url}/api/ops/status", headers=headers, timeout=10).json()
        if status["outbox"]["depth"] == 0 and all(
                s["active"] == 0 for s in status["subscriptions"]):
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"the pipeline did not settle: {status}")
        time.sleep(0.02)


def run(example: Example, host: RunningHost, workdir: Path) -> str:
    """What the example's commands print, one after the other, against ``host``."""
    env = {**os.environ, "STOCKSTREAM_DATA": str(host.data_dir),
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    env = {k: v for k, v in env.items() if not k.startswith("STOCKSTREAM_")
           or k == "STOCKSTREAM_DATA"}
    keys = (example.host_settings or {}).get("STOCKSTREAM_ADMIN_KEYS", "")
    headers = {"x-functions-key": keys.split(",")[0]} if keys else {}
    printed = []
    for command in example.commands():
        for url in LOCAL_URLS:
            command = command.replace(url, host.url)
        settle(host, headers)
        result = subprocess.run(["bash", "-c", command], cwd=workdir, env=env,
                                capture_output=True, text=True, timeout=60)
        out = result.stdout.replace("\r\n", "\n")
        printed.append(out if out.endswith("\n") or not out else out + "\n")
    return "".join(printed)


def failures(path: Path, tmp: Path) -> list[str]:
    """Run every example of ``path`` against a host of its own; what did not match."""
    tmp.mkdir(parents=True, exist_ok=True)
    host = start_host(tmp)
    workdir = tmp / "work"
    workdir.mkdir()
    found = []
    try:
        for example in examples(path):
            if example.expected is None:
                found.append(f"{example.where}: no output block after the example")
                continue
            if example.host_settings is not None:
                (tmp / f"host-{example.line}").mkdir()
                own = start_host(tmp / f"host-{example.line}", env=example.host_settings)
                try:
                    actual = run(example, own, workdir)
                finally:
                    assert own.stop() == 0, own.log()
            else:
                actual = run(example, host, workdir)
            if not matches(example.expected, actual):
                found.append(f"{example.where}: {first_difference(example.expected, actual)}"
                             f"\n--- printed:\n{actual}")
    finally:
        assert host.stop() == 0, host.log()
    return found


def test_examples_are_found_in_the_readme_and_the_docs() -> None:
    names = {path.relative_to(ROOT).as_posix() for path in DOCUMENTS}
    assert {"README.md", "docs/http-api.md", "docs/reconciliation.md"} <= names


def test_every_command_of_an_example_is_run_once() -> None:
    """The splitter neither merges commands (a quote in a comment, a JSON body over
    several lines) nor drops one: one command per curl or stockstream line."""
    for path in DOCUMENTS:
        for example in examples(path):
            starts = [line for line in example.script.splitlines()
                      if line.lstrip().startswith(("curl ", "stockstream "))]
            run_ = [c.splitlines()[-1] if "\n" not in c else c for c in example.commands()]
            assert len([c for c in run_ if "curl " in c or "stockstream " in c]) == len(
                starts), example.where


def test_an_assignment_from_a_command_with_parentheses_stays_an_assignment() -> None:
    """``etag=$(curl ... | awk '{print $1}')`` is not a command of its own: it is made
    before the command that uses the variable."""
    script = ("etag=$(curl -si $API/x | awk -F': ' 'tolower($1)==\"etag\"{print $2}')\n"
              'curl -s -H "If-Match: $etag" $API/x\n')
    example = Example(ROOT / "x.md", 1, script, "")

    commands = example.commands()

    assert len(commands) == 1
    assert commands[0].splitlines()[0].startswith("etag=$(curl")
    assert commands[0].splitlines()[1].startswith("curl -s -H")


def test_every_example_has_an_output_block() -> None:
    missing = [e.where for path in DOCUMENTS for e in examples(path) if e.expected is None]
    assert missing == []


@pytest.mark.parametrize("path", DOCUMENTS, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_the_examples_print_what_their_output_blocks_say(path: Path, tmp_path: Path) -> None:
    assert failures(path, tmp_path) == []


def test_a_deliberately_broken_example_in_a_copy_fails(tmp_path: Path) -> None:
    """The check can fail: a copy of the README whose first example expects another
    figure than the service gives is reported, with the line that differs."""
    copy = tmp_path / "README.md"
    shutil.copy(ROOT / "README.md", copy)
    text = copy.read_text()
    assert '"on_hand":24' in text, "the README's first output block changed: adapt this test"
    copy.write_text(text.replace('"on_hand":24', '"on_hand":25', 1))

    found = failures(copy, tmp_path / "host")

    assert len(found) == 1 and "expected" in found[0] and '"on_hand":25' in found[0]
