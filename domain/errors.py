"""Typed refusals of the stock domain.

Every refusal a channel can cause is one of these classes. Each carries a stable
``code`` (the last segment of the HTTP problem ``type``) and a message a person at a
till can read, so adapters translate them without inspecting text.
"""

from __future__ import annotations

from typing import Any


class DomainError(Exception):
    """A command was refused; nothing was recorded."""

    code: str = "domain-error"

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.details: dict[str, Any] = details


class InvalidIdentifier(DomainError):
    """A SKU, location, order id, count id or key is not of the allowed form."""

    code = "invalid-identifier"


class InvalidQuantity(DomainError):
    """A quantity is not an integer, or lies outside the range the command allows."""

    code = "invalid-quantity"


class InvalidRequest(DomainError):
    """Some other argument is malformed (an unknown reason, a naive timestamp, ...)."""

    code = "invalid-request"


class PreconditionFailed(DomainError):
    """A conditional write (``If-Match``) expected the stream at another version than the
    one it is at; nothing was recorded. ``version`` is where the stream is, so the client
    can read it again and decide anew."""

    code = "precondition-failed"

    def __init__(self, *, expected: str, version: int) -> None:
        super().__init__(
            f"the stream is at version {version}, not {expected}; nothing was recorded",
            version=version,
        )
        self.version = version


class InsufficientStock(DomainError):
    """A reservation does not fit within on hand, safety stock and the oversell buffer."""

    code = "insufficient-stock"

    def __init__(self, *, requested: int, available: int, reservable: int) -> None:
        super().__init__(
            f"cannot reserve {requested}: {available} available to sell, "
            f"at most {reservable} can be held by this reservation",
            requested=requested,
            available=available,
            reservable=reservable,
        )
        self.requested = requested
        self.available = available
        self.reservable = reservable


class InsufficientSellable(InsufficientStock):
    """A move out of sellable or a transfer shipment would take units it may not take:
    units that open reservations hold (and, for a shipment, safety stock)."""

    def __init__(self, *, action: str, requested: int, available: int, free: int) -> None:
        DomainError.__init__(
            self,
            f"cannot {action} {requested}: {available} available to sell, "
            f"at most {free} can be taken",
            requested=requested,
            available=available,
            free=free,
        )
        self.requested = requested
        self.available = available
        self.reservable = free


class InsufficientOnHand(DomainError):
    """An adjustment would take on hand (or the stock in one state) below zero; only a
    physical count may do that."""

    code = "insufficient-on-hand"

    def __init__(self, *, delta: int, on_hand: int, state: str | None = None) -> None:
        where = "on hand" if state is None else f"{state.replace('_', ' ')} stock"
        details: dict[str, Any] = {"delta": delta, "on_hand": on_hand}
        if state is not None:
            details["state"] = state
        super().__init__(
            f"an adjustment of {delta} would take {where} from {on_hand} below zero",
            **details,
        )
        self.on_hand = on_hand
        self.state = state


class InsufficientInState(InsufficientOnHand):
    """A move out of a held state (damaged, quality_control) asks for more than it holds."""

    def __init__(self, *, requested: int, state: str, on_hand: int) -> None:
        DomainError.__init__(
            self,
            f"cannot move {requested} out of {state.replace('_', ' ')}: it holds {on_hand}",
            requested=requested,
            state=state,
            on_hand=on_hand,
        )
        self.requested = requested
        self.on_hand = on_hand
        self.state = state


class UnknownReservation(DomainError):
    """No reservation with this order id exists (or it is too old to remember)."""

    code = "unknown-reservation"

    def __init__(self, order_id: str) -> None:
        super().__init__(f"no reservation for order {order_id!r}", order_id=order_id)
        self.order_id = order_id


class ReservationClosed(DomainError):
    """The reservation was already released or fulfilled and cannot take this command."""

    code = "reservation-closed"

    def __init__(self, order_id: str, outcome: str) -> None:
        super().__init__(
            f"the reservation for order {order_id!r} is already closed ({outcome})",
            order_id=order_id,
            outcome=outcome,
        )
        self.order_id = order_id
        self.outcome = outcome


class IdempotencyKeyReused(DomainError):
    """An idempotency key that already took effect was sent with a different request."""

    code = "idempotency-key-reused"

    def __init__(self, key: str) -> None:
        super().__init__(
            f"idempotency key {key!r} was already used for a different request",
            idempotency_key=key,
        )
        self.key = key


class CountAlreadyRecorded(DomainError):
    """A count id that already took effect was sent with a different figure."""

    code = "count-already-recorded"

    def __init__(self, count_id: str) -> None:
        super().__init__(
            f"count {count_id!r} was already recorded with different figures",
            count_id=count_id,
        )
        self.count_id = count_id


class FulfilmentConflict(DomainError):
    """A fulfilment repeated with another quantity than the one that shipped."""

    code = "fulfilment-conflict"

    def __init__(self, order_id: str, *, fulfilled: int, requested: int) -> None:
        super().__init__(
            f"order {order_id!r} was already fulfilled with {fulfilled} units; "
            f"a fulfilment of {requested} cannot be applied again",
            order_id=order_id,
            fulfilled=fulfilled,
            requested=requested,
        )
        self.order_id = order_id
        self.fulfilled = fulfilled
        self.requested = requested


class IncomingConflict(DomainError):
    """An expected receipt's reference is taken: a transfer's incoming entry belongs to
    the transfer (a client may neither set it nor receive against it), and a transfer
    cannot take over a client's entry."""

    code = "incoming-conflict"

    def __init__(self, reference: str, why: str) -> None:
        super().__init__(f"incoming {reference!r}: {why}", reference=reference)
        self.reference = reference


class TransferConflict(DomainError):
    """A transfer step repeated with other figures than the ones that took effect, or a
    step the transfer's state here no longer allows (a receipt after the loss was
    recorded)."""

    code = "transfer-conflict"

    def __init__(self, transfer_id: str, why: str, **details: Any) -> None:
        super().__init__(f"transfer {transfer_id!r}: {why}", transfer_id=transfer_id,
                         **details)
        self.transfer_id = transfer_id


class TransferStatusConflict(DomainError):
    """A transfer command its status does not allow (a shipment of a cancelled transfer,
    a cancel after shipment, a receipt before it); ``transfer_status`` (the problem
    document's member too) says where the transfer is."""

    code = "transfer-status-conflict"

    def __init__(self, transfer_id: str, status: str, action: str) -> None:
        super().__init__(f"transfer {transfer_id!r} is {status}: it cannot {action}",
                         transfer_id=transfer_id, transfer_status=status, action=action)
        self.transfer_id = transfer_id
        self.status = status
        self.action = action


class UnknownTransfer(DomainError):
    """No transfer with this id was ever requested."""

    code = "unknown-transfer"

    def __init__(self, transfer_id: str) -> None:
        super().__init__(f"no transfer {transfer_id!r}", transfer_id=transfer_id)
        self.transfer_id = transfer_id


# ------------------------------------------------------- orders and location groups


class UnknownLocationGroup(InvalidRequest):
    """An order line names a location group that was never defined (a field error: 422)."""

    code = "unknown-location-group"

    def __init__(self, group: str, *, field: str = "location_group") -> None:
        super().__init__(f"no location group {group!r}", field=field, location_group=group)
        self.group = group


class UnknownOrder(DomainError):
    """No order with this id was ever placed."""

    code = "unknown-order"

    def __init__(self, order_id: str) -> None:
        super().__init__(f"no order {order_id!r}", order_id=order_id)
        self.order_id = order_id


class UnknownGroup(DomainError):
    """No location group with this name was ever defined (a read of it: 404)."""

    code = "unknown-location-group"

    def __init__(self, group: str) -> None:
        super().__init__(f"no location group {group!r}", location_group=group)
        self.group = group


class OrderConflict(DomainError):
    """The order id is open with another request (anything but ``ttl_seconds`` differs)."""

    code = "order-conflict"

    def __init__(self, order_id: str) -> None:
        super().__init__(
            f"order {order_id!r} is open with a different request", order_id=order_id
        )
        self.order_id = order_id


class OrderClosed(DomainError):
    """The order was released or fulfilled (or failed, for a fulfilment) and cannot take
    this command."""

    code = "order-closed"

    def __init__(self, order_id: str, status: str) -> None:
        # ``order_status``, not ``status``: in a problem document ``status`` is the HTTP code.
        super().__init__(f"order {order_id!r} is closed ({status})",
                         order_id=order_id, order_status=status)
        self.order_id = order_id
        self.status = status


class OrderInProgress(DomainError):
    """The order is still being placed or fulfilled; drive it to rest, then ask again.
    (The order service does that first, so callers only see it under a race.)"""

    code = "order-in-progress"

    def __init__(self, order_id: str, status: str) -> None:
        super().__init__(f"order {order_id!r} is {status}; try again",
                         order_id=order_id, status=status)
        self.order_id = order_id
        self.status = status


class OrderShort(InsufficientStock):
    """An order could not be held: all-or-nothing with a short line, or partial with no
    line held. ``lines`` names each short line as sent
    (``{sku, location | location_group, requested, available}``); nothing stays held."""

    code = "insufficient-stock"

    def __init__(self, order_id: str, lines: list[dict[str, Any]]) -> None:
        DomainError.__init__(
            self,
            f"order {order_id!r} cannot be held: {len(lines)} line(s) short",
            order_id=order_id,
            lines=lines,
        )
        self.order_id = order_id
        self.lines = lines
        self.requested = sum(int(line["requested"]) for line in lines)
        self.available = min((int(line["available"]) for line in lines), default=0)
        self.reservable = max(self.available, 0)
