"""Count files: physical counts as they arrive, read and checked row by row.

A count file (CSV or JSON) or an HTTP batch holds rows ``sku, location, counted,
counted_at, count_id``. Reading one decides nothing about stock: it only says which rows
are well formed, and names each refused row with where it is and why. The reconciler
(``application.reconciliation``) takes the good rows through the approval gate.

Contracts a caller may rely on:

* **Malformed rows are named.** :func:`read_count_file` rejects a row with its CSV line
  number (the header is line 1) or its JSON index (0-based) and the reason.
* **A file that cannot be read as a whole** (not CSV or JSON, a wrong header, nested too
  deeply, a field over the CSV field limit) raises :class:`CountFileError`; nothing in it
  is applied.
* **One count id, one set of figures per file.** A row repeating an earlier row's count id
  for the same SKU-location with other figures is refused, naming the earlier row.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from domain.errors import DomainError
from domain.identifiers import require_identifier
from domain.stock_item import MAX_QUANTITY

COUNT_FIELDS = ("sku", "location", "counted", "counted_at", "count_id")
"""The columns of a count file (CSV header) and the members of a JSON count object."""

_DIGITS = re.compile(r"^[0-9]+$")


@dataclass(frozen=True)
class CountLine:
    """One well-formed count row; ``line`` is its CSV line number or JSON index."""

    line: int
    sku: str
    location: str
    counted: int
    counted_at: datetime
    count_id: str


@dataclass(frozen=True)
class RejectedLine:
    """A row that was refused, where it is and why (identifiers when they were readable)."""

    line: int
    reason: str
    sku: str | None = None
    location: str | None = None
    count_id: str | None = None


@dataclass(frozen=True)
class CountFile:
    """A parsed count file: the good rows and the refused ones, in file order.

    ``position`` says what ``line`` means: ``"line"`` (CSV line, header = 1) or
    ``"index"`` (JSON array index, from 0).
    """

    lines: list[CountLine]
    rejected: list[RejectedLine]
    position: Literal["line", "index"] = "line"
    source: str = ""

    @property
    def rows(self) -> int:
        return len(self.lines) + len(self.rejected)


class CountFileError(ValueError):
    """The file as a whole cannot be read (not CSV/JSON, wrong header, not a list, nested
    too deeply, a CSV field over the reader's limit); nothing in it is applied."""


def parse_count_row(raw: Mapping[str, Any], line: int, *, from_text: bool) -> CountLine:
    """One row as a :class:`CountLine`; raises ``ValueError`` naming what is wrong.

    ``from_text``: values come from CSV (``counted`` is digits); otherwise from JSON
    (``counted`` must be a JSON integer, not ``"3"``, ``3.0`` or ``true``).
    """
    missing = [name for name in COUNT_FIELDS if raw.get(name) in (None, "")]
    if missing:
        raise ValueError(f"missing {', '.join(missing)}")
    extra = sorted(set(raw) - set(COUNT_FIELDS))
    if extra:
        raise ValueError(f"unknown field(s) {_shown(', '.join(map(str, extra)))}")
    try:
        sku = require_identifier("sku", raw["sku"])
        location = require_identifier("location", raw["location"])
        count_id = require_identifier("count_id", raw["count_id"])
    except DomainError as error:
        raise ValueError(error.message) from None
    counted_raw = raw["counted"]
    if from_text:
        text = str(counted_raw).strip()
        if not _DIGITS.match(text):
            raise ValueError(f"counted must be a whole number >= 0; got {_shown(counted_raw)}")
        # Bounded before int(): a huge digit string is refused, not converted.
        counted = int(text) if len(text.lstrip("0")) <= 10 else MAX_QUANTITY + 1
    else:
        if isinstance(counted_raw, bool) or not isinstance(counted_raw, int) or counted_raw < 0:
            raise ValueError(f"counted must be a whole number >= 0; got {_shown(counted_raw)}")
        counted = counted_raw
    if counted > MAX_QUANTITY:
        raise ValueError(f"counted must be at most {MAX_QUANTITY}; got {_shown(counted_raw)}")
    at_raw = raw["counted_at"]
    try:
        if not isinstance(at_raw, str):
            raise ValueError
        counted_at = datetime.fromisoformat(at_raw.strip())
    except ValueError:
        raise ValueError("counted_at must be an ISO-8601 timestamp; "
                         f"got {_shown(at_raw)}") from None
    if counted_at.utcoffset() is None:
        raise ValueError(f"counted_at must have a time zone (e.g. Z); got {_shown(at_raw)}")
    return CountLine(line, sku, location, counted, counted_at, count_id)


def _shown(value: Any) -> str:
    """A refused value as a reason shows it: its repr, cut short."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _collect(rows: Iterable[tuple[int, Any]], *, from_text: bool) -> tuple[
        list[CountLine], list[RejectedLine]]:
    lines: list[CountLine] = []
    rejected: list[RejectedLine] = []
    seen: dict[tuple[str, str, str], CountLine] = {}
    for number, raw in rows:
        if not isinstance(raw, Mapping):
            rejected.append(RejectedLine(number, "a count must be an object with "
                                         + ", ".join(COUNT_FIELDS)))
            continue
        try:
            parsed = parse_count_row(raw, number, from_text=from_text)
        except ValueError as error:
            ids = {k: raw.get(k) if isinstance(raw.get(k), str) else None
                   for k in ("sku", "location", "count_id")}
            rejected.append(RejectedLine(number, str(error), **ids))
            continue
        key = (parsed.sku, parsed.location, parsed.count_id)
        first = seen.get(key)
        if first is not None and (first.counted, first.counted_at) != (
                parsed.counted, parsed.counted_at):
            rejected.append(RejectedLine(
                number, f"count id {parsed.count_id} for {parsed.sku}|{parsed.location} "
                f"conflicts with row {first.line}", parsed.sku, parsed.location,
                parsed.count_id))
            continue
        seen.setdefault(key, parsed)
        lines.append(parsed)
    return lines, rejected


def read_count_csv(text: str, source: str = "") -> CountFile:
    """A CSV count file: header ``sku,location,counted,counted_at,count_id`` (any order).

    Raises :class:`CountFileError` for a wrong header or a file the CSV reader refuses (a
    field over its limit of 128 KiB, a NUL byte), naming the line.
    """
    reader = csv.DictReader(io.StringIO(text))
    try:
        header = [h.strip() for h in (reader.fieldnames or [])]
    except csv.Error as error:
        raise CountFileError(f"not a readable CSV file (line 1): {error}") from None
    if sorted(header) != sorted(COUNT_FIELDS):
        raise CountFileError(
            f"the header must name {','.join(COUNT_FIELDS)}; got {_shown(','.join(header))}"
            if header else f"the header must name {','.join(COUNT_FIELDS)}; got none")
    reader.fieldnames = header

    def rows() -> Iterable[tuple[int, Any]]:
        while True:
            try:
                row = next(reader)
            except StopIteration:
                return
            except csv.Error as error:
                raise CountFileError(
                    f"not a readable CSV file (line {reader.line_num}): {error}") from None
            if None in row:  # more cells than the header
                yield reader.line_num, {**{k: v for k, v in row.items() if k is not None},
                                        "extra cells": "x"}
                continue
            if not any((v or "").strip() for v in row.values()):
                continue  # blank line
            yield reader.line_num, {k: v for k, v in row.items()}

    lines, rejected = _collect(rows(), from_text=True)
    return CountFile(lines, rejected, "line", source)


def read_count_json(text: str, source: str = "") -> CountFile:
    """A JSON count file: an array of objects with the five count fields."""
    try:
        document = json.loads(text)
    except RecursionError:
        raise CountFileError("not a count file: JSON nested too deeply") from None
    except ValueError as error:  # JSONDecodeError, or a number too long to convert
        raise CountFileError(f"not valid JSON: {_shown(str(error))}") from None
    if not isinstance(document, list):
        raise CountFileError("a JSON count file must be an array of count objects")
    return parse_count_rows(document, source)


def parse_count_rows(rows: Sequence[Any], source: str = "") -> CountFile:
    """Counts given as JSON values (a JSON file's array, an HTTP batch), by index."""
    lines, rejected = _collect(enumerate(rows), from_text=False)
    return CountFile(lines, rejected, "index", source)


def read_count_file(path: str | Path) -> CountFile:
    """A count file by its suffix (``.csv``, ``.json``), else by its first character.

    Raises ``CountFileError`` (unreadable as a whole), ``OSError`` (cannot be opened) or
    ``UnicodeDecodeError`` (not UTF-8).
    """
    path = Path(path)
    text = path.read_text(encoding="utf-8-sig")
    kind = path.suffix.lower()
    if kind not in (".csv", ".json"):
        kind = ".json" if text.lstrip().startswith("[") else ".csv"
    if kind == ".json":
        return read_count_json(text, str(path))
    return read_count_csv(text, str(path))
