"""Card login: the server's challenge, what the card signs, and the server's checks.

The card signs `CONTEXT ‖ origin ‖ 0x00 ‖ challenge`: the origin binds the signature to the site
that asked, so a signature made for one site is no use at another. The server checks the
signature with the certificate's key, the certificate against its CA (issuer, signature,
validity, key usage, client-auth purpose), and the CA's current CRL (signed by the CA, not
stale). It fails closed: any doubt is a refusal.

A challenge starts with the time it was issued at (8 bytes, milliseconds since the epoch, big
endian) before its random bytes: signed with them, it lets whoever checks the signature later
(the registry side, before it tells the ID codes of the card's holder) refuse an old one. After
them comes the elapsed clock's mark of its issue (renkei.clock: the boot's name, its length in 2
bytes first, then the elapsed reading, 8 bytes of milliseconds), where the issuer's boot is named:
on that machine in that boot its age is told exactly, whatever the wall clock's steps; the mark
tells the resident's browser and reader neither the boot_id nor when the machine booted.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from audit.events import from_millis, millis
from cards import ca
from renkei.clock import Mark

log = logging.getLogger(__name__)
CONTEXT = b"renkei card login v1\x00"
TIME_BYTES, RANDOM_BYTES = 8, 32
REVOKED = "revoked"
# a certificate whose validity begins later than the checker's clock tells now: issued by a CA
# whose clock is ahead of the checker's (by more than the 5 minutes it backdates them), no card's
# fault and not expired
NOT_YET_VALID = "not-yet-valid"
# the CA's own certificate, which cards are checked against, cannot be read where the check is
# made (its trust folder not there, or a copy damaged), or is past its own validity (the trust
# folder's copy not replaced by the CA's next): the checker's fault, no card's
NO_CA = "no-ca"
# a revocation list whose thisUpdate is later than the checker's clock tells now: the CA's clock
# ahead of the checker's (by more than the 5 minutes it backdates its lists), or a list not the
# CA's of now; until then it tells nothing
CRL_NOT_YET_VALID = "crl-not-yet-valid"
# the CRL cannot tell: no card's fault
UNCHECKABLE = frozenset({"stale-crl", "no-crl", "bad-crl", CRL_NOT_YET_VALID})
# the registry side's refusal of a challenge issued later than its clock tells now (by more than
# renkei.clock.AHEAD): the portal's clock is ahead of its, and every login's is refused alike
FROM_THE_FUTURE = "challenge-from-the-future"
# the registry side's refusal of a challenge marked in its own boot later than its elapsed clock
# reads (renkei.clock.Age.FORGED): a mark no process of its machine made, the portal's fault
FORGED_MARK = "challenge-mark-forged"


class Refused(PermissionError):
    """A login the server does not accept; `reason` is a short code for the page and the log."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def challenge(at: datetime | None = None, mark: Mark | None = None) -> bytes:
    """A fresh challenge issued `at` (now by default): its time, then random bytes, then the
    elapsed clock's `mark` then, if there is one."""
    issued = at or _now()
    return (millis(issued).to_bytes(TIME_BYTES, "big") + secrets.token_bytes(RANDOM_BYTES)
            + (b"" if mark is None else mark.packed()))


def issued_at(nonce: bytes) -> datetime | None:
    """When a challenge was issued (None: not a challenge of this form)."""
    if len(nonce) != TIME_BYTES + RANDOM_BYTES and issue_mark(nonce) is None:
        return None
    try:
        return from_millis(int.from_bytes(nonce[:TIME_BYTES], "big"))
    except OverflowError:  # past the calendar's end
        return None


def issue_mark(nonce: bytes) -> Mark | None:
    """The elapsed clock's mark of a challenge's issue, after its time and random bytes; None
    for one without (or not of this form)."""
    return Mark.unpacked(nonce[TIME_BYTES + RANDOM_BYTES:])


def message(origin: str, nonce: bytes) -> bytes:
    """The bytes the card signs."""
    return CONTEXT + origin.encode() + b"\x00" + nonce


@dataclass(frozen=True)
class Verified:
    """A certificate that passed: its serial (hex), CA, and subject fields."""

    authority: str
    serial: str
    common_name: str
    organization: str
    role: str | None


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class _Crl:
    """A CA's CRL as last read and checked: the file it was read from (inode, modification time,
    size), the serials it revokes, when it was issued, and when it goes stale."""

    file: tuple[int, int, int]
    revoked: frozenset[int]
    this_update: datetime
    next_update: datetime | None


class Verifier:
    """Checks card logins against the CAs' certificates and CRLs, and whether a card signed in
    with is revoked since; a CRL is read again whenever its file changes, not at every check."""

    def __init__(self, clock: Callable[[], datetime] = _now) -> None:
        self._clock = clock
        self._crls: dict[str, _Crl] = {}
        self._unchecked: dict[str, str] = {}  # each CA whose CRL cannot tell now, and why

    def verify(self, authority: str, certificate_pem: bytes, origin: str, nonce: bytes,
               signature: bytes) -> Verified:
        try:
            cert = x509.load_pem_x509_certificate(certificate_pem)
        except ValueError:
            raise Refused("unreadable-certificate") from None
        self._check_chain(cert, self._authority(authority))
        if (reason := self.revocation(authority, cert.serial_number)) is not None:
            raise Refused(reason)
        key = cert.public_key()
        if not isinstance(key, ec.EllipticCurvePublicKey):
            raise Refused("wrong-key-type")
        try:
            key.verify(signature, message(origin, nonce), ec.ECDSA(hashes.SHA256()))
        except InvalidSignature:
            raise Refused("bad-signature") from None
        return Verified(authority, format(cert.serial_number, "x"),
                        _attribute(cert, NameOID.COMMON_NAME) or "",
                        _attribute(cert, NameOID.ORGANIZATION_NAME) or "",
                        _attribute(cert, ca.ROLE_OID))

    def _authority(self, authority: str) -> x509.Certificate:
        """The CA's certificate, valid now: Refused NO_CA if it cannot be read or is past its
        validity, NOT_YET_VALID before it (the checker's clock behind the CA's)."""
        issuer = _authority_certificate(authority, NO_CA)
        self._valid_now(issuer, NO_CA)
        return issuer

    def _valid_now(self, cert: x509.Certificate, past: str) -> None:
        """Refused NOT_YET_VALID before the certificate's validity, `past` after it."""
        now = self._clock()
        if now < cert.not_valid_before_utc:
            raise Refused(NOT_YET_VALID)
        if now > cert.not_valid_after_utc:
            raise Refused(past)

    def _check_chain(self, cert: x509.Certificate, issuer: x509.Certificate) -> None:
        try:
            cert.verify_directly_issued_by(issuer)
        except (ValueError, TypeError, InvalidSignature):
            raise Refused("unknown-issuer") from None
        self._valid_now(cert, "expired")
        try:
            constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
            usage = cert.extensions.get_extension_for_class(x509.KeyUsage).value
            purposes = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        except x509.ExtensionNotFound:
            raise Refused("not-a-user-certificate") from None
        if constraints.ca or not usage.digital_signature or \
                ExtendedKeyUsageOID.CLIENT_AUTH not in purposes:
            raise Refused("not-a-user-certificate")

    def revocation(self, authority: str, serial: int) -> str | None:
        """Why the card of that serial may not sign in, or go on signed in, by its CA's CRL:
        None if it may; REVOKED; or, failing closed, why the CRL cannot tell (UNCHECKABLE: it
        cannot be read, is not the CA's, is stale, or was issued later than now), logged once
        when it starts and stops."""
        try:
            crl = self._crl(authority)
            now = self._clock()
            if crl.this_update > now:
                raise Refused(CRL_NOT_YET_VALID)
            if crl.next_update is None or crl.next_update < now:
                raise Refused("stale-crl")
        except Refused as exc:
            if self._unchecked.get(authority) != exc.reason:
                log.warning("the %s CA's revocation list cannot be checked (%s): its cards "
                            "are refused until it can", authority, exc.reason)
                self._unchecked[authority] = exc.reason
            return exc.reason
        if self._unchecked.pop(authority, None) is not None:  # a warning too: seen where they are
            log.warning("the %s CA's revocation list can be checked again", authority)
        return REVOKED if serial in crl.revoked else None

    def _crl(self, authority: str) -> _Crl:
        """The CA's current CRL, signature checked; read again only if its file changed."""
        path = ca.crl_path(authority)
        try:
            found = path.stat()
            file = (found.st_ino, found.st_mtime_ns, found.st_size)
            if (known := self._crls.get(authority)) is not None and known.file == file:
                return known
            crl = x509.load_pem_x509_crl(path.read_bytes())
        except (OSError, ValueError):
            raise Refused("no-crl") from None
        issuer = _authority_certificate(authority, "bad-crl")  # not checked against its CA
        issuer_key = issuer.public_key()
        assert isinstance(issuer_key, ec.EllipticCurvePublicKey)
        if crl.issuer != issuer.subject or not crl.is_signature_valid(issuer_key):
            raise Refused("bad-crl")
        read = _Crl(file, frozenset(r.serial_number for r in crl), crl.last_update_utc,
                    crl.next_update_utc)
        self._crls[authority] = read
        return read


def _authority_certificate(authority: str, refusal: str) -> x509.Certificate:
    """The CA's certificate from its trust folder; Refused(`refusal`) if it cannot be read."""
    try:
        return x509.load_pem_x509_certificate(ca.certificate_path(authority).read_bytes())
    except (OSError, ValueError):
        raise Refused(refusal) from None


def _attribute(cert: x509.Certificate, oid: x509.ObjectIdentifier) -> str | None:
    found = cert.subject.get_attributes_for_oid(oid)
    return str(found[0].value) if found else None
