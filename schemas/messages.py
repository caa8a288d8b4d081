"""The messages as small dataclasses, one per Avro record schema of the same name."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

# enum symbols, as the schemas spell them
FOUND, NOT_FOUND, REFUSED, TIMED_OUT = "FOUND", "NOT_FOUND", "REFUSED", "TIMED_OUT"
BY_ATTRIBUTES, BY_PERSONAL_NUMBER, BY_RESIDENT_CODE = (
    "ATTRIBUTES", "PERSONAL_NUMBER", "RESIDENT_CODE")


@dataclass(frozen=True, slots=True)
class Ping:
    request_id: str
    sent_at: datetime


@dataclass(frozen=True, slots=True)
class Pong:
    request_id: str
    sent_at: datetime
    answered_at: datetime


@dataclass(frozen=True, slots=True)
class PersonalNumber:
    personal_number: str


@dataclass(frozen=True, slots=True)
class ResidentCode:
    resident_code: str


@dataclass(frozen=True, slots=True)
class BindingRequest:
    request_id: str
    sent_at: datetime
    by: str
    sealed_query: bytes


@dataclass(frozen=True, slots=True)
class BindingCandidate:
    link_code: str
    sealed_attributes: bytes


@dataclass(frozen=True, slots=True)
class BindingAnswer:
    request_id: str
    status: str
    detail: str
    candidates: tuple[BindingCandidate, ...]
    epoch: int
    unit: str  # the link-code unit of the candidates' codes ("" from an answer before v3)


@dataclass(frozen=True, slots=True)
class LinkageRequest:
    request_id: str
    sent_at: datetime
    link_code: str
    pattern_id: str
    provider: str
    data_type: str


@dataclass(frozen=True, slots=True)
class RekeyRequest:
    request_id: str
    sent_at: datetime
    from_epoch: int
    link_codes: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class RekeyedCode:
    old: str
    new: str | None


@dataclass(frozen=True, slots=True)
class RekeyAnswer:
    request_id: str
    epoch: int
    codes: tuple[RekeyedCode, ...]
    unit: str  # the link-code unit answered under ("" from an answer before v2)


@dataclass(frozen=True, slots=True)
class ProviderQuery:
    request_id: str
    ticket: bytes
    link_code: str
    requester: str
    pattern_id: str
    data_type: str
    deadline: datetime
    previous_link_code: str | None = None


@dataclass(frozen=True, slots=True)
class ProviderAnswer:
    request_id: str
    ticket: bytes
    link_code: str
    status: str
    sealed_payload: bytes


@dataclass(frozen=True, slots=True)
class LinkageAnswer:
    request_id: str
    link_code: str
    provider: str
    pattern_id: str
    data_type: str
    status: str
    sealed_payload: bytes


@dataclass(frozen=True, slots=True)
class Payload:
    data_type: str
    fields: dict[str, str]


@dataclass(frozen=True, slots=True)
class Rejection:
    request_id: str
    reason: str
    detail: str
    rejected_at: datetime
    deadline: datetime | None = None  # a refused answer's ticket's (None: Rejection.v2.avsc)


@dataclass(frozen=True, slots=True)
class RegistryQuery:
    request_id: str
    requester: str
    private: bool
    by: str
    sealed_query: bytes
    source: str = ""  # the holder message it came from ("" from v1)
    requested_at: datetime | None = None  # the binding request's broker time (None before v3)


@dataclass(frozen=True, slots=True)
class RegistryCandidate:
    sealed_resident_code: bytes
    sealed_attributes: bytes


@dataclass(frozen=True, slots=True)
class RegistryAnswer:
    request_id: str
    requester: str
    status: str
    detail: str
    candidates: tuple[RegistryCandidate, ...]
    source: str = ""  # the holder message its look-up came from ("" from v1)
    requested_at: datetime | None = None  # its binding request's broker time (None before v3)
    answered_at: datetime | None = None  # its broker time, stamped by the platform (None before v4)


@dataclass(frozen=True, slots=True)
class NumberLookup:
    request_id: str
    requester: str
    private: bool
    sealed_query: bytes
    source: str = ""  # the holder message it came from ("" from v1)
    requested_at: datetime | None = None  # the binding request's broker time (None before v3)


@dataclass(frozen=True, slots=True)
class PortalQuery:
    request_id: str
    deadline: datetime
    sealed_query: bytes
    reply_key: bytes | None = None


@dataclass(frozen=True, slots=True)
class PortalAnswer:
    request_id: str
    status: str
    detail: str
    sealed_answer: bytes


@dataclass(frozen=True, slots=True)
class ChangeOfNumber:
    resident_code: str
    reason: str
    change_id: str = ""
    ticket: bytes = b""


@dataclass(frozen=True, slots=True)
class CardLogin:
    certificate: str
    origin: str
    nonce: bytes
    signature: bytes


@dataclass(frozen=True, slots=True)
class CardHolder:
    name: str
    resident_codes: tuple[str, ...]
    first_code: str
    id_codes: tuple[str, ...] = ()
    ticket: bytes = b""


@dataclass(frozen=True, slots=True)
class LoginTicket:
    resident_codes: tuple[str, ...]
    expires_at: datetime
    signature: bytes
    nonce: bytes | None = None
    boot: str | None = None
    elapsed_ms: int | None = None


@dataclass(frozen=True, slots=True)
class Suspension:
    """One of a holder's suspensions, ended: since its suspension until the resumption that
    ended it, by the broker's times."""

    since: datetime
    until: datetime


@dataclass(frozen=True, slots=True)
class HolderEntry:
    holder_id: str
    name: str
    role: str
    link_unit: str
    key_epoch: int
    public_key: bytes
    private: bool
    active: bool
    updated_at: datetime
    signing_key: bytes | None = None  # Ed25519, its answer sessions' (None from v1: unsigned)
    inactive_since: datetime | None = None  # broker time it was made inactive (None: its
    # inactive record's, as every reader takes it, renkei.compacted.dated; on a resumed entry,
    # when the suspension resumed_at ended began)
    resumed_at: datetime | None = None  # v5: broker time it was resumed (None on its resumed
    # record, its record's, as every reader takes it, renkei.compacted.dated)
    action_id: str | None = None  # the operator action this record was written for (v4)
    action: str | None = None
    sealed_action: bytes | None = None  # its operator and reason, sealed to the platform's key
    suspensions: tuple[Suspension, ...] = ()  # v6: those ended before inactive_since's, oldest
    # first, kept while a message from within one can still be read (directory.SUSPENSIONS_KEPT)
    rekeyed_at: datetime | None = None  # v7: when its unit was last re-keyed (None: before v7,
    # or never: updated_at taken), carried by each command since, the re-keying grace's start
    previous_signing_key: bytes | None = None  # v8: its signing key until its last renewal,
    # taken for sessions signed by then and read within the grace (renkei.windows.SIGNING_GRACE)
    signing_renewed_at: datetime | None = None  # v8: when that renewal was (None: never since)


@dataclass(frozen=True, slots=True)
class LegalPattern:
    pattern_id: str
    version: int
    legal_basis: str
    purpose: str
    requester_role: str
    provider_role: str
    data_types: tuple[str, ...]
    valid_from: datetime
    valid_to: datetime | None
    annex_item: str | None = None


@dataclass(frozen=True, slots=True)
class Ticket:
    request_id: str
    requester: str
    provider: str
    pattern_id: str
    data_type: str
    id_code: str
    link_a: str
    link_b: str
    deadline: datetime


PENDING, ANSWERED = "PENDING", "ANSWERED"


@dataclass(frozen=True, slots=True)
class Pending:
    request_id: str
    source: str
    requester: str
    provider: str
    pattern_id: str
    legal_basis: str
    data_type: str
    person: str
    deadline: datetime
    query: bytes
    digest: int  # of its holder's message: the same for a copy sent again (0 from a v1 event)
    kind: str = "LINKAGE"  # or BINDING: a look-up for the registry or the authority (v3)


@dataclass(frozen=True, slots=True)
class Outcome:
    request_id: str
    source: str
    answer: bytes
    deadline: datetime | None = None  # its ticket's (None from v1)
    ended: bytes | None = None  # its request's TIMED_OUT access-log event: relayed to no one
    answered_at: datetime | None = None  # the answer's broker time (None before v4)
    told: bytes | None = None  # the Rejection telling its suspended requester: relayed to no one
    refused: str | None = None  # v6: why its provider, inactive as of answered_at, is refused


@dataclass(frozen=True, slots=True)
class Refusal:
    request_id: str
    source: str
    requester: str
    deadline: datetime  # its Pending's, had it been approved: it is forgotten as that would be
    digest: int  # of its holder's message, as its Pending's
    rejection: bytes  # the encoded Rejection to its requester (or a re-keying's RekeyAnswer)
    logged: bytes  # the encoded access-log event of its refusal


@dataclass(frozen=True, slots=True)
class Sweep:
    at: datetime
    expire: tuple[str, ...]
    forget: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class RequestState:
    request_id: str
    status: str
    source: str
    # pending: the reason an answer was refused to its provider, no active holder (Outcome.refused):
    # the request ends unanswered, a later answer refused too (decider.on_outcome)
    resolved_by: str | None
    deadline: datetime
    forget_at: datetime
    requester: str
    provider: str
    pattern_id: str
    legal_basis: str
    data_type: str
    person: str
    digest: int  # its Pending's (0 from a v1 event)
    kind: str = "LINKAGE"  # its Pending's


@dataclass(frozen=True, slots=True)
class HolderLogRequest:
    request_id: str
    sent_at: datetime
    holders: tuple[str, ...]
    request_ids: tuple[str, ...]
    legal_basis: str
    exchanged_at: tuple[datetime, ...] = ()  # v2: a resident's, when each exchange happened
    requesters: tuple[str, ...] = ()  # v3: a resident's, the requester of each exchange


@dataclass(frozen=True, slots=True)
class HolderLogEntry:
    request_id: str
    at: str
    side: str
    operator: str
    terminal: str
    counterpart: str | None
    pattern_id: str | None
    data_type: str | None
    content: str | None
    purpose: str | None
    outcome: str


@dataclass(frozen=True, slots=True)
class HolderLogEntries:
    entries: tuple[HolderLogEntry, ...]
    signed_at: datetime | None = None  # v2: when its holder signed them (None: unsigned)
    signature: bytes | None = None  # v2: the holder's, holder_logs.signed_bytes


@dataclass(frozen=True, slots=True)
class HolderLogAnswer:
    request_id: str
    holder: str
    answered_at: datetime
    entries: tuple[HolderLogEntry, ...]  # v1's plaintext: empty since v2
    sealed_entries: bytes | None = None
    too_large: bool = False  # v3: the entries would not fit in a message: none sent
    refused: str | None = None  # v4: the platform asks no such holder (said in its stead):
    # holder_logs.SUSPENDED or NOT_LISTED
    inactive_since: datetime | None = None  # v4: a SUSPENDED holder's, as the directory dates it
    signed_at: datetime | None = None  # v5: when its holder signed one with no entries sealed
    signature: bytes | None = None  # v5: the holder's, holder_logs.unsent_bytes


@dataclass(frozen=True, slots=True)
class Alert:
    alert_id: str
    rule: str
    requester: str
    person: str | None
    occurred_at: datetime
    event_id: str
    count: int
    detail: str


@dataclass(frozen=True, slots=True)
class Batch:
    messages: tuple[bytes, ...]
