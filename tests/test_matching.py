"""The binding decision: all four attributes after normalisation, one candidate, or investigate."""

from __future__ import annotations

from datetime import date

from holders.matching import Bind, Investigate, decide, differences
from registry.residents import FourAttributes, Sex

REGISTRY = FourAttributes("髙橋　太郎", "桜町一丁目２番地の３", date(1975, 1, 2), Sex.MALE)


def test_variants_and_widths_still_bind() -> None:
    ours = FourAttributes("高橋 太郎", "桜町1-2-3", date(1975, 1, 2), Sex.MALE)
    assert decide(ours, [("LINK0000001", REGISTRY)]) == Bind("LINK0000001")


def test_a_partial_match_goes_to_investigation() -> None:
    stale = FourAttributes("高橋太郎", "旧町5-6", date(1975, 1, 2), Sex.MALE)
    verdict = decide(stale, [("LINK0000001", REGISTRY)])
    assert isinstance(verdict, Investigate) and "address" in verdict.reason
    typo = FourAttributes("高橋太郎", "桜町1-2-3", date(1975, 1, 3), Sex.MALE)
    assert isinstance(decide(typo, [("LINK0000001", REGISTRY)]), Investigate)


def test_several_candidates_are_never_a_match() -> None:
    ours = FourAttributes("高橋太郎", "桜町1-2-3", date(1975, 1, 2), Sex.MALE)
    verdict = decide(ours, [("LINK0000001", REGISTRY), ("LINK0000002", REGISTRY)])
    assert isinstance(verdict, Investigate) and "2 residents" in verdict.reason
    assert isinstance(decide(ours, []), Investigate)


def test_an_address_of_thousands_of_kanji_digits_differs_without_failing() -> None:
    """Over 4,300 digits: Python's int() refuses them, which stopped the holder's binding."""
    long = FourAttributes(REGISTRY.name, "桜町" + "二" * 4400 + "番", REGISTRY.date_of_birth,
                          REGISTRY.sex)
    assert differences(REGISTRY, long) == ["address"]
    assert differences(long, long) == []
