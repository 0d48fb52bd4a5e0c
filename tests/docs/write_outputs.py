"""Rewrite the output blocks of documents' examples from what they print now (a
maintainer's tool, never run by the tests):

    .venv/bin/python -m tests.docs.write_outputs README.md docs/http-api.md

Each example runs against a fresh embedded host (one per document, as the test does);
times, dates, lags and content lengths become placeholders. Review the diff before you
commit it: a changed output is a changed behaviour, and the point of the blocks is that
someone looks. Session ids, report paths and long lines still need a hand edit
(``{id}``, ``{…}``).
"""

from __future__ import annotations

import re
import sys
import tempfile
from pathlib import Path

from tests.docs.examples import FENCE, Example, examples
from tests.docs.test_examples import run
from tests.e2e.conftest import RunningHost, start_host


def placeholders(text: str) -> str:
    text = re.sub(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?(?:Z|[+-]\d\d:\d\d)?", "{time}",
                  text)
    text = re.sub(r"\w{3}, \d\d \w{3} \d{4} \d\d:\d\d:\d\d GMT", "{date}", text)
    text = re.sub(r'("date": ?")\d{4}-\d\d-\d\d"', r'\1{date}"', text)
    text = re.sub(r'("(?:lag_seconds|oldest_age_seconds)": ?)-?\d+(?:\.\d+)?(?:e-?\d+)?',
                  r"\1{n}", text)
    return re.sub(r"(content-length: )\d+", r"\1{n}", text)


def output_of(example: Example, host: RunningHost, tmp: Path) -> str:
    if example.host_settings is None:
        return placeholders(run(example, host, tmp / "work"))
    own_dir = tmp / f"host-{example.line}"
    own_dir.mkdir()
    own = start_host(own_dir, env=example.host_settings)
    try:
        return placeholders(run(example, own, tmp / "work"))
    finally:
        own.stop()


def rewrite(path: Path) -> None:
    tmp = Path(tempfile.mkdtemp())
    (tmp / "work").mkdir()
    host = start_host(tmp)
    try:
        outputs = [(e, output_of(e, host, tmp)) for e in examples(path)]
    finally:
        host.stop()
    text = path.read_text(encoding="utf-8")
    for example, output in reversed(outputs):  # from the end: offsets stay valid
        blocks = list(FENCE.finditer(text))
        index = next(i for i, b in enumerate(blocks)
                     if text[:b.start()].count("\n") + 1 == example.line)
        block = "```output\n" + output + "```"
        following = blocks[index + 1] if index + 1 < len(blocks) else None
        if following is not None and following.group(1) == "output":
            text = text[:following.start()] + block + text[following.end():]
        else:
            end = blocks[index].end()
            text = text[:end] + "\n\n" + block + text[end:]
    path.write_text(text, encoding="utf-8")
    print(f"rewrote the output blocks of {path}")


if __name__ == "__main__":
    for name in sys.argv[1:]:
        rewrite(Path(name).resolve())
