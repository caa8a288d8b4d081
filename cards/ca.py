"""A certificate authority of the project's own (test only), and its revocation list.

Two exist: `jpki` issues residents' user-authentication certificates (利用者証明用電子証明書), as
J-LIS does; `officers` issues municipal staff and oversight officers theirs, as LGPKI does for
local government staff. Keys are ECDSA P-256 with SHA-256 (JPKI's cards use RSA-2048; P-256 gives
more security per bit, signs fast on a simulated card, and the chain and CRL checks are the same
for either). The CA key stays in the git-ignored state folder and is never printed.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from renkei.state import (
    folder_locked,
    private_dir,
    read_json,
    write_json,
    write_private,
    write_public,
)

JPKI, OFFICERS = "jpki", "officers"
AUTHORITIES = {JPKI: "Renkei Test JPKI User Authentication CA",
               OFFICERS: "Renkei Test Officer CA (LGPKI)"}
CA_YEARS, CARD_YEARS = 10, 5
CRL_DAYS = 1
# how far back a certificate's validity and a CRL's thisUpdate start: a verifier whose clock is
# behind the CA's by less takes them (by more: not-yet-valid, crl-not-yet-valid)
BACKDATED = timedelta(minutes=5)
ROLE_OID = NameOID.TITLE  # an officer's role (counter, oversight) in the subject


class NoAuthority(FileNotFoundError):
    """The CA is not made yet: run `renkei card init`."""


def folder(name: str, made: bool = True) -> Path:
    """The CA's key and its records of what it issued and revoked; made if missing, unless not
    `made` (private_dir)."""
    return private_dir("cards", "ca", name, made=made)


def trusted(name: str) -> Path:
    """What verifiers read of the CA, apart from its key (compose.yaml mounts this alone into
    My Portal): cards/trust/<name>."""
    return private_dir("cards", "trust", name)


def certificate_path(name: str) -> Path:
    """The CA's certificate (public: what verifiers trust)."""
    return trusted(name) / "ca.pem"


def crl_path(name: str) -> Path:
    """The CA's current revocation list (public: what verifiers check)."""
    return trusted(name) / "crl.pem"


def _now() -> datetime:
    return datetime.now(UTC)


def _records_locked(name: str) -> AbstractContextManager[None]:
    """The CA's folder locked (flock, which a read-only mount allows) while the CA is made, its
    records (the serials it issued, those it revoked) are read and rewritten, or a CRL of them is
    signed and published: of two processes at once (two `card init`, two `card issue`, a
    revocation and `card crl --every`'s scheduled list), neither loses what the other wrote."""
    return folder_locked(folder(name))


@dataclass(frozen=True)
class Subject:
    """Who a certificate is for. A resident's names only the card; an officer's, the person."""

    common_name: str
    organization: str
    role: str | None = None

    def name(self) -> x509.Name:
        parts = [x509.NameAttribute(NameOID.COUNTRY_NAME, "JP"),
                 x509.NameAttribute(NameOID.ORGANIZATION_NAME, self.organization),
                 x509.NameAttribute(NameOID.COMMON_NAME, self.common_name)]
        if self.role is not None:
            parts.append(x509.NameAttribute(ROLE_OID, self.role))
        return x509.Name(parts)


class Authority:
    def __init__(self, name: str, key: ec.EllipticCurvePrivateKey,
                 certificate: x509.Certificate) -> None:
        self.name = name
        self._key = key
        self.certificate = certificate

    def __repr__(self) -> str:
        return f"Authority({self.name!r})"

    @classmethod
    def create(cls, name: str) -> Authority:
        """Make the CA (key and self-signed certificate) if missing; load it otherwise."""
        with _records_locked(name):
            if (folder(name) / "key.pem").exists():
                return cls.load(name)
            return cls._made(name)

    @classmethod
    def _made(cls, name: str) -> Authority:
        """The CA made anew (key, certificate, a CRL of none), its folder's lock held."""
        key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COUNTRY_NAME, "JP"),
                             x509.NameAttribute(NameOID.COMMON_NAME, AUTHORITIES[name])])
        now = _now()
        cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
                .public_key(key.public_key()).serial_number(x509.random_serial_number())
                .not_valid_before(now - BACKDATED)
                .not_valid_after(now + timedelta(days=365 * CA_YEARS))
                .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
                .add_extension(x509.KeyUsage(False, False, False, False, False, True, True,
                                             False, False), critical=True)
                .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                               critical=False)
                .sign(key, hashes.SHA256()))
        # the certificate first: a key there is a CA that `load` (not locked: `card issue`
        # while `card init` makes it) finds whole
        write_public(certificate_path(name), cert.public_bytes(serialization.Encoding.PEM).decode())
        write_private(folder(name) / "key.pem", key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption()).decode())
        authority = cls(name, key, cert)
        authority._published_crl()
        return authority

    @classmethod
    def load(cls, name: str) -> Authority:
        """The CA made in this state folder, or NoAuthority, nothing made: a command that needs
        one and fails for its lack (`card revoke`, `card crl`) leaves no folder of it."""
        path = folder(name, made=False) / "key.pem"
        if not path.exists():
            raise NoAuthority(f"no {name} CA: run `renkei card init`")
        key = serialization.load_pem_private_key(path.read_bytes(), None)
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise TypeError(f"the {name} CA key is not an EC key")
        if not certificate_path(name).exists():  # made when it was kept beside the key
            write_public(certificate_path(name), (folder(name) / "ca.pem").read_text())
        return cls(name, key, x509.load_pem_x509_certificate(
            certificate_path(name).read_bytes()))

    def issue(self, public_key: ec.EllipticCurvePublicKey, subject: Subject,
              serial: int) -> x509.Certificate:
        """A user-authentication certificate: digital signature, TLS client auth, no CA."""
        now = _now()
        issuer_key = self.certificate.public_key()
        assert isinstance(issuer_key, ec.EllipticCurvePublicKey)
        cert = (x509.CertificateBuilder().subject_name(subject.name())
                .issuer_name(self.certificate.subject).public_key(public_key)
                .serial_number(serial)
                .not_valid_before(now - BACKDATED)
                .not_valid_after(now + timedelta(days=365 * CARD_YEARS))
                .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                .add_extension(x509.KeyUsage(True, False, False, False, False, False, False,
                                             False, False), critical=True)
                .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]),
                               critical=False)
                .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key),
                               critical=False)
                .sign(self._key, hashes.SHA256()))
        with _records_locked(self.name):
            issued = self._issued()
            issued[format(serial, "x")] = subject.common_name
            write_json(folder(self.name) / "issued.json", issued, private=True)
        return cert

    def _issued(self) -> dict[str, str]:
        path = folder(self.name) / "issued.json"
        return dict(read_json(path)) if path.exists() else {}

    def issued(self, serial: str) -> bool:
        """Did this CA issue the certificate with this serial (hex)?"""
        return serial in self._issued()

    def revoke(self, serial: int) -> x509.CertificateRevocationList:
        """Put a certificate on the list (again is fine) and publish a new CRL."""
        with _records_locked(self.name):
            revoked = self._revoked()
            revoked.setdefault(format(serial, "x"), _now().isoformat())
            write_json(folder(self.name) / "revoked.json", revoked, private=True)
            return self._published_crl()

    def revoked(self, serial: str) -> bool:
        """Whether this CA has revoked the certificate of that serial (hex)."""
        return serial in self._revoked()

    def _revoked(self) -> dict[str, str]:
        path = folder(self.name) / "revoked.json"
        return dict(read_json(path)) if path.exists() else {}

    def publish_crl(self) -> x509.CertificateRevocationList:
        """Sign a fresh CRL of every revoked serial, valid for a day, where verifiers read it
        (whole: a verifier never reads half a list)."""
        with _records_locked(self.name):
            return self._published_crl()

    def _published_crl(self) -> x509.CertificateRevocationList:
        now = _now()
        builder = (x509.CertificateRevocationListBuilder()
                   .issuer_name(self.certificate.subject)
                   .last_update(now - BACKDATED)
                   .next_update(now + timedelta(days=CRL_DAYS)))
        for serial, at in self._revoked().items():
            builder = builder.add_revoked_certificate(
                x509.RevokedCertificateBuilder().serial_number(int(serial, 16))
                .revocation_date(datetime.fromisoformat(at)).build())
        crl = builder.sign(self._key, hashes.SHA256())
        write_public(crl_path(self.name), crl.public_bytes(serialization.Encoding.PEM).decode())
        return crl
