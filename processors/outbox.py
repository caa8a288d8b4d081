"""Everything a holder writes to its outbox, handled: decode, dispatch, answer or reject."""

from __future__ import annotations

import logging
from datetime import datetime

from broker import topics
from processors.effects import Send, send
from schemas.codec import CODEC, SchemaError
from schemas.messages import Ping, Pong, Rejection

log = logging.getLogger(__name__)

OUTBOX_MESSAGES = (Ping,)


def handle(holder: str, value: bytes | None, now: datetime) -> list[Send]:
    """Handle one outbox message from `holder` (known from the topic, i.e. the broker)."""
    inbox = topics.inbox(holder)
    try:
        message = CODEC.decode(value or b"", *OUTBOX_MESSAGES)
    except SchemaError as exc:
        log.warning("rejected a message from %s: %s", holder, exc.reason)
        return [send(inbox, None, Rejection("", exc.reason, str(exc), now))]
    return [send(inbox, message.request_id, Pong(message.request_id, message.sent_at, now))]
