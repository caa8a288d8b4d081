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
    assert result.accepted == result.jobs >= 200, result.never_accepted
    checked = result.checked
    assert checked.requests >= result.accepted
    assert not checked.failing_request_ids, checked.failing_request_ids
    assert checked.answered.get("FOUND", 0) >= 0.5 * checked.requests, checked.answered
    assert checked.audit_steps_per_request == {"approved+answered": checked.requests}
    assert (result.died, result.tracebacks) == ([], {})
    assert result.exactly_once
