"""Login tickets: the registry side's word, signed with its login key (Ed25519), that a card login
it checked itself (registry.portal) proved these resident codes, until an expiry (a portal
session's longest life after the login). My Portal keeps a resident's ticket in their session and
shows it with each request for a new number; the numbering authority acts only for a resident code
a live ticket names, and for one change per ticket (authority.store keeps which). So whoever takes
the portal over (its principal and sealing key) can have the number changed of no resident who has
not logged in, nor again that of one who has. Each ticket signs a nonce of its own: two logins of
one resident within a millisecond get two tickets, each good for its own change. Each ticket
signs the elapsed clock's reading at the login and the boot it counts from (renkei.clock's
mark): on that machine in that boot, its age is the time elapsed, whatever the wall clock's steps.

The login key (`keys/login-key.json`, mode 0600) is made by `renkei keys init`, with its public
half alone (`keys/login-key.pub.json`) beside it: the authority reads that, from a file
provisioning writes, as each service's own keys are: not from a topic, where a key put in its
place would be believed. Neither is in the platform's key store (processors.keys), which the
authority must not load.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from audit.events import millis
from audit.heads import Signer, verify_signature
from portal.sessions import LIFETIME
from renkei.clock import Age, Mark, log_refused_ahead
from renkei.questions import Declined
from renkei.refusals import TICKET_EXPIRED, TICKET_FROM_THE_FUTURE, TICKET_USED
from renkei.state import private_dir, read_json, write_json
from schemas.codec import CODEC, SchemaError
from schemas.messages import LoginTicket

CONTEXT = b"renkei login ticket v2\x00"  # a ticket without a mark (LoginTicket v2)
MARKED_CONTEXT = b"renkei login ticket v3\x00"
V1_CONTEXT = b"renkei login ticket v1\x00"  # a ticket without a nonce (LoginTicket v1)
NONCE_BYTES = 16
LASTS = LIFETIME  # a ticket outlives no portal session of the login that got it
# the refusals of a change of number, by reason (said to the portal: no personal data; those it
# words apart, renkei.refusals)
NO_TICKET, FORGED, NOT_THEIRS = "no-ticket", "ticket-forged", "ticket-not-theirs"
EXPIRED, USED, FROM_THE_FUTURE = TICKET_EXPIRED, TICKET_USED, TICKET_FROM_THE_FUTURE
REFUSED_BY_AGE = {Age.OLD: EXPIRED, Age.AHEAD: FROM_THE_FUTURE, Age.FORGED: FORGED}
log = logging.getLogger(__name__)


class NoLoginKey(LookupError):
    """The login key (or its public half) is not in the state folder."""


def key_path() -> Path:
    return private_dir("keys") / "login-key.json"


def public_key_path() -> Path:
    return private_dir("keys") / "login-key.pub.json"


def init() -> list[Path]:
    """Make the login key unless it exists, and its public half unless it is there already (one
    of another key, the login key made anew since, is written again: the authority would refuse
    every ticket as forged); the files made now."""
    made = [] if key_path().exists() else [key_path()]
    public = Signer.load_or_create(key_path()).public_key.public_bytes_raw().hex()
    if not _published(public):
        write_json(public_key_path(), {"algorithm": "Ed25519", "public_key": public})
        made.append(public_key_path())
    return made


def _published(public: str) -> bool:
    """Whether the login key's public half is the key `public` (hex)."""
    try:
        return bool(read_json(public_key_path())["public_key"] == public)
    except (OSError, ValueError, KeyError, TypeError):  # none yet, or damaged: written again
        return False


def signing_key() -> Signer:
    """The registry side's login key, which signs the tickets it gives My Portal."""
    return Signer.load(_made(key_path()))


def public_key() -> Ed25519PublicKey:
    """The login key's public half alone, for the numbering authority, which checks tickets."""
    return Signer.public(_made(public_key_path())).public_key


def _made(path: Path) -> Path:
    if not path.exists():
        raise NoLoginKey(f"no login key at {path}: run `renkei keys init`")
    return path


def signed_bytes(resident_codes: Sequence[str], expires_at: datetime, nonce: bytes | None,
                 mark: Mark | None = None) -> bytes:
    """What a ticket's signature is over: a context string, the nonce, the login's mark (its
    boot, then its elapsed reading in milliseconds, 8 bytes big-endian), the expiry (milliseconds,
    8 bytes big-endian), then each code; the nonce, boot and each code its length (2 bytes) first.
    A ticket without a mark (v2) or a nonce (v1, good for its hour still) has a context of its own
    and neither."""
    if mark is not None:
        start = MARKED_CONTEXT + _with_length(nonce or b"") + mark.packed()
    elif nonce is not None:
        start = CONTEXT + _with_length(nonce)
    else:
        start = V1_CONTEXT
    return (start + millis(expires_at).to_bytes(8, "big")
            + b"".join(_with_length(code.encode()) for code in resident_codes))


def _with_length(field: bytes) -> bytes:
    return len(field).to_bytes(2, "big") + field


def ticket(key: Signer, resident_codes: Sequence[str], now: datetime, mark: Mark | None = None
           ) -> bytes:
    """A ticket for the codes a login proved `now` (the elapsed clock's `mark` then), good for
    LASTS, with a nonce of its own."""
    expires_at, nonce = now + LASTS, secrets.token_bytes(NONCE_BYTES)
    signature = key.sign(signed_bytes(resident_codes, expires_at, nonce, mark))
    return CODEC.encode(LoginTicket(
        tuple(resident_codes), expires_at, signature, nonce,
        *((None, None) if mark is None else (mark.boot, mark.elapsed_ms))))


def issue_mark(found: LoginTicket) -> Mark | None:
    """The elapsed clock's mark of the ticket's login; None for a ticket without one."""
    if found.boot is None or found.elapsed_ms is None:
        return None
    return Mark(found.boot, found.elapsed_ms / 1000)


def expiry_mark(found: LoginTicket) -> Mark | None:
    """The elapsed clock's reading when the ticket expires, in its login's boot; None for a
    ticket without a mark."""
    issued = issue_mark(found)
    return None if issued is None else issued.after(LASTS)


def identity(found: LoginTicket) -> str:
    """A ticket's own name, for the authority to keep which change it was used for: the hash of
    what its signature is over (however its bytes are encoded, the same ticket's)."""
    return hashlib.sha256(signed_bytes(found.resident_codes, found.expires_at, found.nonce,
                                       issue_mark(found))).hexdigest()


def check(public_key: Ed25519PublicKey, shown: bytes, resident_code: str,
          judged: Callable[[datetime, Mark | None, timedelta], Age]) -> LoginTicket:
    """The ticket `shown`, if the login key signed it, it is live now and names `resident_code`;
    else Declined, by reason. `judged(issued, mark, LASTS)` is the ticket's age by the clock that
    read its issue: it is live for LASTS elapsed since, whatever the clock's steps, and not if
    issued later than now (renkei.clock; exactly, by its mark, in the boot it was issued in)."""
    if not shown:
        raise Declined(NO_TICKET)
    try:
        found = CODEC.decode(shown, LoginTicket)
    except SchemaError:
        raise Declined(FORGED) from None
    mark = issue_mark(found)
    try:  # a code, nonce or boot longer than 2 bytes tell, a mark or expiry before its origin
        # (a reading below 0, 1970): none signed
        signed = signed_bytes(found.resident_codes, found.expires_at, found.nonce, mark)
    except OverflowError:
        raise Declined(FORGED) from None
    if not verify_signature(public_key, signed, found.signature):
        raise Declined(FORGED)
    age = judged(found.expires_at - LASTS, mark, LASTS)
    log_refused_ahead(log, age, "a login ticket", "the registry side's")
    refused = REFUSED_BY_AGE.get(age)
    if refused is not None:
        raise Declined(refused)
    if resident_code not in found.resident_codes:
        raise Declined(NOT_THEIRS)
    return found
