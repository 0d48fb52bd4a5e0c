"""What a process measured, as metric families: OpenMetrics text and a JSON snapshot.

``GET /api/ops/metrics`` answers in the OpenMetrics 1.0 text format
(https://github.com/prometheus/OpenMetrics/blob/main/specification/OpenMetrics.md), which
Prometheus scrapes. The families come from an OpenTelemetry ``MetricsData`` collected by the
process's local reader (:func:`families_from`), and, on the embedded host, from the pipeline
worker's snapshot file (:func:`write_snapshot` / :func:`read_snapshot`): the worker is
another process, so what it measured reaches the host's scrape through that file.

Contract:

* A family's name is the OpenTelemetry name with every character outside
  ``[A-Za-z0-9_]`` replaced by ``_`` (``stockstream.outbox.lag_seconds`` →
  ``stockstream_outbox_lag_seconds``); a counter's sample is ``<name>_total``; a histogram
  has cumulative ``_bucket`` samples ending with ``le="+Inf"``, then ``_count`` and ``_sum``.
* Points of two sources with the same name are one family; :func:`merge` gives a source's
  points a ``process`` label, so the series stay apart.
* The text ends with ``# EOF``. Label values are escaped (``\\``, ``"``, newline).
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from opentelemetry.sdk.metrics.export import (
    Gauge,
    Histogram,
    MetricsData,
    Sum,
)

CONTENT_TYPE = "application/openmetrics-text; version=1.0.0; charset=utf-8"

Kind = Literal["counter", "gauge", "histogram"]

_INVALID = re.compile(r"[^A-Za-z0-9_]")
_UNIT_WORDS = {"s": "seconds", "%": "percent"}


@dataclass(frozen=True)
class Point:
    """One series of a family: its labels and its value (or histogram)."""

    labels: Mapping[str, str]
    value: float = 0.0
    count: int = 0
    sum: float = 0.0
    buckets: tuple[tuple[float, int], ...] = ()
    """Histogram only: (upper bound, cumulative count), the last bound being +inf."""


@dataclass(frozen=True)
class Family:
    """A metric and its series, independent of where it was measured."""

    name: str
    kind: Kind
    unit: str = ""
    help: str = ""
    points: tuple[Point, ...] = field(default_factory=tuple)

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name, "kind": self.kind, "unit": self.unit, "help": self.help,
            "points": [{
                "labels": dict(p.labels), "value": p.value, "count": p.count, "sum": p.sum,
                "buckets": [[_bound_json(b), c] for b, c in p.buckets],
            } for p in self.points],
        }

    @classmethod
    def from_json(cls, document: Mapping[str, Any]) -> Family:
        kind = str(document["kind"])
        if kind not in ("counter", "gauge", "histogram"):
            raise ValueError(f"unknown metric kind {kind!r}")
        points = tuple(Point(
            labels={str(k): str(v) for k, v in p.get("labels", {}).items()},
            value=float(p.get("value", 0.0)), count=int(p.get("count", 0)),
            sum=float(p.get("sum", 0.0)),
            buckets=tuple((_bound_from_json(b), int(c)) for b, c in p.get("buckets", [])),
        ) for p in document.get("points", []))
        return cls(str(document["name"]), kind,  # type: ignore[arg-type]
                   str(document.get("unit", "")), str(document.get("help", "")), points)


def _bound_json(bound: float) -> float | str:
    return "+Inf" if math.isinf(bound) else bound


def _bound_from_json(bound: float | str) -> float:
    return math.inf if bound == "+Inf" else float(bound)


# ------------------------------------------------------------------ from OpenTelemetry


def families_from(data: MetricsData | None) -> list[Family]:
    """The families of an SDK collection (cumulative temporality expected)."""
    if data is None:
        return []
    found: dict[str, Family] = {}
    for resource_metrics in data.resource_metrics:
        for scope_metrics in resource_metrics.scope_metrics:
            for metric in scope_metrics.metrics:
                family = _family(metric.name, metric.unit or "", metric.description or "",
                                 metric.data)
                if family is not None:
                    found[family.name] = _joined(found.get(family.name), family)
    return sorted(found.values(), key=lambda f: f.name)


def _family(name: str, unit: str, description: str, data: Any) -> Family | None:
    if isinstance(data, Histogram):
        points = []
        for p in data.data_points:
            bounds = [*p.explicit_bounds, math.inf]
            running = 0
            buckets = []
            for bound, count in zip(bounds, p.bucket_counts, strict=True):
                running += int(count)
                buckets.append((float(bound), running))
            points.append(Point(_labels(p.attributes), count=int(p.count), sum=float(p.sum),
                                buckets=tuple(buckets)))
        return Family(name, "histogram", unit, description, tuple(points))
    if isinstance(data, Sum):
        kind: Kind = "counter" if data.is_monotonic else "gauge"
        return Family(name, kind, unit, description, tuple(
            Point(_labels(p.attributes), value=float(p.value)) for p in data.data_points))
    if isinstance(data, Gauge):
        return Family(name, "gauge", unit, description, tuple(
            Point(_labels(p.attributes), value=float(p.value)) for p in data.data_points))
    return None


def _labels(attributes: Mapping[str, Any] | None) -> dict[str, str]:
    return {str(k): str(v) for k, v in (attributes or {}).items()}


def _joined(existing: Family | None, family: Family) -> Family:
    if existing is None:
        return family
    if existing.kind != family.kind:
        raise ValueError(f"{family.name} is a {existing.kind} and a {family.kind}")
    return replace(existing, points=existing.points + family.points)


def merge(own: Iterable[Family], sources: Mapping[str, Iterable[Family]]) -> list[Family]:
    """This process's families and other processes' (their points labelled ``process``)."""
    found: dict[str, Family] = {}
    for family in own:
        found[family.name] = _joined(found.get(family.name), family)
    for process, families in sources.items():
        for family in families:
            labelled = replace(family, points=tuple(
                replace(p, labels={**p.labels, "process": process}) for p in family.points))
            found[family.name] = _joined(found.get(family.name), labelled)
    return sorted(found.values(), key=lambda f: f.name)


# ----------------------------------------------------------------- OpenMetrics text


def metric_name(name: str) -> str:
    """The OpenMetrics name of an OpenTelemetry metric name."""
    cleaned = _INVALID.sub("_", name)
    return cleaned if not cleaned[:1].isdigit() else f"_{cleaned}"


def render(families: Sequence[Family]) -> str:
    """The OpenMetrics text exposition of ``families`` (ends with ``# EOF``)."""
    lines: list[str] = []
    for family in families:
        name = metric_name(family.name)
        lines.append(f"# TYPE {name} {family.kind}")
        unit = _UNIT_WORDS.get(family.unit, family.unit)
        if unit and name.endswith(f"_{unit}") and not _INVALID.search(unit):
            lines.append(f"# UNIT {name} {unit}")
        if family.help:
            lines.append(f"# HELP {name} {_escape(family.help)}")
        for point in family.points:
            if family.kind == "counter":
                lines.append(f"{name}_total{_label_text(point.labels)} {_number(point.value)}")
            elif family.kind == "gauge":
                lines.append(f"{name}{_label_text(point.labels)} {_number(point.value)}")
            else:
                for bound, count in point.buckets:
                    le = "+Inf" if math.isinf(bound) else _number(bound)
                    lines.append(
                        f"{name}_bucket{_label_text({**point.labels, 'le': le})} {count}")
                lines.append(f"{name}_count{_label_text(point.labels)} {point.count}")
                lines.append(f"{name}_sum{_label_text(point.labels)} {_number(point.sum)}")
    lines.append("# EOF")
    return "\n".join(lines) + "\n"


def _label_text(labels: Mapping[str, str]) -> str:
    if not labels:
        return ""
    inner = ",".join(f'{metric_name(k)}="{_escape(v)}"' for k, v in labels.items())
    return "{" + inner + "}"


def _escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _number(value: float) -> str:
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if math.isnan(value):
        return "NaN"
    if float(value).is_integer() and abs(value) < 1e15:
        return str(int(value))
    return repr(float(value))


# ---------------------------------------------------------------------- snapshots


def write_snapshot(path: Path, families: Iterable[Family]) -> None:
    """Replace ``path`` with ``families`` as JSON, atomically (readers never see half)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temporary.write_text(json.dumps([f.to_json() for f in families]), encoding="utf-8")
    os.replace(temporary, path)


def merged(*sources: Iterable[Family]) -> list[Family]:
    """The families of ``sources`` as one source: a family measured in several (a
    counter both of a worker's processes keep) has every source's points. Each process
    records its own series, so their points do not overlap."""
    families: dict[str, Family] = {}
    for source in sources:
        for family in source:
            known = families.get(family.name)
            families[family.name] = family if known is None else replace(
                known, points=known.points + family.points)
    return list(families.values())


def read_snapshot(path: Path) -> list[Family]:
    """The families a snapshot holds; none if there is no (readable) snapshot yet."""
    try:
        documents = json.loads(path.read_text(encoding="utf-8"))
    except (FileNotFoundError, ValueError):
        return []
    return [Family.from_json(d) for d in documents]
