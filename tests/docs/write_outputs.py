"""Rewrite the output blocks of documents' examples from what they print now (a
maintainer's tool, never run by the tests):

    .venv/bin/python -m tests.docs.write_outputs README.md docs/http-api.md

Each example runs against a fresh embedded host (one per document, as the test does);
times, dates, lags and content lengths become placeholders. Review the diff before you
commit it: a changed output is a changed behaviour, and the point of the blocks is that
someone looks. Session ids, report paths and long lines need a hand edit (``{id}``,
``{…}``) the first time; a line of the old block that still matches what is printed is
kept as it was, so a rewrite does not undo them.
"""

from __future__ import annotations

import re
import sys
import tempfile
from pathlib import Path

from tests.docs.examples import ANY_LINES, FENCE, Example, examples, matches
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


def keep_matching_lines(old: str, printed: str) -> str:
    """The new output block for what was ``printed``: the old block when it still matches
    (it may use ``…``); otherwise the printed lines with placeholders, except that each
    line the old block's line at the same place still matches is kept as written there
    (its hand-made placeholders)."""
    if matches(old, printed):
        return old
    old_lines = old.splitlines()
    if ANY_LINES in (line.strip() for line in old_lines):
        return placeholders(printed)  # lines no longer correspond one to one
    kept = []
    for index, line in enumerate(printed.splitlines()):
        was = old_lines[index] if index < len(old_lines) else None
        kept.append(was if was is not None and matches(was + "\n", line + "\n")
                    else placeholders(line))
    return "".join(line + "\n" for line in kept)


def output_of(example: Example, host: RunningHost, tmp: Path) -> str:
    """What the example prints (placeholders not yet put in)."""
    if example.host_settings is None:
        return run(example, host, tmp / "work")
    own_dir = tmp / f"host-{example.line}"
    own_dir.mkdir()
    own = start_host(own_dir, env=example.host_settings)
    try:
        return run(example, own, tmp / "work")
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
        block = "```output\n" + placeholders(output) + "```"
        following = blocks[index + 1] if index + 1 < len(blocks) else None
        if following is not None and following.group(1) == "output":
            block = "```output\n" + keep_matching_lines(following.group(2), output) + "```"
            text = text[:following.start()] + block + text[following.end():]
        else:
            end = blocks[index].end()
            text = text[:end] + "\n\n" + block + text[end:]
    path.write_text(text, encoding="utf-8")
    print(f"rewrote the output blocks of {path}")


if __name__ == "__main__":
    for name in sys.argv[1:]:
        rewrite(Path(name).resolve())
