"""Nothing lost, nothing doubled: platform instances, holders' servers, the audit consumer, the
broker, the registry and the authority SIGKILLed in turn under load (`renkei chaos crash`,
small), every request answered once, logged once by its requester and audited once per step,
every binding among them answered once, audited once and, by personal number, looked up once;
with provider holders suspended and resumed under load, their requests refused SUSPENDED once."""

from __future__ import annotations

from pathlib import Path

import pytest

from renkei.crash_chaos import SUSPENDED_FOR, run_crash_chaos

pytestmark = pytest.mark.timeout(400)


async def test_kills_of_every_kind_of_process_lose_and_double_nothing(tmp_path: Path) -> None:
    result = await run_crash_chaos(tmp_path / "state", seconds=24, rate=10, residents=120,
                                   instances=2, every=2.5, bound=90)
    print(f"\ncrash chaos: {result.to_json()}")
    assert set(result.kills_by_kind) == {"platform", "holder", "audit", "registry", "authority",
                                         "broker"}, result.kills
    assert result.accepted == result.jobs >= 200, result.never_accepted
    checked = result.checked
    assert checked.requests + checked.bindings >= result.accepted
    assert checked.bindings >= result.binding_jobs >= 20
    assert 0 < checked.bindings_by_number < checked.bindings, "by number and by attributes"
    assert set(checked.bindings_answered) <= {"BOUND", "INVESTIGATING"}, checked.bindings_answered
    assert not checked.failing_request_ids, checked.failing_request_ids
    assert checked.answered.get("FOUND", 0) >= 0.5 * checked.requests, checked.answered
    assert sum(checked.audit_steps_per_request.values()) == checked.requests  # (a timeout's
    # steps may hold its late answer's refusal: chaos_check judged each, failing_request_ids)
    assert sum(checked.bindings_answered.values()) == checked.bindings
    assert (result.died, result.tracebacks) == ([], {})
    assert result.exactly_once


async def test_holders_suspended_and_resumed_under_load_have_their_requests_ended_once(
        tmp_path: Path) -> None:
    """`renkei chaos crash --suspend-every`, small and without kills: two provider holders or
    more (as fast as the commands go) suspended in turn, each resumed SUSPENDED_FOR seconds
    later; requests to and from them meanwhile refused SUSPENDED (at approval, or once
    approved), each once at its requester and in the access log, the rest answered as before."""
    result = await run_crash_chaos(tmp_path / "state", seconds=35, rate=10, residents=80,
                                   instances=2, every=40, bound=60, suspend_every=5)
    print(f"\ncrash chaos with suspensions: {result.to_json()}")
    assert result.kills == []
    assert len({s[1] for s in result.suspensions}) >= 2, result.suspensions
    assert all(s[2] >= SUSPENDED_FOR for s in result.suspensions), result.suspensions
    checked = result.checked
    assert not checked.failing_request_ids, checked.failing_request_ids
    refused = sum(n for ending, n in checked.suspended_endings.items()
                  if ending.startswith("REJECTED SUSPENDED"))
    assert refused > 0, checked.suspended_endings
    assert checked.answered.get("REJECTED", 0) + checked.bindings_answered.get("REJECTED", 0) \
        == refused, "every refusal one of a holder suspended meanwhile"
    assert result.accepted == result.jobs and (result.died, result.tracebacks) == ([], {})
    assert result.exactly_once
