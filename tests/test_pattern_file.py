"""A legal pattern list's file (`renkei patterns publish FILE`): refused, naming what is wrong,
unless each [[pattern]] table is one pattern version and nothing else."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest

from processors import patterns

ROW = """[[pattern]]
pattern_id = "P-900"
version = 1
legal_basis = "a law"
purpose = "a purpose"
requester_role = "municipality"
provider_role = "pension_service"
data_types = ["pension_benefit"]
valid_from = 2017-11-13T00:00:00+09:00
"""


def _file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "patterns.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_a_field_the_pattern_list_does_not_have_is_refused_by_name(tmp_path: Path) -> None:
    """A withdrawal with valid_to misspelt was loaded as the version without it, in force for
    ever, and `publish` said the list was unchanged."""
    misspelt = _file(tmp_path, ROW + "valid_unitl = 2030-01-01T00:00:00+09:00\n")
    with pytest.raises(patterns.BadPatternFile, match=r"pattern P-900: .*'valid_unitl'"):
        patterns.load(misspelt)


@pytest.mark.parametrize("text", ['pattern = "P-900"\n', "pattern = [1]\n",
                                  "[pattern]\npattern_id = 'P-900'\n"])
def test_a_pattern_that_is_no_table_is_refused(tmp_path: Path, text: str) -> None:
    """It ended the command with an AttributeError's traceback."""
    with pytest.raises(patterns.BadPatternFile, match=r"\[\[pattern\]\] tables"):
        patterns.load(_file(tmp_path, text))


def test_a_version_on_the_list_the_file_leaves_out_is_refused_by_name() -> None:
    """The sample less P-075 (or `pattern = []`, to withdraw everything) was said 'already
    published: the legal pattern list is unchanged', exit 0, each version left out in force as
    before: only its valid_to withdraws it."""
    published = patterns.load(patterns.SAMPLE)
    file = [p for p in published if p.pattern_id != "P-075"]
    with pytest.raises(patterns.BadPatternFile, match=r"P-075 v1 .*valid_to"):
        patterns.to_publish(file, published)
    with pytest.raises(patterns.BadPatternFile, match="P-027 v1, P-037 v1"):
        patterns.to_publish([], published)


def test_only_the_versions_not_on_the_list_as_they_are_are_published() -> None:
    published = patterns.load(patterns.SAMPLE)
    amended = [replace(published[0], valid_to=datetime(2030, 1, 1, tzinfo=UTC)), *published[1:]]
    assert patterns.to_publish(published, published) == []
    assert patterns.to_publish(amended, published) == amended[:1]
    assert patterns.to_publish(published, []) == published


@pytest.mark.parametrize(("text", "said"), [
    (ROW.replace('purpose = "a purpose"\n', ""), r"pattern P-900: missing 'purpose'"),
    (ROW.replace("version = 1", 'version = "one"'), r"pattern P-900: version .* not 'one'"),
    (ROW.replace('legal_basis = "a law"', "legal_basis = 129"),
     r"pattern P-900: legal_basis must be text .* not 129"),
    (ROW.replace('purpose = "a purpose"', 'purpose = " "'), r"pattern P-900: purpose must be"),
    (ROW.replace('pattern_id = "P-900"\n', ""), r"a \[\[pattern\]\] table: missing 'pattern_id'")])
def test_a_field_missing_or_not_of_its_kind_is_refused_naming_the_pattern_and_field(
        tmp_path: Path, text: str, said: str) -> None:
    """`missing 'purpose'` named no pattern, `version = "one"` said `invalid literal for int()`,
    and `legal_basis = 129` was published as the text '129'."""
    with pytest.raises(patterns.BadPatternFile, match=said):
        patterns.load(_file(tmp_path, text))
