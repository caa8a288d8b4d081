"""A legal pattern list's file (`renkei patterns publish FILE`): refused, naming what is wrong,
unless each [[pattern]] table is one pattern version and nothing else."""

from __future__ import annotations

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
