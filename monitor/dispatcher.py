"""Deliver pending outbox entries: in order per channel, with exponential backoff and a dead letter.

Each delivery is marked sent in its own transaction right after the notifier returns. A crash
between the two re-sends that one delivery with the same idempotency key (webhook header
`Idempotency-Key`, email `Message-ID`), so receivers can tell it is the same alert.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from crawler.models import Delivery
from monitor.notifiers.base import DeliveryError, Notifier
from monitor.render import AlertMessage

logger = logging.getLogger(__name__)
CRASH_EXIT_CODE = 75


@dataclass(frozen=True)
class RetryPolicy:
    """Backoff of failed deliveries: base * 2**(attempt-1), capped; dead letter after max_attempts."""

    base_seconds: float = 30.0
    max_seconds: float = 3600.0
    max_attempts: int = 10

    def delay(self, attempts: int) -> timedelta:
        """Return the wait before the next attempt after `attempts` failures."""
        return timedelta(seconds=min(self.base_seconds * 2 ** (attempts - 1), self.max_seconds))


@dataclass
class DispatchResult:
    """Counts of one dispatch round."""

    sent: int = 0
    retried: int = 0
    failed: int = 0
    errors: list[str] = field(default_factory=list)


def _due_channels(session: Session, now: datetime) -> list[str]:
    """Return channels whose oldest pending delivery is due (later ones wait behind it)."""
    channels = session.scalars(
        select(Delivery.channel).where(Delivery.state == "pending").distinct()
    ).all()
    due = []
    for channel in channels:
        oldest = session.scalars(
            select(Delivery)
            .where(Delivery.state == "pending", Delivery.channel == channel)
            .order_by(Delivery.id)
            .limit(1)
        ).one()
        if oldest.next_attempt_at <= now:
            due.append(channel)
    return sorted(due)


def dispatch_due(
    sessions: sessionmaker[Session],
    notifiers: Mapping[str, Notifier],
    policy: RetryPolicy = RetryPolicy(),
    now: datetime | None = None,
    *,
    crash_after_send: bool = False,
) -> DispatchResult:
    """Send every due delivery, channel by channel in alert order; return what happened.

    `crash_after_send` (tests only) ends the process right after a successful send, before it
    is recorded: the worst moment for a crash.
    """
    now = now or datetime.now(UTC)
    result = DispatchResult()
    with sessions() as session:
        channels = _due_channels(session, now)
    for channel in channels:
        notifier = notifiers.get(channel)
        while True:
            with sessions.begin() as session:
                delivery = session.scalars(
                    select(Delivery)
                    .where(Delivery.state == "pending", Delivery.channel == channel)
                    .order_by(Delivery.id)
                    .limit(1)
                ).one_or_none()
                if delivery is None:
                    break
                message = AlertMessage.from_payload(delivery.alert.payload)
                delivery_id = delivery.id
            outcome = _send(notifier, channel, message)
            if outcome is None and crash_after_send:
                logger.critical("test crash: delivery %s sent, not recorded", delivery_id)
                logging.shutdown()
                os._exit(CRASH_EXIT_CODE)
            with sessions.begin() as session:
                delivery = session.get(Delivery, delivery_id)
                assert delivery is not None
                delivery.attempts += 1
                if outcome is None:
                    delivery.state = "sent"
                    delivery.sent_at = datetime.now(UTC)
                    delivery.last_error = None
                    result.sent += 1
                    continue
                delivery.last_error = str(outcome)
                if outcome.retryable and delivery.attempts < policy.max_attempts:
                    delivery.next_attempt_at = datetime.now(UTC) + policy.delay(delivery.attempts)
                    result.retried += 1
                    logger.warning(
                        "channel %s: delivery %s will be retried: %s", channel, delivery_id, outcome
                    )
                else:
                    delivery.state = "failed"
                    result.failed += 1
                    logger.error(
                        "channel %s: delivery %s failed for good: %s", channel, delivery_id, outcome
                    )
                result.errors.append(f"{channel}: {outcome}")
            break
    return result


def _send(notifier: Notifier | None, channel: str, message: AlertMessage) -> DeliveryError | None:
    """Return None when `message` was delivered, else the DeliveryError."""
    if notifier is None:
        return DeliveryError(f"channel {channel!r} is not configured any more", retryable=False)
    try:
        notifier.send(message)
    except DeliveryError as exc:
        return exc
    except Exception as exc:  # a notifier bug must not stop the other channels
        logger.exception("channel %s: unexpected error", channel)
        return DeliveryError(f"{type(exc).__name__}: {exc}", retryable=True)
    return None
