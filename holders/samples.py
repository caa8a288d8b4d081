"""The demo's holders and their own records, drawn from the registry with the errors real
holder databases have (stale addresses, mistyped dates), and the data each can provide."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import TYPE_CHECKING

from holders.store import HolderStore
from registry.residents import ChangeKind, FourAttributes, Resident
from renkei.exchanges import staff

if TYPE_CHECKING:  # the registry only for a population (its generator, with Faker's word lists,
    from registry.store import RegistryStore  # too): a benchmark's holder starts ~40 ms sooner

Data = Callable[[Resident, random.Random], dict[str, str]]
TODAY = date(2026, 11, 23)
STALE_ADDRESS, WRONG_BIRTH_DATE = 0.5, 0.01  # of moved residents; of all records


def _age(resident: Resident) -> int:
    return (TODAY - resident.date_of_birth).days // 365


def _local_tax(r: Resident, rng: random.Random) -> dict[str, str]:
    income = rng.randrange(0, 12_000_000, 10_000) if _age(r) >= 18 else 0
    return {"fiscal_year": "2025", "taxable_income": str(income),
            "municipal_tax": str(income // 10)}


def _resident_record(r: Resident, rng: random.Random) -> dict[str, str]:
    return {"household_size": str(rng.randint(1, 6)),
            "relation": rng.choice(["世帯主", "妻", "子"])}


def _pension(r: Resident, rng: random.Random) -> dict[str, str]:
    receiving = _age(r) >= 65
    return {"kind": "老齢基礎年金" if receiving else "国民年金被保険者",
            "annual_benefit": str(rng.randrange(600_000, 2_400_000, 1000) if receiving else 0)}


def _vaccination(r: Resident, rng: random.Random) -> dict[str, str]:
    given = TODAY - timedelta(days=rng.randrange(30, 900))
    return {"vaccine": rng.choice(["インフルエンザ", "新型コロナ", "肺炎球菌"]),
            "given_on": given.isoformat()}


def _eligibility(r: Resident, rng: random.Random) -> dict[str, str]:
    return {"insurer_number": "06139876", "copay_ratio": "3割" if _age(r) < 70 else "2割",
            "valid_until": "2027-03-31"}


@dataclass(frozen=True)
class SampleHolder:
    holder_id: str
    name: str
    role: str
    holds: Callable[[Resident, random.Random], bool]
    data: dict[str, Data] = field(default_factory=dict)
    unit: str | None = None
    private: bool = False
    knows_numbers: bool = False  # holds residents' personal numbers lawfully: binds by number


SAMPLES = (
    SampleHolder("sakura-town", "桜町役場（住民税）", "municipality", lambda r, g: True,
                 {"local_tax": _local_tax, "resident_record": _resident_record},
                 knows_numbers=True),
    SampleHolder("nenkin", "日本年金機構", "pension_service", lambda r, g: _age(r) >= 20,
                 {"pension_benefit": _pension}, knows_numbers=True),
    SampleHolder("sakura-kodomo", "桜町こども家庭課（児童手当）", "child_allowance_office",
                 lambda r, g: 25 <= _age(r) <= 50 and g.random() < 0.5),
    SampleHolder("sakura-hospital", "桜町総合病院", "medical_institution",
                 lambda r, g: g.random() < 0.3, {"vaccination_record": _vaccination},
                 unit="medical"),
    SampleHolder("minami-clinic", "南クリニック", "medical_institution",
                 lambda r, g: g.random() < 0.1, {"vaccination_record": _vaccination},
                 unit="medical"),
    SampleHolder("acme-kenpo", "アクメ健康保険組合", "health_insurance_society",
                 lambda r, g: 20 <= _age(r) <= 74 and g.random() < 0.25,
                 {"insurance_eligibility": _eligibility}, private=True),
)


def own_number(holder: SampleHolder, n: int) -> str:
    return f"{holder.holder_id[:3].upper()}-{n:07d}"


def populate(store: HolderStore, sample: SampleHolder, registry: RegistryStore,
             numbers: Callable[[str], str | None], seed: int) -> list[Resident]:
    """Fill a holder's store with its people as it keyed them; return the residents it holds."""
    rng = random.Random(f"{seed}/{sample.holder_id}")
    held: list[Resident] = []
    with store.transaction():
        member, terminal = staff(sample.holder_id)
        store.add_staff(member, "担当職員")
        store.add_terminal(terminal)
        for code in registry.resident_codes():
            resident = registry.by_code(code)
            if resident is None or not sample.holds(resident, rng):
                continue
            own = own_number(sample, len(held) + 1)
            store.add_record(own, _as_keyed(resident, registry, rng),
                             numbers(code) if sample.knows_numbers else None)
            for data_type, make in sample.data.items():
                store.put_data(own, data_type, make(resident, rng))
            held.append(resident)
    return held


def _as_keyed(resident: Resident, registry: RegistryStore, rng: random.Random) -> FourAttributes:
    """The resident's four attributes as this holder keyed them, errors included."""
    from registry.generate import holder_spelling

    keyed = holder_spelling(resident.four_attributes, rng)
    moves = [e for e in registry.history(resident.resident_code) if e.kind == ChangeKind.MOVED]
    if moves and rng.random() < STALE_ADDRESS:
        keyed = FourAttributes(keyed.name, moves[0].before[0], keyed.date_of_birth, keyed.sex)
    if rng.random() < WRONG_BIRTH_DATE:
        keyed = FourAttributes(keyed.name, keyed.address,
                               keyed.date_of_birth + timedelta(days=1), keyed.sex)
    return keyed
