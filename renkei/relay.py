"""`renkei bench relay`: the baseline's bare relay. One member of a plain consumer group on the
holders' outboxes, forwarding each message to the inbox its header names: no approval, no code
conversion, no encryption, no logging. It runs as the platform's principal (it may read every
outbox and write every inbox), in a group under the platform's group prefix."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import click

from broker import acls, topics
from broker.clients import KafkaAccess
from renkei import bare, event_loop
from renkei.envelope import Send
from renkei.service_loop import serve, stop_on_signals

GROUP = f"{acls.PLATFORM_APP}-bench-relay"


async def _forward(records: list[Any]) -> Sequence[Send]:
    out = []
    for record in records:
        if not bare.is_bare(record.value):
            continue  # a real message left from before the baseline: not the relay's
        target, value = bare.relayed(record.value)
        out.append(Send(topics.inbox(target), record.key.decode() if record.key else None, value))
    return out


async def relay(instance: str, holders: Sequence[str]) -> None:
    """Relay until SIGTERM or SIGINT."""
    await serve(KafkaAccess.of(acls.PLATFORM), [topics.outbox(h) for h in holders], GROUP,
                _forward, stop_on_signals(), instance=f"{GROUP}-{instance}")


@click.command("relay", hidden=True)
@click.option("--instance", default="1", show_default=True,
              help="the relay's static group member id, unique among running relays")
@click.option("--holder", "holders", multiple=True, required=True,
              help="a holder whose outbox to relay (repeatable)")
def relay_command(instance: str, holders: tuple[str, ...]) -> None:
    """The baseline's bare relay (internal: started by `renkei bench linkage`)."""
    event_loop.run(relay(instance, holders))
