"""The shell examples of the documentation, and what they must print.

An *example* is a fenced ``sh`` block with a ``curl`` or ``stockstream`` command. The next
fenced block after it must be an ``output`` block: what the commands print, one after
the other (each command's output ends a line). In an output block:

- ``{time}`` stands for an ISO 8601 timestamp, ``{date}`` for a day (``2026-12-03``) or an
  HTTP date, ``{n}`` for a number, ``{id}`` for an identifier (letters, digits, ``._:|-``),
  ``{…}`` for any text up to the end of what follows it on the line;
- a line that is only ``…`` stands for any number of lines.

Each command runs in a shell of its own (the pipeline settles in between), after the
variable assignments made before it in its block: an assignment from ``$(...)`` is
evaluated again before each later command, so read a value right before the command
that uses it.

An example whose first command starts a host with settings (``KEY=value ... make serve``)
runs against a host of its own started with those settings. A block that talks to Azure
(``az``, ``azd``) is not an example: it cannot run against an embedded host.

``python -m tests.docs.write_outputs DOC...`` rewrites the output blocks (review the diff).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
FENCE = re.compile(r"^```([\w-]*)[^\n]*\n(.*?)^```[ \t]*$", re.S | re.M)
COMMAND = re.compile(r"^\s*(?:[A-Z_][A-Z0-9_]*=\S*\s+)*(curl|stockstream)\s", re.M)
NOT_LOCAL = re.compile(r"^\s*(?:azd?|docker)\s", re.M)
SERVE = re.compile(r"^\s*((?:[A-Z_][A-Z0-9_]*=\S*\s+)*)make serve\s*$", re.M)
# A command substitution may hold one level of parentheses (awk's ``$1``, a subshell):
# without it ``etag=$(curl ... | awk '{print $1}')`` was run as a command of its own, and
# the variable was missing from the commands after it.
ASSIGNMENT = re.compile(
    r"^[A-Za-z_][A-Za-z0-9_]*=(?:\$\((?:[^()]|\([^()]*\))*\)|'[^']*'|\"[^\"]*\"|\S*)$")
PLACEHOLDERS = {
    "{time}": r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?(?:Z|[+-]\d\d:\d\d)?",
    "{date}": r"(?:\d{4}-\d\d-\d\d|\w{3}, \d\d \w{3} \d{4} \d\d:\d\d:\d\d GMT)",
    "{n}": r"-?\d+(?:\.\d+)?(?:e[+-]?\d+)?",
    "{id}": r"[A-Za-z0-9._:|-]+",
    "{…}": r".*",
}
ANY_LINES = "…"


def documents() -> list[Path]:
    """README.md and every page under docs/."""
    return [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]


@dataclass(frozen=True)
class Example:
    path: Path
    line: int
    script: str
    expected: str | None
    """The output block's text, or None when the example has none (an error)."""
    host_settings: dict[str, str] | None = None
    """The settings of the host the example starts itself, if it does."""

    @property
    def where(self) -> str:
        shown = self.path.relative_to(ROOT) if self.path.is_relative_to(ROOT) else self.path
        return f"{shown}:{self.line}"

    def commands(self) -> list[str]:
        """The script's commands (continuation lines and multi-line quoted bodies
        joined), each with the variable assignments made before it in the block."""
        assignments: list[str] = []
        commands: list[str] = []
        pending = ""
        for raw in self.script.splitlines():
            if not pending and raw.strip().startswith("#"):
                continue  # a comment (its apostrophes open no string)
            line = pending + raw
            if line.rstrip().endswith("\\"):
                pending = line.rstrip()[:-1] + " "
                continue
            if line.count("'") % 2:  # inside a single-quoted string (a JSON body)
                pending = line + "\n"
                continue
            pending = ""
            stripped = line.strip()
            if not stripped or stripped.startswith("#"):
                continue
            if ASSIGNMENT.match(stripped):
                assignments.append(stripped)
                continue
            commands.append("\n".join([*assignments, stripped]))
        return commands


def examples(path: Path) -> list[Example]:
    """The examples of one document, in order."""
    text = path.read_text(encoding="utf-8")
    blocks = list(FENCE.finditer(text))
    found = []
    for index, block in enumerate(blocks):
        info, body = block.group(1), block.group(2)
        if info not in ("sh", "bash", "shell") or not COMMAND.search(body):
            continue
        if NOT_LOCAL.search(body):
            continue
        following = blocks[index + 1] if index + 1 < len(blocks) else None
        expected = (following.group(2) if following is not None
                    and following.group(1) == "output" else None)
        serve = SERVE.search(body)
        settings = None
        if serve is not None:
            settings = dict(pair.split("=", 1) for pair in serve.group(1).split())
            body = body[:serve.start()] + body[serve.end():]
        found.append(Example(path, text[:block.start()].count("\n") + 1, body, expected,
                             settings))
    return found


def pattern(expected: str) -> re.Pattern[str]:
    """The regular expression an output block stands for."""
    parts: list[str] = []
    for line in expected.splitlines():
        if line.strip() == ANY_LINES:
            parts.append(r"(?:[^\n]*\n)*?")
            continue
        pieces = re.split(r"(\{time\}|\{date\}|\{n\}|\{id\}|\{…\})", line)
        parts.append("".join(PLACEHOLDERS.get(p, re.escape(p)) for p in pieces) + r"\n")
    return re.compile("".join(parts))


def matches(expected: str, actual: str) -> bool:
    return pattern(expected).fullmatch(actual) is not None


def first_difference(expected: str, actual: str) -> str:
    """The first expected line the output does not match, for the failure message."""
    got = actual.splitlines()
    for number, line in enumerate(expected.splitlines()):
        if line.strip() == ANY_LINES:
            return "(after a … line)"
        seen = got[number] if number < len(got) else "<no more output>"
        if not matches(line + "\n", seen + "\n"):
            return f"line {number + 1}: expected {line!r}\n        got      {seen!r}"
    return "more output than expected"
