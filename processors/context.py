"""What the platform's handlers read: the directory, the pattern list, the codes and keys."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from processors.approval import PatternList, not_active_reason
from processors.codes import CodeService, UnitEpoch
from processors.decision_sealing import DecisionSealer
from processors.keys import MasterKeys
from processors.tickets import TicketSealer
from renkei.suspensions import active_at
from renkei.windows import ANSWER_TIMEOUT, CLOCK_SKEW, REPLAY_WINDOW
from schemas.messages import HolderEntry

REKEY_GRACE = timedelta(hours=24)  # after a re-keying, queries carry the previous code too


@dataclass
class Context:
    codes: CodeService
    tickets: TicketSealer
    sealing_key: X25519PrivateKey = field(repr=False)
    digest_key: bytes = field(repr=False)  # of holder messages' and binding events' digests
    decisions: DecisionSealer  # the decisions topic's records, sealed at rest
    directory: dict[str, HolderEntry] = field(default_factory=dict)
    patterns: PatternList = field(default_factory=lambda: PatternList(()))
    answer_timeout: timedelta = ANSWER_TIMEOUT
    replay_window: timedelta = REPLAY_WINDOW
    clock_skew: timedelta = CLOCK_SKEW
    rekey_grace: timedelta = REKEY_GRACE

    @classmethod
    def of(cls, master: MasterKeys) -> Context:
        """The context of the platform's master keys: its codes, tickets, sealing, digest and
        decisions keys all derived from them; no directory nor patterns yet."""
        return cls(CodeService(master), TicketSealer(master.ticket_key()), master.sealing_key(),
                   master.digest_key(), DecisionSealer(master.decisions_key()))

    def fresh(self, sent_at: datetime, received: datetime) -> bool:
        """Sent at most the replay window before it was received, and not from the future
        beyond the clock skew tolerated: a copy replayed later is stale."""
        return received - self.replay_window <= sent_at <= received + self.clock_skew

    def stale_from(self, received: datetime) -> datetime:
        """When any copy of a request first received then would be refused as stale."""
        return received + self.replay_window + self.clock_skew

    def remembered_from(self, last_event: datetime | None, now: datetime) -> datetime:
        """The earliest time a request can have come that a decision partition's state still
        holds, as of its last event handled (None: none): pending until its deadline, settled
        until any copy is stale; a clock skew's margin on each side."""
        latest = now if last_event is None else min(last_event, now)
        return latest - self.answer_timeout - self.replay_window - 2 * self.clock_skew

    def active(self, holder: str, at: datetime | None = None) -> bool:
        """In the directory and active there as of `at`, the broker's time of what is judged
        (None: now; suspensions.active_at): a holder taken out is neither answered nor answers."""
        entry = self.directory.get(holder)
        return entry is not None and active_at(entry, at)

    def inactive_reason(self, holder: str, at: datetime | None = None) -> str | None:
        """Why `holder` is no active holder as of `at` (active): SUSPENDED, or UNKNOWN_HOLDER
        if the directory has no such holder; None: it is an active one."""
        return None if self.active(holder, at) else not_active_reason(self.directory.get(holder))

    def unit(self, holder: str) -> UnitEpoch:
        """The link-code unit and key epoch of a holder in the directory."""
        entry = self.directory[holder]
        return UnitEpoch(entry.link_unit, entry.key_epoch)

    def previous_unit(self, holder: str, at: datetime,
                      within: timedelta | None = None) -> UnitEpoch | None:
        """The holder's unit at its previous key epoch, if it was re-keyed `within` before `at`
        (None: the re-keying grace, its bindings may not all have moved yet), else None: timed
        from the re-keying, not from a later command's entry (a suspension, a renewal after a
        breach would reopen the previous epoch's link codes for the grace again); from the
        entry's time if it was written before the entry said (v7)."""
        entry = self.directory[holder]
        since = entry.rekeyed_at or entry.updated_at
        if entry.key_epoch == 0 or at - since > (self.rekey_grace if within is None else within):
            return None
        return UnitEpoch(entry.link_unit, entry.key_epoch - 1)
