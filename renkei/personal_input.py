"""Personal data into an operator command: on stdin or at a prompt, never as an argument.

An argument is on the process's command line, which `ps` shows to every local user, and in the
shell's history. A command that takes a personal number, a resident code, a person's ID code,
the four attributes or a staff member's name reads them instead: at a prompt when stdin is a
terminal, else from stdin, as one JSON object of strings or as one value a line in the order
asked, so that scripts can pipe them. Such a command refuses any argument besides its
options, before it prompts for anything, and without saying the argument back.
"""

from __future__ import annotations

import difflib
import json
import sys
from dataclasses import dataclass
from itertools import pairwise
from typing import Any

import click

from authority.check_digit import keyed
from registry.resident_code import NOT_RESIDENT
from registry.resident_code import is_valid as is_resident_code


@dataclass(frozen=True)
class Field:
    """One value asked for: its key in a JSON object, and the words of its prompt."""

    key: str
    prompt: str


Shape = tuple[Field, ...]
RESIDENT_CODE = Field("resident_code", "resident code")
NOT_TEXT = "stdin is not UTF-8 text"


class OnStdin(click.Command):
    """A command whose personal data comes on stdin or at a prompt (see `read`): an argument
    besides its options, such as the personal data the command once took, is a usage error."""

    ignore_unknown_options = True  # an option it no longer has (--code, --name …) is refused too

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        _, extra, _ = self.make_parser(ctx).parse_args(args=list(args))
        if extra:
            raise click.UsageError(self._not_taken(ctx, extra), ctx)
        return super().parse_args(ctx, args)

    def _not_taken(self, ctx: click.Context, extra: list[str]) -> str:
        """What is wrong with `extra`, saying no value back: the options it has not by name
        (and the nearest it has), then the arguments and values, which personal data once was."""
        unknown = [word.partition("=")[0] for word in extra if word.startswith("--")]
        said = [] if not unknown else [f"no such option: {', '.join(unknown)}" + _nearest(
            unknown, [name for p in self.get_params(ctx) for name in p.opts])]
        if left := len(extra) - len(unknown) + sum("=" in word for word in extra):
            said.append(
                f"{left} argument(s) not taken: personal data is not given on the command "
                "line (`ps` shows it to every local user, the shell keeps it in its history); "
                "give it on stdin (one JSON object, or one value a line) or at the prompt")
        return "; ".join(said) + " (see --help)"


def _nearest(unknown: list[str], options: list[str]) -> str:
    """", did you mean …" the options nearest those `unknown`, if any is near."""
    near = dict.fromkeys(n for u in unknown for n in difflib.get_close_matches(u, options, 2, 0.75))
    return f" (did you mean {' or '.join(near)}?)" if near else ""


def read(*shapes: Shape) -> dict[str, str]:
    """The values of one of `shapes` (each a tuple of fields, tried in order): prompted for when
    stdin is a terminal, else read from it (UsageError if it holds none of the shapes, or is
    not UTF-8 text)."""
    found = _prompted(shapes) if sys.stdin.isatty() else parsed(_stdin_text(), shapes)
    for value in found.values():
        try:
            value.encode()
        except UnicodeEncodeError:  # a JSON "\udcff", or a prompt's bytes escaped as surrogates
            raise click.UsageError(NOT_TEXT) from None
    return found


def _stdin_text() -> str:
    """All of stdin as UTF-8 (UsageError if it is not, never saying what came)."""
    try:
        return sys.stdin.buffer.read().decode("utf-8")
    except UnicodeDecodeError:
        raise click.UsageError(NOT_TEXT) from None


def read_one(field: Field) -> str:
    """One value, read as `read` reads a shape of one field."""
    return read((field,))[field.key]


def resident_code(given: str) -> str:
    """A resident code as keyed (full-width digits, spaces or hyphens between groups) made the
    code itself; one that is no resident code a usage error (not echoed: a code mistyped is
    still one)."""
    code = keyed(given)
    if not is_resident_code(code):
        raise click.BadParameter(NOT_RESIDENT)
    return code


def read_resident_code() -> str:
    """The resident code, read as `read_one` reads it and made the code as `resident_code`."""
    return resident_code(read_one(RESIDENT_CODE))


def _prompted(shapes: tuple[Shape, ...]) -> dict[str, str]:
    """Each shape but the last is offered by its first field: a blank answer passes to the
    next shape."""
    for shape, then in pairwise(shapes):
        first = click.prompt(f"{shape[0].prompt} (blank: {_listed(then)} instead)",
                             default="", show_default=False).strip()
        if first:
            return {shape[0].key: first} | {f.key: _asked(f) for f in shape[1:]}
    return {f.key: _asked(f) for f in shapes[-1]}


def _listed(shape: Shape) -> str:
    return ", ".join(f.prompt for f in shape)


def _asked(field: Field) -> str:
    return str(click.prompt(field.prompt)).strip()


def parsed(text: str, shapes: tuple[Shape, ...]) -> dict[str, str]:
    """`text` as one JSON object with the keys of a shape, or as its values one a line (blank
    lines skipped); UsageError otherwise, naming what each shape wants (never a value given)."""
    stripped = text.strip()
    if stripped.startswith("{"):
        found = _object(stripped)
        for shape in shapes:
            if set(found) == {f.key for f in shape}:
                return {key: value.strip() for key, value in found.items()}
        raise click.UsageError(f"stdin's JSON object has the keys {sorted(found)}; wanted "
                               + " or ".join(str([f.key for f in s]) for s in shapes))
    lines = [line.strip() for line in stripped.splitlines() if line.strip()]
    for shape in shapes:
        if len(lines) == len(shape):
            return {f.key: line for f, line in zip(shape, lines, strict=True)}
    raise click.UsageError(
        f"stdin has {len(lines)} line(s); wanted "
        + " or ".join(f"{len(s)} ({_listed(s)})" for s in shapes)
        + ", one a line, or one JSON object")


def _object(text: str) -> dict[str, str]:
    try:
        found: Any = json.loads(text)
    except (ValueError, RecursionError):  # not JSON, over 4,300 digits, or nested too deep
        raise click.UsageError("stdin is not one JSON object") from None
    if not isinstance(found, dict) or not all(isinstance(v, str) for v in found.values()):
        raise click.UsageError("stdin's JSON object must map names to strings (a personal "
                               "number as a string, its leading zeros kept)")
    return found
