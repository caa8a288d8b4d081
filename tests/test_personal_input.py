"""Personal data reaches the operator commands on stdin or at a prompt, never as an argument
(`ps` shows every process's arguments to every local user; the shell keeps them in its history).
No broker: the commands are refused before they open anything."""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from audit.cli import audit_cli
from audit.oversight_cli import oversight_cli
from authority.cli import authority_cli
from cards.cli import card_cli
from holders.cli import holder_cli
from registry.cli import FOUR, registry_cli
from renkei import personal_input
from renkei.personal_input import RESIDENT_CODE, parsed
from renkei.state import STATE_ENV

CODE = "12345678906"
NUMBER = "123456789018"
ID_CODE = "A1B2C3D4E5F"
ATTRIBUTES = ("山田 太郎", "桜町1-2-3", "1975-01-02", "男")


class Terminal(io.StringIO):
    """What an operator types at a terminal."""

    def isatty(self) -> bool:
        return True


def test_one_value_a_line_or_one_json_object() -> None:
    shapes = ((RESIDENT_CODE,), FOUR)
    assert parsed(f"{CODE}\n", shapes) == {"resident_code": CODE}
    assert parsed(f'  {{"resident_code": " {CODE}"}}\n', shapes) == {"resident_code": CODE}
    by_lines = parsed("\n".join(ATTRIBUTES) + "\n\n", shapes)
    as_json = json.dumps(dict(zip(("name", "address", "dob", "sex"), ATTRIBUTES, strict=True)),
                         ensure_ascii=False)
    assert by_lines == parsed(as_json, shapes) == dict(zip(("name", "address", "dob", "sex"),
                                                           ATTRIBUTES, strict=True))


@pytest.mark.parametrize(("text", "said"), [
    ("", "stdin has 0 line(s); wanted 1 (resident code) or 4"),
    (f"{ATTRIBUTES[0]}\n{ATTRIBUTES[1]}\n", "stdin has 2 line(s)"),
    (f'{{"name": "{ATTRIBUTES[0]}"}}', "has the keys ['name']; wanted ['resident_code'] or"),
    (f'{{"resident_code": {CODE}}}', "must map names to strings"),
    (f'{{"resident_code": "{CODE}"', "not one JSON object"),
    ('{"resident_code": ' + "9" * 5000 + "}", "not one JSON object"),  # over 4,300 digits
    ('{"resident_code": ' + "[" * 100_000, "not one JSON object")])  # nested past recursion
def test_anything_else_is_refused_without_saying_it_back(text: str, said: str) -> None:
    with pytest.raises(click.UsageError) as refused:
        parsed(text, ((RESIDENT_CODE,), FOUR))
    message = refused.value.format_message()
    assert said in message
    assert CODE not in message and ATTRIBUTES[0] not in message


def test_at_a_terminal_each_value_is_prompted_for(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "stdin", Terminal(f"{CODE}\n"))
    assert personal_input.read((RESIDENT_CODE,), FOUR) == {"resident_code": CODE}
    monkeypatch.setattr(sys, "stdin", Terminal("\n" + "\n".join(ATTRIBUTES) + "\n"))
    assert personal_input.read((RESIDENT_CODE,), FOUR) == dict(
        zip(("name", "address", "dob", "sex"), ATTRIBUTES, strict=True))


@pytest.mark.parametrize("stdin", [
    io.TextIOWrapper(io.BytesIO(b"\xff\xfe\n"), encoding="utf-8"),  # a UTF-8 locale's
    io.TextIOWrapper(io.BytesIO(b"\xff\xfe\n"), encoding="utf-8", errors="surrogateescape"),
    io.TextIOWrapper(io.BytesIO(b'{"resident_code": "\\udcff"}'), encoding="utf-8")])
def test_stdin_that_is_not_utf8_text_is_a_usage_error(
        monkeypatch: pytest.MonkeyPatch, stdin: io.TextIOBase) -> None:
    """Not a traceback when the value is decoded, or when a store later writes it."""
    monkeypatch.setattr(sys, "stdin", stdin)
    with pytest.raises(click.UsageError, match="stdin is not UTF-8 text"):
        personal_input.read_one(RESIDENT_CODE)


@pytest.mark.parametrize(("command", "old"), [
    (authority_cli, ["lookup", NUMBER, "--holder", "city-a", "--purpose", "tax"]),
    (authority_cli, ["number-of", CODE]),
    (authority_cli, ["change-number", CODE, "--request-id", "F-1", "--reason", "lost"]),
    (registry_cli, ["lookup", "--code", CODE]),
    (registry_cli, ["lookup", "--name", ATTRIBUTES[0], "--address", ATTRIBUTES[1],
                    "--dob", ATTRIBUTES[2], "--sex", ATTRIBUTES[3]]),
    (registry_cli, ["consent", CODE, "acme-kenpo"]),
    (card_cli, ["issue", CODE]),
    (holder_cli, ["staff", "add", "town-x", "op", "--name", ATTRIBUTES[0]]),
    (audit_cli, ["query", "--person", ID_CODE]),
    (oversight_cli, ["query", "--person", ID_CODE, "--limit", "5"])])
def test_the_old_argument_form_is_refused_before_anything(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, command: click.Group,
        old: list[str]) -> None:
    """Refused with a usage error saying where the data goes instead, before any prompt (the
    card's PIN) and before any store is opened or made; the data is not said back."""
    monkeypatch.setenv(STATE_ENV, str(tmp_path))
    monkeypatch.delenv("RENKEI_CARD_PIN", raising=False)
    refused = CliRunner().invoke(command, old, input=f"{CODE}\n")
    assert refused.exit_code == 2, refused.output
    assert "personal data is not given on the command line" in refused.output
    assert "on stdin" in refused.output and "PIN" not in refused.output
    assert CODE not in refused.output and NUMBER not in refused.output
    assert ID_CODE not in refused.output
    assert ATTRIBUTES[0] not in refused.output
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize(("command", "words"), [
    (authority_cli, ["lookup"]), (authority_cli, ["number-of"]),
    (authority_cli, ["change-number"]), (registry_cli, ["lookup"]), (registry_cli, ["consent"]),
    (card_cli, ["issue"]), (holder_cli, ["staff", "add"]), (audit_cli, ["query"]),
    (oversight_cli, ["query"])])
def test_the_help_says_where_the_data_goes(command: click.Group, words: list[str]) -> None:
    shown = CliRunner().invoke(command, [*words, "--help"])
    said = " ".join(shown.output.split())
    assert shown.exit_code == 0 and "read from stdin" in said and "never" in said and "`ps`" in said


@pytest.mark.parametrize(("command", "args"), [
    (authority_cli, ["number-of"]), (registry_cli, ["lookup"]),
    (card_cli, ["issue"])])
def test_stdin_that_is_not_utf8_is_a_usage_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                command: click.Group, args: list[str]) -> None:
    monkeypatch.setenv(STATE_ENV, str(tmp_path))
    monkeypatch.setenv("RENKEI_CARD_PIN", "1234")
    refused = CliRunner().invoke(command, args, input=b"\xff\xfe1234\n")
    assert refused.exit_code == 2, refused.output
    assert "stdin is not UTF-8 text" in refused.output
    assert not list(tmp_path.rglob("*.db"))


@pytest.mark.parametrize("args", [["issue"], ["officer", "op-1", "--holder", "oversight",
                                              "--role", "oversight"]])
def test_a_pin_is_asked_for_at_a_terminal_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                               args: list[str]) -> None:
    """`echo CODE | renkei card issue` without $RENKEI_CARD_PIN took the resident code for the
    PIN, the confirmation stdin's end, and said 'Aborted!' under getpass's warnings: refused in
    one line naming $RENKEI_CARD_PIN, before stdin is read or anything is made."""
    monkeypatch.setenv(STATE_ENV, str(tmp_path))
    monkeypatch.delenv("RENKEI_CARD_PIN", raising=False)
    refused = CliRunner().invoke(card_cli, args, input=f"{CODE}\n")
    assert refused.exit_code == 2, refused.output
    assert "no PIN" in refused.output and "$RENKEI_CARD_PIN" in refused.output
    assert CODE not in refused.output and "PIN (4 digits):" not in refused.output
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize(("command", "typed", "said"), [
    (audit_cli, ["query", "--bogus"], "no such option: --bogus (see --help)"),
    (oversight_cli, ["query", "--holdr", "city-a"],
     "no such option: --holdr (did you mean --holder?); 1 argument(s) not taken: personal data"),
    (registry_cli, ["lookup", f"--code={CODE}"],
     "no such option: --code; 1 argument(s) not taken: personal data is not given")])
def test_an_option_it_has_not_is_named_its_value_not_said(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, command: click.Group, typed: list[str],
        said: str) -> None:
    """A mistyped option is named as click names one (and the nearest it has), not taken for
    personal data alone; what followed it, or its value after '=', is not said back."""
    monkeypatch.setenv(STATE_ENV, str(tmp_path))
    refused = CliRunner().invoke(command, typed, input="")
    assert refused.exit_code == 2, refused.output
    assert said in refused.output and CODE not in refused.output
    assert not list(tmp_path.iterdir())
