"""The README's CLI section names every command `renkei --help` lists (those for internal use,
hidden, aside), so that a newcomer reading it finds each one, and with each the options that tell
the audit log who acted and why; the retention it gives is the code's; each command's --help
says what its options are, and each group's gives its commands' summaries whole."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import click

from audit.retention import RETENTION_YEARS
from broker import topics
from renkei.cli import main

README = Path(__file__).parent.parent / "README.md"
AUDITED = ("--operator", "--reason")  # what an operator's command tells the audit log
DESCRIBED = 38  # the column the CLI section's descriptions of commands start at
HELP_WIDTH = 78  # click's width of a --help at a terminal 80 columns wide or wider


def _walked(command: click.Command, path: tuple[str, ...], parent: click.Context | None,
            hidden: bool = False) -> Iterator[tuple[tuple[str, ...], click.Command, click.Context]]:
    """Each command, groups too, with its words after `renkei` and its context (its --help as a
    terminal 80 columns wide or wider shows it), hidden ones (for internal use) only if
    `hidden`."""
    ctx = click.Context(command, info_name=path[-1] if path else "renkei", parent=parent,
                        terminal_width=HELP_WIDTH)
    yield path, command, ctx
    if isinstance(command, click.Group):
        for name in command.list_commands(ctx):
            sub = command.get_command(ctx, name)
            if sub is not None and (hidden or not sub.hidden):
                yield from _walked(sub, (*path, name), ctx, hidden)


def _commands() -> Iterator[tuple[tuple[str, ...], click.Command, click.Context]]:
    """Each command's words after `renkei`, with the command and its context (_walked), groups
    and hidden ones left out."""
    for path, command, ctx in _walked(main, (), None):
        if not isinstance(command, click.Group):
            yield path, command, ctx


def _named(section: str, words: tuple[str, ...]) -> bool:
    """A line of the section starts `renkei <group>` and names the command as a word."""
    lines = [line for line in section.splitlines() if f"renkei {words[0]}" in line]
    return any(re.search(rf"(^|[\s|]){re.escape(words[-1])}([\s|]|$)", line) for line in lines)


def _cli_section() -> str:
    return README.read_text(encoding="utf-8").split("## The CLI")[1].split("\n## ")[0]


def _entry(section: str, words: tuple[str, ...]) -> str:
    """The section's entry naming the command: its first line naming it and the lines after,
    up to the next that starts `renkei`."""
    lines = section.splitlines()
    first = next(i for i, line in enumerate(lines) if _named(line, words))
    after = next((i for i in range(first + 1, len(lines)) if lines[i].startswith("renkei ")),
                 len(lines))
    return "\n".join(lines[first:after])


def _synopsis(section: str, words: tuple[str, ...]) -> str:
    """The command's own part of its README entry's synopsis (the entry's text before its
    description, parted at each '|' between commands, not at one between options in brackets)."""
    said = " ".join(line.strip().split("   ")[0] for line in _entry(section, words).splitlines()
                    if len(line) - len(line.lstrip()) < DESCRIBED)
    return next(part for part in re.split(r" \| (?![^\[]*\])", said)
                if re.search(rf"(^|\s){re.escape(words[-1])}(\s|$)", part))


def test_the_readme_names_every_command() -> None:
    section = _cli_section()
    missing = [" ".join(words) for words, _, _ in _commands()
               if not _named(section, words)]
    assert not missing, f"not in the README's CLI section: {missing}"


def test_the_readme_names_what_each_command_tells_the_audit_log() -> None:
    """A command taking --operator or --reason has it named in its own part of its README
    entry's synopsis: an operator reading it learns that the audit log can be told who acted and
    why (holder suspend's --operator was named with resume alone, 'holder suspend <id> --reason
    R | resume <id> [--operator WHO]')."""
    section = _cli_section()
    missing = [f"{' '.join(words)} {option}" for words, command, _ in _commands()
               for option in AUDITED
               if option in {o for param in command.params for o in param.opts}
               and not re.search(rf"{option}\b", _synopsis(section, words))]
    assert not missing, f"not in the command's README synopsis: {missing}"


def test_the_readme_gives_the_retention_the_code_keeps() -> None:
    """Each number of years the README gives (the holder's purge, the audit topic) is
    RETENTION_YEARS, which the purges keep to, and the audit topic's retention is as long."""
    text = README.read_text(encoding="utf-8")
    assert re.findall(r"\b(\d+) years\b", text) == [str(RETENTION_YEARS)] * 2
    assert re.search(rf"renkei\.audit \({RETENTION_YEARS} years\)", text)
    (audit,) = (spec for spec in topics.platform_topics() if spec.name == "renkei.audit")
    assert audit.retention == f"{RETENTION_YEARS}y"


def _helps() -> Iterator[tuple[str, str]]:
    """Each command's words after `renkei`, with what its --help says."""
    for words, command, ctx in _commands():
        yield " ".join(words), command.get_help(ctx)


def test_every_option_says_what_it_is() -> None:
    """An option with no help told a newcomer only its name and default: --seed and
    --residents, the chaos runs' and benchmarks' --out and --results, the --limit of a query,
    the --loglevel of a service, a broker's log --lines and --node, an officer card's --role;
    and the hidden commands' (bench holder's --in-flight and --out, bench relay's --instance)
    to whoever reads the code starting them."""
    bare = [f"{' '.join(words)} {option.opts[-1]}"
            for words, command, _ in _walked(main, (), None, hidden=True)
            for option in command.params
            if isinstance(option, click.Option) and not option.help]
    assert not bare, f"options with no help: {bare}"


def test_no_help_shows_a_bound_no_one_would_give() -> None:
    """--residents showed its bound, one resident each of the codes there are, as
    '1<=x<=9090909091': an internal limit a newcomer cannot make sense of."""
    odd = [(words, number) for words, said in _helps()
           for number in re.findall(r"\d{10,}", said)]
    assert not odd, odd


def test_every_default_reads_as_click_shows_one() -> None:
    """`renkei broker up --help` said '[default 19092]', the --db and --registry of the registry
    and the authority '[default <state>/…]', holder register's --unit and --private
    '(default: …)', where every other option says '[default: …]'; an --operator said
    '[default: (your login)]', click's parentheses round a default said in words."""
    odd = [(words, said[match.start():match.start() + 30]) for words, said in _helps()
           for match in re.finditer(r"\[default(?!:)|\(default|\[default: \(", said)]
    assert not odd, odd


def _listing(said: str) -> list[str]:
    """The lines of a group's --help listing its commands."""
    return said.split("\nCommands:\n")[1].split("\n\n")[0].splitlines()


def test_every_listing_gives_each_command_whole() -> None:
    """`renkei --help` and the groups' cut most commands' summaries, click's shortening of the
    docstring's first sentence ending in '...' ('audit      The tamper-evident audit log (RFC
    9162 Merkle tree,...'): each is whole, on its command's line (not wrapped to another)."""
    cut = [(words, line) for words, command, ctx in _walked(main, (), None)
           if isinstance(command, click.Group) for line in _listing(command.get_help(ctx))
           if line.endswith(("...", "…")) or line.startswith("   ")]
    assert not cut, cut


def test_every_default_stands_in_one_bracket_with_its_range() -> None:
    """`renkei broker up --help` showed a port's default in a bracket of its own before its
    range's, '[default: 19092]  [1<=x<=65535]', the default written into the help text (chaos
    broker's --kill-at and --down, bench linkage's --in-flight as well): one bracket holds both,
    as click gives them."""
    twice = [(" ".join(words), record[1])
             for words, command, ctx in _walked(main, (), None, hidden=True)
             for option in command.params if isinstance(option, click.Option)
             and (record := option.get_help_record(ctx)) is not None and record[1].count("[") > 1]
    assert not twice, twice


def test_every_default_said_in_words_is_said_as_a_default() -> None:
    """A default written into an option's help text ('the registry's SQLite file [default:
    <state>/registry/registry.db]') stood in a bracket of its own, a second one whenever click
    gave the option a range or required it (as broker up's ports had): each is SaidDefault's."""
    written = [(" ".join(words), option.opts[-1])
               for words, command, _ in _walked(main, (), None, hidden=True)
               for option in command.params
               if isinstance(option, click.Option) and "[default" in (option.help or "")]
    assert not written, written


HOLDER_SERVER = README.parent / "docs" / "holder-server.md"


def test_the_holder_server_doc_names_each_field_of_a_call() -> None:
    """docs/holder-server.md named the paths but no field of their bodies: a holder's system
    could not make a binding or a linkage request without reading the server's code."""
    from holders.server import BINDING_FIELDS, BY_NUMBER, LINKAGE_FIELDS

    text = " ".join(HOLDER_SERVER.read_text(encoding="utf-8").split())
    for path, fields in (("POST /bindings", (*BINDING_FIELDS, BY_NUMBER)),
                         ("POST /requests", LINKAGE_FIELDS)):
        said = re.search(rf"`{path}` `\{{([^}}]*)\}}`", text)
        assert said is not None, f"{path}: its body is not given"
        assert [name.strip(' "') for name in said[1].split(",")] == list(fields)


def test_the_holder_server_doc_says_the_order_its_access_log_is_paged_in(tmp_path: Path) -> None:
    """docs/holder-server.md said GET /access-log answers oldest first: it answers by serial,
    and a requester's entry, dated when its request was made, is entered when its outcome comes
    (a request timed out: 30 s later), after entries it is older than."""
    from holders.store import PROVIDER, REQUESTER, HolderStore

    store = HolderStore(tmp_path / "holder.db")
    store.open_request("r-1", "LINKAGE", "H-1", "staff-1", "term-1", pattern_id="P-1",
                       provider="city-y", data_type="local_tax", purpose="審査")
    store.db.execute("UPDATE requests SET sent_at = '2026-01-01T00:00:00.000+00:00'")
    store.log("q-9", PROVIDER, "staff-2", "term-1", "FOUND", counterpart="city-z")  # meanwhile
    store.log("r-1", REQUESTER, "staff-1", "term-1", "TIMED_OUT", counterpart="city-y")
    page = [entry for _, entry in store.access_log_page(None, 0, 10)]
    store.close()
    assert [e.request_id for e in page] == ["q-9", "r-1"] and page[1].at < page[0].at
    text = " ".join(HOLDER_SERVER.read_text(encoding="utf-8").split())
    said = re.search(r"`GET /access-log[^`]*`: its log a page at a time, ([^`]*)`", text)
    assert said is not None, "GET /access-log: the order of its pages is not said"
    assert "oldest first" not in said[1] and "by serial" in said[1], said[1]
