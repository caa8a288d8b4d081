"""Sealed bytes (HPKE, RFC 9180): only the holder of the private key reads them, and only under
the request id they were sealed for, so a ciphertext cannot be replayed under another request.

A binding's few messages are sealed one by one (the request id is the HPKE info). A provider's
answers, thousands a second, are sealed in sessions: per requester, a fresh AES key sealed by
HPKE once a minute, then AES-GCM per answer with the request id as associated data — the
X25519 work of a single seal and open (about 120 µs here) once a minute instead of per answer.
HPKE's base mode tells the requester nothing of who sealed (anyone with its public key can, the
platform relaying the answers too), so a provider whose directory entry publishes a signing key
signs each session's header — the sealed session key, the requester, the provider, when — with
its Ed25519 key, and the requester opens a session of that provider only if the signature
verifies against its entry: once a session, nothing per answer. A provider whose entry has no
signing key (a holder not registered again since) seals unsigned sessions as before. A signed
session dated later than its requester reads it (a clock skew beside) is refused; one signed with
the provider's key before its renewal is taken if dated by the renewal and read shortly after.

What is sealed is padded first (ISO/IEC 7816-4: 0x80, then zeros), so a sealed length does not
tell how long the data inside is (an income's digits, a name's or an address's characters): to
SMALLEST bytes, which every answer, four-attribute query and registry candidate fits, the
longest realistic names and addresses included; above it (holder logs) to Padmé's few sizes, at
most 12% more. A padded seal is marked in what it is bound to (HPKE info, AES-GCM associated
data: PADDED and the request id), so bytes sealed unpadded before (up to 3 days on a topic, or
kept unsent in a holder's store) still open, by their own rule, and a seal made now never opens
as one of those.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import lru_cache, partial
from pathlib import Path
from typing import TypeVar

from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.hpke import AEAD, KDF, KEM, Suite

from renkei.state import private_dir, read_json, read_or, write_json

SUITE = Suite(KEM.X25519, KDF.HKDF_SHA256, AEAD.AES_128_GCM)
SESSION_INFO = b"renkei answer session"
WRAPPED = 32 + 16 + 16  # a session key sealed: X25519 encapsulation, AES-128 key, tag
NONCE = 12
SIGNED_SESSION = b"renkei signed answer session\x00"  # what a session's signature is over
ISSUED = 8  # a signed session's time of making, in milliseconds since the epoch
SIGNATURE = 64  # Ed25519
SIGNED = WRAPPED + ISSUED + SIGNATURE  # a signed session's header
PADDED = b"renkei padded\x00"  # before the request id: the plaintext is padded
SMALLEST = 512  # padded bytes: four attributes of a 30-character name, an 80-character address
PAD_MARK = 0x80


class CannotOpen(ValueError):
    """Sealed bytes that are not for this key, or not for this request, or were altered."""


class BadSealingKey(ValueError):
    """An owner's sealing (or signing) key file that cannot be read, or whose key is not the one
    the holder directory has of it (nothing sealed to it could be opened, nothing it signed
    verified)."""


def public_bytes(key: X25519PrivateKey | Ed25519PrivateKey) -> bytes:
    return key.public_key().public_bytes_raw()


def padded_size(length: int) -> int:
    """The size `length` bytes (0x80 included) are padded to: SMALLEST, or above it Padmé's
    (Nikitin et al., PETS 2019): the length's low bits cleared but for its top log₂ log₂ ones."""
    if length <= SMALLEST:
        return SMALLEST
    exponent = length.bit_length() - 1
    mask = (1 << (exponent - exponent.bit_length())) - 1
    return (length + mask) & ~mask


def padded(plaintext: bytes) -> bytes:
    """`plaintext`, 0x80, then zeros up to its padded size."""
    return plaintext + bytes([PAD_MARK]) + bytes(padded_size(len(plaintext) + 1)
                                                 - len(plaintext) - 1)


def unpadded(opened: bytes) -> bytes:
    """The plaintext that `padded` gave `opened` (ValueError: bytes it does not give)."""
    mark = opened.rfind(PAD_MARK)
    if mark < 0 or padded_size(mark + 1) != len(opened) or opened[mark + 1:] != bytes(
            len(opened) - mark - 1):
        raise ValueError("the sealed bytes are not padded right")
    return opened[:mark]


def seal(public_key: bytes, plaintext: bytes, request_id: str) -> bytes:
    return SUITE.encrypt(padded(plaintext), _recipient(public_key),
                         info=PADDED + request_id.encode())


def can_seal_to(public_key: bytes) -> bool:
    """Whether `seal` seals to `public_key`, tried on nothing: not to bytes that are no X25519
    public key, nor to a low-order point (all zeros, say), with which the key exchange fails."""
    try:
        seal(public_key, b"", "")
    except ValueError:
        return False
    return True


@lru_cache(maxsize=1024)
def _recipient(public_key: bytes) -> X25519PublicKey:
    """A directory key, loaded once (the directory holds a few thousand at most)."""
    return X25519PublicKey.from_public_bytes(public_key)


NOT_OPENED = (InvalidTag, ValueError)  # a wrong key or request id, altered or cut bytes


def open_sealed(key: X25519PrivateKey, sealed: bytes, request_id: str) -> bytes:
    return _opened(lambda bound: SUITE.decrypt(sealed, key, info=bound), request_id)


def _opened(decrypt: Callable[[bytes], bytes], request_id: str) -> bytes:
    """The plaintext `decrypt` gives under the bytes it was sealed to be bound to: padded now
    (PADDED and the request id), or unpadded before padding was (the request id alone)."""
    bound = request_id.encode()
    try:
        try:
            return unpadded(decrypt(PADDED + bound))
        except InvalidTag:
            return decrypt(bound)
    except NOT_OPENED as exc:
        raise _cannot_open(request_id) from exc


def _cannot_open(request_id: str) -> CannotOpen:
    return CannotOpen(f"sealed bytes of request {request_id} cannot be opened")


@dataclass(slots=True)
class _Session:
    header: bytes
    aead: AESGCM
    until: float
    left: int


class SignedPast(RuntimeError):
    """A signature a Signer would date past its `until`: its readers would refuse it."""

    def __init__(self, holder: str, until: datetime) -> None:
        super().__init__(f"{holder} signs with a key its readers take only in what it dated by "
                         f"{until.isoformat()}: nothing signed")


def dated_past(issued_ms: int, until: datetime) -> bool:
    """Whether a signature dated `issued_ms` (milliseconds since the epoch) is dated past
    `until`, as its readers compare them."""
    return issued_ms > until.timestamp() * 1000


@dataclass(frozen=True, slots=True)
class Signer:
    """A provider and its signing key, which signs each session it makes; with `until`, a key
    renewed away (signers.previous_until), its readers refusing what it dates later."""

    holder: str
    key: Ed25519PrivateKey = field(repr=False)
    until: datetime | None = None

    def sign(self, signed: bytes, issued_ms: int) -> bytes:
        """The signature of `signed`, dated `issued_ms`; SignedPast if that is past `until`."""
        if self.until is not None and dated_past(issued_ms, self.until):
            raise SignedPast(self.holder, self.until)
        return self.key.sign(signed)


@dataclass(frozen=True, slots=True)
class SignedBy:
    """The provider a session is to be signed by, and its signing key in the directory; and,
    shortly after its keys were renewed, its signing key before, which a session it says it
    issued by `previous_until` may be signed with (an answer signed just before the renewal)."""

    holder: str
    public_key: bytes
    previous_key: bytes | None = None
    previous_until: datetime | None = None


def session_signed_bytes(wrapped: bytes, issued: bytes, requester: str, provider: str) -> bytes:
    """What a session's signature is over: the sealed session key, when it was made, and who
    it is from and to (each name led by its length: no two pairs give the same bytes)."""
    return SIGNED_SESSION + issued + wrapped + named(requester, provider)


def named(*names: str) -> bytes:
    """`names` as signed bytes, each led by its length: no two lists give the same bytes."""
    return b"".join(len(name).to_bytes(2, "big") + name for name in map(str.encode, names))


class SessionSealer:
    """Seals answers to requesters: session header ‖ nonce ‖ AES-GCM(answer, request id); the
    header is the wrapped session key, and with a `signer` when it was made and its signature.

    A requester's session key is replaced after `seconds` or `messages`, whichever comes first
    (random 96-bit nonces stay far below AES-GCM's limit of 2³² per key)."""

    def __init__(self, seconds: float = 60.0, messages: int = 10_000,
                 signer: Signer | None = None) -> None:
        self.seconds = seconds
        self.messages = messages
        self.signer = signer
        self._sessions: dict[tuple[str, bytes], _Session] = {}

    def seal(self, public_key: bytes, plaintext: bytes, request_id: str,
             requester: str = "") -> bytes:
        now = time.monotonic()
        session = self._sessions.get((requester, public_key))
        if session is None or session.left <= 0 or now >= session.until:
            key = AESGCM.generate_key(bit_length=128)
            session = self._sessions[requester, public_key] = _Session(
                self._header(SUITE.encrypt(key, _recipient(public_key), info=SESSION_INFO),
                             requester), AESGCM(key), now + self.seconds, self.messages)
        session.left -= 1
        nonce = os.urandom(NONCE)
        return session.header + nonce + session.aead.encrypt(nonce, padded(plaintext),
                                                             PADDED + request_id.encode())

    def _header(self, wrapped: bytes, requester: str) -> bytes:
        if self.signer is None:
            return wrapped
        issued_ms = int(time.time() * 1000)
        issued = issued_ms.to_bytes(ISSUED, "big")
        return wrapped + issued + self.signer.sign(
            session_signed_bytes(wrapped, issued, requester, self.signer.holder), issued_ms)


class SessionOpener:
    """Opens what a `SessionSealer` sealed to this key (`holder`'s); each session key is
    unwrapped, and its signature checked, once."""

    def __init__(self, key: X25519PrivateKey, remembered: int = 1024, holder: str = "",
                 previous: Sequence[X25519PrivateKey] = ()) -> None:
        self.key = key
        self.holder = holder
        self.previous = tuple(previous)  # keys renewed, kept while answers to them may come
        self._aead = lru_cache(maxsize=remembered)(self._unwrap)  # a failed unwrap is not kept

    def open(self, sealed: bytes, request_id: str, signed_by: SignedBy | None = None,
             latest_issue: datetime | None = None) -> bytes:
        """The answer, from a session signed by `signed_by` if given, else an unsigned one; a
        signed session dated later than `latest_issue` (if given: the reader's time and the
        clock skew it allows) is refused, whoever signed it."""
        header = WRAPPED if signed_by is None else SIGNED
        if signed_by is not None and latest_issue is not None and int.from_bytes(
                sealed[WRAPPED:WRAPPED + ISSUED], "big") > latest_issue.timestamp() * 1000:
            raise CannotOpen(f"sealed bytes of request {request_id} are of a session dated "
                             f"later than {latest_issue.isoformat()}: from the future")
        try:
            aead = self._aead(sealed[:header], signed_by)
        except (*NOT_OPENED, InvalidSignature) as exc:
            raise _cannot_open(request_id) from exc
        return _opened(partial(aead.decrypt, sealed[header:header + NONCE],
                               sealed[header + NONCE:]), request_id)

    def _unwrap(self, header: bytes, signed_by: SignedBy | None) -> AESGCM:
        wrapped = header[:WRAPPED]
        if signed_by is not None:
            issued, signature = header[WRAPPED:WRAPPED + ISSUED], header[WRAPPED + ISSUED:]
            verified(signed_by, signature,
                      session_signed_bytes(wrapped, issued, self.holder, signed_by.holder),
                      int.from_bytes(issued, "big"))
        return AESGCM(opened_by((self.key, *self.previous),
                                lambda key: SUITE.decrypt(wrapped, key, info=SESSION_INFO)))


def verified(signed_by: SignedBy, signature: bytes, signed: bytes, issued_ms: int) -> None:
    """A signature (a session's, a holder's answer to a log request) checked against its
    holder's signing key, or (InvalidSignature with it) against its key before a renewal if it
    says it was made by then: signed with that key, it was made before the renewal; one dated
    later is refused, whoever holds the key renewed (leaked, say)."""
    try:
        Ed25519PublicKey.from_public_bytes(signed_by.public_key).verify(signature, signed)
    except InvalidSignature:
        if (signed_by.previous_key is None or signed_by.previous_until is None
                or dated_past(issued_ms, signed_by.previous_until)):
            raise
        Ed25519PublicKey.from_public_bytes(signed_by.previous_key).verify(signature, signed)


Opened = TypeVar("Opened")


def opened_by(keys: Sequence[X25519PrivateKey],
              decrypt: Callable[[X25519PrivateKey], Opened]) -> Opened:
    """What `decrypt` opens with the first of `keys` that opens it (the current key first, then
    those renewed but kept): the last one's failure raised if none does."""
    for key in keys[:-1]:
        try:
            return decrypt(key)
        except NOT_OPENED:
            continue
    return decrypt(keys[-1])


def open_sealed_by(keys: Sequence[X25519PrivateKey], sealed: bytes, request_id: str) -> bytes:
    """`open_sealed` with the first of `keys` that opens it (CannotOpen if none does)."""
    return opened_by(keys, lambda key: open_sealed(key, sealed, request_id))


SEALING, SIGNING = "sealing", "signing"
K = TypeVar("K", X25519PrivateKey, Ed25519PrivateKey)


def key_file(owner: str, kind: str = SEALING) -> Path:
    """Where `owner`'s sealing (or signing) key pair is kept."""
    return private_dir("keys", kind) / f"{owner}.json"


def key_of(owner: str) -> X25519PrivateKey:
    """The sealing key pair of `owner` (a holder, the registry, the authority), made on first use
    in the state folder; its public half goes into the holder directory."""
    return _kept(owner, SEALING, X25519PrivateKey.from_private_bytes, X25519PrivateKey.generate)


def signing_key_of(holder: str) -> Ed25519PrivateKey:
    """The key a holder signs its answer sessions with, made on first use in the state folder;
    its public half goes into the holder directory."""
    return _kept(holder, SIGNING, Ed25519PrivateKey.from_private_bytes,
                 Ed25519PrivateKey.generate)


def _kept(owner: str, kind: str, load: Callable[[bytes], K], make: Callable[[], K]) -> K:
    """`owner`'s key of this kind from its file, or made now and kept there."""
    if key_file(owner, kind).exists():
        return _read(owner, kind, load)
    return _written(owner, kind, make())


def _read(owner: str, kind: str, load: Callable[[bytes], K]) -> K:
    """`owner`'s key of this kind from its file; BadSealingKey, in one line, for a file damaged."""
    path = key_file(owner, kind)
    return read_or(lambda: load(bytes.fromhex(read_json(path)["private"])), lambda why:
                   BadSealingKey(f"the {kind} key of {owner} in {path} cannot be read "
                                 f"({why}): restore it from a backup"))


def keys_in_files(holder: str) -> tuple[X25519PrivateKey, Ed25519PrivateKey]:
    """The sealing and signing keys `holder`'s key files hold now, neither made if missing (a
    running server must not write a key no one published); BadSealingKey, in one line, for one
    missing, damaged or unreadable. Each file is written whole (write_json), never half."""
    try:
        return (_read(holder, SEALING, X25519PrivateKey.from_private_bytes),
                _read(holder, SIGNING, Ed25519PrivateKey.from_private_bytes))
    except OSError as exc:
        raise BadSealingKey(f"a key file of {holder} cannot be read ({exc.strerror}: "
                            f"{exc.filename})") from None


def _written(owner: str, kind: str, key: K) -> K:
    """`key`, kept now as `owner`'s key of this kind in its file."""
    write_json(key_file(owner, kind), {"private": key.private_bytes_raw().hex()}, private=True)
    return key


def previous_file(owner: str) -> Path:
    """Where `owner`'s renewed sealing keys are kept until answers sealed to them stop coming."""
    return private_dir("keys", SEALING) / f"{owner}.previous.json"


def previous_keys(owner: str, now: datetime | None = None) -> list[X25519PrivateKey]:
    """`owner`'s renewed sealing keys still kept (newest first): answers sealed to one before
    its renewal may still be in its inbox."""
    return [key for key, _ in _previous(owner, now or datetime.now(UTC))]


def _previous(owner: str, now: datetime) -> list[tuple[X25519PrivateKey, datetime]]:
    """`owner`'s renewed sealing keys still kept at `now` (newest first), each with the time it
    is kept until; BadSealingKey, in one line, for a file of them damaged."""
    path = previous_file(owner)
    if not path.exists():
        return []
    kept = read_or(lambda: [(X25519PrivateKey.from_private_bytes(bytes.fromhex(k["private"])),
                             datetime.fromisoformat(k["until"])) for k in read_json(path)["keys"]],
                   lambda why: BadSealingKey(f"the renewed sealing keys of {owner} in {path} "
                                             f"cannot be read ({why})"))
    return [(key, until) for key, until in kept if until > now]


def renew_keys(owner: str, kept_until: datetime) -> None:
    """New sealing and signing keys for `owner` in its key files, its sealing key until now kept
    (with those renewed before and kept still) until `kept_until`, the time answers sealed to it
    may still come; the signing key is not kept (nothing is signed with it any more)."""
    kept = [(key_of(owner), kept_until), *_previous(owner, datetime.now(UTC))]
    write_json(previous_file(owner), {"keys": [
        {"private": key.private_bytes_raw().hex(), "until": until.isoformat()}
        for key, until in kept]}, private=True)
    _written(owner, SEALING, X25519PrivateKey.generate())
    _written(owner, SIGNING, Ed25519PrivateKey.generate())
