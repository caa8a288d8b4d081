"""Issuing cards: the municipality's counter personalises a card; the CA certifies its key.

A resident's certificate names only the card (its serial), never the person or their personal
number, and neither does the label the card reader lists it by; J-LIS's table records whose card
it is. An officer's names the officer, their holder and their role: counter staff serve a
holder (a municipality), and the oversight role is the oversight body's, whose officers have no
other (its console sees every log entry; a counter's actions are logged as its holder's).
"""

from __future__ import annotations

from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from broker.acls import OVERSIGHT
from cards import ca, jlis
from cards.card import Card, check_pin
from cards.jlis import CardHolders
from registry.store import RegistryStore
from registry.store import default_path as registry_path

RESIDENT, OFFICER = "resident", "officer"
RESIDENT_LABEL = "マイナンバーカード"  # the reader's page is open to whoever reaches it: no name
OVERSIGHT_ROLE = "oversight"  # the oversight body's (its principal, acls.OVERSIGHT) alone
ROLES = ("counter", OVERSIGHT_ROLE)


def init() -> list[str]:
    """Both CAs, made if missing, each with a fresh CRL (a CRL is good for a day); their names.
    J-LIS's card table a state folder from before kept in registry/ is moved to its place."""
    jlis.default_path()
    authorities = [ca.Authority.create(name) for name in ca.AUTHORITIES]
    for authority in authorities:
        authority.publish_crl()
    return [authority.name for authority in authorities]


def _new(authority: ca.Authority, subject: ca.Subject | None, pin: str, kind: str,
         label: str, where: Path | None, serial: int | None = None) -> Card:
    check_pin(pin)
    key = ec.generate_private_key(ec.SECP256R1())
    serial = x509.random_serial_number() if serial is None else serial
    named = subject or ca.Subject(format(serial, "x"), "JPKI")
    return Card.write(key, authority.issue(key.public_key(), named, serial), pin, kind, label,
                      where)


def resident_card(resident_code: str, pin: str, where: Path | None = None) -> Card:
    """A resident's card; J-LIS records whose it is before the CA issues it: a crash between
    leaves a row for a serial no certificate has (nothing logs in with it; issuing again makes
    another), where the other order left a card issued whose logins were refused, unknown-card."""
    registry = RegistryStore.open(registry_path(made=False))  # none there: none made
    try:
        resident = registry.by_code(resident_code)
    finally:
        registry.close()
    if resident is None:
        raise LookupError("no resident has that code")
    authority, serial = ca.Authority.load(ca.JPKI), x509.random_serial_number()
    check_pin(pin)  # before the row, as the CA: one refused leaves none
    holders = CardHolders()
    try:
        holders.record(format(serial, "x"), resident_code)
    finally:
        holders.close()
    return _new(authority, None, pin, RESIDENT, RESIDENT_LABEL, where, serial)


def officer_card(staff_id: str, holder: str, role: str, pin: str,
                 where: Path | None = None) -> Card:
    """A card for municipal counter staff or an oversight officer."""
    if role not in ROLES:
        raise ValueError(f"a role is one of {', '.join(ROLES)}")
    if (holder == OVERSIGHT) != (role == OVERSIGHT_ROLE):
        raise ValueError(f"the oversight body's officers ({OVERSIGHT}) have the {OVERSIGHT_ROLE} "
                         f"role, and none other does: not {role} for {holder}")
    subject = ca.Subject(staff_id, holder, role)
    return _new(ca.Authority.load(ca.OFFICERS), subject, pin, OFFICER, f"{staff_id} ({role})",
                where)


def _issuer(serial: str) -> ca.Authority | None:
    """The CA of this state folder that issued the certificate of that serial, if any."""
    for name in ca.AUTHORITIES:
        authority = ca.Authority.load(name)
        if authority.issued(serial):
            return authority
    return None


def revoke(serial: str) -> str:
    """Revoke a card's certificate with whichever CA issued it; that CA's name."""
    authority = _issuer(serial)
    if authority is None:
        raise LookupError("no card with that serial was issued here")
    authority.revoke(int(serial, 16))
    return authority.name


def revoked(serial: str) -> bool:
    """Whether the CA that issued the certificate of that serial has revoked it."""
    authority = _issuer(serial)
    return authority is not None and authority.revoked(serial)
