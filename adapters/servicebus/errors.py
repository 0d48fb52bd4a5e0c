"""How SDK failures become the port's exceptions (``application.ports``).

Callers act on the *kind* of failure, never on which SDK raised it:

- ``BrokerUnavailable``: the namespace could not be reached in time or is throttling
  (connection, communication, timeout, server busy; HTTP 5xx/429 or transport errors from
  the administration client). Nothing is known to have happened; retry later.
- ``LockLost``: the message or session lock expired or belongs to someone else, or the
  message was already settled. The settlement did not happen; the broker redelivers.
- ``PublishFailed``: any other refusal of a send (too large, quota exceeded, entity
  missing or disabled, not authorised). Publishing the same messages again is safe:
  duplicate detection drops the ones already accepted.
"""

from __future__ import annotations

from azure.core.exceptions import (
    HttpResponseError,
    ResourceNotFoundError,
    ServiceRequestError,
    ServiceResponseError,
)
from azure.servicebus.exceptions import (
    MessageAlreadySettled,
    MessageLockLostError,
    OperationTimeoutError,
    ServiceBusCommunicationError,
    ServiceBusConnectionError,
    ServiceBusError,
    ServiceBusServerBusyError,
    SessionCannotBeLockedError,
    SessionLockLostError,
)

from application.ports import BrokerUnavailable, LockLost, PublishFailed

UNAVAILABLE_ERRORS: tuple[type[Exception], ...] = (
    ServiceBusConnectionError,
    ServiceBusCommunicationError,
    OperationTimeoutError,
    ServiceBusServerBusyError,
)
"""SDK errors that mean "the broker cannot be reached or is too busy right now"."""

LOCK_ERRORS: tuple[type[Exception], ...] = (
    MessageLockLostError,
    SessionLockLostError,
    SessionCannotBeLockedError,
    MessageAlreadySettled,
)
"""SDK errors that mean "this receiver no longer holds the lock it needs"."""


def publish_error(exc: ServiceBusError, topic: str) -> PublishFailed | BrokerUnavailable:
    """The port exception for a failed send to ``topic``."""
    if isinstance(exc, UNAVAILABLE_ERRORS):
        return BrokerUnavailable(f"Service Bus unavailable while publishing to {topic!r}: {exc}")
    return PublishFailed(f"Service Bus refused a publish to {topic!r}: {exc}")


def receive_error(exc: Exception, what: str) -> LockLost | BrokerUnavailable:
    """The port exception for a failed receive or settlement (``what`` says which)."""
    if isinstance(exc, LOCK_ERRORS):
        return LockLost(f"{what}: lock lost ({exc})")
    return BrokerUnavailable(f"{what}: Service Bus failed ({exc})")


def admin_error(exc: Exception, what: str) -> Exception:
    """The port exception for a failed administration (runtime properties) call.

    A missing topic or subscription (404) is a ``LookupError``: asking about an entity
    that does not exist is a caller's mistake, not an outage.
    """
    if isinstance(exc, ResourceNotFoundError) or (
        isinstance(exc, HttpResponseError) and exc.status_code == 404
    ):
        return LookupError(f"{what}: not found")
    if isinstance(exc, ServiceRequestError | ServiceResponseError):
        return BrokerUnavailable(f"{what}: Service Bus administration unreachable ({exc})")
    # 401/403 (missing Manage rights), 429 and 5xx: the counts cannot be had right now.
    return BrokerUnavailable(f"{what}: Service Bus administration failed ({exc})")
