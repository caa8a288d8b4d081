"""A holder's request ids: unique, and in the order they were made (so that the stores keyed by
them, the holder's and the audit's, add each at the end of their indexes)."""

from __future__ import annotations

import uuid

from holders.client import new_request_id


def test_request_ids_are_unique_uuid7s_sorting_in_the_order_made() -> None:
    ids = [new_request_id() for _ in range(10_000)]
    assert {uuid.UUID(i).version for i in ids} == {7}
    assert len(set(ids)) == len(ids)
    assert ids == sorted(ids)
