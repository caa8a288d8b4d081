"""Apply the topic spec, principals and ACLs to the running broker, idempotently."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import partial
from typing import Any, TypeVar

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import (
    AclBinding,
    AclBindingFilter,
    AclOperation,
    AclPermissionType,
    AdminClient,
    AlterConfigOpType,
    ClusterMetadata,
    ConfigEntry,
    ConfigResource,
    NewPartitions,
    NewTopic,
    ResourcePatternType,
    ResourceType,
    ScramCredentialInfo,
    ScramMechanism,
    UserScramCredentialDeletion,
    UserScramCredentialUpsertion,
)

from broker import acls, cluster, config, credentials, in_force, topics
from broker.acls import Grant
from broker.clients import KafkaAccess, asked, reachable
from broker.credentials import Credentials
from broker.topics import TopicSpec

TIMEOUT = 30.0
SCRAM_ITERATIONS = 8192
REAUTH = "connections.max.reauth.ms"
_RESOURCES = {"topic": ResourceType.TOPIC, "group": ResourceType.GROUP,
              "cluster": ResourceType.BROKER}
_PATTERNS = {"literal": ResourcePatternType.LITERAL, "prefixed": ResourcePatternType.PREFIXED}
T = TypeVar("T")
Acl = tuple[str, Grant, str]  # an ACL entry: principal, grant, operation


@dataclass
class Report:
    """What a provisioning run changed, and how much of the spec was there already."""

    created: list[str] = field(default_factory=list)
    altered: list[str] = field(default_factory=list)
    grown: list[str] = field(default_factory=list)
    principals: list[str] = field(default_factory=list)
    reset: list[str] = field(default_factory=list)  # principals whose password no longer logged in
    unchecked: list[str] = field(default_factory=list)  # principals no broker answered a log-in of
    behind: list[str] = field(default_factory=list)  # principals let in by some brokers, not all
    # principals' credentials of mechanisms the brokers take no log-in by, removed: "name (mech)"
    removed: list[str] = field(default_factory=list)
    acls: list[Acl] = field(default_factory=list)
    revoked: list[Acl] = field(default_factory=list)  # entries a service no longer has, deleted
    topics_there: int = 0
    principals_there: int = 0
    acls_there: int = 0
    notes: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        return [
            f"topics created: {', '.join(self.created) or 'none'}",
            f"topic configs brought to spec: {', '.join(self.altered) or 'none'}",
            f"topics given more partitions: {', '.join(self.grown) or 'none'}",
            f"principals created: {', '.join(self.principals) or 'none'}",
            f"passwords reset to the state folder's: {', '.join(self.reset) or 'none'}",
            *([f"passwords not checked (no answer): {', '.join(self.unchecked)}"]
              if self.unchecked else []),
            *([f"passwords set again for brokers behind (some let them in): "
               f"{', '.join(self.behind)}"] if self.behind else []),
            *([f"credentials of mechanisms no broker logs in by removed: "
               f"{', '.join(self.removed)}"] if self.removed else []),
            f"ACL entries created: {len(self.acls) or 'none'}",
            *(f"  {line}" for line in _granted(self.acls)),
            *([f"ACL entries taken back: {len(self.revoked)}",
               *(f"  {line}" for line in _granted(self.revoked))] if self.revoked else []),
            f"already there: {self.topics_there} topics, {self.principals_there} principals "
            f"(passwords set to the state folder's), {self.acls_there} ACL entries",
            *self.notes,
        ]


def _granted(acls: list[Acl]) -> list[str]:
    """`acls` in words, one line per principal and resource."""
    operations: dict[tuple[str, Grant], list[str]] = {}
    for principal, grant, operation in acls:
        operations.setdefault((principal, grant), []).append(operation)
    return [f"{principal} may {', '.join(ops)} on {grant.resource} {grant.name}"
            + ("*" if grant.pattern == "prefixed" else "")
            for (principal, grant), ops in operations.items()]


class ProvisioningFailed(RuntimeError):
    """The broker refused a provisioning request, or did not enforce what it committed in time."""


@dataclass
class _Made:
    """The principals and ACL bindings a command made (or found there), which every broker must
    enforce before it returns (_in_force_once), and the ACL entries the broker holds, every
    principal's asked once a command (_bound)."""

    logins: list[Credentials] = field(default_factory=list)
    bindings: list[AclBinding] = field(default_factory=list)
    revoked: list[AclBinding] = field(default_factory=list)
    held: dict[str, set[in_force.Entry]] | None = None  # by principal, None: not asked yet


def _in_force_once(make: Callable[[_Made], T]) -> T:
    """What `make` returns, once every broker enforces all it made: one look for all, not one
    per principal or grant (each look opens an admin connection, a thread and an event loop:
    ~15 ms before it checks anything); ProvisioningFailed if the broker refused or did not."""
    made = _Made()
    try:
        result = make(made)
        in_force.in_force(admin_access(), made.bindings, made.logins, made.revoked)
    except (KafkaException, in_force.NotInForce) as exc:
        raise ProvisioningFailed(f"provisioning failed: {exc.args[0]}") from exc
    return result


def admin_access() -> KafkaAccess:
    return KafkaAccess(cluster.bootstrap(), credentials.load(config.ADMIN))


def admin_client() -> AdminClient:
    return AdminClient({**admin_access().confluent(), "log_level": 0})


def reached_admin() -> AdminClient:
    """An admin client for a command, once a broker takes a connection: BrokerAway at once if
    none does (each admin request would wait TIMEOUT for it)."""
    reachable(cluster.bootstrap())
    return admin_client()


def _wait(futures: dict[Any, Any]) -> None:
    for future in futures.values():
        future.result(timeout=TIMEOUT)


def ensure_topics(admin: AdminClient, specs: Iterable[TopicSpec], report: Report) -> None:
    _ensure_topics(admin, admin.list_topics(timeout=TIMEOUT), specs, report)


def _ensure_topics(admin: AdminClient, listed: ClusterMetadata, specs: Iterable[TopicSpec],
                   report: Report) -> None:
    """The topics of `specs` brought to them, `listed` the brokers and topics there (one
    metadata request)."""
    wanted = [spec.for_cluster(len(listed.brokers)) for spec in specs]
    existing = listed.topics
    missing = [s for s in wanted if s.name not in existing]
    if missing:
        _wait(admin.create_topics(
            [NewTopic(s.name, s.partitions, s.replication, config=s.configs()) for s in missing],
            operation_timeout=TIMEOUT,
        ))
        report.created += [s.name for s in missing]
    present = [s for s in wanted if s.name in existing]
    report.topics_there += len(present)
    grow = [s for s in present if len(existing[s.name].partitions) < s.partitions]
    if grow:
        _wait(admin.create_partitions([NewPartitions(s.name, s.partitions) for s in grow]))
        report.grown += [s.name for s in grow]
    for spec in present:
        if len(existing[spec.name].partitions) > spec.partitions:
            report.notes.append(
                f"note: {spec.name} has more partitions than the spec; Kafka cannot shrink it"
            )
    _ensure_configs(admin, present, report)


def _ensure_configs(admin: AdminClient, specs: list[TopicSpec], report: Report) -> None:
    if not specs:
        return
    described = {r.name: f for r, f in admin.describe_configs(
        [ConfigResource(ConfigResource.Type.TOPIC, s.name) for s in specs]).items()}
    drifted: list[ConfigResource] = []
    for spec in specs:
        current = described[spec.name].result(TIMEOUT)
        changes = [
            ConfigEntry(key, value, incremental_operation=AlterConfigOpType.SET)
            for key, value in spec.configs().items()
            if key not in current or current[key].value != value
        ]
        if changes:
            drifted.append(ConfigResource(ConfigResource.Type.TOPIC, spec.name,
                                          incremental_configs=changes))
            report.altered.append(spec.name)
    if drifted:
        _wait(admin.incremental_alter_configs(drifted))


def ensure_principal(admin: AdminClient, creds: Credentials, report: Report) -> None:
    """The principal and its password, returned once every broker lets it log in."""
    _in_force_once(partial(_principals, admin, [creds], report))


def ensure_grants(admin: AdminClient, principal: str, grants: Iterable[Grant],
                  report: Report) -> None:
    """The principal's grants, returned once every broker enforces them."""
    _in_force_once(partial(_grants, admin, principal, grants, report))


def _known(admin: AdminClient, usernames: list[str]) -> dict[str, list[ScramCredentialInfo]]:
    """Those of `usernames` the broker has SCRAM credentials for, asked in one request, each
    with the mechanism and iteration count of each of its credentials."""
    described = admin.describe_user_scram_credentials(usernames)
    assert isinstance(described, dict)  # one future per user asked for
    known = {}
    for username, future in described.items():
        try:
            known[username] = future.result(TIMEOUT).scram_credential_infos
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError.RESOURCE_NOT_FOUND:
                raise
    return known


def _logs_in_by(info: ScramCredentialInfo) -> bool:
    """Whether SCRAM credentials are of the one mechanism the brokers let principals log in by
    (clients.MECHANISM): a principal with none has no password a log-in could reset."""
    return info.mechanism == ScramMechanism.SCRAM_SHA_512


def _not_logged_in_by(known: dict[str, list[ScramCredentialInfo]]
                      ) -> list[tuple[str, ScramMechanism]]:
    """The user and mechanism of each credential of `known` of a mechanism no broker lets a
    principal log in by: a password a run never set, which would log in if a broker took it."""
    return [(username, info.mechanism)
            for username, infos in known.items() for info in infos if not _logs_in_by(info)]


def _as_set(info: ScramCredentialInfo) -> bool:
    """Whether SCRAM credentials are of the mechanism and iteration count a run sets."""
    return _logs_in_by(info) and info.iterations == SCRAM_ITERATIONS


def _brokers(admin: AdminClient) -> list[str]:
    """The host:port of each broker of the cluster."""
    nodes = admin.describe_cluster(request_timeout=TIMEOUT).result(TIMEOUT).nodes
    return [f"{node.host}:{node.port}" for node in nodes]


def _principals(admin: AdminClient, logins: list[Credentials], report: Report,
                made: _Made) -> None:
    """The principals, their passwords the state folder's (said reset for those the broker had
    another of, not checked for those no broker answered the log-in of, set again for those
    some brokers let in and not every one): those there with credentials of the mechanism the
    brokers take asked to log in on every broker all at once first (one may be behind the
    controller, after a run that ended before they all applied its passwords), then every
    password set in one request but those every broker lets log in with it already, set as a
    run sets it (neither set again nor waited for), then their credentials of other mechanisms
    removed (said removed)."""
    if not logins:
        return
    known = _known(admin, [creds.username for creds in logins])
    brokers = _brokers(admin)
    answers = asked([KafkaAccess(broker, creds) for creds in logins
                     if any(map(_logs_in_by, known.get(creds.username, [])))
                     for broker in brokers])
    report.reset += answers.refused
    report.unchecked += answers.unanswered
    report.behind += answers.behind
    unsure = {*answers.refused, *answers.unanswered, *answers.behind}
    to_set = [creds for creds in logins
              if not any(map(_as_set, known.get(creds.username, [])))
              or creds.username in unsure]
    info = ScramCredentialInfo(ScramMechanism.SCRAM_SHA_512, SCRAM_ITERATIONS)
    if to_set:
        _wait(admin.alter_user_scram_credentials([
            UserScramCredentialUpsertion(creds.username, info, creds.password.encode())
            for creds in to_set]))
    if removed := _not_logged_in_by(known):  # a request of their own: a user once a request
        _wait(admin.alter_user_scram_credentials([
            UserScramCredentialDeletion(username, mechanism) for username, mechanism in removed]))
    report.removed += [f"{username} ({mechanism.name.replace('_', '-')})"
                       for username, mechanism in removed]
    made.logins += to_set
    report.principals_there += len(known)
    report.principals += [creds.username for creds in logins if creds.username not in known]


def _held(admin: AdminClient) -> dict[str, set[in_force.Entry]]:
    """The ACL entries the broker holds, by principal, asked in one request."""
    held: dict[str, set[in_force.Entry]] = {}
    for binding in admin.describe_acls(AclBindingFilter(  # None: any name, principal and host
            ResourceType.ANY, None, ResourcePatternType.ANY, None, None,  # type: ignore[arg-type]
            AclOperation.ANY, AclPermissionType.ANY)).result(TIMEOUT):
        held.setdefault(binding.principal, set()).add(in_force.entry(binding))
    return held


def _bound(admin: AdminClient, principal: str, made: _Made) -> set[in_force.Entry]:
    """The ACL entries the broker holds for `principal`, every principal's asked in one request
    a run (not one a holder: the platform's, asked by any run that adds a holder, grow with
    each holder's, so all of them cost a few times as much): those the run made added by it."""
    if made.held is None:
        made.held = _held(admin)
    return made.held.setdefault(principal, set())


def _grants(admin: AdminClient, principal: str, grants: Iterable[Grant], report: Report,
            made: _Made) -> None:
    """The principal's grants: those not on the broker yet made, the others counted."""
    bindings = _bindings(principal, grants)
    held = _bound(admin, f"User:{principal}", made)
    missing = {acl: b for acl, b in bindings.items() if in_force.entry(b) not in held}
    if missing:
        _wait(admin.create_acls(list(missing.values())))
        held |= {in_force.entry(b) for b in missing.values()}
    made.bindings += bindings.values()
    report.acls += missing
    report.acls_there += len(bindings) - len(missing)


def _bindings(principal: str, grants: Iterable[Grant]) -> dict[Acl, AclBinding]:
    """The ACL entries that give `principal` its grants."""
    return {
        (f"User:{principal}", g, op): AclBinding(
            _RESOURCES[g.resource], g.name if g.resource != "cluster" else "kafka-cluster",
            _PATTERNS[g.pattern], f"User:{principal}", "*", AclOperation[op],
            AclPermissionType.ALLOW)
        for g in grants for op in g.operations
    }


def _revoked(admin: AdminClient, principal: str, grants: Iterable[Grant], report: Report,
             made: _Made) -> None:
    """The principal's grants taken back: those the broker holds deleted."""
    bindings = _bindings(principal, grants)
    held = _bound(admin, f"User:{principal}", made)
    there = {acl: b for acl, b in bindings.items() if in_force.entry(b) in held}
    if there:
        _wait(admin.delete_acls([binding_filter(b) for b in there.values()]))
        held -= {in_force.entry(b) for b in there.values()}
    made.revoked += bindings.values()
    report.revoked += there


def binding_filter(binding: AclBinding) -> AclBindingFilter:
    """The filter that matches `binding` alone."""
    return AclBindingFilter(binding.restype, binding.name, binding.resource_pattern_type,
                            binding.principal, binding.host, binding.operation,
                            binding.permission_type)


class NotAHolder(ValueError):
    """Not the id of a holder registered in this state folder."""


def holder_id(holder: str) -> str:
    """`holder` if it is a valid holder id (a principal name, not a service's), else ValueError."""
    return acls.check_holder_id(credentials.check_name(holder))


def registered_holder(holder: str) -> str:
    """`holder` if it is a holder registered in this state folder (its credentials are here)."""
    try:
        holder_id(holder)
    except ValueError as exc:
        raise NotAHolder(str(exc)) from None
    if not credentials.known(holder):
        raise NotAHolder(f"no holder {holder!r} is registered in this state folder: "
                         f"run `renkei holder register {holder} …` first")
    return holder


def renew_password(admin: AdminClient, holder: str) -> Credentials:
    """A new password for a holder registered here, in the state folder first (a run stopped
    before the broker has it is finished by `renkei broker provision`, which sets every
    principal's to the state folder's), then set on the broker: returned once every broker lets
    the holder log in with it, and no longer with the old one (each broker has one password of
    a principal: the old one is replaced)."""
    creds = credentials.renew(registered_holder(holder))
    _in_force_once(partial(_principals, admin, [creds], Report()))
    return creds


def reauth_ms(admin: AdminClient) -> int:
    """The longest a connection's log-in lasts on any broker (connections.max.reauth.ms; 0:
    as long as the connection): a connection logged in with a password renewed since is closed
    by then, at its next request (aiokafka logs in again, with the password it has)."""
    resources = [ConfigResource(ResourceType.BROKER, str(node.id))
                 for node in admin.describe_cluster(request_timeout=TIMEOUT).result(TIMEOUT).nodes]
    described = admin.describe_configs(resources, request_timeout=TIMEOUT)
    values = [int(future.result(TIMEOUT)[REAUTH].value or 0) for future in described.values()]
    return 0 if 0 in values else max(values)


def add_holder(admin: AdminClient, holder: str, report: Report) -> Credentials:
    """A holder's principal, its inbox and outbox, and the ACLs that fence them, returned once
    every broker enforces them."""
    return _in_force_once(lambda made: _holders(admin, [holder], report, made)[0])


def add_holders(admin: AdminClient, holders: Iterable[str], report: Report) -> None:
    """Each of `holders` added as add_holder adds one, returned once every broker enforces them
    all: one look for all, their passwords set in one pass, and the platform's ACL entries
    (which grow with each) asked once."""
    _in_force_once(partial(_holders, admin, holders, report))


def _issued(holders: Iterable[str]) -> list[Credentials]:
    """The credentials of each of `holders` (valid holder ids), issued if new."""
    return [credentials.issue(holder_id(holder)) for holder in holders]


def _holders(admin: AdminClient, holders: Iterable[str], report: Report,
             made: _Made) -> list[Credentials]:
    issued = _issued(holders)
    _principals(admin, issued, report, made)
    _fenced(admin, admin.list_topics(timeout=TIMEOUT), [creds.username for creds in issued],
            report, made)
    return issued


def _fenced(admin: AdminClient, listed: ClusterMetadata, holders: list[str], report: Report,
            made: _Made) -> None:
    """The holders' inboxes and outboxes (described once for all, `listed` the topics there),
    and the ACLs that fence them."""
    _ensure_topics(admin, listed,
                   [spec for holder in holders for spec in topics.holder_topics(holder)], report)
    for holder in holders:
        for principal, grants in acls.holder_grants(holder).items():
            _grants(admin, principal, grants, report, made)


def registered_holders(listed: ClusterMetadata) -> list[str]:
    """Holders known to the broker: those whose outbox topic is `listed`."""
    return sorted(h for t in listed.topics if (h := topics.holder_of_outbox(t)) is not None)


def wait_for_brokers(admin: AdminClient, count: int, timeout: float = 180.0) -> None:
    """Wait until `count` brokers are in the cluster's metadata (a deployment starting up)."""
    deadline = time.monotonic() + timeout
    seen = 0
    while time.monotonic() < deadline:
        try:
            seen = len(admin.list_topics(timeout=5).brokers)
        except KafkaException:
            seen = 0
        if seen >= count:
            return
        time.sleep(1)
    raise RuntimeError(f"only {seen} of {count} brokers came up within {timeout:.0f}s")


def provision(brokers: int | None = None) -> Report:
    """Bring the broker to the spec: platform topics, service principals, every holder.

    With `brokers`, first wait until that many brokers are up, so that topics get the
    replication the spec asks for on a deployment of that size."""
    admin = admin_client() if brokers is not None else reached_admin()
    if brokers is not None:
        wait_for_brokers(admin, brokers)
    return _to_spec(admin, admin.list_topics(timeout=TIMEOUT))


def provisioned_again() -> Report | None:
    """A broker provisioned before (a platform topic on it) brought to this code's spec again,
    as `provision` does; None, untouched, for one never provisioned."""
    admin = reached_admin()
    listed = admin.list_topics(timeout=TIMEOUT)
    if not any(spec.name in listed.topics for spec in topics.platform_topics()):
        return None
    return _to_spec(admin, listed)


def _to_spec(admin: AdminClient, listed: ClusterMetadata) -> Report:
    """Platform topics, service principals and every holder brought to the spec, returned once
    every broker enforces them: `listed` the brokers and topics there (the platform topics it
    creates are no holder's)."""
    report = Report()
    _in_force_once(partial(_spec, admin, listed, report))
    return report


def _spec(admin: AdminClient, listed: ClusterMetadata, report: Report, made: _Made) -> None:
    _ensure_topics(admin, listed, topics.platform_topics(), report)
    holders = registered_holders(listed)
    _principals(admin, [credentials.issue(s) for s in acls.SERVICES] + _issued(holders),
                report, made)
    for service in acls.SERVICES:
        _grants(admin, service, acls.SERVICE_GRANTS[service], report, made)
    for service, grants in acls.REVOKED.items():
        _revoked(admin, service, grants, report, made)
    _fenced(admin, listed, holders, report, made)
