"""A consumer-group member that knows when its group last heard from it, and that stops once
another instance has joined under its static member id (group_instance_id).

Two instances run under one static member id (a unit file copied, a container started elsewhere
while the old one lives) took the id from each other every heartbeat, for ever: aiokafka 0.14
heartbeats and commits without the id (Heartbeat v1, OffsetCommit v3), so the broker does not
answer the one it replaced FENCED_INSTANCE_ID but UNKNOWN_MEMBER_ID, as it answers a member
expelled, and aiokafka joins again under the id, replacing the other in turn; each rebuilt its
partitions every time, and both went on deciding. A member the group forgot while its session
still ran was not expelled (that waits for the session to end): another instance took its id,
and this one stops (Fenced), without joining again. One replaced while it rejoined the group is
answered FENCED_INSTANCE_ID at its JoinGroup or SyncGroup (which carry the id), an error
aiokafka 0.14 does not know and raises as a KafkaError from getmany: this one stops (Fenced)
there too. A member the group forgot with no instance under its id (an operator's RemoveMembers,
a group coordinator restarted while the instance was frozen) is answered UNKNOWN_MEMBER_ID
alike: asked with a JoinGroup under its last member id, which joins it in neither case, the
group answers FENCED_INSTANCE_ID if another instance has the id (this one stops), and
UNKNOWN_MEMBER_ID if no member has it: this one joins again, as aiokafka does.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.client import ConnectionGroup
from aiokafka.consumer.group_coordinator import GroupCoordinator
from aiokafka.coordinator.protocol import ConsumerProtocol
from aiokafka.errors import KafkaError, NoError, RebalanceInProgressError, UnknownMemberIdError
from aiokafka.protocol.commit import OffsetCommitRequest
from aiokafka.protocol.group import HeartbeatRequest, JoinGroupRequest, SyncGroupRequest

FENCED_INSTANCE_ID = 82  # Kafka's error code, which aiokafka 0.14 has no error for


class Fenced(Exception):
    """Another instance joined the group under this one's static member id: this one owns
    nothing any more."""

    def __init__(self, group: str, member: str) -> None:
        super().__init__(group, member)  # its args: aiokafka hands a copy of it on
        self.group, self.member = group, member

    def __str__(self) -> str:
        return (f"another instance joined group {self.group} as member {self.member} and "
                f"took its place: this one stopped (each running instance needs a member id "
                f"of its own)")


def _known(request: Any, response: Any) -> bool:
    """Whether the group's answer to `request` says it knows the member: a heartbeat answered
    (rebalancing or not), or a SyncGroup, whose answer is its assignment."""
    if isinstance(request, HeartbeatRequest):
        return response.error_code in (NoError.errno, RebalanceInProgressError.errno)
    return isinstance(request, SyncGroupRequest) and response.error_code == NoError.errno


def _forgotten(request: Any, response: Any) -> bool:
    """Whether the group's answer to a heartbeat or a commit says it does not know the member
    (UNKNOWN_MEMBER_ID)."""
    unknown = UnknownMemberIdError.errno
    if isinstance(request, OffsetCommitRequest):
        return any(code == unknown for _, partitions in response.topics for _, code in partitions)
    return isinstance(request, HeartbeatRequest) and response.error_code == unknown


def _replaced(request: Any, response: Any) -> bool:
    """Whether the group's answer to a JoinGroup or SyncGroup says another instance has the
    member's static id (FENCED_INSTANCE_ID)."""
    return (isinstance(request, JoinGroupRequest | SyncGroupRequest)
            and response.error_code == FENCED_INSTANCE_ID)


class GroupMember(AIOKafkaConsumer):  # type: ignore[misc]
    """An aiokafka consumer that knows when its group last heard from it (heard_within), its
    generation and member id, and that, a static member, raises Fenced (from getmany or commit)
    once the group has taken its member id for another instance, rather than
    join again and take it back."""

    _heard_at: float | None = None  # when its last heartbeat or sync answered was sent
    _id_taken = False  # its JoinGroup or SyncGroup answered FENCED_INSTANCE_ID

    def __init__(self, *topics: str, **config: Any) -> None:
        super().__init__(*topics, **config)
        # watched before start, which makes the first join (and once only: started() tries a
        # start again while the broker cannot be reached)
        self._client.send = self._watched(self._client.send)

    def _watched(self, send: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
        """The client's send, noting when the group last heard from this member, and raising
        Fenced at an answer that says another instance has its id."""
        async def watched(node_id: int, request: Any, **kwargs: Any) -> Any:
            sent = time.monotonic()
            response = await send(node_id, request, **kwargs)
            static = self._group_instance_id is not None
            if static and _forgotten(request, response) and self.heard_within(
                    self._session_timeout_ms / 1000):  # not expelled: that waits out its session
                self._heard_at = None  # it decides nothing more as the owner of anything
                if await self._replaced_in_group(node_id, send):
                    raise self._fenced()  # else forgotten: aiokafka joins again
            if _replaced(request, response):  # aiokafka raises it as a KafkaError: getmany
                self._heard_at, self._id_taken = None, True
            if _known(request, response):
                self._heard_at = sent
            return response
        return watched

    def _fenced(self) -> Fenced:
        return Fenced(str(self._group_id), str(self._group_instance_id))

    async def _replaced_in_group(self, node_id: int,
                                 send: Callable[..., Awaitable[Any]]) -> bool:
        """Whether another instance has this member's static id (not forgotten by the group),
        asked by a JoinGroup under its last member id, which the group answers
        FENCED_INSTANCE_ID if so, UNKNOWN_MEMBER_ID if no member has the id, joining it in
        neither case; any other answer, or none, is not taken as replaced (it joins again:
        replaced after all, the other is told FENCED_INSTANCE_ID in turn, and stops)."""
        coordinator = self._coordinator
        topics = self._subscription.subscription.topics
        request = JoinGroupRequest(
            str(self._group_id), self._session_timeout_ms, coordinator._rebalance_timeout_ms,
            coordinator.member_id, str(self._group_instance_id), ConsumerProtocol.PROTOCOL_TYPE,
            [(a.name, a.metadata(topics).encode()) for a in coordinator._assignors])
        try:
            response = await send(node_id, request, group=ConnectionGroup.COORDINATION)
        except KafkaError:
            return False
        return _replaced(request, response)

    async def getmany(self, *partitions: TopicPartition, timeout_ms: int = 0,
                      max_records: int | None = None) -> dict[TopicPartition, list[Any]]:
        """aiokafka's getmany, raising Fenced for the KafkaError of a rejoin another instance
        under this one's static member id cut short (FENCED_INSTANCE_ID)."""
        try:
            polled: dict[TopicPartition, list[Any]] = await super().getmany(
                *partitions, timeout_ms=timeout_ms, max_records=max_records)
        except KafkaError as exc:
            if self._id_taken:
                raise self._fenced() from exc
            raise
        return polled

    def heard_within(self, seconds: float) -> bool:
        """Whether the group heard from this member (a heartbeat it answered, or the SyncGroup
        that completed its join: an instance just joined decides at once, not after its first
        heartbeat) within the last `seconds`: not, and the member may have been expelled
        meanwhile (its session over, a process frozen, say), its partitions given to others,
        whatever it still holds. A consumer whose partitions are assigned by hand (or none yet)
        is in no group to be expelled from."""
        if not self._subscription.partitions_auto_assigned():
            return True
        return self._heard_at is not None and time.monotonic() - self._heard_at < seconds

    def generation(self) -> int:
        """The generation of the group this consumer last joined (-1 while it is in none, or
        not started)."""
        return int(self._coordinator.generation) if self._in_group() else -1

    def member(self) -> str:
        """Its member id in the group as of its last join ("" while it is in none): a new one
        once the group has expelled it (aiokafka resets it on UNKNOWN_MEMBER_ID or
        ILLEGAL_GENERATION, and the group gives another at the next join)."""
        return str(self._coordinator.member_id) if self._in_group() else ""

    def _in_group(self) -> bool:
        return isinstance(self._coordinator, GroupCoordinator)
