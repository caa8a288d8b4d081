"""My Portal asks the services' own processes on the real broker: the registry side whose card
logs in, the numbering authority for a resident's new number. Nothing of theirs is opened in the
portal's process."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from authority.store import AuthorityStore
from authority.store import default_path as authority_path
from cards import issue
from portal.kafka import Platform as KafkaSide
from portal.services import ASK_SECONDS, Unanswered
from renkei.town import Processes, Town
from schemas.codec import CODEC
from schemas.messages import (
    NOT_FOUND,
    TIMED_OUT,
    CardHolder,
    CardSerial,
    ChangeOfNumber,
    PersonalNumber,
)

pytestmark = pytest.mark.asyncio(loop_scope="session")


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def kafka(platform: Processes) -> AsyncIterator[KafkaSide]:
    """The portal's Kafka side, as `renkei portal` starts it."""
    side = KafkaSide.connect()
    await side.start()
    yield side
    await side.stop()


def number_of(resident_code: str) -> str | None:
    store = AuthorityStore(authority_path())
    try:
        return store.number_of(resident_code)
    finally:
        store.close()


async def test_the_authoritys_process_issues_a_resident_a_new_number(
        kafka: KafkaSide, town: Town) -> None:
    resident = town.held["sakura-town"][0].resident_code
    before = number_of(resident)
    started = time.monotonic()
    answer = await kafka.authority.ask(ChangeOfNumber(resident, "カードを紛失したため"))
    took = time.monotonic() - started
    number = CODEC.decode(answer, PersonalNumber).personal_number
    assert before is not None and number != before and number_of(resident) == number
    assert took < 5, f"asked and answered in {took:.2f} s"


async def test_a_question_past_its_deadline_changes_no_number(
        kafka: KafkaSide, town: Town) -> None:
    """The portal has given up on it and told the resident so: the authority must not act."""
    resident = town.held["sakura-town"][1].resident_code
    before = number_of(resident)
    kafka.authority.within = 0.0
    try:
        with pytest.raises(Unanswered) as unanswered:
            await kafka.authority.ask(ChangeOfNumber(resident, "漏えいのおそれ"))
    finally:
        kafka.authority.within = ASK_SECONDS
    assert unanswered.value.status == TIMED_OUT
    assert number_of(resident) == before


async def test_the_registry_sides_process_tells_whose_card_it_is(
        kafka: KafkaSide, town: Town, tmp_path: Path) -> None:
    resident = town.held["sakura-town"][2]
    issue.init()
    card = issue.resident_card(resident.resident_code, "4321", tmp_path)
    holder = CODEC.decode(await kafka.registry.ask(CardSerial(card.face.serial)), CardHolder)
    assert holder.name == resident.name and holder.resident_codes[0] == resident.resident_code
    with pytest.raises(Unanswered) as unanswered:
        await kafka.registry.ask(CardSerial("no-such-card"))
    assert unanswered.value.status == NOT_FOUND
