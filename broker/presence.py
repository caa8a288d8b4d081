"""Whether the broker is there, as a running service tells its operator: once when it goes away
(since when, and that the service waits for it) and once when it is back (after how long).
Without it, a service whose broker stopped (killed, its disk full, a cluster without a quorum
of its nodes) said nothing of its own: only aiokafka's lines of each failed try, once a minute
(broker.repeats), none saying that the broker had gone, nor that the service was waiting."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime

from broker.clients import BrokerAway, reachable
from renkei.tasks import cancelled

log = logging.getLogger(__name__)
WATCH_SECONDS = 5.0  # how often a running service looks whether the cluster can serve
REACH_SECONDS = 2.0  # how long one look waits for a node's connection


@dataclass
class Presence:
    """The broker at `bootstrap` as last seen, and what to say when that changes."""

    bootstrap: str
    who: str
    away_since: datetime | None = None

    def seen(self, reached: bool, now: datetime) -> str | None:
        """The line to say now that the broker was `reached` (or not) at `now`: one when it has
        gone away, one when it is back, none while it stays as it was."""
        if not reached and self.away_since is None:
            self.away_since = now
            return (f"{self.who}: the broker at {self.bootstrap} is away since "
                    f"{now:%Y-%m-%d %H:%M:%S} UTC ({self._why()}): waiting for it; "
                    "`renkei broker status` says why")
        if reached and self.away_since is not None:
            since, self.away_since = self.away_since, None
            return (f"{self.who}: the broker at {self.bootstrap} is back, after "
                    f"{(now - since).total_seconds():.0f} s away (since "
                    f"{since:%Y-%m-%d %H:%M:%S} UTC)")
        return None

    def _why(self) -> str:
        nodes = len(nodes_of(self.bootstrap))
        if nodes == 1:
            return "no node takes a connection"
        return (f"fewer than {quorum_of(nodes)} of its {nodes} nodes take a connection: "
                "no quorum, nothing served")


def nodes_of(bootstrap: str) -> list[str]:
    """The host:port of each node `bootstrap` names."""
    return bootstrap.split(",")


def quorum_of(nodes: int) -> int:
    """How many of `nodes` voters a KRaft quorum needs: a majority."""
    return nodes // 2 + 1


def reached(bootstrap: str, within: float = REACH_SECONDS) -> bool:
    """Whether a node of `bootstrap` takes a connection now."""
    try:
        reachable(bootstrap, within)
    except BrokerAway:
        return False
    return True


async def serving(bootstrap: str, within: float = REACH_SECONDS) -> bool:
    """Whether the cluster at `bootstrap` can serve now: a majority of the nodes it names take a
    connection, each looked at at once. `bootstrap` names every node of the project's clusters
    (`renkei broker up --nodes 3`, compose.yaml), each a voter of its KRaft quorum: with fewer,
    no controller is elected, no leader moves, and a partition (min ISR 2) refuses records,
    while the node left goes on taking connections (a service that asked only that never said
    its broker was away)."""
    nodes = nodes_of(bootstrap)
    taking = await asyncio.gather(*(asyncio.to_thread(reached, node, within) for node in nodes))
    return sum(taking) >= quorum_of(len(nodes))


async def watch(bootstrap: str, who: str) -> None:
    """Look every WATCH_SECONDS whether the broker is there (serving), saying when that
    changes."""
    await away_for(bootstrap, math.inf, who)


@contextlib.asynccontextmanager
async def watched(bootstrap: str, who: str) -> AsyncIterator[None]:
    """The broker watched (`watch`) while the block runs."""
    task = asyncio.create_task(watch(bootstrap, who))
    try:
        yield
    finally:
        await cancelled(task)


class BrokerGone(RuntimeError):
    """The broker went away while a one-off run needed it, and did not come back in time."""


async def away_for(bootstrap: str, within: float, who: str) -> None:
    """Look every WATCH_SECONDS whether the broker is there, saying when it goes and comes back,
    until it has been away `within` seconds on end: then BrokerGone, saying so, for a one-off run
    (`renkei demo`) to stop with it rather than wait for ever (`watch`: never)."""
    presence = Presence(bootstrap, who)
    while True:
        there = await serving(bootstrap)
        now = datetime.now(UTC)
        if (line := presence.seen(there, now)) is not None:
            log.warning(line)
        since = presence.away_since
        if since is not None and (now - since).total_seconds() >= within:
            raise BrokerGone(f"the broker at {bootstrap} went away at {since:%H:%M:%S} UTC and "
                             f"was not back within {within:g} s: {who} stops "
                             "(`renkei broker status` says why)")
        await asyncio.sleep(WATCH_SECONDS)
