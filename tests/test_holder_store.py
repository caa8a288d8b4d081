"""The holder's own store, without Kafka: what a provider finds by link code."""

from __future__ import annotations

from datetime import date
from pathlib import Path

from holders.store import HolderStore
from registry.residents import FourAttributes, Sex


def test_a_provider_finds_data_only_by_a_bound_link_code_and_its_type(tmp_path: Path) -> None:
    store = HolderStore(tmp_path / "holder.db")
    store.add_record("H-1", FourAttributes("山田 花子", "桜町1-2-3", date(1980, 4, 1), Sex.FEMALE))
    store.add_record("H-2", FourAttributes("山田 太郎", "桜町1-2-3", date(1979, 5, 2), Sex.MALE))
    store.put_data("H-1", "local_tax", {"taxable_income": "3200000"})
    store.put_data("H-2", "local_tax", {"taxable_income": "4100000"})
    store.bind("H-1", "LC-1")
    assert store.provided("LC-1", "local_tax") == {"taxable_income": "3200000"}
    assert store.provided("LC-1", "pension_benefit") is None  # bound, but no such data
    assert store.provided("LC-2", "local_tax") is None  # H-2 holds data but is not bound
    store.close()
