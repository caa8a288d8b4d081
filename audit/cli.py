"""`renkei audit …`: run the consumer, replay, verify, purge, show heads and query the store."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import Callable
from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from functools import partial, wraps
from typing import Any, TypeVar, cast

import click
from aiokafka.errors import KafkaError

from audit import anchor, sql
from audit.detector import Rules
from audit.events import (
    ACTION_KINDS,
    APPROVED,
    EPOCH,
    ID_CODE,
    REJECTED,
    decode_event,
    outcome_asked,
)
from audit.heads import NoKey, SignedHead, Signer, verify_head
from audit.merkle import leaf_hash
from audit.retention import RETENTION_YEARS, years_before
from audit.store import (
    Acted,
    ActionQuery,
    AuditStore,
    Committed,
    DamagedEntry,
    Entry,
    NoTime,
    Query,
    Unnamed,
    VerifyReport,
    as_signed,
    column_text,
    default_path,
    time_range,
)
from broker import acls, cluster
from broker.clients import BrokerAway, BrokerRefused, KafkaAccess
from broker.cluster import NoCluster
from broker.credentials import UnknownPrincipal
from renkei import logs, personal_input, sqlite
from renkei.options import LOGLEVEL, FiniteRange, SaidDefault
from renkei.personal_input import Field, OnStdin
from renkei.state import private_dir
from schemas.messages import FOUND, NOT_FOUND, TIMED_OUT

F = TypeVar("F", bound=Callable[..., Any])
P = TypeVar("P")  # a page of what the store reads
PERSON = Field("person", "the person's ID code")
OUTCOMES = (APPROVED, REJECTED, FOUND, NOT_FOUND, TIMED_OUT)  # a linkage's, named in --help
# a replay's grace at most (a day): one of more is no lag of the platform's view of the pattern
# list, and one past the events' times since year 1 ended the re-check in an OverflowError
MOST_GRACE_SECONDS = 86_400.0


def utc_time(ctx: click.Context, param: click.Parameter, value: str | None) -> datetime | None:
    """An ISO 8601 time; without a zone it is taken as UTC."""
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError as exc:
        raise click.BadParameter(f"{value!r} is not an ISO 8601 time") from exc
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def past_time(ctx: click.Context, param: click.Parameter, value: str | None) -> datetime | None:
    """A utc_time not later than now."""
    moment = utc_time(ctx, param, value)
    if moment is not None and moment > datetime.now(UTC):
        raise click.BadParameter(f"{value!r} is later than now")
    return moment


def time_range_options(command: F) -> F:
    """`--since` and `--until` (utc_time), for every command that reads a range of time: an
    --until not after --since is a usage error, not an empty page that says nothing happened."""
    @wraps(command)
    def ranged(*args: Any, since: datetime | None, until: datetime | None, **kwargs: Any) -> Any:
        try:
            time_range(since, until)
        except NoTime as empty:
            raise click.BadParameter(f"{empty.until.isoformat()} is not after --since "
                                     f"{empty.since.isoformat()}: the range holds no time",
                                     click.get_current_context(), param_hint="'--until'") from None
        return command(*args, since=since, until=until, **kwargs)

    since = click.option("--since", callback=utc_time, metavar="TIME",
                         help="from this time on (inclusive)")
    until = click.option("--until", callback=utc_time, metavar="TIME",
                         help="before this time (exclusive)")
    return since(until(cast(F, ranged)))


STORE_URL = ("a path, sqlite:///path or postgresql://… (its password in ~/.pgpass or "
             "$PGPASSWORD: `ps` shows a command's arguments)")
STORE_ENV = "RENKEI_AUDIT_DB"


def store_option(command: F) -> F:
    """`--db URL` (or $RENKEI_AUDIT_DB), for every command that opens the store."""
    return click.option(
        "--db", metavar="URL", default=None, cls=SaidDefault, envvar=STORE_ENV,
        show_default=f"${STORE_ENV}, else the state folder's audit/audit.db",
        help=STORE_URL)(command)


def instance_option(command: F) -> F:
    """`--instance`, the audit consumer's static group member id, for `run` and `recommit`."""
    return click.option(
        "--instance", default="1", show_default=True,
        help="the audit consumer's static group member id: a restarted consumer, or `audit "
             "recommit`, takes its place at once")(command)


def open_store(db: str | None, create: bool = False, signing: bool = True) -> AuditStore:
    """The store at `db` (default in the state folder) with the state folder's head key: to sign
    heads, or (not `signing`) its public key alone, to check them. A SQLite store that is not
    there, or the key, is made only if `create` (else NoStore, NoKey): an auditor checking a
    copy gets no key of its own that would call the log tampered."""
    url = db or default_path(made=create)
    if not create and not sql.exists(url):
        raise sql.NoStore(f"no audit store at {sql.shown(url)} (`renkei audit run` makes one)")
    try:
        key = Signer.load_or_create() if create else Signer.load() if signing else Signer.public()
    except NoKey:
        sql.connect(url)[0].close()  # a store that cannot be reached says so first: it says more
        raise
    try:
        return AuditStore(url, key)
    except sqlite3.DatabaseError as exc:  # a file that is not a SQLite database
        raise sql.NoStore(f"cannot open the store at {sql.shown(url)}: {exc}") from exc


def _echo_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, ensure_ascii=False))


@click.group("audit", short_help="The tamper-evident audit log: a Merkle tree, signed heads.")
def audit_cli() -> None:
    """The tamper-evident audit log (RFC 9162 Merkle tree, Ed25519-signed heads)."""


def read_outside() -> tuple[list[SignedHead], Committed | None]:
    """The heads anchored on the broker's heads topic and the audit consumer's last commit on
    the audit topic, read as the audit principal."""
    try:
        return asyncio.run(anchor.outside_the_store(KafkaAccess.of(acls.AUDIT)))
    except (NoCluster, UnknownPrincipal, BrokerAway, BrokerRefused, KafkaError) as exc:
        raise click.ClickException(f"cannot read the anchored heads or the audit consumer's "
                                   f"commit: {exc} (--no-anchor checks the store alone, and "
                                   "then a store cut short passes)") from exc


def _gone_whole(missing: str) -> None:
    """With no store to check (`missing` says how): TRUNCATED (exit 1) if a head anchored by
    the log's key or the audit consumer's last commit says the log had entries; else nothing
    (the store's absence is said as it is)."""
    try:
        anchored, committed = read_outside()
        key = Signer.public().public_key
    except (click.ClickException, NoKey):  # the broker or the key away: nothing tells more
        return
    had = [(s.head.size, "the largest anchored head") for s in anchored if verify_head(s, key)]
    if committed is not None:
        had.append((committed.size, f"the audit consumer's commit (offset {committed.offset})"))
    size, told = max(had, default=(0, ""))
    if size:
        click.echo(f"TRUNCATED: {missing}, yet {told} says the log had {size} entries: "
                   f"serials 0..{size - 1} are gone", err=True)
        raise SystemExit(1)


def _store_to_verify(db: str | None, alone: bool) -> AuditStore:
    """The store at `db` opened to be checked; none there, or one with no tables (an empty
    database in its place), is TRUNCATED unless `alone` if the log had entries (_gone_whole)."""
    url = db or default_path(made=False)
    try:
        return open_store(db, signing=False)
    except sql.NoTables:
        if not alone:
            _gone_whole(f"the audit store at {sql.shown(url)} has no tables")
        raise
    except sql.NoStore:
        if not alone and not sql.exists(url):
            _gone_whole(f"no audit store at {sql.shown(url)}")
        raise


def _commit_checked(report: VerifyReport) -> str:
    """What `verify` says of the audit consumer's last commit it checked the store against."""
    committed = report.committed
    if committed is None:
        return ("no commit of the audit consumer noting the tree: the entries after the largest "
                "anchored head are not checked")
    checked = (f"checked against the audit consumer's last commit: offset {committed.offset}, "
               f"size {committed.size}")
    if committed.at is None or report.commit_signed is None:
        return (f"{checked}; its note is UNSIGNED (a consumer's from before the notes were "
                "signed): read, but not proven to be the consumer's")
    made = committed.at.isoformat(timespec="milliseconds")
    if not report.commit_signed:
        return f"{checked}, noted {made}; its note's signature is INVALID: not the head key's"
    return f"{checked}, noted {made}, signed by the head key"


@audit_cli.command(short_help="Recompute the log; check it against the heads on the broker.")
@store_option
@click.option("--no-anchor", "alone", is_flag=True,
              help="check the store alone, not against the heads anchored on the broker nor "
                   "the audit consumer's last commit (its newest entries deleted with their "
                   "heads would pass)")
def verify(db: str | None, alone: bool) -> None:
    """Recompute the log; report modified, deleted, reordered or inserted entries and operator
    actions (the tree's leaves), bad heads,
    purged leaf hashes a replay would misread, and a store smaller than, or not grown from, the
    largest head anchored on the broker or the tree the audit consumer noted with its last
    commit of offsets.

    Exits 1 when anything is found. Needs the head key's public key alone.
    """
    with _store_to_verify(db, alone) as store:
        # read before the store: a head is anchored, a commit made, once the store has it
        anchored, committed = ([], None) if alone else read_outside()
        report = store.verify(decode_event, anchored=anchored, committed=committed)
    click.echo(f"tree size {report.tree_size} (leaves: access-log events and operator actions): "
               f"{report.entries} entries checked, {report.actions} operator actions checked, "
               f"{report.purged} purged, {report.heads} heads, "
               f"{report.unsigned} leaves after the latest valid head")
    if report.unproved:
        click.echo(f"{report.unproved} operator actions stored before actions were leaves of "
                   "the tree: kept, not provable")
    if alone:
        click.echo("not checked against the anchored heads (--no-anchor)")
    elif report.anchor is None:
        click.echo("no head anchored yet: nothing to check the store's size against")
    else:
        click.echo(f"checked against the largest good one of {report.anchored} anchored heads: "
                   f"size {report.anchor.size}, "
                   f"{report.anchor.timestamp.isoformat(timespec='milliseconds')}")
    if not alone:
        click.echo(_commit_checked(report))
    _stop_at_findings(report)
    click.echo("ok: every entry, operator action, subtree hash, purged leaf hash and head is "
               "consistent")


def _stop_at_findings(report: VerifyReport) -> None:
    """Each finding of a check of the store, and its verdict with exit 1, if there are any."""
    for finding in report.findings:
        click.echo(f"  {finding.kind.upper():9} {finding.where}: {finding.detail}")
    if report.omitted:
        click.echo(f"  … and {report.omitted} more")
    if not report.ok:
        click.echo(report.verdict, err=True)
        raise SystemExit(1)


@audit_cli.command(short_help="After a forged commit note: verify, commit the next offset.")
@store_option
@instance_option
def recommit(db: str | None, instance: str) -> None:
    """After the audit consumer stopped at a forged commit note: check the store against the
    heads anchored on the broker (as `verify` does), then commit for the consumer the offset
    the store accounts for (the first record on the audit topic with an event it does not
    hold), with a note of its tree signed by the head key. Run with the consumer stopped: its
    static member's place is taken at once. The consumer then starts from there, each event
    appended once.

    Commits nothing, and exits 1, if the check finds anything; nothing either if the last
    commit's note is not forged and its offset not past the last the consumer noted."""
    from audit.recommit import NotAssigned
    from audit.recommit import recommit as recommitted

    with open_store(db) as store:
        anchored, committed = read_outside()
        offset = (committed.offset if committed is not None
                  else asyncio.run(anchor.consumer_commit(KafkaAccess.of(acls.AUDIT)))[0])
        if committed is not None and committed.signed_by(store.signer.public_key) is False:
            forged = f"(offset {offset}, size {committed.size}) has a forged note"
        elif (noted := store.noted_before(offset)) is not None:
            forged = f"(offset {offset}) is past the last offset it noted ({noted})"
        else:
            click.echo("the audit consumer's last commit has no forged note: the consumer "
                       "starts from it; nothing committed")
            return
        report = store.verify(decode_event, anchored=anchored)
        click.echo(f"the audit consumer's commit {forged}; the store of {report.tree_size} "
                   f"entries checked against {report.anchored} anchored heads")
        _stop_at_findings(report)
        try:
            offset = asyncio.run(recommitted(KafkaAccess.of(acls.AUDIT), store, instance))
        except NotAssigned as exc:
            raise click.ClickException(str(exc)) from exc
    click.echo(f"committed offset {offset} of the audit topic for {acls.AUDIT_GROUP}, with a "
               f"note of the tree of {report.tree_size} entries signed by the head key: "
               "`renkei audit run` starts from it")


@audit_cli.command(short_help="Delete entries and operator actions older than the retention.")
@store_option
@click.option("--now", callback=past_time, metavar="TIME", cls=SaidDefault, show_default="now",
              help="the time to purge at, not later than now")
@click.option("--retention-years", type=click.IntRange(min=RETENTION_YEARS),
              default=RETENTION_YEARS, show_default=True,
              help=f"at least {RETENTION_YEARS}: the law's minimum")
def purge(db: str | None, now: datetime | None, retention_years: int) -> None:
    """Delete entries and operator actions older than the retention; their leaf hashes and all
    heads stay."""
    at = now or datetime.now(UTC)
    try:
        cutoff: datetime | None = years_before(at, retention_years)
    except (ValueError, OverflowError):
        cutoff = None
    if cutoff is None or cutoff < EPOCH:
        raise click.BadParameter(f"{retention_years} years before {at.date().isoformat()} is "
                                 f"before {EPOCH.year}, where the log's times begin",
                                 param_hint="'--now' / '--retention-years'")
    with open_store(db) as store:
        records = store.purge(at, retention_years)
    click.echo(f"purged {sum(r.count for r in records)} entries and operator actions older than "
               f"{records[-1].cutoff.isoformat(timespec='milliseconds')} "
               f"({sum(len(r.ranges) for r in records)} serial range(s), in {len(records)} "
               f"step(s))")


@audit_cli.command(short_help="The current signed tree head (signed anew if entries came).")
@store_option
@click.option("--all", "history", is_flag=True, help="every head signed so far")
def head(db: str | None, history: bool) -> None:
    """The current signed tree head (signing a new one if entries came after the last); its
    size counts the tree's leaves, access-log events and operator actions."""
    with open_store(db) as store:
        heads = store.heads() if history else [store.head()]
        public_key = store.signer.public_key.public_bytes_raw().hex()
    _echo_json({"public_key": public_key, "heads": [h.to_json() for h in heads]})


def _entry_json(entry: Entry, trusted: bool, faithful: bool) -> dict[str, Any]:
    """The entry with its inclusion proof, or pending if no signed head holds it yet (`trusted`:
    the latest head is the log's key's); not `faithful` (its columns differ from its signed
    bytes), marked so and no proof; not the tree's leaf at its serial, marked unproved."""
    event = asdict(entry.event)
    event["occurred_at"] = entry.event.occurred_at.isoformat(timespec="milliseconds")
    data: dict[str, Any] = {"serial": entry.serial, **event,
                            "leaf_hash": leaf_hash(entry.leaf).hex()}
    if not faithful:
        data["columns_differ"] = True  # the fields are the signed bytes'; nothing is proved
    elif entry.unproved:
        data["unproved"] = True  # its bytes are not the leaf the signed head holds there
    elif entry.proof is not None:
        data["inclusion_proof"] = [p.hex() for p in entry.proof]
    elif trusted:
        data["pending"] = True  # after the latest signed head: the audit consumer's next holds it
    return data


def person_of(given: str) -> str:
    """The ID code given, or a usage error that does not say it back: any other value would
    match no entry and pass for a person nobody looked at."""
    if not ID_CODE.fullmatch(given):
        raise click.BadParameter("not an ID code (11 characters 0-9A-Z, upper case)",
                                 param_hint="--person")
    return given


@audit_cli.command(cls=OnStdin, short_help="One page of entries in time order, proved, as JSON.")
@store_option
@click.option("--person", is_flag=True,
              help="one person's entries, their ID code on stdin or at the prompt")
@click.option("--holder", help="entries where this holder requested or provided")
@click.option("--pattern", help="legal pattern id")
@click.option("--outcome", help=f"as the log says it, in any case: {', '.join(OUTCOMES)}, …")
@time_range_options
@click.option("--limit", type=click.IntRange(1, 1000), default=100, show_default=True,
              help="entries on the page at most")
@click.option("--after", help="the `next` cursor of the previous page")
def query(db: str | None, person: bool, holder: str | None, pattern: str | None,
          outcome: str | None, since: datetime | None, until: datetime | None, limit: int,
          after: str | None) -> None:
    """One page of entries in time order, as JSON, each proved against the latest head signed
    in the store, or pending (after it: the audit consumer's next head holds it). Needs the head
    key's public key alone, and writes nothing: the oversight body holds no key that signs the
    log's heads.

    With --person, the person's ID code is read from stdin (the code, or {"person": "…"}), or
    prompted for at a terminal: never an argument, which `ps` and the shell's history show.

    A --holder no entry of the store names (as requester or provider) is noted on stderr, with
    the names entries give nearest it: its empty page is no answer about it (exit code 0 still:
    a holder with no entries yet, or none left after the retention, has none).

    Exits 1 if the latest head is not signed by the log's key (nothing is proved against it),
    an entry's columns differ from its signed bytes, or an entry's proof does not hold (a row,
    or a subtree hash, replaced whole: marked unproved)."""
    id_code = person_of(personal_input.read_one(PERSON)) if person else None
    where = Query(id_code, holder, pattern, outcome_asked(outcome), since, until)
    with open_store(db, signing=False) as store:
        page = _read_page(partial(store.query, where, limit=limit, after=after, prove=True),
                          after)
        unnamed = store.unnamed(holder) if holder is not None and not page.entries else None
    shown = [as_signed(e) for e in page.entries]
    _echo_json({"head": page.head.to_json() if page.head else None,
                "entries": [_entry_json(e, page.trusted, faithful) for e, faithful in shown],
                "next": page.next_cursor})
    if unnamed is not None:
        click.echo(_unnamed_said(unnamed), err=True)
    _tampered("entries", "entry", [str(e.serial) for e, faithful in shown if not faithful],
              [str(e.serial) for e, faithful in shown if faithful and e.unproved], page.trusted)


def _unnamed_said(unnamed: Unnamed, none: str = "no entry of this store names holder") -> str:
    """A note that no entry names the holder asked for (`none`: or no action is on it): its
    empty page tells nothing of it (a holder with no entries yet, or none left after the
    retention, is a true empty answer)."""
    nearest = ", ".join(repr(name) for name in unnamed.nearest)
    return (f"note: {none} {unnamed.holder!r}"
            + (f" (nearest: {nearest})" if nearest else ""))


def _action_json(acted: Acted, trusted: bool) -> dict[str, Any]:
    """An operator action as its bytes tell it, with its leaf hash and its inclusion proof, or
    pending if no signed head holds it yet (`trusted`: the latest head is the log's key's); one
    stored beside the tree (before actions were leaves), so marked; one whose columns differ
    from its bytes, so marked and no proof; one not the tree's leaf at its serial, unproved."""
    action = asdict(acted.action)
    action["occurred_at"] = acted.action.occurred_at.isoformat(timespec="milliseconds")
    data: dict[str, Any] = {"serial": acted.serial, **action,
                            "leaf_hash": leaf_hash(acted.record).hex()}
    if not acted.faithful:
        data["columns_differ"] = True
    elif acted.serial is None:
        data["beside_the_tree"] = True  # stored before actions were leaves: not provable
    elif acted.unproved:
        data["unproved"] = True  # its bytes are not the leaf the signed head holds there
    elif acted.proof is not None:
        data["inclusion_proof"] = [p.hex() for p in acted.proof]
    elif trusted:
        data["pending"] = True
    return data


@audit_cli.command(short_help="Operator actions (suspend, resume, register, rekey, renew).")
@store_option
@click.option("--holder", "--unit", "subject",
              help="actions on this holder (or on this link-code unit, re-keyed)")
@click.option("--action", type=click.Choice(ACTION_KINDS, case_sensitive=False),
              help="actions of this kind only")
@click.option("--by", "operator", metavar="WHO", help="actions this operator ran")
@time_range_options
@click.option("--limit", type=click.IntRange(1, 1000), default=100, show_default=True,
              help="actions on the page at most")
@click.option("--after", help="the `next` cursor of the previous page")
def actions(db: str | None, subject: str | None, action: str | None, operator: str | None,
            since: datetime | None, until: datetime | None, limit: int,
            after: str | None) -> None:
    """One page of operator actions on the holder directory, newest first, as JSON: each with
    its serial (its leaf in the log's tree), time, operator, action, holder or unit, and reason
    as the audit topic carried them (the directory's records seal who and why to the platform's
    key; the log keeps them readable), and its inclusion proof against the latest head signed
    (after it: pending). Needs the head key's public key alone, and writes nothing.

    A --holder (or --unit) no operator action of the store is on is noted on stderr, with the
    holders and units actions are on nearest it: its empty page is no answer about it (exit
    code 0 still: a holder registered before actions were logged, or whose actions are past the
    retention, has none).

    Exits 1 if the latest head is not signed by the log's key, an action's columns differ from
    its signed bytes, or its proof does not hold (a row, or a subtree hash, replaced whole:
    marked unproved)."""
    where = ActionQuery(subject, action and action.upper(), operator, since, until)
    with open_store(db, signing=False) as store:
        page = _read_page(partial(store.actions, where, limit=limit, after=after), after)
        unacted = store.unacted(subject) if subject is not None and not page.actions else None
    _echo_json({"head": page.head.to_json() if page.head else None,
                "actions": [_action_json(a, page.trusted) for a in page.actions],
                "next": page.next_cursor})
    if unacted is not None:
        click.echo(_unnamed_said(unacted, "no operator action of this store is on holder or "
                                          "unit"), err=True)
    _tampered("operator actions", "action",
              [a.action.action_id for a in page.actions if not a.faithful],
              [a.action.action_id for a in page.actions if a.unproved], page.trusted)


def _read_page(read: Callable[[], P], after: str | None) -> P:
    """A page the store reads: TAMPERED (exit code 1) for a row it cannot trust, a bad
    parameter for a cursor that is no page's."""
    try:
        return read()
    except DamagedEntry as exc:
        click.echo(f"TAMPERED: {exc}", err=True)
        raise SystemExit(1) from None
    except ValueError as exc:
        raise click.BadParameter(f"{after!r} is not a cursor: pass the `next` of the previous "
                                 "page", param_hint="--after") from exc


def _tampered(kinds: str, kind: str, edited: list[str], unproved: list[str], trusted: bool
              ) -> None:
    """Said on stderr, and exit code 1: the rows of a page whose signed bytes are not the
    tree's leaves at their serials (`unproved`), those whose columns differ from their signed
    bytes (`edited`), and a latest head the log's key did not sign."""
    if unproved:
        click.echo(f"TAMPERED: no proof of {kinds} {', '.join(unproved)} holds under the latest "
                   "signed head, nor (after it) are they the tree's leaves at their serials: "
                   "their bytes, serials or the tree's hashes were changed (shown: what the "
                   "store says, unproved) (`renkei audit verify` says more)", err=True)
    if edited:
        click.echo(f"TAMPERED: the columns of {kinds} {', '.join(edited)} differ from their "
                   "signed bytes (shown: what the bytes say, unproved) (`renkei audit verify` "
                   "says more)", err=True)
    if not trusted:
        click.echo("TAMPERED: the latest head in the store is not signed by the log's key: no "
                   f"{kind} is proved (`renkei audit verify` says more)", err=True)
    if unproved or edited or not trusted:
        raise SystemExit(1)


@audit_cli.command(short_help="Consume the audit topic into the store; sign heads; detect.")
@store_option
@instance_option
@click.option("--head-seconds", type=FiniteRange(min=anchor.LEAST_HEAD_SECONDS),
              default=anchor.HEAD_SECONDS, show_default=True,
              help="how often a head is signed and anchored (when entries came): the newest "
                   "entries only the consumer's commit vouches for are at most this old")
@click.option("--lateness", type=FiniteRange(min=0), show_default=True,
              default=Rules().lateness.total_seconds(),
              help="seconds an access-log event may come behind the latest (from the platform's "
                   "instances and partitions): a linkage about a person its requester never "
                   "bound is alerted this long after it, when a binding that late has come")
@LOGLEVEL
def run(db: str | None, instance: str, head_seconds: float, lateness: float,
        loglevel: str) -> None:
    """Consume the audit topic into the store (exactly once per event), sign heads, detect."""
    from audit.consumer import main
    from renkei import event_loop
    from renkei.service_loop import said_when_up

    logs.for_service(loglevel.upper())
    with open_store(db, create=True) as store, sqlite.faults_told(sql.shown(db or default_path())):
        event_loop.run(said_when_up(
            partial(main, store, instance, head_seconds,
                    Rules(lateness=timedelta(seconds=lateness))),
            f"audit consumer {instance} up on the broker at {cluster.bootstrap()}: the audit "
            f"topic into {sql.shown(db or default_path())}, a head signed every "
            f"{head_seconds:g} s"))


@audit_cli.command(short_help="Rebuild a store from offset 0: same root? approvals re-checked.")
@click.option("--db", metavar="URL", default=None, cls=SaidDefault,
              show_default="audit/replay-<time>.db in the state folder",
              help=f"the fresh store to rebuild ({STORE_URL})")
@click.option("--live", metavar="URL", default=None, cls=SaidDefault,
              show_default="the state folder's audit/audit.db",
              help=f"the store to compare with, which must be there ({STORE_URL})")
@click.option("--grace", type=FiniteRange(min=0, max=MOST_GRACE_SECONDS), default=10.0,
              show_default=True,
              help="seconds the platform's view of the pattern list may lag its topic")
def replay(db: str | None, live: str | None, grace: float) -> None:
    """Rebuild a store from offset 0 of the audit topic; compare roots and sizes; re-check
    approvals.

    Exits 1 if the roots (or, once the topic's retention deleted its oldest records, the entries
    after those) differ, nothing could be compared though the live store held entries (the topic
    has none of their records), the topic starts past the offset the audit consumer committed
    (the broker deleted records it never read) or ends before it (cut, or deleted and made
    again), the live store lacks events it committed, holds events older than the cutoff of a
    purge it made before they came or after (entries its purges left: `renkei audit verify` says
    why), or an approval or rejection disagrees with the pattern list.
    """
    from audit import replay as replaying

    named = private_dir("audit") / f"replay-{datetime.now(UTC):%Y%m%dT%H%M%S}.db"
    target = db or str(named)
    try:
        with open_store(target, create=True) as fresh, open_store(live) as current:
            try:
                report = asyncio.run(replaying.replay(KafkaAccess.of(acls.AUDIT), fresh, current,
                                                      timedelta(seconds=grace)))
            except ValueError as exc:
                raise click.ClickException(str(exc)) from exc
    except BaseException:  # the broker away, say: no empty store of ours left behind
        if db is None:
            sqlite.removed(named)
        raise
    again = report.events - report.size - report.unlogged - report.beside
    click.echo(f"replayed {report.events} events and operator actions ({again} of them an id "
               f"again) from {report.records} records into {sql.shown(target)} in "
               f"{report.seconds:.1f}s: tree size {report.size}, root {report.root.hex()}")
    if report.beside:
        click.echo(f"{report.beside} operator actions the live store keeps beside the tree, "
                   "stored before actions were leaves: kept so, not provable")
    if report.unlogged:
        click.echo(f"{report.unlogged} events and operator actions older than the live store's "
                   "purge cutoff when they came, which it did not log: not replayed")
    if report.left:
        click.echo(f"LEFT: {report.left} events older than the cutoff of a purge the live store "
                   "made before they came or after are in it all the same, entries its purges "
                   "left (their bytes not "
                   "their leaf's, or their time column changed: `renkei audit verify` says "
                   "which): replayed")
    compared = bool(report.compared_at)
    live_size = report.live_size or 0
    same = "identical" if report.identical else "DIFFERENT"
    if report.start:
        click.echo(f"the topic starts at offset {report.start}: the broker deleted the records "
                   f"before it (the topic's retention); {report.beyond} entries of the live "
                   "store are theirs, beyond the topic's retention: not replayed")
    if report.acknowledged is None:
        click.echo("the audit consumer has committed no offset on the topic: it never read it "
                   "(no event lost to the log for that)")
    elif report.lost:
        click.echo(f"LOST: the topic starts at offset {report.start}, past offset "
                   f"{report.acknowledged} the audit consumer committed: the broker deleted the "
                   f"records of offsets {report.acknowledged}..{report.start - 1} ({report.lost} "
                   "offsets) before the audit consumer read them, their events never logged")
    if report.past_end:
        click.echo(f"CUT: the topic ends at offset {report.end}, before offset "
                   f"{report.acknowledged} the audit consumer committed: the live store holds "
                   f"the events of {report.past_end} offsets past the topic's end that it no "
                   "longer has (cut, or deleted and made again)")
    if compared and report.start:
        click.echo(f"live store of {live_size} entries, serials {report.beyond}.."
                   f"{report.beyond + report.compared_at - 1} compared with the replay's: "
                   f"{report.differing} differ ({same})")
    elif compared:
        click.echo(f"live store of {live_size} entries, compared at size {report.compared_at}: "
                   f"root {(report.live_root or b'').hex()} ({same})")
    elif report.uncompared:
        click.echo(f"NOT COMPARED: the live store held {report.held} entries when the replay read "
                   f"the topic, and the topic none of their events (its records from offset "
                   f"{report.start} to {report.end}; {_commit_said(report.acknowledged)}): the "
                   "broker deleted them (the topic's retention), or "
                   "the topic was deleted and made again")
    else:
        click.echo("the live store was empty when the replay read the topic: no root to compare")
    if report.short:
        click.echo(f"SHORT: the live store has {live_size} entries; the audit consumer committed "
                   f"offset {report.acknowledged}, whose events make {report.owed}: serials "
                   f"{live_size}..{report.owed - 1} are gone")
    elif live_size < report.logged:
        click.echo(f"the live store is {report.logged - live_size} entries behind the topic: "
                   "events the audit consumer has not committed yet")
    elif live_size > report.logged:
        click.echo(f"the live store is {live_size - report.logged} entries ahead of the topic as "
                   "replayed: events logged since the replay read it, or entries the topic "
                   "never had")
    click.echo(f"{len(report.actions)} operator actions on the topic"
               + (f", {len(report.unkept)} of them NOT in the live store" if report.unkept
                  else ""))
    for a in report.actions:
        click.echo(f"  {a.occurred_at.isoformat(timespec='milliseconds')} {a.action} "
                   f"{column_text(a.subject)} by {column_text(a.operator)}"
                   + (f"; reason: {column_text(a.reason)}" if a.reason else ""))
    click.echo(f"re-checked {report.checked} approvals and rejections against the pattern list "
               f"in force at each event's time: {len(report.disagreements)} disagreement(s)")
    for d in report.disagreements:
        click.echo(f"  DISAGREES {d.event.event_id} at "
                   f"{d.event.occurred_at.isoformat(timespec='milliseconds')}: logged "
                   f"{d.logged}, re-check says {d.rechecked} ({d.detail})")
    if ((compared and not report.identical) or report.short or report.left or report.disagreements
            or report.uncompared or report.lost or report.past_end):
        raise SystemExit(1)


def _commit_said(acknowledged: int | None) -> str:
    """The audit consumer's committed offset on the topic, in words."""
    if acknowledged is None:
        return "the audit consumer committed none"
    return f"the audit consumer committed offset {acknowledged}"
