"""Nothing lost, nothing doubled: platform instances, holders' servers, the audit consumer and the
broker SIGKILLed in turn under load (`renkei chaos crash`, small), every request answered once,
logged once by its requester and audited once per step."""

from __future__ import annotations

from pathlib import Path

import pytest

from renkei.crash_chaos import run_crash_chaos

pytestmark = pytest.mark.timeout(400)


async def test_kills_of_every_kind_of_process_lose_and_double_nothing(tmp_path: Path) -> None:
    result = await run_crash_chaos(tmp_path / "state", seconds=24, rate=10, residents=120,
                                   instances=2, every=2.5, bound=90)
    print(f"\ncrash chaos: {result.to_json()}")
    assert {"platform", "holder", "audit", "broker"} <= set(result.kills_by_kind)
    assert result.sent >= 200, "too few requests to prove anything"
    assert result.lost == 0, result.lost_request_ids
    assert result.answered.get("FOUND", 0) >= 0.5 * result.sent, result.answered
    assert result.requester_log_not_once == 0 and result.provider_log_more_than_once == 0
    assert result.audit_entries_per_request == {"2": result.sent}
    assert result.tracebacks == {}
    assert result.exactly_once
