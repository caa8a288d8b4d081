"""Where a round trip's time goes, hop by hop. The requester stamps its request (`due`, in its
records), the broker stamps what holders append to their outboxes and what the platform sends to
their inboxes (LogAppendTime), and the requester notes when the answer is decrypted.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import Any

import numpy as np

from broker import config, topics
from broker.clients import KafkaAccess, records_since
from schemas.codec import CODEC, SchemaError
from schemas.messages import FOUND

# (the hop, the message that ends it); the last hop ends at the requester
HOPS = (("holder_send", "LinkageRequest"),  # due → on the requester's outbox
        ("platform_request", "ProviderQuery"),  # approval, conversion, decider → query sent
        ("provider", "ProviderAnswer"),  # query delivered, answered, on the provider's outbox
        ("platform_answer", "LinkageAnswer"),  # decider, conversion back → answer sent
        ("requester_receive", None))  # answer delivered and decrypted at the requester


async def stamps(holders: Sequence[str], since: float) -> dict[str, dict[str, float]]:
    """Message name → request id → its Kafka timestamp (seconds), for the linkage messages on
    the holders' topics from `since` (Unix time) on."""
    names = [topic for h in holders for topic in (topics.outbox(h), topics.inbox(h))]
    found: dict[str, dict[str, float]] = defaultdict(dict)
    wanted = {name for _, name in HOPS if name}
    async for record in records_since(KafkaAccess.of(config.ADMIN), names, int(since * 1000)):
        try:
            name, fields = CODEC.decode_record(record.value or b"")
        except SchemaError:
            continue
        if name in wanted:
            found[name][fields["request_id"]] = record.timestamp / 1000
    return found


def breakdown(found: dict[str, dict[str, float]], records: dict[str, np.ndarray[Any, Any]],
              start: float, end: float) -> dict[str, Any]:
    """p50 and p99 of each hop (ms) over the answered requests due in [start, end)."""
    names = [name for _, name in HOPS if name]
    rows = []
    for due, latency, status, request_id in zip(records["sent"], records["latency"],
                                                records["status"], records["request_id"],
                                                strict=True):
        if status != FOUND or not start <= due < end:
            continue
        times = [found[name].get(str(request_id)) for name in names]
        if all(t is not None for t in times):
            points = [float(due), *(t for t in times if t is not None), float(due + latency)]
            rows.append(np.diff(points))
    if not rows:
        return {"requests": 0}
    spans = np.array(rows) * 1000
    return {"requests": len(rows), **{
        hop: {"p50": round(float(np.percentile(spans[:, i], 50)), 1),
              "p99": round(float(np.percentile(spans[:, i], 99)), 1)}
        for i, (hop, _) in enumerate(HOPS)}}
