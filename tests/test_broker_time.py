"""The broker's time as a process knows it from the append times it reads (BrokerTime), its
elapsed clock driven by the test."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from renkei.broker_time import WINDOW, BrokerTime
from tests.clock_helpers import appended

BROKER = datetime(2026, 12, 5, 4, 0, tzinfo=UTC)  # the broker's clock when the test starts


@pytest.fixture
def elapsed(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The elapsed clock BrokerTime reads, as the test moves it (its one reading)."""
    reading = [0.0]
    monkeypatch.setattr("renkei.broker_time.elapsed_seconds", lambda: reading[0])
    return reading


def test_the_brokers_clock_set_back_is_followed_within_the_window(elapsed: list[float]) -> None:
    """The estimate was the latest append time ever read, carried on: the broker's clock set back
    by 5 minutes (an NTP step, which on one machine moves the platform's too) left it 5 minutes
    ahead until a restart, every new request timed out at once. It follows within WINDOW."""
    time = BrokerTime()
    time.read([appended(BROKER)])
    elapsed[0] = 5.0
    set_back = BROKER + timedelta(seconds=5) - timedelta(minutes=5)
    time.read([appended(set_back)])
    elapsed[0] = 5.0 + WINDOW
    time.read([appended(set_back + timedelta(seconds=WINDOW))])
    assert time.now() == set_back + timedelta(seconds=WINDOW)


def test_a_record_that_waited_does_not_set_it_back(elapsed: list[float]) -> None:
    """A record read a minute after it was appended, beside one read at once: the latter counts."""
    time = BrokerTime()
    time.read([appended(BROKER)])
    elapsed[0] = 5.0
    time.read([appended(BROKER - timedelta(minutes=1))])
    assert time.now() == BROKER + timedelta(seconds=5)


def test_with_nothing_read_in_the_window_the_last_known_is_carried_on(
        elapsed: list[float]) -> None:
    """Quiet for an hour, it is the last read carried on by the elapsed clock, as it was once the
    reads before it left the window: the highest read in the window before it was carried on
    instead, the broker's clock set back 5 s after the last but one read followed for WINDOW
    seconds less 5, then 5 minutes ahead again (deadlines judged ahead) until the next read."""
    time = BrokerTime()
    assert time.now() is None
    time.read([appended(BROKER)])
    elapsed[0] = 5.0
    set_back = BROKER + timedelta(seconds=5) - timedelta(minutes=5)
    time.read([appended(set_back)])
    elapsed[0] = WINDOW + 1
    assert time.now() == set_back + timedelta(seconds=WINDOW - 4)
    elapsed[0] = 3600.0
    assert time.now() == set_back + timedelta(seconds=3595)


def test_a_late_record_later_than_the_one_read_lately_counts(elapsed: list[float]) -> None:
    """A take-over's last record (read_late) later than the one read in the window raises it."""
    time = BrokerTime()
    time.read([appended(BROKER - timedelta(minutes=1))])
    elapsed[0] = 5.0
    time.read_late([appended(BROKER)])
    time.read_late([appended(BROKER - timedelta(hours=1))])
    elapsed[0] = 5.0 + WINDOW
    assert time.now() == BROKER + timedelta(seconds=WINDOW)
