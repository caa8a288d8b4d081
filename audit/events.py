"""The access-log event: what the platform emits per step of a request, and the audit log keeps."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from schemas.codec import CODEC

ID_CODE = re.compile(r"[0-9A-Z]{11}")  # fullmatch: `$` would take a final newline
_UNSAFE = re.compile(r"[\x00-\x1f\x7f-\x9f\\]")
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MILLISECOND = timedelta(milliseconds=1)
PORTAL_KIND = "PORTAL"  # My Portal's own actions (a resident's look, application, new number)
PORTAL_STEP = "portal."  # begins each step the portal logs, and none the platform logs
# the access log's kinds of step (the platform's: processors.access_log, and what reads them)
BINDING, LINKAGE, ANSWER, MESSAGE, REKEY = "BINDING", "LINKAGE", "ANSWER", "MESSAGE", "REKEY"
OVERSIGHT, APPLICATION = "OVERSIGHT", "APPLICATION"  # requests for holder-side logs: the
# oversight body's, a resident's (logged only when the platform refuses to ask a holder)
HOLDER_LOGS = frozenset({OVERSIGHT, APPLICATION})  # refused only for an inactive holder's sake
APPROVED, REQUESTED = "APPROVED", "REQUESTED"
REJECTED = "REJECTED"  # the outcome of an event of a request refused
SUSPENDED = "SUSPENDED"  # its reason when the requester or the provider is suspended


def outcome_asked(typed: str | None) -> str | None:
    """An outcome asked for (a filter's) as the log says every outcome, upper case, whatever the
    case it was typed in, without the spaces around it; None if none was."""
    return (typed.strip().upper() or None) if typed else None


def escaped(value: str) -> str:
    """`value` with its control characters and backslashes escaped (\\x00, \\\\: one value, one
    form); printable text without a backslash (nearly every value, Japanese too: no control
    character is printable) is as it is without the pattern."""
    if value.isprintable() and "\\" not in value:
        return value
    return _UNSAFE.sub(_escaped, value)


def _escaped(unsafe: re.Match[str]) -> str:
    return "\\\\" if unsafe[0] == "\\" else f"\\x{ord(unsafe[0]):02x}"


def millis(moment: datetime) -> int:
    """Milliseconds since the epoch, exactly (no float rounding); `moment` must be aware."""
    if moment.tzinfo is None:
        raise ValueError(f"naive datetime {moment.isoformat()}: give a time zone (UTC)")
    return (moment - EPOCH) // MILLISECOND


def from_millis(ms: int) -> datetime:
    """The moment `ms` milliseconds after the epoch; ValueError if it is none (past year 9999,
    or no integer: a store's column edited)."""
    try:
        return EPOCH + ms * MILLISECOND
    except (OverflowError, TypeError):
        raise ValueError(f"{ms!r} milliseconds since the epoch is no time") from None


def event_id(request_id: str, step: str) -> str:
    """The event's dedupe key: the request id and the step, so a replay yields the same id.

    A step of a request may name the holder message it came in after an '@' (rejected@, rekeyed@
    and binding@ its topic:partition:offset; approved@ and answered@ its digest, which copies of
    it sent again share, or its topic:partition:offset if it came before digests), so that a
    request using an id again (the decider forgets ids) is logged as its own and not dropped as a
    replay of the first."""
    return f"{request_id}:{step}"


def step_of(event: AccessLogEvent) -> str:
    """The name of the step an event logs (approved, answered, rejected, …), without its '@'."""
    return event.event_id[len(event.request_id) + 1:].split("@", 1)[0]


def approval_id(event: AccessLogEvent) -> str | None:
    """The event id of the approval of the exchange `event` logs a step of: approved@ and the
    name after its '@' (processors.decider.copies_name, which an exchange's approval and answer
    share); None for an event naming none. A refused request's (rejected@ its message's
    topic:partition:offset) names no approval's."""
    _, named, name = event.event_id[len(event.request_id) + 1:].partition("@")
    return event_id(event.request_id, f"approved@{name}") if named else None


def portal_step(step: str) -> str:
    """A step of My Portal's, named apart from the platform's (of_portal)."""
    return PORTAL_STEP + step


def of_portal(event: AccessLogEvent) -> bool:
    """Whether `event` is one My Portal may log: of its kind, its id a request id and one of its
    steps, neither holding a ':', so that the portal takes no platform event's id: one with a
    single ':' is of a request id holding none, and its step is the platform's, whatever request
    id a holder or holder name an oversight request picked (those may end in ':portal.<step>')."""
    _, step = event.event_id.split(":", 1)
    return event.kind == PORTAL_KIND and ":" not in step and step.startswith(PORTAL_STEP)


@dataclass(frozen=True, slots=True)
class AccessLogEvent:
    """Items ②–⑥ of the paper's access log and the outcome; the serial ① is the store's leaf index.

    `occurred_at` is kept in UTC at millisecond precision (what Avro timestamp-millis carries).
    """

    event_id: str
    request_id: str
    occurred_at: datetime
    kind: str
    outcome: str
    reason: str | None
    pattern_id: str | None
    legal_basis: str | None
    requester: str
    provider: str | None
    data_type: str | None
    person: str | None

    def __post_init__(self) -> None:
        if not self.event_id.startswith(self.request_id + ":"):
            raise ValueError(f"event id {self.event_id!r} is not {self.request_id!r} + ':' + step")
        if self.person is not None and not ID_CODE.fullmatch(self.person):
            raise ValueError("person must be an ID code: 11 characters 0-9A-Z")
        if self.occurred_at.tzinfo is not UTC or self.occurred_at.microsecond % 1000:
            object.__setattr__(self, "occurred_at", from_millis(millis(self.occurred_at)))


@dataclass(frozen=True, slots=True)
class OperatorAction:
    """An operator's change to the holder directory or the legal pattern list
    (OperatorAction.v1.avsc); no person in it."""

    action_id: str
    occurred_at: datetime
    operator: str
    action: str
    subject: str
    reason: str | None


ACTION_KINDS = ("SUSPEND", "RESUME", "REGISTER", "REKEY", "RENEW", "PUBLISH")  # OperatorAction.v1's
Logged = AccessLogEvent | OperatorAction  # a leaf of the audit tree, as the topic has it


def logged_key(record: Logged) -> tuple[str, str]:
    """What a leaf is logged once by: an event's id, an operator action's (apart)."""
    if isinstance(record, OperatorAction):
        return "action", record.action_id
    return "event", record.event_id


def decode_event(leaf: bytes) -> AccessLogEvent:
    """An entry's canonical bytes (Avro single-object encoding) back into its event."""
    return CODEC.decode(leaf, AccessLogEvent)


def signed_record(leaf: bytes) -> Logged | None:
    """The event or operator action a leaf's bytes hold; None if they hold neither."""
    try:
        return CODEC.decode(leaf, AccessLogEvent, OperatorAction)
    except ValueError:  # bytes edited: the codec's SchemaError, or an event's own checks (an
        return None  # error of the code is not taken for them: it surfaces)


def signed_event(leaf: bytes) -> AccessLogEvent | None:
    """The event an entry's canonical bytes hold; None if they hold none."""
    signed = signed_record(leaf)
    return signed if isinstance(signed, AccessLogEvent) else None
