"""Whom a holder's signed bytes (its answer sessions, its answers to log requests) are to be
signed by, as its directory entry says: its signing key, and shortly after its keys were renewed
its key before too (renkei.windows.SIGNING_GRACE)."""

from __future__ import annotations

from datetime import datetime

from renkei import sealing
from renkei.windows import CLOCK_SKEW, SIGNING_GRACE
from schemas.messages import HolderEntry


def signed_by(holder: str, signing_key: bytes, entry: HolderEntry, relayed: datetime
              ) -> sealing.SignedBy:
    """Whom what `holder` signed, `relayed` then (its record's append time on the reader's
    topic), is to be signed by: its signing key, and within SIGNING_GRACE of its last renewal
    its key before too, for what it dated by then (a clock skew beside)."""
    renewed = entry.signing_renewed_at
    if entry.previous_signing_key and renewed is not None and relayed - renewed <= SIGNING_GRACE:
        return sealing.SignedBy(holder, signing_key, entry.previous_signing_key,
                                previous_until(renewed))
    return sealing.SignedBy(holder, signing_key)


def previous_until(renewed: datetime) -> datetime:
    """The latest a holder's signature with its signing key before a renewal at `renewed` is
    taken as dated: the holder's clock, which dates it, may be a clock skew ahead of the
    operator's, which dated the renewal; one dated later is refused, however soon relayed."""
    return renewed + CLOCK_SKEW


def of_holder(holder: str, entry: HolderEntry | None, relayed: datetime
              ) -> sealing.SignedBy | None:
    """`signed_by` for a holder whose directory `entry` publishes a signing key; None for one
    whose entry has none (registered before signing, not since) or that has no entry: what it
    sends is unsigned, and its reader cannot tell it from what the platform could make."""
    if entry is None or not entry.signing_key:
        return None
    return signed_by(holder, entry.signing_key, entry, relayed)
