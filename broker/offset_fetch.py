"""aiokafka 0.14 reads an OffsetFetch answer (v2 and later) without its group-level error.

While a group coordinator is still loading its offsets after a broker start, Kafka answers an
OffsetFetch with "loading" and no partitions (Kafka's own client checks that error since
KIP-88). aiokafka takes the empty answer for "nothing committed": a consumer then starts its
partitions from `auto_offset_reset` (the platform: from the beginning, deciding again requests
it had long forgotten) and `committed()` says None. Seen here on a restarted broker: for ~1 s,
None for partitions with ~28,000 committed. Installed, such an answer raises the error it
carries, which aiokafka retries (loading, coordinator moved) or raises (the others).
"""

from __future__ import annotations

from typing import Any

from aiokafka import errors
from aiokafka.consumer.group_coordinator import GroupCoordinator
from aiokafka.protocol.commit import OffsetFetchRequest

_send_req = GroupCoordinator._send_req


async def _heeding_group_errors(self: GroupCoordinator, request: Any) -> Any:
    response = await _send_req(self, request)
    if isinstance(request, OffsetFetchRequest):
        error = errors.for_code(getattr(response, "error_code", 0))
        if error is not errors.NoError:
            if error is errors.NotCoordinatorForGroupError:
                self.coordinator_dead()  # found again before the retry
            raise error()
    return response


def install() -> None:
    """Every group coordinator of this process raises an OffsetFetch answer's group error."""
    GroupCoordinator._send_req = _heeding_group_errors
