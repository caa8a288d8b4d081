"""Re-keying a link-code unit: a holder's old link codes → ID codes → link codes of the new epoch.

The operator bumps a unit's key epoch in the holder directory (`renkei keys rekey UNIT`); from
then on the unit's codes of older epochs are refused, as under the new epoch's key they do not
decrypt to a resident code. Each holder of the unit submits its link codes of the epoch they are
of (`RekeyRequest`) and gets back, item by item, the new code (so its bindings survive) or none
if the old one is not valid (`RekeyAnswer`). A conversion is a pure function of the codes and
the keys; which epoch it is to, and whether the holder is active, are the directory's as a
platform instance has read it, so a request ends with its first judgement (the decider's).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from audit.events import REKEY
from broker import topics
from processors.access_log import logged
from processors.approval import not_active
from processors.codes import CodeService, InvalidCode, Result, UnitEpoch
from processors.context import Context
from processors.linkage import FromHolder
from processors.rejection import reject
from renkei.envelope import Send, send
from schemas.messages import RekeyAnswer, RekeyedCode, RekeyRequest

REKEYED = "REKEYED"
MOST_CODES = 20_000  # link codes one request may carry: its answer (~30 bytes a code) fits one
# message; more is refused at once, by every view alike (the holder library sends 10,000)


def rekey(codes: CodeService, link_codes: Sequence[str], unit: str, old_epoch: int,
          new_epoch: int) -> list[Result]:
    """The new link code of each old one, or an `InvalidCode` for that item."""
    if new_epoch <= old_epoch:
        raise ValueError(f"a new key epoch follows the old one ({old_epoch} → {new_epoch})")
    return codes.convert_batch(link_codes, UnitEpoch(unit, old_epoch), UnitEpoch(unit, new_epoch))


def answer(item: FromHolder, ctx: Context, now: datetime) -> list[Send]:
    """A holder's link codes of an older epoch of its unit, as codes of the current epoch (its
    own valid codes back as they are when of the current epoch already); none for an invalid one.
    Its answer, or its refusal by the directory (its holder suspended as of its broker time or not
    in it, or its unit at no epoch it names), goes to the decider (FromHolder.judged): another
    instance, reading it again with a view of the directory behind or ahead of this one's (a
    suspension, a new epoch, the holder's registration), judges it otherwise, and only the first
    judgement of the request is made."""
    request = item.message
    assert isinstance(request, RekeyRequest)
    at, source = item.incoming.timestamp, item.incoming.source
    if not ctx.fresh(request.sent_at, at):  # by every view alike: refused at once
        return reject(item.holder, request.request_id, "STALE_REQUEST",
                      "sent outside the replay window", at, source, REKEY)
    if len(request.link_codes) > MOST_CODES:
        return reject(item.holder, request.request_id, "MALFORMED",
                      f"{len(request.link_codes):,} link codes: at most {MOST_CODES:,} a "
                      "request (its answer must fit one message): send them in parts", at,
                      source, REKEY)
    if (refused := not_active(ctx.directory.get(item.holder), at)) is not None:
        return [item.refused(request.request_id, refused.reason, refused.detail, REKEY, ctx)]
    unit = ctx.unit(item.holder)
    if not 0 <= request.from_epoch <= unit.epoch:
        return [item.refused(request.request_id, "NOT_PERMITTED",
                             f"{unit} has no codes of epoch {request.from_epoch}", REKEY, ctx)]
    old = list(request.link_codes)
    current = request.from_epoch == unit.epoch
    new = (ctx.codes.convert_batch(old, unit, unit) if current  # a valid code: itself again
           else rekey(ctx.codes, old, unit.unit, request.from_epoch, unit.epoch))
    invalid = sum(isinstance(code, InvalidCode) for code in new)
    what = (f"nothing to re-key: {unit} already" if current else
            f"{len(new) - invalid} link codes of epoch {request.from_epoch} re-keyed to "
            f"epoch {unit.epoch} of unit {unit.unit!r}") + f"; {invalid} not valid"
    return [item.judged(request.request_id, [
        send(topics.inbox(item.holder), request.request_id, RekeyAnswer(
            request.request_id, unit.epoch,
            tuple(RekeyedCode(o, None if isinstance(n, InvalidCode) else n)
                  for o, n in zip(old, new, strict=True)), unit.unit)),
        logged(request.request_id, f"rekeyed@{source}", now, REKEY, REKEYED, item.holder,
               reason=what),
    ], ctx)]
