"""The linkage benchmark: its parts without Kafka or on the session's broker, and `renkei bench
linkage --quick` end to end on a broker of its own (fields and plausible figures; speed goals
belong to the benchmark)."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
from aiokafka import AIOKafkaConsumer, TopicPartition
from confluent_kafka.admin import NewTopic

from broker import config, topics
from broker.clients import KafkaAccess
from broker.cluster import Cluster
from holders.client import HolderClient
from renkei import (
    bare,
    bench_capacity,
    bench_linkage,
    bench_point,
    bench_report,
    groups,
    hops,
    latency,
    machine_profile,
    plots,
    town,
)
from renkei.bare import BareMessage, Sizes
from renkei.bench_linkage import skip_past
from renkei.bench_plan import Plan
from renkei.state import STATE_ENV, held
from tests.kafka_helpers import consumer, producer, renkei, said_in_one_line, wait_assigned

HOLDER_CPU = "holder-sakura-town"


def test_bare_messages_take_each_hops_size() -> None:
    request = bare.encode(BareMessage(bare.QUERY, bytes(range(16)), "nenkin", "sakura-town"),
                          94, 235)
    assert len(request) == 94 and bare.is_bare(request) and not bare.is_bare(b"\xc3\x01")
    target, forwarded = bare.relayed(request)
    assert target == "sakura-town" and len(forwarded) == 235
    assert bare.decode(forwarded) == bare.decode(request)
    answer = bare.encode(BareMessage(bare.ANSWER, bytes(16), "sakura-town", "nenkin"), 327, 221)
    assert bare.relayed(answer)[0] == "nenkin" and len(bare.relayed(answer)[1]) == 221


def test_round_trips_count_in_the_window_they_complete(tmp_path: Path) -> None:
    sent = np.array([0.0, 0.5, 1.0, 1.5, 9.5])
    path = tmp_path / "h.npz"
    np.savez(path, sent=sent, latency=np.array([0.1, 0.2, math.nan, 0.1, 1.0]),
             status=np.array(["FOUND", "FOUND", "UNANSWERED", "REJECTED", "FOUND"]),
             request_id=np.array(["a", "b", "", "d", "e"]))
    records = latency.load([path])
    found = latency.summarize(records, 0.0, 10.0)
    assert found["completed"] == 2 and found["throughput"] == 0.2  # the last ends after 10 s
    assert found["due"] == 5 and found["outcomes"]["FOUND"] == 3
    assert math.isclose(found["failed_share"], 0.4)
    # percentiles over all 5 due, the 2 not answered (FOUND) counting as never: 100, 200,
    # 1000, never, never; the mean is of the answered ones
    assert found["latency_ms"]["p50"] == 1000 and found["latency_ms"]["max"] is None
    assert math.isclose(found["latency_ms"]["mean"], 1300 / 3)
    stamps = {"LinkageRequest": {"a": 0.01}, "ProviderQuery": {"a": 0.04},
              "ProviderAnswer": {"a": 0.06}, "LinkageAnswer": {"a": 0.09}}
    spans = hops.breakdown(stamps, records, 0.0, 10.0)  # only "a" has every stamp
    assert spans["requests"] == 1
    assert [round(spans[hop]["p50"]) for hop, _ in hops.HOPS] == [10, 30, 20, 30, 10]


def test_a_long_points_throughput_series_says_whether_the_rate_held() -> None:
    """Ten minutes at 100 rt/s then 80 from the fifth on: its mean, 90, hides the fall; its
    series of 10-s steps, and the growth over the window as memory's is judged, do not."""
    sent = np.concatenate([np.arange(0, 300, 1 / 100), np.arange(300, 600, 1 / 80)])
    records = {"sent": sent, "latency": np.full(sent.size, 0.05),
               "status": np.full(sent.size, "FOUND", dtype="U12"),
               "request_id": np.array([""] * sent.size)}
    found = latency.summarize(records, 0.0, 600.0)
    rates = found["throughput_series"]["rt_s"]
    assert found["throughput_series"]["step_seconds"] == 10.0 and len(rates) == 60
    assert rates[0] == 99.5 and rates[1] == rates[28] == 100.0 and rates[31] == rates[-1] == 80.0
    held = bench_report.rate_held(found)
    assert held["first_minute"] > 99.9 and held["last_minute"] == 80.0
    assert -0.3 < held["growth"] < -0.25  # the least-squares line: 105 → 75 rt/s
    steady = bench_report.rate_held(latency.summarize(records, 0.0, 300.0))
    assert abs(steady["growth"]) < 0.01
    cut = latency.summarize(records, 0.0, 65.0)["throughput_series"]["rt_s"]
    assert len(cut) == 7 and cut[-1] == 100.0  # the last step 5 s long, at the same rate


def _records(count: int, every: int, status: str, latency_s: float = 0.05,
             seconds: float = 60.0) -> dict[str, Any]:
    """`count` requests due evenly over `seconds`, answered in `latency_s`, but every `every`th
    one ended as `status` with no answer."""
    found = np.full(count, "FOUND", dtype="U12")
    found[::every] = status
    return {"sent": np.linspace(0, seconds, count, endpoint=False),
            "latency": np.where(found == "FOUND", latency_s, math.nan), "status": found,
            "request_id": np.array([""] * count)}


def test_latency_percentiles_count_a_request_never_answered_as_never() -> None:
    """0.8% never answered: p99 is the answered ones' 50 ms, but p99.9 lands among those never
    answered; over them alone it would be a finite 50 ms."""
    found = latency.summarize(_records(100_000, 125, "UNANSWERED"), 0.0, 60.0)
    assert found["latency_ms"]["p50"] == found["latency_ms"]["p99"] == 50.0
    assert found["latency_ms"]["p99.9"] is None and found["latency_ms"]["max"] is None
    assert found["latency_ms"]["mean"] == 50.0
    shed = latency.summarize(_records(1000, 50, "SHED"), 0.0, 60.0)  # 2%, never sent
    assert shed["latency_ms"]["p99"] is None and shed["latency_ms"]["p50"] == 50.0
    edge = latency.summarize(_records(101, 101, "UNANSWERED"), 0.0, 60.0)  # p99 on the 100th
    assert edge["latency_ms"]["p99"] == 50.0


def test_the_first_bar_is_not_met_with_over_1_percent_never_answered() -> None:
    """2,000 rt/s of 50 ms for 60 s but 2% never answered: its p99 is never, so it broke."""
    main = {**latency.summarize(_records(126_000, 50, "UNANSWERED"), 0.0, 60.0),
            "offered_rate": 2100.0, "seconds": 60.0}
    assert main["throughput"] > bench_report.BAR_RATE
    result = {"main": {"renkei": main}, "capacity": {
        "renkei": _point(None, 800, 300), "baseline": _point(None, 1000, 80), "ratio": 0.8},
        "memory": None}
    first = bench_report.bars(result)[0]
    assert not first["met"]
    assert first["measured"] == ("2,056 rt/s over 60 s, p99 never [broke: p99 never: 2.0% "
                                 "without an answer]")
    assert "p99 never" in bench_report.line({**main, "lag": {"max": 0}, "cpu_percent": {},
                                             "cpu_seconds": {}, "hops_ms": None})


def _point(rate: float | None, throughput: float, p99: float) -> dict[str, Any]:
    return {"offered_rate": rate, "throughput": throughput, "failed_share": 0.0,
            "latency_ms": {"p99": p99}}


def test_the_knee_is_the_last_rate_before_latency_breaks() -> None:
    curve = [_point(50, 50, 20), _point(100, 99, 90), _point(200, 150, 80), _point(400, 390, 30)]
    assert bench_report.knee(curve) == 100
    assert "offered" in (bench_report.broken(curve[2]) or "")
    assert "p99" in (bench_report.broken(_point(50, 50, 900)) or "")
    assert bench_report.knee([_point(50, 50, 900)]) is None


def test_cpu_is_also_told_per_round_trip() -> None:
    point = {**_point(100, 100, 20), "completed": 400, "cpu_percent": {"broker": 20.0},
             "cpu_seconds": {"broker": 0.2, "platform-1": 0.3, "holder-a": 0.5}}
    assert bench_report.cpu_per_round_trip(point) == 2.5
    assert bench_report.cpu_per_round_trip({**point, "completed": 0}) is None


def test_how_often_each_process_was_put_on_a_cpu_is_told_the_holders_as_one() -> None:
    point = {**_point(100, 100, 20), "latency_ms": {"p50": 10, "p99": 20, "p99.9": 30},
             "lag": {"max": 5}, "completed": 400, "cpu_percent": {"broker": 20.0},
             "cpu_seconds": {"broker": 0.2}, "hops_ms": None,
             "cpu_runs_per_second": {"broker": 2400, "holder-a": 300, "holder-b": 250}}
    assert "on a CPU /s: broker 2,400, holders 550" in bench_report.line(point)
    assert "on a CPU" not in bench_report.line({**point, "cpu_runs_per_second": None})


def test_the_whole_machine_is_told_beside_the_processes_measured() -> None:
    point = {**_point(100, 100, 20), "latency_ms": {"p50": 10, "p99": 20, "p99.9": 30},
             "lag": {"max": 5}, "completed": 400, "hops_ms": None,
             "cpu_percent": {"broker": 40.0, "platform-1": 30.0, "holder-a": 50.0},
             "cpu_seconds": {"broker": 0.4, "platform-1": 0.3, "holder-a": 0.5},
             "machine_cpu_percent": {"busy": 131.0, "idle": 60.0, "stolen": 9.0}}
    assert ("machine: busy 131% (these processes 120%, others 11%), idle 60%, stolen 9%"
            in bench_report.line(point))
    assert "machine:" not in bench_report.line({**point, "machine_cpu_percent": None})


def test_the_cost_flat_out_is_told_by_process_the_holders_as_one() -> None:
    renkei = {"completed": 1000, "cpu_seconds": {
        "broker": 0.25, "platform-1": 0.5, "holder-a": 0.25, "holder-b": 0.5}}
    assert bench_report.cpu_by_process(renkei) == {
        "holders": 750.0, "platform-1": 500.0, "broker": 250.0}
    baseline = {"completed": 0, "cpu_seconds": {"relay-1": 0.1}}  # nothing done: no cost
    assert bench_report.cost_text({"renkei": renkei, "baseline": baseline}) == (
        "renkei 1,500 = holders 750 + platform-1 500 + broker 250; baseline —")


def test_a_curve_that_never_broke_says_its_knee_was_not_reached() -> None:
    held = [_point(50, 50, 20), _point(100, 100, 30)]
    assert "knee not reached" in bench_report.knee_text(held)
    assert bench_report.curve_text([*held, _point(200, 150, 80)]) == (
        "(offered→rt/s) 50→50, 100→100, 200→150; knee 100/s")
    assert bench_report.curve_text([]) == "none measured"  # --curve "": not "below the first"


def test_the_ratio_bar_compares_what_each_carries_flat_out() -> None:
    """At an offered rate both carry, the ratio is 1 whatever their capacity: not the bar."""
    result = {"main": {"renkei": {**_point(600, 600, 100), "seconds": 60.0},
                       "baseline": _point(600, 600, 20), "ratio": 1.0},
              "capacity": {"renkei": {**_point(None, 800, 300), "in_flight_per_holder": 32},
                           "baseline": {**_point(None, 4000, 80), "in_flight_per_holder": 256},
                           "ratio": 0.2},
              "memory": None}
    ratio = bench_report.bars(result)[1]
    assert not ratio["met"]
    assert ratio["measured"] == "0.20 × (800 vs 4,000 rt/s, 32 vs 256 in flight a holder)"


def test_the_ratio_says_how_far_apart_in_time_its_two_points_were_measured() -> None:
    """The machine's speed drifts: a ratio of points measured half an hour apart says less."""
    capacity = {"renkei": {**_point(None, 800, 300), "in_flight_per_holder": 32,
                           "window_start": "2026-12-01T21:10:05+00:00"},
                "baseline": {**_point(None, 4000, 80), "in_flight_per_holder": 32,
                             "window_start": "2026-12-01T21:13:05+00:00"}, "ratio": 0.2}
    result = {"main": {"renkei": {**_point(600, 600, 100), "seconds": 60.0},
                       "baseline": _point(600, 600, 20), "ratio": 1.0},
              "capacity": capacity, "memory": None}
    assert bench_report.bars(result)[1]["measured"] == (
        "0.20 × (800 vs 4,000 rt/s, 32 vs 32 in flight a holder, 3 min apart)")


def _memory_result(rss: list[float | None]) -> dict[str, Any]:
    point = {"rss_mb": {"t": [float(t) for t in range(len(rss))], "platform-1": rss},
             "seconds": float(len(rss))}
    return {"main": {"renkei": {**_point(2000, 2000, 100), "seconds": 60.0}},
            "capacity": {"renkei": _point(None, 800, 300), "baseline": _point(None, 1000, 80),
                         "ratio": 0.8},
            "memory": {"point": point, "flatness": bench_report.flatness(point)}}


def test_memory_that_grows_steadily_is_not_flat_even_inside_the_band() -> None:
    """100 → 122 MB in 10 minutes: ±8.8% around the median, but a leak of ~19% over the window
    judged (after the first tenth)."""
    leak = _memory_result([round(100 + 22 * i / 599, 1) for i in range(600)])
    flat = leak["memory"]["flatness"]["platform-1"]
    assert flat["spread"] < bench_report.BAR_MEMORY_BAND and 0.18 < flat["growth"] < 0.21
    bar = bench_report.bars(leak)[2]
    assert not bar["met"] and bar["measured"].endswith("over 10.0 minutes [failed: growth]")
    steady = _memory_result([None, *(100 + (i % 7) for i in range(599))])  # noise, no trend
    assert bench_report.bars(steady)[2]["met"]
    assert abs(steady["memory"]["flatness"]["platform-1"]["growth"]) < 0.01
    jumpy = _memory_result([100.0 if i % 60 else 130.0 for i in range(600)])  # spikes
    assert bench_report.bars(jumpy)[2]["measured"].endswith("[failed: spread]")


def _carrying(by_depth: dict[int, tuple[float, float | None]]) -> tuple[
        list[int], Any]:
    """A fake measure: each depth's (throughput, p99), p99 None for one that timed out; and the
    depths it was asked for."""
    asked: list[int] = []

    def measure(depth: int) -> dict[str, Any]:
        asked.append(depth)
        rate, p99 = by_depth[depth]
        return {**_point(None, rate, p99 or 0), "latency_ms": {"p99": p99},
                "in_flight_per_holder": depth}
    return asked, measure


def test_flat_out_each_holder_keeps_more_in_flight_until_throughput_stops_rising() -> None:
    """32 deep a closed loop carried 1,483/s (in flight / latency), 64 deep 1,800: 128 and 256
    each rose under 5%, so 512 was never tried; the most, 256's 1,900, is taken."""
    asked, measure = _carrying({32: (1483, 170), 64: (1800, 280), 128: (1850, 520),
                                256: (1900, 1000), 512: (1960, 2000)})
    best, tried = bench_capacity.search(measure)
    assert asked == [32, 64, 128, 256] and tried[-1]["in_flight_per_holder"] == 256
    assert best["in_flight_per_holder"] == 256  # 1,900 still the most, if by little
    assert bench_capacity.text(bench_capacity.depths(tried)) == (
        "32→1,483, 64→1,800, 128→1,850, 256→1,900 rt/s")
    asked, measure = _carrying({32: (1483, 170), 64: (1400, 280), 128: (1450, 300),
                                256: (9999, 300)})
    assert bench_capacity.search(measure)[0]["in_flight_per_holder"] == 32
    assert asked == [32, 64, 128]


def test_flat_out_one_depth_without_a_gain_does_not_end_the_search() -> None:
    """A 15-s point varies: 64 deep carried less than 32 (a dip), 128 deep far more."""
    asked, measure = _carrying({32: (1716, 160), 64: (1592, 336), 128: (2484, 430),
                                256: (2450, 800), 512: (2470, 1500)})
    assert bench_capacity.search(measure)[0]["in_flight_per_holder"] == 128
    assert asked == [32, 64, 128, 256, 512]


def test_flat_out_a_depth_whose_answers_time_out_ends_the_search_and_is_not_taken() -> None:
    asked, measure = _carrying({32: (1000, 100), 64: (1500, 200), 128: (3000, None)})
    best, tried = bench_capacity.search(measure)
    assert asked == [32, 64, 128] and best["in_flight_per_holder"] == 64
    assert bench_capacity.text(bench_capacity.depths(tried)).endswith("128→3,000 (timed out) rt/s")
    asked, measure = _carrying({32: (500, None), 64: (900, 100)})  # the first timed out: kept
    assert bench_capacity.search(measure)[0]["in_flight_per_holder"] == 32 and asked == [32]


def test_a_depth_given_is_the_only_one_measured() -> None:
    asked, measure = _carrying({48: (1000, 100)})
    assert bench_capacity.search(measure, (48,))[0]["throughput"] == 1000 and asked == [48]


def test_a_curve_plot_without_offered_rates_is_still_drawn(tmp_path: Path) -> None:
    """Flat out with no load curve (`--flat-out --curve ""`): no rate to put on a log axis."""
    flat = [{**_point(None, 800, 300), "mode": "renkei", "latency_ms": {"p50": 90, "p99": 300}},
            {**_point(None, 4000, 80), "mode": "baseline", "latency_ms": {"p50": 30, "p99": 80}}]
    plots.curve([], [], flat, tmp_path / "curve.png")
    assert (tmp_path / "curve.png").read_bytes().startswith(b"\x89PNG")


async def test_after_the_baseline_groups_start_past_its_bare_messages(broker: Cluster) -> None:
    """What the baseline leaves in a holder's outbox and inbox is skipped by the group reading
    the outboxes (the platform's, after the baseline) and by the holder's inbox group, so that
    a later run on the same broker does not read it. (Bare topics, not granted to the session's
    running platform, so that it neither reads them nor holds the group.)"""
    holder, outbox_group = "bench-skip", "bench-skip-outbox-readers"
    outbox, inbox = topics.outbox(holder), topics.inbox(holder)
    admin = groups.admin()
    for done in admin.create_topics([NewTopic(outbox, 3, 1), NewTopic(inbox, 1, 1)]).values():
        done.result()
    access = KafkaAccess.of(config.ADMIN)
    async with producer(access) as prod:
        for n in range(6):
            for topic in (outbox, inbox):
                await prod.send_and_wait(topic, b"bare", key=str(n).encode())

    group_of = {outbox: outbox_group, inbox: HolderClient.inbox_group(holder)}
    partitions = [TopicPartition(outbox, p) for p in range(3)] + [TopicPartition(inbox, 0)]

    async def committed() -> dict[TopicPartition, int | None]:
        """Each partition's offset committed by its group, read through aiokafka (librdkafka's
        admin crashes on a group whose coordinator is not ready yet: librdkafka issue 5040)."""
        found = {}
        for tp in partitions:
            async with consumer(access, group=group_of[tp.topic]) as reader:
                found[tp] = await reader.committed(tp)
        return found

    assert set((await committed()).values()) == {None}  # a new group would read them all
    skip_past(admin, [holder], outbox_group, HolderClient.inbox_group)
    async with consumer(access) as reader:
        ends = await reader.end_offsets(partitions)
    assert await committed() == ends and sum(ends.values()) == 12


async def test_the_groups_are_skipped_past_once_a_stopped_static_member_is_dropped(
        broker: Cluster) -> None:
    """A platform instance is a static member: stopped, it does not leave its group, and the
    broker refuses the offsets moved for the group until it drops the member (its session
    timeout); moved right after the stop, they are moved once it is dropped."""
    holder, group = "bench-static", "bench-static-outbox-readers"
    outbox = topics.outbox(holder)
    admin = groups.admin()
    for done in admin.create_topics([NewTopic(outbox, 1, 1),
                                     NewTopic(topics.inbox(holder), 1, 1)]).values():
        done.result()
    access = KafkaAccess.of(config.ADMIN)
    async with producer(access) as prod:
        await prod.send_and_wait(outbox, b"bare")
    member = AIOKafkaConsumer(outbox, **access.aiokafka(), group_id=group,
                              group_instance_id="bench-static-1", session_timeout_ms=6_000,
                              auto_offset_reset="earliest", enable_auto_commit=False)
    await member.start()
    try:
        await wait_assigned(member)
    finally:
        await member.stop()
    skip_past(admin, [holder], group, HolderClient.inbox_group)
    tp = TopicPartition(outbox, 0)
    async with consumer(access, group=group) as reader:
        assert await reader.committed(tp) == 1

PERF_REPORT = """# Samples: 24K of event 'cpu-clock:pppH'
#
 18.88% ;   1099:renkei         ;libpython3.11.so.1.0
 3.62%  ;   1181:renkei         ;_rust.abi3.so
 2.10%  ;   1181:renkei         ;python3.11
 1.20%  ;   1099:renkei         ;[kernel.kallsyms]
 3.99%  ;    980:data-plane-kafk;[JIT] tid 980
 1.89%  ;    975:C2 CompilerThre;libjvm.so
 1.09%  ;      0:swapper        ;[kernel.kallsyms]
 0.40%  ;   1099:renkei         ;_write.cpython-311-x86_64-linux-gnu.so
"""


def test_perf_samples_go_to_the_process_of_their_thread_and_the_part_of_their_library() -> None:
    found = machine_profile.shares(PERF_REPORT, {1099: "platform-1", 1181: "holder-nenkin",
                                                 980: "broker", 975: "broker"})
    assert list(found) == ["platform-1", "broker", "holder-nenkin", "idle"]  # largest first
    assert found["platform-1"] == {"all": 20.5, "interpreter": 18.9, "kernel": 1.2, "codec": 0.4}
    assert found["broker"] == {"all": 5.9, "JVM": 5.9}
    assert found["holder-nenkin"] == {"all": 5.7, "crypto": 3.6, "interpreter": 2.1}
    assert found["idle"] == {"all": 1.1, "kernel": 1.1}
    assert machine_profile.line(found).startswith(
        "perf (% of all samples): platform-1 20% (interpreter 19, kernel 1); broker 6% (JVM 6)")


def _perf_works() -> bool:
    try:
        machine_profile.check()
    except machine_profile.PerfUnavailable:
        return False
    return True


def test_a_benchmark_in_the_state_folder_of_one_running_is_refused(tmp_path: Path) -> None:
    """It would stop the running one's broker and empty its folder."""
    state, folder = tmp_path / "state", tmp_path / "state" / "bench"
    kept = folder / "kept"
    folder.mkdir(parents=True)
    kept.write_text("the running one's", encoding="utf-8")
    with held(folder, "benchmark"):  # as the running benchmark holds it
        run = renkei("bench", "linkage", "--quick", "--results", str(tmp_path / "results"),
                     check=False, env={STATE_ENV: str(state)}, timeout=60)
    assert run.returncode == 1
    said_in_one_line(run.stdout + run.stderr, f"another benchmark is running in {folder} "
                     f"(process {os.getpid()}): wait for it to end")
    assert kept.read_text(encoding="utf-8") == "the running one's"
    with held(folder, "benchmark"):  # let go when the run ended
        pass


def _loaded(script: str) -> set[str]:
    """The modules a fresh interpreter has imported once it has run `script`."""
    script += "\nimport json, sys\nprint(json.dumps(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", script], check=True, capture_output=True,
                         text=True, cwd=Path(__file__).parent.parent)
    return set(json.loads(out.stdout.splitlines()[-1]))


def test_a_benchmark_holder_imports_no_faker_town_or_other_benchmark() -> None:
    """A holder that `bench linkage` starts for each point imports what it runs alone: not the
    registry's generator (Faker's word lists), the town, the linkage's driver or the other
    benchmarks (~0.1 s of its cold start, idle); a baseline holder not the holder library or
    numpy either (~0.3 s), a Renkei holder the library once it is chosen, and neither the
    platform's handlers (numpy with them) nor the audit store (~0.12 s of CPU), nor the demo's
    scenario (the directory's commands, the audit events, the platform's keys: ~10 ms) or
    cryptography's key serialisation (its SSH keys: ~4 ms)."""
    sides = ("from renkei.cli import main\n"
             "main(['bench', 'holder', '--help'], standalone_mode=False)\n"
             "from renkei.bare import Sizes\n"
             "from renkei.bench_plan import Plan\n"
             "from renkei.load import side_of\n"
             "side_of('sakura-town', Plan({}, Sizes(1, 1, 1, 1)), baseline=")
    bare, on_renkei = _loaded(sides + "True)"), _loaded(sides + "False)")
    assert {"renkei.load", "renkei.bare_holder"} <= bare
    unused = {"faker", "registry.generate", "renkei.town", "renkei.bench_linkage",
              "audit.bench", "processors.bench_codes"}
    assert unused & on_renkei == set()
    assert {"numpy", "processors.context", "audit.store"} & on_renkei == set()
    assert {"renkei.scenario", "processors.directory", "audit.events", "processors.keys",
            "cryptography.hazmat.primitives.serialization"} & on_renkei == set()
    library = {"holders.client", "holders.store", "renkei.scenario", "numpy"}
    assert (unused | library) & bare == set()
    assert {"renkei.renkei_holder", "holders.client"} <= on_renkei


def test_quick_benchmark_writes_its_result_and_plots(tmp_path: Path) -> None:
    results = tmp_path / "results"
    perf = _perf_works()
    run = renkei("bench", "linkage", "--quick", "--idle-holders", "2", "--profile",
                 *(["--perf"] if perf else []),
                 "--results", str(results), env={STATE_ENV: str(tmp_path / "state")},
                 timeout=280)
    result = json.loads((results / "bench-linkage.json").read_text(encoding="utf-8"))
    assert result["town"]["idle_holders"] == 2 and "holders (+ 2 idle)" in run.stdout
    main = result["main"]
    for point in (main["renkei"], main["baseline"]):
        assert point["completed"] > 0 and point["throughput"] > 0
        assert point["outcomes"].get("FOUND", 0) > 0
        assert 0 < point["latency_ms"]["p50"] <= point["latency_ms"]["p99"] < 60_000
        assert point["cpu_seconds"]["broker"] > 0 and point["cpu_seconds"][HOLDER_CPU] > 0
        assert point["lag"]["max"] is not None and point["lag"]["t"]
        assert all(mb > 10 for mb in point["peak_rss_mb"].values())
    assert main["renkei"]["cpu_seconds"]["platform-1"] > 0
    assert main["baseline"]["cpu_seconds"]["relay-1"] > 0
    runs = main["renkei"]["cpu_runs_per_second"]  # each process woke up, many times a second
    assert runs["platform-1"] > 10 and runs["broker"] > 10 and runs[HOLDER_CPU] > 10, runs
    assert "on a CPU /s: " in run.stdout
    machine = main["renkei"]["machine_cpu_percent"]  # the whole machine's CPUs, all accounted
    cpus = 100 * result["machine"]["cpus"]
    assert 0.8 * cpus < sum(machine.values()) < 1.2 * cpus, machine
    assert machine["busy"] > 0.9 * sum(main["renkei"]["cpu_percent"].values()), machine
    assert "machine: busy " in run.stdout
    assert main["ratio"] > 0 and result["machine"]["loadavg_start"]
    python = tuple(int(n) for n in result["machine"]["python"].split(".")[:2])
    assert result["machine"]["java"] >= 17 and python >= (3, 11)
    assert f"Java {result['machine']['java']}, load average" in run.stdout
    # flat out before the first point, kept apart from it: it takes the cold start (on a new
    # machine its first answers can come after its 2-s window), so it is asked only to have
    # moved: closed loop, a request is sent in its window only after an earlier one's outcome
    priming = result["priming"]
    assert priming["offered_rate"] is None and priming["seconds"] == 2.0
    assert priming["due"] > 0 and "priming (not measured)" in run.stdout
    again = result["priming_again"]  # the platform started again after the baseline's points
    assert again["due"] > 0 and "priming again (not measured)" in run.stdout
    capacity = result["capacity"]
    assert capacity["renkei"]["offered_rate"] is None is capacity["baseline"]["offered_rate"]
    most = capacity["renkei"]["throughput"], capacity["baseline"]["throughput"]
    assert capacity["ratio"] == most[0] / most[1]
    for name in ("renkei", "baseline"):  # the quick run tries one depth, 32 (the
        # search over depths: the fake-measure tests above)
        tried = capacity["depths"][name]
        assert [d["in_flight_per_holder"] for d in tried] == [32]
        assert capacity[name]["in_flight_per_holder"] == 32
        assert f"flat out {name:8} (in flight a holder→rt/s): 32→" in run.stdout
    assert set(result["message_sizes"]) == {"request", "query", "answer", "reply"}
    assert [p["instances"] for p in result["scaleout"]] == [1, 2]
    assert all(p["offered_rate"] is None and p["depths"] for p in result["scaleout"])
    assert "scale-out, flat out: ×1 " in run.stdout
    starts = {name: datetime.fromisoformat(point["window_start"]) for name, point in (
        ("renkei", capacity["renkei"]), ("baseline", capacity["baseline"]),
        ("scaled", result["scaleout"][1]))}  # the ratios' points first, the rest after them
    assert starts["renkei"] < starts["baseline"] < starts["scaled"]
    assert " min apart" in run.stdout
    assert "CPU a round trip flat out, µs: renkei " in run.stdout
    assert result["curve"]["renkei"] and result["curve"]["baseline"]
    assert result["memory"]["flatness"]["platform-1"]["median_mb"] > 10
    assert result["memory"]["throughput"]["first_minute"] > 0
    assert "memory run's throughput: first minute " in run.stdout
    for point in (main["renkei"], main["baseline"]):  # a point shorter than a step: one,
        assert point["seconds"] < latency.STEP_SECONDS  # cut at its end, at its rate
        [rate] = point["throughput_series"]["rt_s"]
        assert math.isclose(rate, point["throughput"], abs_tol=0.05)
    assert len(result["bars"]) == 3 and all(isinstance(b["met"], bool) for b in result["bars"])
    for name in ("curve", "scaleout", "memory"):
        assert (results / f"linkage-{name}.png").stat().st_size > 1000
    profile = result["profile"]  # every process by its CPU clock; each point's holders apart
    assert profile["platform-run"]["profiles"] == 3  # started again after the baseline's
    # ratio points, and the scale-out's second instance
    assert profile["platform-run"]["percent"]["codec"] > 0
    assert profile["audit-run"]["percent"]["SQLite"] > 0
    holders = profile["renkei_1_platform_flat_out_32_deep_1s"]
    assert holders["profiles"] == len(result["town"]["holder_ids"])  # that point's alone: the
    scaled = profile["again_renkei_1_platform_flat_out_32_deep_1s"]  # scale-out's ×1 is apart
    assert scaled["profiles"] == len(result["town"]["holder_ids"])
    assert holders["percent"]["crypto"] > 0
    assert "crypto" not in profile["baseline_1_relay_flat_out_32_deep_1s"]["percent"]
    assert "profiles (under cProfile, by CPU clock)" in run.stdout
    if perf:  # the whole machine sampled in each window, each thread put down to its process
        sampled = main["renkei"]["perf"]
        assert sampled["platform-1"]["all"] > 0 and sampled["platform-1"]["interpreter"] > 0
        assert sampled["broker"]["all"] > 0
        assert "relay-1" in main["baseline"]["perf"] and "platform-1" not in main["baseline"][
            "perf"]
        assert "perf (% of all samples): " in run.stdout


def _fake_bench(monkeypatch: Any) -> list[tuple[Any, str]]:
    """`bench_linkage.measure` without Kafka: each point made up from its load (flat out,
    `instances` × 20 rt/s per request in flight a holder, at most 2,000 an instance); the
    points run, in order."""
    ran: list[tuple[Any, str]] = []

    def run_point(load: Any, stage: Any, plan: Any, knobs: Any, admin: Any,
                  label: str) -> dict[str, Any]:
        ran.append((load, label))
        most = load.instances * min(2000, 20 * load.in_flight)
        return {**_point(load.rate, load.rate or most, 10), "mode": load.mode,
                "instances": load.instances, "seconds": load.seconds,
                "in_flight_per_holder": None if load.rate else load.in_flight,
                "latency_ms": {"p50": 5, "p99": 10, "p99.9": 20}, "completed": 1,
                "lag": {"max": 0}, "cpu_percent": {}, "cpu_seconds": {}, "hops_ms": None,
                "window_start": f"2026-12-04T00:{len(ran):02d}:00+00:00"}

    @contextmanager
    def stage(*_: Any) -> Any:
        yield None

    async def prepare(*_: Any) -> Plan:
        return Plan({"a": []}, Sizes(1, 2, 3, 4))

    for name, fake in (("run_point", run_point), ("platform", stage), ("relays", stage),
                       ("prepare", prepare), ("grow", lambda *_: None),
                       ("runtimes", lambda: {})):
        monkeypatch.setattr(bench_linkage, name, fake)
    monkeypatch.setattr(groups, "admin", lambda: None)
    monkeypatch.setattr(town, "build", lambda *_: None)
    return ran


def _settings(depths: tuple[int, ...]) -> bench_linkage.Settings:
    return bench_linkage.Settings(
        seconds=60.0, rate=2000.0, curve=(), scale=(1, 2, 4), memory_minutes=0, residents=10,
        seed=1, idle_holders=0, prime=0, depths=depths,
        knobs=bench_point.Knobs(warmup=5.0, drain=15.0, settle=1.0))


def test_the_capacity_points_and_the_scale_out_are_each_measured_at_the_depth_carrying_most(
        monkeypatch: Any) -> None:
    """Each system's capacity is searched for (15-s stages); the scale-out's ×1, ×2, ×4 are
    each searched for too, one after another, ×1 measured again rather than reused."""
    ran = _fake_bench(monkeypatch)
    result = bench_linkage.measure(_settings(bench_capacity.DEPTHS))
    capacity = result["capacity"]
    for name in ("renkei", "baseline"):  # 640, 1,280, 2,000, then 2,000 twice: the end
        assert [d["in_flight_per_holder"] for d in capacity["depths"][name]] == list(
            bench_capacity.DEPTHS)
        assert capacity[name]["in_flight_per_holder"] == 128
        assert capacity[name]["throughput"] == 2000 and capacity[name]["seconds"] == 15.0
    scaled = result["scaleout"]
    assert [(p["instances"], p["offered_rate"], p["throughput"]) for p in scaled] == [
        (1, None, 2000), (2, None, 4000), (4, None, 8000)]
    assert scaled[0] is not capacity["renkei"] and scaled[0]["window_start"] > max(
        p["window_start"] for p in (capacity["renkei"], capacity["baseline"]))
    assert [d["in_flight_per_holder"] for d in scaled[2]["depths"]] == list(bench_capacity.DEPTHS)
    labels = [label for _, label in ran]
    assert labels.count("renkei 1 platform flat out 32 deep 15s") == 1  # and measured again,
    assert labels.count("again renkei 1 platform flat out 32 deep 15s") == 1  # named apart
    assert labels[-5:] == [f"renkei 4 platform flat out {d} deep 15s"
                           for d in bench_capacity.DEPTHS]


def test_a_depth_given_is_measured_alone_for_the_points_whole_length(monkeypatch: Any) -> None:
    ran = _fake_bench(monkeypatch)
    result = bench_linkage.measure(_settings((48,)))
    assert result["capacity"]["depths"]["baseline"] == [
        {"in_flight_per_holder": 48, "throughput": 960, "p99_ms": 10, "failed_share": 0.0}]
    assert {load.in_flight for load, _ in ran if load.rate is None} == {48}
    assert {load.seconds for load, _ in ran if load.rate is None} == {60.0}
