"""The ``LocationGroup`` aggregate: locations an order line may be sourced from.

A group is its own small stream, ``location-group:{group}``: a list of 1–50 locations
and a strategy. ``priority`` takes the first location in the list that can
hold a whole line; ``most_available`` the one that can hold the most. A line is never
split across locations. Sourcing itself is the pure function :func:`choose_location`,
given what each location can hold; reading positions is the application's job.

Decide apart from evolve, as in ``StockItem``: :meth:`LocationGroup.define` validates
and decides (no event when the definition is unchanged); ``Defined.apply`` only sets.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal
from uuid import UUID, uuid5

from eventsourcing.domain import Aggregate

from domain.errors import InvalidRequest
from domain.identifiers import STOCKSTREAM_NAMESPACE, require_identifier

STRATEGIES = ("priority", "most_available")
Strategy = Literal["priority", "most_available"]
MAX_LOCATIONS = 50


def group_stream_name(group: str) -> str:
    """The stream (and partition) of a location group."""
    return f"location-group:{require_identifier('group', group)}"


def group_uuid(group: str) -> UUID:
    """The aggregate id ``eventsourcing`` stores the group's stream under."""
    return uuid5(STOCKSTREAM_NAMESPACE, group_stream_name(group))


@dataclass(frozen=True)
class GroupDefinition:
    """A group as an order uses it: its locations in order and its strategy."""

    group: str
    locations: tuple[str, ...]
    strategy: str

    @classmethod
    def of(cls, group: str, locations: Any, strategy: Any) -> GroupDefinition:
        """A validated definition; raises ``InvalidIdentifier`` / ``InvalidRequest``."""
        require_identifier("group", group)
        if strategy not in STRATEGIES:
            raise InvalidRequest(f"strategy must be one of {', '.join(STRATEGIES)}",
                                 field="strategy")
        if not isinstance(locations, list | tuple) or not 1 <= len(locations) <= MAX_LOCATIONS:
            raise InvalidRequest(f"locations must be a list of 1 to {MAX_LOCATIONS} locations",
                                 field="locations")
        for n, location in enumerate(locations):
            require_identifier(f"locations[{n}]", location)
        if len(set(locations)) != len(locations):
            raise InvalidRequest("locations must not repeat a location", field="locations")
        return cls(group, tuple(locations), str(strategy))

    def as_dict(self) -> dict[str, Any]:
        return {"locations": list(self.locations), "strategy": self.strategy}

    @classmethod
    def from_dict(cls, group: str, data: Mapping[str, Any]) -> GroupDefinition:
        """The definition as an order's ``Placed`` event recorded it (trusted)."""
        return cls(group, tuple(data["locations"]), str(data["strategy"]))


def choose_location(
    definition: GroupDefinition, quantity: int, room: Callable[[str], int]
) -> str | None:
    """The location of the group that takes a whole line of ``quantity``, or None.

    ``room(location)`` is how many more units the order could hold there (what the
    stock stream can reserve for it, less what the order's other lines already put
    there); it may read a stream, so ``priority`` asks only until a location fits.
    ``priority``: the first location in the group's order with room for the whole line;
    ``most_available``: the one with the most room (ties: the earlier in the list).
    """
    if definition.strategy == "priority":
        return next((loc for loc in definition.locations if room(loc) >= quantity), None)
    best, most = None, quantity - 1
    for loc in definition.locations:
        here = room(loc)
        if here > most:
            best, most = loc, here
    return best


class LocationGroup(Aggregate):
    """A named, ordered set of locations with a sourcing strategy."""

    TOPIC = "stockstream:LocationGroup"

    class Event(Aggregate.Event):
        TOPIC = "stockstream:LocationGroup.Event"

    class Created(Event, Aggregate.Created):
        """The group's stream began (wire type ``LocationGroupCreated``)."""

        TOPIC = "stockstream:LocationGroupCreated"
        group: str

    class Defined(Event):
        """The group's locations and strategy were set (wire type ``LocationGroupDefined``)."""

        TOPIC = "stockstream:LocationGroupDefined"
        locations: list[str]
        strategy: str

        def apply(self, aggregate: Any) -> None:
            aggregate.locations = list(self.locations)
            aggregate.strategy = self.strategy

    group: str
    locations: list[str]
    strategy: str

    def __init__(self, group: str) -> None:
        self.group = group
        self.locations = []
        self.strategy = "priority"

    @classmethod
    def create(cls, group: str) -> LocationGroup:
        return cls._create(cls.Created, id=group_uuid(group), group=group)

    @property
    def definition(self) -> GroupDefinition:
        return GroupDefinition(self.group, tuple(self.locations), self.strategy)

    def define(self, locations: Sequence[str], strategy: str) -> None:
        """Set the group's locations (1–50, no repeats) and strategy; the same again is a
        no-op. Raises ``InvalidIdentifier`` / ``InvalidRequest``."""
        wanted = GroupDefinition.of(self.group, locations, strategy)
        if self.version > 1 and wanted == self.definition:
            return
        self.trigger_event(self.Defined, locations=list(wanted.locations),
                           strategy=wanted.strategy)
