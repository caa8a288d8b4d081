"""aiokafka 0.14 takes a failed write to a broker connection for a broken connection only when the
write raises OSError (aiokafka#1038, open): it closes the connection and raises its retriable
KafkaConnectionError. A uvloop transport (every Renkei process runs on uvloop: renkei.event_loop)
whose handle is closed raises RuntimeError instead ("unable to perform operation on
<TCPTransport closed=True …>; the handler is closed", uvloop#506). It is closed so while aiokafka
still takes the connection for a live one: when the broker goes away with part of an answer sent,
until the connection's read task has run. The RuntimeError then passed every retry of aiokafka's
and ended what awaited the request: in a chaos run where the broker was killed, a holder's inbox
loop, and with it the holder. Installed, such a write is a broken connection to aiokafka, as an
OSError is; every other RuntimeError is raised as it was.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from aiokafka.conn import AIOKafkaConnection, CloseReason
from aiokafka.errors import KafkaConnectionError

Write = Callable[..., Any]
_send: Write = AIOKafkaConnection.send
_send_sasl_token: Write = AIOKafkaConnection._send_sasl_token


def _broken_when_closed(write: Write) -> Write:
    """`write` (a connection's method writing a request), a RuntimeError it raises on a closed
    transport taken as aiokafka takes an OSError there."""

    @functools.wraps(write)
    def written(self: AIOKafkaConnection, *args: Any, **kwargs: Any) -> Any:
        writer = self._writer
        try:
            return write(self, *args, **kwargs)
        except RuntimeError as err:
            if writer is None or not writer.transport.is_closing():
                raise
            self.close(reason=CloseReason.CONNECTION_BROKEN)
            raise KafkaConnectionError(
                f"Connection at {self.host}:{self.port} broken: {err}") from err

    return written


def install() -> None:
    """Every broker connection of this process takes a write on a closed transport for a broken
    connection (a request's and a log-in's); again is harmless."""
    AIOKafkaConnection.send = _broken_when_closed(_send)
    AIOKafkaConnection._send_sasl_token = _broken_when_closed(_send_sasl_token)
